"""The rollout runtime: datasets, repo loading, tools, the agent loop, scoring and records.

Nothing in this package imports Kubernetes: the operator's pods, `rolloutctl run` and the
Osmosis-compatible `rolloutctl test` / `rolloutctl eval` all share it.
"""
