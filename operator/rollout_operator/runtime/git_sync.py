"""Check out a git repository at a branch, tag or commit and pin the commit it resolved to.

The git command-line client does the work (no shell, one subprocess per step). A fetch is shallow
whenever the server can answer one: a branch, a tag or a full commit SHA is fetched on its own at
`depth`; a short SHA cannot be asked for by name, so it falls back to fetching every branch and
tag in full and resolving the prefix locally.

Credentials never reach an argument list, a URL or a log line:
- an HTTPS token is written to a file in a private (0700) temporary folder and handed to git by a
  credential helper script in the same folder; git's own environment names only the script;
- an SSH private key is written 0600 to that folder and used through `GIT_SSH_COMMAND` with
  `-i KEY`, `IdentitiesOnly=yes`, `BatchMode=yes` and `StrictHostKeyChecking=accept-new` (the
  known-hosts file lives in the temporary folder too, so a read-only home folder is fine).
The folder is removed when the checkout ends. Every error message is scrubbed of the secret and
of any `user:password@` part of the URL before it is raised.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rollout_operator.runtime.errors import LocalExecutionError

log = logging.getLogger(__name__)

TOKEN_ENV = "ROLLOUT_GIT_TOKEN"
SSH_KEY_ENV = "ROLLOUT_GIT_SSH_KEY"
USERNAME_ENV = "ROLLOUT_GIT_USERNAME"
DEFAULT_TOKEN_USERNAME = "x-access-token"
DEFAULT_TIMEOUT_SECONDS = 600.0

GitErrorKind = Literal[
    "unknown_revision", "auth_failed", "not_a_repository", "network", "bad_path", "git_failed"
]

_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHORT_SHA = re.compile(r"[0-9a-f]{4,63}")
# git's scp-like syntax: `[user@]host:path`, with no slash before the colon.
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:(?!//)")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")

_AUTH_SIGNS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied (publickey",
    "permission denied, please try again",
    "invalid username or password",
    "http basic: access denied",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "host key verification failed",
)
_MISSING_REPO_SIGNS = (
    "does not appear to be a git repository",
    "repository not found",
    "' not found",
    "the requested url returned error: 404",
    "not a git repository",
)
_NETWORK_SIGNS = (
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "network is unreachable",
    "could not resolve hostname",
    "ssl certificate problem",
    "connection reset",
)
_MISSING_REF_SIGNS = (
    "couldn't find remote ref",
    "not our ref",
    "unadvertised object",
    "no such remote ref",
    "is not a commit",
)


class GitSyncError(LocalExecutionError):
    """A checkout failed; `kind` says why, the message says what to fix (never a secret)."""

    def __init__(self, message: str, *, kind: GitErrorKind) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class GitCredentials:
    """A token for HTTPS remotes or a private key for SSH remotes; `repr` never shows either."""

    token: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    username: str = DEFAULT_TOKEN_USERNAME

    def __post_init__(self) -> None:
        if self.token is not None and ("\n" in self.token.strip() or not self.token.strip()):
            raise GitSyncError(
                "the git token must be one non-empty line: check the Secret's `token` key",
                kind="auth_failed",
            )
        if "\n" in self.username or not self.username:
            raise GitSyncError("the git username must be one non-empty line", kind="auth_failed")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GitCredentials | None:
        """Credentials from `ROLLOUT_GIT_TOKEN` / `ROLLOUT_GIT_SSH_KEY` (set by the sync Job from
        the repo's credentials Secret), or None when neither is set."""
        source = os.environ if env is None else env
        token = source.get(TOKEN_ENV) or None
        key = source.get(SSH_KEY_ENV) or None
        if token is None and key is None:
            return None
        return cls(
            token=token.strip() if token else None,
            ssh_private_key=key,
            username=(source.get(USERNAME_ENV) or DEFAULT_TOKEN_USERNAME).strip(),
        )

    def secrets(self) -> list[str]:
        """The values that must never appear in output."""
        values = [self.token, self.ssh_private_key]
        return [v.strip() for v in values if v and v.strip()]


@dataclass(frozen=True, slots=True)
class SyncedRepo:
    """A checkout pinned to `commit` (the full SHA) in `path`."""

    commit: str
    path: Path

    def folder(self, subpath: str) -> Path:
        """The repo subfolder `subpath` ("" for the root), checked to exist inside the checkout."""
        return repo_subfolder(self.path, subpath)


def repo_subfolder(root: Path, subpath: str) -> Path:
    """`root/subpath`, refusing absolute paths, `..` and symlinks that lead out of `root`."""
    cleaned = subpath.strip().strip("/")
    if not cleaned or cleaned == ".":
        return root
    parts = Path(cleaned).parts
    if subpath.startswith("/") or ".." in parts or Path(cleaned).is_absolute():
        raise GitSyncError(
            f"spec.repo.path {subpath!r} must be a relative folder inside the repository "
            "(no leading '/', no '..')",
            kind="bad_path",
        )
    target = (root / cleaned).resolve()
    if not target.is_relative_to(root.resolve()):
        raise GitSyncError(
            f"spec.repo.path {subpath!r} leads outside the repository (through a symlink)",
            kind="bad_path",
        )
    if not target.is_dir():
        raise GitSyncError(
            f"spec.repo.path {subpath!r} is not a folder in the repository at this revision: "
            "check the path and the revision",
            kind="bad_path",
        )
    return target


def redact_url(url: str) -> str:
    """The URL without any `user[:password]@` part."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", url)


def sync_repo(
    url: str,
    revision: str | None,
    dest: str | os.PathLike[str],
    *,
    credentials: GitCredentials | None = None,
    depth: int | None = 1,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> SyncedRepo:
    """Check `url` out at `revision` into the empty or absent folder `dest`.

    `revision=None` is the remote's HEAD: its default branch, whatever it is called (`main`,
    `master`, ...). `depth=None` (or 0) fetches full history. Raises `GitSyncError` with a
    `kind` of `unknown_revision`, `auth_failed`, `not_a_repository`, `network` or `git_failed`.
    """
    revision = REMOTE_HEAD if revision is None else revision.strip()
    if not revision:
        raise GitSyncError("spec.repo.revision is empty: name a branch, tag or commit SHA",
                           kind="unknown_revision")
    if revision.startswith("-"):
        raise GitSyncError(f"spec.repo.revision {revision!r} must not start with '-'",
                           kind="unknown_revision")
    target = Path(os.fspath(dest))
    if target.exists() and any(target.iterdir()):
        raise GitSyncError(f"checkout folder {target} is not empty", kind="git_failed")
    if shutil.which("git") is None:
        raise GitSyncError("the git client is not installed in this image", kind="git_failed")
    remote = _remote_location(url)
    secrets = credentials.secrets() if credentials else []
    with _git_environment(credentials) as env:
        runner = _GitRunner(target, env, url=url, secrets=secrets, timeout=timeout)
        target.mkdir(parents=True, exist_ok=True)
        runner.run(["-c", "init.defaultBranch=checkout", "init", "--quiet"])
        runner.run(["remote", "add", "origin", remote])
        fetched = _fetch_revision(runner, revision, depth)
        commit = runner.run(["rev-parse", "--verify", "--quiet", f"{fetched}^{{commit}}"],
                            check_missing=revision).strip()
        runner.run(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit])
    log.info("checked out %s at %s (%s)", redact_url(url), describe_revision(revision), commit)
    return SyncedRepo(commit=commit, path=target.resolve())


REMOTE_HEAD = "HEAD"
"""What `git fetch origin HEAD` fetches: the remote's default branch."""


