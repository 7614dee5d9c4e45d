"""The model gateway: the one endpoint a 0.3 rollout server may reach.

Each rollout gets its own OpenAI-compatible base URL, `<gateway>/v1/rollouts/<rollout_id>`,
and the run's bearer. The gateway checks the bearer, refuses fields that would reconfigure it,
forces the configured model, forwards the call upstream with the provider key it alone holds,
and keeps per-rollout usage, token ids and logprobs (docs/osmosis-v03.md).
"""
