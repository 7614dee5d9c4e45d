"""The emulated apiserver, driven through the real `kubernetes` client.

These tests pin the API semantics the operator's tests rely on, so a mistake in the emulator
shows up here instead of as a false pass elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import kmock
import kubernetes
import pytest
from kubernetes.client import ApiException

from tests.k8s.emulator import ClusterEmulator
from tests.k8s.server import EmulatedCluster, wait_for

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "colour": {"type": "string", "default": "blue"},
                    }},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"},
                        "count": {"type": "integer"},
                    }},
                },
            }},
        }],
    },
}
GROUP, VERSION, PLURAL = "example.dev", "v1", "widgets"
client: Any = kubernetes.client  # its generated models are not worth typing out in tests
Watch: Any = kubernetes.watch.Watch


def _status(exc: pytest.ExceptionInfo[ApiException]) -> int:
    return int(exc.value.status)


def _http(cluster: EmulatedCluster, method: str, path: str, body: Any = None,
          content_type: str = "application/json") -> tuple[int, Any]:
    """A raw request, for what the typed client cannot send or hides."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{cluster.url}{path}", data=data, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def core(k8s_api: Any) -> Any:
    return client.CoreV1Api(k8s_api)


@pytest.fixture
def custom(k8s_api: Any, k8s_cluster: EmulatedCluster) -> Any:
    client.ApiextensionsV1Api(k8s_api).create_custom_resource_definition(CRD)
    return client.CustomObjectsApi(k8s_api)


def _widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget",
            "metadata": {"name": name, **meta}, "spec": {"size": size}}


def test_create_fills_in_metadata_the_server_owns(core: Any) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    second = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})

    assert first.metadata.namespace == "default"
    assert first.metadata.uid and first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert second.metadata.name.startswith("gen-") and len(second.metadata.name) == 9
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert _status(exc) == 409
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("missing", {"metadata": {"name": "a"}})
    assert _status(exc) == 404
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Not_Valid"}})
    assert _status(exc) == 422


def test_lists_are_typed_and_filtered_by_label_and_field_selectors(
        core: Any, k8s_cluster: EmulatedCluster) -> None:
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {})]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
    before = core.list_namespaced_config_map("default")

    def names(**selectors: str) -> list[str]:
        listed = core.list_namespaced_config_map("default", **selectors)
        return [item.metadata.name for item in listed.items]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app!=x") == ["b", "c"]
    assert names(label_selector="app in (x, y),!tier") == ["b"]
    assert names(label_selector="app notin (x)") == ["b", "c"]
    assert names(label_selector="app") == ["a", "b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="metadata.namespace=default,metadata.name!=a") == ["b", "c"]
    _, raw = _http(k8s_cluster, "GET", "/api/v1/namespaces/default/configmaps")
    assert raw["kind"] == "ConfigMapList" and raw["apiVersion"] == "v1"
    assert int(raw["metadata"]["resourceVersion"]) >= int(before.metadata.resource_version)
    with pytest.raises(ApiException) as exc:
        names(label_selector="app in (x")
    assert _status(exc) == 400


def test_field_selectors_reach_into_status(core: Any, k8s_cluster: EmulatedCluster) -> None:
    k8s_cluster.controllers.pods.ready_gate = lambda pod: False  # no pod starts by itself
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    for name in ("idle", "busy"):
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": spec})
    core.patch_namespaced_pod_status("busy", "default", {"status": {"phase": "Running"}})

    def names(selector: str) -> list[str]:
        listed = core.list_pod_for_all_namespaces(field_selector=selector)
        return [item.metadata.name for item in listed.items]

    assert names("status.phase=Running") == ["busy"]
    assert names("status.phase!=Running") == ["idle"]


def test_merge_and_json_patches_with_test_operations(core: Any,
                                                    k8s_cluster: EmulatedCluster) -> None:
    created = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "p", "labels": {"a": "1"}}, "data": {"k": "v", "x": "y"}})
    merged = core.patch_namespaced_config_map("p", "default", {"data": {"x": None, "n": "new"}})
    assert merged.data == {"k": "v", "n": "new"}
    assert int(merged.metadata.resource_version) > int(created.metadata.resource_version)

    ops = [{"op": "test", "path": "/metadata/resourceVersion",
            "value": merged.metadata.resource_version},
           {"op": "add", "path": "/metadata/finalizers", "value": ["example.dev/hold"]},
           {"op": "replace", "path": "/data/k", "value": "v2"}]
    patched = core.patch_namespaced_config_map("p", "default", ops)
    assert patched.metadata.finalizers == ["example.dev/hold"] and patched.data["k"] == "v2"
    with pytest.raises(ApiException) as exc:  # the same test op now sees a newer version
        core.patch_namespaced_config_map("p", "default", ops)
    assert _status(exc) == 422

    status, body = _http(k8s_cluster, "PATCH", "/api/v1/namespaces/default/configmaps/p",
                         {"data": {}})  # a PATCH must say which kind of patch it is
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_replace_needs_the_current_resource_version(core: Any) -> None:
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "r"}})
    core.patch_namespaced_config_map("r", "default", {"data": {"a": "1"}})
    stale = {"metadata": {"name": "r", "resourceVersion": created.metadata.resource_version},
             "data": {"a": "2"}}
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("r", "default", stale)
    assert _status(exc) == 409

    current = core.read_namespaced_config_map("r", "default")
    current.data = {"a": "3"}
    replaced = core.replace_namespaced_config_map("r", "default", current)
    assert replaced.data == {"a": "3"}
    assert replaced.metadata.uid == created.metadata.uid


