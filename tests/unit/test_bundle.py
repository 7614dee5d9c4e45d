"""Bundles: the dependency hash, requirement filtering, real pip installs from local wheels,
deterministic archives and safe unpacking."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from rollout_operator.runtime.bundle import (
    DEPS_DIR,
    NO_DEPS,
    BundleError,
    activate_bundle,
    build_bundle,
    bundle_env,
    declared_requirements,
    deps_hash,
    requirement_name,
    unpack_bundle,
)


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
               module: str | None = None, body: str = "VALUE = 42\n") -> Path:
    """A minimal pure-Python wheel, written by hand so that no build backend is needed."""
    module = module or name.replace("-", "_")
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}/__init__.py": body.encode(),
        f"{dist}.dist-info/METADATA": metadata.encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        archive.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def make_repo(root: Path) -> Path:
    (root / "mcp").mkdir(parents=True)
    (root / "mcp" / "main.py").write_text("from server import mcp\n")
    (root / "reward_fn").mkdir()
    (root / "reward_fn" / "score.py").write_text("def f():\n    return 1.0\n")
    (root / "test_data.jsonl").write_text('{"user_prompt": "hi", "ground_truth": "1"}\n')
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "mcp" / "__pycache__").mkdir()
    (root / "mcp" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0junk")
    return root


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


# --- the dependency declaration -------------------------------------------------------------------


def test_deps_hash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "a")
    assert deps_hash(repo) == NO_DEPS
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["rich"]\n')
    first = deps_hash(repo)
    assert first != NO_DEPS and len(first) == 16 and int(first, 16) >= 0
    (repo / "mcp" / "main.py").write_text("changed = True\n")  # code does not count
    assert deps_hash(repo) == first
    (repo / "requirements-dev.txt").write_text("pytest\n")
    second = deps_hash(repo)
    assert second != first
    (repo / "uv.lock").write_text("version = 1\n")
    assert deps_hash(repo) not in (first, second)
    copy = tmp_path / "b"
    shutil.copytree(repo, copy)
    assert deps_hash(copy) == deps_hash(repo)  # contents, not location


@pytest.mark.parametrize(
    ("line", "name"),
    [("requests>=2", "requests"), ("Osmosis_AI[full]==0.2; python_version>'3'", "osmosis-ai"),
     ("mcp", "mcp"), ("fastmcp @ https://x/y.whl", "fastmcp"), ("./vendor/pkg", None),
     ("pkg-1.0-py3-none-any.whl", None), ("--no-index", None),
     ("zope.interface", "zope-interface")],
)
def test_requirement_name(line: str, name: str | None) -> None:
    assert requirement_name(line) == name


def test_declared_requirements_filter_and_inline(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "vendor" / "pkg").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["fastmcp>=2.12", "osmosis-ai", "rich>=13"]\n'
    )
    (repo / "requirements.txt").write_text(
        "# comment\n"
        "MCP[cli]>=1.0  # the SDK\n"
        "numpy \\\n  >=1.20\n"
        "-r more.txt\n"
        "-e ./vendor/pkg\n"
        "--no-index\n"
    )
    (repo / "more.txt").write_text("Osmosis.AI\nrich>=13\n-r requirements.txt\n")
    lines = declared_requirements(repo)
    assert lines == [
        "rich>=13",
        "numpy >=1.20",
        str((repo / "vendor" / "pkg").resolve()),
        "--no-index",
    ]


def test_invalid_pyproject_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(BundleError, match=r"pyproject\.toml is not valid TOML"):
        declared_requirements(tmp_path)


# --- archives without dependencies ----------------------------------------------------------------


def test_bundle_holds_the_tree_without_git_or_bytecode(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    archive = build_bundle(repo, install_deps=True, out=tmp_path / "b.tar.gz")
    found = members(archive)
    assert set(found) == {"mcp", "mcp/main.py", "reward_fn", "reward_fn/score.py",
                          "test_data.jsonl", "run.sh"}
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in found.values())
    assert found["run.sh"].mode == 0o755 and found["mcp/main.py"].mode == 0o644
    dest = unpack_bundle(archive, tmp_path / "unpacked")
    assert (dest / "mcp" / "main.py").read_text() == "from server import mcp\n"
    assert os.access(dest / "run.sh", os.X_OK)
    assert bundle_env(dest) == {}
    assert activate_bundle(dest) is None


def test_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = build_bundle(repo, install_deps=False, out=tmp_path / "1.tar.gz").read_bytes()
    os.utime(repo / "mcp" / "main.py", (1_000_000, 1_000_000))
    os.chown(repo / "test_data.jsonl", 1234, 1234)
    (repo / "reward_fn" / "score.py").chmod(0o600)
    copy = tmp_path / "elsewhere" / "repo"
    shutil.copytree(repo, copy)
    second = build_bundle(repo, install_deps=False, out=tmp_path / "2.tar.gz").read_bytes()
    third = build_bundle(copy, install_deps=False, out=tmp_path / "3.tar.gz").read_bytes()
    assert first == second == third
    (repo / "reward_fn" / "score.py").write_text("def f():\n    return 0.5\n")
    changed = build_bundle(repo, install_deps=False, out=tmp_path / "4.tar.gz").read_bytes()
    assert changed != first


def test_symlinks_inside_are_kept_and_outside_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "data.jsonl").symlink_to("test_data.jsonl")
    archive = build_bundle(repo, install_deps=False, out=tmp_path / "b.tar.gz")
    dest = unpack_bundle(archive, tmp_path / "u")
    assert (dest / "data.jsonl").is_symlink()
    assert (dest / "data.jsonl").read_text() == (repo / "test_data.jsonl").read_text()
    (repo / "secrets").symlink_to("/etc")
    with pytest.raises(BundleError, match="outside the repository"):
        build_bundle(repo, install_deps=False, out=tmp_path / "c.tar.gz")


def test_a_repo_folder_named_deps_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / DEPS_DIR).mkdir()
    with pytest.raises(BundleError, match="reserves"):
        build_bundle(repo, install_deps=False, out=tmp_path / "b.tar.gz")


# --- dependencies from local wheels ---------------------------------------------------------------


@pytest.fixture(scope="module")
def deps_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo whose dependencies are local wheels: `tinypkg` (needs click, which the runtime has)
    and `helperpkg` (needs osmosis-ai, which a local wheel provides and the bundle must drop)."""
    root = tmp_path_factory.mktemp("deps")
    repo = make_repo(root / "repo")
    wheels = repo / "wheels"
    make_wheel(wheels, "tinypkg", "0.1", requires=("click",))
    make_wheel(wheels, "helperpkg", "1.0", requires=("osmosis-ai",))
    make_wheel(wheels, "osmosis-ai", "9.9", module="osmosis_ai", body="FAKE = True\n")
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0"\ndependencies = ["fastmcp>=99", "osmosis-ai"]\n'
    )
    (repo / "requirements.txt").write_text(
        "--no-index\n--find-links ./wheels\ntinypkg==0.1\nhelperpkg\n"
    )
    return repo


