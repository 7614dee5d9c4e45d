"""A content-addressed bundle of a repo: its tree plus the dependencies the runtime lacks.

The sync Job builds the bundle once per (commit, dependency declaration) and tool pods and
workers unpack it, so user code runs exactly as it was validated and no pod installs anything.

Layout of the archive (a gzipped tar):
  <repo tree>            the repo folder without `.git`, `__pycache__` and `*.pyc`
  _deps/                 packages installed for the repo (only when it declares any the runtime
                         does not already provide); added to `sys.path` when the bundle is used

Dependencies are read from `[project].dependencies` in `pyproject.toml` and from
`requirements.txt` (nested `-r` files are inlined; `-e` installs become regular ones). They are
installed with the runtime's own pip into a scratch prefix, with every distribution of the
runtime pinned as a constraint: a requirement the runtime already satisfies is not installed
again, and one that would need a different version of a runtime package fails with a clear error
instead of shadowing it. Three distributions are never installed, whatever the repo declares:
`osmosis-ai`, `fastmcp` and `mcp`. The runtime provides them: our FastMCP is the one the tool
server and the workers are tested with, and the `osmosis_ai` module comes from our compatibility
layer, because no installable `osmosis-ai` release still has `osmosis_reward`, `osmosis_rubric`
and `evaluate_rubric`. If one of them is pulled in by another package it is removed again.

The archive is deterministic: entries sorted, times, owners and modes normalised, bytecode left
out, so the same inputs give the same bytes. Unpacking refuses absolute paths, `..`, links that
leave the destination, device files and members below a symlink.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import site
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from rollout_operator.runtime.errors import LocalExecutionError

log = logging.getLogger(__name__)

DEPS_DIR = "_deps"
# What `deps_hash` answers for a repo that declares no dependencies: hex like every other hash,
# because bundle keys (`run_layout.bundle_key`) take lowercase hex only.
NO_DEPS = "0" * 16
EXCLUDED_DISTRIBUTIONS = frozenset({"osmosis-ai", "fastmcp", "mcp"})
DEPS_HASH_CHARS = 16
DEFAULT_INSTALL_TIMEOUT_SECONDS = 1800.0

_SKIPPED_NAMES = frozenset({".git", "__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_REQUIREMENT_NAME = re.compile(
    r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?=$|[\[<>=!~;@(\s])"
)
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_EDITABLE_OPTIONS = ("-e", "--editable")
_RUNTIME_DISTRIBUTIONS_SCRIPT = (
    "import importlib.metadata as m, json\n"
    "seen = {}\n"
    "for d in m.distributions():\n"
    "    name = d.metadata['Name']\n"
    "    if name and d.version:\n"
    "        seen.setdefault(name, d.version)\n"
    "print(json.dumps(seen))\n"
)


class BundleError(LocalExecutionError):
    """A bundle cannot be built or unpacked; the message says what to fix."""


def normalize_name(name: str) -> str:
    """A distribution name in PEP 503 form (`Osmosis_AI` -> `osmosis-ai`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the dependency declaration -------------------------------------------------------------------


def dependency_files(repo_dir: str | os.PathLike[str]) -> list[Path]:
    """The files that declare the repo's dependencies: pyproject.toml, requirements*.txt,
    uv.lock at the top of the repo folder, sorted by name."""
    root = Path(os.fspath(repo_dir))
    found = [root / "pyproject.toml", root / "uv.lock", *root.glob("requirements*.txt")]
    return sorted((path for path in found if path.is_file()), key=lambda path: path.name)


def deps_hash(repo_dir: str | os.PathLike[str]) -> str:
    """Hash of the dependency declaration (16 hex digits), or `NO_DEPS` when the repo has none.

    Besides the files' contents it covers what decides which packages get installed and whether
    they run: the Python version and platform, and the runtime version (whose packages are not
    installed again).
    """
    files = dependency_files(repo_dir)
    if not files:
        return NO_DEPS
    from rollout_operator import __version__

    digest = hashlib.sha256()
    identity = f"python{sys.version_info[0]}.{sys.version_info[1]}-{sys.platform}-" \
        f"{platform.machine()}-rollout-operator{__version__}"
    digest.update(identity.encode())
    for path in files:
        digest.update(b"\0" + path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:DEPS_HASH_CHARS]


def requirement_name(line: str) -> str | None:
    """The normalised distribution name a requirement line names, if it names one."""
    spec = line.split(";", 1)[0].strip()
    match = _REQUIREMENT_NAME.match(spec)
    if match is None or spec.startswith("-") or (_looks_like_path(spec) and "@" not in spec):
        return None
    return normalize_name(match.group(1))


def declared_requirements(repo_dir: str | os.PathLike[str]) -> list[str]:
    """The requirement lines to install for the repo: `[project].dependencies` of
    pyproject.toml and the lines of requirements.txt, without the excluded distributions."""
    root = Path(os.fspath(repo_dir)).resolve()
    lines: list[str] = []
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        lines.extend(_pyproject_requirements(pyproject))
    requirements = root / "requirements.txt"
    if requirements.is_file():
        lines.extend(_requirements_file_lines(requirements, root, seen=set()))
    kept: list[str] = []
    for line in lines:
        name = requirement_name(line)
        if name in EXCLUDED_DISTRIBUTIONS:
            log.info("not installing %s: the runtime provides it", name)
            continue
        if line not in kept:
            kept.append(line)
    return kept


def _pyproject_requirements(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path.name} is not valid TOML: {exc}; fix the file") from None
    project = data.get("project")
    if not isinstance(project, dict):
        return []
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise BundleError(f"{path.name}: [project].dependencies must be a list of strings")
    return [d.strip() for d in dependencies if d.strip()]


def _logical_lines(text: str) -> Iterator[str]:
    """Lines of a requirements file with comments removed and `\\` continuations joined."""
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield line
    if pending.strip():
        yield pending.strip()


def _requirements_file_lines(path: Path, root: Path, *, seen: set[Path]) -> list[str]:
    resolved = path.resolve()
    if resolved in seen:
        return []
    seen.add(resolved)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}; fix the -r reference") from None
    lines: list[str] = []
    for line in _logical_lines(text):
        option, _, value = _split_option(line)
        if option in _FILE_OPTIONS and value:
            referenced = (resolved.parent / value).resolve()
            if option in ("-r", "--requirement"):
                lines.extend(_requirements_file_lines(referenced, root, seen=seen))
            else:
                lines.append(f"--constraint {referenced}")
        elif option in _EDITABLE_OPTIONS and value:
            # An editable install would point into the checkout, which pods do not have.
            lines.append(_absolute_local_path(value, resolved.parent))
        elif option is None:
            lines.append(_absolute_local_path(line, resolved.parent))
        else:
            lines.append(line)
    return lines


