"""User code under the local sandbox: a tool that reaches for the network, the user's home,
a folder outside its temp dir, or more memory than its limit fails in that tool call; the
failure is on the trajectory, and the run completes. Scorers cannot read the home folder either.

The scripted model's `reply-json` mode sends each row's prompt back as the model's reply, so a
row names the tool call it makes; with maxTurns 1 each rollout makes exactly that call.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local.support import (
    EXAMPLE,
    file_path,
    manifest,
    records,
    result_json,
    run_local,
    sandbox_available,
    write_manifest,
)
from tests.support.scripted_model import ScriptedModelServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sandbox_available(), reason="bubblewrap (bwrap) is not installed or "
                       "cannot create sandboxes on this machine (CI installs it)"),
]

PROBE_MAIN = '''\
import os
import socket

from fastmcp import FastMCP

mcp = FastMCP("probe")


@mcp.tool()
def connect(host: str, port: int) -> str:
    """Open a TCP connection."""
    with socket.create_connection((host, port), timeout=1):
        return "connected"


@mcp.tool()
def read_file(path: str) -> str:
    """Read a file."""
    with open(path, encoding="utf-8") as handle:
        return "read: " + handle.read()


@mcp.tool()
def write_file(path: str) -> str:
    """Write a file."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("written by a tool")
    return "wrote " + path


@mcp.tool()
def allocate(megabytes: int) -> str:
    """Hold that much memory for a moment."""
    block = bytearray(megabytes * 1024 * 1024)
    return f"allocated {len(block) // (1024 * 1024)} MiB"
'''

REWARD = '''\
from osmosis_ai import osmosis_reward


@osmosis_reward
def always_one(solution_str: str, ground_truth: str, extra_info: dict = None, **kwargs) -> float:
    return 1.0
'''


def _call(name: str, **arguments: Any) -> str:
    """A row's prompt: the reply the scripted model sends back (one tool call)."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}
    return json.dumps({"message": {"role": "assistant", "content": None, "tool_calls": [call]},
                       "finish_reason": "tool_calls"})


@pytest.fixture
def home() -> Iterator[Path]:
    """A home folder outside /tmp (the sandbox's /tmp is private anyway), with a secret."""
    folder = Path(tempfile.mkdtemp(prefix="rollout-home-", dir="/var/tmp"))
    (folder / "secret.txt").write_text("the user's secret")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def host_service() -> Iterator[int]:
    """A service listening on the host's loopback: reachable from outside the sandbox."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


PEEK = '''\
from osmosis_ai import osmosis_reward


@osmosis_reward
def peek_home(solution_str: str, ground_truth: str, extra_info: dict = None, **kwargs) -> float:
    """1.0 when the scorer can read a file in the user's home."""
    with open({path!r}, encoding="utf-8") as handle:
        return 1.0 if handle.read() else 0.0