def test_status_subresource_is_isolated_and_generation_follows_spec(custom: Any) -> None:
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, {**_widget("w"), "status": {"phase": "Fake"}})
    assert "status" not in created
    assert created["metadata"]["generation"] == 1
    assert created["spec"] == {"size": 1, "colour": "blue"}  # the schema's default

    main = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w",
                                                 {"status": {"phase": "Ignored"}})
    assert "status" not in main and main["metadata"]["generation"] == 1

    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w",
        {"spec": {"size": 99}, "status": {"phase": "Running", "undeclared": True}})
    assert status["status"] == {"phase": "Running"}  # pruned as the schema does not declare it
    assert status["spec"]["size"] == 1 and status["metadata"]["generation"] == 1

    labelled = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w",
                                                     {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    resized = custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w",
                                                    {"spec": {"size": 2}})
    assert resized["metadata"]["generation"] == 2
    assert resized["status"] == {"phase": "Running"}

    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w",
                                              {"spec": {"size": 0}})
    assert _status(exc) == 422 and "minimum" in str(exc.value.body)


def test_unchanged_writes_keep_the_resource_version(core: Any) -> None:
    created = core.create_namespaced_config_map("default", {"metadata": {"name": "same"},
                                                            "data": {"a": "1"}})
    again = core.patch_namespaced_config_map("same", "default", {"data": {"a": "1"}})
    assert again.metadata.resource_version == created.metadata.resource_version


def test_crd_registers_its_resource_in_discovery(custom: Any, k8s_api: Any,
                                                 k8s_cluster: EmulatedCluster) -> None:
    def get(path: str) -> Any:
        status, body = _http(k8s_cluster, "GET", path)
        assert status == 200, body
        return body

    crd = wait_for(lambda: client.ApiextensionsV1Api(k8s_api)
                   .read_custom_resource_definition("widgets.example.dev"))
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    groups = {g["name"] for g in get("/apis")["groups"]}
    assert {"example.dev", "apps", "batch", "apiextensions.k8s.io"} <= groups
    resources = {r["name"]: r for r in get("/apis/example.dev/v1")["resources"]}
    assert resources["widgets"]["shortNames"] == ["wd"] and resources["widgets"]["namespaced"]
    assert resources["widgets/status"].get("shortNames") is None
    core = get("/api/v1")
    assert core["groupVersion"] == "v1"
    assert {"namespaces", "pods", "pods/status", "events"} <= {r["name"] for r in core["resources"]}
    assert get("/api")["versions"] == ["v1"]

    client.ApiextensionsV1Api(k8s_api).delete_custom_resource_definition(
        "widgets.example.dev")
    wait_for(lambda: "example.dev" not in {g["name"] for g in get("/apis")["groups"]})


