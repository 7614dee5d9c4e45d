"""`@osmosis_reward` and `@osmosis_rubric`, with the Osmosis SDK 0.2.17 checks and messages.

Repos written for Osmosis Local Rollout decorate their scorers with these. A function whose first
parameter is `solution_str` is in "classic" mode and must follow the classic signature; any other
signature is "custom" and passes unchecked. Wrappers are marked (`__osmosis_reward__`,
`__osmosis_rubric__`) so that the repo loader can find decorated functions in a module.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REWARD_MARKER = "__osmosis_reward__"
RUBRIC_MARKER = "__osmosis_rubric__"

_EMPTY = inspect.Parameter.empty
_UNION_ORIGINS: tuple[object, ...] = (typing.Union, types.UnionType)


def _is_classic(params: list[inspect.Parameter]) -> bool:
    return bool(params) and params[0].name == "solution_str"


def _keeps_data_source(params: list[inspect.Parameter]) -> bool:
    """Whether `func` can take the `data_source=` keyword that verl-style trainers pass."""
    return any(p.name == "data_source" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _is_optional_of(annotation: object, inner: type) -> bool:
    """`inner | None` or `Optional[inner]`, compared by identity as the SDK does."""
    if typing.get_origin(annotation) not in _UNION_ORIGINS:
        return False
    args = typing.get_args(annotation)
    return len(args) == 2 and inner in args and type(None) in args


def _is_str_hint(annotation: object) -> bool:
    if annotation is str:
        return True
    if isinstance(annotation, str):
        return annotation in ("str", "builtins.str")
    return isinstance(annotation, type) and issubclass(annotation, str)


def _check_float(name: str, result: object) -> None:
    if not isinstance(result, float):
        raise TypeError(f"Function {name} must return a float, got {type(result).__name__}")


def _check_reward_signature(name: str, params: list[inspect.Parameter]) -> None:
    # Identity checks on the raw annotations: under `from __future__ import annotations` they are
    # strings and fail, exactly as they do with the Osmosis SDK.
    if len(params) < 3:
        raise TypeError(f"Function {name} must have at least 3 parameters, got {len(params)}")
    first, second, third = params[0], params[1], params[2]
    if first.annotation is not str:
        raise TypeError(
            f"First parameter 'solution_str' must be annotated as str, got {first.annotation}"
        )
    if second.name != "ground_truth":
        raise TypeError(f"Second parameter must be named 'ground_truth', got '{second.name}'")
    if second.annotation is not str:
        raise TypeError(
            f"Second parameter 'ground_truth' must be annotated as str, got {second.annotation}"
        )
    if third.name != "extra_info":
        raise TypeError(f"Third parameter must be named 'extra_info', got '{third.name}'")
    if third.annotation is not dict and not _is_optional_of(third.annotation, dict):
        raise TypeError(
            "Third parameter 'extra_info' must be annotated as dict or dict | None, "
            f"got {third.annotation}"
        )
    if third.default is _EMPTY:
        raise TypeError("Third parameter 'extra_info' must have a default value of None")


def _resolved_hints(func: Callable[..., Any], params: list[inspect.Parameter]) -> dict[str, Any]:
    """Annotations with strings resolved; one that cannot be resolved stays as written."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    # Another parameter's annotation names something undefined: resolve these one at a time.
    namespace = getattr(func, "__globals__", {})
    hints: dict[str, Any] = {}
    for param in params:
        if isinstance(param.annotation, str):
            try:
                hints[param.name] = eval(param.annotation, dict(namespace))
            except Exception:
                continue
    return hints


