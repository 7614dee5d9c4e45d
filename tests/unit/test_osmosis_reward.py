"""`@osmosis_reward`: the Osmosis SDK 0.2.17 checks, messages and call behaviour."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.runtime.osmosis_compat import is_osmosis_reward, osmosis_reward
from tests.support.osmosis_runtime import (
    CALCULATOR,
    decoration_error,
    define_decorated,
    load_module,
    osmosis_ai_installed,
)

# This test module itself uses `from __future__ import annotations`, so every classic reward
# function here is written in a generated module without it (see `_define`).

_define = functools.partial(define_decorated, decorator="osmosis_reward")
_decoration_error = functools.partial(decoration_error, decorator="osmosis_reward")


class TestDecorationErrors:
    def test_two_parameters(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str):
                return 1.0
            """,
        )
        assert message == "Function f must have at least 3 parameters, got 2"

    def test_second_parameter_named_gt(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, gt: str, extra_info: dict = None):
                return 1.0
            """,
        )
        assert message == "Second parameter must be named 'ground_truth', got 'gt'"

    def test_extra_info_without_default(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: dict):
                return 1.0
            """,
        )
        assert message == "Third parameter 'extra_info' must have a default value of None"

    def test_unannotated_solution_str(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str, ground_truth: str, extra_info: dict = None):
                return 1.0
            """,
        )
        assert message == (
            "First parameter 'solution_str' must be annotated as str, got <class 'inspect._empty'>"
        )

    def test_future_annotations_fail_like_the_sdk(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: dict = None):
                return 1.0
            """,
            future=True,
        )
        assert message == "First parameter 'solution_str' must be annotated as str, got str"

    def test_wrong_solution_annotation(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: int, ground_truth: str, extra_info: dict = None):
                return 1.0
            """,
        )
        assert message == (
            "First parameter 'solution_str' must be annotated as str, got <class 'int'>"
        )

    def test_wrong_ground_truth_annotation(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: Optional[str], extra_info: dict = None):
                return 1.0
            """,
        )
        assert message == (
            "Second parameter 'ground_truth' must be annotated as str, got typing.Optional[str]"
        )

    def test_third_parameter_name(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, info: dict = None):
                return 1.0
            """,
        )
        assert message == "Third parameter must be named 'extra_info', got 'info'"

    def test_third_parameter_annotation(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: list = None):
                return 1.0
            """,
        )
        assert message == (
            "Third parameter 'extra_info' must be annotated as dict or dict | None, "
            "got <class 'list'>"
        )


class TestAcceptedSignatures:
    @pytest.mark.parametrize("annotation", ["dict", "Optional[dict]", "dict | None", "None | dict"])
    def test_extra_info_annotations(self, tmp_path: Path, annotation: str) -> None:
        module = _define(
            tmp_path,
            f"""
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: {annotation} = None):
                return 1.0 if solution_str == ground_truth else 0.0
            """,
        )
        assert module.f("a", "a") == 1.0
        assert module.f("a", "b") == 0.0

    def test_kwargs_not_required_and_any_default_passes(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: dict = {}):
                return float(len(extra_info))
            """,
        )
        assert module.f("a", "b") == 0.0
        assert module.f("a", "b", {"k": 1}) == 1.0

    def test_custom_signature_is_not_checked(self) -> None:
        @osmosis_reward
        def f(messages: list[str], label: str) -> int:
            return len(messages) + (1 if label else 0)

        assert f(["m1", "m2"], "x") == 3  # an int passes: custom mode checks no return type
        assert is_osmosis_reward(f)

    def test_no_parameters_is_custom(self) -> None:
        @osmosis_reward
        def constant() -> str:
            return "anything"

        assert constant() == "anything"


class TestCallBehaviour:
    def test_int_result_raises_at_call_time(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: dict = None):
                return 1
            """,
        )
        with pytest.raises(TypeError) as caught:
            module.f("a", "b")
        assert str(caught.value) == "Function f must return a float, got int"

    def test_none_result_raises(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_reward
            def f(solution_str: str, ground_truth: str, extra_info: dict = None):
                return None
            """,
        )
        with pytest.raises(TypeError, match=r"^Function f must return a float, got NoneType$"):
            module.f("a", "b")

    async def test_async_classic_is_awaitable_and_checked(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_reward
            async def good(solution_str: str, ground_truth: str, extra_info: dict = None):
                return 0.5

            @osmosis_reward
            async def bad(solution_str: str, ground_truth: str, extra_info: dict = None):
                return 1
            """,
        )
        assert inspect.iscoroutinefunction(module.good)
        result = await module.good("a", "b")
        assert result == 0.5 and isinstance(result, float)
        with pytest.raises(TypeError, match=r"^Function bad must return a float, got int$"):
            await module.bad("a", "b")

    def test_data_source_is_dropped_unless_accepted(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_reward
            def plain(solution_str: str, ground_truth: str, extra_info: dict = None):
                return 1.0

            @osmosis_reward
            def named(solution_str: str, ground_truth: str, extra_info: dict = None,
                      data_source: str = ""):
                return 1.0 if data_source == "gsm8k" else 0.0

            @osmosis_reward
            def variadic(solution_str: str, ground_truth: str, extra_info: dict = None, **kw):
                return 1.0 if kw.get("data_source") == "gsm8k" else 0.0
            """,
        )
        call = {"solution_str": "a", "ground_truth": "a", "extra_info": {}, "data_source": "gsm8k"}
        assert module.plain(**call) == 1.0
        assert module.named(**call) == 1.0
        assert module.variadic(**call) == 1.0

    def test_wraps_keeps_name_doc_and_signature(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            '''
            @osmosis_reward
            def scored(solution_str: str, ground_truth: str, extra_info: dict = None, **kw):
                """Docstring kept."""
                return 1.0
            ''',
        )
        assert module.scored.__name__ == "scored"
        assert module.scored.__doc__ == "Docstring kept."
        params = list(inspect.signature(module.scored).parameters)
        assert params == ["solution_str", "ground_truth", "extra_info", "kw"]
        assert module.scored.__osmosis_reward__ is True
        assert not hasattr(module.scored, "__osmosis_rubric__")


class TestCalculatorExample:
    """`reward_fn/compute_reward.py` from the calculator example, loaded by path."""

    @pytest.fixture
    def reward(self) -> Iterator[Any]:
        with osmosis_ai_installed():
            module = load_module(CALCULATOR / "reward_fn" / "compute_reward.py")
            yield module.numbers_match_reward

    def test_marked(self, reward: Any) -> None:
        assert is_osmosis_reward(reward)

    def test_scores(self, reward: Any) -> None:
        value = reward("The answer is #### 42", "42")
        assert value == 1.0 and isinstance(value, float)
        assert reward("42", "42") == 0.0
        assert reward("#### 41", "42") == 0.0
        assert reward("#### 1,234.0", "1234") == 1.0

    def test_verl_style_keywords(self, reward: Any) -> None:
        value = reward(solution_str="#### 42", ground_truth="42", extra_info={}, data_source="x")
        assert value == 1.0
