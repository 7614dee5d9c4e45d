"""Errors of LLM-judge calls, named and worded as the Osmosis SDK's so `except` clauses work."""

from __future__ import annotations

_NO_DETAIL = "Provider request failed with no additional detail."


class MissingAPIKeyError(RuntimeError):
    """No API key could be found for the judge's provider; raised before any request is sent."""


class ProviderRequestError(RuntimeError):
    """A judge request failed, or the judge's reply could not be read as a score."""

    def __init__(self, provider: str, model: str, detail: str | None) -> None:
        self.provider = provider
        self.model = model
        self.detail = detail.strip() if detail and detail.strip() else _NO_DETAIL
        super().__init__(f"Provider '{provider}' request for model '{model}' failed. {self.detail}")

    def __reduce__(self) -> tuple[type[ProviderRequestError], tuple[str, str, str]]:
        # Exceptions with required constructor arguments need this to cross process boundaries.
        return (type(self), (self.provider, self.model, self.detail))


class ModelNotFoundError(ProviderRequestError):
    """The provider answered that the requested judge model does not exist."""
