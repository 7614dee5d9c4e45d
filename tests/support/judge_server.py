"""A scripted LLM judge speaking the OpenAI protocol on loopback.

It answers `POST /v1/chat/completions` and `POST /v1/responses` (litellm's route for OpenAI GPT-5
models) with the reply scripted for the request's model name, and records every request with
its path and `Authorization` header. A model with no script gets the 404 a provider sends for an
unknown model.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.loopback import BackgroundApp


@dataclass(frozen=True, slots=True)
class Script:
    content: str = ""
    status: int = 200
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    body: dict[str, Any]
    authorization: str | None

    @property
    def model(self) -> str:
        return str(self.body.get("model"))


def _chat_reply(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-judge",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    }


def _responses_reply(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "resp_judge",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_judge",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": content, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60},
    }


class JudgeServer(BackgroundApp):
    """Serves scripted judge replies from a background thread."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, Script] = {}
        self._names = itertools.count(1)
        super().__init__(self._app, "judge-server")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(
        self,
        content: str = "",
        *,
        model: str | None = None,
        status: int = 200,
        delay_s: float = 0.0,
    ) -> str:
        """Script the reply for `model` (a fresh name when None) and return the model name."""
        name = model or f"judge-{next(self._names)}"
        self._scripts[name] = Script(content=content, status=status, delay_s=delay_s)
        return name

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(
            RecordedRequest(request.path, body, request.headers.get("Authorization"))
        )
        model = str(body.get("model"))
        script = self._scripts.get(model)
        if script is None:
            return web.json_response(
                {
                    "error": {
                        "message": f"The model `{model}` does not exist",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
                status=404,
            )
        if script.delay_s:
            await asyncio.sleep(script.delay_s)
        if script.status != 200:
            return web.json_response(
                {"error": {"message": f"scripted status {script.status}", "type": "scripted"}},
                status=script.status,
            )
        if request.path.endswith("/responses"):
            return web.json_response(_responses_reply(model, script.content))
        return web.json_response(_chat_reply(model, script.content))

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/v1/responses", self._handle)
        return app
