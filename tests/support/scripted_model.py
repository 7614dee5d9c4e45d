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
- `burst-MS`: every request within MS milliseconds of that model's first request offering tools
  (a rollout's, not a client's connection check) gets HTTP 503, a burst of endpoint errors;
  later ones are answered as usual.
- `fail-on-TEXT`: a request whose last user message contains TEXT gets HTTP 503, every time
  (an endpoint that always fails the same prompts), the others as usual.
- `sleep-MS`: waits MS milliseconds before answering (a hang, with a large MS).
- `hang-on-TEXT`: a request whose last user message contains TEXT is not answered for an hour
  (an endpoint that accepted the connection and hangs), the others as usual.
- `alternate-on-TEXT`: after the tool result, a request whose last user message contains TEXT
  answers `#### -1` every second time for that prompt (per model), so that the samples of such a
  prompt differ in reward; the others answer as usual.
- `gated-on-TEXT`: a request whose last user message contains TEXT is answered only once
  `model.gate` is set (aiohttp server only): a run that cannot end until the test lets it.
- `logprobs`: adds flat `token_ids` / `logprobs` lists to each choice (the shape of a gateway
  that copies them there; not vLLM's).
- a request that asks `return_token_ids: true` gets vLLM's answer: `prompt_token_ids` beside
  the choices and `token_ids` on the choice, from a byte-level ChatML stand-in tokenizer
  (`chat_prompt_ids`, `reply_ids`) under which each turn's prompt starts with the previous
  turn's prompt and reply, as with a real append-only template; usage counts those tokens. With
  `logprobs: true` too, the choice gets vLLM's (OpenAI's) `logprobs.content` list.
- `sglang`: the same, in SGLang's shape: both id lists on the choice.
- `sglang-meta`: SGLang 0.5.13's older fields instead: `return_prompt_token_ids` puts the
  prompt's ids on the choice, `return_meta_info` the reply's ids and logprobs in the choice's
  `meta_info.output_token_logprobs` (`[logprob, id, text]`); `return_token_ids` is ignored.
- `template-drift`: with token ids, earlier assistant turns are rendered in later prompts with
  their text upper-cased, as a template that re-renders history would: a later prompt no
  longer holds those turns' tokens as they were sampled.
- `openai-logprobs`: when the request asks `logprobs: true`, adds OpenAI-style
  `logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs"}, ...]}` to the choice.
- `reply-json`: the last user message is a JSON choice (`message`, optional `finish_reason`,
  `token_ids`, `logprobs`, ...) sent back as is, for tests of how clients read replies.
- `drop`: sends the headers and part of the body, then closes the connection.
- `echo-auth`: answers with the request's `Authorization` header as the content.

Usage counts characters (about 4 per token), and a tool call's id comes from a server-wide
counter (`call_<n>_1`), so its tokens depend on how many digits n has: `first_id`
(`--first-id`) starts the counter there, for tests that pin token counts (100 keeps three
digits for the first 899 requests).

`--latency-ms` adds a fixed delay to every request (benchmarks). Requests are recorded in
`server.requests` when `record=True`.

Run as a process: `python -m tests.support.scripted_model --port 0` prints `PORT <n>`;
`start_process()` does that and reads the port. With `--lean` (`start_process(lean=True)`) the
same answers are served by a minimal HTTP/1.1 server of its own instead of aiohttp's, at about
half the CPU per request: for benchmarks, where the stand-in's CPU would otherwise be taken from
the processes being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.loopback import BackgroundApp, site_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_PRODUCT = re.compile(r"(-?\d+(?:\.\d+)?)\s*[*x×]\s*(-?\d+(?:\.\d+)?)")


def _flags(model: str) -> dict[str, str]:
    flags: dict[str, str] = {}
    for part in model.split("/")[-1].split(":")[1:]:
        for prefix in ("fail-every-", "status-", "sleep-", "hang-on-", "burst-", "fail-on-",
                       "alternate-on-", "gated-on-"):
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


