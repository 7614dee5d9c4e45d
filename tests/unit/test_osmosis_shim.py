"""`install_osmosis_ai`: user code's `from osmosis_ai import ...` works with or without osmosis-ai.

Each case that changes `sys.modules` or `sys.meta_path` for good runs in a fresh interpreter.
The "installed osmosis-ai" is a stand-in built in a temporary folder with the shape of current
releases (a `__version__`, an async keyword-only `evaluate_rubric`, lazily resolved names, no
decorators), because osmosis-ai itself cannot be installed here.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.judge_server import JudgeServer
from tests.support.osmosis_runtime import CALCULATOR, load_module, osmosis_ai_installed, run_python

# Shared by the subprocess scripts: everything Local Rollout user code relies on.
_CHECK_USER_CODE = textwrap.dedent(
    f"""
    import importlib.util, inspect, sys
    from pathlib import Path

    from osmosis_ai import (
        osmosis_reward, osmosis_rubric, evaluate_rubric,
        MissingAPIKeyError, ProviderRequestError, ModelNotFoundError,
    )
    from osmosis_ai.utils import osmosis_reward as utils_reward, osmosis_rubric as utils_rubric
    from osmosis_ai.rubric_eval import evaluate_rubric as eval_evaluate
    from osmosis_ai.rubric_types import ModelInfo, RewardRubricRunResult
    import rollout_operator.runtime.osmosis_compat as compat

    assert osmosis_reward is compat.osmosis_reward and utils_reward is osmosis_reward
    assert osmosis_rubric is compat.osmosis_rubric and utils_rubric is osmosis_rubric
    assert evaluate_rubric is compat.evaluate_rubric and eval_evaluate is evaluate_rubric
    assert issubclass(ModelNotFoundError, ProviderRequestError)
    assert issubclass(MissingAPIKeyError, RuntimeError)
    assert not inspect.iscoroutinefunction(evaluate_rubric)

    def load(path):
        spec = importlib.util.spec_from_file_location("user_" + Path(path).stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    calculator = Path({str(CALCULATOR)!r})
    reward = load(calculator / "reward_fn" / "compute_reward.py").numbers_match_reward
    assert reward.__osmosis_reward__ is True
    assert reward("The answer is #### 42", "42") == 1.0
    assert reward("42", "42") == 0.0
    verl_call = dict(solution_str="#### 42", ground_truth="42", extra_info={{}}, data_source="x")
    assert reward(**verl_call) == 1.0
    rubrics = sorted((calculator / "reward_rubric").glob("*.py"))
    assert rubrics
    for path in rubrics:
        module = load(path)
        marked = [v for v in vars(module).values() if getattr(v, "__osmosis_rubric__", False)]
        assert marked, path
    assert "litellm" not in sys.modules, "litellm must only be imported by a judge call"
    """
)

_STAND_IN_INIT = '''
"""A stand-in for a current osmosis-ai: async evaluate_rubric, lazy names, no decorators."""
from dataclasses import dataclass

__version__ = "0.3.8"


class ProviderRequestError(RuntimeError):
    pass


@dataclass
class RubricResult:
    score: float
    explanation: str
    raw: object = None


async def evaluate_rubric(*, solution_str, rubric, model, **kwargs):
    return RubricResult(0.0, "stand-in")


def __getattr__(name):
    if name == "RolloutAgentLoop":
        from .rollout import RolloutAgentLoop
        return RolloutAgentLoop
    raise AttributeError(f"module 'osmosis_ai' has no attribute {name!r}")


__all__ = ["__version__", "ProviderRequestError", "RubricResult", "RolloutAgentLoop",
           "evaluate_rubric"]
'''


def _stand_in(root: Path, init: str = _STAND_IN_INIT) -> Path:
    package = root / "osmosis_ai"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init)
    (package / "rollout.py").write_text("class RolloutAgentLoop:\n    name = 'base'\n")
    (package / "utils.py").write_text("def helper():\n    return 'stand-in helper'\n")
    return root


def _run(*parts: str, extra_path: list[Path] | None = None) -> str:
    """Run the script made of `parts` (each dedented on its own) in a fresh interpreter."""
    result = run_python("\n".join(textwrap.dedent(part) for part in parts), extra_path=extra_path)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout + result.stderr


def test_without_osmosis_ai_installed() -> None:
    output = _run(
        """
        import importlib.util, sys
        assert importlib.util.find_spec("osmosis_ai") is None, "osmosis-ai is installed here"
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai
        from rollout_operator.runtime.osmosis_compat.shim import (
            OsmosisSubmoduleFinder, osmosis_ai_is_synthetic,
        )
        install_osmosis_ai()
        install_osmosis_ai()
        assert sum(isinstance(f, OsmosisSubmoduleFinder) for f in sys.meta_path) == 1
        assert osmosis_ai_is_synthetic()
        import osmosis_ai
        assert osmosis_ai.__version__.startswith("0.2.17+")
        assert "evaluate_rubric" in osmosis_ai.__all__
        from osmosis_ai import *  # noqa: F403
        """,
        _CHECK_USER_CODE,
        "print('checked')",
    )
    assert "checked" in output


def test_with_decorator_less_osmosis_ai(tmp_path: Path) -> None:
    site = _stand_in(tmp_path / "site")
    output = _run(
        """
        import inspect, sys
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai
        from rollout_operator.runtime.osmosis_compat.shim import osmosis_ai_is_synthetic
        install_osmosis_ai()
        install_osmosis_ai()
        import osmosis_ai
        assert osmosis_ai.__version__ == "0.3.8", osmosis_ai.__version__
        assert not osmosis_ai_is_synthetic()
        # The package's own names still resolve, lazily as before.
        assert osmosis_ai.RolloutAgentLoop.name == "base"
        # Its real utils module is loaded, then given the decorators.
        import osmosis_ai.utils
        assert osmosis_ai.utils.helper() == "stand-in helper"
        assert "osmosis_reward" in osmosis_ai.__all__ and "RolloutAgentLoop" in osmosis_ai.__all__
        """,
        _CHECK_USER_CODE,
        "print('checked', osmosis_ai.__file__)",
        extra_path=[site],
    )
    assert f"checked {site / 'osmosis_ai' / '__init__.py'}" in output


def test_package_imported_before_install_is_patched(tmp_path: Path) -> None:
    site = _stand_in(tmp_path / "site")
    _run(
        """
        import inspect
        import osmosis_ai, osmosis_ai.utils
        assert not hasattr(osmosis_ai.utils, "osmosis_reward")
        assert inspect.iscoroutinefunction(osmosis_ai.evaluate_rubric)
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai
        install_osmosis_ai()
        assert not inspect.iscoroutinefunction(osmosis_ai.evaluate_rubric)
        assert osmosis_ai.utils.osmosis_reward.__module__.startswith("rollout_operator")
        """,
        _CHECK_USER_CODE,
        extra_path=[site],
    )


def test_broken_installed_package_falls_back(tmp_path: Path) -> None:
    site = _stand_in(tmp_path / "site", init="import a_dependency_that_is_missing\n")
    output = _run(
        """
        import logging, sys
        logging.basicConfig(level=logging.WARNING)
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai
        from rollout_operator.runtime.osmosis_compat.shim import osmosis_ai_is_synthetic
        install_osmosis_ai()
        assert osmosis_ai_is_synthetic()
        """,
        _CHECK_USER_CODE,
        extra_path=[site],
    )
    assert "cannot be imported (ModuleNotFoundError" in output


def test_import_stays_cheap() -> None:
    output = _run(
        """
        import sys, time
        started = time.perf_counter()
        import rollout_operator
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai
        install_osmosis_ai()
        import osmosis_ai
        elapsed = time.perf_counter() - started
        heavy = [m for m in ("litellm", "openai", "fastmcp", "kubernetes") if m in sys.modules]
        assert not heavy, heavy
        assert rollout_operator.__version__ == "0.1.0"
        print(f"import+install {elapsed * 1000:.0f} ms")
        """
    )
    milliseconds = float(output.split("import+install ")[1].split(" ms")[0])
    assert milliseconds < 1000


class TestCalculatorRubricJudge:
    """The example's judge, loaded by path, against the scripted judge server."""

    @pytest.fixture
    def judge(self) -> Iterator[JudgeServer]:
        with JudgeServer() as server:
            yield server

    def test_calls_the_judge(self, judge: JudgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
        model = judge.script(json.dumps({"score": 0.5, "explanation": "number only"}))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
        monkeypatch.setenv("RUBRIC_MODEL", model)
        with osmosis_ai_installed():
            module = load_module(CALCULATOR / "reward_rubric" / "reward_rubric_openai.py")
            rubric = module.calculator_rubric_openai
            score = rubric("#### 96", "96", {"metadata": {"row_index": 7}})
            assert score == 0.5 and isinstance(score, float)
            assert rubric(solution_str="#### 96", ground_truth=None, extra_info={}) == 0.5
        first, second = judge.requests_for(model)
        user = first.body["messages"][1]["content"]
        assert "<<<BEGIN_GROUND_TRUTH>>>\n96\n<<<END_GROUND_TRUTH>>>" in user
        assert '"row_index": 7' in user
        assert "GROUND_TRUTH" not in second.body["messages"][1]["content"]
        assert first.authorization == "Bearer sk-test"
