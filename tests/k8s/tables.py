"""Server-side tables (`kubectl get` output), with a CRD's additional printer columns.

kubectl asks for `as=Table`; the apiserver answers with columns and rows of cells. Built-in
types get Name and Age; a custom resource gets Name and its printer columns (or Age), their
JSONPath evaluated for the common forms: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from tests.k8s.catalog import ResourceType

Obj = dict[str, Any]
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\*\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*"
                   r"[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value the path selects (the subset of JSONPath printer columns use)."""
    values = [obj]
    position = 0
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            return []
        position = match.end()
        key, index, filter_key, filter_value = match.groups()
        selected: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, dict) and key in value:
                selected.append(value[key])
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                selected.append(value[int(index)])
            elif match.group(0) == "[*]" and isinstance(value, list):
                selected.extend(value)
            elif filter_key is not None and isinstance(value, list):
                selected.extend(item for item in value if _has(item, filter_key, filter_value))
        values = selected
    return values


def _has(item: Any, key: str, expected: str) -> bool:
    found = jsonpath(item, "." + key)
    return bool(found) and str(found[0]) == expected


def age(timestamp: str | None) -> str:
    """How old a timestamp is, as kubectl prints it (`42s`, `5m3s`, `3h`, `2d`)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.UTC)
    seconds = max(int((datetime.datetime.now(datetime.UTC) - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d"


def _cell(obj: Obj, column: Obj) -> Any:
    values = jsonpath(obj, column.get("jsonPath", ""))
    if not values:
        return None
    if column.get("type") == "date":
        return age(str(values[0]))
    if len(values) == 1 and column.get("type") in ("integer", "number", "boolean"):
        return values[0]
    return ",".join(str(value) for value in values)


def table(rtype: ResourceType, objects: list[Obj], resource_version: str, *,
          include_object: bool) -> Obj:
    """The `Table` of `objects` as the apiserver renders it for kubectl."""
    columns: list[Obj] = rtype.printer_columns or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": column["name"], "type": column.get("type", "string"),
                     "format": column.get("format", ""), "priority": column.get("priority", 0),
                     "description": column.get("description", "")} for column in columns]
    rows = []
    for obj in objects:
        shown = obj if include_object else {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}
        rows.append({"cells": [obj["metadata"]["name"], *(_cell(obj, c) for c in columns)],
                     "object": shown})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
