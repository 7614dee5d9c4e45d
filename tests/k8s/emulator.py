"""A stateful Kubernetes API in memory, for testing the operator without a cluster.

`ClusterEmulator` extends kmock's `KubernetesEmulator` (pinned at 0.8: it relies on kmock's
handler, request and object-history internals) into an apiserver that Kopf, `kubectl` and the
`kubernetes` client can drive through a whole lifecycle: object metadata with one global,
increasing resourceVersion; generation bumps on spec changes; namespaces from the URL;
`generateName`; typed lists and server-side tables; label and field selectors; create, replace
(409 on a stale resourceVersion), merge / JSON / apply patches; status subresources; CRDs that
register their resource in discovery and prune, default and validate with their schema;
finalizers; owner-reference garbage collection and namespace cascade; watches that resume from
a resourceVersion; and a record of every API call in `calls`.

Requests a test routes with kmock's DSL (`emulator["patch", kmock.resource(...)] << 500`) are
answered by those reactions first; everything else reaches the emulated apiserver.

State lives behind one lock, so tests (any thread) and the fake controllers (the server's
loop) may use the object methods (`create_object`, `patch_object`, ...) directly; those calls
are not recorded in `calls`, which holds only what came over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import json
import logging
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock

from tests.k8s import catalog, http_api, patching, schema
from tests.k8s.catalog import ResourceType
from tests.k8s.http_api import ApiCall, api_error
from tests.k8s.selectors import label_selector_from_spec

Obj = dict[str, Any]
logger = logging.getLogger(__name__)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_LIMITED = {("", "namespaces"), ("", "services"), ("batch", "jobs")}
_SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation", "resourceVersion", "name", "namespace", "selfLink")
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
_FOREGROUND = "foregroundDeletion"
_DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Change:
    """One committed change: what a watch stream and the fake controllers see."""

    rv: int
    key: tuple[str, str]
    type: str
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class _Watcher:
    key: tuple[str, str]
    namespace: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def notify(self, change: Change | None) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, change)
        except RuntimeError:  # the loop is closed: the stream is gone
            return False
        return True


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(length))


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """An in-memory apiserver with the semantics an operator depends on (see the module doc)."""

    gc_interval: float = 0.02
    gc_pause_factor: float = 10.0
    change_log_size: int = 50_000
    calls: list[ApiCall] = attrs.field(factory=list, init=False)
    failures: list[Exception] = attrs.field(factory=list, init=False)
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)
    _mutex: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _types: dict[tuple[str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _served: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _store: dict[tuple[str, str], dict[tuple[str | None, str], Obj]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False)
    _rv: int = attrs.field(default=0, init=False)
    _log: collections.deque[Change] = attrs.field(init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _gc_dirty: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's own fallback reactions are not registered: `_handle` serves the API itself.
        self._log = collections.deque(maxlen=self.change_log_size)
        for rtype in catalog.builtin_types():
            self._register(rtype)
        for name in _DEFAULT_NAMESPACES:
            self.create_object("v1/namespaces", {"metadata": {"name": name}})

    # The catalog of served types.

    def _register(self, rtype: ResourceType) -> None:
        with self._mutex:
            old = self._types.get(rtype.key)
            if old is not None:
                for version in old.versions:
                    self._served.pop((old.group, version, old.plural), None)
            self._types[rtype.key] = rtype
            for version in rtype.versions:
                self._served[(rtype.group, version, rtype.plural)] = rtype

    def _unregister(self, key: tuple[str, str]) -> None:
        with self._mutex:
            rtype = self._types.pop(key, None)
            if rtype is not None:
                for version in rtype.versions:
                    self._served.pop((rtype.group, version, rtype.plural), None)

    def resource_type(self, resource: str | ResourceType) -> ResourceType:
        """The served type named `v1/pods`, `batch/v1/jobs`, `jobs.batch`, `jobs`, `po` or `Job`."""
        if isinstance(resource, ResourceType):
            return resource
        with self._mutex:
            parts = resource.split("/")
            if len(parts) in (2, 3):
                group, version, plural = ("", *parts) if len(parts) == 2 else parts
                found = self._served.get((group, version, plural))
                if found is not None:
                    return found
            elif "." in resource:
                plural, group = resource.split(".", 1)
                if (group, plural) in self._types:
                    return self._types[(group, plural)]
            else:
                matches = [t for t in self._types.values() if resource in
                           (t.plural, t.kind, t.singular, *t.short_names)]
                if matches:
                    return min(matches, key=lambda t: (t.group != "", t.custom))
        raise KeyError(f"no resource {resource!r} is served; create its CRD first, or name it as "
                       "group/version/plural")

    # Reading.

    def get_object(self, resource: str | ResourceType, name: str,
                   namespace: str | None = None) -> Obj | None:
        """A copy of the object, or None if it does not exist."""
        rtype = self.resource_type(resource)
        with self._mutex:
            obj = self._store[rtype.key].get((namespace if rtype.namespaced else None, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource: str | ResourceType, namespace: str | None = None, *,
                     labels: str | None = None, fields: str | None = None) -> list[Obj]:
        """Copies of the matching objects, ordered by namespace and name."""
        rtype = self.resource_type(resource)
        matches = http_api.matcher(labels, fields)
        with self._mutex:
            objects = self._objects_of(rtype, namespace)
            return [copy.deepcopy(obj) for obj in objects if matches(obj)]

    def peek_objects(self, resource: str | ResourceType,
                     namespace: str | None = None) -> list[Obj]:
        """The stored objects themselves, ordered by namespace and name, for readers that never
        change them (the fake controllers' passes): no copy, so a pass over many objects stays
        cheap. A write stores a new object, so one read here is never changed underneath."""
        rtype = self.resource_type(resource)
        with self._mutex:
            return self._objects_of(rtype, namespace)

    def _objects_of(self, rtype: ResourceType, namespace: str | None) -> list[Obj]:
        items = self._store[rtype.key].items()
        ordered = sorted(items, key=lambda item: (item[0][0] or "", item[0][1]))
        return [obj for (ns, _), obj in ordered if namespace is None or ns == namespace]

    def _live_objects(self) -> Iterator[tuple[ResourceType, Obj]]:
        for key, objects in list(self._store.items()):
            rtype = self._types.get(key)
            if rtype is not None:
                for obj in list(objects.values()):
                    yield rtype, obj

    # Writing: the object methods are what HTTP requests and the fake controllers share.

    def create_object(self, resource: str | ResourceType, body: Obj, namespace: str | None = None,
                      *, dry_run: bool = False) -> Obj:
        """Create as `POST` would (409 if it exists); returns a copy of the stored object."""
        rtype = self.resource_type(resource)
        with self._mutex:
            return copy.deepcopy(self._create(rtype, namespace, body, dry_run=dry_run))

    def replace_object(self, resource: str | ResourceType, name: str, body: Obj,
                       namespace: str | None = None, *, subresource: str | None = None,
                       dry_run: bool = False) -> Obj:
        """Replace as `PUT` would (409 on a stale `metadata.resourceVersion`)."""
        rtype = self.resource_type(resource)
        with self._mutex:
            old = self._existing(rtype, namespace, name)
            return copy.deepcopy(self._replace(rtype, old, body, subresource, dry_run=dry_run))

    def patch_object(self, resource: str | ResourceType, name: str, patch: Any,
                     namespace: str | None = None, *, subresource: str | None = None,
                     patch_type: str = "merge", dry_run: bool = False) -> Obj:
        """Patch as `PATCH` would; `patch_type` is merge, json, strategic or apply."""
        rtype = self.resource_type(resource)
        with self._mutex:
            return copy.deepcopy(self._patch(rtype, namespace, name, patch, patch_type, subresource,
                                             dry_run=dry_run))

    def delete_object(self, resource: str | ResourceType, name: str, namespace: str | None = None,
                      *, propagation: str | None = None, options: Mapping[str, Any] | None = None,
                      dry_run: bool = False) -> Obj:
        """Delete as `DELETE` would: with finalizers it only gains a deletionTimestamp.

        `propagation` is Background, Foreground or Orphan (the default depends on the type, as on
        a real cluster: Orphan for batch/v1 Jobs); `options` is a whole `DeleteOptions` body.
        """
        rtype = self.resource_type(resource)
        delete_options = dict(options or {})
        if propagation:
            delete_options["propagationPolicy"] = propagation
        with self._mutex:
            return copy.deepcopy(self._delete(rtype, namespace, name, delete_options,
                                              dry_run=dry_run))

    def ensure_namespace(self, name: str) -> Obj:
        """The namespace, created if it does not exist yet."""
        with self._mutex:
            existing = self.get_object("v1/namespaces", name)
            return existing or self.create_object("v1/namespaces", {"metadata": {"name": name}})

    def _existing(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._store[rtype.key].get((namespace if rtype.namespaced else None, name))
        if obj is None:
            raise api_error(404, "NotFound", f'{rtype.label} "{name}" not found',
                            name=name, group=rtype.group, kind=rtype.plural)
        return obj

    def _create(self, rtype: ResourceType, namespace: str | None, body: Any, *,
                dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        if body.get("kind") not in (None, rtype.kind):
            raise api_error(400, "BadRequest",
                            f"the kind of the object ({body['kind']}) does not match {rtype.kind}")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise api_error(400, "BadRequest", "metadata must be an object")
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{_random_suffix()}"
        if not name:
            raise api_error(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required "
                            "value: name or generateName is required")
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise api_error(400, "BadRequest", "the namespace of the provided object does not "
                                "match the namespace sent on the request")
            namespace = namespace or body_ns
            if not namespace:
                raise api_error(400, "BadRequest",
                                f"a namespace is required to create a {rtype.kind}")
            ns_obj = self._store[("", "namespaces")].get((None, namespace))
            if ns_obj is None:
                raise api_error(404, "NotFound", f'namespaces "{namespace}" not found',
                                name=namespace, kind="namespaces")
            if _meta(ns_obj).get("deletionTimestamp"):
                raise api_error(403, "Forbidden", f'{rtype.label} "{name}" is forbidden: unable to '
                                f"create new content in namespace {namespace} because it is being "
                                "terminated")
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        if (namespace, name) in self._store[rtype.key]:
            raise api_error(409, "AlreadyExists", f'{rtype.label} "{name}" already exists',
                            name=name, group=rtype.group, kind=rtype.plural)
        meta["name"] = name
        for key in _SERVER_OWNED_META:
            if key not in ("name", "namespace"):
                meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        if rtype.has_status:
            obj.pop("status", None)
        obj = self._admit(rtype, obj, None)
        if dry_run:
            return obj
        obj = self._commit(rtype, obj, "ADDED", None)
        if rtype.key == _CRD_KEY:
            obj = self._establish_crd(obj)
        return obj

    def _replace(self, rtype: ResourceType, old: Obj, body: Any, subresource: str | None, *,
                 dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise api_error(400, "BadRequest", "the request body must be a JSON object")
        body_name = _meta(body).get("name")
        if body_name and body_name != _meta(old)["name"]:
            raise api_error(400, "BadRequest", f"the name of the object ({body_name}) does not "
                            f"match the name on the URL ({_meta(old)['name']})")
        if rtype.custom and subresource is None and not _meta(body).get("resourceVersion"):
            raise api_error(422, "Invalid", f'{rtype.kind}.{rtype.group} "{_meta(old)["name"]}" is '
                            "invalid: metadata.resourceVersion: Invalid value: 0x0: must be "
                            "specified for an update")
        return self._write(rtype, old, body, subresource, dry_run=dry_run)

    def _patch(self, rtype: ResourceType, namespace: str | None, name: str, patch: Any,
               patch_type: str, subresource: str | None, *, dry_run: bool = False) -> Obj:
        if patch_type == "strategic" and rtype.custom:
            raise api_error(415, "UnsupportedMediaType", "strategic merge patch is not supported "
                            f"for custom resources ({rtype.label}); use a merge or JSON patch")
        key = (namespace if rtype.namespaced else None, name)
        if patch_type == "apply" and key not in self._store[rtype.key] and subresource is None:
            return self._create(rtype, namespace, patch, dry_run=dry_run)
        old = self._existing(rtype, namespace, name)
        try:
            if patch_type == "json":
                candidate = patching.json_patch(old, patch)
            elif isinstance(patch, dict):
                candidate = patching.merge_patch(old, patch)
            else:
                raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
        except patching.PatchTestFailed as exc:
            raise api_error(422, "Invalid", f"the server rejected our request due to an error in "
                            f"our request: {exc}") from exc
        except patching.PatchError as exc:
            raise api_error(422, "Invalid", f"the patch cannot be applied: {exc}") from exc
        return self._write(rtype, old, candidate, subresource, dry_run=dry_run)

    def _write(self, rtype: ResourceType, old: Obj, candidate: Obj, subresource: str | None, *,
               dry_run: bool = False) -> Obj:
        """Store `candidate` as the next version of `old` with the apiserver's rules."""
        old_meta = _meta(old)
        wanted_rv = _meta(candidate).get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != old_meta["resourceVersion"]:
            raise api_error(409, "Conflict", f'Operation cannot be fulfilled on {rtype.label} '
                            f'"{old_meta["name"]}": the object has been modified; please apply '
                            "your changes to the latest version and try again",
                            name=old_meta["name"], group=rtype.group, kind=rtype.plural)
        if subresource == "status":
            # Stored objects are never changed in place (a write stores a new one), so the new
            # version shares all but its metadata and status with the old: a status write on a
            # Job does not copy its pod template.
            new = {**old, "metadata": {**old_meta}}
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(candidate)
            new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                meta = new["metadata"] = {}
            for key in _SERVER_OWNED_META:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if rtype.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise api_error(422, "Forbidden", f"metadata.finalizers: Forbidden: no new "
                                    f"finalizers can be added if the object is being deleted, "
                                    f"found new finalizers {sorted(added)}")
        new = self._admit(rtype, new, old)
        excluded = {"metadata", "status"} if rtype.has_status else {"metadata"}
        if any(new.get(key) != old.get(key) for key in set(new) | set(old) if key not in excluded):
            _meta(new)["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == old or dry_run:
            return new
        new_meta = _meta(new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers") and \
                rtype.key != ("", "namespaces"):
            return self._commit(rtype, new, "DELETED", old)
        committed = self._commit(rtype, new, "MODIFIED", old)
        if rtype.key == _CRD_KEY:
            committed = self._establish_crd(committed)
        return committed

    def _delete(self, rtype: ResourceType, namespace: str | None, name: str, options: Any, *,
                dry_run: bool = False) -> Obj:
        old = self._existing(rtype, namespace, name)
        old_meta = _meta(old)
        options = options if isinstance(options, dict) else {}
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            if preconditions.get(key) and preconditions[key] != old_meta.get(key):
                raise api_error(409, "Conflict", f'Operation cannot be fulfilled on {rtype.label} '
                                f'"{name}": Precondition failed: {key} in precondition: '
                                f"{preconditions[key]}, {key} in object meta: {old_meta.get(key)}")
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            # batch/v1 Jobs keep their pods unless told otherwise, as on a real cluster.
            policy = "Orphan" if rtype.key == ("batch", "jobs") else "Background"
        if dry_run:
            return old
        if policy == "Orphan":
            self._orphan_dependents(old_meta["uid"])
        if old_meta.get("deletionTimestamp"):
            return old
        finalizers = list(old_meta.get("finalizers") or [])
        if policy == "Foreground" and _FOREGROUND not in finalizers:
            finalizers.append(_FOREGROUND)
        self._gc_dirty = True
        if rtype.key == ("", "namespaces"):
            new = copy.deepcopy(old)
            _meta(new)["deletionTimestamp"] = _now()
            new.setdefault("status", {})["phase"] = "Terminating"
            return self._commit(rtype, new, "MODIFIED", old)
        if not finalizers:
            return self._commit(rtype, copy.deepcopy(old), "DELETED", old)
        new = copy.deepcopy(old)
        new_meta = _meta(new)
        new_meta.update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0,
                        finalizers=finalizers, generation=int(old_meta.get("generation", 1)) + 1)
        return self._commit(rtype, new, "MODIFIED", old)

    def _commit(self, rtype: ResourceType, obj: Obj, change_type: str, old: Obj | None) -> Obj:
        """Give `obj` the next resourceVersion, store or drop it, and tell the watchers."""
        self._rv += 1
        meta = _meta(obj)
        meta["resourceVersion"] = str(self._rv)
        key = (meta.get("namespace") if rtype.namespaced else None, meta["name"])
        history_key = (kmock.resource(rtype.group, rtype.version, rtype.plural), key[0], key[1])
        if change_type == "DELETED":
            self._store[rtype.key].pop(key, None)
            if rtype.key == _CRD_KEY:
                self._unregister(catalog.type_from_crd(obj).key)
            if history_key in self._objects:
                self._objects[history_key].delete()
            if rtype.kind == "Pod":
                self.pod_logs.pop((key[0] or "", key[1]), None)
        else:
            self._store[rtype.key][key] = obj
            if history_key in self._objects:
                self._objects[history_key].create(obj)
            else:
                self._objects[history_key] = obj
        self._gc_dirty = True
        change = Change(rv=self._rv, key=rtype.key, type=change_type, obj=obj, old=old)
        self._log.append(change)
        for watcher in list(self._watchers):
            concerned = watcher.key == rtype.key and watcher.namespace in (None, key[0])
            if concerned and not watcher.notify(change):
                self._watchers.discard(watcher)
        return obj

    def _orphan_dependents(self, owner_uid: str) -> None:
        for rtype, obj in list(self._live_objects()):
            refs = _meta(obj).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                new = copy.deepcopy(obj)
                _meta(new)["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                self._commit(rtype, new, "MODIFIED", obj)

    # Admission: defaulting and validation by type.

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        meta = _meta(obj)
        problems = _metadata_problems(meta, rtype)
        if rtype.custom:
            version_schema = rtype.schemas.get(rtype.version) or {}
            if version_schema:
                obj = schema.prune(obj, version_schema, root=True)
                obj = schema.apply_defaults(obj, version_schema)
                problems += schema.validate(obj, version_schema)
        else:
            admit = _ADMISSION.get(rtype.key)
            if admit is not None:
                problems += admit(obj, old)
        if problems:
            name = meta.get("name", "")
            kind = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
            raise api_error(422, "Invalid", f'{kind} "{name}" is invalid: ' + "; ".join(problems),
                            name=name, group=rtype.group, kind=rtype.kind,
                            causes=[{"message": problem} for problem in problems])
        return obj

    def _establish_crd(self, crd: Obj) -> Obj:
        """Register the CRD's resource and report it established, as the CRD controller does."""
        rtype = catalog.type_from_crd(crd)
        if _meta(crd).get("deletionTimestamp"):
            return crd
        self._register(rtype)
        names = dict((crd.get("spec") or {}).get("names") or {})
        names.setdefault("singular", rtype.singular)
        names.setdefault("listKind", f"{rtype.kind}List")
        now = _now()
        status = {
            "acceptedNames": names,
            "storedVersions": [rtype.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        }
        new = copy.deepcopy(crd)
        finalizers = _meta(new).setdefault("finalizers", [])
        if _CRD_CLEANUP not in finalizers:
            finalizers.append(_CRD_CLEANUP)
        old_conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
        if set(old_conditions) >= {"NamesAccepted", "Established"}:
            status["conditions"] = list(old_conditions.values())
        new["status"] = status
        if new == crd:
            return crd
        return self._commit(self._types[_CRD_KEY], new, "MODIFIED", crd)

    # Garbage collection, namespace cascade and CRD cleanup, run from the server's loop.

    async def collect_garbage_forever(self) -> None:
        """Run `collect_garbage` whenever something changed, every `gc_interval` seconds, or
        less often on a large cluster: a pass looks at every object, so the pause after one
        is at least `gc_pause_factor` times as long as the pass took (as the real collector,
        it runs behind the changes and never holds the API up)."""
        loop = asyncio.get_running_loop()
        pause = self.gc_interval
        while True:
            await asyncio.sleep(pause)
            if self._gc_dirty:
                self._gc_dirty = False
                began = loop.time()
                self.collect_garbage()
                pause = max(self.gc_interval, self.gc_pause_factor * (loop.time() - began))

    def collect_garbage(self) -> None:
        """One pass of the garbage collector, the namespace and the CRD cleanup controllers."""
        with self._mutex:
            live = {_meta(obj)["uid"]: obj for _, obj in self._live_objects()}
            dependents: dict[str, int] = collections.Counter()
            for rtype, obj in list(self._live_objects()):
                meta = _meta(obj)
                refs = meta.get("ownerReferences") or []
                for ref in refs:
                    dependents[ref.get("uid", "")] += 1
                if refs and not meta.get("deletionTimestamp") and all(
                        ref.get("uid") not in live or _FOREGROUND in
                        (_meta(live[ref["uid"]]).get("finalizers") or []) for ref in refs):
                    # As the real collector: in the background, unless an owner waits for its
                    # dependents (Foreground), whatever the dependent's own type defaults to.
                    policy = "Foreground" if any(ref.get("uid") in live for ref in refs) \
                        else "Background"
                    self._delete(rtype, meta.get("namespace"), meta["name"],
                                 {"propagationPolicy": policy})
            for rtype, obj in list(self._live_objects()):
                meta = _meta(obj)
                if _FOREGROUND in (meta.get("finalizers") or []) and not dependents[meta["uid"]]:
                    self._drop_finalizer(rtype, obj, _FOREGROUND)
            for ns_obj in list(self._store[("", "namespaces")].values()):
                if _meta(ns_obj).get("deletionTimestamp"):
                    self._empty_namespace(ns_obj)
            for crd in list(self._store[_CRD_KEY].values()):
                if _meta(crd).get("deletionTimestamp"):
                    self._clean_up_crd(crd)

    def _drop_finalizer(self, rtype: ResourceType, obj: Obj, finalizer: str) -> None:
        new = copy.deepcopy(obj)
        _meta(new)["finalizers"] = [f for f in _meta(obj).get("finalizers") or [] if f != finalizer]
        change = "DELETED" if not _meta(new)["finalizers"] and _meta(new).get("deletionTimestamp") \
            else "MODIFIED"
        self._commit(rtype, new, change, obj)

    def _empty_namespace(self, ns_obj: Obj) -> None:
        name = _meta(ns_obj)["name"]
        remaining = 0
        for rtype, obj in list(self._live_objects()):
            meta = _meta(obj)
            if rtype.namespaced and meta.get("namespace") == name:
                remaining += 1
                if not meta.get("deletionTimestamp"):
                    self._delete(rtype, name, meta["name"], {"propagationPolicy": "Background"})
        if not remaining and not _meta(ns_obj).get("finalizers"):
            self._commit(self._types[("", "namespaces")], copy.deepcopy(ns_obj), "DELETED", ns_obj)

    def _clean_up_crd(self, crd: Obj) -> None:
        rtype = catalog.type_from_crd(crd)
        remaining = list(self._store[rtype.key].values())
        for obj in remaining:
            if not _meta(obj).get("deletionTimestamp"):
                self._delete(rtype, _meta(obj).get("namespace"), _meta(obj)["name"], {})
        if not self._store[rtype.key]:
            self._drop_finalizer(self._types[_CRD_KEY], crd, _CRD_CLEANUP)

    # Subscriptions for watch streams and the fake controllers.

    def subscribe(self, resource: str | ResourceType,
                  namespace: str | None = None) -> asyncio.Queue[Change | None]:
        """A queue in the running loop that gets every later change of this resource."""
        queue, _, _ = self.open_watch(resource, namespace, since=None, replay=False)
        return queue

    def open_watch(self, resource: str | ResourceType, namespace: str | None, *,
                   since: str | None, replay: bool = True,
                   ) -> tuple[asyncio.Queue[Change | None], list[Change], int]:
        """Subscribe, then take what the stream starts with, atomically (no change falls between).

        Returns the queue of later changes, the changes to send first (ADDED for every object
        when `since` is unset or "0", else the logged changes after `since`), and the
        resourceVersion the queue starts after. An expired `since` raises 410 Gone.
        """
        rtype = self.resource_type(resource)
        watcher = _Watcher(key=rtype.key, namespace=namespace, loop=asyncio.get_running_loop())
        with self._mutex:
            initial: list[Change] = []
            if replay and since in (None, "", "0"):
                initial = [Change(rv=int(_meta(obj)["resourceVersion"]), key=rtype.key,
                                  type="ADDED", obj=obj, old=None)
                           for obj in self._objects_of(rtype, namespace)]
            elif replay and since is not None:
                try:
                    since_rv = int(since)
                except ValueError as exc:
                    raise api_error(400, "BadRequest",
                                    f"invalid resourceVersion {since!r}") from exc
                if len(self._log) == self._log.maxlen and self._log[0].rv > since_rv + 1:
                    raise api_error(410, "Expired", f"too old resource version: {since_rv} "
                                    f"({self._log[0].rv - 1})")
                initial = [change for change in self._log if change.rv > since_rv
                           and change.key == rtype.key and (namespace is None or namespace ==
                                                            _meta(change.obj).get("namespace"))]
            self._watchers.add(watcher)
            return watcher.queue, initial, self._rv

    def list_snapshot(self, resource: str | ResourceType, namespace: str | None,
                      matches: Callable[[Obj], bool]) -> tuple[list[Obj], int]:
        """Copies of the matching objects and the resourceVersion they are current at."""
        rtype = self.resource_type(resource)
        with self._mutex:
            objects = self._objects_of(rtype, namespace)
            items = [copy.deepcopy(obj) for obj in objects if matches(obj)]
            return items, self._rv

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        with self._mutex:
            self._watchers = {w for w in self._watchers if w.queue is not queue}

    def close_watches(self) -> None:
        """End every open watch stream and subscription (the server is stopping)."""
        with self._mutex:
            for watcher in self._watchers:
                watcher.notify(None)
            self._watchers.clear()

    # Discovery.

    def served_type(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._mutex:
            return self._served.get((group, version, plural))

    def served_groups(self) -> dict[str, list[ResourceType]]:
        """Every served type by group, the core group ("") first, in registration order."""
        with self._mutex:
            groups: dict[str, list[ResourceType]] = {"": []}
            for rtype in self._types.values():
                groups.setdefault(rtype.group, []).append(rtype)
            return groups

    # HTTP: kmock's DSL reactions first, then the emulated apiserver.

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock's own request parsing fails on `/api/v1/namespaces`; this one reads it right.
        request = await _parse_request(raw_request, request_id=len(self._requests))
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:
            self.failures.append(exc)
            logger.exception("the emulator failed on %s %s", request.method.value, request.url)
            return aiohttp.web.json_response(http_api.status_body(api_error(
                500, "InternalError", f"the emulator failed: {exc!r}")), status=500)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self._payloads:
            try:
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass
        return await http_api.serve(self, request)


async def _parse_request(raw: aiohttp.web.BaseRequest, request_id: int) -> kmock.Request:
    body = await raw.read()
    text = body.decode(errors="replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    target = http_api.parse_resource_path(raw.path)
    action = None
    if target is not None:
        named = target.name is not None
        action = {("GET", False): kmock.action.LIST, ("GET", True): kmock.action.FETCH,
                  ("POST", False): kmock.action.CREATE, ("PATCH", True): kmock.action.UPDATE,
                  ("DELETE", True): kmock.action.DELETE}.get((raw.method, named))
        if raw.method == "GET" and (target.watch or raw.query.get("watch") in ("true", "1")):
            action = kmock.action.WATCH
    return kmock.Request(
        id=request_id, raw_request=raw, url=raw.url, method=raw.method, params=dict(raw.query),
        headers=dict(raw.headers), cookies=dict(raw.cookies), body=body, text=text, data=data,
        action=action,
        resource=kmock.resource(target.group, target.version, target.plural) if target else None,
        namespace=target.namespace if target else None, name=target.name if target else None,
        subresource=target.subresource if target else None)


def _metadata_problems(meta: dict[str, Any], rtype: ResourceType) -> list[str]:
    problems = []
    name = str(meta.get("name", ""))
    limit = 63 if rtype.key in _LABEL_LIMITED else 253
    if rtype.kind != "Event" and (len(name) > limit or not _SUBDOMAIN.match(name)):
        problems.append(f"metadata.name: Invalid value: {name!r}: must consist of lower case "
                        f"alphanumeric characters, '-' or '.', at most {limit} characters")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = str(key).rpartition("/")
        if not _LABEL_NAME.match(label) or len(label) > 63 or (prefix and len(prefix) > 253):
            problems.append(f"metadata.labels: Invalid value: {key!r}: invalid label key")
        valid = isinstance(value, str) and len(value) <= 63 and \
            (not value or _LABEL_NAME.match(value))
        if not valid:
            problems.append(f"metadata.labels: Invalid value: {value!r}: a label value must be 63 "
                            "characters or less, alphanumeric, '-', '_' or '.'")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            problems.append(f"metadata.annotations.{key}: Invalid value: must be a string")
    return problems


def _containers_problems(pod_spec: Any, path: str) -> list[str]:
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        return [f"{path}.containers: Required value"]
    problems = []
    for index, container in enumerate(pod_spec["containers"]):
        for key in ("name", "image"):
            if not container.get(key):
                problems.append(f"{path}.containers[{index}].{key}: Required value")
    return problems


def _admit_namespace(obj: Obj, old: Obj | None) -> list[str]:
    if old is None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    return []


def _admit_secret(obj: Obj, old: Obj | None) -> list[str]:
    data = obj.setdefault("data", {}) or {}
    for key, value in (obj.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data
    obj.setdefault("type", "Opaque")
    return []


def _admit_pod(obj: Obj, old: Obj | None) -> list[str]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    if old is None:
        obj["status"] = {"phase": "Pending"}
    return _containers_problems(spec, "spec")


def _admit_deployment(obj: Obj, old: Obj | None) -> list[str]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.get("template") or {}
    problems = _containers_problems(template.get("spec"), "spec.template.spec")
    selector = spec.get("selector")
    if not selector:
        problems.append("spec.selector: Required value")
    elif not label_selector_from_spec(selector)(_meta(template).get("labels") or {}):
        problems.append("spec.template.metadata.labels: Invalid value: `selector` does not match "
                        "template `labels`")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        problems.append("spec.selector: Invalid value: field is immutable")
    return problems


def _admit_job(obj: Obj, old: Obj | None) -> list[str]:
    spec = obj.setdefault("spec", {})
    if old is None:
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None
                        else 6)
        spec.setdefault("suspend", False)
        spec.setdefault("manualSelector", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        uid, name = _meta(obj)["uid"], _meta(obj)["name"]
        labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                  "controller-uid": uid, "job-name": name}
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    problems = _containers_problems(pod_spec, "spec.template.spec")
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append('spec.template.spec.restartPolicy: Required value: valid values: '
                        '"OnFailure", "Never"')
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        problems.append("spec.completions: Required value: when completion mode is Indexed")
    if spec.get("backoffLimitPerIndex") is not None and spec.get("completionMode") != "Indexed":
        problems.append("spec.backoffLimitPerIndex: Invalid value: requires the Indexed "
                        "completion mode")
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in ("template", "selector", "completionMode"):
            if old_spec.get(key) != spec.get(key):
                problems.append(f"spec.{key}: Invalid value: field is immutable")
    return problems


def _admit_service(obj: Obj, old: Obj | None) -> list[str]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if old is None and not spec.get("clusterIP"):
        spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
    elif old is not None:
        spec["clusterIP"] = (old.get("spec") or {}).get("clusterIP", spec.get("clusterIP"))
    return []


def _admit_crd(obj: Obj, old: Obj | None) -> list[str]:
    return catalog.crd_problems(obj)


_ADMISSION: dict[tuple[str, str], Callable[[Obj, Obj | None], list[str]]] = {
    ("", "namespaces"): _admit_namespace,
    ("", "secrets"): _admit_secret,
    ("", "pods"): _admit_pod,
    ("", "services"): _admit_service,
    ("apps", "deployments"): _admit_deployment,
    ("batch", "jobs"): _admit_job,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _admit_crd,
}
