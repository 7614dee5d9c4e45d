"""Every child manifest of a run: identity, ownership, wiring between children, hardening."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from rollout_operator.api.constants import API_VERSION, KIND, Phase
from rollout_operator.api.status import RolloutRunStatus
from rollout_operator.resources import (
    build_aggregate_job,
    build_children,
    build_inference_deployment,
    build_inference_service,
    build_inspect_job,
    build_inspect_network_policy,
    build_scorers_deployment,
    build_scorers_network_policy,
    build_scorers_service,
    build_sync_job,
    build_tools_deployment,
    build_tools_network_policy,
    build_tools_service,
    build_worker_job,
    inference_children,
    inspect_children,
    long_running_children,
    scorer_children,
    tool_children,
)
from rollout_operator.resources.context import (
    COMPONENT_LABEL,
    RUN_LABEL,
    RUN_UID_LABEL,
    SCORER_PORT,
    TOOL_PORT,
    USER_CODE_LABEL,
    RunContext,
)
from rollout_operator.resources.names import MAX_NAME_LENGTH, is_dns_label
from rollout_operator.resources.placement import KUEUE_QUEUE_LABEL
from rollout_operator.resources.security import pod_spec_of, workload_security_violations
from rollout_operator.runtime.run_config import RunConfig
from rollout_operator.settings import OperatorSettings
from tests.resources.cases import BUNDLE, COMMIT, FETCH_URL, SPECS, UID, make_context

CASES = sorted(SPECS)


def all_manifests(ctx: RunContext) -> list[dict[str, Any]]:
    return build_children(ctx)


def by_kind(manifests: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [
        m for m in manifests
        if m["kind"] == kind and m["metadata"]["labels"][COMPONENT_LABEL] == component
    ]
    assert len(found) == 1, (kind, component, [m["kind"] for m in manifests])
    return found[0]


def containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


def run_config_of(container: dict[str, Any]) -> RunConfig:
    value = env_of(container)["ROLLOUT_RUN_CONFIG"]["value"]
    return RunConfig.from_env({"ROLLOUT_RUN_CONFIG": value})


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.fixture(params=CASES)
def ctx(request: pytest.FixtureRequest) -> RunContext:
    return make_context(SPECS[request.param])


def test_every_child_is_owned_named_and_labelled(ctx: RunContext) -> None:
    manifests = all_manifests(ctx)
    names: set[tuple[str, str]] = set()
    for manifest in manifests:
        meta = manifest["metadata"]
        assert manifest["apiVersion"] and manifest["kind"]
        assert is_dns_label(meta["name"]) and len(meta["name"]) <= MAX_NAME_LENGTH
        assert meta["namespace"] == ctx.namespace
        assert meta["ownerReferences"] == [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": ctx.name,
                "uid": ctx.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = meta["labels"]
        assert labels[RUN_LABEL] == ctx.name
        assert labels[RUN_UID_LABEL] == ctx.uid
        assert all(k.startswith(("rollouts.dev/", "app.kubernetes.io/")) or k == KUEUE_QUEUE_LABEL
                   for k in labels)
        assert (manifest["kind"], meta["name"]) not in names
        names.add((manifest["kind"], meta["name"]))
        assert "ttlSecondsAfterFinished" not in manifest["spec"]


def test_every_pod_passes_the_security_check(ctx: RunContext) -> None:
    workloads = [m for m in all_manifests(ctx) if pod_spec_of(m) is not None]
    assert len(workloads) >= 4
    for manifest in workloads:
        assert workload_security_violations(manifest) == [], manifest["metadata"]["name"]
        pod = pod_spec_of(manifest)
        assert pod is not None
        for container in containers(dict(pod)):
            assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
            assert container["securityContext"]["runAsUser"] == 65532
        if manifest["kind"] == "Job":
            assert pod["restartPolicy"] == "Never"
            assert manifest["spec"]["activeDeadlineSeconds"] > 0


def test_every_manifest_is_valid_kubernetes(ctx: RunContext) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for manifest in all_manifests(ctx):
        try:
            kubernetes_validate.validate(manifest, "1.33", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {exc.message}")


def test_the_validator_catches_a_broken_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    job = build_sync_job(make_context(SPECS["minimal"]))
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = "root"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.33", strict=True)


def test_volume_mounts_name_declared_volumes(ctx: RunContext) -> None:
    for manifest in all_manifests(ctx):
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        declared = {volume["name"] for volume in pod["volumes"]}
        for container in containers(dict(pod)):
            mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
            assert set(mounts) <= declared
            assert any(mount["mountPath"] == "/tmp" for mount in mounts.values())


def test_selectors_pick_the_pods_they_mean(ctx: RunContext) -> None:
    manifests = all_manifests(ctx)
    tools = by_kind(manifests, "Deployment", "tools")
    tool_pod_labels = tools["spec"]["template"]["metadata"]["labels"]
    assert matches(tools["spec"]["selector"]["matchLabels"], tool_pod_labels)
    service = by_kind(manifests, "Service", "tools")
    assert matches(service["spec"]["selector"], tool_pod_labels)
    assert service["spec"]["ports"][0]["port"] == TOOL_PORT
    policy = by_kind(manifests, "NetworkPolicy", "tools")
    assert matches(policy["spec"]["podSelector"]["matchLabels"], tool_pod_labels)
    workers = by_kind(manifests, "Job", "workers")
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    ingress_from = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert matches(ingress_from, worker_labels)
    assert not matches(ingress_from, tool_pod_labels)
    other_run = make_context(SPECS["minimal"], uid="99999999-0000-4000-8000-000000000000")
    other_workers = build_worker_job(other_run)["spec"]["template"]["metadata"]["labels"]
    assert not matches(ingress_from, other_workers)
    assert not matches(service["spec"]["selector"], build_tools_deployment(other_run)["spec"][
        "template"]["metadata"]["labels"])

    scorers = by_kind(manifests, "Deployment", "scorers")
    scorer_pod_labels = scorers["spec"]["template"]["metadata"]["labels"]
    assert matches(scorers["spec"]["selector"]["matchLabels"], scorer_pod_labels)
    scorer_service = by_kind(manifests, "Service", "scorers")
    assert matches(scorer_service["spec"]["selector"], scorer_pod_labels)
    assert not matches(scorer_service["spec"]["selector"], tool_pod_labels)
    assert not matches(service["spec"]["selector"], scorer_pod_labels)
    assert scorer_service["spec"]["ports"] == [
        {"name": "scoring", "port": SCORER_PORT, "targetPort": "scoring", "protocol": "TCP"}]
    scorer_policy = by_kind(manifests, "NetworkPolicy", "scorers")
    assert matches(scorer_policy["spec"]["podSelector"]["matchLabels"], scorer_pod_labels)
    assert not matches(scorer_policy["spec"]["podSelector"]["matchLabels"], tool_pod_labels)
    (scorer_ingress,) = scorer_policy["spec"]["ingress"]
    assert scorer_ingress["ports"] == [{"protocol": "TCP", "port": SCORER_PORT}]
    scorer_from = scorer_ingress["from"][0]["podSelector"]["matchLabels"]
    assert matches(scorer_from, worker_labels)
    assert not matches(scorer_from, tool_pod_labels) and not matches(scorer_from, other_workers)

    inspect_job = by_kind(manifests, "Job", "inspect")
    inspect_pod_labels = inspect_job["spec"]["template"]["metadata"]["labels"]
    inspect_policy = by_kind(manifests, "NetworkPolicy", "inspect")
    assert matches(inspect_policy["spec"]["podSelector"]["matchLabels"], inspect_pod_labels)
    assert not matches(inspect_policy["spec"]["podSelector"]["matchLabels"], tool_pod_labels)
    assert inspect_policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert inspect_policy["spec"]["ingress"] == []


def test_pods_learn_where_the_other_children_are(ctx: RunContext) -> None:
    manifests = all_manifests(ctx)
    service = by_kind(manifests, "Service", "tools")
    worker = build_worker_job(ctx)["spec"]["template"]["spec"]["containers"][0]
    config = run_config_of(worker)
    expected_tool_url = f"http://{service['metadata']['name']}.{ctx.namespace}.svc:{TOOL_PORT}/mcp"
    assert config.tool_url == expected_tool_url
    scorer_service = by_kind(manifests, "Service", "scorers")
    assert config.scorer_url == (
        f"http://{scorer_service['metadata']['name']}.{ctx.namespace}.svc:{SCORER_PORT}")
    assert (config.name, config.namespace, config.uid) == (ctx.name, ctx.namespace, UID)
    assert config.commit == COMMIT and config.bundle_url == BUNDLE
    assert config.run_prefix == f"s3://rollouts/runs/{ctx.namespace}/{ctx.name}-5b0e3c1a"
    assert config.scorers == ["reward_fn.compute_reward:numbers_match_reward"]
    assert config.fastmcp_version == ctx.fastmcp_version == "4.2.3"
    assert config.spec.model_dump() == ctx.spec.model_dump()
    if ctx.spec.model.serve is not None:
        inference = by_kind(manifests, "Service", "inference")
        port = ctx.spec.model.serve.port
        assert config.model_base_url == (
            f"http://{inference['metadata']['name']}.{ctx.namespace}.svc:{port}/v1"
        )
        assert inference["spec"]["ports"][0]["port"] == port
    else:
        assert config.model_base_url is None
        assert config.model_endpoint == "https://llm.example.com/v1"


def test_commands_and_the_unpacked_bundle(ctx: RunContext) -> None:
    sync = build_sync_job(ctx)["spec"]["template"]["spec"]
    assert sync["containers"][0]["command"] == ["rolloutctl", "sync", "--workdir", "/workspace"]
    assert "initContainers" not in sync
    aggregate = build_aggregate_job(ctx)["spec"]["template"]["spec"]
    assert aggregate["containers"][0]["command"] == ["rolloutctl", "aggregate"]
    # Workers read the dataset from the bundle: they unpack it with the storage credentials.
    # User-code pods hold none: they fetch it through the signed URL, given in env (a URL's
    # signature stays out of the command line, which `ps` and pod listings show).
    fetch = ["rolloutctl", "unpack-bundle", "--url-env", "ROLLOUT_BUNDLE_FETCH_URL",
             "--dest", "/workspace/repo"]
    for manifest, unpack_command, command in (
        (build_worker_job(ctx),
         ["rolloutctl", "unpack-bundle", "--url", BUNDLE, "--dest", "/workspace/repo"],
         ["rolloutctl", "work"]),
        (build_tools_deployment(ctx), fetch,
         ["rolloutctl", "serve-tools", "--repo", "/workspace/repo", "--port", "8080"]),
        (build_scorers_deployment(ctx), fetch,
         ["rolloutctl", "serve-scorers", "--repo", "/workspace/repo", "--port", "8081"]),
        (build_inspect_job(ctx), fetch, ["rolloutctl", "inspect", "--repo", "/workspace/repo"]),
    ):
        pod = manifest["spec"]["template"]["spec"]
        (unpack,) = pod["initContainers"]
        assert unpack["command"] == unpack_command
        if unpack_command == fetch:
            assert unpack["name"] == "fetch-bundle"
            assert env_of(unpack)["ROLLOUT_BUNDLE_FETCH_URL"] == {
                "name": "ROLLOUT_BUNDLE_FETCH_URL", "value": FETCH_URL}
        else:
            assert unpack["name"] == "unpack-bundle"
            assert "ROLLOUT_BUNDLE_FETCH_URL" not in env_of(unpack)
        assert {"name": "workspace", "mountPath": "/workspace"} in unpack["volumeMounts"]
        main = pod["containers"][0]
        assert main["command"] == command
        assert {"name": "workspace", "mountPath": "/workspace", "readOnly": True} in main[
            "volumeMounts"]
        assert main["image"] == unpack["image"] == ctx.sandbox_image
        assert "ROLLOUT_BUNDLE_FETCH_URL" not in env_of(main)


def test_inspection_checks_the_scorers_the_spec_names() -> None:
    refs = ["reward_fn.compute_reward:numbers_match_reward", "rubrics.judge:helpful"]
    ctx = make_context({**SPECS["minimal"], "scoring": {"functions": refs}})
    job = build_inspect_job(ctx)
    (inspect,) = job["spec"]["template"]["spec"]["containers"]
    assert inspect["command"] == [
        "rolloutctl", "inspect", "--repo", "/workspace/repo",
        "--scorer", refs[0], "--scorer", refs[1],
    ]
    assert job["spec"]["activeDeadlineSeconds"] == ctx.settings.sync_deadline_seconds
    rule = job["spec"]["podFailurePolicy"]["rules"][1]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["containerName"] == "inspect"


def test_tool_server_probes_and_port() -> None:
    ctx = make_context(SPECS["minimal"])
    server = build_tools_deployment(ctx)["spec"]["template"]["spec"]["containers"][0]
    assert server["ports"] == [{"name": "mcp", "containerPort": TOOL_PORT, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "mcp"}


def test_scorer_server_probes_port_and_replicas() -> None:
    ctx = make_context(SPECS["isolated"])
    deployment = build_scorers_deployment(ctx)
    assert deployment["spec"]["replicas"] == 3
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["ports"] == [
        {"name": "scoring", "containerPort": SCORER_PORT, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "scoring"}
    assert server["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}


def test_only_pods_that_run_repo_code_carry_the_user_code_label(ctx: RunContext) -> None:
    labelled = set()
    for manifest in all_manifests(ctx):
        component = manifest["metadata"]["labels"][COMPONENT_LABEL]
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
        if pod_labels.get(USER_CODE_LABEL) == "true":
            labelled.add(component)
        else:
            assert USER_CODE_LABEL not in pod_labels, component
    assert labelled == {"inspect", "tools", "scorers"}


def test_worker_job_is_indexed_per_shard() -> None:
    isolated = build_worker_job(make_context(SPECS["isolated"]))["spec"]
    assert isolated["completionMode"] == "Indexed"
    assert (isolated["completions"], isolated["parallelism"]) == (5, 2)
    assert isolated["backoffLimitPerIndex"] == 1
    assert isolated["suspend"] is False
    rules = isolated["podFailurePolicy"]["rules"]
    assert rules[1]["action"] == "FailIndex"
    assert rules[1]["onExitCodes"]["containerName"] == isolated["template"]["spec"][
        "containers"][0]["name"]
    minimal = build_worker_job(make_context(SPECS["minimal"]))["spec"]
    assert (minimal["completions"], minimal["parallelism"]) == (1, 1)
    suspended = make_context({**SPECS["minimal"], "suspend": True})
    assert build_worker_job(suspended)["spec"]["suspend"] is True


def test_config_errors_end_retries() -> None:
    from rollout_operator.cli.pod_common import EXIT_CONFIG

    ctx = make_context(SPECS["minimal"])
    for job in (build_sync_job(ctx), build_aggregate_job(ctx)):
        rule = job["spec"]["podFailurePolicy"]["rules"][1]
        assert rule["action"] == "FailJob"
        assert rule["onExitCodes"]["values"] == [EXIT_CONFIG]
        assert rule["onExitCodes"]["containerName"] == job["spec"]["template"]["spec"][
            "containers"][0]["name"]


def test_resources_come_from_the_spec_or_the_settings() -> None:
    settings = OperatorSettings(
        default_requests={"cpu": "100m", "memory": "128Mi"},
        default_limits={"cpu": "1500m", "memory": "3Gi"},
    )
    minimal = make_context(SPECS["minimal"], settings=settings)
    tool = build_tools_deployment(minimal)["spec"]["template"]["spec"]["containers"][0]
    assert tool["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1500m", "memory": "3Gi"},
    }
    isolated = make_context(SPECS["isolated"], settings=settings)
    tool = build_tools_deployment(isolated)["spec"]["template"]["spec"]["containers"][0]
    # Limits given without requests: Kubernetes makes the requests equal to them.
    assert tool["resources"] == {"requests": {}, "limits": {"cpu": "1", "memory": "1Gi"}}
    worker = build_worker_job(isolated)["spec"]["template"]["spec"]["containers"][0]
    # cpu requested but not limited is limited to the request, never below it.
    assert worker["resources"] == {
        "requests": {"cpu": "3"},
        "limits": {"memory": "3Gi", "cpu": "3"},
    }


def test_runtime_class_applies_to_user_code_pods_only() -> None:
    spec = {**SPECS["isolated"], "model": SPECS["serve-vllm"]["model"]}
    ctx = make_context(spec)
    for manifest in build_children(ctx):
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        expected = None if manifest["metadata"]["labels"][COMPONENT_LABEL] == "inference" else (
            "gvisor")
        assert pod.get("runtimeClassName") == expected
    assert all(
        "runtimeClassName" not in (pod_spec_of(m) or {})
        for m in build_children(make_context(SPECS["minimal"]))
    )


def test_tool_network_policy_allows_dns_and_listed_destinations_only() -> None:
    settings = OperatorSettings(default_egress=["100.64.0.0/10"], storage_egress=["10.9.9.9/32"])
    policy = build_tools_network_policy(make_context(SPECS["isolated"], settings=settings))
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": TOOL_PORT}]
    dns, *others = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    allowed = {
        (rule["to"][0]["ipBlock"]["cidr"],
         tuple(p["port"] for p in rule.get("ports", [])))
        for rule in others
    }
    assert allowed == {
        ("100.64.0.0/10", ()),
        ("10.9.9.9/32", ()),
        ("10.20.0.0/16", (443, 8443)),
        ("192.0.2.0/24", ()),
    }
    assert policy["metadata"]["annotations"] == {
        "rollouts.dev/egress-hosts-not-enforced": "api.example.com"
    }
    minimal = build_tools_network_policy(make_context(SPECS["minimal"]))
    assert len(minimal["spec"]["egress"]) == 1
    assert "annotations" not in minimal["metadata"]


def egress_destinations(policy: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
    """The ipBlock destinations of a policy's egress rules after the first (DNS) one."""
    dns, *others = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    return {
        (rule["to"][0]["ipBlock"]["cidr"], tuple(p["port"] for p in rule.get("ports", [])))
        for rule in others
    }


