"""The `harness` fixture: an emulated cluster with the CRD, S3, tools, a model and a running
`rolloutctl operator` process (used by the operator and the local-versus-operator tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.server import EmulatedCluster
from tests.operator.harness import Harness, services
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer


@pytest.fixture
def harness(k8s_cluster: EmulatedCluster, scripted_model: ScriptedModelServer,
            tmp_path: Path) -> Iterator[Harness]:
    with S3Server() as s3, services() as services_url:
        h = Harness(k8s_cluster, s3, scripted_model.base_url, services_url, tmp_path)
        h.operator.start()
        try:
            yield h
        finally:
            h.operator.stop()
