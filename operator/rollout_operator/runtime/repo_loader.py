"""Import a Local Rollout repo's user code: the MCP server, scorer functions, and a layout report.

User code is imported the way `python main.py` would see it (its folder first on `sys.path`), but
without leaving traces, so that two repos loaded into one process never share modules.

Isolation rule, applied by every loader here (`load_mcp_server`, `load_function(s)`,
`discover_scorers`, `inspect_repo`):

1. Under one process-wide lock, the import root (the MCP folder, or the repo root for scorers) is
   prepended to `sys.path`.
2. Cached modules that would shadow the root's own top-level modules are hidden for the duration:
   a cached module is hidden when the root has a module or regular package of the same top-level
   name (e.g. `tools/__init__.py`) or when both are namespace packages (e.g. another repo's
   `reward_fn/`), and it does not live under the root. Standard-library names are never hidden,
   and a namespace folder never hides a regular package (so a repo's `mcp/` folder never hides the
   `mcp` SDK).
3. Afterwards `sys.path` is restored, every module that was imported during the load and lives
   under the root is removed from `sys.modules`, and the hidden modules are put back.

Functions and servers loaded this way keep working (they hold their module globals), but code that
imports a sibling module lazily, at call time, will not find it. A process dedicated to one repo
(a tool pod) passes `isolate=False`: the root then stays on `sys.path` and the modules stay cached,
as with `python main.py`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import sys
import threading
import traceback
import types
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from rollout_operator.runtime.errors import EvalFnError, MCPLoadError, ToolValidationError
from rollout_operator.runtime.interfaces import ToolSchema

if TYPE_CHECKING:
    from fastmcp import FastMCP

log = logging.getLogger(__name__)

ScorerKind = Literal["reward", "rubric"]
ProblemArea = Literal["repo", "tools", "scorers"]

SCORER_FOLDERS = ("reward_fn", "reward_rubric")
DATASET_SUFFIXES = (".jsonl", ".csv", ".parquet")
_STDLIB_NAMES = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
_IMPORT_LOCK = threading.RLock()

T = TypeVar("T")


# --- import isolation ---------------------------------------------------------------------------


def _module_locations(module: types.ModuleType) -> list[str]:
    """Where a module's code lives: its file, or the folders of a (namespace) package."""
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        return [file]
    search = getattr(module, "__path__", None)
    if search is not None:
        try:
            return [str(p) for p in search]
        except Exception:  # a broken `_NamespacePath` must not break loading
            return []
    return []


def _is_under(module: types.ModuleType, root: Path) -> bool:
    """Whether the module's code lives under `root` (a resolved path).

    Module paths derive from the `sys.path` entry they were found on, which is the resolved root
    for user code, so a string comparison suffices and spares a `stat` per module."""
    prefix = str(root).rstrip(os.sep) + os.sep
    for location in _module_locations(module):
        normalised = os.path.normpath(os.path.abspath(location))
        if normalised == str(root) or normalised.startswith(prefix):
            return True
    return False


def _is_namespace(module: types.ModuleType) -> bool:
    return getattr(module, "__file__", None) is None and hasattr(module, "__path__")


def _top_level_names(root: Path) -> dict[str, bool]:
    """The importable top-level names a folder provides, each mapped to "is a regular module"."""
    suffixes = tuple(importlib.machinery.all_suffixes())
    names: dict[str, bool] = {}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return names
    for entry in entries:
        if entry.is_dir():
            if entry.name.isidentifier():
                regular = os.path.isfile(os.path.join(entry.path, "__init__.py"))
                names[entry.name] = names.get(entry.name, False) or regular
        elif entry.name.endswith(suffixes):
            stem = entry.name.split(".", 1)[0]
            if stem.isidentifier():
                names[stem] = True
    return names


def _hide_shadowed_modules(root: Path) -> dict[str, types.ModuleType]:
    hidden: dict[str, types.ModuleType] = {}
    for name, regular in _top_level_names(root).items():
        if name in _STDLIB_NAMES:
            continue
        cached = sys.modules.get(name)
        if cached is None or _is_under(cached, root):
            continue
        if not regular and not _is_namespace(cached):
            continue
        prefix = name + "."
        for key in [k for k in sys.modules if k == name or k.startswith(prefix)]:
            hidden[key] = sys.modules.pop(key)
    return hidden


@contextmanager
def _user_import_scope(root: Path, *, isolate: bool) -> Iterator[None]:
    """Import user code from `root` as its own script folder would (see the module docstring)."""
    with _IMPORT_LOCK:
        saved_path = list(sys.path)
        hidden = _hide_shadowed_modules(root)
        before = set(sys.modules)
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        failed = True
        try:
            yield
            failed = False
        finally:
            if isolate or failed:
                sys.path[:] = saved_path
                for name in set(sys.modules) - before:
                    module = sys.modules.get(name)
                    if module is not None and _is_under(module, root):
                        del sys.modules[name]
            for name, module in hidden.items():
                sys.modules.setdefault(name, module)


