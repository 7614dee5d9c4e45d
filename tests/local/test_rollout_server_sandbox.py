"""The local rollout server of a `spec.rollout` run, sandboxed: it holds no model key and no
storage credential, sees only the variables spec.rollout gives it, has no network interface but
its loopback, and reaches the worker's gateway (and nothing else on the host) through the
relay. The "rollout server" here is a probe entrypoint that reports what it sees."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rollout_operator.api.spec import RolloutSpec, SecretEnv, SecretKeyRef
from rollout_operator.gateway.server import Gateway
from rollout_operator.gateway.upstream import make_upstream
from rollout_operator.local.rollout_server import free_port_range, start_rollout_server
from rollout_operator.workspaces.shard_runner import GATEWAY_PORT_ENV, ROLLOUT_SERVER_URL_ENV
from tests.local.support import sandbox_available

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not "
                                "installed or cannot create sandboxes here")

PROBE = '''
import http.server, json, os, socket, urllib.request, urllib.error

def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False

def gateway_status(port):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/rollouts/probe/chat/completions", data=b"{}",
        headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return repr(exc)
    return 200

class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "status": "ok", "env": sorted(os.environ),
            "interfaces": sorted(name for _, name in socket.if_nameindex()),
            "host_port_reachable": connects(int(os.environ["PROBE_HOST_PORT"])),
            "gateway": gateway_status(int(os.environ["PROBE_GATEWAY_PORT"])),
            "cwd": os.getcwd(),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(
    ("127.0.0.1", int(os.environ["_OSMOSIS_ROLLOUT_PORT"])), Probe).serve_forever()
'''


def probe_repo(root: Path) -> Path:
    rollout = root / "repo" / "rollouts" / "probe"
    (rollout / ".venv" / "bin").mkdir(parents=True)
    (rollout / "main.py").write_text(PROBE)
    (rollout / "pyproject.toml").write_text('[project]\nname = "probe"\nversion = "0"\n')
    os.symlink(sys.executable, rollout / ".venv" / "bin" / "python")
    return root / "repo"


async def probe(tmp_path: Path, host_port: int) -> tuple[dict[str, Any], dict[str, str]]:
    repo = probe_repo(tmp_path)
    gateway_port = free_port_range(1)
    rollout = RolloutSpec(name="probe", env={"PROBE_HOST_PORT": str(host_port),
                                             "PROBE_GATEWAY_PORT": str(gateway_port)},
                          secrets=[SecretEnv(env="GRADER_TOKEN", secret_key_ref=SecretKeyRef(
                              name="grader", key="token"))])
    environ = {**os.environ, "OPENAI_API_KEY": "sk-model-key", "ROLLOUT_MODEL_API_KEY": "sk-m",
               "AWS_SECRET_ACCESS_KEY": "storage", "GRADER_TOKEN": "grader-token"}
    server = await start_rollout_server(repo, rollout, environ=environ, workdir=tmp_path / "w",
                                        log_path=tmp_path / "logs" / "rollout-server.log",
                                        shards=1, sandboxed=True, memory=None,
                                        gateway_port=gateway_port)
    gateway = Gateway(make_upstream("openai/scripted", f"http://127.0.0.1:{host_port}/v1",
                                    None), "run-token")
    try:
        await gateway.start("127.0.0.1", server.gateway_port)
        await server.ready(timeout_s=60)
        async with aiohttp.ClientSession() as session, session.get(
                server.url + "/health") as reply:
            seen = json.loads(await reply.read())
        return seen, server.worker_env()
    finally:
        await gateway.close()
        await server.stop()


def test_rollout_server_sees_no_key_and_reaches_only_the_gateway(tmp_path: Path) -> None:
    with socket.socket() as host_service:  # something listening on the host's loopback
        host_service.bind(("127.0.0.1", 0))
        host_service.listen(8)
        seen, worker_env = asyncio.run(probe(tmp_path, host_service.getsockname()[1]))
    assert seen["status"] == "ok"
    for name in ("OPENAI_API_KEY", "ROLLOUT_MODEL_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        assert name not in seen["env"]
    assert {"GRADER_TOKEN", "PROBE_HOST_PORT", "_OSMOSIS_ROLLOUT_PORT",
            "_OSMOSIS_ROLLOUT_ARTIFACT_ROOT"} <= set(seen["env"])
    assert seen["interfaces"] == ["lo"]
    assert seen["host_port_reachable"] is False
    assert seen["gateway"] == 401  # the worker's gateway answered: wrong bearer
    assert seen["cwd"].endswith("rollouts/probe")
    assert worker_env[ROLLOUT_SERVER_URL_ENV].startswith("http://127.0.0.1:")
    assert int(worker_env[GATEWAY_PORT_ENV]) > 0
