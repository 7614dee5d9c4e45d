"""Checkouts of real local git repositories: file:// remotes, and a smart-HTTP server (git's own
`http-backend` behind Basic auth) for the token path."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollout_operator.runtime.git_sync import (
    GitCredentials,
    GitSyncError,
    SyncedRepo,
    redact_url,
    repo_subfolder,
    sync_repo,
)

TOKEN = "ghp_FAKE0123456789abcdefSECRET"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


class Origin:
    """A repo with three commits on `main`, a lightweight tag, an annotated tag and a branch."""

    def __init__(self, root: Path) -> None:
        self.path = root
        root.mkdir()
        git(root, "init", "--quiet", "-b", "main")
        (root / "app").mkdir()
        self.commits: list[str] = []
        for n in range(3):
            (root / "app" / "version.txt").write_text(f"{n}\n")
            (root / "README").write_text(f"readme {n}\n")
            git(root, "add", "-A")
            git(root, "commit", "--quiet", "-m", f"commit {n}")
            self.commits.append(git(root, "rev-parse", "HEAD"))
            if n == 0:
                git(root, "tag", "v0")
            if n == 1:
                git(root, "tag", "-a", "v1", "-m", "release 1")
                git(root, "branch", "feature")

    @property
    def url(self) -> str:
        return self.path.as_uri()


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "origin")


def version_at(repo: SyncedRepo) -> str:
    return (repo.path / "app" / "version.txt").read_text().strip()


@pytest.mark.parametrize(
    ("revision", "index"),
    [("main", 2), ("feature", 1), ("v0", 0), ("v1", 1)],
    ids=["branch", "other-branch", "lightweight-tag", "annotated-tag"],
)
def test_named_revisions_resolve_to_their_commit(
    origin: Origin, tmp_path: Path, revision: str, index: int
) -> None:
    repo = sync_repo(origin.url, revision, tmp_path / "out", credentials=None)
    assert repo.commit == origin.commits[index]
    assert version_at(repo) == str(index)
    assert git(repo.path, "rev-parse", "HEAD") == origin.commits[index]
    # shallow: only the one commit came over
    assert git(repo.path, "rev-list", "--count", "HEAD") == "1"


def test_full_sha_of_an_older_commit(origin: Origin, tmp_path: Path) -> None:
    repo = sync_repo(origin.url, origin.commits[0], tmp_path / "out", credentials=None)
    assert repo.commit == origin.commits[0]
    assert version_at(repo) == "0"


def test_short_sha_falls_back_to_a_full_fetch(origin: Origin, tmp_path: Path) -> None:
    short = origin.commits[1][:9]
    repo = sync_repo(origin.url, short.upper(), tmp_path / "out", credentials=None)
    assert repo.commit == origin.commits[1]
    assert version_at(repo) == "1"


def test_full_history_when_depth_is_none(origin: Origin, tmp_path: Path) -> None:
    repo = sync_repo(origin.url, "main", tmp_path / "out", credentials=None, depth=None)
    assert git(repo.path, "rev-list", "--count", "HEAD") == "3"


def test_a_plain_local_path_works_like_file_url(origin: Origin, tmp_path: Path) -> None:
    repo = sync_repo(str(origin.path), "v0", tmp_path / "out", credentials=None)
    assert repo.commit == origin.commits[0]


def test_subfolder(origin: Origin, tmp_path: Path) -> None:
    repo = sync_repo(origin.url, "main", tmp_path / "out", credentials=None)
    assert repo.folder("app") == repo.path / "app"
    assert repo.folder("/app/".strip("/")) == repo.path / "app"
    assert repo.folder("") == repo.path
    with pytest.raises(GitSyncError, match="not a folder") as missing:
        repo.folder("nope")
    assert missing.value.kind == "bad_path"
    with pytest.raises(GitSyncError, match=r"no '\.\.'"):
        repo.folder("app/../..")
    with pytest.raises(GitSyncError, match="relative"):
        repo.folder("/etc")


def test_subfolder_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(GitSyncError, match="outside the repository"):
        repo_subfolder(root, "escape")


@pytest.mark.parametrize("revision", ["no-such-branch", "abcdef1", "0" * 40])
def test_unknown_revision(origin: Origin, tmp_path: Path, revision: str) -> None:
    with pytest.raises(GitSyncError) as error:
        sync_repo(origin.url, revision, tmp_path / "out", credentials=None)
    assert error.value.kind == "unknown_revision"
    message = str(error.value)
    assert repr(revision) in message
    assert "spec.repo.revision" in message


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitSyncError) as error:
        sync_repo((tmp_path / "plain").as_uri(), "main", tmp_path / "out", credentials=None)
    assert error.value.kind == "not_a_repository"
    assert "spec.repo.url" in str(error.value)


def test_dest_must_be_empty(origin: Origin, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(GitSyncError, match="not empty"):
        sync_repo(origin.url, "main", tmp_path / "out", credentials=None)


def test_revision_that_looks_like_an_option_is_refused(origin: Origin, tmp_path: Path) -> None:
    with pytest.raises(GitSyncError, match="must not start with '-'"):
        sync_repo(origin.url, "--upload-pack=touch /tmp/x", tmp_path / "out", credentials=None)


def test_redact_url() -> None:
    assert redact_url("https://user:pw@example.com/r.git") == "https://***@example.com/r.git"
    assert redact_url("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_credentials_repr_and_env() -> None:
    creds = GitCredentials.from_env({"ROLLOUT_GIT_TOKEN": f" {TOKEN}\n"})
    assert creds is not None and creds.token == TOKEN
    assert TOKEN not in repr(creds)
    assert GitCredentials.from_env({}) is None
    with pytest.raises(GitSyncError, match="one non-empty line"):
        GitCredentials(token="a\nb")


# --- secrets never leak --------------------------------------------------------------------------


@pytest.fixture
def recording_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that records its argv and environment, then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "git-calls.log"
    wrapper = bin_dir / "git"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'{{ echo "ARGV: $*"; env; echo; }} >> "{log}"\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ROLLOUT_GIT_TOKEN", TOKEN)
    return log


def test_token_is_in_no_argv_env_or_error(
    recording_git: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    creds = GitCredentials.from_env()
    assert creds is not None
    caplog.set_level("DEBUG", logger="rollout_operator.runtime.git_sync")
    missing = (tmp_path / "missing").as_uri()
    with pytest.raises(GitSyncError) as error:
        sync_repo(missing, "main", tmp_path / "out", credentials=creds)
    calls = recording_git.read_text()
    assert "ARGV: fetch" in calls  # the wrapper did see the real calls
    assert TOKEN not in calls
    assert base64.b64encode(TOKEN.encode()).decode()[:16] not in calls
    assert TOKEN not in str(error.value)
    assert TOKEN not in caplog.text


def test_ssh_key_never_leaks_and_its_file_is_removed(
    recording_git: Path, tmp_path: Path
) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nFAKEKEYMATERIALabcdefgh12345678\n-----END-----"
    creds = GitCredentials(ssh_private_key=key)
    # Port 9 on loopback: nothing listens, ssh fails to connect.
    with pytest.raises(GitSyncError) as error:
        sync_repo("ssh://git@127.0.0.1:9/repo.git", "main", tmp_path / "out",
                  credentials=creds, timeout=30)
    assert error.value.kind == "network"
    calls = recording_git.read_text()
    assert "FAKEKEYMATERIAL" not in calls
    assert "FAKEKEYMATERIAL" not in str(error.value)
    ssh_command = next(line for line in calls.splitlines() if line.startswith("GIT_SSH_COMMAND="))
    assert "StrictHostKeyChecking=accept-new" in ssh_command
    key_path = Path(ssh_command.split(" -i ", 1)[1].split(" ", 1)[0])
    assert key_path.name == "ssh-key"
    assert not key_path.exists()  # the private folder is gone


# --- HTTPS token against a real smart-HTTP server ------------------------------------------------


class _GitHttpHandler(BaseHTTPRequestHandler):
    project_root: Path
    expected_auth: str

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if self.headers.get("Authorization") != self.expected_auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "tester",
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                              check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def https_like_remote(origin: Origin) -> Iterator[str]:
    """The origin served over smart HTTP; only Basic `x-access-token:TOKEN` gets in."""
    credentials = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    handler = type("Handler", (_GitHttpHandler,), {
        "project_root": origin.path.parent, "expected_auth": f"Basic {credentials}",
    })
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{origin.path.name}"
    finally:
        server.shutdown()
        server.server_close()


def test_token_authenticates_over_http(
    https_like_remote: str, origin: Origin, tmp_path: Path, recording_git: Path
) -> None:
    repo = sync_repo(https_like_remote, "v1", tmp_path / "out",
                     credentials=GitCredentials(token=TOKEN))
    assert repo.commit == origin.commits[1]
    assert TOKEN not in recording_git.read_text()


def test_wrong_token_is_an_auth_failure(https_like_remote: str, tmp_path: Path) -> None:
    with pytest.raises(GitSyncError) as error:
        sync_repo(https_like_remote, "main", tmp_path / "out",
                  credentials=GitCredentials(token="wrong-token-value"))
    assert error.value.kind == "auth_failed"
    assert "credentials Secret" in str(error.value)
    assert "wrong-token-value" not in str(error.value)


def test_no_token_for_a_private_remote_is_an_auth_failure(
    https_like_remote: str, tmp_path: Path
) -> None:
    with pytest.raises(GitSyncError) as error:
        sync_repo(https_like_remote, "main", tmp_path / "out", credentials=None)
    assert error.value.kind == "auth_failed"


def test_no_revision_checks_out_the_remotes_default_branch_whatever_its_name(
        tmp_path: Path) -> None:
    """A bare remote whose default branch is `master` (no `main` at all): an unset revision
    (the spec's default) checks out master's head; `main` is not found."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "--quiet", "-b", "master")
    (work / "README").write_text("on master\n")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "first")
    head = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(bare))
    assert git(bare, "symbolic-ref", "HEAD") == "refs/heads/master"

    repo = sync_repo(bare.as_uri(), None, tmp_path / "out", credentials=None)
    assert repo.commit == head
    assert (repo.path / "README").read_text() == "on master\n"
    with pytest.raises(GitSyncError, match="revision 'main' was not found") as missing:
        sync_repo(bare.as_uri(), "main", tmp_path / "again", credentials=None)
    assert missing.value.kind == "unknown_revision"


def test_the_spec_default_revision_is_the_remote_head() -> None:
    from rollout_operator.api.spec import RepoSpec

    assert RepoSpec(url="https://example.com/org/repo.git").revision is None