IM_START, IM_END = 200001, 200002
"""The stand-in tokenizer's special tokens; every other token is one UTF-8 byte (0-255)."""


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content) if content else ""
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        text += (f'<tool_call>{{"name": {json.dumps(function.get("name"))}, "arguments": '
                 f'{json.dumps(function.get("arguments"))}}}</tool_call>')
    return text


def chat_prompt_ids(messages: list[dict[str, Any]], tools: list[Any] | None = None, *,
                    drift: bool = False) -> list[int]:
    """The prompt's token ids under a ChatML-like template (tools in a leading block), ending
    with the assistant's generation prompt; `drift` upper-cases earlier assistant turns."""
    ids: list[int] = []
    if tools:
        names = [str((t.get("function") or {}).get("name")) for t in tools]
        ids += [IM_START, *f"tools\n{json.dumps(names)}".encode(), IM_END, *b"\n"]
    for message in messages:
        text = _message_text(message)
        if drift and message.get("role") == "assistant":
            text = text.upper()
        ids += [IM_START, *f"{message.get('role')}\n{text}".encode(), IM_END, *b"\n"]
    return [*ids, IM_START, *b"assistant\n"]


def reply_ids(message: dict[str, Any]) -> list[int]:
    """The reply's token ids: its text, then the end-of-turn token the model stops on."""
    return [*_message_text(message).encode(), IM_END]


def _logprob(position: int, token: int) -> float:
    return -0.125 * ((position + token) % 8)


HANG_S = 3600.0
"""How long a `hang-on-TEXT` request waits before it is answered."""

DROPPED_PREFIX = b'{"id": "chatcmpl-dropped", "choices": ['
"""What a `drop` request gets before its connection closes (the headers promise 4096 bytes)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One chat request's answer: HTTP status and JSON body (None: `drop`), after `delay_s`."""

    status: int
    body: dict[str, Any] | None
    delay_s: float


