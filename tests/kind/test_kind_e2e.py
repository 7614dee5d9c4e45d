"""End to end on a real cluster (kind): `kubectl apply` of a RolloutRun of examples/calculator,
through the operator installed by the Helm chart and the sandbox image, to a scored run; then
its deletion, which must take every child with it.

Skipped unless ROLLOUT_E2E_KIND=1. .github/workflows/e2e-kind.yaml builds the images, creates
the cluster, installs the chart, MinIO (tests/kind/manifests/minio.yaml) and the scripted model
server (tests/kind/manifests/scripted-model.yaml), then runs this module. Its settings:

  ROLLOUT_E2E_KUBECONFIG   kubeconfig of the cluster (default ~/.kube/config)
  ROLLOUT_E2E_CONTEXT      its context (default kind-rollout-e2e); nothing else is touched
  ROLLOUT_E2E_NAMESPACE    namespace of the run, MinIO and the model (default rollout-e2e)
  ROLLOUT_E2E_REPO_URL     git URL the sync Job clones (default: this checkout's origin)
  ROLLOUT_E2E_REVISION     commit to run (default: this checkout's HEAD, which must be pushed)
  ROLLOUT_E2E_GIT_SECRET   Secret with a `token` key for a private repository (optional)
  ROLLOUT_E2E_OUTPUT_URL   the operator's default output URL (default s3://rollouts/runs)
  ROLLOUT_E2E_MODEL_URL    the scripted model's base URL as pods reach it
  ROLLOUT_E2E_TIMEOUT      seconds to wait for the run to finish (default 900)

The run takes the example's spec with the repo, the model and the output changed: the model is
the scripted server (which answers every calculator prompt right), and the output is left to
the operator's defaults, so that the chart's settings are what sends it to MinIO.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.resources.context import RUN_UID_LABEL
from tests.k8s.server import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ROLLOUT_E2E_KIND") != "1",
                       reason="needs a kind cluster set up by .github/workflows/e2e-kind.yaml "
                       "(set ROLLOUT_E2E_KIND=1)"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "calculator"
EXAMPLE_RUN = EXAMPLE / "rolloutrun.yaml"
RUN_NAME = "calculator-e2e"
SCRIPTED_MODEL = "scripted"
# What a run owns; each carries the run's uid label.
CHILD_KINDS = "jobs,deployments,services,networkpolicies,pods"
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class E2ESettings:
    kubeconfig: str
    context: str
    namespace: str
    repo_url: str
    revision: str
    git_secret: str | None
    output_url: str
    model_url: str
    timeout_s: float

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> E2ESettings:
        namespace = environ.get("ROLLOUT_E2E_NAMESPACE") or "rollout-e2e"
        return cls(
            kubeconfig=environ.get("ROLLOUT_E2E_KUBECONFIG")
            or str(Path.home() / ".kube" / "config"),
            context=environ.get("ROLLOUT_E2E_CONTEXT") or "kind-rollout-e2e",
            namespace=namespace,
            repo_url=environ.get("ROLLOUT_E2E_REPO_URL") or _git("remote", "get-url", "origin"),
            revision=environ.get("ROLLOUT_E2E_REVISION") or _git("rev-parse", "HEAD"),
            git_secret=environ.get("ROLLOUT_E2E_GIT_SECRET") or None,
            output_url=(environ.get("ROLLOUT_E2E_OUTPUT_URL") or "s3://rollouts/runs").rstrip("/"),
            model_url=environ.get("ROLLOUT_E2E_MODEL_URL")
            or f"http://scripted-model.{namespace}.svc:8000/v1",
            timeout_s=float(environ.get("ROLLOUT_E2E_TIMEOUT") or 900),
        )


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


@dataclass(frozen=True, slots=True)
class Kubectl:
    """kubectl pinned to one kubeconfig, context and namespace (tests/conftest.py points
    $KUBECONFIG at the API stand-in, so nothing here relies on it)."""

    settings: E2ESettings

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", f"--kubeconfig={self.settings.kubeconfig}",
                f"--context={self.settings.context}", f"--namespace={self.settings.namespace}",
                *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "KUBECONFIG": self.settings.kubeconfig})
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr.strip()}")
        return done

    def get_json(self, *args: str) -> dict[str, Any] | None:
        done = self("get", *args, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(f"kubectl get {' '.join(args)}: {done.stderr.strip()}")
        value: dict[str, Any] = json.loads(done.stdout)
        return value

    def children(self, uid: str) -> list[str]:
        """`kind/name` of every object labelled as the run's (the GC must remove them all)."""
        done = self("get", CHILD_KINDS, "-l", f"{RUN_UID_LABEL}={uid}", "-o", "name")
        return sorted(line for line in done.stdout.splitlines() if line.strip())


