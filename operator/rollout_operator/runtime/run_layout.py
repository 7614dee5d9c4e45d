"""Where a run's files live in object storage.

```
<output.url>/<namespace>/<name>-<uid8>/
  run.json                         spec snapshot (no secrets), commit, tools, versions
  tools.json                       the tools' schemas as the model saw them (first worker)
  shards/<index>/part-<n>.jsonl    trajectory records; each part written once, atomically
  results.json                     eval-compatible summary
  trajectories.parquet             compaction of every record, advantages filled in
<output.url>/bundles/<sha>-<depshash>.tar.gz
```

Keys below are relative to the run prefix (or, for bundles, to the output URL). Part numbers are
zero-padded so that a plain listing sorts them; readers still parse the number, so a run with
more parts than the padding covers stays in order.
"""

from __future__ import annotations

import re

RUN_JSON = "run.json"
RESULTS_JSON = "results.json"
TOOLS_JSON = "tools.json"
TRAJECTORIES_PARQUET = "trajectories.parquet"
SHARDS_DIR = "shards"
BUNDLES_DIR = "bundles"

PART_DIGITS = 6
UID_CHARS = 8

_PART = re.compile(r"^shards/(\d+)/part-(\d+)\.jsonl$")
_HEX = re.compile(r"^[0-9a-f]+$")
_SEGMENT = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def run_dir_name(name: str, uid: str) -> str:
    """`<name>-<uid8>`: unique per run even when a run is deleted and created again."""
    _check_segment("name", name)
    short = uid.replace("-", "")[:UID_CHARS].lower()
    if not re.fullmatch(r"[0-9a-z]+", short):
        raise ValueError(f"uid {uid!r} is not a Kubernetes object uid")
    return f"{name}-{short}"


def run_prefix(output_url: str, namespace: str, name: str, uid: str) -> str:
    """The URL under which a run's files live: `<output_url>/<namespace>/<name>-<uid8>`."""
    base = output_url.strip().rstrip("/")
    if not base:
        raise ValueError("output URL is empty; set spec.output.url or the operator's default")
    _check_segment("namespace", namespace)
    return f"{base}/{namespace}/{run_dir_name(name, uid)}"


def shard_dir(index: int) -> str:
    """`shards/<index>/`: the folder of one shard's parts."""
    _check_index("shard index", index)
    return f"{SHARDS_DIR}/{index}/"


def part_key(index: int, part: int) -> str:
    """`shards/<index>/part-<n>.jsonl`, with `n` zero-padded."""
    _check_index("part number", part)
    return f"{shard_dir(index)}part-{part:0{PART_DIGITS}d}.jsonl"


def parse_part_key(key: str) -> tuple[int, int] | None:
    """(shard index, part number) of a part key, or None for any other key."""
    match = _PART.match(key)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def bundle_key(commit: str, deps_hash: str) -> str:
    """`bundles/<sha>-<depshash>.tar.gz`, relative to the output URL (shared by runs)."""
    for label, value in (("commit", commit), ("dependency hash", deps_hash)):
        if not value or not _HEX.match(value):
            raise ValueError(f"{label} must be lowercase hex, got {value!r}")
    return f"{BUNDLES_DIR}/{commit}-{deps_hash}.tar.gz"


def bundle_url(output_url: str, commit: str, deps_hash: str) -> str:
    """The full URL of a bundle: `<output_url>/bundles/<sha>-<depshash>.tar.gz`."""
    return f"{output_url.strip().rstrip('/')}/{bundle_key(commit, deps_hash)}"


def _check_segment(label: str, value: str) -> None:
    if not _SEGMENT.match(value) or len(value) > 253:
        raise ValueError(f"{label} {value!r} is not a Kubernetes object name")


def _check_index(label: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{label} must be a whole number >= 0, got {value!r}")
