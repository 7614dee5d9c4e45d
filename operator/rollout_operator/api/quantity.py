"""Kubernetes resource quantities (`500m`, `4Gi`, `1e3`, `2`) as exact decimal numbers.

The grammar is the one Kubernetes parses: an optionally signed decimal number, then either a
binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m k M G T P E) or an integer exponent
(`e3`, `E-2`). The CRD's pattern is slightly looser (it lets a fractional exponent through);
this parser is the one that decides.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

_GRAMMAR = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_MULTIPLIERS = {
    "": Decimal(1),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}
# An exponent beyond this is refused by every bound anyway; clamping keeps the arithmetic small.
_MAX_EXPONENT = 1000


def parse_quantity(value: int | str) -> Decimal:
    """The exact amount `value` stands for (`"1.5Gi"` -> 1610612736); `ValueError` if it is not
    a Kubernetes quantity."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a quantity such as 500m, 2 or 4Gi")
    if isinstance(value, int):
        return Decimal(value)
    match = _GRAMMAR.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a quantity such as 500m, 2 or 4Gi")
    number = Decimal(match["number"])
    exact = Context(prec=len(value) + 40)  # enough digits that nothing is rounded
    if match["exponent"] is not None:
        exponent = max(-_MAX_EXPONENT, min(_MAX_EXPONENT, int(match["exponent"])))
        return number.scaleb(exponent, exact)
    return exact.multiply(number, _MULTIPLIERS[match["suffix"] or ""])


def is_extended_resource(name: str) -> bool:
    """A resource outside the `kubernetes.io` namespace, e.g. `nvidia.com/gpu`: Kubernetes
    counts it in whole units and does not overcommit it (its request must equal its limit)."""
    return "/" in name and "kubernetes.io/" not in name
