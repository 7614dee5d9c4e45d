"""Kubernetes quantities parsed exactly, by the grammar Kubernetes itself accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rollout_operator.api.quantity import is_extended_resource, parse_quantity


@pytest.mark.parametrize(("value", "expected"), [
    (4096, "4096"), ("2", "2"), ("500m", "0.5"), ("250u", "0.00025"), ("3n", "3e-9"),
    ("1.5Gi", str(3 * 2**29)), ("4Gi", str(4 * 2**30)), ("1Ei", str(2**60)),
    ("1k", "1000"), ("1M", "1e6"), ("2E", "2e18"), ("1e3", "1000"), ("1E-3", "0.001"),
    (".5", "0.5"), ("1.", "1"), ("+2", "2"), ("-1Gi", str(-(2**30))),
    ("0.1Gi", "107374182.4"), ("1e99999999999", "1e1000"),
])
def test_quantities(value: int | str, expected: str) -> None:
    assert parse_quantity(value) == Decimal(expected)


@pytest.mark.parametrize("value", [
    "", " 1", "1 ", "12 Mi", "1Xi", "1K", "1ki", "e3", "1e", "1e1.5", "1.5.5", "Gi", "0x10",
    True, 1.5,
])
def test_what_is_not_a_quantity(value: object) -> None:
    with pytest.raises(ValueError, match="is not a quantity such as 500m, 2 or 4Gi"):
        parse_quantity(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "extended"), [
    ("cpu", False), ("memory", False), ("hugepages-2Mi", False),
    ("kubernetes.io/something", False), ("nvidia.com/gpu", True), ("example.com/foo", True),
])
def test_extended_resources(name: str, extended: bool) -> None:
    assert is_extended_resource(name) is extended
