"""Osmosis 0.3 workspaces: discovery, the eval TOML, datasets, the rollout protocol (0.4) client,
the rollout-server process, run state (manifest, journal, index, metrics) and ATIF trajectories.

Nothing here knows Kubernetes or the CLI; `rolloutctl eval run` (cli/eval_run_cmd.py) drives it.
"""
