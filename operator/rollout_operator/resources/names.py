"""Deterministic names and label values for a run's children.

A RolloutRun's name may be up to 253 characters and contain dots; a Service name must be a
DNS-1035 label and a Job's name ends up in a label value, so both must be at most 63 characters.
Child names therefore cut the run's name short and end with a hash of the full name and uid:
two runs whose names share a long prefix, or a run deleted and re-created under the same name,
never get the same child names, and the same run always gets the same ones.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME_LENGTH = 63
SUFFIX_LENGTH = 8

_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def run_suffix(run_name: str, uid: str) -> str:
    """Eight hex characters that identify one run (its full name and its uid)."""
    digest = hashlib.sha256(f"{run_name}\0{uid}".encode()).hexdigest()
    return digest[:SUFFIX_LENGTH]


def _dns_fragment(text: str) -> str:
    """Lower-case `text` and replace everything outside [a-z0-9-] by single dashes."""
    cleaned = _DASHES.sub("-", _INVALID.sub("-", text.lower())).strip("-")
    if cleaned and not cleaned[0].isalpha():
        cleaned = f"r-{cleaned}"
    return cleaned or "run"


def child_name(run_name: str, uid: str, component: str) -> str:
    """`<run name, cut short>-<component>-<suffix>`: a DNS-1035 label of at most 63 characters."""
    component_part = _dns_fragment(component)
    tail = f"-{component_part}-{run_suffix(run_name, uid)}"
    room = MAX_NAME_LENGTH - len(tail)
    if room < 1:
        raise ValueError(f"component name {component!r} is too long for a child name")
    head = _dns_fragment(run_name)[:room].rstrip("-") or "r"
    return f"{head}{tail}"


def is_dns_label(name: str) -> bool:
    """True when `name` is a DNS-1035 label (what Service names must be)."""
    return len(name) <= MAX_NAME_LENGTH and bool(_DNS_LABEL.match(name))


def label_value(text: str) -> str:
    """`text` as a valid label value: kept when it is one, otherwise cut short with a hash."""
    if len(text) <= MAX_NAME_LENGTH and (not text or _LABEL_VALUE.match(text)):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:SUFFIX_LENGTH]
    cleaned = _LABEL_INVALID.sub("-", text)
    head = cleaned[: MAX_NAME_LENGTH - SUFFIX_LENGTH - 1].strip("-_.")
    return f"{head}-{digest}" if head else digest
