"""The operator's Kubernetes API calls, and the one place API errors map to Kopf semantics.

Objects travel as plain dicts (camelCase, as the API sends them): responses are read raw instead
of through the client's models, which keeps the manifests the pure builders make and the objects
the decisions observe in one shape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from rollout_operator import __version__
from rollout_operator.api.constants import GROUP, KIND, PLURAL, VERSION
from rollout_operator.resources.context import RUN_UID_LABEL
from rollout_operator.resources.placement import KUEUE_JOB_UID_LABEL, KUEUE_WORKLOADS_PATH

logger = logging.getLogger(__name__)

# (apiVersion, kind) -> (list path, item path) templates, namespaced.
_PATHS: dict[tuple[str, str], str] = {
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("networking.k8s.io/v1", "NetworkPolicy"):
        "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}
CHILD_KINDS = tuple(_PATHS)
# Ask for an object's metadata only (a PartialObjectMetadata): no data, no spec, no status.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                 "application/json")
# How the operator's own requests name themselves to the API server (audit logs); Kopf's carry
# its own agent.
USER_AGENT = f"rollout-operator/{__version__}"


@contextmanager
def kopf_errors(action: str) -> Iterator[None]:
    """Turn API errors into Kopf's retry semantics.

    Conflicts, throttling, server errors and a missing object (usually a cache lagging behind)
    are temporary: Kopf retries the handler. Other client errors mean the request itself is
    wrong and retrying cannot help.
    """
    try:
        yield
    except ApiException as exc:
        reason = _api_message(exc)
        if exc.status in (404, 409, 429) or (exc.status or 0) >= 500:
            raise kopf.TemporaryError(f"{action}: {reason}", delay=5) from None
        raise kopf.PermanentError(f"{action}: {reason}") from None


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _default_client() -> client.ApiClient:
    """In-cluster credentials in a pod, else the kubeconfig (`$KUBECONFIG` or ~/.kube/config)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubeApi:
    """Thin wrapper over the generic client; one instance lives in Kopf's memo."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or _default_client()
        self.api.user_agent = USER_AGENT

    def _call(self, method: str, path: str, body: Any = None,
              query: list[tuple[str, str]] | None = None,
              content_type: str = "application/json", accept: str = "application/json") -> Any:
        _, url, headers, data, post = self.api.param_serialize(
            method, path, query_params=query or [], body=body,
            header_params={"Accept": accept, "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=data,
                                     post_params=post)
        raw = response.read()  # type: ignore[no-untyped-call]
        text = raw.decode() if isinstance(raw, bytes) else raw
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason,
                               http_resp=response, body=text)
        return json.loads(text) if text else None

    def stream_lines(self, path: str, query: list[tuple[str, str]], accept: str,
                     timeout: float) -> Iterator[bytes]:
        """GET `path` and yield its answer line by line as it arrives (a watch)."""
        _, url, headers, _, _ = self.api.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": accept},
            auth_settings=["BearerToken"])
        response = self.api.call_api("GET", url, header_params=headers,
                                     _request_timeout=timeout)
        if response.status >= 400:
            text = response.read()  # type: ignore[no-untyped-call]
            raise ApiException(status=response.status, reason=response.reason,
                               http_resp=response, body=text)
        raw = response.response
        try:
            yield from _lines(raw.stream(2**16, decode_content=True))
        finally:
            raw.release_conn()

    def secret_names(self, namespace: str) -> tuple[set[str], str]:
        """The names of the Secrets in `namespace` and the list's resourceVersion; metadata
        only."""
        listed = self._call("GET", f"/api/v1/namespaces/{namespace}/secrets",
                            accept=METADATA_LIST)
        names = {str(item["metadata"]["name"]) for item in listed.get("items") or []}
        return names, str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """Create the object `body` under the collection `path`."""
        return self._call("POST", path, body=body)

    def list_children(self, namespace: str, run_uid: str) -> list[dict[str, Any]]:
        selector = [("labelSelector", f"{RUN_UID_LABEL}={run_uid}")]
        children: list[dict[str, Any]] = []
        for (api_version, kind), path in _PATHS.items():
            listed = self._call("GET", path.format(ns=namespace), query=selector)
            for item in listed.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                children.append(item)
        return children

    def list_pods(self, namespace: str, run_uid: str) -> list[dict[str, Any]]:
        listed = self._call("GET", f"/api/v1/namespaces/{namespace}/pods",
                            query=[("labelSelector", f"{RUN_UID_LABEL}={run_uid}")])
        return list(listed.get("items") or [])

    def list_workloads(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """Kueue's Workloads of the Job `job_uid`; none where Kueue is not installed (404) or
        the operator may not read them (403): they only explain why a Job waits."""
        try:
            listed = self._call("GET", KUEUE_WORKLOADS_PATH.format(ns=namespace),
                                query=[("labelSelector", f"{KUEUE_JOB_UID_LABEL}={job_uid}")])
        except ApiException as exc:
            if exc.status in (403, 404):
                return []
            raise
        return list(listed.get("items") or [])

    def create(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a child; one that exists already (409 AlreadyExists: children have
        deterministic names) counts as success and is not tried again. The created object,
        or None when it existed."""
        path = _PATHS[(manifest["apiVersion"], manifest["kind"])].format(ns=namespace)
        try:
            created = self.post(path, manifest)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        return created if isinstance(created, dict) else {}

    def delete(self, namespace: str, api_version: str, kind: str, name: str) -> None:
        path = _PATHS[(api_version, kind)].format(ns=namespace) + f"/{name}"
        try:
            self._call("DELETE", path, body={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = _PATHS[("batch/v1", "Job")].format(ns=namespace) + f"/{name}"
        self._call("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def patch_run_status(self, namespace: str, name: str, status: dict[str, Any],
                         resource_version: str | None = None) -> dict[str, Any]:
        """Merge `status`; with `resource_version`, only onto that version of the run (409 if
        it changed since). The run as patched."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return dict(self._call("PATCH", path, body=body,
                               content_type="application/merge-patch+json") or {})

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The run as the API server has it now; None if there is none. Read with a list by
        name, which the operator's watch permissions cover (it never needs `get`)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        listed = self._call("GET", path, query=[("fieldSelector", f"metadata.name={name}")])
        items = listed.get("items") or []
        if not items:
            return None
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, **items[0]}

    def delete_run(self, namespace: str, name: str) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        try:
            self._call("DELETE", path)
        except ApiException as exc:
            if exc.status != 404:
                raise
