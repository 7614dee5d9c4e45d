"""The scoring API between workers and scorer servers: versions are checked both ways, and a
scorer server that answers junk (the user-code side is untrusted) costs the rollout a mask,
never a crash of the worker or a made-up score."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from rollout_operator.runtime.scorer_client import RemoteScorers, ScoringUnavailable
from rollout_operator.runtime.scorer_protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    ScoreResponse,
    parse_response,
)
from tests.operator.harness import scorer_server
from tests.support.cli import EXAMPLE
from tests.support.loopback import BackgroundApp

REWARD = "reward_fn.compute_reward:numbers_match_reward"
MESSAGES = [{"role": "user", "content": "What is 6 * 7?"},
            {"role": "assistant", "content": "#### 42"}]


@pytest.fixture(scope="module")
def scorer_url() -> Iterator[str]:
    """`rolloutctl serve-scorers` for the calculator, on a socket handed to it."""
    with scorer_server(EXAMPLE, [REWARD]) as url:
        yield url


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/v1/score", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_a_batch_is_scored_and_the_served_scorers_are_checked(scorer_url: str) -> None:
    scorers = RemoteScorers(scorer_url, refs=[REWARD], timeout_s=10)
    try:
        assert await scorers.start(wait_s=60) == [REWARD]
        right = await scorers.score(MESSAGES, "42", {})
        wrong = await scorers.score(MESSAGES, "41", {})
        assert (right.scores, right.errors) == ({REWARD: 1.0}, {})
        assert (wrong.scores, wrong.errors) == ({REWARD: 0.0}, {})
    finally:
        await scorers.aclose()
    missing = RemoteScorers(scorer_url, refs=[REWARD, "reward_fn.other:nope"])
    try:
        with pytest.raises(ValueError, match=r"does not serve reward_fn\.other:nope"):
            await missing.start(wait_s=60)
    finally:
        await missing.aclose()


def test_the_server_refuses_another_protocol_version(scorer_url: str) -> None:
    status, body = _post(scorer_url, {"version": PROTOCOL_VERSION + 1, "items": []})
    assert status == 400
    assert f"version {PROTOCOL_VERSION + 1} is not supported" in body["error"]


def test_the_client_refuses_another_version_and_junk() -> None:
    answer = {"version": PROTOCOL_VERSION + 1, "results": []}
    with pytest.raises(ProtocolError, match="is not supported"):
        parse_response(json.dumps(answer).encode(), ScoreResponse)
    nan = b'{"version": 1, "results": [{"id": "1", "scores": {"f": NaN}}]}'
    with pytest.raises(ProtocolError, match="not a finite number"):
        parse_response(nan, ScoreResponse)
    with pytest.raises(ProtocolError):
        parse_response(b"<html>", ScoreResponse)


class JunkServer(BackgroundApp):
    """A scorer server the repo's code took over: it answers with whatever it likes."""

    def __init__(self, answer: bytes, status: int = 200) -> None:
        self.answer, self.status = answer, status
        super().__init__(self._app, "junk-scorers")

    def _app(self) -> web.Application:
        app = web.Application()

        async def listing(_: web.Request) -> web.Response:
            return web.json_response({"version": 1, "scorers": [
                {"ref": REWARD, "mode": "simple"}]})

        async def score(_: web.Request) -> web.Response:
            return web.Response(body=self.answer, status=self.status,
                                content_type="application/json")

        app.router.add_get("/v1/scorers", listing)
        app.router.add_post("/v1/score", score)
        return app


@pytest.mark.parametrize("answer", [
    b"not json at all",
    b'{"version": 1, "results": [{"id": "1", "scores": {"x": "high"}}]}',
    b'{"version": 7, "results": []}',
], ids=["not-json", "wrong-types", "other-version"])
async def test_junk_from_the_scorer_side_is_unavailable_scoring(answer: bytes) -> None:
    with JunkServer(answer) as junk:
        scorers = RemoteScorers(f"http://127.0.0.1:{junk.port}", refs=[REWARD])
        try:
            await scorers.start(wait_s=10)
            with pytest.raises(ScoringUnavailable):
                await scorers.score(MESSAGES, "42", {})
        finally:
            await scorers.aclose()


async def test_a_score_for_a_scorer_nobody_asked_for_is_dropped() -> None:
    answer = json.dumps({"version": 1, "results": [
        {"id": "1", "scores": {REWARD: 1.0, "made.up:scorer": 1.0}}]}).encode()
    with JunkServer(answer) as junk:
        scorers = RemoteScorers(f"http://127.0.0.1:{junk.port}", refs=[REWARD])
        try:
            await scorers.start(wait_s=10)
            outcome = await scorers.score(MESSAGES, "42", {})
        finally:
            await scorers.aclose()
    assert outcome.scores == {REWARD: 1.0}