def describe_revision(revision: str | None) -> str:
    """`revision` as messages name it; the remote's HEAD is called its default branch."""
    if revision is None or revision == REMOTE_HEAD:
        return "the default branch (HEAD)"
    return revision


def _remote_location(url: str) -> str:
    """The remote as git should see it: local folders become absolute `file://` URLs."""
    text = url.strip()
    if not text:
        raise GitSyncError("spec.repo.url is empty", kind="not_a_repository")
    if text.startswith("-"):
        raise GitSyncError(f"spec.repo.url {redact_url(text)!r} must not start with '-'",
                           kind="not_a_repository")
    if "://" in text or _SCP_LIKE.match(text):
        return text
    return Path(text).expanduser().resolve().as_uri()


def _fetch_revision(runner: _GitRunner, revision: str, depth: int | None) -> str:
    """Fetch `revision`, shallow when the server allows; returns what names it locally."""
    shallow = [f"--depth={depth}"] if depth else []
    common = ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", *shallow, "origin"]
    lowered = revision.lower()
    try:
        runner.run([*common, lowered if _FULL_SHA.fullmatch(lowered) else revision])
    except GitSyncError as exc:
        if exc.kind != "unknown_revision":
            raise
        if not _SHORT_SHA.fullmatch(lowered):
            raise
        # A short SHA (or a full one the server will not hand out by name): fetch everything.
        runner.run(["fetch", "--quiet", "--no-recurse-submodules", "origin",
                    "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"])
        return lowered
    return "FETCH_HEAD"


