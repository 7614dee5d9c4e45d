"""`rolloutctl report` on what `rolloutctl eval` wrote (the calculator example against the
scripted model, one prompt always failing), rendered offline in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.report.chromium import Browser
from tests.report.conftest import keep_artifact
from tests.report.pages import open_every_row, open_row, plots, shown_stat, table
from tests.support.cli import EXAMPLE, run_cli
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

REWARD = "reward_fn.compute_reward:numbers_match_reward"
ROWS = 6
SAMPLES = 2


@pytest.fixture(scope="module")
def eval_output(scripted_model: ScriptedModelServer, tmp_path_factory: pytest.TempPathFactory
                ) -> Path:
    """results_*.json (and its samples) of an eval where the prompt with 52 always fails."""
    root = tmp_path_factory.mktemp("eval")
    done = run_cli(["eval", "--mcp", "mcp", "-d", "test_data.jsonl", "--eval-fn", REWARD,
                    "--model", "scripted:fail-on-52", "--base-url", scripted_model.base_url,
                    "--limit", str(ROWS), "--n", str(SAMPLES), "--batch-size", "8",
                    "--log-samples", "-o", str(root / "out"), "-q"],
                   env={"OSMOSIS_CACHE_DIR": str(root / "cache")})
    assert done.returncode == 0, done.stderr
    return next((root / "out").rglob("results_*.json"))


def _report(source: Path | str, out: Path) -> Path:
    done = run_cli(["report", str(source), "-o", str(out)])
    assert done.returncode == 0, done.stderr
    assert f"Report: {out}" in done.stdout
    return out


def _samples(results: Path) -> dict[tuple[int, int], list[dict[str, Any]]]:
    samples = next(results.parent.glob("samples_*.jsonl")).read_text().splitlines()
    return {(s["row_index"], s["run_index"]): s["messages"] for s in map(json.loads, samples)}


def _tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
            for m in messages for c in m.get("tool_calls") or ()]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def test_eval_report_renders_offline_with_every_row_plot_mean_and_tool_call(
    eval_output: Path, chromium: str, tmp_path: Path
) -> None:
    page = _report(eval_output, tmp_path / "report.html")
    document = _read_json(eval_output)
    runs = document["runs"]
    assert len(runs) == ROWS * SAMPLES and any(not r["success"] for r in runs)
    prompts = [json.loads(line)["user_prompt"]
               for line in (EXAMPLE / "test_data.jsonl").read_text().splitlines()[:ROWS]]

    async with Browser(chromium) as browser:
        await browser.open(page.as_uri())
        shown = await table(browser)
        assert shown["info"] == f"rows 1-{len(runs)} of {len(runs)}"
        assert len(shown["rows"]) == len(runs)
        prompt_column = shown["head"].index("prompt")
        assert {row[prompt_column] for row in shown["rows"]} == set(prompts)
        status_column = shown["head"].index("status")
        assert [row[status_column] for row in shown["rows"]] == [
            "completed" if r["success"] else "failed" for r in runs]

        mean = sum(r["scores"].get(REWARD, 0.0) if r["success"] else 0.0 for r in runs) / len(runs)
        assert 0 < mean < 1
        assert await shown_stat(browser, "mean", REWARD) == f"{mean:.4f}"

        charts = await plots(browser)
        assert charts["scores"]["points"] == len(runs) and charts["scores"]["marks"] >= 2
        assert charts["pass-at-k"]["marks"] > 0
        assert charts["failures"]["points"] == sum(1 for r in runs if not r["success"])
        assert charts["latency"]["points"] == charts["tokens"]["points"] == len(runs)

        assert (await open_row(browser, 0)).startswith("eval-0-run-0: row 0, sample 0")
        screenshot = keep_artifact(tmp_path / "report-eval.png", await browser.screenshot())

        samples = _samples(eval_output)
        opened = await open_every_row(browser)
        assert len(opened) == len(runs)
        for run, seen in zip(runs, opened, strict=True):
            messages = samples[(run["row_index"], run["run_index"])]
            assert seen["calls"] == _tool_calls(messages), seen["title"]
            assert seen["roles"] == [m["role"] for m in messages]
            if run["success"]:
                assert seen["calls"], "a completed calculator rollout calls multiply"
            else:
                assert run["error"] in seen["text"]

        assert browser.requests == [page.as_uri()], "the page asked for something else"
        assert browser.exceptions == []
        assert [entry for entry in browser.console if entry[0] == "error"] == []
    assert screenshot.stat().st_size > 10_000


async def test_header_click_sorts_and_the_filter_narrows(
    eval_output: Path, chromium: str, tmp_path: Path
) -> None:
    page = _report(eval_output, tmp_path / "report.html")
    async with Browser(chromium) as browser:
        await browser.open(page.as_uri())
        head = (await table(browser))["head"]
        tokens = head.index("tokens")
        clicks = "document.querySelector('#table-head th[data-key=\"tokens\"]').click()"
        await browser.evaluate(clicks)
        ascending = [int(row[tokens]) for row in (await table(browser))["rows"]]
        assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
        await browser.evaluate(clicks)
        descending = [int(row[tokens]) for row in (await table(browser))["rows"]]
        assert descending == sorted(ascending, reverse=True)

        await browser.evaluate("""(() => { const box = document.getElementById('filter');
            box.value = '52 *'; box.dispatchEvent(new Event('input')); })()""")
        narrowed = await table(browser)
        assert len(narrowed["rows"]) == SAMPLES
        assert all("52 *" in row[head.index("prompt")] for row in narrowed["rows"])


def test_without_samples_the_prompts_come_from_the_dataset(eval_output: Path, tmp_path: Path
                                                           ) -> None:
    from rollout_operator.report.load import load_report_input

    alone = tmp_path / eval_output.name
    alone.write_text(eval_output.read_text())
    report = load_report_input(str(alone))
    assert any("--log-samples" in note and "test_data.jsonl" in note for note in report.notes)
    rows = [json.loads(line) for line in (EXAMPLE / "test_data.jsonl").read_text().splitlines()]
    for rollout in report.rollouts:
        assert rollout.messages == [
            {"role": "system", "content": rows[rollout.row_index]["system_prompt"]},
            {"role": "user", "content": rows[rollout.row_index]["user_prompt"]}]
    with_samples = load_report_input(str(eval_output))
    assert with_samples.notes == []
    assert all(r.messages and r.messages[-1]["role"] in ("assistant", "user")
               for r in with_samples.rollouts)


def test_a_baseline_model_gets_its_own_figures_and_column(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    done = run_cli(["eval", "--mcp", "mcp", "-d", "test_data.jsonl", "--eval-fn", REWARD,
                    "--model", "scripted", "--base-url", scripted_model.base_url,
                    "--baseline-model", "scripted:wrong",
                    "--baseline-base-url", scripted_model.base_url, "--limit", "3",
                    "--batch-size", "6", "-o", str(tmp_path / "out"), "-q"],
                   env={"OSMOSIS_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    results = next((tmp_path / "out").rglob("results_*.json"))
    html = _report(results, tmp_path / "report.html").read_text()
    runs = _read_json(results)["runs"]
    for tag, label in (("primary", ""), ("baseline", "baseline")):  # the primary is untagged
        mine = [r for r in runs if r["model_tag"] == tag]
        assert len(mine) == 3
        mean = sum(r["scores"][REWARD] for r in mine) / 3
        assert (f'data-stat="mean" data-scorer="{REWARD}" data-tag="{label}" '
                f'data-value="{mean!r}">{mean:.4f}<') in html
    assert '"tag":[null,"baseline",null,"baseline",null,"baseline"]' in html
