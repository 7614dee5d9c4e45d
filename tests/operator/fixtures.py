"""The `harness` fixture: an emulated cluster with the CRD, S3, tools, a model and a running
`rolloutctl operator` process (used by the operator and the local-versus-operator tests).

The servers that hold no state of a run are started once per session: moto's S3 (each harness
takes a bucket of its own) and the calculator's tool and scorer servers behind their router.
The cluster and the operator process are new for each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.server import EmulatedCluster
from tests.operator.harness import Harness, services
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer


@pytest.fixture(scope="session")
def calculator_services() -> Iterator[str]:
    """The calculator's tool and scorer servers, as a run's pods reach its Services."""
    with services() as services_url:
        yield services_url


@pytest.fixture
def harness(k8s_cluster: EmulatedCluster, scripted_model: ScriptedModelServer,
            s3_server: S3Server, calculator_services: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(k8s_cluster, s3_server, scripted_model.base_url, calculator_services, tmp_path)
    h.operator.start()
    try:
        yield h
    finally:
        h.operator.stop()
