"""Kopf peering among several operator replicas: the peering object they share, and priorities.

Kopf expects the peering object to exist (it only patches it); the operator creates it at
start-up so that a Helm install needs no second step. Each replica needs a distinct priority,
or Kopf pauses all of them: `auto` derives one from the replica's identity (the pod name).
"""

from __future__ import annotations

import hashlib

from kubernetes.client.exceptions import ApiException

from rollout_operator.handlers.kube import KubeApi

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"


def auto_priority(identity: str) -> int:
    """A stable priority in [1, 2**31 - 1] from a replica's identity; distinct replicas get
    distinct priorities with overwhelming probability (two of ten collide about once in 2**28)."""
    digest = hashlib.sha256(identity.encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1) + 1


def ensure_peering_objects(api: KubeApi, name: str, namespaces: list[str]) -> list[str]:
    """Create the ClusterKopfPeering `name` (cluster-wide operator) or a KopfPeering `name` in
    each namespace; existing ones are left alone. The paths of the objects created."""
    if namespaces:
        paths = [f"/apis/{PEERING_GROUP}/{PEERING_VERSION}/namespaces/{ns}/kopfpeerings"
                 for ns in namespaces]
    else:
        paths = [f"/apis/{PEERING_GROUP}/{PEERING_VERSION}/clusterkopfpeerings"]
    created = []
    for path in paths:
        body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}",
                "kind": "KopfPeering" if namespaces else "ClusterKopfPeering",
                "metadata": {"name": name}}
        try:
            api.post(path, body)
        except ApiException as exc:
            if exc.status == 409:
                continue
            raise
        created.append(f"{path}/{name}")
    return created