def test_scorer_network_policy_allows_dns_storage_and_the_judges_only() -> None:
    settings = OperatorSettings(default_egress=["100.64.0.0/10"], storage_egress=["10.9.9.9/32"])
    spec = {
        **SPECS["isolated"],
        "scoring": {"egress": [{"cidr": "203.0.113.0/24", "ports": [443]},
                               {"host": "api.judge.example", "ports": [443]}]},
    }
    policy = build_scorers_network_policy(make_context(spec, settings=settings))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # The tool pods' egress (spec.sandbox.egress, the operator's default) is not the scorers'.
    assert egress_destinations(policy) == {("10.9.9.9/32", ()), ("203.0.113.0/24", (443,))}
    assert policy["metadata"]["annotations"] == {
        "rollouts.dev/egress-hosts-not-enforced": "api.judge.example"
    }
    tools = build_tools_network_policy(make_context(spec, settings=settings))
    assert ("203.0.113.0/24", (443,)) not in egress_destinations(tools)
    assert "api.judge.example" not in json.dumps(tools)
    minimal = build_scorers_network_policy(make_context(SPECS["minimal"]))
    assert len(minimal["spec"]["egress"]) == 1
    assert "annotations" not in minimal["metadata"]


def test_inspection_network_policy_lets_nothing_in_and_only_storage_out() -> None:
    settings = OperatorSettings(default_egress=["100.64.0.0/10"], storage_egress=["10.9.9.9/32"])
    spec = {**SPECS["isolated"], "scoring": {"egress": [{"cidr": "203.0.113.0/24"}]}}
    policy = build_inspect_network_policy(make_context(spec, settings=settings))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert egress_destinations(policy) == {("10.9.9.9/32", ())}
    assert "annotations" not in policy["metadata"]


