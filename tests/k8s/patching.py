"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the apiserver applies them.

Strategic merge patch is applied as a merge patch: lists are replaced, not merged by key. A
failed `test` operation raises `PatchTestFailed` (the apiserver's 422, which Kopf treats as "a
newer version exists, retry"); any other malformed patch raises `PatchError` (400 or 422).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied to this object; the message says where."""


class PatchTestFailed(PatchError):
    """A `test` operation found a different value."""


def merge_patch(target: Any, patch: Any) -> Any:
    """The result of applying `patch` to `target`; neither is modified (the result shares the
    parts the patch does not touch with `target`: copy it before changing it in place)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"JSON pointer {pointer!r} must start with '/'")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _index(container: list[Any], token: str, pointer: str, *, adding: bool) -> int:
    if token == "-" and adding:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"{pointer!r}: {token!r} is not a list index")
    index = int(token)
    limit = len(container) if adding else len(container) - 1
    if index > limit:
        raise PatchError(f"{pointer!r}: index {index} is out of range")
    return index


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("this operation needs a non-root path")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, pointer)
    return node, tokens[-1]


def _child(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise PatchError(f"{pointer!r}: no key {token!r}")
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, pointer, adding=False)]
    raise PatchError(f"{pointer!r}: cannot descend into a {type(node).__name__}")


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _tokens(pointer):
        node = _child(node, token, pointer)
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return copy.deepcopy(value)
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[token] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, pointer, adding=True), copy.deepcopy(value))
    else:
        raise PatchError(f"{pointer!r}: cannot add into a {type(parent).__name__}")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"{pointer!r}: no key {token!r} to remove")
        del parent[token]
    elif isinstance(parent, list):
        del parent[_index(parent, token, pointer, adding=False)]
    else:
        raise PatchError(f"{pointer!r}: cannot remove from a {type(parent).__name__}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """The result of applying the RFC 6902 `operations` to `target`; `target` is not modified."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"JSON patch {op!r} at {path!r} has no value")
        if op == "add":
            doc = _add(doc, path, operation["value"])
        elif op == "remove":
            doc = _remove(doc, path)
        elif op == "replace":
            _get(doc, path)
            doc = _add(_remove(doc, path), path, operation["value"]) if path else operation["value"]
        elif op == "move":
            value = _get(doc, operation["from"])
            doc = _add(_remove(doc, operation["from"]), path, value)
        elif op == "copy":
            doc = _add(doc, path, _get(doc, operation["from"]))
        elif op == "test":
            try:
                actual = _get(doc, path)
            except PatchError as exc:
                raise PatchTestFailed(f"test at {path!r} failed: {exc}") from exc
            if actual != operation["value"]:
                raise PatchTestFailed(
                    f"test at {path!r} failed: expected {operation['value']!r}, found {actual!r}"
                )
        else:
            raise PatchError(f"unknown JSON patch operation {op!r}")
    return doc
