"""The operator on the API stand-in with `spec.rollout` runs: a repository that is not a 0.3
workspace is refused at sync with a message that says what to fix; a workspace gets a
rollout-server Deployment, Service and NetworkPolicy instead of tool and scorer servers, and
the run waits for them as it waits for tool servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.server import wait_for
from tests.operator.harness import NAMESPACE, Harness, make_repo, run_manifest

pytestmark = pytest.mark.slow

WORKSPACE = Path(__file__).resolve().parents[1] / "fixtures" / "workspaces" / "calculator"


def workspace_manifest(harness: Harness, name: str, repo: str) -> dict[str, Any]:
    return run_manifest(name, repo, harness.model_url, harness.bucket, harness.s3.endpoint,
                        dataset={"path": "data/calculator.jsonl"}, scoring={},
                        rollout={"name": "calculator"},
                        workers={"shards": 1, "concurrency": 2})


def test_a_repository_that_is_not_a_workspace_is_refused(harness: Harness,
                                                          tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "mcp-repo")
    manifest = workspace_manifest(harness, "not-a-workspace", repo)
    manifest["spec"]["dataset"] = {"path": "test_data.jsonl"}
    harness.apply(manifest)
    run = harness.wait_phase("not-a-workspace", ("Failed",), timeout=90)
    failed = next(c for c in run["status"]["conditions"] if c["type"] == "Failed")
    assert "spec.rollout needs an Osmosis 0.3 workspace" in failed["message"], failed
    assert "remove spec.rollout" in failed["message"]


def test_a_workspace_gets_rollout_servers(harness: Harness, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "workspace", source=WORKSPACE)
    harness.apply(workspace_manifest(harness, "calc03", repo))

    def servers_ready() -> dict[str, Any] | None:
        run = harness.get("calc03")
        ready = [c for c in (run.get("status") or {}).get("conditions") or []
                 if c["type"] == "ToolsReady" and c["status"] == "True"]
        if (run.get("status") or {}).get("phase") == "Failed":
            raise AssertionError(json.dumps(run["status"], indent=1))
        return run if ready else None

    run = wait_for(servers_ready, 120, interval=0.3, message="calc03 rollout servers ready")
    condition = next(c for c in run["status"]["conditions"] if c["type"] == "ToolsReady")
    assert condition["message"] == "1 rollout server(s) ready."
    children = harness.children(run["metadata"]["uid"])
    kinds = {(kind, name.split("-rollout-server-")[0] + "-rollout-server"
              if "-rollout-server-" in name else name) for kind, name in children}
    for kind in ("deployments", "services", "networkpolicies"):
        assert (kind, "calc03-rollout-server") in kinds
    assert not any("-tools-" in name or "-scorers-" in name for _, name in children)
    done = harness.cluster.kubectl("-n", NAMESPACE, "get", "deployments", "-l",
                                   "rollouts.dev/component=rollout-server", "-o", "json")
    [deployment] = json.loads(done.stdout)["items"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["rollouts.dev/user-code"] == "true"
    harness.cluster.kubectl("-n", NAMESPACE, "delete", "rolloutrun", "calc03")
