"""Everything an end-to-end operator test starts: object storage, a model, tools, a git repo,
and `rolloutctl operator` as a real process against the emulated cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.k8s.server import EmulatedCluster, wait_for
from tests.support.loopback import HOST, free_port
from tests.support.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "calculator"
CRD = ROOT / "crds" / "rollouts.dev_rolloutruns.yaml"
NAMESPACE = "team"
MODEL_KEY = "sk-very-secret-model-key-0042"
REWARD = "reward_fn.compute_reward:numbers_match_reward"


# The stand-in knows no Kueue: this stands for Kueue's Workload kind, schema left open.
KUEUE_WORKLOAD_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "workloads.kueue.x-k8s.io"},
    "spec": {"group": "kueue.x-k8s.io", "scope": "Namespaced",
             "names": {"kind": "Workload", "listKind": "WorkloadList", "plural": "workloads",
                       "singular": "workload"},
             "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def make_repo(directory: Path, *, without_main: bool = False, source: Path = EXAMPLE) -> str:
    """A git repository holding a copy of `source` (the calculator example); its file://
    URL."""
    if not directory.exists():
        shutil.copytree(source, directory, ignore=shutil.ignore_patterns("__pycache__"))
    if without_main:
        (directory / "mcp" / "main.py").unlink()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "calculator"]):
        subprocess.run(argv, cwd=directory, env=env, check=True)
    return f"file://{directory}"


def run_manifest(name: str, repo_url: str, model_url: str, output_url: str, endpoint: str, *,
                 model: str = "scripted", rows: int = 6, samples: int = 2, shards: int = 2,
                 **spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "repo": {"url": repo_url, "revision": "main"},
        "dataset": {"path": "test_data.jsonl", "limit": rows, "samplesPerPrompt": samples},
        "model": {"name": model, "baseURL": model_url,
                  "apiKeySecret": {"name": "llm-api-key", "key": "api-key"}},
        "agent": {"maxTurns": 4, "toolTimeoutSeconds": 10, "rolloutTimeoutSeconds": 60},
        "scoring": {"functions": [REWARD]},
        "workers": {"shards": shards, "concurrency": 8, "backoffLimitPerIndex": 3},
        "output": {"url": output_url, "endpoint": endpoint,
                   "credentialsSecret": "rollout-storage"},
    }
    spec.update(spec_changes)
    return {"apiVersion": "rollouts.dev/v1alpha1", "kind": "RolloutRun",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Prometheus samples by (name, sorted labels)."""


