"""Checks of a parsed Dockerfile; each returns the problems it finds (empty when none).

They take their expectations as arguments, so the tests run them on the real Dockerfiles with
what the code expects, and on small broken Dockerfiles to show that they catch each mistake.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from tests.images.dockerfile import Dockerfile, IgnoreRule, image_parts, is_ignored, split_user

_PIP_INSTALL = re.compile(
    r"(?:^|/|\s)(?:pip|pip3)\s+install\s|-m\s+pip\s+install\s|uv\s+pip\s+install\s"
)


def multi_stage_problems(dockerfile: Dockerfile) -> list[str]:
    if len(dockerfile.stages) < 2:
        return [f"one stage only ({dockerfile.final.base}): build in a builder stage"]
    earlier = {s.name for s in dockerfile.stages[:-1]} | {
        str(s.index) for s in dockerfile.stages[:-1]
    }
    if not any(c.from_stage in earlier for c in dockerfile.final.copies()):
        return ["the final stage copies nothing from an earlier stage"]
    return []


def base_image_problems(dockerfile: Dockerfile, *, python: str = "3.12") -> list[str]:
    problems = []
    for stage in dockerfile.stages:
        repository, tag = image_parts(stage.base)
        if repository.removeprefix("docker.io/").removeprefix("library/") != "python":
            problems.append(f"stage {stage.index} is based on {stage.base}, not python")
        elif tag is None or not tag.startswith(f"{python}-slim"):
            problems.append(
                f"stage {stage.index} is based on {stage.base}, not python:{python}-slim"
            )
    return problems


def user_problems(dockerfile: Dockerfile, *, uid: int, gid: int) -> list[str]:
    user = dockerfile.final.user
    if user is None:
        return ["the final stage sets no USER: it would run as root"]
    name, group = split_user(user)
    problems = []
    if not name.isdigit():
        problems.append(f"USER {user}: the user must be numeric (runAsNonRoot cannot check a "
                        "name)")
    elif int(name) == 0:
        problems.append(f"USER {user}: root")
    elif int(name) != uid:
        problems.append(f"USER {user}: the pods run as uid {uid}")
    if group is not None and (not group.isdigit() or int(group) != gid):
        problems.append(f"USER {user}: the pods run with gid {gid}")
    # ssh (and getpwuid callers) need the uid in /etc/passwd.
    creates = any(re.search(rf"useradd\b.*(?:--uid|-u)\s+{uid}\b", run)
                  for run in dockerfile.final.run_commands())
    if not creates:
        problems.append(f"the final stage does not create a user with uid {uid} (useradd)")
    return problems


def copy_source_problems(
    dockerfile: Dockerfile, context: Path, ignore_rules: list[IgnoreRule]
) -> list[str]:
    """COPY/ADD sources from the build context must exist and not be left out of it."""
    problems = []
    for stage in dockerfile.stages:
        for copy in stage.copies():
            if copy.from_stage is not None:
                if dockerfile.stage(copy.from_stage) is None and ":" not in copy.from_stage:
                    problems.append(f"COPY --from={copy.from_stage}: no such stage")
                continue
            for source in copy.sources:
                if any(ch in source for ch in "*?[") or "://" in source:
                    problems.append(f"COPY {source}: use plain paths so they can be checked")
                    continue
                relative = str(PurePosixPath(source))
                if not (context / relative).exists():
                    problems.append(f"COPY {source}: no such path in the build context")
                elif is_ignored(relative, ignore_rules):
                    problems.append(f"COPY {source}: left out of the context by .dockerignore")
    return problems


def entrypoint_words(dockerfile: Dockerfile) -> tuple[list[str], list[str]]:
    """(ENTRYPOINT, CMD) of the final stage, as exec-form word lists ([] when unset)."""
    final = dockerfile.final
    entrypoint = final.last("ENTRYPOINT")
    cmd = final.last("CMD")
    return (entrypoint.words() if entrypoint else [], cmd.words() if cmd else [])


def exec_form_problems(dockerfile: Dockerfile) -> list[str]:
    """ENTRYPOINT and CMD in exec form: a shell would be PID 1 and swallow SIGTERM."""
    problems = []
    for keyword in ("ENTRYPOINT", "CMD"):
        instruction = dockerfile.final.last(keyword)
        if instruction is not None and instruction.exec_form() is None:
            problems.append(f"{keyword} {instruction.value}: use the exec (JSON) form")
    return problems


def installed_packages(command: str) -> list[str]:
    """The requirement words of every `pip install` / `uv pip install` in a RUN command."""
    packages: list[str] = []
    for part in re.split(r"&&|;|\|\|", command):
        if not _PIP_INSTALL.search(" " + part.strip() + " "):
            continue
        words = shlex.split(part)
        index = words.index("install")
        packages += [w for w in words[index + 1:] if not w.startswith("-")]
    return packages


def requirement_name(word: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", word, maxsplit=1)[0].strip().lower()


def is_requirement(name: str) -> Callable[[str], bool]:
    """Matches a pip requirement word naming the distribution `name`."""
    return lambda word: requirement_name(word) == name.lower()


def is_wheel_of(distribution: str) -> Callable[[str], bool]:
    """Matches a path to a wheel of `distribution`."""
    prefix = distribution.replace("-", "_") + "-"
    return lambda word: word.endswith(".whl") and word.rsplit("/", 1)[-1].startswith(prefix)


def _installer_prefix(command: str, matches: Callable[[str], bool]) -> str | None:
    """The folder whose `bin/pip` (or `bin/python -m pip`) installs what `matches`, "/" for a
    pip on PATH, None when the command installs no such thing."""
    for part in re.split(r"&&|;|\|\|", command):
        if not any(matches(word) for word in installed_packages(part)):
            continue
        found = re.search(r"(\S+)/bin/(?:pip3?|python3?)\b", part)
        return found.group(1) if found else "/"
    return None


def installed_into_final(
    dockerfile: Dockerfile, matches: Callable[[str], bool], what: str
) -> list[str]:
    """Something `matches` is pip-installed in the final stage, or into a folder of an earlier
    stage that the final stage copies whole and puts on PATH."""
    final = dockerfile.final
    if any(_installer_prefix(run, matches) for run in final.run_commands()):
        return []
    path = final.env().get("PATH", "")
    for stage in dockerfile.stages[:-1]:
        for run in stage.run_commands():
            prefix = _installer_prefix(run, matches)
            if prefix is None:
                continue
            if prefix == "/":
                return [f"{what} is installed into the system Python of stage {stage.index}, "
                        "which the final stage does not have"]
            copied = any(
                c.from_stage in (stage.name, str(stage.index)) and prefix in c.sources
                for c in final.copies()
            )
            if not copied:
                return [f"{what} is installed into {prefix} in stage {stage.index}, "
                        "which the final stage does not copy"]
            if f"{prefix}/bin" not in path.split(":"):
                return [f"{prefix}/bin is not on the final stage's PATH"]
            return []
    return [f"{what} is not installed"]


def project_wheel_problems(dockerfile: Dockerfile, distribution: str) -> list[str]:
    """The project is installed from a wheel built in an earlier stage."""
    matches = is_wheel_of(distribution)
    for stage in dockerfile.stages[:-1]:
        runs = " && ".join(stage.run_commands())
        builds = re.search(r"pip\s+wheel\b|-m\s+build\b|uv\s+build\b", runs)
        if builds and _installer_prefix(runs, matches) is not None:
            return []
    return [f"no builder stage builds a wheel of {distribution} and installs it"]


def apt_packages(dockerfile: Dockerfile) -> set[str]:
    """Packages that `apt-get install` puts into the final stage."""
    packages: set[str] = set()
    for run in dockerfile.final.run_commands():
        for part in re.split(r"&&|;|\|\|", run):
            words = shlex.split(part)
            if words[:1] == ["apt-get"] and "install" in words:
                index = words.index("install")
                packages |= {w for w in words[index + 1:] if not w.startswith("-")}
    return packages


def writable_env_problems(
    dockerfile: Dockerfile, names: Iterable[str], writable: Iterable[str]
) -> list[str]:
    """Each variable in `names` is set in the final stage to a folder under a writable mount."""
    env = dockerfile.final.env()
    roots = [PurePosixPath(w) for w in writable]
    problems = []
    for name in names:
        value = env.get(name)
        if value is None:
            problems.append(f"{name} is not set: it would point at the read-only root")
        elif not any(PurePosixPath(value) == r or r in PurePosixPath(value).parents
                     for r in roots):
            problems.append(f"{name}={value} is not under a writable mount "
                            f"({', '.join(sorted(map(str, roots)))})")
    return problems