class ScriptedModel:
    def __init__(self, latency_ms: float = 0.0, record: bool = False, first_id: int = 0
                 ) -> None:
        self.latency_s = latency_ms / 1000.0
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}
        self.gate = threading.Event()
        """Opens the `gated-on-TEXT` requests."""
        self._answers: Counter[tuple[str, str]] = Counter()
        self._ids = first_id

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
            answer = "-1" if "wrong" in flags or self._alternate(body, flags) else value
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
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{self._ids}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [choice],
        }
        if "reply-json" not in flags:
            self._add_token_ids(reply, body, flags)
        if "usage" not in reply:
            reply["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return reply

    @staticmethod
    def _add_token_ids(reply: dict[str, Any], body: dict[str, Any], flags: dict[str, str]
                       ) -> None:
        """The token fields vLLM (or SGLang, by flag) adds when the request asks for them."""
        choice = reply["choices"][0]
        meta = "sglang-meta" in flags
        if meta:
            wants_prompt = body.get("return_prompt_token_ids") is True
            wants_reply = body.get("return_meta_info") is True
        else:
            wants_prompt = wants_reply = body.get("return_token_ids") is True
        if not (wants_prompt or wants_reply):
            return
        prompt = chat_prompt_ids(body.get("messages") or [], body.get("tools"),
                                 drift="template-drift" in flags)
        output = reply_ids(choice["message"])
        logprobs = [_logprob(i, t) for i, t in enumerate(output)]
        if wants_prompt:
            if "sglang" in flags or meta:
                choice["prompt_token_ids"] = prompt
            else:
                reply["prompt_token_ids"] = prompt
        if wants_reply and meta:
            choice["meta_info"] = {
                "id": reply["id"], "output_ids": output,
                "output_token_logprobs": [[lp, t, chr(t) if t < 128 else ""]
                                          for lp, t in zip(logprobs, output, strict=True)]}
        elif wants_reply:
            choice["token_ids"] = output
        if body.get("logprobs") is True and not meta:
            choice["logprobs"] = {"content": [
                {"token": chr(t) if t < 128 else f"token_id:{t}", "logprob": lp,
                 "bytes": [t] if t < 256 else [], "top_logprobs": []}
                for lp, t in zip(logprobs, output, strict=True)]}
        reply["usage"] = {"prompt_tokens": len(prompt), "completion_tokens": len(output),
                          "total_tokens": len(prompt) + len(output)}

    def _alternate(self, body: dict[str, Any], flags: dict[str, str]) -> bool:
        """Whether this final answer is the wrong one of an `alternate-on-TEXT` pair."""
        text = _last_user_text(body.get("messages") or [])
        if not flags.get("alternate-on") or flags["alternate-on"] not in text:
            return False
        key = (str(body.get("model")), text)
        self._answers[key] += 1
        return self._answers[key] % 2 == 0

    def gated(self, body: dict[str, Any]) -> bool:
        """Whether this request waits for `gate` (`gated-on-TEXT`)."""
        text = _flags(str(body.get("model", "scripted"))).get("gated-on")
        return bool(text) and text in _last_user_text(body.get("messages") or [])

    def answer(self, body: dict[str, Any], authorization: str = "") -> Answer:
        """What to send for one chat request, decided when it arrives; both servers use it."""
        if self.record:
            self.requests.append(body)
        model = str(body.get("model", "scripted"))
        flags = _flags(model)
        self.counts[model] += 1
        delay = self.latency_s + float(flags.get("sleep", "0") or 0) / 1000.0
        if flags.get("hang-on") and flags["hang-on"] in _last_user_text(body.get("messages") or []):
            delay += HANG_S
        if "status" in flags:
            code = int(flags["status"])
            error = {"message": f"scripted status {code}", "type": "scripted", "code": code}
            return Answer(code, {"error": error}, delay)
        if "drop" in flags:
            return Answer(200, None, delay)
        if flags.get("fail-on") and flags["fail-on"] in _last_user_text(
                body.get("messages") or []):
            error = {"message": "scripted failure for this prompt", "type": "server_error"}
            return Answer(503, {"error": error}, delay)
        if flags.get("burst") and body.get("tools"):
            self.first_seen.setdefault(model, time.monotonic())
        if flags.get("burst") and time.monotonic() - self.first_seen.get(model, 0.0) < (
                float(flags["burst"]) / 1000.0):
            error = {"message": "scripted burst: service unavailable", "type": "server_error"}
            return Answer(503, {"error": error}, delay)
        if "echo-auth" in flags:
            reply = self._reply(body, flags)
            reply["choices"][0]["message"] = {"role": "assistant", "content": authorization}
            reply["choices"][0]["finish_reason"] = "stop"
            return Answer(200, reply, delay)
        every = int(flags.get("fail-every", "0") or 0)
        if every and self.counts[model] % every == 0:
            error = {"message": "scripted internal error", "type": "server_error"}
            return Answer(500, {"error": error}, delay)
        return Answer(200, self._reply(body, flags), delay)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if self.gated(body):
            await asyncio.to_thread(self.gate.wait)
        answer = self.answer(body, request.headers.get("Authorization", ""))
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.body is None:
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Content-Length": "4096"}
            )
            await response.prepare(request)
            await response.write(DROPPED_PREFIX)
            if request.transport is not None:
                request.transport.close()
            return response
        return web.json_response(answer.body, status=answer.status)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "scripted"}]})

    def app(self) -> web.Application:
        app = web.Application()
        for path in CHAT_PATHS:
            app.router.add_post(path, self.handle)
        app.router.add_get("/v1/models", self.models)
        return app


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


class ScriptedModelServer(BackgroundApp):
    """The scripted model served from a background thread (for in-process tests)."""

    def __init__(self, latency_ms: float = 0.0, record: bool = True, first_id: int = 0) -> None:
        self.model = ScriptedModel(latency_ms=latency_ms, record=record, first_id=first_id)
        super().__init__(self.model.app, "scripted-model")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.model.requests


