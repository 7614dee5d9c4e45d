"""Pytest fixtures for tests that need a Kubernetes API: the emulated cluster and a client.

Each `k8s_cluster` also writes its kubeconfig to the process-wide `$KUBECONFIG` file (see
`server.use_test_kubeconfig`), so code that reads the default kubeconfig reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.server import EmulatedCluster, use_test_kubeconfig


@pytest.fixture
def k8s_cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """A fresh emulated cluster with its controllers, served on loopback for one test.

    `.emulator` (objects, `calls`), `.controllers` (`.jobs.runner`, `.jobs.kill`, `.pods`),
    `.kubeconfig` (also written to `$KUBECONFIG`), `.url`, `.kubectl(...)`, `.call(coro)`.
    The test fails if the emulator itself raised while serving a request.
    """
    with EmulatedCluster(tmp_path / "cluster", also_write=(use_test_kubeconfig(),)) as cluster:
        yield cluster
    assert not cluster.emulator.failures, f"the emulator failed: {cluster.emulator.failures!r}"


@pytest.fixture
def k8s_api(k8s_cluster: EmulatedCluster) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for the emulated cluster (closed after the test)."""
    import kubernetes

    config: Any = kubernetes.config
    client = config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()
