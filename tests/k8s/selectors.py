"""Label and field selectors as the Kubernetes API parses and applies them.

Label selectors take the full set-based syntax (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
`!a`); field selectors take equality on any dotted path (`metadata.name=x`, `status.phase!=Done`).
A malformed selector raises `SelectorError`, which the emulator answers with 400 as a real
apiserver does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]

_NAME_PART = r"[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?"
_KEY = re.compile(rf"^({_NAME_PART}/)?{_NAME_PART}$")
_SET_OP = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")
_EQ_OP = re.compile(r"^(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s]*)$")


class SelectorError(ValueError):
    """The selector does not parse; the message says which part."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of a set term."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    terms.append(current.strip())
    return [term for term in terms if term]


def _label_term(term: str) -> Matcher:
    if match := _SET_OP.match(term):
        key, op = match["key"], match["op"]
        values = {value.strip() for value in match["values"].split(",") if value.strip()}
        _check_key(key, term)
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    if match := _EQ_OP.match(term):
        key, op, value = match["key"], match["op"], match["value"]
        _check_key(key, term)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    if term.startswith("!"):
        key = term[1:].strip()
        _check_key(key, term)
        return lambda labels: key not in labels
    _check_key(term, term)
    return lambda labels: term in labels


def _check_key(key: str, term: str) -> None:
    if not _KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {term!r}")


def parse_label_selector(text: str | None) -> Matcher:
    """A predicate over a labels mapping; an empty selector matches everything."""
    matchers = [_label_term(term) for term in _split_terms(text or "")]
    return lambda labels: all(matcher(labels) for matcher in matchers)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field_term(term: str) -> Callable[[Mapping[str, Any]], bool]:
    match = _EQ_OP.match(term)
    if not match:
        raise SelectorError(f"invalid field selector term {term!r}: expected path=value or "
                            "path!=value")
    path, op, value = match["key"], match["op"], match["value"]
    if op == "!=":
        return lambda obj: _field_value(obj, path) != value
    return lambda obj: _field_value(obj, path) == value


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a whole object; an empty selector matches everything."""
    matchers = [_field_term(term) for term in _split_terms(text or "")]
    return lambda obj: all(matcher(obj) for matcher in matchers)


def label_selector_from_spec(selector: Mapping[str, Any] | None) -> Matcher:
    """The predicate of a `LabelSelector` object (`matchLabels` and `matchExpressions`)."""
    selector = selector or {}
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, op = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
             "Exists": key, "DoesNotExist": f"!{key}"}[op]
        )
    return parse_label_selector(",".join(terms))
