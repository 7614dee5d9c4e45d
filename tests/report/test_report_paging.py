"""A report of more rollouts than a page holds: paging, sorting across pages, opening any row."""

from __future__ import annotations

from pathlib import Path

from rollout_operator.runtime.records import JsonlRecordWriter, TrajectoryRecord, Usage
from tests.report.chromium import Browser
from tests.report.pages import open_row, table
from tests.support.cli import run_cli

COUNT = 250


def _record(index: int) -> TrajectoryRecord:
    call = {"id": f"c{index}", "type": "function",
            "function": {"name": "multiply", "arguments": f'{{"first_val": {index}}}'}}
    return TrajectoryRecord(
        rollout_id=f"r{index}", row_index=index // 2, sample_index=index % 2, status="completed",
        messages=[{"role": "user", "content": f"prompt {index}"},
                  {"role": "assistant", "content": None, "tool_calls": [call]}],
        scores={"s:score": (index % 7) / 6}, usage=Usage(total_tokens=(index * 37) % 1009))


async def test_pages_sort_across_pages_and_any_row_opens(tmp_path: Path, chromium: str) -> None:
    source = tmp_path / "records.jsonl"
    with JsonlRecordWriter(source) as writer:
        writer.write_many(_record(i) for i in range(COUNT))
    page = tmp_path / "report.html"
    assert run_cli(["report", str(source), "-o", str(page)]).returncode == 0

    async with Browser(chromium) as browser:
        await browser.open(page.as_uri())
        first = await table(browser)
        assert first["info"] == f"rows 1-100 of {COUNT}" and len(first["rows"]) == 100
        await browser.evaluate("document.getElementById('next').click()")
        await browser.evaluate("document.getElementById('next').click()")
        last = await table(browser)
        assert last["info"] == f"rows 201-{COUNT} of {COUNT}"
        assert [int(row[0]) for row in last["rows"]] == list(range(200, COUNT))
        assert await browser.evaluate("document.getElementById('next').disabled")

        tokens = first["head"].index("tokens")
        header = "document.querySelector('#table-head th[data-key=\"tokens\"]')"
        await browser.evaluate(f"{header}.click(); {header}.click()")
        top = await table(browser)
        assert top["info"] == f"rows 201-{COUNT} of {COUNT}"  # the page is kept
        await browser.evaluate("""(() => { const box = document.getElementById('status-filter');
            box.value = 'completed'; box.dispatchEvent(new Event('change')); })()""")
        top = await table(browser)
        everyone = sorted(((i * 37) % 1009 for i in range(COUNT)), reverse=True)
        assert [int(row[tokens]) for row in top["rows"]] == everyone[:100]

        assert await open_row(browser, 240) == "r240: row 120, sample 0"
        assert await browser.evaluate(
            "document.querySelector('#trajectory .tool-call .arguments').textContent"
        ) == '{\n  "first_val": 240\n}'

        # a link with #t=<index> opens that rollout as the page loads
        await browser.send("Page.navigate", url="about:blank")
        await browser.open(page.as_uri() + "#t=17")
        assert await browser.evaluate("""new Promise((resolve) => { const check = () =>
            document.body.dataset.trajectory === '17'
                ? resolve(document.querySelector('#trajectory h2').textContent)
                : setTimeout(check, 5); check(); })""") == "r17: row 8, sample 1"
