"""`rolloutctl report` on a `rolloutctl run` output folder (the calculator example against the
scripted model), on disk and in S3, rendered offline in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    write_manifest,
)
from tests.report.chromium import Browser
from tests.report.conftest import keep_artifact
from tests.report.pages import open_every_row, open_row, plots, shown_stat, table
from tests.support.cli import run_cli
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

ROWS, SAMPLES = 4, 2


@pytest.fixture(scope="module")
def run_folder(scripted_model: ScriptedModelServer, tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    root = tmp_path_factory.mktemp("run")
    path = write_manifest(root / "run.yaml", manifest(
        "report", str(EXAMPLE), scripted_model.base_url, (root / "out").as_uri(), rows=ROWS,
        samples=SAMPLES, shards=1, model="scripted:report-run"))
    done = run_local(path, "--json", "--no-sandbox", cwd=root)
    assert done.returncode == 0, done.stderr
    return file_path(result_json(done)["runPrefix"])


def _upload(s3: S3Server, folder: Path, prefix: str) -> None:
    bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
    client = s3.client()
    for path in folder.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{key_prefix}/{path.relative_to(folder)}",
                              Body=path.read_bytes())


def _by_item(run_dir: Path) -> dict[tuple[int, int], dict[str, Any]]:
    return {(r["row_index"], r["sample_index"]): r for r in records(run_dir)}


async def _check_page(chromium: str, page: Path, run_dir: Path, screenshot: str) -> None:
    found = _by_item(run_dir)
    assert len(found) == ROWS * SAMPLES
    prompts = {next(m["content"] for m in r["messages"] if m["role"] == "user")
               for r in found.values()}
    results = json.loads((run_dir / "results.json").read_text())
    async with Browser(chromium) as browser:
        await browser.open(page.as_uri())
        shown = await table(browser)
        assert len(shown["rows"]) == len(found)
        assert {row[shown["head"].index("prompt")] for row in shown["rows"]} == prompts
        mean = sum(r["scores"][REWARD] for r in found.values()) / len(found)
        assert await shown_stat(browser, "mean", REWARD) == f"{mean:.4f}"
        assert mean == results["summary"]["eval_fns"][REWARD]["mean"]
        charts = await plots(browser)
        assert charts["scores"]["points"] == len(found) and charts["scores"]["marks"] >= 1
        assert charts["pass-at-k"]["marks"] > 0
        assert "row 0, sample 0" in await open_row(browser, 0)
        keep_artifact(page.with_name(screenshot), await browser.screenshot())
        for seen, row in zip(await open_every_row(browser), shown["rows"], strict=True):
            record = found[(int(row[1]), int(row[2]))]
            calls = [{"name": c["function"]["name"],
                      "arguments": json.loads(c["function"]["arguments"])}
                     for m in record["messages"] for c in m.get("tool_calls") or ()]
            assert calls and seen["calls"] == calls
            assert seen["roles"] == [m["role"] for m in record["messages"]]
        assert browser.requests == [page.as_uri()]
        assert browser.exceptions == []


async def test_run_folder_report(run_folder: Path, chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    done = run_cli(["report", str(run_folder), "-o", str(page)])
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    commit = json.loads((run_folder / "run.json").read_text())["commit"]
    assert f'data-fact="commit">{commit}<' in html
    await _check_page(chromium, page, run_folder, "report-run.png")


async def test_run_folder_in_s3(run_folder: Path, chromium: str, tmp_path: Path) -> None:
    with S3Server() as s3:
        prefix = s3.bucket() + "/default/" + run_folder.name
        _upload(s3, run_folder, prefix)
        page = tmp_path / "report.html"
        done = run_cli(["report", prefix, "-o", str(page)], env=s3.env)
        assert done.returncode == 0, done.stderr
    await _check_page(chromium, page, run_folder, "report-run-s3.png")


def test_an_output_root_names_the_runs_in_it(run_folder: Path, tmp_path: Path) -> None:
    root = run_folder.parent.parent
    done = run_cli(["report", str(root), "-o", str(tmp_path / "r.html")])
    assert done.returncode == 1
    assert "holds runs, not one run's files" in done.stderr
    assert run_folder.as_uri() in done.stderr


def test_a_run_not_yet_aggregated_is_read_from_its_shards(run_folder: Path, tmp_path: Path
                                                          ) -> None:
    from rollout_operator.report.load import load_report_input

    copy = tmp_path / run_folder.name
    shutil.copytree(run_folder, copy)
    (copy / "results.json").unlink()
    (copy / "trajectories.parquet").unlink()
    report = load_report_input(str(copy))
    assert report.status == "not aggregated" and report.summary is None
    assert any("not been aggregated" in note for note in report.notes)
    assert {(r.row_index, r.sample_index) for r in report.rollouts} == set(_by_item(run_folder))
    assert all(r.messages and r.tool_calls == 1 for r in report.rollouts)
    assert report.scorers == [REWARD]
    assert report.commit == json.loads((run_folder / "run.json").read_text())["commit"]