def test_vllm_server_spreads_over_its_gpus() -> None:
    ctx = make_context(SPECS["serve-vllm"])
    deployment = build_inference_deployment(ctx)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["image"] == ctx.settings.vllm_image
    assert server["command"] == [
        "vllm", "serve", "Qwen/Qwen3-8B", "--host", "0.0.0.0", "--port", "8000",
        "--max-model-len", "8192", "--tensor-parallel-size", "2",
    ]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert server["resources"]["requests"] == {"cpu": "6", "memory": "40Gi"}
    assert server["resources"]["limits"]["memory"] == "40Gi"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server["volumeMounts"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_user_tensor_parallel_flag_is_kept() -> None:
    spec = json.loads(json.dumps(SPECS["serve-vllm"]))
    spec["model"]["serve"]["args"] = ["--tensor-parallel-size=4"]
    server = build_inference_deployment(make_context(spec))["spec"]["template"]["spec"][
        "containers"][0]
    assert server["command"].count("--tensor-parallel-size") == 0
    assert server["command"][-1] == "--tensor-parallel-size=4"


def test_sglang_server_on_cpu() -> None:
    ctx = make_context(SPECS["serve-sglang-cpu"])
    server = build_inference_deployment(ctx)["spec"]["template"]["spec"]["containers"][0]
    assert server["image"] == ctx.settings.sglang_image
    assert server["command"] == [
        "python3", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-0.6B",
        "--host", "0.0.0.0", "--port", "30000",
    ]
    assert "nvidia.com/gpu" not in server["resources"]["limits"]
    assert build_inference_service(ctx)["spec"]["ports"][0]["port"] == 30000


def test_sandbox_image_override_reaches_every_sandbox_pod() -> None:
    ctx = make_context(SPECS["isolated"])
    for manifest in build_children(ctx):
        pod = pod_spec_of(manifest)
        if pod is not None:
            assert {c["image"] for c in containers(dict(pod))} == {
                "registry.example.com/sandbox:1.2"
            }


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.PENDING, []),
        (Phase.SYNCING, [("Job", "sync"), ("NetworkPolicy", "inspect"), ("Job", "inspect")]),
        (Phase.STARTING, [("NetworkPolicy", "tools"), ("Service", "tools"),
                          ("Deployment", "tools"), ("NetworkPolicy", "scorers"),
                          ("Service", "scorers"), ("Deployment", "scorers"),
                          ("Service", "inference"), ("Deployment", "inference")]),
        (Phase.RUNNING, [("NetworkPolicy", "tools"), ("Service", "tools"),
                         ("Deployment", "tools"), ("NetworkPolicy", "scorers"),
                         ("Service", "scorers"), ("Deployment", "scorers"),
                         ("Service", "inference"), ("Deployment", "inference"),
                         ("Job", "workers")]),
        (Phase.AGGREGATING, [("Job", "aggregate")]),
        (Phase.SUCCEEDED, []),
        (Phase.FAILED, []),
        (Phase.SUSPENDED, []),
    ],
)
def test_children_per_phase(phase: str, expected: list[tuple[str, str]]) -> None:
    ctx = make_context(SPECS["serve-vllm"])
    got = [
        (m["kind"], m["metadata"]["labels"][COMPONENT_LABEL]) for m in build_children(ctx, phase)
    ]
    assert got == expected