def _check_rubric_signature(func: Callable[..., Any], params: list[inspect.Parameter]) -> None:
    name = func.__name__
    if len(params) < 3:
        raise TypeError(f"Function {name} must have at least 3 parameters, got {len(params)}")
    hints = _resolved_hints(func, params[:2])
    first, second, third = params[0], params[1], params[2]
    first_hint = hints.get(first.name, first.annotation)
    if not _is_str_hint(first_hint):
        raise TypeError(
            f"First parameter 'solution_str' must be annotated as str, got {first_hint}"
        )
    if first.default is not _EMPTY:
        raise TypeError("First parameter 'solution_str' cannot have a default value")
    if second.name != "ground_truth":
        raise TypeError(f"Second parameter must be named 'ground_truth', got '{second.name}'")
    second_hint = hints.get(second.name, second.annotation)
    if not _is_str_hint(second_hint) and not _is_optional_of(second_hint, str):
        raise TypeError(
            "Second parameter 'ground_truth' must be annotated as str or Optional[str], "
            f"got {second_hint}"
        )
    if second.default is not _EMPTY:
        raise TypeError("Second parameter 'ground_truth' cannot have a default value")
    if third.name != "extra_info":
        raise TypeError(f"Third parameter must be named 'extra_info', got '{third.name}'")


def _check_rubric_arguments(
    sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    bound = sig.bind_partial(*args, **kwargs)
    bound.apply_defaults()
    values = bound.arguments
    if "solution_str" not in values:
        raise TypeError("'solution_str' argument is required")
    if not isinstance(values["solution_str"], str):
        raise TypeError(
            f"'solution_str' must be a string, got {type(values['solution_str']).__name__}"
        )
    if "ground_truth" not in values:
        raise TypeError("'ground_truth' argument is required")
    ground_truth = values["ground_truth"]
    if ground_truth is not None and not isinstance(ground_truth, str):
        raise TypeError(
            f"'ground_truth' must be a string or None, got {type(ground_truth).__name__}"
        )
    if "extra_info" not in values:
        raise TypeError("'extra_info' argument is required")


def _wrap(
    func: Callable[..., Any],
    *,
    marker: str,
    strip_data_source: bool,
    check_arguments: Callable[[tuple[Any, ...], dict[str, Any]], None] | None,
    check_result: bool,
) -> Callable[..., Any]:
    name = func.__name__

    def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if strip_data_source:
            kwargs.pop("data_source", None)
        if check_arguments is not None:
            check_arguments(args, kwargs)

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            prepare(args, kwargs)
            result = await func(*args, **kwargs)
            if check_result:
                _check_float(name, result)
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            prepare(args, kwargs)
            result = func(*args, **kwargs)
            if check_result:
                _check_float(name, result)
            return result

        wrapper = sync_wrapper
    setattr(wrapper, marker, True)
    return wrapper


def osmosis_reward(func: F) -> F:
    """Mark `func` as a deterministic reward function.

    Classic mode, `(solution_str: str, ground_truth: str, extra_info: dict = None, **kwargs)`, is
    checked when decorating (TypeError naming the first problem) and must return a float when
    called. A `data_source=` keyword is dropped unless `func` accepts it.
    """
    params = list(inspect.signature(func).parameters.values())
    classic = _is_classic(params)
    if classic:
        _check_reward_signature(func.__name__, params)
    wrapper = _wrap(
        func,
        marker=REWARD_MARKER,
        strip_data_source=not _keeps_data_source(params),
        check_arguments=None,
        check_result=classic,
    )
    return typing.cast(F, wrapper)


def osmosis_rubric(func: F) -> F:
    """Mark `func` as an LLM-judge rubric function.

    Classic mode, `(solution_str: str, ground_truth: str | None, extra_info: dict)`, is checked
    when decorating (string annotations are resolved, so `from __future__ import annotations` is
    fine), its arguments are checked on every call, and it must return a float. The runtime passes
    `ground_truth=None` when a row has no reference.
    """
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    classic = _is_classic(params)
    if classic:
        _check_rubric_signature(func, params)

    def check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        _check_rubric_arguments(sig, args, kwargs)

    wrapper = _wrap(
        func,
        marker=RUBRIC_MARKER,
        strip_data_source=not _keeps_data_source(params),
        check_arguments=check_arguments if classic else None,
        check_result=classic,
    )
    return typing.cast(F, wrapper)


def is_osmosis_reward(obj: object) -> bool:
    """Whether `obj` was produced by `@osmosis_reward`."""
    return getattr(obj, REWARD_MARKER, False) is True


def is_osmosis_rubric(obj: object) -> bool:
    """Whether `obj` was produced by `@osmosis_rubric`."""
    return getattr(obj, RUBRIC_MARKER, False) is True
