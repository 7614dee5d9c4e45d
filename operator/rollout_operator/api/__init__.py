"""The RolloutRun API: spec and status models, validation, and the CRD generated from them.

Nothing here talks to Kubernetes; the operator, the CLI and the local runner all build on it.
"""