def test_children_of_an_external_model_run() -> None:
    got = [(m["kind"], m["metadata"]["labels"][COMPONENT_LABEL])
           for m in build_children(make_context(SPECS["minimal"]))]
    assert got == [
        ("Job", "sync"), ("NetworkPolicy", "inspect"), ("Job", "inspect"),
        ("NetworkPolicy", "tools"), ("Service", "tools"), ("Deployment", "tools"),
        ("NetworkPolicy", "scorers"), ("Service", "scorers"), ("Deployment", "scorers"),
        ("Job", "workers"), ("Job", "aggregate"),
    ]
    with pytest.raises(ValueError, match="unknown phase"):
        build_children(make_context(SPECS["minimal"]), "Exploding")


def test_a_run_without_scorers_has_no_scorer_servers() -> None:
    ctx = dataclasses.replace(make_context(SPECS["serve-vllm"]), scoring=False)
    assert scorer_children(ctx) == []
    for phase in (None, Phase.STARTING, Phase.RUNNING):
        components = {m["metadata"]["labels"][COMPONENT_LABEL]
                      for m in build_children(ctx, phase)}
        assert "scorers" not in components and "tools" in components
    worker = build_worker_job(ctx)["spec"]["template"]["spec"]["containers"][0]
    assert run_config_of(worker).scorer_url is None


