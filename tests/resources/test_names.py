"""Child names: deterministic, DNS-1035 labels of at most 63 characters, distinct per run."""

from __future__ import annotations

import re

import pytest

from rollout_operator.resources.context import COMPONENTS
from rollout_operator.resources.names import (
    MAX_NAME_LENGTH,
    child_name,
    is_dns_label,
    label_value,
    run_suffix,
)

UID_A = "5b0e3c1a-7d2f-4e8b-9a61-0c4d2e8f9b17"
UID_B = "a0c4d2e8-1111-4e8b-9a61-5b0e3c1a7d2f"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@pytest.mark.parametrize(
    ("run_name", "component", "expected_head"),
    [
        ("calculator", "sync", "calculator-sync-"),
        ("calc.v2", "tools", "calc-v2-tools-"),
        ("0day", "workers", "r-0day-workers-"),
        ("a" * 253, "aggregate", "a" * 44 + "-aggregate-"),
        ("a-" * 30 + "b", "inference", ("a-" * 22).rstrip("-") + "-inference-"),
        ("UPPER_case", "sync", "upper-case-sync-"),
        ("ünïcode-run", "tools", "n-code-run-tools-"),
    ],
)
def test_child_name_table(run_name: str, component: str, expected_head: str) -> None:
    name = child_name(run_name, UID_A, component)
    assert name.startswith(expected_head)
    assert name == f"{expected_head}{run_suffix(run_name, UID_A)}"
    assert len(name) <= MAX_NAME_LENGTH
    assert DNS_1035.match(name), name
    assert name.isascii()
    assert is_dns_label(name)


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("length", [1, 30, 52, 53, 54, 62, 63, 64, 100, 253])
def test_child_names_fit_for_every_length(component: str, length: int) -> None:
    run_name = ("r" + "x" * 300)[:length]
    name = child_name(run_name, UID_A, component)
    assert len(name) <= MAX_NAME_LENGTH
    assert DNS_1035.match(name)


def test_runs_with_a_long_shared_prefix_get_different_names() -> None:
    prefix = "experiment-" + "q" * 49
    assert len(prefix) == 60
    first, second = prefix + "-a", prefix + "-b"
    for component in COMPONENTS:
        a = child_name(first, UID_A, component)
        b = child_name(second, UID_B, component)
        assert a != b
        assert len(a) <= MAX_NAME_LENGTH and len(b) <= MAX_NAME_LENGTH
        # Same uid (as in a render), names still differ because the suffix covers the full name.
        assert child_name(first, UID_A, component) != child_name(second, UID_A, component)


def test_names_are_deterministic_and_per_uid() -> None:
    assert child_name("calc", UID_A, "tools") == child_name("calc", UID_A, "tools")
    assert child_name("calc", UID_A, "tools") != child_name("calc", UID_B, "tools")
    names = {child_name("calc", UID_A, component) for component in COMPONENTS}
    assert len(names) == len(COMPONENTS)


def test_a_component_too_long_for_any_name_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        child_name("calc", UID_A, "c" * 60)


@pytest.mark.parametrize(
    "text",
    ["calculator", "calc.v2", "a" * 63, "a" * 64, "x" * 253, "-leading", "with space", ""],
)
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= MAX_NAME_LENGTH
    assert LABEL_VALUE.match(value), value
    if len(text) <= MAX_NAME_LENGTH and LABEL_VALUE.match(text):
        assert value == text
    else:
        assert value != label_value(text + "y")
