"""`rolloutctl sync`, `unpack-bundle`, `inspect` and `serve-tools` as real processes: a local git
remote holding the calculator example, bundles in a file:// folder and in moto's S3, fetched by
their signed URLs without credentials, inspected, and served over HTTP to FastMCP's own
client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.api.spec import RolloutRunSpec
from rollout_operator.runtime.bundle import deps_hash
from rollout_operator.runtime.run_config import RunConfig
from rollout_operator.runtime.run_layout import bundle_key, run_prefix
from tests.support.cli import EXAMPLE, cli_env, rolloutctl_argv, run_cli
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture
from tests.unit.test_bundle import make_wheel
from tests.unit.test_git_sync import git

UID = "0123abcd-4567-89ef-0000-000000000000"
WITH_DEPS_MAIN = '''\
import tinypkg
from fastmcp import FastMCP

mcp = FastMCP("with-deps")


@mcp.tool()
def magic(x: int) -> int:
    """x times the magic number of tinypkg."""
    return x * tinypkg.VALUE
'''


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A git repo with the calculator in `calc/`, a folder without `mcp/main.py` in `nomcp/`,
    and in `withdeps/` a tool server that needs a package from a local wheel."""
    root = tmp_path_factory.mktemp("origin") / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    shutil.copytree(EXAMPLE, root / "calc", ignore=shutil.ignore_patterns("__pycache__"))
    nomcp = root / "nomcp"
    shutil.copytree(EXAMPLE / "reward_fn", nomcp / "reward_fn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(EXAMPLE / "test_data.jsonl", nomcp / "test_data.jsonl")
    deps = root / "withdeps"
    (deps / "mcp").mkdir(parents=True)
    (deps / "mcp" / "main.py").write_text(WITH_DEPS_MAIN)
    shutil.copy(EXAMPLE / "test_data.jsonl", deps / "test_data.jsonl")
    make_wheel(deps / "wheels", "tinypkg", "0.1", body="VALUE = 7\n")
    (deps / "requirements.txt").write_text("--no-index\n--find-links ./wheels\ntinypkg==0.1\n")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "examples")
    return root, git(root, "rev-parse", "HEAD")


def make_config(url: str, out: str, *, path: str = "calc", revision: str = "main",
                name: str = "calc", **spec: Any) -> RunConfig:
    body = {"repo": {"url": url, "revision": revision, "path": path},
            "model": {"name": "openai/test"}, "output": {"url": out},
            "dataset": {"samplesPerPrompt": 3}, **spec}
    return RunConfig(spec=RolloutRunSpec.model_validate(body), namespace="default", name=name,
                     uid=UID, run_prefix=run_prefix(out, "default", name, UID))