def test_builders_that_need_sync_results_say_so() -> None:
    ctx = dataclasses.replace(make_context(SPECS["minimal"]), bundle_url=None,
                              bundle_fetch_url=None)
    assert build_sync_job(ctx)["kind"] == "Job"
    with pytest.raises(ValueError, match="after sync"):
        build_worker_job(ctx)
    user_code = (build_tools_deployment, build_scorers_deployment, build_inspect_job)
    for builder in user_code:
        with pytest.raises(ValueError, match="no signed bundle URL"):
            builder(ctx)
    for builder in (build_inference_deployment, build_inference_service):
        with pytest.raises(ValueError, match="external model"):
            builder(ctx)
    assert build_tools_service(ctx)["kind"] == "Service"
    assert build_scorers_service(ctx)["kind"] == "Service"
    # A bundle in object storage without its signed URL: user-code pods, which hold no storage
    # credential, could not fetch it, so they are not built.
    unsigned = dataclasses.replace(ctx, bundle_url=BUNDLE)
    assert build_worker_job(unsigned)["kind"] == "Job"
    for builder in user_code:
        with pytest.raises(ValueError, match="no signed bundle URL"):
            builder(unsigned)
    # A bundle on a local disk needs no credential: its own URL serves.
    local = dataclasses.replace(ctx, bundle_url="file:///data/runs/bundles/b.tar.gz")
    tools = build_tools_deployment(local)["spec"]["template"]["spec"]["initContainers"][0]
    assert env_of(tools)["ROLLOUT_BUNDLE_FETCH_URL"]["value"] == local.bundle_url


