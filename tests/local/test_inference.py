"""`spec.model.serve` on one machine: the engine is started as a local process and used, or the
run stops at once with what to install."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.local.support import (
    EXAMPLE,
    REWARD,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    write_manifest,
)
from tests.support.cli import REPO_ROOT

FAKE_VLLM = f'''\
#!{sys.executable}
"""Stands in for `vllm serve MODEL --host H --port P ...`: the scripted OpenAI-compatible
server (tests/support/scripted_model.py) on that port, with vLLM's /health route."""
import asyncio
import sys

sys.path.insert(0, {str(REPO_ROOT)!r})
from aiohttp import web

from tests.support.scripted_model import ScriptedModel

args = sys.argv[1:]
assert args[0] == "serve", args
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
print("fake vllm serving", args[1], "with", args[2:], flush=True)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def main() -> None:
    app = ScriptedModel().app()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()

asyncio.run(main())
'''


def _serve_manifest(tmp_path: Path, engine: str, model: str = "scripted") -> Path:
    document = manifest("served", str(EXAMPLE), "http://unused.invalid/v1",
                        (tmp_path / "out").as_uri(), rows=2, samples=1, shards=1)
    document["spec"]["model"] = {"serve": {"engine": engine, "model": model, "gpus": 0,
                                           "args": ["--max-model-len", "4096"]}}
    return write_manifest(tmp_path / "run.yaml", document)


@pytest.mark.skipif(shutil.which("vllm") is not None or importlib.util.find_spec("sglang")
                    is not None, reason="an engine is installed here")
@pytest.mark.parametrize(("engine", "install"), [("vllm", "pip install vllm"),
                                                 ("sglang", "pip install 'sglang[all]'")])
def test_a_missing_engine_says_what_to_install(tmp_path: Path, engine: str,
                                               install: str) -> None:
    done = run_local(_serve_manifest(tmp_path, engine), "--json", "--no-sandbox", cwd=tmp_path)
    result = result_json(done)
    assert done.returncode == 2, done.stderr
    assert "is not installed here" in result["error"] and install in result["error"]
    assert "spec.model.baseURL" in result["error"]


@pytest.mark.slow
def test_a_managed_server_is_started_and_used(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text(FAKE_VLLM)
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = run_local(_serve_manifest(tmp_path, "vllm"), "--json", "--no-sandbox", cwd=tmp_path,
                     env=env)
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    found = records(file_path(result["runPrefix"]))
    assert len(found) == 2 and all(r["scores"] == {REWARD: 1.0} for r in found)
    assert "inference" in done.stderr and "vllm serves scripted at http://127.0.0.1:" in \
        done.stderr
