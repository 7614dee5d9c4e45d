"""The gateway's HTTP server: a minimal HTTP/1.1 over asyncio streams.

aiohttp's server costs about 0.25 ms of CPU per request; this one reads what OpenAI clients send
(request line, headers, a `Content-Length` body, keep-alive) and nothing else, so that a proxied
call stays well under 0.3 ms of gateway CPU (bench/gateway_overhead.py).

Routes: `POST /v1/rollouts/<rollout_id>/chat/completions` (policy.py decides), `GET /health`,
and for the driver (with the admin bearer, which rollout servers never get): `PUT
/v1/rollouts/<rollout_id>` opens a rollout, `DELETE` closes it and answers its account.
Answers to errors never carry the provider key: upstream 4xx bodies pass through scrubbed,
anything else becomes 502 with a generic detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any

from rollout_operator.gateway import sse
from rollout_operator.gateway.ledger import Ledger, record_of, strip_token_data
from rollout_operator.gateway.policy import (
    ROLLOUT_ID,
    ROUTE_PREFIX,
    Accepted,
    Refusal,
    bearer_matches,
    check_request,
    rollout_of,
)
from rollout_operator.gateway.upstream import Upstream, UpstreamUnreachable
from rollout_operator.runtime.scrub import Scrubber

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 2**20
HEARTBEAT_S = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            422: "Unprocessable Entity", 429: "Too Many Requests", 502: "Bad Gateway"}


class _BadRequest(Exception):
    pass


class Gateway:
    """Serves one run's rollouts; `open`/`close` rollout ids as the driver dispatches them."""

    def __init__(self, upstream: Upstream, token: str, *, provider_key: str | None = None,
                 admin_token: str | None = None, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.upstream = upstream
        self.ledger = Ledger()
        self._token = token
        self._admin_token = admin_token
        self._scrubber = Scrubber([provider_key] if provider_key else [])
        self._heartbeat_s = heartbeat_s
        self._server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._connection, host, port,
                                                  limit=MAX_HEAD_BYTES)
        self.host = host
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def rollout_url(self, rollout_id: str, base: str | None = None) -> str:
        """The OpenAI base URL handed to one rollout (`base`: the gateway as the server sees it)."""
        return f"{base or self.url}/v1/rollouts/{rollout_id}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.upstream.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    status = 411 if "Length" in str(exc) else 400
                    _write(writer, status, _error(status, str(exc)), keep_alive=False)
                    break
                if request is None:
                    break
                method, path, headers, body, keep_alive = request
                keep_alive = await self._answer(writer, method, path, headers, body, keep_alive)
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str,
                      headers: dict[str, str], body: bytes, keep_alive: bool) -> bool:
        if path == "/health":
            _write(writer, 200, b'{"status":"ok"}', keep_alive)
            return keep_alive
        rollout_id = rollout_of(path)
        if rollout_id is None:
            status, payload = self._admin(method, path, headers.get("authorization", ""))
            _write(writer, status, payload, keep_alive)
            return keep_alive
        if method != "POST":
            _write(writer, 405, _error(405, "use POST"), keep_alive)
            return keep_alive
        decision = check_request(rollout_id, headers.get("authorization", ""), body,
                                 token=self._token, wire_model=self.upstream.wire_model,
                                 known=rollout_id in self.ledger)
        if isinstance(decision, Refusal):
            _write(writer, decision.status, decision.body(), keep_alive)
            return keep_alive
        if decision.stream:
            await self._stream(writer, decision, keep_alive)
            return keep_alive
        status, payload = await self._forward(decision)
        _write(writer, status, payload, keep_alive)
        return keep_alive

    def _admin(self, method: str, path: str, authorization: str) -> tuple[int, bytes]:
        """Open (`PUT`) or close (`DELETE`, answering the account) `/v1/rollouts/<id>`."""
        rollout_id = path.removeprefix(ROUTE_PREFIX)
        if not path.startswith(ROUTE_PREFIX) or method not in ("PUT", "DELETE"):
            return 404, _error(404, f"no route {method} {path[:200]}")
        if self._admin_token is None or not bearer_matches(authorization, self._admin_token):
            return 401, _error(401, "invalid admin bearer token")
        if not ROLLOUT_ID.match(rollout_id):
            return 422, _error(422, f"invalid rollout id {rollout_id[:140]!r}")
        if method == "PUT":
            self.ledger.open(rollout_id)
            return 200, b"{}"
        account = self.ledger.close(rollout_id)
        if account is None:
            return 404, _error(404, f"rollout {rollout_id!r} is not open")
        return 200, json.dumps(dataclasses.asdict(account)).encode()

    async def _forward(self, accepted: Accepted) -> tuple[int, bytes]:
        """The caller's answer: the reply with the requested model echoed, or an error."""
        status, payload, _ = await self._call(accepted)
        return status, payload

    async def _call(self, accepted: Accepted) -> tuple[int, bytes, dict[str, Any] | None]:
        """`_forward`'s answer, with the reply itself when there is one."""
        account = self.ledger.get(accepted.rollout_id)
        try:
            status, raw = await self.upstream.complete(accepted.body)
        except UpstreamUnreachable as exc:
            if account is not None:
                account.failed_calls += 1
            return 502, _bad_gateway(f"the model endpoint did not answer ({exc})"), None
        if status >= 400:
            if account is not None:
                account.failed_calls += 1
            if status < 500:
                return status, self._scrubber.scrub(raw.decode("utf-8", "replace")).encode(), None
            return 502, _bad_gateway(f"the model endpoint answered HTTP {status}"), None
        try:
            reply = json.loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("not an object")
        except ValueError:
            return 502, _bad_gateway("the model endpoint answered with invalid JSON"), None
        if account is not None:
            account.calls.append(record_of(reply))
        strip_token_data(reply)
        reply["model"] = accepted.requested_model
        text = json.dumps(reply)
        if self._scrubber.finds(text):  # an endpoint that echoes the key back
            text = self._scrubber.scrub(text)
            reply = json.loads(text)
        return 200, text.encode(), reply

    async def _stream(self, writer: asyncio.StreamWriter, accepted: Accepted,
                      keep_alive: bool) -> None:
        """SSE: heartbeats while the (non-streaming) upstream call runs, one chunk, `[DONE]`;
        sent with chunked transfer encoding, so the connection can stay open after."""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                     + (b"" if keep_alive else b"Connection: close\r\n") + b"\r\n"
                     + _chunk(sse.HEARTBEAT))
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def beat() -> None:
            nonlocal timer
            if not writer.is_closing():
                writer.write(_chunk(sse.HEARTBEAT))
                timer = loop.call_later(self._heartbeat_s, beat)

        timer = loop.call_later(self._heartbeat_s, beat)
        try:
            _status, payload, reply = await self._call(accepted)
        finally:
            timer.cancel()
        if reply is not None:
            data = sse.event(sse.completion_chunk(reply))
        else:
            data = b"data: " + payload + b"\n\n"
        writer.write(_chunk(data + sse.DONE) + b"0\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes, bool] | None:
    """One request (None: the client closed the connection between requests)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(f"not an HTTP/1 request line: {lines[0][:80]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding"):
        raise _BadRequest("Length Required: send the body with a Content-Length")
    length = int(headers.get("content-length") or 0)
    if length > MAX_BODY_BYTES:
        raise _BadRequest(f"the body is {length} bytes (limit {MAX_BODY_BYTES})")
    if headers.get("expect", "").lower() == "100-continue":
        raise _BadRequest("Expect: 100-continue is not supported")
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return method, target.split("?", 1)[0], headers, body, keep_alive


def _write(writer: asyncio.StreamWriter, status: int, body: bytes, keep_alive: bool) -> None:
    writer.write(
        (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
         f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n").encode("ascii")
        + body)


def _error(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "code": status}}).encode()


def _bad_gateway(detail: str) -> bytes:
    body: dict[str, Any] = {"error": {"message": "model call failed", "type": "bad_gateway",
                                      "code": 502}, "detail": detail}
    return json.dumps(body).encode()
