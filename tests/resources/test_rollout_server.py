"""The manifests of a RolloutRun of an Osmosis 0.3 workspace (`spec.rollout`), as `rolloutctl
render` prints them: the rollout servers are user-code pods without credentials whose only
egress beyond DNS and the build-time ranges is the workers' gateway port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_operator.resources import long_running_children
from rollout_operator.resources.rollout_server import ARTIFACT_PORT, GATEWAY_PORT, ROLLOUT_PORT
from rollout_operator.resources.security import workload_security_violations
from tests.resources.test_render import documents, render

WORKSPACE_RUN = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata:
  name: calc03
  namespace: research
spec:
  repo: {url: "https://github.com/example/workspace.git"}
  dataset: {path: data/calculator.jsonl}
  model:
    name: openai/qwen3-8b
    baseURL: https://llm.example.com/v1
    apiKeySecret: {name: llm-api-key, key: api-key}
  rollout:
    name: calculator
    env: {LOG_LEVEL: debug}
  output: {url: "s3://rollouts/runs", credentialsSecret: rollout-storage}
"""
SETTINGS = {"ROLLOUT_OPERATOR_STORAGE_EGRESS": '["10.20.0.0/16"]',
            "ROLLOUT_OPERATOR_PACKAGE_INDEX_EGRESS": '["10.30.0.0/16"]'}


def rendered(tmp_path: Path, text: str = WORKSPACE_RUN) -> list[dict[str, Any]]:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    result = render("-f", str(path), env=SETTINGS)
    assert result.exit_code == 0, result.output
    return documents(result.output)


def by(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind
             and d["metadata"]["labels"]["rollouts.dev/component"] == component]
    return doc


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_children_replace_tools_and_scorers(tmp_path: Path) -> None:
    docs = rendered(tmp_path)
    assert [(d["kind"], d["metadata"]["labels"]["rollouts.dev/component"]) for d in docs] == [
        ("Job", "sync"), ("NetworkPolicy", "inspect"), ("Job", "inspect"),
        ("NetworkPolicy", "rollout-server"), ("Service", "rollout-server"),
        ("Deployment", "rollout-server"), ("Job", "workers"), ("Job", "aggregate"),
    ]
    for doc in docs:
        assert workload_security_violations(doc) == []
    servers = {(d["kind"], d["metadata"]["name"], d["apiVersion"]) for d in docs
               if d["metadata"]["labels"]["rollouts.dev/component"] == "rollout-server"}
    uid = docs[0]["metadata"]["ownerReferences"][0]["uid"]
    assert servers <= set(long_running_children("calc03", uid))


def test_rollout_server_pods_are_user_code_without_credentials(tmp_path: Path) -> None:
    deployment = by(rendered(tmp_path), "Deployment", "rollout-server")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["rollouts.dev/user-code"] == "true"
    pod = template["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert not any("secret" in volume for volume in pod["volumes"])
    for container in containers(pod):
        assert "envFrom" not in container
        for env in container["env"]:
            assert "secretKeyRef" not in env.get("valueFrom", {}), (container["name"], env)
    assert [c["name"] for c in containers(pod)] == [
        "fetch-bundle", "build-env", "rollout-server", "artifacts"]
    build = containers(pod)[1]
    assert build["command"] == ["uv", "sync", "--project", "/workspace/repo/rollouts/calculator"]
    server = pod["containers"][0]
    assert server["command"] == ["/workspace/repo/rollouts/calculator/.venv/bin/python",
                                 "main.py"]
    assert server["workingDir"] == "/workspace/repo/rollouts/calculator"
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["_OSMOSIS_ROLLOUT_PORT"] == str(ROLLOUT_PORT)
    assert env["LOG_LEVEL"] == "debug"
    assert not any("API_KEY" in name or name.startswith("AWS_") for name in env)
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"


def test_rollout_server_egress_is_the_gateway_and_build_time_ranges(tmp_path: Path) -> None:
    docs = rendered(tmp_path)
    policy = by(docs, "NetworkPolicy", "rollout-server")["spec"]
    workers = by(docs, "Job", "workers")
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    gateway, dns, *cidrs = policy["egress"]
    [peer] = gateway["to"]
    assert peer.keys() == {"podSelector"}
    assert all(worker_labels[k] == v for k, v in peer["podSelector"]["matchLabels"].items())
    assert gateway["ports"] == [{"protocol": "TCP", "port": GATEWAY_PORT}]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [c["to"][0]["ipBlock"]["cidr"] for c in cidrs] == ["10.20.0.0/16", "10.30.0.0/16"]
    [ingress] = policy["ingress"]
    assert ingress["from"] == [{"podSelector": peer["podSelector"]}]
    assert [p["port"] for p in ingress["ports"]] == [ROLLOUT_PORT, ARTIFACT_PORT]
    assert policy["policyTypes"] == ["Ingress", "Egress"]


def test_workers_serve_the_gateway_and_keep_the_model_key(tmp_path: Path) -> None:
    worker = by(rendered(tmp_path), "Job", "workers")["spec"]["template"]["spec"][
        "containers"][0]
    assert worker["ports"] == [{"name": "gateway", "containerPort": GATEWAY_PORT,
                                "protocol": "TCP"}]
    env = {e["name"]: e for e in worker["env"]}
    assert env["ROLLOUT_MODEL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-api-key", "key": "api-key"}
    assert env["ROLLOUT_GATEWAY_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["ROLLOUT_SERVER_URL"]["value"].startswith("http://calc03-rollout-server-")


def test_declared_rollout_secrets_are_the_only_ones(tmp_path: Path) -> None:
    text = WORKSPACE_RUN.replace(
        "    env: {LOG_LEVEL: debug}\n",
        "    env: {LOG_LEVEL: debug}\n"
        "    secrets: [{env: JUDGE_KEY, secretKeyRef: {name: judge, key: key}}]\n")
    pod = by(rendered(tmp_path, text), "Deployment", "rollout-server")["spec"]["template"]["spec"]
    refs = [(c["name"], e["name"], e["valueFrom"]["secretKeyRef"])
            for c in containers(pod) for e in c["env"]
            if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs == [("rollout-server", "JUDGE_KEY", {"name": "judge", "key": "key"})]
