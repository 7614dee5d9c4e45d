"""Specs and contexts that exercise every branch of the builders."""

from __future__ import annotations

from typing import Any

from rollout_operator.api.validation import parse_spec
from rollout_operator.resources import RunContext
from rollout_operator.settings import OperatorSettings

UID = "5b0e3c1a-7d2f-4e8b-9a61-0c4d2e8f9b17"
COMMIT = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"
BUNDLE = f"s3://rollouts/runs/bundles/{COMMIT}-a1b2c3d4e5f60718.tar.gz"

BASE: dict[str, Any] = {
    "repo": {"url": "https://github.com/example/calculator.git", "path": "examples/calculator"},
    "model": {"name": "openai/qwen3-8b", "baseURL": "https://llm.example.com/v1"},
    "output": {"url": "s3://rollouts/runs"},
}

SPECS: dict[str, dict[str, Any]] = {
    "minimal": BASE,
    "credentials": {
        **BASE,
        "repo": {**BASE["repo"], "credentialsSecret": "git-credentials"},
        "model": {**BASE["model"], "apiKeySecret": {"name": "llm-api-key", "key": "api-key"}},
        "scoring": {
            "secrets": [
                {"env": "OPENAI_API_KEY", "secretKeyRef": {"name": "judge", "key": "openai"}},
                {"env": "ANTHROPIC_API_KEY", "secretKeyRef": {"name": "judge", "key": "claude"}},
            ]
        },
        "output": {**BASE["output"], "credentialsSecret": "rollout-storage"},
    },
    "serve-vllm": {
        **BASE,
        "model": {
            "serve": {
                "engine": "vllm",
                "model": "Qwen/Qwen3-8B",
                "gpus": 2,
                "replicas": 2,
                "args": ["--max-model-len", "8192"],
                "resources": {"requests": {"cpu": "6", "memory": "40Gi"}},
            }
        },
    },
    "serve-sglang-cpu": {
        **BASE,
        "model": {
            "serve": {"engine": "sglang", "model": "Qwen/Qwen3-0.6B", "gpus": 0, "port": 30000}
        },
    },
    "isolated": {
        **BASE,
        "sandbox": {
            "image": "registry.example.com/sandbox:1.2",
            "replicas": 3,
            "runtimeClassName": "gvisor",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "egress": [
                {"cidr": "10.20.0.0/16", "ports": [443, 8443]},
                {"cidr": "192.0.2.0/24"},
                {"host": "api.example.com", "ports": [443]},
            ],
        },
        "workers": {
            "shards": 5,
            "parallelism": 2,
            "backoffLimitPerIndex": 1,
            "resources": {"requests": {"cpu": "3"}, "limits": {"memory": "3Gi"}},
        },
    },
    "queued-and-placed": {
        **BASE,
        "model": {"serve": {"model": "Qwen/Qwen3-8B", "gpus": 1, "scheduling": {
            "queueName": "gpu", "priorityClassName": "serving",
            "nodeSelector": {"nvidia.com/gpu.product": "H100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}]}}},
        "scheduling": {
            "queueName": "team-a",
            "priorityClassName": "batch",
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 60}, {"operator": "Exists"}],
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "cpu-count", "operator": "Gt", "values": ["8"]}]}]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "x"},
                                          "matchExpressions": [
                                              {"key": "tier", "operator": "Exists"}]},
                        "topologyKey": "kubernetes.io/hostname"}}]},
            },
        },
    },
}


FETCH_URL = "https://runs.s3.example/bundles/b.tar.gz?X-Amz-Signature=0123"


def make_context(
    spec: dict[str, Any],
    *,
    name: str = "calculator",
    namespace: str = "team-a",
    uid: str = UID,
    settings: OperatorSettings | None = None,
) -> RunContext:
    return RunContext(
        name=name,
        namespace=namespace,
        uid=uid,
        generation=1,
        spec=parse_spec(spec),
        settings=settings or OperatorSettings(),
        commit=COMMIT,
        bundle_url=BUNDLE,
        bundle_fetch_url=FETCH_URL,
        scorers=["reward_fn.compute_reward:numbers_match_reward"],
        fastmcp_version="4.2.3",
    )