@contextmanager
def _git_environment(credentials: GitCredentials | None) -> Iterator[dict[str, str]]:
    """The environment git runs with: never prompts, and finds credentials only through files
    in a private temporary folder that is removed afterwards."""
    env = {k: v for k, v in os.environ.items()
           if k not in (TOKEN_ENV, SSH_KEY_ENV, "GIT_ASKPASS", "SSH_ASKPASS")
           and not k.startswith("GIT_CONFIG")}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C")
    with tempfile.TemporaryDirectory(prefix="rollout-git-") as scratch:
        folder = Path(scratch)
        folder.chmod(0o700)
        config: list[tuple[str, str]] = []
        if credentials is not None and credentials.token:
            helper = _write_credential_helper(folder, credentials.username, credentials.token)
            # The empty value first clears helpers from the system or user config.
            config += [("credential.helper", ""), ("credential.helper", str(helper))]
        if credentials is not None and credentials.ssh_private_key:
            env["GIT_SSH_COMMAND"] = _ssh_command(folder, credentials.ssh_private_key)
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        yield env


def _private_file(path: Path, content: str, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    path.chmod(mode)


def _write_credential_helper(folder: Path, username: str, token: str) -> Path:
    token_file = folder / "token"
    _private_file(token_file, token.strip(), 0o600)
    helper = folder / "credential-helper"
    script = (
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 0\n'
        f"printf 'username=%s\\npassword=' {shlex.quote(username)}\n"
        f"cat {shlex.quote(str(token_file))}\n"
        "printf '\\n'\n"
    )
    _private_file(helper, script, 0o700)
    return helper


def _ssh_command(folder: Path, private_key: str) -> str:
    key_file = folder / "ssh-key"
    text = private_key.replace("\r\n", "\n")
    _private_file(key_file, text if text.endswith("\n") else text + "\n", 0o600)
    known_hosts = folder / "known_hosts"
    return shlex.join([
        "ssh", "-i", str(key_file),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", f"UserKnownHostsFile={known_hosts}",
    ])


class _GitRunner:
    """Runs git commands in the checkout and turns failures into `GitSyncError`s."""

    def __init__(self, cwd: Path, env: dict[str, str], *, url: str, secrets: Sequence[str],
                 timeout: float) -> None:
        self.cwd = cwd
        self.env = env
        self.url = url
        self.secrets = list(secrets)
        self.timeout = timeout

    def run(self, args: Sequence[str], *, check_missing: str | None = None) -> str:
        argv = ["git", *args]
        log.debug("running %s", shlex.join(self._scrub(a) for a in argv))
        try:
            done = subprocess.run(
                argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                timeout=self.timeout, stdin=subprocess.DEVNULL, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitSyncError(
                f"git {args[0]} did not finish within {self.timeout:.0f} s while reaching "
                f"{redact_url(self.url)}: check that the host is reachable from the cluster",
                kind="network",
            ) from exc
        if done.returncode == 0:
            return done.stdout
        if check_missing is not None:
            raise GitSyncError(self._missing_message(check_missing), kind="unknown_revision")
        raise self._error(args, done.stderr)

    def _missing_message(self, revision: str) -> str:
        if revision == REMOTE_HEAD:
            return (f"{redact_url(self.url)} has no default branch (HEAD) to check out: set "
                    "spec.repo.revision to an existing branch, tag or commit SHA")
        return (
            f"revision {revision!r} was not found in {redact_url(self.url)}: set "
            "spec.repo.revision to an existing branch, tag or commit SHA"
        )

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
            for line in secret.splitlines():
                if len(line.strip()) >= 8:
                    text = text.replace(line.strip(), "***")
        return redact_url(text)

    def _error(self, args: Sequence[str], stderr: str) -> GitSyncError:
        detail = self._scrub(_last_lines(stderr))
        lowered = stderr.lower()
        shown = redact_url(self.url)
        if any(sign in lowered for sign in _MISSING_REF_SIGNS):
            revision = args[-1] if args else "?"
            return GitSyncError(self._missing_message(revision), kind="unknown_revision")
        if any(sign in lowered for sign in _AUTH_SIGNS):
            return GitSyncError(
                f"authentication to {shown} failed ({detail}): check that the credentials "
                "Secret (key `token` for HTTPS, `ssh-privatekey` for SSH) grants read access",
                kind="auth_failed",
            )
        if any(sign in lowered for sign in _NETWORK_SIGNS):
            return GitSyncError(
                f"cannot reach {shown} ({detail}): check the URL's host and the network path "
                "from the cluster",
                kind="network",
            )
        if any(sign in lowered for sign in _MISSING_REPO_SIGNS):
            return GitSyncError(
                f"{shown} is not a git repository or cannot be read ({detail}): check "
                "spec.repo.url, and spec.repo.credentialsSecret for a private repository",
                kind="not_a_repository",
            )
        return GitSyncError(f"git {args[0] if args else ''} failed for {shown}: {detail}",
                            kind="git_failed")


def _last_lines(stderr: str, limit: int = 3) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(("hint:", "please make sure",
                                                                     "and the repository"))]
    return " / ".join(lines[-limit:]) or "no error output"