def sync(config: RunConfig, tmp_path: Path, env: dict[str, str] | None = None
         ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    message = tmp_path / f"termination-{time.monotonic_ns()}.json"
    done = run_cli(["sync"], cwd=tmp_path, env={
        "ROLLOUT_RUN_CONFIG": config.to_env_value(),
        "ROLLOUT_TERMINATION_MESSAGE_PATH": str(message),
        **(env or {}),
    })
    assert message.exists(), done.stderr
    text = message.read_text()
    assert len(text.encode()) <= 4096
    return done, json.loads(text)


def inspect(fetch_url: str, tmp_path: Path, *scorers: str) -> tuple[
        subprocess.CompletedProcess[str], dict[str, Any]]:
    """What the inspection Job's pod does: fetch the bundle by its URL with no credential in
    the environment, then `rolloutctl inspect` it."""
    dest = tmp_path / f"inspected-{time.monotonic_ns()}"
    fetched = run_cli(["unpack-bundle", "--url-env", "BUNDLE_URL", "--dest", str(dest)],
                      cwd=tmp_path, env={"BUNDLE_URL": fetch_url,
                                         "ROLLOUT_TERMINATION_MESSAGE_PATH": os.devnull})
    assert fetched.returncode == 0, fetched.stderr
    assert "X-Amz-Signature" not in fetched.stdout + fetched.stderr  # the URL's credential
    message = tmp_path / f"inspect-{time.monotonic_ns()}.json"
    args = ["inspect", "--repo", str(dest)]
    for ref in scorers:
        args += ["--scorer", ref]
    done = run_cli(args, cwd=tmp_path, env={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(message)})
    return done, json.loads(message.read_text())


CALCULATOR_SCORERS = [
    "reward_fn.compute_reward:numbers_match_reward",
    "reward_rubric.reward_rubric_openai:calculator_rubric_openai",
]


def test_sync_to_a_folder_then_reuse(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, commit = origin
    out = (tmp_path / "out").as_uri()
    config = make_config(repo.as_uri(), out)
    done, report = sync(config, tmp_path)
    assert done.returncode == 0, done.stderr
    assert report["ok"] is True
    assert report["commit"] == commit
    assert report["reused"] is False
    assert "tools" not in report and "scorers" not in report  # sync never imports the repo
    assert report["problems"] == []
    rows = len((EXAMPLE / "test_data.jsonl").read_text().splitlines())
    assert report["datasetRows"] == rows
    assert report["workItems"] == rows * 3
    assert report["bundleFetchURL"] == report["bundle"]  # a file:// bundle needs no signing
    done, inspected = inspect(report["bundleFetchURL"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert inspected["ok"] is True and inspected["version"] == 1
    assert inspected["tools"] == ["add", "multiply"]
    assert sorted(inspected["scorers"]) == CALCULATOR_SCORERS
    assert inspected["fastmcpVersion"]

    key = bundle_key(commit, deps_hash(repo / "calc"))
    bundle = tmp_path / "out" / key
    assert report["bundle"] == f"{out}/{key}"
    assert bundle.is_file()
    run_json = json.loads((tmp_path / "out" / "default" / "calc-0123abcd" / "run.json")
                          .read_text())
    assert run_json["commit"] == commit
    assert run_json["spec"]["repo"]["path"] == "calc"
    assert run_json["versions"]["python"]

    before = bundle.stat().st_mtime_ns, bundle.read_bytes()
    again_done, again = sync(config, tmp_path)
    assert again_done.returncode == 0, again_done.stderr
    assert again["reused"] is True
    assert again["bundle"] == report["bundle"]
    assert (bundle.stat().st_mtime_ns, bundle.read_bytes()) == before
    assert "building the bundle" not in again_done.stderr


def test_sync_to_s3_then_reuse(
    origin: tuple[Path, str], tmp_path: Path, s3_server: S3Server  # noqa: F811
) -> None:
    repo, commit = origin
    out = s3_server.bucket("rollouts")
    config = make_config(repo.as_uri(), out, path="withdeps", name="deps")
    done, report = sync(config, tmp_path, env=s3_server.env)
    assert done.returncode == 0, done.stderr
    assert report["ok"] is True and report["reused"] is False
    signed = report["bundleFetchURL"]
    assert signed.startswith(s3_server.endpoint) and "X-Amz-Signature=" in signed
    assert signed not in done.stdout + done.stderr  # in the termination message only
    done, inspected = inspect(signed, tmp_path)
    assert done.returncode == 0, done.stderr
    assert inspected["tools"] == ["magic"]  # mcp/main.py imported tinypkg from the bundle's _deps
    key = "rollouts/" + bundle_key(commit, deps_hash(repo / "withdeps"))
    assert s3_server.keys(out) == sorted([key, "rollouts/default/deps-0123abcd/run.json"])
    bucket = out.removeprefix("s3://").split("/", 1)[0]
    head = s3_server.client().head_object(Bucket=bucket, Key=key)

    done, again = sync(config, tmp_path, env=s3_server.env)
    assert done.returncode == 0, done.stderr
    assert again["reused"] is True
    after = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert (after["ETag"], after["LastModified"]) == (head["ETag"], head["LastModified"])


def test_repo_without_mcp_main(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = origin
    config = make_config(repo.as_uri(), (tmp_path / "out").as_uri(), path="nomcp")
    done, report = sync(config, tmp_path)
    assert done.returncode == 2
    assert report["ok"] is False
    assert report["bundle"] is None
    assert [p["file"] for p in report["problems"]] == ["mcp/main.py"]
    assert "mcp/main.py" in report["error"]
    assert not (tmp_path / "out" / "bundles").exists()  # a broken repo is never reused


def test_unknown_revision(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = origin
    config = make_config(repo.as_uri(), (tmp_path / "out").as_uri(), revision="no-such-tag")
    done, report = sync(config, tmp_path)
    assert done.returncode == 2
    assert report["ok"] is False
    assert "'no-such-tag' was not found" in report["problems"][0]["message"]
    assert "spec.repo.revision" in report["error"]


def test_unknown_scorer_and_missing_dataset(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = origin
    config = make_config(
        repo.as_uri(), (tmp_path / "out").as_uri(),
        scoring={"functions": ["reward_fn.compute_reward:numbers_match_reward",
                               "reward_fn.compute_reward:no_such_function"]},
        dataset={"path": "missing.jsonl"},
    )
    done, report = sync(config, tmp_path)
    assert done.returncode == 2
    problems = {p["file"]: p["message"] for p in report["problems"]}
    assert "spec.dataset.path" in problems["missing.jsonl"]
    assert "reward_fn/compute_reward.py" not in problems  # scorers are inspection's to check

    good = make_config(repo.as_uri(), (tmp_path / "out").as_uri())
    done, report = sync(good, tmp_path)
    assert done.returncode == 0, done.stderr
    assert config.spec.scoring.functions is not None
    done, inspected = inspect(report["bundleFetchURL"], tmp_path, *config.spec.scoring.functions)
    assert done.returncode == 2
    assert inspected["ok"] is False
    problems = {p["file"]: p["message"] for p in inspected["problems"]}
    assert "no_such_function" in problems["reward_fn/compute_reward.py"]
    assert inspected["scorers"] == config.spec.scoring.functions


BAD_ROWS_DATA = b"\n".join([
    b'{"system_prompt": "s", "user_prompt": "What is 2 * 3?", "ground_truth": "6"}',
    b'{"system_prompt": "s", "user_prompt": oops}',
    b'{"system_prompt": "s", "user_prompt": "What is 2 * 4?", "ground_truth": 8}',
    b'{"system_prompt": "s", "user_prompt": "caf\xe9", "ground_truth": "1"}',
    b'{"system_prompt": "s", "user_prompt": "What is 2 * 5?", "ground_truth": "10"}',
]) + b"\n"


def test_bad_rows_are_counted_or_with_strict_refused(tmp_path: Path) -> None:
    root = tmp_path / "origin"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "test_data.jsonl").write_bytes(BAD_ROWS_DATA)
    git(root, "init", "--quiet", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "bad rows")
    out = (tmp_path / "out").as_uri()

    lenient = make_config(root.as_uri(), out, path=".")
    done, report = sync(lenient, tmp_path)
    assert done.returncode == 0, done.stderr
    assert report["ok"] is True and report["problems"] == []
    assert (report["datasetRows"], report["workItems"], report["invalidRows"]) == (5, 15, 3)

    strict = make_config(root.as_uri(), out, path=".", name="strict",
                         dataset={"samplesPerPrompt": 3, "strict": True})
    done, report = sync(strict, tmp_path)
    assert done.returncode == 2
    assert report["ok"] is False
    assert [(p["file"], p["message"].split(":")[0]) for p in report["problems"]] == [
        ("test_data.jsonl", "line 2"), ("test_data.jsonl", "line 3"),
        ("test_data.jsonl", "line 4"),
        ("test_data.jsonl", "3 row(s) of the window cannot be used and spec.dataset.strict is "
                            "true"),
    ]
    assert "'ground_truth' must be a string, got int" in report["problems"][1]["message"]
    assert "not valid UTF-8" in report["problems"][2]["message"]


def test_token_stays_out_of_the_report(tmp_path: Path) -> None:
    token = "tok-SECRET-0987654321"
    missing = (tmp_path / "nowhere").as_uri()
    done, report = sync(make_config(missing, (tmp_path / "out").as_uri()), tmp_path,
                        env={"ROLLOUT_GIT_TOKEN": token})
    assert done.returncode == 2
    assert "not a git repository" in report["error"]
    assert token not in json.dumps(report) + done.stdout + done.stderr


# --- the tool pod --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synced_bundle(origin: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    repo, _ = origin
    tmp_path = tmp_path_factory.mktemp("synced")
    done, report = sync(make_config(repo.as_uri(), (tmp_path / "out").as_uri(), path="withdeps",
                                    name="deps"), tmp_path)
    assert done.returncode == 0, done.stderr
    return str(report["bundle"])


def test_unpack_and_serve_tools(synced_bundle: str, tmp_path: Path) -> None:
    dest = tmp_path / "workspace" / "repo"
    done = run_cli(["unpack-bundle", "--url", synced_bundle, "--dest", str(dest)], cwd=tmp_path,
                   env={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "unpack.json")})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "unpack.json").read_text())["ok"] is True
    assert (dest / "mcp" / "main.py").is_file()
    assert (dest / "_deps" / "tinypkg" / "__init__.py").is_file()
    # a restarted init container replaces its own earlier unpack
    again = run_cli(["unpack-bundle", "--url", synced_bundle, "--dest", str(dest)], cwd=tmp_path,
                    env={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "unpack.json")})
    assert again.returncode == 0, again.stderr

    ready = tmp_path / "ready"
    server = subprocess.Popen(
        rolloutctl_argv(["serve-tools", "--repo", str(dest), "--host", "127.0.0.1", "--port", "0",
                         "--ready-file", str(ready)]),
        cwd=tmp_path, env=cli_env({"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "t.json")}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "serve-tools did not become ready"
            time.sleep(0.05)
        url = ready.read_text().strip()
        assert asyncio.run(call_magic(url)) == 42
    finally:
        server.terminate()
        out, err = server.communicate(timeout=15)
    assert server.returncode == 0, err
    assert "READY http://127.0.0.1:" in out


async def call_magic(url: str) -> int:
    import aiohttp
    from fastmcp import Client

    async with aiohttp.ClientSession() as session:
        health = await session.get(url.removesuffix("/mcp") + "/health")
        assert health.status == 200
    async with Client(url) as client:
        result = await client.call_tool("magic", {"x": 6})
        return int(result.structured_content["result"])


def test_serve_tools_without_a_bundle(tmp_path: Path) -> None:
    done = run_cli(["serve-tools", "--repo", str(tmp_path), "--port", "0"], cwd=tmp_path,
                   env={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "t.json")})
    assert done.returncode == 2
    assert "mcp/main.py not found" in json.loads((tmp_path / "t.json").read_text())["error"]


def test_unpack_refuses_a_folder_it_did_not_fill(synced_bundle: str, tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "keep.txt").write_text("precious")
    done = run_cli(["unpack-bundle", "--url", synced_bundle, "--dest", str(dest)], cwd=tmp_path,
                   env={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(tmp_path / "t.json")})
    assert done.returncode == 2
    assert (dest / "keep.txt").read_text() == "precious"
    assert os.listdir(dest) == ["keep.txt"]
