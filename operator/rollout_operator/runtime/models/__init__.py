"""Model clients: name resolution, the API-key check, two `ChatModel`s and the preflight.

Importing this package does not import litellm; only `LiteLLMChat` and name resolution without
a base URL do.
"""

from rollout_operator.runtime.models.factory import make_chat_model, preflight
from rollout_operator.runtime.models.failures import (
    CallSite,
    Failure,
    failure_from_exception,
    to_provider_error,
)
from rollout_operator.runtime.models.http_chat import DEFAULT_REQUEST_TIMEOUT_S, OpenAIHttpChat
from rollout_operator.runtime.models.litellm_chat import LiteLLMChat
from rollout_operator.runtime.models.naming import (
    PLACEHOLDER_API_KEY,
    PROVIDER_KEY_ENV,
    ModelConfigError,
    ResolvedModel,
    check_api_key,
    resolve_model,
)
from rollout_operator.runtime.models.token_capture import (
    TokenCaptureError,
    capture_fields,
    check_capture,
)

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT_S",
    "PLACEHOLDER_API_KEY",
    "PROVIDER_KEY_ENV",
    "CallSite",
    "Failure",
    "LiteLLMChat",
    "ModelConfigError",
    "OpenAIHttpChat",
    "ResolvedModel",
    "TokenCaptureError",
    "capture_fields",
    "check_api_key",
    "check_capture",
    "failure_from_exception",
    "make_chat_model",
    "preflight",
    "resolve_model",
    "to_provider_error",
]
