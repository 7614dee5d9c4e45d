"""Task ids, fingerprints and cache folder names, computed as `osmosis eval` 0.2.17 computes them.

Both tools keep their caches under the same `OSMOSIS_CACHE_DIR`, so a run started by one is
resumed by the other only when every byte that goes into the id agrees:

- the configuration (`task_config`): the flags as typed (model and dataset path unchanged, the
  MCP folder as `mcp:<absolute path>`, eval functions sorted), entries that are None left out,
  an empty `completion_params` left out, serialised as sorted-key JSON with `repr` floats
  (`-0.0` as `0.0`; NaN and infinities refused);
- `config_hash` = xxh3-128 hex of that JSON, `task_id` = its first 12 characters;
- fingerprints (xxh3-128 hex) of the dataset's bytes, of every `.py` file under the MCP folder
  (relative path then bytes, sorted by path, symlinks skipped; None when there is none) and of
  the eval functions' module files (absolute path then bytes, sorted by path);
- folder names from `sanitize_path_part`: accents dropped, anything but word characters and `-`
  turned into `-`, lower case, Windows device names prefixed with `_`, long names cut with a
  4-character hash suffix.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import xxhash

TASK_ID_LENGTH = 12
_CHUNK = 128 * 1024
_WINDOWS_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(10)}
    | {f"LPT{i}" for i in range(10)}
)


def _normalised(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(
                f"Non-finite float {value!r} in eval config. "
                "Float values must be finite (NaN and Inf are not allowed)."
            )
        return 0.0 if value == 0.0 else value
    if isinstance(value, Mapping):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_normalised(item) for item in value]
    return value


def deterministic_json(value: Any) -> bytes:
    """Sorted-key JSON with round-trip floats, the bytes a task id is hashed from."""
    return json.dumps(_normalised(value), sort_keys=True).encode()


def task_config(
    *,
    model: str,
    module: str,
    dataset: str,
    eval_fns: Iterable[str],
    n_runs: int,
    max_turns: int,
    pass_threshold: float,
    offset: int = 0,
    limit: int | None = None,
    completion_params: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    baseline_model: str | None = None,
    baseline_base_url: str | None = None,
    dataset_fingerprint: str | None = None,
    module_fingerprint: str | None = None,
    eval_fns_fingerprint: str | None = None,
) -> dict[str, Any]:
    """The configuration stored in the cache file (None entries dropped; params kept if empty)."""
    config: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "baseline_model": baseline_model,
        "baseline_base_url": baseline_base_url,
        "module": module,
        "dataset": dataset,
        "eval_fns": sorted(eval_fns),
        "n_runs": n_runs,
        "max_turns": max_turns,
        "pass_threshold": pass_threshold,
        "offset": offset,
        "limit": limit,
        "completion_params": dict(completion_params or {}),
        "dataset_fingerprint": dataset_fingerprint,
        "module_fingerprint": module_fingerprint,
        "eval_fns_fingerprint": eval_fns_fingerprint,
    }
    return {key: value for key, value in config.items() if value is not None}


def compute_task_id(config: Mapping[str, Any]) -> tuple[str, str]:
    """(task_id, config_hash) of a `task_config` (an empty `completion_params` is not hashed)."""
    hashed = {key: value for key, value in config.items() if value is not None}
    if not hashed.get("completion_params"):
        hashed.pop("completion_params", None)
    hashed["eval_fns"] = sorted(hashed.get("eval_fns", []))
    config_hash = xxhash.xxh3_128_hexdigest(deterministic_json(hashed))
    return config_hash[:TASK_ID_LENGTH], config_hash


def dataset_fingerprint(path: str | Path) -> str:
    """xxh3-128 of the dataset file's bytes (raises FileNotFoundError)."""
    digest = xxhash.xxh3_128()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mcp_fingerprint(directory: Path) -> str | None:
    """xxh3-128 over each `.py` file's relative path and bytes; None if none or unreadable."""
    if not directory.is_dir():
        return None
    try:
        files = sorted(p for p in directory.rglob("*.py") if not p.is_symlink())
    except OSError:
        return None
    if not files:
        return None
    digest = xxhash.xxh3_128()
    try:
        for file in files:
            digest.update(str(file.relative_to(directory)).encode())
            digest.update(file.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


def module_source(module_name: str, import_root: Path) -> Path | None:
    """The `.py` file a dotted module resolves to from `import_root` (else from `sys.path`)."""
    relative = Path(*module_name.split("."))
    candidates = (import_root / relative.with_suffix(".py"), import_root / relative / "__init__.py")
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def eval_fns_fingerprint(refs: Iterable[str], import_root: Path) -> str | None:
    """xxh3-128 over each distinct eval-function module file's absolute path and bytes."""
    files: dict[str, Path] = {}
    for ref in refs:
        source = module_source(ref.partition(":")[0], import_root)
        if source is None:
            return None
        files[str(source)] = source
    if not files:
        return None
    digest = xxhash.xxh3_128()
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(files[name].read_bytes())
    return digest.hexdigest()


def sanitize_path_part(text: str, max_len: int = 60) -> str:
    """A model name or dataset stem as one cache folder name, as `osmosis eval` names it."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    dashed = re.sub(r"-+", "-", re.sub(r"[^\w-]", "-", stripped)).strip("-")
    if not dashed:
        return f"eval-{xxhash.xxh3_128_hexdigest(text.encode())[:8]}"
    name = dashed.lower()
    if name.upper() in _WINDOWS_DEVICE_NAMES:
        name = f"_{name}"
    if len(name) > max_len:
        name = f"{name[: max_len - 5]}_{xxhash.xxh3_128_hexdigest(text.encode())[:4]}"
    return name
