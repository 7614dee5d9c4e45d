"""sandbox-image/README.md states the images' contract: it must cover what the code does."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from rollout_operator.cli import pod_common
from rollout_operator.resources.context import TOOL_PORT
from rollout_operator.resources.security import NON_ROOT_ID
from tests.images.contract import (
    IMAGES_README,
    OPERATOR_DOCKERFILE,
    OPERATOR_MODULE_GLOBS,
    POD_MODULE_GLOBS,
    SANDBOX_DOCKERFILE,
    env_names_read_by,
    module_constants,
    operator_env_names,
    sandbox_containers,
    user_chosen_env_names,
)
from tests.images.dockerfile import parse_dockerfile


@cache
def readme() -> str:
    return IMAGES_README.read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text under the `##` heading `title`, up to the next `##` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme(), re.M | re.S)
    assert match, f"the README has no section '## {title}'"
    return match.group(1)


def code_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_every_env_var_the_pod_code_reads_is_documented() -> None:
    readers = env_names_read_by(POD_MODULE_GLOBS)
    # The scan must find the variables we know are read, or it finds nothing at all.
    assert {"ROLLOUT_RUN_CONFIG", "JOB_COMPLETION_INDEX", "AWS_ACCESS_KEY_ID",
            "ROLLOUT_GIT_TOKEN", "ROLLOUT_PART_SIZE"} <= set(readers)
    documented = code_spans(section("Environment"))
    missing = {name: files for name, files in readers.items() if name not in documented}
    assert missing == {}


def test_every_env_var_the_builders_set_is_documented() -> None:
    names = set().union(*(c.env_names for c in sandbox_containers())) - user_chosen_env_names()
    assert "ROLLOUT_MODEL_API_KEY" in names and "ROLLOUT_GIT_SSH_KEY" in names
    assert sorted(names - code_spans(section("Environment"))) == []


def test_every_pod_module_env_constant_is_documented() -> None:
    constants = {
        **module_constants("rollout_operator.cli.pod_common", "_ENV"),
        **module_constants("rollout_operator.cli.pod_work", "_ENV"),
        **module_constants("rollout_operator.runtime.run_config", "_ENV"),
        **module_constants("rollout_operator.runtime.git_sync", "_ENV"),
    }
    assert len(constants) >= 8
    assert sorted(set(constants.values()) - code_spans(section("Environment"))) == []


def test_every_env_var_the_operator_code_reads_is_documented() -> None:
    readers = env_names_read_by(OPERATOR_MODULE_GLOBS)
    assert "POD_ID" in readers
    documented = code_spans(section("Environment"))
    assert {name: files for name, files in readers.items() if name not in documented} == {}


def test_every_operator_setting_is_documented() -> None:
    names = operator_env_names()
    assert "ROLLOUT_OPERATOR_RUNTIME_IMAGE" in names
    assert sorted(names - code_spans(section("Environment"))) == []


@pytest.mark.parametrize("path", [SANDBOX_DOCKERFILE, OPERATOR_DOCKERFILE], ids=lambda p: p.name)
def test_every_env_var_the_images_set_is_documented(path: Path) -> None:
    env = parse_dockerfile(path.read_text(encoding="utf-8")).final.env()
    assert "HOME" in env
    assert sorted(set(env) - code_spans(section("Environment"))) == []


def test_every_entrypoint_is_documented() -> None:
    text = section("Entrypoints")
    commands = {" ".join(c.command[:2]) for c in sandbox_containers()} | {"rolloutctl operator"}
    assert len(commands) >= 5
    spans = code_spans(text)
    for command in sorted(commands):
        assert any(span.startswith(command) for span in spans), command
    # and with the arguments the builders give
    for container in sandbox_containers():
        shown = " ".join(word if not word.startswith(("s3://", "gs://", "file://")) else "URL"
                         for word in container.command)
        assert shown in spans, f"{container.name}: `{shown}` is not in the Entrypoints table"


def test_every_mount_is_documented_with_its_access() -> None:
    rows = table_rows(section("Mounts (sandbox pods)"))
    documented: dict[tuple[str, bool], str] = {}
    for row in rows[1:]:
        for path in code_spans(row[0]):
            documented[(path, row[2] == "yes")] = row[3]
    assert documented
    for container in sandbox_containers():
        for mount in container.mounts:
            key = (str(mount["mountPath"]), bool(mount.get("readOnly")))
            assert key in documented, f"{container.name}: {key} is not in the Mounts table"
            cell = documented[key]
            assert f"`{container.name}`" in cell or "every container" in cell, (
                f"{container.name} is not listed for {key}: {cell}")


def test_exit_codes_are_documented() -> None:
    codes = module_constants("rollout_operator.cli.pod_common", "")
    exit_codes = {v for k, v in codes.items() if k.startswith("EXIT_")}
    assert exit_codes >= {0, 1, 2}
    rows = table_rows(section("Exit codes and the termination message"))
    documented = {row[0].strip("`") for row in rows[1:]}
    assert {str(code) for code in exit_codes} <= documented
    text = section("Exit codes and the termination message")
    assert pod_common.DEFAULT_TERMINATION_MESSAGE_PATH in text
    assert f"{pod_common.MAX_TERMINATION_MESSAGE_BYTES // 1024} KiB" in text


def test_port_and_user_are_documented() -> None:
    assert f"`{TOOL_PORT}`" in section("Ports")
    assert f"`{NON_ROOT_ID}`" in section("User and file system")