def _watch(list_fn: Any, *args: Any, sink: list[tuple[str, str]], started: threading.Event,
           **kwargs: Any) -> threading.Thread:
    def run() -> None:
        stream = Watch().stream(list_fn, *args, **kwargs)
        started.set()
        for event in stream:
            sink.append((event["type"], event["object"].metadata.name))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_watch_sees_a_change_made_right_after_it_starts(core: Any,
                                                        k8s_cluster: EmulatedCluster) -> None:
    events: list[tuple[str, str]] = []
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    thread = _watch(core.list_namespaced_config_map, "default", sink=events,
                    started=threading.Event(), resource_version=rv, timeout_seconds=1)
    wait_for(lambda: k8s_cluster.emulator.calls[-1].verb == "watch", message="the watch request")
    core.create_namespaced_config_map("default", {"metadata": {"name": "late"}})
    wait_for(lambda: ("ADDED", "late") in events, message="the ADDED event")
    thread.join(5)
    assert not thread.is_alive(), "timeoutSeconds did not end the stream"


def test_watch_start_loses_and_repeats_nothing_under_concurrent_writes(
        core: Any, k8s_cluster: EmulatedCluster) -> None:
    stop = threading.Event()
    created: list[str] = []

    def writer() -> None:
        while not stop.is_set() and len(created) < 400:
            name = f"cm-{len(created)}"
            k8s_cluster.emulator.create_object("v1/configmaps", {"metadata": {"name": name}},
                                               "default")
            created.append(name)

    events: list[tuple[str, str]] = []
    writing = threading.Thread(target=writer, daemon=True)
    writing.start()
    thread = _watch(core.list_namespaced_config_map, "default", sink=events,
                    started=threading.Event(), timeout_seconds=1)
    time.sleep(0.3)
    stop.set()
    writing.join(5)
    wait_for(lambda: len(events) >= len(created), timeout=5, message="every object in the watch")
    thread.join(5)
    seen = [name for kind, name in events if kind == "ADDED"]
    assert sorted(seen) == sorted(created)  # each object exactly once, none lost


def test_watch_resumes_from_a_resource_version_through_a_selector(core: Any) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "m",
                                                               "labels": {"keep": "yes"}}})
    core.patch_namespaced_config_map("m", "default", {"data": {"a": "1"}})
    core.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"keep": "no"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    core.delete_namespaced_config_map("m", "default")

    stream = Watch().stream(core.list_namespaced_config_map, "default",
                                             resource_version=rv, label_selector="keep=yes",
                                             timeout_seconds=1)
    events = [(e["type"], e["object"].metadata.name) for e in stream]
    assert events == [("ADDED", "m"), ("MODIFIED", "m"), ("DELETED", "m")]


def test_a_watch_from_an_expired_resource_version_gets_410(tmp_path: Any) -> None:
    emulator = ClusterEmulator(change_log_size=5)
    with EmulatedCluster(tmp_path, emulator=emulator, controllers=False) as cluster:
        _, listed = _http(cluster, "GET", "/api/v1/namespaces/default/configmaps")
        for index in range(10):
            emulator.create_object("v1/configmaps", {"metadata": {"name": f"c{index}"}}, "default")
        url = (f"{cluster.url}/api/v1/namespaces/default/configmaps?watch=true"
               f"&resourceVersion={listed['metadata']['resourceVersion']}")
        with urllib.request.urlopen(url, timeout=10) as response:
            first = json.loads(response.readline())
    assert first["type"] == "ERROR"
    assert (first["object"]["code"], first["object"]["reason"]) == (410, "Expired")


