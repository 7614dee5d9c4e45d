"""The Dockerfile parser and each check on small Dockerfiles, broken in one way at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import checks
from tests.images.contract import env_names_read, subcommand_problems
from tests.images.dockerfile import (
    is_ignored,
    logical_lines,
    parse_dockerfile,
    parse_dockerignore,
    parse_env,
)

GOOD = """\
# syntax=docker/dockerfile:1
FROM python:3.12-slim AS builder
COPY pyproject.toml ./
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \\
 && python -m venv /opt/venv \\
 # a comment inside a continuation is skipped
 && /opt/venv/bin/pip install /wheels/rollout_operator-*.whl "uv==0.13.9"

FROM python:3.12-slim
RUN useradd --system --uid 65532 --gid 65532 app
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \\
    HOME=/tmp XDG_CACHE_HOME="/tmp/.cache"
USER 65532:65532
ENTRYPOINT ["rolloutctl"]
CMD ["operator"]
"""


def test_parser_reads_stages_continuations_and_env() -> None:
    dockerfile = parse_dockerfile(GOOD)
    assert [(s.base, s.name) for s in dockerfile.stages] == [
        ("python:3.12-slim", "builder"), ("python:3.12-slim", None)]
    run = dockerfile.stages[0].run_commands()[0]
    assert "comment" not in run and run.endswith('"uv==0.13.9"')
    assert dockerfile.final.env() == {
        "PATH": "/opt/venv/bin:$PATH", "HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/.cache"}
    assert dockerfile.final.user == "65532:65532"
    assert checks.entrypoint_words(dockerfile) == (["rolloutctl"], ["operator"])
    assert parse_env("LEGACY one two") == {"LEGACY": "one two"}
    assert [n for n, _ in logical_lines("FROM a\n\n# c\nRUN x \\\n  y\n")] == [1, 4]


def test_good_dockerfile_passes_every_check(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    dockerfile = parse_dockerfile(GOOD)
    assert checks.multi_stage_problems(dockerfile) == []
    assert checks.base_image_problems(dockerfile) == []
    assert checks.user_problems(dockerfile, uid=65532, gid=65532) == []
    assert checks.copy_source_problems(dockerfile, tmp_path, []) == []
    assert checks.project_wheel_problems(dockerfile, "rollout-operator") == []
    assert checks.installed_into_final(dockerfile, checks.is_requirement("uv"), "uv") == []
    assert checks.exec_form_problems(dockerfile) == []
    assert checks.writable_env_problems(dockerfile, ["HOME", "XDG_CACHE_HOME"], ["/tmp"]) == []


@pytest.mark.parametrize(
    ("old", "new", "check", "expected"),
    [
        ("FROM python:3.12-slim AS builder", "FROM python:3.12 AS builder", "base",
         "not python:3.12-slim"),
        ("FROM python:3.12-slim\n", "FROM debian:12-slim\n", "base", "not python"),
        ("COPY --from=builder /opt/venv /opt/venv", "COPY --from=0 /opt/other /opt/venv",
         "uv", "does not copy"),
        ("COPY --from=builder", "COPY --from=builer", "copy", "no such stage"),
        ("COPY pyproject.toml", "COPY pyproject.tom", "copy", "no such path"),
        ('"uv==0.13.9"', "", "uv", "uv is not installed"),
        ("ENV PATH=/opt/venv/bin:$PATH", "ENV PATH=/usr/bin", "uv", "not on the final"),
        ("USER 65532:65532", "USER app", "user", "must be numeric"),
        ("USER 65532:65532", "USER 0", "user", "root"),
        ("USER 65532:65532", "USER 1000:1000", "user", "the pods run as uid 65532"),
        ("USER 65532:65532\n", "", "user", "sets no USER"),
        ("--uid 65532", "--uid 1000", "user", "does not create a user"),
        ('CMD ["operator"]', "CMD rolloutctl operator", "exec", "exec (JSON) form"),
        ("HOME=/tmp", "HOME=/home/app", "writable", "HOME=/home/app is not under"),
        ('XDG_CACHE_HOME="/tmp/.cache"', "", "writable", "XDG_CACHE_HOME is not set"),
        ("pip wheel", "pip download", "wheel", "no builder stage builds a wheel"),
    ],
)
def test_each_check_catches_its_mistake(
    tmp_path: Path, old: str, new: str, check: str, expected: str
) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    assert old in GOOD
    dockerfile = parse_dockerfile(GOOD.replace(old, new, 1))
    problems = {
        "base": lambda: checks.base_image_problems(dockerfile),
        "uv": lambda: checks.installed_into_final(dockerfile, checks.is_requirement("uv"), "uv"),
        "copy": lambda: checks.copy_source_problems(dockerfile, tmp_path, []),
        "user": lambda: checks.user_problems(dockerfile, uid=65532, gid=65532),
        "exec": lambda: checks.exec_form_problems(dockerfile),
        "writable": lambda: checks.writable_env_problems(
            dockerfile, ["HOME", "XDG_CACHE_HOME"], ["/tmp"]),
        "wheel": lambda: checks.project_wheel_problems(dockerfile, "rollout-operator"),
    }[check]()
    assert any(expected in problem for problem in problems), problems


def test_single_stage_is_caught() -> None:
    dockerfile = parse_dockerfile("FROM python:3.12-slim\nUSER 65532\n")
    assert "one stage only" in checks.multi_stage_problems(dockerfile)[0]


def test_copy_of_an_ignored_path_is_caught(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    rules = parse_dockerignore("*\n!README.md\n")
    problems = checks.copy_source_problems(parse_dockerfile(GOOD), tmp_path, rules)
    assert problems == ["COPY pyproject.toml: left out of the context by .dockerignore"]


def test_dockerignore_matching() -> None:
    rules = parse_dockerignore("*\n!operator\n**/__pycache__\n!keep/**/x.txt\n")
    assert is_ignored("tests/a.py", rules)
    assert not is_ignored("operator/pkg/a.py", rules)
    assert is_ignored("operator/pkg/__pycache__/a.pyc", rules)
    assert is_ignored("keep/a/y.txt", rules) and not is_ignored("keep/a/b/x.txt", rules)


def test_apt_packages_are_read_from_install_lines() -> None:
    dockerfile = parse_dockerfile(
        "FROM python:3.12-slim\nRUN apt-get update && apt-get install -y --no-install-recommends"
        " git openssh-client && rm -rf /var/lib/apt/lists/*\n")
    assert checks.apt_packages(dockerfile) == {"git", "openssh-client"}


def test_env_scanner_finds_constants_and_literal_reads() -> None:
    source = (
        "import os\n"
        "TOKEN_ENV = 'MY_TOKEN'\n"
        "OTHER = 'NOT_AN_ENV_READ'\n"
        "a = os.environ.get('AWS_REGION')\n"
        "b = environ['JOB_COMPLETION_INDEX']\n"
        "c = os.getenv('GETENV_NAME')\n"
        "d = (os.environ if x else y).get('PYTHONPATH', '')\n"
        "os.environ.setdefault('LITELLM_LOCAL_MODEL_COST_MAP', 'True')\n"
        "e = settings.get('NOT_ENV')\n"
    )
    assert env_names_read(source) == {
        "MY_TOKEN", "AWS_REGION", "JOB_COMPLETION_INDEX", "GETENV_NAME", "PYTHONPATH",
        "LITELLM_LOCAL_MODEL_COST_MAP",
    }


def test_subcommands_are_checked_against_clicks_registry() -> None:
    assert list(subcommand_problems(["operator", "--verbose"])) == []
    assert list(subcommand_problems(["--help"])) == []
    assert list(subcommand_problems(["serve-tool"])) == [
        "'serve-tool' is not a rolloutctl subcommand"]
    assert list(subcommand_problems(["--nope", "work"])) == [
        "'--nope' is not an option of rolloutctl"]