def _split_option(line: str) -> tuple[str | None, str, str]:
    if not line.startswith("-"):
        return None, "", line
    if line.startswith("--") and "=" in line.split(" ", 1)[0]:
        option, _, value = line.partition("=")
        return option, "=", value.strip()
    option, sep, value = line.partition(" ")
    if option.startswith("-") and not option.startswith("--") and len(option) > 2:
        return option[:2], "", option[2:].strip()  # `-rfile.txt`
    return option, sep, value.strip()


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or "/" in spec
        or os.sep in spec
        or spec.endswith(_ARCHIVE_SUFFIXES)
    )


def _absolute_local_path(line: str, base: Path) -> str:
    """A local path in a requirements file is relative to that file; make it absolute."""
    spec, sep, marker = line.partition(";")
    spec = spec.strip()
    if "://" in spec or not _looks_like_path(spec):
        return line
    candidate = (base / spec).expanduser()
    if not candidate.exists():
        return line
    return str(candidate.resolve()) + (f" ;{marker}" if sep else "")


# --- building ---------------------------------------------------------------------------------


def build_bundle(
    repo_dir: str | os.PathLike[str],
    *,
    install_deps: bool,
    python: str = sys.executable,
    out: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_INSTALL_TIMEOUT_SECONDS,
) -> Path:
    """Write the bundle of `repo_dir` to `out` (default: a new temporary folder) and return it.

    With `install_deps`, the repo's declared dependencies that the runtime lacks are installed
    into `_deps/` with `python -m pip` (this needs the package index, or local paths).
    """
    root = Path(os.fspath(repo_dir)).resolve()
    if not root.is_dir():
        raise BundleError(f"repository folder {root} not found")
    if (root / DEPS_DIR).exists():
        raise BundleError(
            f"the repository has a top-level {DEPS_DIR!r} entry, a name the bundle reserves for "
            "installed dependencies: rename it"
        )
    archive = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="bundle-")) / (
        "bundle.tar.gz")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-deps-") as scratch:
        deps: Path | None = None
        if install_deps:
            requirements = declared_requirements(root)
            if requirements:
                deps = install_requirements(requirements, Path(scratch), cwd=root, python=python,
                                            timeout=timeout)
        entries = list(_tree_entries(root, ""))
        if deps is not None:
            entries.extend(_tree_entries(deps, DEPS_DIR + "/"))
        _write_archive(archive, entries)
    return archive


