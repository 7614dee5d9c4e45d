"""Text from trajectories is model- and user-controlled: in the report it is shown as text and
never runs, whatever it holds, and it cannot break the page."""

from __future__ import annotations

import json
from pathlib import Path

from rollout_operator.runtime.records import (
    JsonlRecordWriter,
    RecordError,
    TrajectoryRecord,
    Usage,
)
from tests.report.chromium import Browser
from tests.report.pages import open_every_row, table
from tests.support.cli import run_cli

ATTACK = '</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
TEMPLATE_SLOT = "{{script}}"


def _records() -> list[TrajectoryRecord]:
    call = {"id": "call-1", "type": "function",
            "function": {"name": "multiply", "arguments": json.dumps({"note": ATTACK})}}
    messages = [
        {"role": "system", "content": TEMPLATE_SLOT},
        {"role": "user", "content": f"What is 2 * 3? {ATTACK}"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call-1", "content": ATTACK},
        {"role": "assistant", "content": f"#### 6 {ATTACK}"},
    ]
    return [
        TrajectoryRecord(rollout_id=f"r-{ATTACK}", row_index=0, status="completed",
                         messages=messages, scores={f"x:{ATTACK}": 1.0}, reward=1.0,
                         ground_truth=ATTACK, usage=Usage(total_tokens=10, num_tool_calls=1)),
        TrajectoryRecord(rollout_id="r-2", row_index=1, status="failed", messages=messages[:2],
                         scores={f"x:{ATTACK}": 0.0}, reward=0.0,
                         error=RecordError(category="tool", message=ATTACK)),
    ]


async def test_script_and_markup_in_trajectories_stay_text(tmp_path: Path, chromium: str) -> None:
    source = tmp_path / "records.jsonl"
    with JsonlRecordWriter(source) as writer:
        writer.write_many(_records())
    page = tmp_path / "report.html"
    done = run_cli(["report", str(source), "-o", str(page)])
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "<img" not in html and ATTACK not in html

    async with Browser(chromium) as browser:
        await browser.open(page.as_uri())
        assert len((await table(browser))["rows"]) == 2
        opened = await open_every_row(browser)
        assert await browser.evaluate("window.pwned === undefined")
        assert await browser.evaluate("document.querySelectorAll('img').length") == 0
        assert await browser.evaluate("document.querySelectorAll('script').length") == 3
        first = opened[0]
        assert first["text"].count(ATTACK) >= 4  # prompt, tool result, answer, ground truth
        assert TEMPLATE_SLOT in first["text"]
        assert first["calls"] == [{"name": "multiply", "arguments": {"note": ATTACK}}]
        assert ATTACK in opened[1]["text"]  # the error message
        scorer = await browser.evaluate(
            "document.querySelector('[data-stat=\"mean\"]').dataset.scorer")
        assert scorer == f"x:{ATTACK}"
        assert browser.exceptions == []
        assert browser.requests == [page.as_uri()]
