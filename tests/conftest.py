"""Process-wide test settings; they must be set before litellm or kubernetes is imported."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

from tests.k8s.server import use_test_kubeconfig
from tests.support.scripted_model import ScriptedModelServer

# Before anything imports `kubernetes`: $KUBECONFIG names the emulated cluster, never a real one.
use_test_kubeconfig()

pytest_plugins = ["tests.support.s3", "tests.k8s.fixtures", "tests.operator.fixtures"]


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModelServer]:
    """A scripted OpenAI-compatible server on loopback, shared by the session."""
    with ScriptedModelServer(record=True) as server:
        yield server