@dataclass
class OperatorProcess:
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    serve_metrics: bool = True
    metrics_url: str | None = None
    args: list[str] = field(default_factory=list)
    """Extra arguments of `rolloutctl operator` (e.g. --namespace, --peering-name)."""

    def start(self) -> OperatorProcess:
        """Start `rolloutctl operator`; with `serve_metrics`, on a free loopback port each time."""
        argv = [sys.executable, "-m", "rollout_operator.cli.main", "operator", "--verbose",
                *self.args]
        if self.serve_metrics:
            port = free_port()
            argv += ["--metrics-address", f"{HOST}:{port}"]
            self.metrics_url = f"http://{HOST}:{port}/metrics"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def scrape(self) -> Samples:
        """The operator's /metrics now, parsed."""
        assert self.metrics_url is not None, "the operator serves no metrics"
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Harness:
    """One cluster with the CRD, a namespace, Secrets, S3, and helpers to drive runs."""

    def __init__(self, cluster: EmulatedCluster, s3: S3Server, model_url: str,
                 services_url: str, workdir: Path) -> None:
        self.cluster, self.s3, self.model_url, self.workdir = cluster, s3, model_url, workdir
        self.bucket = s3.bucket("runs")
        cluster.kubectl("apply", "--validate=false", "-f", str(CRD))
        storage = {k: v for k, v in s3.env.items() if k != "AWS_ENDPOINT_URL"}
        for document in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
            _secret("llm-api-key", {"api-key": MODEL_KEY}),
            _secret("rollout-storage", storage),
        ):
            self.apply(document)
        self.operator_env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
            "ROLLOUT_OPERATOR_ALLOW_FILE_REPOS": "true",
            "ROLLOUT_OPERATOR_RECONCILE_INTERVAL_SECONDS": "0.5",
            "ROLLOUT_OPERATOR_SERVICE_URL_TEMPLATE": services_url,
            "ROLLOUT_OPERATOR_RUNTIME_IMAGE": "registry.test/rollout-runtime:test",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        self.operator = OperatorProcess(self.operator_env, workdir / "operator.log")

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "--validate=false", "-f", "-",
                             input=yaml.safe_dump(manifest))

    def get(self, name: str) -> dict[str, Any]:
        done = self.cluster.kubectl("-n", NAMESPACE, "get", "rolloutrun", name, "-o", "json")
        return dict(json.loads(done.stdout))

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 150) -> dict[
            str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.get(name)
            return run if (run.get("status") or {}).get("phase") in phases else None

        try:
            return wait_for(reached, timeout, interval=0.3, message=f"{name} in {phases}")
        except AssertionError:
            print(self.operator.log[-20000:])
            print(json.dumps(self.get(name).get("status"), indent=1))
            raise

    def children(self, run_uid: str) -> list[tuple[str, str]]:
        found = []
        for kind in ("jobs", "deployments", "services", "networkpolicies"):
            done = self.cluster.kubectl("-n", NAMESPACE, "get", kind, "-l",
                                        f"rollouts.dev/run-uid={run_uid}", "-o", "json")
            found += [(kind, item["metadata"]["name"])
                      for item in json.loads(done.stdout)["items"]]
        return found

    def records(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Every committed trajectory record of the run, read with boto3."""
        bucket = self.bucket.removeprefix("s3://").split("/", 1)[0]
        client = self.s3.client()
        lines = []
        for key in self.s3.keys(self.bucket):
            if f"/{run['metadata']['name']}-" in key and "/shards/" in key:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
                lines += [json.loads(line) for line in body.splitlines() if line.strip()]
        return lines

    def object_text(self) -> str:
        bucket = self.bucket.removeprefix("s3://").split("/", 1)[0]
        client = self.s3.client()
        texts = []
        for key in self.s3.keys(self.bucket):
            if key.endswith((".json", ".jsonl")):
                texts.append(client.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        return "\n".join(texts)


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": data}


@contextmanager
def scorer_server(repo: Path = EXAMPLE, scorers: Sequence[str] = ()) -> Iterator[str]:
    """A repo's scorers (the calculator's) served as the scorer Service's pods serve them."""
    import socket
    import time

    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout_operator.cli.main", "serve-scorers", "--repo",
         str(repo), "--listen-fd", str(listener.fileno()),
         *(arg for ref in scorers for arg in ("--scorer", ref))],
        pass_fds=[listener.fileno()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
    )
    listener.close()
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, "serve-scorers exited"
                assert time.monotonic() < deadline, "serve-scorers did not answer"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)


@contextmanager
def services(repo: Path = EXAMPLE, scorers: Sequence[str] = ()) -> Iterator[str]:
    """A repo's (the calculator's) tool and scorer servers behind one address, the way a
    run's pods reach its Services (see `ServiceRouter`)."""
    from tests.support.service_router import ServiceRouter

    with tool_server(repo) as tools, scorer_server(repo, scorers) as scoring, \
            ServiceRouter(tools, scoring) as router:
        yield router.url


@contextmanager
def tool_server(repo: Path = EXAMPLE, env: dict[str, str] | None = None) -> Iterator[str]:
    """A repo's (the calculator's) tools served the way the tool Service's pods serve them;
    `env` is added to the server's environment."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout_operator.runtime.tool_server", "--mcp",
         str(repo / "mcp"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator"), **(env or {})},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line and line[0] == "READY", line
        yield line[1]
    finally:
        process.terminate()
        process.wait(15)
