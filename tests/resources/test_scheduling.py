"""spec.scheduling and spec.model.serve.scheduling in the manifests: the worker Job is queued in
Kueue (label, created suspended), every pod is placed, the inference server by its own rules."""

from __future__ import annotations

from typing import Any

import yaml
from click.testing import CliRunner

from rollout_operator.cli.main import cli
from rollout_operator.resources.placement import KUEUE_QUEUE_LABEL

QUEUED_RUN = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata: {name: queued, namespace: research}
spec:
  repo: {url: "https://git.example.com/org/calculator.git"}
  model:
    serve:
      engine: vllm
      model: Qwen/Qwen3-8B
      gpus: 2
      scheduling:
        queueName: gpu-queue
        nodeSelector: {nvidia.com/gpu.product: H100}
        tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  output: {url: "s3://bucket/runs"}
  scheduling:
    queueName: team-a
    priorityClassName: batch-high
    nodeSelector: {pool: cpu-batch}
    tolerations:
      - {key: dedicated, operator: Equal, value: rollouts, effect: NoSchedule}
      - {key: spot, operator: Exists, effect: NoExecute, tolerationSeconds: 120}
    affinity:
      nodeAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 50
            preference:
              matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a]}]
"""

PLAIN_RUN = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata: {name: plain}
spec:
  repo: {url: "https://git.example.com/org/calculator.git"}
  model: {serve: {model: Qwen/Qwen3-8B}}
  output: {url: "s3://bucket/runs"}
  scheduling: {priorityClassName: batch-low}
"""


def rendered(text: str, tmp_path: Any) -> dict[tuple[str, str], dict[str, Any]]:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["render", "-f", str(path)])
    assert result.exit_code == 0, result.output
    docs = [doc for doc in yaml.safe_load_all(result.output) if doc]
    return {(doc["kind"], doc["metadata"]["labels"]["rollouts.dev/component"]): doc
            for doc in docs}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def test_the_worker_job_is_queued_suspended_and_its_pods_placed(tmp_path: Any) -> None:
    docs = rendered(QUEUED_RUN, tmp_path)
    workers = docs[("Job", "workers")]
    assert workers["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"
    assert workers["spec"]["suspend"] is True
    pods = pod_spec(workers)
    assert pods["priorityClassName"] == "batch-high"
    assert pods["nodeSelector"] == {"pool": "cpu-batch"}
    assert pods["tolerations"] == [
        {"key": "dedicated", "value": "rollouts", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120},
    ]
    assert pods["affinity"] == {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "preference": {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}}]}}


def test_other_pods_are_placed_like_the_workers_but_not_queued(tmp_path: Any) -> None:
    docs = rendered(QUEUED_RUN, tmp_path)
    worker_pods = pod_spec(docs[("Job", "workers")])
    for key in [("Job", "sync"), ("Job", "inspect"), ("Deployment", "tools"),
                ("Deployment", "scorers"), ("Job", "aggregate")]:
        doc = docs[key]
        assert KUEUE_QUEUE_LABEL not in doc["metadata"]["labels"], key
        assert not doc["spec"].get("suspend"), key
        for field in ("priorityClassName", "nodeSelector", "tolerations", "affinity"):
            assert pod_spec(doc)[field] == worker_pods[field], (key, field)


def test_the_inference_server_has_its_own_placement_and_queue(tmp_path: Any) -> None:
    server = rendered(QUEUED_RUN, tmp_path)[("Deployment", "inference")]
    assert server["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert server["spec"]["template"]["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert KUEUE_QUEUE_LABEL not in server["spec"]["selector"]["matchLabels"]
    pods = pod_spec(server)
    assert pods["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pods["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "priorityClassName" not in pods and "affinity" not in pods


def test_without_serve_scheduling_the_server_follows_the_run(tmp_path: Any) -> None:
    docs = rendered(PLAIN_RUN, tmp_path)
    server, workers = docs[("Deployment", "inference")], docs[("Job", "workers")]
    assert pod_spec(server)["priorityClassName"] == "batch-low"
    assert pod_spec(workers)["priorityClassName"] == "batch-low"
    for doc in (server, workers):
        assert KUEUE_QUEUE_LABEL not in doc["metadata"]["labels"]
        assert "nodeSelector" not in pod_spec(doc) and "tolerations" not in pod_spec(doc)
    assert workers["spec"]["suspend"] is False
