"""Which Secrets exist, per namespace, from a metadata-only list and watch.

Runs name Secrets that must exist; a pass reads the answer from here rather than asking the API
server for each Secret each time. A namespace is followed from the first time a run of it asks:
its Secrets are listed, then watched from that version, both as `PartialObjectMetadata`, so the
API server never sends the operator a Secret's data. A broken or expired watch lists again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable

import kopf
from kubernetes.client.exceptions import ApiException

from rollout_operator.handlers.kube import METADATA_ONLY, KubeApi

logger = logging.getLogger(__name__)

WATCH_SECONDS = 300
FIRST_LIST_SECONDS = 10.0
"""How long a pass waits for a namespace's first list (then it is retried later)."""


class SecretNames:
    def __init__(self, api: KubeApi, *, retry_seconds: float = 1.0) -> None:
        self.api = api
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._names: dict[str, set[str]] = {}
        self._listed: dict[str, threading.Event] = {}
        self._closed = threading.Event()

    def close(self) -> None:
        """Follow no longer: each namespace's thread ends when its current watch does."""
        self._closed.set()

    def existing(self, namespace: str, names: Iterable[str]) -> set[str]:
        """Which of `names` exist in `namespace`."""
        names = list(names)
        if not names:
            return set()
        if not self._follow(namespace).wait(FIRST_LIST_SECONDS):
            raise kopf.TemporaryError(f"the Secrets of namespace {namespace} are not listed "
                                      "yet", delay=5)
        with self._lock:
            known = self._names[namespace]
            return {name for name in names if name in known}

    def _follow(self, namespace: str) -> threading.Event:
        with self._lock:
            listed = self._listed.get(namespace)
            if listed is not None:
                return listed
            listed = self._listed[namespace] = threading.Event()
        threading.Thread(target=self._keep_up, args=(namespace, listed), daemon=True,
                         name=f"secrets-{namespace}").start()
        return listed

    def _keep_up(self, namespace: str, listed: threading.Event) -> None:
        while not self._closed.is_set():
            try:
                version: str | None = self._list(namespace)
                listed.set()
                while version is not None and not self._closed.is_set():
                    version = self._watch(namespace, version)
            except (ApiException, OSError, ValueError) as exc:
                logger.warning("Following the Secrets of %s: %s", namespace, exc)
            except Exception:  # this thread must outlive any one failure
                logger.exception("Following the Secrets of %s", namespace)
            self._closed.wait(self.retry_seconds)

    def _list(self, namespace: str) -> str:
        names, version = self.api.secret_names(namespace)
        with self._lock:
            self._names[namespace] = names
        return version

    def _watch(self, namespace: str, version: str) -> str | None:
        """Follow changes from `version`; the version to go on from when the watch ends, None
        when it expired (list again)."""
        query = [("watch", "true"), ("resourceVersion", version),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(WATCH_SECONDS))]
        for line in self.api.stream_lines(f"/api/v1/namespaces/{namespace}/secrets", query,
                                          accept=METADATA_ONLY,
                                          timeout=WATCH_SECONDS + 30):
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                return None  # 410 Gone: the version is too old
            metadata = obj.get("metadata") or {}
            version = str(metadata.get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            with self._lock:
                names = self._names.setdefault(namespace, set())
                if kind == "DELETED":
                    names.discard(str(metadata.get("name")))
                else:
                    names.add(str(metadata.get("name")))
        return version