def install_requirements(
    requirements: Iterable[str],
    scratch: Path,
    *,
    cwd: Path,
    python: str = sys.executable,
    timeout: float = DEFAULT_INSTALL_TIMEOUT_SECONDS,
) -> Path | None:
    """Install what the runtime lacks into `scratch/deps` (a site-packages folder); None when
    nothing needed installing."""
    runtime = runtime_distributions(python)
    constraints = scratch / "runtime-constraints.txt"
    constraints.write_text(
        "".join(f"{name}=={version}\n" for name, version in sorted(runtime.items())),
        encoding="utf-8",
    )
    requirements_file = scratch / "requirements.txt"
    requirements_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    prefix = scratch / "prefix"
    argv = [
        python, "-m", "pip", "install",
        "--prefix", str(prefix),
        "--no-compile", "--no-input", "--disable-pip-version-check",
        "--no-warn-script-location", "--no-warn-conflicts", "--progress-bar", "off",
        "--constraint", str(constraints),
        "--requirement", str(requirements_file),
    ]
    log.info("installing the repo's dependencies: %s", ", ".join(requirements))
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise BundleError(
            f"installing the repo's dependencies took more than {timeout:.0f} s: check that the "
            "package index is reachable from the cluster"
        ) from None
    if done.returncode != 0:
        failure = _pip_failure(done.stdout + "\n" + done.stderr)
        raise BundleError(
            f"installing the repo's dependencies failed: {failure}. Fix the dependencies in "
            "pyproject.toml or requirements.txt; packages the runtime already has are pinned to "
            "its versions"
        )
    deps = scratch / "deps"
    deps.mkdir()
    for site_dir in sorted(_site_dirs(prefix)):
        for item in sorted(site_dir.iterdir()):
            if not (deps / item.name).exists():
                shutil.move(str(item), deps / item.name)
    _remove_excluded(deps)
    if not any(deps.iterdir()):
        return None
    return deps


def runtime_distributions(python: str = sys.executable) -> dict[str, str]:
    """Name -> version of every distribution the runtime interpreter `python` can import."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        import importlib.metadata

        found: dict[str, str] = {}
        for dist in importlib.metadata.distributions():
            name = dist.metadata["Name"]
            if name and dist.version:
                found.setdefault(name, dist.version)
        return found
    done = subprocess.run([python, "-c", _RUNTIME_DISTRIBUTIONS_SCRIPT], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BundleError(f"cannot list the packages of {python}: {done.stderr.strip()[-300:]}")
    listed: dict[str, str] = json.loads(done.stdout)
    return listed


def _pip_failure(output: str) -> str:
    """The gist of pip's error: its ERROR lines and, for a conflict, what caused it."""
    lines = [line.strip() for line in output.strip().splitlines()]
    causes: list[str] = []
    if "The conflict is caused by:" in lines:
        for line in lines[lines.index("The conflict is caused by:") + 1:]:
            if not line:
                break
            causes.append(line.replace("The user requested (constraint)", "the runtime provides"))
    errors = [line for line in lines if line.startswith("ERROR")]
    chosen = errors[:1] if causes else (errors or [line for line in lines if line])[-4:]
    text = " / ".join(chosen) or "pip gave no output"
    text = re.sub(r"-r \S+requirements\.txt \(line \d+\)", "a requirement", text)
    if causes:
        text += f" (caused by: {'; '.join(causes)})"
    return text if len(text) <= 1200 else text[:1197] + "..."


def _site_dirs(prefix: Path) -> Iterator[Path]:
    if not prefix.is_dir():
        return
    for path in prefix.rglob("*"):
        if path.is_dir() and path.name in ("site-packages", "dist-packages"):
            yield path