'''
PEEK_REF = "reward_fn.peek:peek_home"


def _probe_repo(folder: Path, rows: list[tuple[str, str]], home: Path) -> Path:
    (folder / "mcp").mkdir(parents=True)
    (folder / "mcp" / "main.py").write_text(PROBE_MAIN)
    (folder / "reward_fn").mkdir()
    (folder / "reward_fn" / "always.py").write_text(REWARD)
    (folder / "reward_fn" / "peek.py").write_text(PEEK.format(path=str(home / "secret.txt")))
    with (folder / "test_data.jsonl").open("w") as handle:
        for label, prompt in rows:
            handle.write(json.dumps({"system_prompt": "probe", "user_prompt": prompt,
                                     "ground_truth": label}) + "\n")
    return folder


def _tool_results(record: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in record["messages"] if m.get("role") == "tool"]


def test_tools_cannot_leave_the_sandbox(scripted_model: ScriptedModelServer, tmp_path: Path,
                                        home: Path, host_service: int) -> None:
    repo_dir = tmp_path / "repo"
    outside = home / "written.txt"
    rows = [
        ("outside-address", _call("connect", host="192.0.2.1", port=80)),
        ("host-loopback", _call("connect", host="127.0.0.1", port=host_service)),
        ("home", _call("read_file", path=str(home / "secret.txt"))),
        ("write-home", _call("write_file", path=str(outside))),
        ("write-repo", _call("write_file", path=str(repo_dir / "mcp" / "planted.py"))),
        ("memory", _call("allocate", megabytes=1024)),
        ("write-tmp", _call("write_file", path="/tmp/scratch.txt")),
        ("small-memory", _call("allocate", megabytes=8)),
    ]
    _probe_repo(repo_dir, rows, home)
    spec = manifest("probe", str(repo_dir), scripted_model.base_url,
                    (tmp_path / "out").as_uri(), model="scripted:reply-json", rows=len(rows),
                    samples=1, shards=1)
    spec["spec"]["agent"] = {"maxTurns": 1, "toolTimeoutSeconds": 20}
    spec["spec"]["scoring"] = {}
    spec["spec"]["sandbox"] = {"resources": {"limits": {"memory": "512Mi"}}}
    path = write_manifest(tmp_path / "run.yaml", spec)

    done = run_local(path, "--json", cwd=tmp_path, env={"HOME": str(home)})
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    assert result["ok"] and result["sandbox"] is True

    by_label = {r["ground_truth"]: r for r in records(file_path(result["runPrefix"]))}
    assert set(by_label) == {label for label, _ in rows}
    for record in by_label.values():
        assert record["status"] == "completed", record  # a failing tool never fails a rollout
        # scorers run sandboxed too: the one reading the home folder scores 0 with the reason
        assert record["scores"][PEEK_REF] == 0.0
        assert record["error"]["category"] == "reward"
        assert "No such file" in record["error"]["message"]
    results = {label: _tool_results(record)[0] for label, record in by_label.items()}
    expected_errors = {
        "outside-address": "unreachable",
        "host-loopback": "refused",
        "home": "No such file",
        "write-home": "Read-only file system",
        "write-repo": "Read-only file system",
        "memory": "calling tool 'allocate'",  # a MemoryError, whose message is empty
    }
    for label, fragment in expected_errors.items():
        assert results[label].startswith("Error"), (label, results[label])
        assert fragment.lower() in results[label].lower(), (label, results[label])
    assert results["write-tmp"] == "wrote /tmp/scratch.txt"
    assert results["small-memory"] == "allocated 8 MiB"
    assert not outside.exists() and not (repo_dir / "mcp" / "planted.py").exists()
    assert "the user's secret" not in json.dumps(list(by_label.values()))


def test_the_same_tools_reach_everything_without_the_sandbox(
        scripted_model: ScriptedModelServer, tmp_path: Path, home: Path,
        host_service: int) -> None:
    """The control: with --no-sandbox the same calls succeed, so the first test's failures
    come from the sandbox and not from the machine."""
    rows = [
        ("host-loopback", _call("connect", host="127.0.0.1", port=host_service)),
        ("home", _call("read_file", path=str(home / "secret.txt"))),
        ("write-home", _call("write_file", path=str(home / "written.txt"))),
        ("memory", _call("allocate", megabytes=1024)),
    ]
    repo_dir = _probe_repo(tmp_path / "repo", rows, home)
    spec = manifest("probe", str(repo_dir), scripted_model.base_url,
                    (tmp_path / "out").as_uri(), model="scripted:reply-json", rows=len(rows),
                    samples=1, shards=1)
    spec["spec"]["agent"] = {"maxTurns": 1}
    spec["spec"]["scoring"] = {}
    done = run_local(write_manifest(tmp_path / "run.yaml", spec), "--json", "--no-sandbox",
                     cwd=tmp_path, env={"HOME": str(home)})
    result = result_json(done)
    assert done.returncode == 0, done.stderr
    found = records(file_path(result["runPrefix"]))
    assert all(r["scores"][PEEK_REF] == 1.0 and r["error"] is None for r in found)
    results = {r["ground_truth"]: _tool_results(r)[0] for r in found}
    assert results == {"host-loopback": "connected", "home": "read: the user's secret",
                       "write-home": f"wrote {home / 'written.txt'}",
                       "memory": "allocated 1024 MiB"}


def test_refused_without_bubblewrap_unless_no_sandbox(tmp_path: Path) -> None:
    """With no bwrap on the PATH the run is refused (exit 2) and says what to do."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "prlimit"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    spec = manifest("nobwrap", str(EXAMPLE), "http://127.0.0.1:9/v1",
                    (tmp_path / "out").as_uri())
    path = write_manifest(tmp_path / "run.yaml", spec)
    done = run_local(path, "--json", cwd=tmp_path, env={"PATH": str(bin_dir)})
    result = result_json(done)
    assert done.returncode == 2
    assert "bubblewrap (bwrap) is not installed" in result["error"]
    assert "--no-sandbox" in result["error"] and "apt-get install bubblewrap" in result["error"]


def test_sandbox_probe_runs_bwrap_itself() -> None:
    """What `sandbox_problem` checks: a sandbox starts and has no route out."""
    from rollout_operator.local.sandbox import SandboxPolicy, runtime_paths, sandbox_argv

    code = ("import socket\ns = socket.socket()\ns.settimeout(1)\n"
            "try:\n    s.connect(('192.0.2.1', 80))\nexcept OSError as e:\n    print(e.errno)")
    policy = SandboxPolicy(readable=tuple(runtime_paths()))
    argv = sandbox_argv([sys.executable, "-c", code], policy, home=None)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.strip() == "101"  # ENETUNREACH: no interface but loopback


def test_a_tool_server_that_cannot_start_fails_the_run_with_its_log(
        scripted_model: ScriptedModelServer, tmp_path: Path, home: Path) -> None:
    """The tool server imports a module that needs more memory than the tool limit (sync
    validates it under the larger worker limit): the run fails with exit 1 and the server's
    own error, and the workers started beside it are stopped."""
    repo_dir = _probe_repo(tmp_path / "repo", [("x", _call("allocate", megabytes=1))], home)
    main = repo_dir / "mcp" / "main.py"
    main.write_text("HOLD = bytearray(768 * 1024 * 1024)\n" + main.read_text())
    spec = manifest("nostart", str(repo_dir), scripted_model.base_url,
                    (tmp_path / "out").as_uri(), model="scripted:reply-json", rows=1, samples=1,
                    shards=1)
    spec["spec"]["scoring"] = {}
    spec["spec"]["sandbox"] = {"resources": {"limits": {"memory": "512Mi"}}}
    done = run_local(write_manifest(tmp_path / "run.yaml", spec), "--json", cwd=tmp_path,
                     env={"HOME": str(home)}, timeout=120)
    result = result_json(done)
    assert done.returncode == 1, done.stderr
    assert result["state"] == "Failed" and "tool server exited" in result["error"]
    assert "MemoryError" in result["error"]
    assert result["logs"] and Path(result["logs"], "tool-server.log").is_file()
    assert not list((tmp_path / "out").glob("default/nostart-*/shards/*/*.jsonl"))
    shutil.rmtree(Path(result["logs"]).parent, ignore_errors=True)
