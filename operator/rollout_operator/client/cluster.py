"""The cluster backend: a RolloutRun created through the Kubernetes API, which the operator
carries out. Records are read from the run's folder, so the run needs `spec.output.url` (or
the operator's default output URL given here as `output_url`)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from rollout_operator.api.constants import GROUP, KIND, PLURAL, VERSION
from rollout_operator.client.run import Run, RunOutcome
from rollout_operator.runtime.run_layout import run_prefix

FINISHED_PHASES = ("Succeeded", "Failed")
POLL_S = 2.0


class ClusterBackend:
    """Creates RolloutRuns with the Kubernetes client (`api_client`, else the default
    kubeconfig or in-cluster config); `environ` holds the object store's credentials for
    reading records (AWS_*, GOOGLE_APPLICATION_CREDENTIALS)."""

    def __init__(self, *, namespace: str = "default", api_client: Any = None,
                 output_url: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.namespace = namespace
        self.output_url = output_url
        self.environ = dict(environ if environ is not None else os.environ)
        self._api_client = api_client

    def _api(self) -> Any:
        from kubernetes import client, config

        if self._api_client is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            self._api_client = client.ApiClient()
        return client.CustomObjectsApi(self._api_client)

    def submit(self, manifest: Mapping[str, Any], *, name: str | None = None) -> Run:
        """Create the RolloutRun `manifest` (a mapping, as `kubectl apply` takes it)."""
        from rollout_operator.api.validation import parse_spec

        document = dict(manifest)
        metadata = dict(document.get("metadata") or {})
        if name is not None:
            metadata["name"] = name
        namespace = str(metadata.get("namespace") or self.namespace)
        metadata["namespace"] = namespace
        spec = parse_spec(document.get("spec"))  # raises SpecError saying what to fix
        output = spec.output.url or self.output_url
        if not output:
            raise ValueError("the client reads records from object storage: set spec.output.url "
                             "(or ClusterBackend(output_url=...), the operator's default)")
        body = {**document, "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                "metadata": metadata}
        created = self._api().create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                              PLURAL, body)
        meta = created["metadata"]
        return Run(name=meta["name"], namespace=namespace, uid=meta["uid"],
                   run_prefix=run_prefix(output, namespace, meta["name"], meta["uid"]),
                   backend=self, endpoint=spec.output.endpoint, environ=self.environ)

    def phase(self, run: Run) -> str | None:
        current = self._api().get_namespaced_custom_object(GROUP, VERSION, run.namespace,
                                                           PLURAL, run.name)
        return (current.get("status") or {}).get("phase")

    async def finished(self, run: Run) -> bool:
        return await asyncio.to_thread(self.phase, run) in FINISHED_PHASES

    def wait(self, run: Run, timeout_s: float | None = None) -> RunOutcome:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            current = self._api().get_namespaced_custom_object(GROUP, VERSION, run.namespace,
                                                               PLURAL, run.name)
            status = current.get("status") or {}
            if status.get("phase") in FINISHED_PHASES:
                return RunOutcome(str(status["phase"]), status)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{run} is still {status.get('phase') or 'Pending'} after "
                                   f"{timeout_s:g} s")
            time.sleep(POLL_S)