def _remove_excluded(deps: Path) -> None:
    """Remove every installed distribution of EXCLUDED_DISTRIBUTIONS (pulled in indirectly)."""
    for info in sorted(deps.glob("*.dist-info")):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        if normalize_name(name) not in EXCLUDED_DISTRIBUTIONS:
            continue
        log.info("removing %s from the bundle's dependencies: the runtime provides it", name)
        record = info / "RECORD"
        if record.is_file():
            rows = csv.reader(io.StringIO(record.read_text(encoding="utf-8")))
            for row in rows:
                if not row:
                    continue
                target = (deps / row[0]).resolve()
                if target.is_relative_to(deps.resolve()) and target.is_file():
                    target.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for folder in sorted(deps.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _skipped(name: str) -> bool:
    return name in _SKIPPED_NAMES or name.endswith(_SKIPPED_SUFFIXES)


def _tree_entries(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(archive name, path) for every directory, file and symlink under `root`."""
    for current, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        base = Path(current)
        relative = base.relative_to(root).as_posix()
        folder = "" if relative == "." else relative + "/"
        for name in dirnames:
            path = base / name
            if path.is_symlink():
                _check_link(root, path)
            yield prefix + folder + name, path
        for name in sorted(filenames):
            if not _skipped(name):
                path = base / name
                if path.is_symlink():
                    _check_link(root, path)
                yield prefix + folder + name, path


def _check_link(root: Path, link: Path) -> None:
    target = os.readlink(link)
    if os.path.isabs(target) or not (link.parent / target).resolve().is_relative_to(
        root.resolve()
    ):
        raise BundleError(
            f"{link.relative_to(root)} is a symlink to {target!r}, outside the repository: "
            "bundles only keep links that stay inside the repo"
        )


def _write_archive(archive: Path, entries: list[tuple[str, Path]]) -> None:
    partial = archive.with_name(archive.name + ".partial")
    with open(partial, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6
    ) as compressed, tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in sorted(entries, key=lambda entry: entry[0]):
            info = _normalised_member(name, path)
            if info.isfile():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)
    os.replace(partial, archive)


def _normalised_member(name: str, path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if path.is_symlink():
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
        return info
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        return info
    stat = path.stat()
    info.size = stat.st_size
    info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
    return info


# --- unpacking and using ------------------------------------------------------------------------


def unpack_bundle(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Unpack `archive` into `dest` (absent or empty) after checking every member is safe."""
    target = Path(os.fspath(dest))
    if target.exists() and any(target.iterdir()):
        raise BundleError(f"cannot unpack the bundle into {target}: the folder is not empty")
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(os.fspath(archive), mode="r:*") as tar:
            members = tar.getmembers()
            _check_members(members)
            tar.extractall(target, members=members, filter="data")
    except tarfile.TarError as exc:
        raise BundleError(f"the bundle {archive} is not a readable tar.gz: {exc}") from None
    except (OSError, EOFError) as exc:
        raise BundleError(f"cannot unpack the bundle {archive}: {exc}") from None
    return target.resolve()


def _check_members(members: list[tarfile.TarInfo]) -> None:
    links: set[str] = set()
    for member in members:
        name = member.name
        pure = PurePosixPath(name)
        if name.startswith(("/", "\\")) or pure.is_absolute() or re.match(r"^[A-Za-z]:", name):
            raise BundleError(f"unsafe bundle: member {name!r} has an absolute path")
        if ".." in pure.parts or "\\" in name:
            raise BundleError(f"unsafe bundle: member {name!r} climbs out of the folder")
        for depth in range(1, len(pure.parts)):
            if str(PurePosixPath(*pure.parts[:depth])) in links:
                raise BundleError(f"unsafe bundle: member {name!r} lies below a symlink")
        if member.issym():
            link = PurePosixPath(member.linkname)
            resolved = PurePosixPath(os.path.normpath(str(pure.parent / link)))
            if link.is_absolute() or resolved.parts[:1] == ("..",) or str(resolved) == "..":
                raise BundleError(
                    f"unsafe bundle: symlink {name!r} points outside the bundle "
                    f"({member.linkname!r})"
                )
            links.add(str(pure))
        elif not (member.isfile() or member.isdir()):
            raise BundleError(f"unsafe bundle: member {name!r} is not a file, folder or symlink")


def bundle_deps_dir(dest: str | os.PathLike[str]) -> Path | None:
    """The unpacked bundle's `_deps` folder, or None when it installed nothing."""
    deps = Path(os.fspath(dest)) / DEPS_DIR
    return deps.resolve() if deps.is_dir() else None


def bundle_env(
    dest: str | os.PathLike[str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment additions for a process that runs the unpacked bundle's code: `PYTHONPATH`
    extended with `_deps` (after any entries already there); empty when there is no `_deps`."""
    deps = bundle_deps_dir(dest)
    if deps is None:
        return {}
    existing = (os.environ if base is None else base).get("PYTHONPATH", "")
    parts = [p for p in existing.split(os.pathsep) if p]
    if str(deps) not in parts:
        parts.append(str(deps))
    return {"PYTHONPATH": os.pathsep.join(parts)}


def activate_bundle(dest: str | os.PathLike[str]) -> Path | None:
    """Make the unpacked bundle's `_deps` importable in this process (after the runtime's own
    packages, with its `.pth` files processed); returns the folder, or None."""
    deps = bundle_deps_dir(dest)
    if deps is not None and str(deps) not in sys.path:
        site.addsitedir(str(deps))
    return deps
