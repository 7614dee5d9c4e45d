"""The sandbox and operator Dockerfiles against what the pods and the code expect of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_operator.resources.context import TOOL_PORT
from rollout_operator.resources.pod_template import process_env
from rollout_operator.resources.security import NON_ROOT_ID
from tests.images import checks
from tests.images.contract import (
    DOCKERIGNORE,
    OPERATOR_DOCKERFILE,
    REPO_ROOT,
    SANDBOX_DOCKERFILE,
    console_scripts,
    sandbox_containers,
    subcommand_problems,
    writable_in_every_container,
)
from tests.images.dockerfile import Dockerfile, parse_dockerfile, parse_dockerignore

DISTRIBUTION = "rollout-operator"
CLI_ENTRY = "rollout_operator.cli.main:main"
# Folders and caches that programs write to: each must be set to a writable place.
WRITABLE_ENV = (
    "HOME", "TMPDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PIP_CACHE_DIR",
    "UV_CACHE_DIR",
)
DOCKERFILES = {"sandbox": SANDBOX_DOCKERFILE, "operator": OPERATOR_DOCKERFILE}


def load(path: Path) -> Dockerfile:
    return parse_dockerfile(path.read_text(encoding="utf-8"))


@pytest.fixture(params=sorted(DOCKERFILES), ids=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return load(DOCKERFILES[request.param])


def test_multi_stage(dockerfile: Dockerfile) -> None:
    assert checks.multi_stage_problems(dockerfile) == []


def test_every_stage_is_python_312_slim(dockerfile: Dockerfile) -> None:
    assert checks.base_image_problems(dockerfile) == []


def test_the_pods_run_as_the_images_numeric_user(dockerfile: Dockerfile) -> None:
    containers = sandbox_containers()
    assert containers, "the builders made no sandbox container"
    uids = {c.run_as_user for c in containers} | {c.pod_run_as_user for c in containers}
    gids = {c.run_as_group for c in containers} | {c.pod_fs_group for c in containers}
    assert uids == {NON_ROOT_ID} and gids == {NON_ROOT_ID}, (uids, gids)
    assert checks.user_problems(dockerfile, uid=NON_ROOT_ID, gid=NON_ROOT_ID) == []


def test_copy_sources_are_in_the_build_context(dockerfile: Dockerfile) -> None:
    rules = parse_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))
    assert checks.copy_source_problems(dockerfile, REPO_ROOT, rules) == []
    assert dockerfile.stages[0].copies(), "the builder copies nothing from the context"


def test_the_project_is_installed_from_a_wheel_with_uv(dockerfile: Dockerfile) -> None:
    assert checks.project_wheel_problems(dockerfile, DISTRIBUTION) == []
    assert checks.installed_into_final(
        dockerfile, checks.is_wheel_of(DISTRIBUTION), DISTRIBUTION) == []
    assert checks.installed_into_final(dockerfile, checks.is_requirement("uv"), "uv") == []


def test_entrypoint_is_rolloutctl_and_cmd_a_registered_subcommand(
    dockerfile: Dockerfile,
) -> None:
    assert checks.exec_form_problems(dockerfile) == []
    entrypoint, cmd = checks.entrypoint_words(dockerfile)
    scripts = console_scripts()
    assert len(entrypoint) == 1 and scripts.get(entrypoint[0]) == CLI_ENTRY, entrypoint
    assert list(subcommand_problems(cmd)) == []


def test_operator_image_runs_the_operator() -> None:
    _, cmd = checks.entrypoint_words(load(OPERATOR_DOCKERFILE))
    assert cmd[:1] == ["operator"]


def test_home_and_caches_point_at_writable_mounts(dockerfile: Dockerfile) -> None:
    writable = writable_in_every_container()
    assert writable, "no mount is writable in every sandbox container"
    assert checks.writable_env_problems(dockerfile, WRITABLE_ENV, writable) == []


def test_image_env_agrees_with_what_the_pods_set(dockerfile: Dockerfile) -> None:
    image_env = dockerfile.final.env()
    pod_env = {item["name"]: item["value"] for item in process_env()}
    assert pod_env
    differ = {name: (image_env.get(name), value) for name, value in pod_env.items()
              if image_env.get(name) != value}
    assert differ == {}


def test_sandbox_commands_are_registered_subcommands() -> None:
    entrypoint, _ = checks.entrypoint_words(load(SANDBOX_DOCKERFILE))
    commands = {c.name: c.command for c in sandbox_containers()}
    assert len({command[1] for command in commands.values() if len(command) > 1}) >= 4, commands
    for name, command in commands.items():
        assert command[:1] == entrypoint, f"{name}: {command} does not run {entrypoint}"
        assert list(subcommand_problems(command[1:])) == [], name


def test_sandbox_has_git_and_ssh_for_sync() -> None:
    # runtime/git_sync.py runs `git`, and git runs `ssh` for ssh:// and git@host: URLs.
    source = (REPO_ROOT / "operator/rollout_operator/runtime/git_sync.py").read_text()
    assert 'shutil.which("git")' in source and '"ssh"' in source
    assert {"git", "openssh-client", "ca-certificates"} <= checks.apt_packages(
        load(SANDBOX_DOCKERFILE))


def test_sandbox_exposes_the_tool_port() -> None:
    exposed = {word.split("/")[0] for i in load(SANDBOX_DOCKERFILE).final.all("EXPOSE")
               for word in i.words()}
    assert exposed == {str(TOOL_PORT)}


def test_dockerignore_leaves_out_what_the_images_do_not_need() -> None:
    from tests.images.dockerfile import is_ignored

    rules = parse_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))
    for path in (".git", ".venv", "tests/support/scripted_model.py", "rollout-output",
                 "operator/rollout_operator/__pycache__/x.pyc", "operator/x.egg-info/PKG-INFO"):
        assert is_ignored(path, rules), path
    for path in ("pyproject.toml", "README.md", "operator/rollout_operator/cli/main.py"):
        assert not is_ignored(path, rules), path
