"""A Python client for trainers: submit a RolloutRun, wait for it, and stream its trajectory
records as their parts are committed, resumable from a cursor.

```python
from rollout_operator.client import LocalBackend, submit

run = submit("rolloutrun.yaml", backend=LocalBackend())
stream = run.stream()
for record in stream:            # TrajectoryRecord, as the workers wrote it
    ...                          # str(stream.cursor) resumes after this record
outcome = run.wait()
```

Both backends (`LocalBackend`: `rolloutctl run` on this machine; `ClusterBackend`: a RolloutRun
through the Kubernetes API) give the same `Run`; records come from the run's folder in object
storage, so no server is needed. `open_run(url)` streams the records of a run already there.
See `client.stream` for what a stream yields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rollout_operator.client.cluster import ClusterBackend
from rollout_operator.client.cursor import Cursor, CursorError
from rollout_operator.client.local import LocalBackend
from rollout_operator.client.run import Run, RunOutcome, SyncRecordStream
from rollout_operator.client.stream import RecordStream
from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.storage import open_store

__all__ = ["ClusterBackend", "Cursor", "CursorError", "LocalBackend", "RecordStream", "Run",
           "RunOutcome", "SyncRecordStream", "TrajectoryRecord", "open_run", "submit"]


def submit(manifest: str | os.PathLike[str] | Mapping[str, Any], *,
           backend: LocalBackend | ClusterBackend | None = None,
           name: str | None = None) -> Run:
    """Start the RolloutRun `manifest` (a file for the local backend, or a mapping) on
    `backend` (default: `LocalBackend()`)."""
    chosen = backend if backend is not None else LocalBackend()
    if isinstance(chosen, ClusterBackend):
        if not isinstance(manifest, Mapping):
            import yaml

            with open(manifest, encoding="utf-8") as handle:
                manifest = yaml.safe_load(handle)
            assert isinstance(manifest, Mapping)
        return chosen.submit(manifest, name=name)
    return chosen.submit(manifest, name=name)


def open_run(run_prefix: str, *, cursor: Cursor | str | None = None,
             include_masked: bool = False, endpoint: str | None = None,
             environ: Mapping[str, str] | None = None) -> SyncRecordStream:
    """The records committed so far under a run's folder (`run_prefix`), after `cursor`, for
    a plain `for` loop (`RecordStream(open_store(run_prefix))` is the async form)."""
    store = open_store(run_prefix, endpoint=endpoint,
                       environ=environ if environ is not None else os.environ)
    return SyncRecordStream(RecordStream(store, cursor=cursor, include_masked=include_masked))
