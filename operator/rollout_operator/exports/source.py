"""A finished (or running) run's output, as exports read it: records, settings, tool schemas."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.run_layout import RUN_JSON, SHARDS_DIR, TOOLS_JSON
from rollout_operator.runtime.shards import list_all_parts, read_all_records
from rollout_operator.runtime.storage import ObjectStore, StorageError, open_store

DEFAULT_PASS_THRESHOLD = 1.0
"""`spec.scoring.passThreshold`'s default, for a run whose run.json is not there."""


class ExportError(ValueError):
    """The run's output cannot be exported as asked; the message says what to do."""


def trainable(record: TrajectoryRecord) -> bool:
    """Whether a record may become training data: a completed rollout with a reward. Masked
    (infrastructure), invalid (dataset) and failed (no reward) records never are."""
    return record.status == "completed" and record.reward is not None


@dataclass(frozen=True, slots=True)
class RunOutput:
    """A run's folder in object storage: `<output.url>/<namespace>/<name>-<uid8>`."""

    store: ObjectStore
    run_json: Mapping[str, Any]
    tool_schemas: list[dict[str, Any]] | None

    @classmethod
    async def open(cls, location: str, *, endpoint: str | None = None,
                   environ: Mapping[str, str] = os.environ) -> RunOutput:
        """The run at `location` (a folder, `file://`, `s3://` or `gs://` URL); raises
        `ExportError` when nothing there is a run's records."""
        store = open_store(location, endpoint=endpoint, environ=environ)
        if not await list_all_parts(store, ""):
            raise ExportError(
                f"{store.url} holds no trajectory records ({SHARDS_DIR}/<n>/part-*.jsonl): give "
                "a run's folder, <output.url>/<namespace>/<name>-<uid8> (rolloutctl run prints "
                "it as runPrefix)")
        run_json = await _json(store, RUN_JSON)
        schemas = await _json(store, TOOLS_JSON)
        return cls(store, run_json if isinstance(run_json, dict) else {},
                   schemas if isinstance(schemas, list) else None)

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.run_json.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def pass_threshold(self) -> float:
        """The run's `spec.scoring.passThreshold` (what pass@k counts as a pass), else 1.0."""
        value = (self.spec.get("scoring") or {}).get("passThreshold")
        return float(value) if isinstance(value, int | float) else DEFAULT_PASS_THRESHOLD

    @property
    def model_name(self) -> str | None:
        model = self.spec.get("model") or {}
        name = model.get("name") or (model.get("serve") or {}).get("model")
        return str(name) if name else None

    async def records(self) -> AsyncIterator[TrajectoryRecord]:
        """One record per (row, sample): the best committed (see `read_all_records`)."""
        async for record in read_all_records(self.store, ""):
            yield record

    async def all_records(self) -> list[TrajectoryRecord]:
        return [record async for record in self.records()]


async def _json(store: ObjectStore, key: str) -> Any:
    try:
        if not await store.exists(key):
            return None
        return json.loads(await store.get(key))
    except (StorageError, ValueError):
        return None
