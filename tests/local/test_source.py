"""Pinning a local run's repo: a folder as it is (uncommitted edits included), its commit or
content hash, and a resumed run that finds its folder changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollout_operator.local.source import SourceChanged, content_hash, prepare_source
from tests.unit.test_git_sync import git


def _tree(root: Path) -> None:
    (root / "mcp").mkdir(parents=True)
    (root / "mcp" / "main.py").write_text("print('tools')\n")
    (root / "data.jsonl").write_text("{}\n")
    for junk in (".venv/lib/x.py", "mcp/__pycache__/main.cpython-311.pyc", "node_modules/a.js"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("junk")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _git_repo(root: Path) -> str:
    _tree(root)
    (root / ".gitignore").write_text("ignored.bin\n.venv/\nnode_modules/\n__pycache__/\n")
    (root / "ignored.bin").write_text("big")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one")
    return git(root, "rev-parse", "HEAD")


def test_a_plain_folder_is_copied_as_it_is_with_a_content_hash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    output = src / "rollout-output"
    (output / "x.json").parent.mkdir()
    (output / "x.json").write_text("{}")
    source = prepare_source(str(src), "main", "", tmp_path / "a", exclude=[output])
    assert source.kind == "folder" and source.checkout is not None
    assert _files(source.checkout.path) == {"mcp/main.py", "data.jsonl"}
    assert source.commit == content_hash(source.checkout.path)
    assert "not a git repo" in source.description and source.commit in source.description

    again = prepare_source(str(src), "main", "", tmp_path / "b", exclude=[output])
    assert again.commit == source.commit
    (src / "mcp" / "main.py").chmod(0o755)
    executable = prepare_source(str(src), "main", "", tmp_path / "c", exclude=[output])
    assert executable.commit != source.commit
    (src / "data.jsonl").write_text("{\"x\": 1}\n")
    with pytest.raises(SourceChanged, match="changed since this run started"):
        prepare_source(str(src), "main", "", tmp_path / "d", pinned_commit=executable.commit)


def test_a_subfolder_keeps_its_place_in_the_checkout(tmp_path: Path) -> None:
    _tree(tmp_path / "src" / "sub")
    source = prepare_source(str(tmp_path / "src"), "main", "sub", tmp_path / "a")
    assert source.checkout is not None
    assert source.checkout.folder("sub") == source.checkout.path / "sub"
    assert _files(source.checkout.folder("sub")) == {"mcp/main.py", "data.jsonl"}


def test_a_clean_git_folder_uses_its_head(tmp_path: Path) -> None:
    src = tmp_path / "src"
    head = _git_repo(src)
    source = prepare_source(str(src), "main", "", tmp_path / "a")
    assert source.kind == "git-head" and source.commit == head
    assert source.checkout is not None
    assert _files(source.checkout.path) == {".gitignore", "mcp/main.py", "data.jsonl"}

    # Another commit that leaves the folder's files as they were keeps the run's commit.
    (tmp_path / "src" / "data.jsonl").write_text("{}\n")
    git(src, "commit", "-q", "--allow-empty", "-m", "two")
    assert prepare_source(str(src), "main", "", tmp_path / "b",
                          pinned_commit=head).commit == head


def test_uncommitted_edits_are_used_and_hashed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    head = _git_repo(src)
    (src / "mcp" / "main.py").write_text("print('edited')\n")
    (src / "new.py").write_text("x = 1\n")
    source = prepare_source(str(src), "main", "", tmp_path / "a")
    assert source.kind == "folder" and source.commit != head
    assert "uncommitted changes" in source.description
    assert source.checkout is not None
    copied = source.checkout.path
    assert (copied / "mcp" / "main.py").read_text() == "print('edited')\n"
    assert _files(copied) == {".gitignore", "mcp/main.py", "data.jsonl", "new.py"}
    with pytest.raises(SourceChanged):
        prepare_source(str(src), "main", "", tmp_path / "b", pinned_commit=head)


def test_a_git_url_is_cloned_at_its_revision_or_the_pinned_commit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    head = _git_repo(src)
    (src / "uncommitted.txt").write_text("not in any commit")
    unpinned = prepare_source(src.as_uri(), "main", "", tmp_path / "a")
    assert unpinned.kind == "git" and unpinned.commit == head
    assert f"main of {src.as_uri()}" in unpinned.description
    assert not (unpinned.checkout.path / "uncommitted.txt").exists()
    (src / "data.jsonl").write_text("[]\n")
    git(src, "commit", "-qam", "two")
    assert prepare_source(src.as_uri(), "main", "", tmp_path / "c").commit != head
    pinned = prepare_source(src.as_uri(), "main", "", tmp_path / "b", pinned_commit=head)
    assert pinned.commit == head
    assert (pinned.checkout.path / "data.jsonl").read_text() == "{}\n"
    assert os.path.isdir(pinned.checkout.path / "mcp")