class LeanConnection(asyncio.Protocol):
    """One connection of the lean server: the scripted model over a minimal HTTP/1.1.

    aiohttp's server spends about 0.25 ms of CPU per request, a quarter of a core at 1,000 calls/s
    taken from the machine a benchmark measures. This one reads only what HTTP clients send to a
    chat endpoint (request line, headers, a Content-Length body, keep-alive, one request at a
    time per connection), decides the answer on arrival with `ScriptedModel.answer` and writes it
    from a timer when its delay has passed: no task and no web framework per request.
    """

    def __init__(self, model: ScriptedModel) -> None:
        self._model = model
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answering = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._serve_waiting()

    def _serve_waiting(self) -> None:
        while not self._answering and self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            path = rest.partition(" ")[0]
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            keep_alive = headers.get("connection", "").lower() != "close"
            if "transfer-encoding" in headers:
                self._send(411, {"error": {"message": "send a Content-Length body"}}, 0.0, False)
                return
            length = int(headers.get("content-length") or 0)
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4:end + 4 + length])
            del self._buffer[:end + 4 + length]
            self._serve(method, path.split("?", 1)[0], headers, body, keep_alive)

    def _serve(
        self, method: str, path: str, headers: dict[str, str], body: bytes, keep_alive: bool
    ) -> None:
        if method == "GET" and path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "scripted"}]}, 0.0, keep_alive)
            return
        if method != "POST" or path not in CHAT_PATHS:
            self._send(404, {"error": {"message": f"no route {method} {path}"}}, 0.0, keep_alive)
            return
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._send(400, {"error": {"message": "the body is not a JSON object"}}, 0.0,
                       keep_alive)
            return
        answer = self._model.answer(request, headers.get("authorization", ""))
        self._send(answer.status, answer.body, answer.delay_s, keep_alive)

    def _send(
        self, status: int, body: dict[str, Any] | None, delay_s: float, keep_alive: bool
    ) -> None:
        if body is None:  # `drop`: promise 4096 bytes, send a few, close
            data, keep_alive = _http_head(200, 4096, False) + DROPPED_PREFIX, False
        else:
            payload = json.dumps(body).encode()
            data = _http_head(status, len(payload), keep_alive) + payload
        self._answering = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, delay_s), self._write, data, keep_alive)

    def _write(self, data: bytes, keep_alive: bool) -> None:
        self._timer = None
        if self._transport is None:
            return
        self._transport.write(data)
        if not keep_alive:
            self._transport.close()
            return
        self._answering = False
        self._serve_waiting()


def _http_head(status: int, length: int, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Scripted"
    connection = "" if keep_alive else "Connection: close\r\n"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {length}\r\n{connection}\r\n").encode("latin-1")


async def serve_lean(
    model: ScriptedModel, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """Serve `model` with the lean HTTP server (see `LeanConnection`); returns the server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: LeanConnection(model), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--first-id", type=int, default=0)
    parser.add_argument("--lean", action="store_true",
                        help="serve with the lean HTTP server instead of aiohttp's (benchmarks)")
    args = parser.parse_args(argv)

    async def serve() -> None:
        model = ScriptedModel(latency_ms=args.latency_ms, first_id=args.first_id)
        if args.lean:
            server = await serve_lean(model, args.host, args.port)
            print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
            await server.serve_forever()
        runner = web.AppRunner(model.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        print(f"PORT {site_port(site)}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


def start_process(
    latency_ms: float = 0.0, *, lean: bool = False
) -> tuple[subprocess.Popen[str], str]:
    """The server in its own process (benchmarks: its CPU is not theirs) and its base URL;
    `lean` serves it with `LeanConnection` instead of aiohttp."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_model", "--port", "0",
         "--latency-ms", str(latency_ms), *(["--lean"] if lean else [])],
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
