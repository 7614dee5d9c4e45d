"""A Kubernetes API stand-in for testing the operator without a cluster (see TESTING.md)."""
