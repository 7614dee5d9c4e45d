"""The bubblewrap command line a sandbox policy becomes, and resource quantities."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_operator.local.sandbox import Limits, SandboxPolicy, parse_quantity, sandbox_argv


@pytest.mark.parametrize(("value", "expected"), [
    ("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30), ("1G", 10**9), ("1500", 1500), (4096, 4096),
    ("0.5Gi", 2**29), ("100k", 100_000), ("1e9", 10**9), (" 1Gi ", 2**30),
])
def test_quantities(value: str | int, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "12 Mi", "1Xi", "-1Gi"])
def test_bad_quantities(value: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(value)


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_no_network_policy(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    visible = Path("/usr")
    argv = sandbox_argv(["python", "-c", "pass"],
                        SandboxPolicy(readable=(bundle, visible, tmp_path / "missing")),
                        home=str(home), bwrap="bwrap")
    assert argv[0] == "bwrap" and argv[-4:] == ["--", "python", "-c", "pass"]
    assert "--unshare-all" in argv and "--share-net" not in argv
    assert {"--die-with-parent", "--new-session", "--as-pid-1"} <= set(argv)
    assert _pairs(argv, "--cap-drop") == ["ALL"]
    assert argv[argv.index("--ro-bind") + 1: argv.index("--ro-bind") + 3] == ["/", "/"]
    tmpfs = _pairs(argv, "--tmpfs")
    assert "/tmp" in tmpfs and str(home.resolve()) in tmpfs
    # the bundle lives under /tmp (hidden by the private /tmp): mounted back read-only;
    # /usr is visible anyway; a missing path is skipped
    assert _pairs(argv, "--ro-bind").count(str(bundle)) == 1
    assert str(visible) not in _pairs(argv, "--ro-bind")
    assert str(tmp_path / "missing") not in argv
    assert str(home.resolve()) in _pairs(argv, "--remount-ro")
    assert _pairs(argv, "--chdir") == ["/tmp"]


def test_host_network_writable_folders_and_limits(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    policy = SandboxPolicy(network="host", writable=(out,),
                           limits=Limits(memory_bytes=2**30, cpu_seconds=60, open_files=256))
    argv = sandbox_argv(["true"], policy, home=None, bwrap="bwrap", info_fd=7)
    assert argv[:5] == ["prlimit", f"--as={2**30}", "--cpu=60", "--nofile=256", "--"]
    assert "--share-net" in argv
    assert _pairs(argv, "--bind") == [str(out)]
    assert _pairs(argv, "--info-fd") == ["7"]
    assert policy.limits.describe() == "memory 1024 MiB, CPU 60 s, 256 open files"
