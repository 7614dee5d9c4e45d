"""`@osmosis_rubric`: the Osmosis SDK 0.2.17 decoration checks, call checks and messages."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.runtime.osmosis_compat import is_osmosis_rubric, osmosis_rubric
from tests.support.osmosis_runtime import decoration_error, define_decorated

_define = functools.partial(define_decorated, decorator="osmosis_rubric")
_decoration_error = functools.partial(decoration_error, decorator="osmosis_rubric")


@pytest.fixture(params=[False, True], ids=["plain", "future-annotations"])
def rubric_module(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return _define(
        tmp_path,
        """
        @osmosis_rubric
        def judge(solution_str: str, ground_truth: str | None, extra_info: dict) -> float:
            return 0.25 if ground_truth is None else 0.75

        @osmosis_rubric
        def optional_judge(solution_str: str, ground_truth: Optional[str], extra_info: dict):
            return 1.0

        @osmosis_rubric
        async def async_judge(solution_str: str, ground_truth: str, extra_info: dict) -> float:
            return float(len(solution_str))

        @osmosis_rubric
        def int_judge(solution_str: str, ground_truth: str, extra_info: dict):
            return 1
        """,
        future=request.param,
    )


class TestClassicCalls:
    def test_ground_truth_none_is_accepted(self, rubric_module: Any) -> None:
        assert rubric_module.judge("answer", None, {}) == 0.25
        assert rubric_module.judge("answer", "42", {}) == 0.75
        assert rubric_module.optional_judge("answer", None, {}) == 1.0

    def test_int_ground_truth_is_rejected(self, rubric_module: Any) -> None:
        with pytest.raises(TypeError) as caught:
            rubric_module.judge("answer", 5, {})
        assert str(caught.value) == "'ground_truth' must be a string or None, got int"

    def test_missing_extra_info(self, rubric_module: Any) -> None:
        with pytest.raises(TypeError) as caught:
            rubric_module.judge("answer", "42")
        assert str(caught.value) == "'extra_info' argument is required"

    def test_missing_solution_and_ground_truth(self, rubric_module: Any) -> None:
        with pytest.raises(TypeError, match=r"^'solution_str' argument is required$"):
            rubric_module.judge(ground_truth="42", extra_info={})
        with pytest.raises(TypeError, match=r"^'ground_truth' argument is required$"):
            rubric_module.judge("answer", extra_info={})

    def test_non_string_solution(self, rubric_module: Any) -> None:
        with pytest.raises(TypeError, match=r"^'solution_str' must be a string, got list$"):
            rubric_module.judge(["answer"], "42", {})

    def test_float_result_required(self, rubric_module: Any) -> None:
        with pytest.raises(TypeError, match=r"^Function int_judge must return a float, got int$"):
            rubric_module.int_judge("answer", "42", {})

    async def test_async_rubric(self, rubric_module: Any) -> None:
        assert inspect.iscoroutinefunction(rubric_module.async_judge)
        assert await rubric_module.async_judge("abc", "x", {}) == 3.0
        with pytest.raises(TypeError, match=r"^'extra_info' argument is required$"):
            await rubric_module.async_judge("abc", "x")

    def test_data_source_is_dropped(self, rubric_module: Any) -> None:
        result = rubric_module.judge(
            solution_str="a", ground_truth=None, extra_info={}, data_source="gsm8k"
        )
        assert result == 0.25

    def test_marked(self, rubric_module: Any) -> None:
        assert is_osmosis_rubric(rubric_module.judge)
        assert rubric_module.judge.__osmosis_rubric__ is True
        assert not hasattr(rubric_module.judge, "__osmosis_reward__")
        assert list(inspect.signature(rubric_module.judge).parameters) == [
            "solution_str",
            "ground_truth",
            "extra_info",
        ]


class TestDecorationErrors:
    @pytest.mark.parametrize("future", [False, True])
    def test_ground_truth_default(self, tmp_path: Path, future: bool) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: str | None = None, extra_info: dict = None):
                return 1.0
            """,
            future=future,
        )
        assert message == "Second parameter 'ground_truth' cannot have a default value"

    def test_solution_default(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str = "", ground_truth: str = "", extra_info: dict = None):
                return 1.0
            """,
        )
        assert message == "First parameter 'solution_str' cannot have a default value"

    def test_too_few_parameters(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: str):
                return 1.0
            """,
        )
        assert message == "Function f must have at least 3 parameters, got 2"

    def test_solution_annotation(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: int, ground_truth: str, extra_info: dict):
                return 1.0
            """,
            future=True,
        )
        assert message == (
            "First parameter 'solution_str' must be annotated as str, got <class 'int'>"
        )

    def test_second_name_and_annotation(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, reference: str, extra_info: dict):
                return 1.0
            """,
        )
        assert message == "Second parameter must be named 'ground_truth', got 'reference'"
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: int | None, extra_info: dict):
                return 1.0
            """,
        )
        assert message == (
            "Second parameter 'ground_truth' must be annotated as str or Optional[str], "
            "got int | None"
        )

    def test_third_name(self, tmp_path: Path) -> None:
        message = _decoration_error(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: str, metadata: dict):
                return 1.0
            """,
        )
        assert message == "Third parameter must be named 'extra_info', got 'metadata'"

    def test_extra_info_annotation_and_default_are_free(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: str, extra_info=None):
                return 0.5
            """,
        )
        # The default fills extra_info, so the call-time check is satisfied.
        assert module.f("a", "b") == 0.5

    def test_unresolvable_annotation_elsewhere(self, tmp_path: Path) -> None:
        module = _define(
            tmp_path,
            """
            @osmosis_rubric
            def f(solution_str: str, ground_truth: Optional[str], extra_info: "Undefined"):
                return 0.5
            """,
            future=True,
        )
        assert module.f("a", None, {}) == 0.5


def test_custom_signature_is_unchecked() -> None:
    @osmosis_rubric
    def f(messages: list[str], label: int) -> int:
        return label

    assert f([], 3) == 3
    assert is_osmosis_rubric(f)
