"""The emulated apiserver, driven by the real `kubectl` (v1.32 client)."""

from __future__ import annotations

import json

import pytest

from tests.k8s.server import EmulatedCluster, wait_for

CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.dev
spec:
  group: example.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status:
            type: object
            properties:
              phase: {type: string}
              conditions:
                type: array
                items: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""
GADGET_YAML = """
apiVersion: example.dev/v1alpha1
kind: Gadget
metadata: {name: g1, labels: {team: a}}
spec: {size: 3}
"""


def test_kubectl_applies_gets_and_deletes_a_custom_resource(k8s_cluster: EmulatedCluster) -> None:
    kubectl = k8s_cluster.kubectl
    assert "created" in kubectl("apply", "--validate=false", "-f", "-", input=CRD_YAML).stdout
    kubectl("wait", "--for=condition=Established", "crd/gadgets.example.dev", "--timeout=10s")
    assert "gadgets.example.dev" in kubectl("get", "crd").stdout

    assert "created" in kubectl("apply", "--validate=false", "-f", "-", input=GADGET_YAML).stdout
    changed = GADGET_YAML.replace("size: 3", "size: 4")
    assert "configured" in kubectl("apply", "--validate=false", "-f", "-", input=changed).stdout
    k8s_cluster.emulator.patch_object("gadgets.example.dev", "g1", {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}, "default",
        subresource="status")

    table = kubectl("get", "gd").stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "READY", "AGE"]
    assert table[1].split()[:3] == ["g1", "Running", "True"]
    listed = json.loads(kubectl("get", "gadgets", "-l", "team=a", "-o", "json").stdout)
    assert [item["kind"] for item in listed["items"]] == ["Gadget"]
    assert listed["items"][0]["spec"] == {"size": 4}
    assert listed["items"][0]["metadata"]["generation"] == 2

    assert 'gadget.example.dev "g1" deleted' in kubectl("delete", "gadget", "g1").stdout
    assert "No resources found" in kubectl("get", "gadgets").stderr


def test_kubectl_needs_validation_off_without_openapi(k8s_cluster: EmulatedCluster) -> None:
    result = k8s_cluster.kubectl("apply", "-f", "-", input=CRD_YAML, check=False)
    assert result.returncode != 0 and "--validate=false" in result.stderr


def test_kubectl_works_with_core_kinds_and_namespaces(k8s_cluster: EmulatedCluster) -> None:
    kubectl = k8s_cluster.kubectl
    kubectl("apply", "--validate=false", "-f", "-", input=(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: team}\n"
        "data: {a: '1'}\n"))
    names = kubectl("get", "ns", "-o", "name").stdout.split()
    assert "namespace/team" in names and "namespace/default" in names
    data = json.loads(kubectl("-n", "team", "get", "cm", "settings", "-o", "json").stdout)["data"]
    assert data == {"a": "1"}
    kubectl("delete", "namespace", "team", "--timeout=10s")
    wait_for(lambda: k8s_cluster.emulator.get_object("v1/namespaces", "team") is None)


def test_kubectl_generators_get_a_clear_refusal(k8s_cluster: EmulatedCluster) -> None:
    # `kubectl create namespace|configmap|secret` send protobuf, which the emulator cannot read.
    result = k8s_cluster.kubectl("create", "namespace", "team", check=False)
    assert result.returncode != 0 and "kubectl apply" in result.stderr


@pytest.mark.parametrize("resource", ["deploy", "jobs", "po", "events"])
def test_kubectl_maps_built_in_short_names(k8s_cluster: EmulatedCluster, resource: str) -> None:
    assert k8s_cluster.kubectl("get", resource).returncode == 0
