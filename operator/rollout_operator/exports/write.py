"""Writing an export: JSONL files, a Parquet file or a folder of ATIF documents, each whole or
not at all (written under a temporary name, then renamed)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rollout_operator.exports.atif import atif_file_name, to_atif
from rollout_operator.exports.dpo import dpo_rows
from rollout_operator.exports.sft import sft_rows
from rollout_operator.exports.source import RunOutput
from rollout_operator.exports.tokens import token_rows, write_token_parquet

ExportFormat = Literal["sft", "dpo", "tokens", "atif"]
FORMATS: tuple[ExportFormat, ...] = ("sft", "dpo", "tokens", "atif")
NEVER_EXPORTED = ("masked", "invalid")


@dataclass(slots=True)
class ExportResult:
    """What an export wrote and what it left out."""

    format: ExportFormat
    path: str
    written: int = 0
    records: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"format": self.format, "path": self.path, "written": self.written,
                "records": self.records, "leftOut": self.left_out, "notes": self.notes}


async def export_run(output: RunOutput, fmt: ExportFormat, path: str | os.PathLike[str], *,
                     threshold: float | None = None, scale_by_std: bool = False) -> ExportResult:
    """Export the run's records in `fmt` to `path` (a file; a folder for `atif`)."""
    records = await output.all_records()
    result = ExportResult(fmt, str(path), records=len(records))
    for status in NEVER_EXPORTED:
        count = sum(1 for r in records if r.status == status)
        if count:
            result.left_out[status] = count
    if fmt == "sft":
        cut = output.pass_threshold if threshold is None else threshold
        result.written = _write_jsonl(sft_rows(records, cut, output.tool_schemas), path)
        result.notes.append(f"pass threshold {cut:g}")
    elif fmt == "dpo":
        result.written = _write_jsonl(dpo_rows(records), path)
    elif fmt == "tokens":
        export = token_rows(records, scale_by_std=scale_by_std)
        result.written = write_token_parquet(export.rows, path)
        if export.without_tokens:
            result.left_out["without token ids"] = export.without_tokens
        if export.not_lined_up:
            result.left_out["turns without token ids"] = len(export.not_lined_up)
            result.notes += export.not_lined_up[:5]
        if export.partly_trained:
            result.notes.append(f"{len(export.partly_trained)} record(s) train only some of "
                                "their turns")
            result.notes += export.partly_trained[:5]
    else:
        kept = [r for r in records if r.status not in NEVER_EXPORTED]
        result.written = _write_atif(output, kept, Path(path))
    return result


def _write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    written = 0
    try:
        with partial.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _write_atif(output: RunOutput, records: list[Any], folder: Path) -> int:
    from rollout_operator.exports.conversation import tool_definitions

    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; the atif export writes a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for record in records:
            document = to_atif(record, model_name=output.model_name,
                               tool_definitions=tool_definitions(record, output.tool_schemas))
            (partial / atif_file_name(record)).write_text(
                json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
                encoding="utf-8")
        if folder.exists():
            for old in folder.glob("row_*_run_*.json"):
                old.unlink()
        folder.mkdir(exist_ok=True)
        for written in partial.iterdir():
            os.replace(written, folder / written.name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return len(records)
