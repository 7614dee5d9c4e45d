"""The HTTP face of the emulated apiserver: routing, discovery, lists, watches and errors.

Paths are parsed here rather than by kmock (which mis-reads `/api/v1/namespaces/NAME`), every
resource request is recorded as an `ApiCall`, and watches are newline-delimited JSON with the
`application/json` content type that client-go and the Python client expect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp.web
import kmock
import yaml

from tests.k8s import catalog, patching, tables
from tests.k8s.catalog import ResourceType
from tests.k8s.selectors import SelectorError, parse_field_selector, parse_label_selector

if TYPE_CHECKING:
    from tests.k8s.emulator import Change, ClusterEmulator

Obj = dict[str, Any]
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")  # /namespaces/NAME/<these> is the namespace
_DEFAULT_WATCH_TIMEOUT = 1800.0


@dataclass
class ApiCall:
    """One request to a resource, in the terms of an RBAC rule, and the status code of its
    answer once it is known (a watch's once it started)."""

    verb: str
    group: str
    version: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    user_agent: str = ""
    accept: str = ""
    status: int | None = None

    @property
    def rbac_resource(self) -> str:
        """`pods` or `pods/log`: how a Role names what this call touched."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """An error the client receives as a `Status` object with this code and reason."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


def status_body(exc: kmock.KubernetesError) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": exc.message, "reason": exc.reason, "code": exc.status}
    if exc.details:
        body["details"] = dict(exc.details)
    return body


def _header(request: kmock.Request, name: str) -> str:
    return next((value for key, value in request.headers.items() if key.lower() == name), "")


def parse_body(request: kmock.Request, *, patch: bool = False) -> tuple[Any, str]:
    """The decoded body and, for a PATCH, its patch type (merge, json, strategic, apply).

    Raises 415 for media types a real apiserver refuses, e.g. a PATCH sent as plain JSON.
    """
    media = _header(request, "content-type").split(";")[0].strip().lower()
    kind = "body"
    if patch:
        if media not in PATCH_TYPES:
            raise api_error(415, "UnsupportedMediaType", "the body of the request was in an "
                            f"unknown format ({media or 'none'}) - accepted media types include: "
                            + ", ".join(PATCH_TYPES))
        kind = PATCH_TYPES[media]
    elif request.body and media not in ("", "application/json", "application/yaml"):
        hint = (" (kubectl's generator commands send protobuf: use `kubectl apply -f` instead)"
                if "protobuf" in media else "")
        raise api_error(415, "UnsupportedMediaType", "the body of the request was in an unknown "
                        f"format ({media}) - accepted media types include: application/json, "
                        f"application/yaml{hint}")
    if not request.body:
        return None, kind
    try:
        if media.endswith("yaml"):
            return yaml.safe_load(request.body), kind
        return json.loads(request.body), kind
    except (ValueError, yaml.YAMLError) as exc:
        raise api_error(400, "BadRequest", f"the request body does not decode: {exc}") from exc


@dataclass(frozen=True)
class ResourcePath:
    """A resource URL taken apart: `/apis/G/V[/namespaces/NS]/PLURAL[/NAME[/SUB]]`."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def parse_resource_path(path: str) -> ResourcePath | None:
    """The parts of a resource URL; None for discovery and non-API paths.

    `/api/v1/namespaces/NAME[/status]` is the namespace itself, as the apiserver reads it.
    """
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or not rest[0]:
        return None
    return ResourcePath(group=group, version=version, plural=rest[0],
                        name=rest[1] if len(rest) > 1 else None,
                        subresource="/".join(rest[2:]) or None, namespace=namespace, watch=watch)


def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(body, status=status)


def _at_version(obj: Obj, rtype: ResourceType, version: str) -> Obj:
    """The object as served at `version` (CRD conversion strategy None: only apiVersion)."""
    return {**obj, "apiVersion": rtype.api_version_for(version)} if obj else obj


def matcher(labels: str | None, fields: str | None) -> Callable[[Obj], bool]:
    """A predicate over objects for the `labelSelector` and `fieldSelector` parameters."""
    try:
        label_match = parse_label_selector(labels)
        field_match = parse_field_selector(fields)
    except SelectorError as exc:
        raise api_error(400, "BadRequest", str(exc)) from exc

    def matches(obj: Obj) -> bool:
        return label_match((obj.get("metadata") or {}).get("labels") or {}) and field_match(obj)

    return matches


async def serve(emulator: ClusterEmulator, request: kmock.Request) -> aiohttp.web.StreamResponse:
    """Answer one request as the apiserver would, errors as `Status` objects."""
    try:
        return await _route(emulator, request)
    except kmock.KubernetesError as exc:
        return _json(status_body(exc), status=exc.status)


async def _route(emulator: ClusterEmulator, request: kmock.Request) -> aiohttp.web.StreamResponse:
    path = request.url.path.strip("/")
    groups = emulator.served_groups()
    if path == "":
        paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz"}
        for group, types in groups.items():
            if group:
                paths.add(f"/apis/{group}")
                paths.update(f"/apis/{group}/{v}" for t in types for v in t.versions)
        return _json({"paths": sorted(paths)})
    if path in ("healthz", "livez", "readyz"):
        return aiohttp.web.Response(text="ok")
    if path == "version":
        return _json(catalog.SERVER_VERSION)
    parts = path.split("/")
    if parts[0] == "openapi":
        raise api_error(404, "NotFound", "the emulated apiserver serves no OpenAPI documents "
                        "(use kubectl --validate=false)")
    if parts[0] == "api":
        if len(parts) == 1:
            address = f"{request.url.host}:{request.url.port}"
            return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis":
        if len(parts) == 1:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                catalog.group_document(group, types) for group, types in groups.items() if group]})
        group = parts[1]
        if len(parts) == 2:
            if group not in groups or not group:
                raise api_error(404, "NotFound", "the server could not find the requested resource")
            return _json(catalog.group_document(group, groups[group]))
        version, rest = parts[2], parts[3:]
    else:
        raise api_error(404, "NotFound", "the server could not find the requested resource")
    if not rest:
        types = [t for t in groups.get(group, []) if version in t.versions]
        if not types and (group, version) != ("", "v1"):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return _json(catalog.resource_list(group, version, types))
    target = parse_resource_path(request.url.path)
    if target is None:
        raise api_error(404, "NotFound", "the server could not find the requested resource")
    return await _resource_request(emulator, request, target)


async def _resource_request(emulator: ClusterEmulator, request: kmock.Request,
                            target: ResourcePath) -> aiohttp.web.StreamResponse:
    group, version, namespace = target.group, target.version, target.namespace
    plural, name, subresource = target.plural, target.name, target.subresource
    rtype = emulator.served_type(group, version, plural)
    if rtype is None or (namespace is not None and not rtype.namespaced):
        raise api_error(404, "NotFound", "the server could not find the requested resource")
    if subresource is not None and subresource not in rtype.subresources:
        raise api_error(404, "NotFound", "the server could not find the requested resource")
    if subresource == "log" and request.method.value != "GET":
        raise api_error(405, "MethodNotAllowed", "pods/log only answers GET")
    params = dict(request.params)
    method = str(request.method.value).upper()
    watch = target.watch or params.get("watch") in ("true", "1")
    verb = {
        ("GET", True): "watch" if watch else "get", ("GET", False): "watch" if watch else "list",
        ("POST", False): "create", ("PUT", True): "update", ("PATCH", True): "patch",
        ("DELETE", True): "delete", ("DELETE", False): "deletecollection",
    }.get((method, name is not None))
    if verb is None:
        raise api_error(405, "MethodNotAllowed", f"{method} is not supported on this path")
    call = ApiCall(verb=verb, group=group, version=version, resource=plural,
                   subresource=subresource, namespace=namespace, name=name,
                   user_agent=_header(request, "user-agent"), accept=_header(request, "accept"))
    emulator.calls.append(call)
    try:
        response = await _answer(emulator, request, target, rtype, verb, params)
    except kmock.KubernetesError as exc:
        call.status = exc.status
        raise
    call.status = response.status
    return response


async def _answer(emulator: ClusterEmulator, request: kmock.Request, target: ResourcePath,
                  rtype: ResourceType, verb: str,
                  params: dict[str, str]) -> aiohttp.web.StreamResponse:
    group, version, namespace = target.group, target.version, target.namespace
    plural, name, subresource = target.plural, target.name, target.subresource
    dry_run = "All" in params.get("dryRun", "")
    if verb == "watch":
        return await _watch(emulator, request, rtype, version, namespace, name, params)
    as_table = tables.wants_table(_header(request, "accept"))
    include_object = params.get("includeObject") == "Object"
    if verb == "list":
        items, rv = emulator.list_snapshot(
            rtype, namespace, matcher(params.get("labelSelector"), params.get("fieldSelector")))
        if as_table:
            return _json(tables.table(rtype, [_at_version(i, rtype, version) for i in items],
                                      str(rv), include_object=include_object))
        if _metadata_only(request):
            return _json({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                          "metadata": {"resourceVersion": str(rv)},
                          "items": [_partial(item) for item in items]})
        return _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version_for(version),
                      "metadata": {"resourceVersion": str(rv)},
                      "items": [_at_version(item, rtype, version) for item in items]})
    if verb == "create":
        body, _ = parse_body(request)
        created = emulator.create_object(rtype, body, namespace, dry_run=dry_run)
        return _json(_at_version(created, rtype, version), status=201)
    assert name is not None
    if subresource == "log":
        return _pod_log(emulator, namespace, name, params)
    if subresource == "scale":
        return await _scale(emulator, request, rtype, namespace, name, verb)
    if verb == "get":
        obj = emulator.get_object(rtype, name, namespace)
        if obj is None:
            raise api_error(404, "NotFound", f'{rtype.label} "{name}" not found',
                            name=name, group=group, kind=plural)
        if as_table:
            return _json(tables.table(rtype, [_at_version(obj, rtype, version)],
                                      obj["metadata"]["resourceVersion"],
                                      include_object=include_object))
        if _metadata_only(request):
            return _json(_partial(obj))
        return _json(_at_version(obj, rtype, version))
    if verb == "update":
        body, _ = parse_body(request)
        replaced = emulator.replace_object(rtype, name, body, namespace, subresource=subresource,
                                           dry_run=dry_run)
        return _json(_at_version(replaced, rtype, version))
    if verb == "patch":
        patch, patch_type = parse_body(request, patch=True)
        patched = emulator.patch_object(rtype, name, patch, namespace, subresource=subresource,
                                        patch_type=patch_type, dry_run=dry_run)
        return _json(_at_version(patched, rtype, version))
    options = _delete_options(request, params)
    if verb == "delete":
        deleted = emulator.delete_object(rtype, name, namespace, options=options, dry_run=dry_run)
        return _json(_at_version(deleted, rtype, version))
    return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})


def _delete_options(request: kmock.Request, params: Mapping[str, str]) -> Obj:
    options: Obj = {}
    if request.body:
        try:
            decoded = json.loads(request.body)
        except ValueError as exc:
            raise api_error(400, "BadRequest", f"DeleteOptions do not decode: {exc}") from exc
        if isinstance(decoded, dict):
            options.update(decoded)
    if "propagationPolicy" in params:
        options["propagationPolicy"] = params["propagationPolicy"]
    if "orphanDependents" in params:
        options["orphanDependents"] = params["orphanDependents"] == "true"
    return options


def _pod_log(emulator: ClusterEmulator, namespace: str | None, name: str,
             params: Mapping[str, str]) -> aiohttp.web.Response:
    if emulator.get_object("v1/pods", name, namespace) is None:
        raise api_error(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
    text = emulator.pod_logs.get((namespace or "", name), "")
    if params.get("tailLines"):
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-int(params["tailLines"]):])
    return aiohttp.web.Response(text=text, content_type="text/plain")


async def _scale(emulator: ClusterEmulator, request: kmock.Request, rtype: ResourceType,
                 namespace: str | None, name: str, verb: str) -> aiohttp.web.Response:
    obj = emulator.get_object(rtype, name, namespace)
    if obj is None:
        raise api_error(404, "NotFound", f'{rtype.label} "{name}" not found', name=name)
    meta = obj["metadata"]
    scale: Obj = {"kind": "Scale", "apiVersion": "autoscaling/v1",
             "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp") if key in meta},
             "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
             "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)}}
    if verb == "get":
        return _json(scale)
    if verb == "update":
        new_scale, _ = parse_body(request)
    else:
        patch, patch_type = parse_body(request, patch=True)
        try:
            new_scale = (patching.json_patch(scale, patch) if patch_type == "json"
                         else patching.merge_patch(scale, patch))
        except patching.PatchError as exc:
            raise api_error(422, "Invalid", f"the patch cannot be applied: {exc}") from exc
    replicas = ((new_scale or {}).get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise api_error(422, "Invalid",
                        "spec.replicas: Invalid value: must be a non-negative integer")
    updated = emulator.patch_object(rtype, name, {"spec": {"replicas": replicas}}, namespace)
    scale["spec"]["replicas"] = replicas
    scale["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]
    return _json(scale)


def _event_type(change: Change, matches: Callable[[Obj], bool]) -> str | None:
    """How a change looks through a selector: objects move in (ADDED) and out (DELETED) of it."""
    now = matches(change.obj)
    if change.type != "MODIFIED":
        return change.type if now else None
    before = change.old is not None and matches(change.old)
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


async def _watch(emulator: ClusterEmulator, request: kmock.Request, rtype: ResourceType,
                 version: str, namespace: str | None, name: str | None,
                 params: Mapping[str, str]) -> aiohttp.web.StreamResponse:
    fields = params.get("fieldSelector") or ""
    if name is not None:
        fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
    matches = matcher(params.get("labelSelector"), fields)
    try:
        timeout = float(params.get("timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
    except ValueError as exc:
        raise api_error(400, "BadRequest", f"invalid timeoutSeconds: {exc}") from exc
    response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
    assert request._raw_request is not None
    try:
        queue, initial, last_rv = emulator.open_watch(rtype, namespace,
                                                      since=params.get("resourceVersion"))
    except kmock.KubernetesError as exc:
        if exc.status != 410:
            raise
        await response.prepare(request._raw_request)
        await _write_event(response, {"type": "ERROR", "object": status_body(exc)})
        await response.write_eof()
        return response
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await response.prepare(request._raw_request)
        metadata_only = _metadata_only(request)
        for change in initial:
            await _send(response, change, matches, rtype, version, metadata_only)
        while (remaining := deadline - loop.time()) > 0:
            try:
                next_change = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            if next_change is None:
                break
            if next_change.rv <= last_rv:
                continue
            last_rv = next_change.rv
            await _send(response, next_change, matches, rtype, version, metadata_only)
        await response.write_eof()
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass
    finally:
        emulator.unsubscribe(queue)
    return response


async def _send(response: aiohttp.web.StreamResponse, change: Change,
                matches: Callable[[Obj], bool], rtype: ResourceType, version: str,
                metadata_only: bool = False) -> None:
    event_type = _event_type(change, matches)
    if event_type is not None:
        shown = _partial(change.obj) if metadata_only else _at_version(change.obj, rtype,
                                                                       version)
        await _write_event(response, {"type": event_type, "object": shown})


def _metadata_only(request: kmock.Request) -> bool:
    """The client asked for `PartialObjectMetadata` (or a list of them): metadata, no data."""
    return "as=PartialObjectMetadata" in _header(request, "accept")


def _partial(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"]}


async def _write_event(response: aiohttp.web.StreamResponse, event: Obj) -> None:
    await response.write(json.dumps(event).encode() + b"\n")