def _install_osmosis_ai() -> None:
    from rollout_operator.runtime.osmosis_compat import install_osmosis_ai

    install_osmosis_ai()


def _describe_import_error(exc: BaseException, root: Path) -> str:
    """`Type: message`, plus the innermost line of user code that raised it."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<"):  # <frozen importlib._bootstrap> and friends
            continue
        try:
            path = Path(frame.filename).resolve()
        except (OSError, ValueError):
            continue
        if path.is_relative_to(root):
            where = f"{path.relative_to(root)}:{frame.lineno}"
    if where is None and isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
    return f"{text} (at {where})" if where else text


# --- the MCP server -----------------------------------------------------------------------------


def mcp_package_name(mcp_dir: str | os.PathLike[str]) -> str:
    """The synthetic package `main.py` is imported into: `_osmosis_mcp_{sha256(absdir)[:8]}`."""
    absdir = os.path.abspath(os.fspath(mcp_dir))
    return "_osmosis_mcp_" + hashlib.sha256(absdir.encode("utf-8")).hexdigest()[:8]


def _check_mcp_dir(mcp_dir: str | os.PathLike[str]) -> Path:
    directory = Path(os.path.abspath(os.fspath(mcp_dir)))
    if not directory.exists():
        raise MCPLoadError(
            f"MCP directory not found: {directory}. Pass the folder that holds the tool server's "
            "main.py (for example --mcp ./mcp)."
        )
    if not directory.is_dir():
        raise MCPLoadError(
            f"MCP path is not a directory: {directory}. Pass the folder that holds main.py, "
            "not a file."
        )
    if not (directory / "main.py").is_file():
        raise MCPLoadError(
            f"No main.py in MCP directory {directory}. Create main.py there that imports your "
            "FastMCP server and its tools (for example `from server import mcp` and "
            "`from tools import *`), or point --mcp at the folder that has it."
        )
    return directory


def _exec_main(package: str, directory: Path) -> types.ModuleType:
    """Run main.py as `{package}.main`: `__main__` blocks stay dormant, `from . import` works."""
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(directory)]
    pkg.__package__ = package
    spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
    spec.submodule_search_locations = [str(directory)]
    pkg.__spec__ = spec
    sys.modules[package] = pkg

    name = f"{package}.main"
    main_spec = importlib.util.spec_from_file_location(name, directory / "main.py")
    if main_spec is None or main_spec.loader is None:
        raise MCPLoadError(f"Cannot create an import spec for {directory / 'main.py'}.")
    module = importlib.util.module_from_spec(main_spec)
    sys.modules[name] = module
    main_spec.loader.exec_module(module)
    return module


def _find_server(module: types.ModuleType, server_type: type[FastMCP]) -> FastMCP | None:
    for attribute in dir(module):
        value = getattr(module, attribute, None)
        if isinstance(value, server_type):
            return value
    return None


def load_mcp_server(mcp_dir: str | os.PathLike[str], *, isolate: bool = True) -> FastMCP:
    """Import `mcp_dir/main.py` and return the first FastMCP server it defines (`MCPLoadError`)."""
    directory = _check_mcp_dir(mcp_dir)
    try:
        from fastmcp import FastMCP
    except ImportError as exc:
        raise MCPLoadError(
            f"fastmcp cannot be imported ({exc}); install it (pip install fastmcp) to load the "
            f"tool server in {directory}."
        ) from exc
    _install_osmosis_ai()
    main_py = directory / "main.py"
    root = directory.resolve()
    with _user_import_scope(root, isolate=isolate):
        try:
            module = _exec_main(mcp_package_name(directory), directory)
        except MCPLoadError:
            raise
        except (Exception, SystemExit) as exc:
            raise MCPLoadError(
                f"Error importing {main_py}: {_describe_import_error(exc, root)}"
            ) from exc
    server = _find_server(module, FastMCP)
    if server is None:
        raise MCPLoadError(
            f"No FastMCP instance found in {main_py}: main.py must create or import a "
            "fastmcp.FastMCP server at module level (for example `from server import mcp`), and "
            "importing it must register the tools."
        )
    return server


# --- scorer functions ---------------------------------------------------------------------------


def _split_ref(ref: str) -> tuple[str, str]:
    example = "for example 'reward_fn.compute_reward:numbers_match_reward'"
    if not isinstance(ref, str) or ":" not in ref:
        raise EvalFnError(f"Invalid eval function {ref!r}: expected 'module:function', {example}.")
    module_name, fn_name = ref.rsplit(":", 1)
    if not module_name or not fn_name:
        raise EvalFnError(f"Invalid eval function {ref!r}: expected 'module:function', {example}.")
    if "/" in module_name or "\\" in module_name or module_name.endswith(".py"):
        raise EvalFnError(
            f"Invalid eval function {ref!r}: the module is a dotted import path, not a file "
            f"path ({example})."
        )
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise EvalFnError(
            f"Invalid eval function {ref!r}: {module_name!r} is not a dotted Python module path."
        )
    if not fn_name.isidentifier():
        raise EvalFnError(f"Invalid eval function {ref!r}: {fn_name!r} is not a Python name.")
    return module_name, fn_name


def _check_root(repo_root: str | os.PathLike[str]) -> Path:
    root = Path(os.fspath(repo_root)).resolve()
    if not root.is_dir():
        raise EvalFnError(f"Repository root not found: {root}. Run from the repo root or pass it.")
    return root


def _import_for_ref(module_name: str, ref: str, root: Path) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise EvalFnError(
                f"Cannot import module {module_name!r} for eval function {ref!r}: no module "
                f"named {missing!r} under {root} (or on sys.path). Module paths are dotted and "
                "resolved from that folder."
            ) from exc
        raise EvalFnError(
            f"Error importing {module_name!r} for eval function {ref!r}: "
            f"{_describe_import_error(exc, root)}. Install the repo's dependencies."
        ) from exc
    except (Exception, SystemExit) as exc:
        raise EvalFnError(
            f"Error importing {module_name!r} for eval function {ref!r}: "
            f"{_describe_import_error(exc, root)}"
        ) from exc


def _resolve_attribute(module: types.ModuleType, fn_name: str, ref: str) -> Callable[..., Any]:
    missing = object()
    fn = getattr(module, fn_name, missing)
    if fn is missing:
        defined = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        )
        hint = f" Functions defined there: {', '.join(defined)}." if defined else ""
        raise EvalFnError(
            f"Cannot load eval function {ref!r}: module {module.__name__!r} has no attribute "
            f"{fn_name!r}.{hint}"
        )
    if not callable(fn):
        raise EvalFnError(
            f"Cannot load eval function {ref!r}: {module.__name__}.{fn_name} is a "
            f"{type(fn).__name__}, not a function."
        )
    return fn


def load_functions(
    repo_root: str | os.PathLike[str], refs: Sequence[str], *, isolate: bool = True
) -> dict[str, Callable[..., Any]]:
    """Load several `module:fn` references in one import pass (raises `EvalFnError`)."""
    root = _check_root(repo_root)
    split = {ref: _split_ref(ref) for ref in refs}
    _install_osmosis_ai()
    loaded: dict[str, Callable[..., Any]] = {}
    with _user_import_scope(root, isolate=isolate):
        for ref, (module_name, fn_name) in split.items():
            module = _import_for_ref(module_name, ref, root)
            loaded[ref] = _resolve_attribute(module, fn_name, ref)
    return loaded


def load_function(
    repo_root: str | os.PathLike[str], ref: str, *, isolate: bool = True
) -> Callable[..., Any]:
    """Load `module:fn` relative to `repo_root`, as `osmosis eval --eval-fn` does from its cwd."""
    return load_functions(repo_root, [ref], isolate=isolate)[ref]


# --- discovery and the repo report --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScorerRef:
    """A decorated scorer found in the repo, addressable as `module:function`."""

    ref: str
    kind: ScorerKind
    file: Path
    line: int = 0

    @property
    def module(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        return self.ref.rsplit(":", 1)[1]


@dataclass(frozen=True, slots=True)
class RepoProblem:
    """Something in the repo that keeps part of it from loading, and where it is."""

    area: ProblemArea
    file: Path | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file else self.message


@dataclass(slots=True)
class RepoReport:
    """What `rolloutctl validate` shows: tools, scorers, datasets and every problem found."""

    root: Path
    has_mcp: bool = False
    tools: list[ToolSchema] = field(default_factory=list)
    scorers: list[ScorerRef] = field(default_factory=list)
    datasets: list[Path] = field(default_factory=list)
    problems: list[RepoProblem] = field(default_factory=list)
    fastmcp_version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def tool_names(self) -> list[str]:
        return [str(tool["function"]["name"]) for tool in self.tools]


def _scorer_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for folder in SCORER_FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(root).parts
            if any(part.startswith(".") or part == "__pycache__" for part in relative):
                continue
            files.append(path)
    return files


def _module_name(root: Path, path: Path) -> str | None:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)


def _marked_functions(module: types.ModuleType, path: Path) -> Iterable[ScorerRef]:
    """Scorers defined in this module (not imported into it), marked by our decorators."""
    from rollout_operator.runtime.osmosis_compat import REWARD_MARKER, RUBRIC_MARKER

    markers: tuple[tuple[str, ScorerKind], ...] = (
        (REWARD_MARKER, "reward"),
        (RUBRIC_MARKER, "rubric"),
    )
    for name, value in vars(module).items():
        if not callable(value) or getattr(value, "__module__", None) != module.__name__:
            continue
        for marker, kind in markers:
            if getattr(value, marker, False):
                code = getattr(inspect.unwrap(value), "__code__", None)
                line = code.co_firstlineno if code is not None else 0
                yield ScorerRef(f"{module.__name__}:{name}", kind, path, line)
                break


def _scan_scorers(root: Path) -> tuple[list[ScorerRef], list[RepoProblem]]:
    scorers: list[ScorerRef] = []
    problems: list[RepoProblem] = []
    files = _scorer_files(root)
    if not files:
        return scorers, problems
    _install_osmosis_ai()
    with _user_import_scope(root, isolate=True):
        for path in files:
            module_name = _module_name(root, path)
            if module_name is None:
                problems.append(
                    RepoProblem(
                        "scorers",
                        path,
                        "cannot be imported: every folder and file name on its path must be a "
                        "Python identifier (letters, digits, underscores); rename it.",
                    )
                )
                continue
            try:
                module = importlib.import_module(module_name)
            except (Exception, SystemExit) as exc:
                problems.append(
                    RepoProblem(
                        "scorers",
                        path,
                        f"Error importing {module_name}: {_describe_import_error(exc, root)}",
                    )
                )
                continue
            found = sorted(_marked_functions(module, path), key=lambda ref: ref.line)
            scorers.extend(found)
    return scorers, problems


def discover_scorers(repo_root: str | os.PathLike[str]) -> list[ScorerRef]:
    """Functions decorated with `@osmosis_reward` / `@osmosis_rubric` under reward_fn/ and
    reward_rubric/. Modules that fail to import are skipped with a warning; `inspect_repo`
    reports them."""
    root = _check_root(repo_root)
    scorers, problems = _scan_scorers(root)
    for problem in problems:
        log.warning("skipping scorer module %s", problem)
    return scorers


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, even when the caller already has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _openai_tools(
    server: FastMCP, mcp_dir: Path
) -> tuple[list[ToolSchema], list[RepoProblem]]:
    from rollout_operator.runtime.tool_schema import (
        list_mcp_tools,
        mcp_tool_to_openai,
        validate_openai_tool,
    )

    schemas: list[ToolSchema] = []
    problems: list[RepoProblem] = []
    for tool in await list_mcp_tools(server):
        try:
            schema = mcp_tool_to_openai(tool)
            validate_openai_tool(schema)
        except ToolValidationError as exc:
            problems.append(RepoProblem("tools", mcp_dir, str(exc)))
            continue
        schemas.append(schema)
    return schemas, problems


def _fastmcp_version() -> str | None:
    try:
        import fastmcp
    except ImportError:
        return None
    return str(getattr(fastmcp, "__version__", "")) or None


DATA_FOLDER = "data"
"""Where an Osmosis workspace keeps its datasets (`osmosis init` creates `data/`)."""


def find_datasets(root: Path) -> list[Path]:
    """Dataset files at the repo root and anywhere under `data/`, as Osmosis repos keep them."""

    def is_dataset(path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in DATASET_SUFFIXES

    found = [path for path in root.iterdir() if is_dataset(path)]
    data = root / DATA_FOLDER
    if data.is_dir():
        found += [
            path
            for path in data.rglob("*")
            if is_dataset(path)
            and not any(part.startswith(".") for part in path.relative_to(data).parts)
        ]
    return sorted(found)


def inspect_repo(repo_root: str | os.PathLike[str]) -> RepoReport:
    """Load everything a rollout needs from the repo and report what loads and what does not."""
    root = Path(os.fspath(repo_root)).resolve()
    report = RepoReport(root=root)
    if not root.is_dir():
        report.problems.append(RepoProblem("repo", root, "repository folder not found"))
        return report
    report.fastmcp_version = _fastmcp_version()
    report.datasets = find_datasets(root)

    mcp_dir = root / "mcp"
    report.has_mcp = mcp_dir.is_dir()
    if report.has_mcp:
        try:
            server = load_mcp_server(mcp_dir)
            report.tools, tool_problems = _run_coroutine(_openai_tools(server, mcp_dir))
            report.problems.extend(tool_problems)
        except MCPLoadError as exc:
            report.problems.append(RepoProblem("tools", mcp_dir / "main.py", str(exc)))
        except Exception as exc:
            report.problems.append(
                RepoProblem("tools", mcp_dir, f"listing tools failed: {type(exc).__name__}: {exc}")
            )

    report.scorers, scorer_problems = _scan_scorers(root)
    report.problems.extend(scorer_problems)
    return report