def test_deleting_an_owner_collects_its_job_and_deployment(custom: Any, k8s_api: Any,
                                                           k8s_cluster: EmulatedCluster) -> None:
    owner = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, _widget("owner", finalizers=["example.dev/hold"]))
    ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    pod_spec = {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}
    batch = client.BatchV1Api(k8s_api)
    apps = client.AppsV1Api(k8s_api)
    batch.create_namespaced_job("default", {
        "metadata": {"name": "child-job", "ownerReferences": [ref]},
        "spec": {"suspend": True, "template": {"spec": {**pod_spec, "restartPolicy": "Never"}}}})
    apps.create_namespaced_deployment("default", {
        "metadata": {"name": "child-deploy", "ownerReferences": [ref]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "c"}},
                 "template": {"metadata": {"labels": {"app": "c"}}, "spec": pod_spec}}})
    emulator = k8s_cluster.emulator
    wait_for(lambda: emulator.list_objects("v1/pods", "default", labels="app=c"),
             message="the deployment's pod")

    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "owner")
    held = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "owner")
    assert held["metadata"]["deletionTimestamp"]
    time.sleep(0.2)
    assert emulator.get_object("batch/v1/jobs", "child-job", "default") is not None

    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "owner",
                                          {"metadata": {"finalizers": None}})
    assert emulator.get_object(f"{GROUP}/{VERSION}/{PLURAL}", "owner", "default") is None
    wait_for(lambda: not emulator.list_objects("batch/v1/jobs", "default")
             and not emulator.list_objects("apps/v1/deployments", "default")
             and not emulator.list_objects("v1/pods", "default"), message="garbage collection")


def test_deleting_a_namespace_deletes_its_objects_first(core: Any,
                                                        k8s_cluster: EmulatedCluster) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "held",
                                                              "finalizers": ["example.dev/x"]}})
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "new"}})
    assert _status(exc) == 403
    wait_for(lambda: core.read_namespaced_config_map("held", "doomed").metadata.deletion_timestamp)
    assert core.list_namespaced_config_map("doomed").items[0].metadata.name == "held"
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    wait_for(lambda: k8s_cluster.emulator.get_object("v1/namespaces", "doomed") is None,
             message="the namespace to go")
    assert [ns.metadata.name for ns in core.list_namespace().items if
            ns.metadata.name == "doomed"] == []


def test_events_of_both_apis_can_be_posted_and_listed(core: Any, k8s_api: Any) -> None:
    involved = {"kind": "ConfigMap", "namespace": "default", "name": "x", "apiVersion": "v1"}
    core.create_namespaced_event("default", {"metadata": {"generateName": "x."},
                                             "involvedObject": involved, "reason": "Tested",
                                             "message": "hello", "type": "Normal"})
    events_api = client.EventsV1Api(k8s_api)
    events_api.create_namespaced_event("default", {
        "metadata": {"name": "x.2"}, "regarding": involved, "reason": "Tested",
        "note": "hi", "type": "Normal", "action": "Test", "reportingController": "tests",
        "reportingInstance": "tests", "eventTime": "2025-01-01T00:00:00.000000Z"})
    assert [e.message for e in core.list_namespaced_event("default").items] == ["hello"]
    assert [e.note for e in events_api.list_namespaced_event("default").items] == ["hi"]


def test_server_side_apply_creates_then_patches(core: Any, k8s_cluster: EmulatedCluster) -> None:
    path = "/api/v1/namespaces/default/configmaps/applied?fieldManager=tests"
    for value in ("1", "2"):
        status, _ = _http(k8s_cluster, "PATCH", path,
                          {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "applied"}, "data": {"v": value}},
                          content_type="application/apply-patch+yaml")
        assert status in (200, 201)
    assert core.read_namespaced_config_map("applied", "default").data == {"v": "2"}


def test_deleting_a_job_orphans_its_pods_unless_told_otherwise(
        k8s_api: Any, k8s_cluster: EmulatedCluster) -> None:
    batch = client.BatchV1Api(k8s_api)
    spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "python",
         "command": ["python", "-c", "import time; time.sleep(30)"]}]}}}
    for name in ("orphaning", "cascading"):
        batch.create_namespaced_job("default", {"metadata": {"name": name}, "spec": spec})
    emulator = k8s_cluster.emulator

    def pods(job: str) -> list[Any]:
        return emulator.list_objects("v1/pods", "default", labels=f"job-name={job}")

    wait_for(lambda: pods("orphaning") and pods("cascading"), message="job pods")
    batch.delete_namespaced_job("orphaning", "default")
    batch.delete_namespaced_job("cascading", "default", propagation_policy="Background")
    wait_for(lambda: not pods("cascading"), message="the cascading job's pods to go")
    assert pods("orphaning") and not pods("orphaning")[0]["metadata"].get("ownerReferences")


