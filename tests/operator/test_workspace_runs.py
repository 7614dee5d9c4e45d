"""The operator on the API stand-in with `spec.rollout` runs: a repository that is not a 0.3
workspace is refused at sync with a message that says what to fix; a workspace gets a
rollout-server Deployment, Service and NetworkPolicy instead of tool and scorer servers, and
runs to Succeeded with osmosis-ai 0.3.8's per-row rewards (the stand-in runs no Deployment
pods, so the test plays the rollout-server pod: the workspace's server built as `eval run`
builds it, and its artifact folder, behind one address for the Service URL template)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rollout_operator.resources.rollout_server import ARTIFACT_PORT
from rollout_operator.workspaces import atif
from rollout_operator.workspaces.rollout_server import RolloutServer, uv_sync
from tests.k8s.server import EmulatedCluster, wait_for
from tests.operator.harness import MODEL_KEY, NAMESPACE, Harness, make_repo, run_manifest
from tests.support.loopback import BackgroundApp
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer
from tests.workspaces.conftest import _pypi_reachable, _python312, _uv_dir, copy_workspace
from tests.workspaces.reference import CALCULATOR_ROWS

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


class WorkspaceServices(BackgroundApp):
    """The run's Services as its pods reach them, under one address: the URL template
    `<url>/{name}/{port}` leads port 9100 to the rollout server and 9101 to its artifact
    folder, as the rollout-server pod's two containers serve them."""

    def __init__(self, rollout_url: str, artifacts: Path) -> None:
        self.rollout_url = rollout_url
        self.artifacts = artifacts
        self._session: aiohttp.ClientSession | None = None
        super().__init__(self._app, "workspace-services")

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{name}}/{{port}}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{name}/{port}/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        if request.match_info["port"] == str(ARTIFACT_PORT):
            path = self.artifacts / tail
            if not path.is_file():
                return web.Response(status=404)
            return web.Response(body=path.read_bytes(), content_type="application/json")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
                request.method, f"{self.rollout_url}/{tail}", data=await request.read(),
                headers={k: v for k, v in request.headers.items()
                         if k.lower() not in ("host", "content-length")},
                timeout=aiohttp.ClientTimeout(total=180)) as reply:
            return web.Response(status=reply.status, body=await reply.read(),
                                content_type=reply.content_type)


@pytest.fixture
def rollout_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[tuple[str, Path]]:
    """The test workspace's rollout server, built and started as `eval run` does."""
    python, uv_dir = _python312(), _uv_dir()
    if python is None or uv_dir is None or not _pypi_reachable():
        pytest.skip("needs a CPython 3.12, uv and PyPI to build the rollout's environment")
    monkeypatch.setenv("PATH", os.pathsep.join([uv_dir, os.environ.get("PATH", "")]))
    workspace = copy_workspace(tmp_path / "ws")
    rollout_dir = workspace / "rollouts" / "calculator"
    env = {**os.environ, "UV_PYTHON": python, "UV_PYTHON_DOWNLOADS": "never"}
    env = {k: v for k, v in env.items() if not k.endswith("_API_KEY")}
    log = tmp_path / "rollout-server.log"
    uv_sync(rollout_dir, env, log)
    server = RolloutServer(rollout_dir, rollout_dir / "main.py", env,
                           tmp_path / "artifacts", log)
    server.start()
    try:
        asyncio.run(server.wait_ready())
        yield server.url, tmp_path / "artifacts"
    finally:
        server.stop()


def test_a_workspace_run_succeeds_with_the_reference_rewards(
        k8s_cluster: EmulatedCluster, rollout_server: tuple[str, Path], tmp_path: Path) -> None:
    url, artifacts = rollout_server
    with S3Server() as s3, ScriptedModelServer(first_id=100) as model, \
            WorkspaceServices(url, artifacts) as services:
        harness = Harness(k8s_cluster, s3, model.base_url, services.template, tmp_path)
        harness.operator.start()
        try:
            repo = make_repo(tmp_path / "workspace", source=WORKSPACE)
            manifest = workspace_manifest(harness, "calc03", repo)
            manifest["spec"]["model"]["name"] = "openai/scripted"
            manifest["spec"]["agent"] = {"rolloutTimeoutSeconds": 30}
            manifest["spec"]["scoring"] = {"timeoutSeconds": 10}
            harness.apply(manifest)
            run = harness.wait_phase("calc03", ("Succeeded", "Failed"), timeout=240)
            assert run["status"]["phase"] == "Succeeded", run["status"]
            found = sorted(harness.records(run), key=lambda r: r["row_index"])
            assert [(r["row_index"], r["status"], r["reward"]) for r in found] == [
                (row, "completed", reward) for row, _, reward, _ in CALCULATOR_ROWS]
            client = s3.client()
            bucket = harness.bucket.removeprefix("s3://").split("/", 1)[0]
            kept = {key.rsplit("/", 1)[1].removesuffix(".json"): key
                    for key in s3.keys(harness.bucket) if "/atif/" in key}
            assert set(kept) == {r["rollout_id"] for r in found}
            for record in found:
                document = json.loads(client.get_object(
                    Bucket=bucket, Key=kept[record["rollout_id"]])["Body"].read())
                assert atif.validate(document) == []
                assert document["extra"]["osmosis"]["reward"] == record["reward"]
            assert MODEL_KEY not in harness.object_text()
        finally:
            harness.operator.stop()