def calculator_run(settings: E2ESettings) -> dict[str, Any]:
    """examples/calculator/rolloutrun.yaml, pointed at this commit, the scripted model and the
    operator's default output."""
    run: dict[str, Any] = yaml.safe_load(EXAMPLE_RUN.read_text(encoding="utf-8"))
    run["metadata"] = {"name": RUN_NAME, "namespace": settings.namespace}
    spec = run["spec"]
    spec["repo"]["url"] = settings.repo_url
    spec["repo"]["revision"] = settings.revision
    spec["repo"].pop("credentialsSecret", None)
    if settings.git_secret:
        spec["repo"]["credentialsSecret"] = settings.git_secret
    model = spec["model"]
    model.pop("apiKeySecret", None)
    model.update(name=SCRIPTED_MODEL, baseURL=settings.model_url)
    spec["output"].pop("url", None)
    spec["output"].pop("endpoint", None)
    return run


def expected_rollouts(run: dict[str, Any]) -> int:
    """Rows of the example's dataset in the run's window, times samples per prompt."""
    dataset = run["spec"]["dataset"]
    lines = (EXAMPLE / dataset["path"]).read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.strip()][int(dataset.get("offset") or 0):]
    if dataset.get("limit"):
        rows = rows[: int(dataset["limit"])]
    return len(rows) * int(dataset.get("samplesPerPrompt") or 1)


def wait_finished(kubectl: Kubectl, name: str, timeout_s: float) -> dict[str, Any]:
    seen: list[str] = []

    def finished() -> dict[str, Any] | None:
        run = kubectl.get_json("rolloutrun", name)
        phase = ((run or {}).get("status") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        return run if phase in ("Succeeded", "Failed") else None

    try:
        return wait_for(finished, timeout_s, interval=5, message=f"RolloutRun {name} to finish")
    except AssertionError:
        run = kubectl.get_json("rolloutrun", name) or {}
        raise AssertionError(f"phases seen: {seen}; status: "
                             f"{json.dumps(run.get('status'), indent=1)}") from None


def test_calculator_run_end_to_end(tmp_path: Path) -> None:
    settings = E2ESettings.from_env(dict(os.environ))
    kubectl = Kubectl(settings)
    run = calculator_run(settings)
    expected = expected_rollouts(run)
    scorers = run["spec"]["scoring"]["functions"]
    assert expected > 0 and scorers

    kubectl("delete", "rolloutrun", RUN_NAME, "--ignore-not-found", "--wait=true",
            "--timeout=180s")
    manifest = tmp_path / "rolloutrun.yaml"
    manifest.write_text(yaml.safe_dump(run), encoding="utf-8")
    kubectl("apply", "-f", str(manifest))

    finished = wait_finished(kubectl, RUN_NAME, settings.timeout_s)
    status = finished["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    if _FULL_SHA.fullmatch(settings.revision):
        assert status["commit"] == settings.revision
    assert "multiply" in status["tools"]

    progress = status["progress"]
    assert progress["total"] == expected, progress
    assert progress["completed"] == expected, progress
    assert progress.get("failed", 0) == 0 and progress.get("masked", 0) == 0, progress
    assert sorted(status["summary"]) == sorted(scorers)
    for scorer in scorers:
        assert status["summary"][scorer]["mean"] == 1.0, status["summary"]
    # The chart's default output, under the run's own prefix.
    prefix = f"{settings.output_url}/{settings.namespace}/{RUN_NAME}-"
    assert status["artifacts"]["results"].startswith(prefix), status["artifacts"]

    uid = finished["metadata"]["uid"]
    children = kubectl.children(uid)
    jobs = [child for child in children if child.startswith("job.batch/")]
    assert len(jobs) == 3, children  # sync, workers, aggregate stay until the run goes
    # A finished run's tool servers are torn down.
    wait_for(lambda: not any(c.startswith("deployment.apps/") for c in kubectl.children(uid)),
             120, interval=2, message="the finished run's tool Deployment to be deleted")

    kubectl("delete", "rolloutrun", RUN_NAME, "--wait=true", "--timeout=180s")
    assert kubectl.get_json("rolloutrun", RUN_NAME) is None
    wait_for(lambda: not kubectl.children(uid), 180, interval=2,
             message="the deleted run's children to be garbage-collected")