def test_builders_are_deterministic() -> None:
    first = build_children(make_context(SPECS["credentials"]))
    second = build_children(make_context(SPECS["credentials"]))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_child_groups_for_the_reconciler() -> None:
    served = make_context(SPECS["serve-vllm"])
    assert [m["kind"] for m in tool_children(served)] == ["NetworkPolicy", "Service", "Deployment"]
    assert [m["kind"] for m in scorer_children(served)] == [
        "NetworkPolicy", "Service", "Deployment"]
    assert [m["kind"] for m in inference_children(served)] == ["Service", "Deployment"]
    assert [m["kind"] for m in inspect_children(served)] == ["NetworkPolicy", "Job"]
    assert inference_children(make_context(SPECS["minimal"])) == []
    built = {
        (m["kind"], m["metadata"]["name"], m["apiVersion"])
        for m in [*tool_children(served), *scorer_children(served), *inference_children(served)]
    }
    # Servers go when the run finishes; the one-off Jobs (sync, inspection) stay with the run.
    # The rollout servers of spec.rollout runs are listed too (tests/resources/
    # test_rollout_server.py).
    assert {child for child in long_running_children(served.name, served.uid)
            if "-rollout-server-" not in child[1]} == built


def test_context_from_the_status_sync_wrote() -> None:
    status = RolloutRunStatus(commit=COMMIT, bundle=BUNDLE, fastmcp_version="4.2.3",
                              scorers=["reward_fn.a:b"])
    ctx = RunContext.from_status(
        name="calc", namespace="ns", uid=UID, generation=2,
        spec=make_context(SPECS["minimal"]).spec, settings=OperatorSettings(), status=status,
    )
    assert (ctx.commit, ctx.bundle_url, ctx.fastmcp_version) == (COMMIT, BUNDLE, "4.2.3")
    assert ctx.scorers == []
    assert ctx.scoring  # inspection found a scorer
    assert ctx.bundle_fetch_url is None  # never in status: read from the sync Job's report
    assert build_worker_job(ctx)["spec"]["template"]["spec"]["initContainers"][0]["command"][3] \
        == BUNDLE
    before_sync = RunContext.from_status(
        name="calc", namespace="ns", uid=UID, generation=1,
        spec=ctx.spec, settings=OperatorSettings(), status=None,
    )
    assert before_sync.bundle_url is None and before_sync.commit is None
    assert not before_sync.scoring


def test_context_knows_whether_the_run_has_scorers() -> None:
    minimal = make_context(SPECS["minimal"]).spec
    named = make_context({**SPECS["minimal"], "scoring": {"functions": ["reward_fn.a:b"]}}).spec
    none_found = RolloutRunStatus(commit=COMMIT, bundle=BUNDLE, tools=["add"], scorers=[])

    def context(spec: Any, status: RolloutRunStatus) -> RunContext:
        return RunContext.from_status(
            name="calc", namespace="ns", uid=UID, generation=1, spec=spec,
            settings=OperatorSettings(), status=status, bundle_fetch_url=FETCH_URL,
        )

    bare = context(minimal, none_found)
    assert not bare.scoring and scorer_children(bare) == []
    assert bare.bundle_fetch_url == FETCH_URL and bare.tools == ["add"]
    assert context(named, none_found).scoring
    assert len(scorer_children(context(named, none_found))) == 3