@pytest.fixture(scope="module")
def deps_archive(deps_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "bundle.tar.gz"
    return build_bundle(deps_repo, install_deps=True, out=out)


def test_installs_what_the_runtime_lacks_and_nothing_else(deps_archive: Path) -> None:
    names = set(members(deps_archive))
    assert "_deps/tinypkg/__init__.py" in names
    assert "_deps/helperpkg/__init__.py" in names
    assert any(n.startswith("_deps/tinypkg-0.1.dist-info/") for n in names)
    # click is already in the runtime; osmosis-ai was pulled in by helperpkg and removed again
    assert not any(n.startswith(("_deps/click", "_deps/osmosis", "_deps/fastmcp")) for n in names)
    assert not any(n.endswith(".pyc") for n in names)


def test_dependency_builds_are_deterministic(deps_repo: Path, deps_archive: Path,
                                             tmp_path: Path) -> None:
    again = build_bundle(deps_repo, install_deps=True, out=tmp_path / "again.tar.gz")
    assert again.read_bytes() == deps_archive.read_bytes()


def test_unpacked_deps_are_importable(deps_archive: Path, tmp_path: Path) -> None:
    dest = unpack_bundle(deps_archive, tmp_path / "u")
    env = {**os.environ, **bundle_env(dest, base={"PYTHONPATH": "/somewhere"})}
    assert env["PYTHONPATH"] == os.pathsep.join(["/somewhere", str(dest / DEPS_DIR)])
    done = subprocess.run(
        [sys.executable, "-c", "import tinypkg, helperpkg; print(tinypkg.VALUE)"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_without_install_deps_nothing_is_installed(deps_repo: Path, tmp_path: Path) -> None:
    archive = build_bundle(deps_repo, install_deps=False, out=tmp_path / "b.tar.gz")
    assert not any(name.startswith(DEPS_DIR) for name in members(archive))


def test_a_conflict_with_the_runtime_is_a_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    make_wheel(repo / "wheels", "needsoldclick", "1.0", requires=("click<1",))
    (repo / "requirements.txt").write_text("--no-index\n--find-links ./wheels\nneedsoldclick\n")
    with pytest.raises(BundleError) as error:
        build_bundle(repo, install_deps=True, out=tmp_path / "b.tar.gz")
    message = str(error.value)
    assert "installing the repo's dependencies failed" in message
    assert "click" in message
    assert not (tmp_path / "b.tar.gz").exists()


# --- unsafe archives ----------------------------------------------------------------------------


def tar_with(tmp_path: Path, *infos: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info, data in infos:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("infos", "message"),
    [
        ([(entry("/etc/evil"), b"x")], "absolute path"),
        ([(entry("a/../../evil"), b"x")], "climbs out"),
        ([(entry("link", tarfile.SYMTYPE, "../outside"), None)], "points outside"),
        ([(entry("link", tarfile.SYMTYPE, "/etc"), None)], "points outside"),
        ([(entry("link", tarfile.SYMTYPE, "sub"), None), (entry("link/x"), b"x")], "below a sym"),
        ([(entry("hard", tarfile.LNKTYPE, "x"), None)], "not a file, folder or symlink"),
        ([(entry("dev", tarfile.CHRTYPE), None)], "not a file, folder or symlink"),
    ],
    ids=["absolute", "dotdot", "symlink-up", "symlink-abs", "below-symlink", "hardlink", "device"],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, infos: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    archive = tar_with(tmp_path, *infos)
    with pytest.raises(BundleError, match=message):
        unpack_bundle(archive, tmp_path / "dest")
    assert not any((tmp_path / "dest").iterdir())
    assert not (tmp_path / "evil").exists()


def test_unpack_needs_an_empty_folder_and_a_real_archive(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "x").write_text("x")
    archive = build_bundle(make_repo(tmp_path / "repo"), install_deps=False,
                           out=tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match="not empty"):
        unpack_bundle(archive, tmp_path / "dest")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(BundleError, match=r"not a readable tar\.gz"):
        unpack_bundle(tmp_path / "junk.tar.gz", tmp_path / "fresh")
