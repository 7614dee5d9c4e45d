"""What a chat request to the gateway may ask for: pure checks, no I/O.

`check_request` turns a request (path, bearer, JSON body) into either a `Refusal` (the HTTP
status and OpenAI-style error the caller gets) or an `Accepted` (the rollout id and the body to
send upstream, with the configured model forced in).
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

ROUTE_PREFIX = "/v1/rollouts/"
ROUTE_SUFFIX = "/chat/completions"
ROLLOUT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

CONTROL_FIELDS = frozenset({
    # where the call goes and with which credentials
    "api_base", "base_url", "url", "endpoint_url", "custom_endpoint", "deployment_url",
    "api_key", "apikey", "api_version", "api_type", "organization", "project", "project_id",
    "account_id", "workspace_id", "region", "custom_llm_provider", "deployment_id", "model_id",
    "models", "preset", "extra_headers", "default_headers", "headers", "user_agent",
    "ssl_verify", "proxy", "proxies", "http_client", "client", "azure_ad_token",
    # how the call is made, retried, mocked or reported
    "timeout", "request_timeout", "max_retries", "num_retries", "fallbacks",
    "context_window_fallbacks", "mock_response", "mock_delay", "mock_tool_calls",
    "drop_params", "additional_drop_params", "callbacks", "success_callback",
    "failure_callback", "config", "user_config", "method",
    # what would replace the prompt or the accounting
    "usage", "prompt", "input", "contents", "system", "system_instruction",
    "systemInstruction", "initial_prompt_value",
})
"""Request fields that would point the call elsewhere or change how it is made."""
CONTROL_PREFIXES = ("_", "litellm_", "aws_", "azure_", "vertex_", "watsonx_", "sagemaker_")
"""Field-name prefixes of the same kind (provider credentials and client settings)."""

CONTROL_MESSAGE = "Request fields cannot override gateway configuration"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The answer to a request the gateway does not forward."""

    status: int
    message: str
    code: str

    def body(self) -> bytes:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        return json.dumps({"error": {"message": self.message, "type": kind,
                                     "code": self.code}}).encode()


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request to forward: whose it is, what to send, and how the caller asked for it."""

    rollout_id: str
    body: dict[str, Any]
    requested_model: str
    stream: bool


def rollout_of(path: str) -> str | None:
    """The rollout id in `/v1/rollouts/<id>/chat/completions`, or None for another path."""
    if not (path.startswith(ROUTE_PREFIX) and path.endswith(ROUTE_SUFFIX)):
        return None
    return path[len(ROUTE_PREFIX):-len(ROUTE_SUFFIX)]


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an `Authorization` header carries exactly `Bearer <token>`."""
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def control_fields(body: dict[str, Any]) -> list[str]:
    """The fields of `body` that would reconfigure the gateway, sorted."""
    return sorted(key for key in body
                  if key in CONTROL_FIELDS or key.startswith(CONTROL_PREFIXES))


def check_request(
    rollout_id: str, authorization: str, raw: bytes, *, token: str, wire_model: str,
    known: bool,
) -> Accepted | Refusal:
    """Decide a chat request; `known` says whether the rollout id is open on this gateway."""
    if not bearer_matches(authorization, token):
        return Refusal(401, "invalid bearer token for this run", "unauthorized")
    if not ROLLOUT_ID.match(rollout_id) or not known:
        return Refusal(422, f"unknown rollout id {rollout_id[:140]!r}", "unknown_rollout")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Refusal(400, f"the request body is not JSON: {exc}", "invalid_json")
    if not isinstance(body, dict):
        return Refusal(400, "the request body must be a JSON object", "invalid_json")
    refused = control_fields(body)
    if refused:
        return Refusal(400, f"{CONTROL_MESSAGE}: {', '.join(refused)}", "control_fields")
    if body.get("n", 1) != 1:
        return Refusal(400, "n must be 1", "invalid_n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return Refusal(400, "messages must be a non-empty list", "invalid_messages")
    requested = body.get("model")
    stream = body.pop("stream", False) is True
    body.pop("stream_options", None)
    body["model"] = wire_model
    return Accepted(rollout_id, body, requested if isinstance(requested, str) else wire_model,
                    stream)
