"""WorkspaceRunner without a rollout server to reach: the rollout is masked (infrastructure,
never scored), the gateway's account is closed, and no ATIF file is kept; a bad row is
invalid without any call."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from rollout_operator.gateway.server import Gateway
from rollout_operator.gateway.upstream import make_upstream
from rollout_operator.runtime.dataset import BadRow
from rollout_operator.runtime.records import TrajectoryRecord
from rollout_operator.runtime.rollout import WorkItem
from rollout_operator.workspaces.dataset import EvalRow
from rollout_operator.workspaces.protocol import RolloutClient
from rollout_operator.workspaces.shard_runner import WorkspaceRunner


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def play(rows: list[EvalRow | BadRow]) -> tuple[list[TrajectoryRecord], list[str], int]:
    fetched: list[str] = []

    async def fetch(rollout_id: str) -> bytes | None:
        fetched.append(rollout_id)
        return None

    async def save(rollout_id: str, data: bytes) -> None:
        raise AssertionError("nothing to save")

    gateway = Gateway(make_upstream("openai/scripted", "http://127.0.0.1:9/v1", None), "t")
    await gateway.start()
    client = RolloutClient(f"http://127.0.0.1:{closed_port()}")
    runner = WorkspaceRunner(gateway=gateway, token="t", client=client,
                             gateway_base=gateway.url, agent_timeout_s=5, grader_timeout_s=5,
                             fetch_trajectory=fetch, save_trajectory=save)
    try:
        records = [await runner.play(WorkItem(f"run-{row.row_index}-0", row)) for row in rows]
        open_accounts = sum(1 for row in rows if f"run-{row.row_index}-0" in gateway.ledger)
    finally:
        await client.close()
        await gateway.close()
    return records, fetched, open_accounts


def test_unreachable_server_masks_and_bad_rows_are_invalid(tmp_path: Path) -> None:
    rows: list[EvalRow | BadRow] = [
        EvalRow(0, 0, [{"role": "user", "content": "What is 6 * 7?"}], "42", None),
        BadRow(1, "user_prompt is required", source="data/x.jsonl"),
    ]
    records, fetched, open_accounts = asyncio.run(play(rows))
    masked, invalid = records
    assert masked.status == "masked" and masked.reward is None and masked.scores == {}
    assert masked.error is not None and masked.error.category == "sandbox"
    assert masked.error.message.startswith("rollout server: ")
    assert masked.ground_truth == "42" and masked.tools == []
    assert invalid.status == "invalid" and invalid.error is not None
    assert invalid.error.message == "data/x.jsonl row 1: user_prompt is required"
    assert len(fetched) == 1 and open_accounts == 0
