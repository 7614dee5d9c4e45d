"""A scripted OpenAI-compatible chat server for tests and benchmarks.

It speaks the real `/v1/chat/completions` protocol (what vLLM or a provider would answer), so the
code under test reaches it through litellm or our own HTTP client unchanged. Behaviour is chosen
per request through the model name, `scripted[:flag[:flag...]]`:

- default: the calculator agent. If the last message is a tool result it answers
  `"<tool result>\\n#### <tool result>"`; otherwise if the user prompt holds `A * B` it calls
  `multiply(first_val=A, second_val=B)`; otherwise it answers `#### 0`.
- `always-tool`: always answers with a tool call (for max-turns tests).
- `bad-tools`: first turn calls `multiply`, an unknown `divide`, and `multiply` with invalid JSON.
- `wrong`: answers `#### -1` after the tool result.
- `fail-every-N`: every N-th request (server-wide count for that model) gets HTTP 500.
- `status-CODE`: every request gets that HTTP status (401, 404, 429, ...).
- `sleep-MS`: waits MS milliseconds before answering (a hang, with a large MS).
- `logprobs`: adds `token_ids` / `logprobs` lists to each choice.
- `openai-logprobs`: when the request asks `logprobs: true`, adds OpenAI-style
  `logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]}` to the choice.
- `reply-json`: the last user message is a JSON choice (`message`, optional `finish_reason`,
  `token_ids`, `logprobs`, ...) sent back as is, for tests of how clients read replies.
- `drop`: sends the headers and part of the body, then closes the connection.
- `echo-auth`: answers with the request's `Authorization` header as the content.

`--latency-ms` adds a fixed delay to every request (benchmarks). Requests are recorded in
`server.requests` when `record=True`.

Run as a process: `python -m tests.support.scripted_model --port 0` prints `PORT <n>`;
`start_process()` does that and reads the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.loopback import BackgroundApp, site_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_PRODUCT = re.compile(r"(-?\d+(?:\.\d+)?)\s*[*x×]\s*(-?\d+(?:\.\d+)?)")


def _flags(model: str) -> dict[str, str]:
    flags: dict[str, str] = {}
    for part in model.split("/")[-1].split(":")[1:]:
        for prefix in ("fail-every-", "status-", "sleep-"):
            if part.startswith(prefix):
                flags[prefix[:-1]] = part[len(prefix):]
                break
        else:
            flags[part] = ""
    return flags


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


class ScriptedModel:
    def __init__(self, latency_ms: float = 0.0, record: bool = False) -> None:
        self.latency_s = latency_ms / 1000.0
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._ids = 0

    def _reply(self, body: dict[str, Any], flags: dict[str, str]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = body.get("messages") or []
        last = messages[-1] if messages else {}
        self._ids += 1
        message: dict[str, Any]
        if "always-tool" in flags or (last.get("role") != "tool"):
            match = _PRODUCT.search(_last_user_text(messages))
            if "always-tool" in flags or match:
                a, b = (match.group(1), match.group(2)) if match else ("2", "3")
                calls = [_call(f"call_{self._ids}_1", "multiply",
                               json.dumps({"first_val": float(a), "second_val": float(b)}))]
                if "bad-tools" in flags:
                    calls.append(_call(f"call_{self._ids}_2", "divide", json.dumps({"a": 1})))
                    calls.append(_call(f"call_{self._ids}_3", "multiply", "not json"))
                message = {"role": "assistant", "content": None, "tool_calls": calls}
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": "I cannot tell.\n#### 0"}
                finish = "stop"
        else:
            value = str(last.get("content"))
            answer = "-1" if "wrong" in flags else value
            message = {"role": "assistant", "content": f"The result is {value}\n#### {answer}"}
            finish = "stop"
        prompt_tokens = sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages)
        completion_tokens = len(json.dumps(message)) // 4
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish}
        if "logprobs" in flags:
            choice["token_ids"] = list(range(completion_tokens))
            choice["logprobs"] = [-0.5] * completion_tokens
        if "openai-logprobs" in flags and body.get("logprobs") is True:
            choice["logprobs"] = {"content": [
                {"token": f"t{i}", "logprob": -0.25 * (i % 4), "bytes": [116], "top_logprobs": []}
                for i in range(completion_tokens)
            ]}
        if "reply-json" in flags:
            choice = {"index": 0, **json.loads(_last_user_text(messages))}
        return {
            "id": f"chatcmpl-{self._ids}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.record:
            self.requests.append(body)
        model = str(body.get("model", "scripted"))
        flags = _flags(model)
        self.counts[model] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if "sleep" in flags:
            await asyncio.sleep(float(flags["sleep"]) / 1000.0)
        if "status" in flags:
            code = int(flags["status"])
            return web.json_response(
                {"error": {"message": f"scripted status {code}", "type": "scripted", "code": code}},
                status=code,
            )
        if "drop" in flags:
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Content-Length": "4096"}
            )
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-dropped", "choices": [')
            if request.transport is not None:
                request.transport.close()
            return response
        if "echo-auth" in flags:
            reply = self._reply(body, flags)
            reply["choices"][0]["message"] = {
                "role": "assistant", "content": request.headers.get("Authorization", "")
            }
            reply["choices"][0]["finish_reason"] = "stop"
            return web.json_response(reply)
        every = int(flags.get("fail-every", "0") or 0)
        if every and self.counts[model] % every == 0:
            return web.json_response(
                {"error": {"message": "scripted internal error", "type": "server_error"}},
                status=500,
            )
        return web.json_response(self._reply(body, flags))

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted"}]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_post("/chat/completions", self.handle)
        app.router.add_get("/v1/models", self.models)
        return app


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class ScriptedModelServer(BackgroundApp):
    """The scripted model served from a background thread (for in-process tests)."""

    def __init__(self, latency_ms: float = 0.0, record: bool = True) -> None:
        self.model = ScriptedModel(latency_ms=latency_ms, record=record)
        super().__init__(self.model.app, "scripted-model")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.model.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        runner = web.AppRunner(ScriptedModel(latency_ms=args.latency_ms).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        print(f"PORT {site_port(site)}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


def start_process(latency_ms: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    """The server in its own process (benchmarks: its CPU is not theirs) and its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_model", "--port", "0",
         "--latency-ms", str(latency_ms)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if line[:1] != ["PORT"]:
        process.kill()
        raise RuntimeError(f"scripted model server did not start: {line}")
    return process, f"http://127.0.0.1:{line[1]}/v1"


if __name__ == "__main__":
    main()
