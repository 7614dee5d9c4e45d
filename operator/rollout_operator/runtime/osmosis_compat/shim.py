"""Make `from osmosis_ai import osmosis_reward, osmosis_rubric, evaluate_rubric` work in user code.

No osmosis-ai release that can be installed today still has the decorators, and the ones that
have `evaluate_rubric` only have the asynchronous form, while Local Rollout repos call the classic
synchronous one. `install_osmosis_ai()` therefore:

- imports an installed `osmosis_ai` and sets our names on it (overriding its `evaluate_rubric`
  and error classes), or registers a small synthetic `osmosis_ai` package when none is installed
  (or the installed one fails to import);
- serves the SDK 0.2.17 submodules user code imports from (`osmosis_ai.utils`,
  `osmosis_ai.rubric_eval`, `osmosis_ai.rubric_types`) through an import hook: a real submodule
  is loaded and then given our names, a missing one is provided by us.

It is idempotent and costs well under a millisecond once `rollout_operator` is imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Mapping, Sequence
from typing import Any

from rollout_operator.runtime.osmosis_compat import decorators, judge_errors, rubric

logger = logging.getLogger(__name__)

PACKAGE = "osmosis_ai"
COMPAT_MARKER = "__rollout_operator_compat__"
SYNTHETIC_VERSION = "0.2.17+rollout.operator"

_ERRORS: dict[str, object] = {
    "MissingAPIKeyError": judge_errors.MissingAPIKeyError,
    "ProviderRequestError": judge_errors.ProviderRequestError,
    "ModelNotFoundError": judge_errors.ModelNotFoundError,
}
_TYPES: dict[str, object] = {
    "ModelInfo": rubric.ModelInfo,
    "RewardRubricRunResult": rubric.RewardRubricRunResult,
    "RubricResult": rubric.RubricResult,
}
_DECORATORS: dict[str, object] = {
    "osmosis_reward": decorators.osmosis_reward,
    "osmosis_rubric": decorators.osmosis_rubric,
}
_EVALUATE: dict[str, object] = {"evaluate_rubric": rubric.evaluate_rubric}

PACKAGE_EXPORTS: Mapping[str, object] = {**_DECORATORS, **_EVALUATE, **_ERRORS, **_TYPES}
"""What `osmosis_ai` itself gets."""

SUBMODULE_EXPORTS: Mapping[str, Mapping[str, object]] = {
    f"{PACKAGE}.utils": _DECORATORS,
    f"{PACKAGE}.rubric_eval": {**_EVALUATE, **_ERRORS, **_TYPES},
    f"{PACKAGE}.rubric_types": {**_ERRORS, **_TYPES},
}
"""What each SDK 0.2.17 submodule gets, by full module name."""

_lock = threading.Lock()


def _give_names(module: types.ModuleType, names: Mapping[str, object]) -> None:
    for name, value in names.items():
        setattr(module, name, value)
    exported = getattr(module, "__all__", None)
    if isinstance(exported, list | tuple):
        module.__dict__["__all__"] = [*exported, *(n for n in names if n not in exported)]
    setattr(module, COMPAT_MARKER, True)


class _NamesLoader(importlib.abc.Loader):
    """Loads a submodule the installed package lacks: a plain module holding our names."""

    def __init__(self, names: Mapping[str, object]) -> None:
        self.names = names

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__all__"] = list(self.names)
        _give_names(module, self.names)


class _PatchingLoader(importlib.abc.Loader):
    """Runs a real submodule's own loader, then gives the module our names."""

    def __init__(self, inner: importlib.abc.Loader, names: Mapping[str, object]) -> None:
        self.inner = inner
        self.names = names

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        _give_names(module, self.names)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_filename, resource readers: whatever the real loader offers.
        return getattr(self.inner, name)


class OsmosisSubmoduleFinder(importlib.abc.MetaPathFinder):
    """An import hook for exactly the names in `SUBMODULE_EXPORTS`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        names = SUBMODULE_EXPORTS.get(fullname)
        if names is None:
            return None
        real = self._real_spec(fullname, path, target)
        if real is not None and real.loader is not None:
            real.loader = _PatchingLoader(real.loader, names)
            return real
        return importlib.util.spec_from_loader(fullname, _NamesLoader(names))

    def _real_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None,
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, OsmosisSubmoduleFinder):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def _synthetic_package() -> types.ModuleType:
    module = types.ModuleType(
        PACKAGE, "Osmosis SDK names provided by rollout-operator (no osmosis-ai is installed)."
    )
    module.__spec__ = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    module.__path__ = []
    module.__package__ = PACKAGE
    module.__version__ = SYNTHETIC_VERSION  # type: ignore[attr-defined]
    module.__dict__["__all__"] = ["__version__", *PACKAGE_EXPORTS]
    sys.modules[PACKAGE] = module
    return module


def _forget_package() -> None:
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _installed_package() -> types.ModuleType | None:
    """The installed osmosis-ai, imported; None when there is none or it cannot be imported."""
    try:
        if importlib.util.find_spec(PACKAGE) is None:
            return None
        return importlib.import_module(PACKAGE)
    except Exception as error:
        logger.warning(
            "The installed osmosis_ai package cannot be imported (%s: %s); "
            "rollout-operator provides the osmosis_ai names instead.",
            type(error).__name__,
            error,
        )
        _forget_package()
        return None


def _hook_installed() -> bool:
    return any(isinstance(finder, OsmosisSubmoduleFinder) for finder in sys.meta_path)


def install_osmosis_ai() -> None:
    """Make `osmosis_ai` importable with the Local Rollout SDK names; safe to call repeatedly."""
    with _lock:
        module = sys.modules.get(PACKAGE)
        if module is not None and getattr(module, COMPAT_MARKER, False) and _hook_installed():
            return
        if not _hook_installed():
            sys.meta_path.insert(0, OsmosisSubmoduleFinder())
        if module is None:
            module = _installed_package() or _synthetic_package()
        _give_names(module, PACKAGE_EXPORTS)
        # Submodules the package imported for itself were loaded before the hook could see them.
        for fullname, names in SUBMODULE_EXPORTS.items():
            loaded = sys.modules.get(fullname)
            if loaded is not None:
                _give_names(loaded, names)


def osmosis_ai_is_synthetic() -> bool:
    """Whether `osmosis_ai` is the stand-in `install_osmosis_ai` made (no osmosis-ai installed)."""
    module = sys.modules.get(PACKAGE)
    return module is not None and getattr(module, "__version__", None) == SYNTHETIC_VERSION
