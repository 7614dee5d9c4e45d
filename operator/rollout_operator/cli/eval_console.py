"""The text `rolloutctl eval` / `test` print, block by block, in Osmosis 0.2.17's wording.

Pure functions returning lines, so golden tests compare them with the reference's output. Where
0.2.17 prints through Rich, a per-run score list in square brackets is taken as markup and
disappears; we print it, and end each progress line with the row and run it belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rollout_operator.cli.progress import format_duration

TIP_LOG_SAMPLES = "Tip: Use --log-samples to save full conversation logs for debugging."
RESUME_HINT = "Re-run the same command to resume from where you left off."
FRESH_HINT = "Use --fresh to re-run from scratch."


def header(
    version: str,
    model: str,
    base_url: str | None,
    baseline_model: str | None,
    baseline_base_url: str | None,
) -> list[str]:
    """`rolloutctl-eval vX`, the endpoint and model(s), then a blank line."""
    lines = [f"rolloutctl-eval v{version}"]
    if base_url:
        lines.append(f"Endpoint: {base_url}")
    lines.append(f"Model: {model}")
    if baseline_model:
        if baseline_base_url:
            lines.append(f"Baseline endpoint: {baseline_base_url}")
        lines.append(f"Baseline model: {baseline_model}")
    return [*lines, ""]


def connecting(model: str, base_url: str | None) -> list[str]:
    """The model client's two lines (the endpoint, or the provider taken from the name)."""
    if base_url:
        first = f"Connecting to endpoint: {base_url}"
    else:
        provider = model.split("/")[0].lower() if "/" in model else "openai"
        first = f"Initializing provider: {provider}"
    return [first, f"  Model: {model}"]


VERIFYING = "Verifying provider connectivity..."


def tools_loaded(mcp_arg: str, names: Sequence[str]) -> list[str]:
    found = f"  Discovered {len(names)} tool(s): {', '.join(names)}"
    return [f"Loading MCP tools: {mcp_arg}", found]


def dataset_loaded(
    path: str, total_rows: int, selected: int, limit: int | None, action: str = "evaluating"
) -> list[str]:
    counted = f"{total_rows} ({action} {selected})" if limit else f"{selected}"
    return [f"Loading dataset: {path}", f"  Total rows: {counted}"]


def eval_fns_loaded(refs_and_modes: Sequence[tuple[str, str]]) -> list[str]:
    refs = ", ".join(ref for ref, _ in refs_and_modes)
    return [f"Loading eval functions: {refs}", *(f"  {r} ({m} mode)" for r, m in refs_and_modes)]


def running(rows: int, n_runs: int, baseline: bool, batch_size: int) -> list[str]:
    runs = f" x{n_runs} runs" if n_runs > 1 else ""
    models = " x2 models" if baseline else ""
    batch = f", batch_size={batch_size}" if batch_size > 1 else ""
    return ["", f"Running evaluation ({rows} rows{runs}{models}{batch})..."]


def run_line(k: int, total: int, run: Mapping[str, Any]) -> str:
    """`[k/N] [tag] OK (dur, tokens) [scores] row R run S`, or FAILED with the error's start."""
    tag = f"[{run['model_tag']}] " if run.get("model_tag") else ""
    status = "OK" if run["success"] else "FAILED"
    cost = f"{format_duration(run['duration_ms'])}, {run['tokens']:,} tokens"
    line = f"[{k}/{total}] {tag}{status} ({cost})"
    if run["success"] and run.get("scores"):
        line += " [" + ", ".join(f"{n}={v:.3f}" for n, v in run["scores"].items()) + "]"
    if not run["success"] and run.get("error"):
        text = str(run["error"]).replace("\n", " ")
        line += " - " + (text[:47] + "..." if len(text) > 50 else text)
    return f"{line} row {run['row_index']} run {run['run_index']}"


def summary(block: Mapping[str, Any]) -> list[str]:
    """`Evaluation Results:` with totals, then each eval function's statistics and pass@k."""
    lines = [
        "",
        "Evaluation Results:",
        f"  Total runs: {block.get('total_runs', 0)}",
        f"  Duration: {format_duration(block.get('total_duration_ms', 0.0))}",
        f"  Total tokens: {block.get('total_tokens', 0):,}",
    ]
    eval_fns: Mapping[str, Mapping[str, Any]] = block.get("eval_fns") or {}
    if eval_fns:
        lines.append("")
        for name, stats in eval_fns.items():
            lines.append(
                f"  {name}: mean={stats.get('mean', 0.0):.3f} "
                f"median={stats.get('median', 0.0):.3f} std={stats.get('std', 0.0):.3f}"
            )
            pass_at = stats.get("pass_at_k") or {}
            for k in sorted(pass_at, key=int):
                lines.append(f"    pass@{k}: {float(pass_at[k]) * 100:.1f}%")
    return lines


def resuming(completed: int, total: int, mcp_spec: str) -> list[str]:
    return [
        f"Resuming eval ({completed}/{total} runs completed)",
        f"Note: Module fingerprint covers MCP directory {mcp_spec}. External dependency changes\n"
        "      are not detected. Use --fresh if you changed external imports.",
    ]


ONLY_NEW_SAMPLES = (
    "Note: Only new runs will be logged. Use --fresh to re-run all with full logging."
)


def interrupted(completed: int, total: int, cache_path: str) -> list[str]:
    return [
        "",
        f"Evaluation interrupted. Progress: {completed}/{total} runs.",
        f"Cache: {cache_path}",
        RESUME_HINT,
    ]


def stopped(reason: str) -> list[str]:
    return ["", f"Evaluation stopped due to systemic error: {reason}"]


def joined(lines: Iterable[str]) -> str:
    return "\n".join(lines)