def test_garbage_collection_deletes_a_jobs_pods_in_the_background_or_foreground_as_asked(
        k8s_api: Any, k8s_cluster: EmulatedCluster) -> None:
    """A collected Job takes its pods with it (the collector propagates in the background
    whatever the Job's own default); Foreground waits for them; Orphan keeps them."""
    batch, core = client.BatchV1Api(k8s_api), client.CoreV1Api(k8s_api)
    emulator = k8s_cluster.emulator
    spec = {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "python",
         "command": ["python", "-c", "import time; time.sleep(30)"]}]}}}
    for name in ("collected", "waiting", "orphaned"):
        owner = core.create_namespaced_config_map("default", {"metadata": {"name": name}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": name,
               "uid": owner.metadata.uid, "blockOwnerDeletion": True}
        batch.create_namespaced_job("default", {"metadata": {
            "name": name, "ownerReferences": [ref]}, "spec": spec})

    def pods(job: str) -> list[Any]:
        return emulator.list_objects("v1/pods", "default", labels=f"job-name={job}")

    def job(name: str) -> Any:
        return emulator.get_object("batch/v1/jobs", name, "default")

    wait_for(lambda: all(pods(n) for n in ("collected", "waiting", "orphaned")),
             message="job pods")
    core.delete_namespaced_config_map("collected", "default")
    status, _ = _http(k8s_cluster, "DELETE", "/api/v1/namespaces/default/configmaps/waiting",
                      {"kind": "DeleteOptions", "propagationPolicy": "Foreground"})
    assert status == 200
    assert _http(k8s_cluster, "DELETE", "/api/v1/namespaces/default/configmaps/orphaned"
                 "?propagationPolicy=Orphan")[0] == 200

    wait_for(lambda: job("collected") is None and not pods("collected"),
             message="the collected job and its pods to go")
    wait_for(lambda: not k8s_cluster.controllers.jobs.running_pods("default", "collected"),
             message="the collected job's processes to end")
    wait_for(lambda: emulator.get_object("v1/configmaps", "waiting", "default") is None,
             message="the foreground deletion to finish")
    assert job("waiting") is None and not pods("waiting")
    orphan = job("orphaned")
    assert orphan is not None and not orphan["metadata"].get("ownerReferences")
    assert pods("orphaned") and pods("orphaned")[0]["metadata"]["ownerReferences"]


def test_kmock_reactions_answer_first_and_history_is_kept(
        core: Any, k8s_cluster: EmulatedCluster) -> None:
    emulator = k8s_cluster.emulator
    core.create_namespaced_config_map("default", {"metadata": {"name": "h"}})
    emulator["patch", kmock.resource("v1/configmaps")][:1] << 503 << {"kind": "Status"}
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map("h", "default", {"data": {"a": "1"}})
    assert _status(exc) == 503
    core.patch_namespaced_config_map("h", "default", {"data": {"a": "2"}})

    history = emulator.objects["v1/configmaps", "default", "h"].history
    assert [version.get("data") for version in history if version is not None] == [
        None, {"a": "2"}]


def test_calls_are_recorded_in_rbac_terms(core: Any, k8s_cluster: EmulatedCluster) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    core.read_namespaced_config_map("c", "default")
    core.list_config_map_for_all_namespaces()
    core.patch_namespace_status("default", {"status": {"phase": "Active"}})
    calls = [(c.verb, c.group, c.rbac_resource, c.namespace, c.name)
             for c in k8s_cluster.emulator.calls]
    assert calls == [("create", "", "configmaps", "default", None),
                     ("get", "", "configmaps", "default", "c"),
                     ("list", "", "configmaps", None, None),
                     ("patch", "", "namespaces/status", None, "default")]
    assert {c.user_agent for c in k8s_cluster.emulator.calls} == {core.api_client.user_agent}
