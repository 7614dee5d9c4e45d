"""A real Kopf operator carries a custom resource through its lifecycle on the emulated cluster."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest

from tests.k8s.server import EmulatedCluster, wait_for

FINALIZER = "example.dev/smoke-finalizer"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


def _operator(handled: list[tuple[str, str]]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 10

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # reads $KUBECONFIG, as in production

    @kopf.on.create("example.dev", "v1", "gizmos", registry=registry)
    def created(name: str, spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch,
                **_: Any) -> None:
        handled.append(("create", name))
        kopf.info(body, reason="Handled", message=f"{name} is handled")
        patch.status["phase"] = "Handled"
        patch.status["doubled"] = spec["size"] * 2

    @kopf.on.delete("example.dev", "v1", "gizmos", registry=registry)
    def deleted(name: str, **_: Any) -> None:
        handled.append(("delete", name))

    return registry


@pytest.fixture
def operator(k8s_cluster: EmulatedCluster) -> Iterator[list[tuple[str, str]]]:
    """Kopf in a thread of its own (never in pytest's event loop), cluster-wide, standalone."""
    handled: list[tuple[str, str]] = []
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=kopf.run, name="kopf", daemon=True, kwargs={
        "registry": _operator(handled), "standalone": True, "clusterwide": True,
        "stop_flag": stop, "ready_flag": ready})
    thread.start()
    assert ready.wait(15), "the operator did not start"
    try:
        yield handled
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive(), "the operator did not stop"


def test_kopf_handles_create_and_delete_with_its_finalizer(
        k8s_cluster: EmulatedCluster, operator: list[tuple[str, str]]) -> None:
    emulator = k8s_cluster.emulator
    emulator.create_object("apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    gizmos = "example.dev/v1/gizmos"
    wait_for(lambda: any(c.resource == "gizmos" and c.verb == "watch" for c in emulator.calls),
             timeout=15, message="Kopf to watch the new resource")

    emulator.create_object(gizmos, {"metadata": {"name": "g"}, "spec": {"size": 21}}, "default")

    def handled_status() -> dict[str, Any] | None:
        obj = emulator.get_object(gizmos, "g", "default")
        return obj if obj and obj.get("status", {}).get("phase") == "Handled" else None

    obj = wait_for(handled_status, timeout=15, message="the create handler")
    assert obj["status"]["doubled"] == 42
    assert FINALIZER in obj["metadata"]["finalizers"]
    assert operator == [("create", "g")]
    events = wait_for(lambda: emulator.list_objects("v1/events", "default",
                                                    fields="involvedObject.name=g"),
                      message="Kopf's events")
    assert [(e["reason"], e["message"], e["type"]) for e in events] == [
        ("Handled", "g is handled", "Normal")]

    emulator.delete_object(gizmos, "g", "default")
    wait_for(lambda: emulator.get_object(gizmos, "g", "default") is None, timeout=15,
             message="the finalizer to be removed")
    assert operator == [("create", "g"), ("delete", "g")]
    verbs = {(c.verb, c.rbac_resource) for c in emulator.calls if c.group == "example.dev"}
    assert {("list", "gizmos"), ("watch", "gizmos"), ("patch", "gizmos"),
            ("patch", "gizmos/status")} <= verbs


OPERATOR_MODULE = """
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.persistence.finalizer = "example.dev/process-finalizer"

@kopf.on.create("example.dev", "v1", "gizmos")
def created(spec, patch, **_):
    patch.status["phase"] = "Handled"
    patch.status["doubled"] = spec["size"] * 2
"""


def test_kopf_run_as_a_process_reaches_the_cluster_through_kubeconfig(
        k8s_cluster: EmulatedCluster, tmp_path: Path) -> None:
    emulator = k8s_cluster.emulator
    emulator.create_object("apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    module = tmp_path / "operator.py"
    module.write_text(OPERATOR_MODULE)
    env = {**os.environ, "KUBECONFIG": str(k8s_cluster.kubeconfig)}
    process = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(module)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        gizmos = "example.dev/v1/gizmos"
        emulator.create_object(gizmos, {"metadata": {"name": "p"}, "spec": {"size": 4}}, "default")
        obj = wait_for(lambda: (emulator.get_object(gizmos, "p", "default") or {})
                       .get("status", {}).get("doubled"), timeout=30, message="the handler")
        assert obj == 8
        emulator.delete_object(gizmos, "p", "default")
        wait_for(lambda: emulator.get_object(gizmos, "p", "default") is None, timeout=15,
                 message="the finalizer to be removed")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert "Traceback" not in output, output
