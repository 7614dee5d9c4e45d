"""The local backend: `rolloutctl run` as a child process, on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rollout_operator.client.run import Run, RunOutcome
from rollout_operator.runtime.run_layout import run_prefix


class LocalBackend:
    """Runs each submitted manifest as `rolloutctl run -f ... --json`, in `cwd` (relative
    paths of the manifest, its output folder and dataset are taken from there), with `environ`
    (the model's API key in `ROLLOUT_MODEL_API_KEY` or the provider's own variable)."""

    def __init__(self, *, cwd: str | os.PathLike[str] | None = None, sandbox: bool = True,
                 environ: Mapping[str, str] | None = None, output: str | None = None) -> None:
        self.cwd = Path(cwd or Path.cwd()).resolve()
        self.sandbox = sandbox
        self.environ = dict(environ if environ is not None else os.environ)
        self.output = output
        self._processes: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}

    def submit(self, manifest: str | os.PathLike[str] | Mapping[str, Any], *,
               name: str | None = None) -> Run:
        from rollout_operator.local.run_file import load_run_file

        path = self._manifest_file(manifest)
        local = load_run_file(path, name=name, output=self.output, cwd=self.cwd)
        prefix = run_prefix(local.output_url, local.namespace, local.name, local.uid)
        logs = Path(tempfile.mkdtemp(prefix=f"rolloutctl-{local.name}-"))
        argv = [sys.executable, "-m", "rollout_operator.cli.main", "run", "-f", str(path),
                "--json", "--name", local.name]
        if self.output is not None:
            argv += ["--output", self.output]
        if not self.sandbox:
            argv.append("--no-sandbox")
        stdout, stderr = logs / "result.json", logs / "run.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(argv, cwd=self.cwd, env=self.environ, stdout=out,
                                       stderr=err, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        run = Run(name=local.name, namespace=local.namespace, uid=local.uid, run_prefix=prefix,
                  backend=self, endpoint=local.spec.output.endpoint, environ=self.environ)
        self._processes[prefix] = (process, stdout, stderr)
        return run

    async def finished(self, run: Run) -> bool:
        return self._process(run)[0].poll() is not None

    def wait(self, run: Run, timeout_s: float | None = None) -> RunOutcome:
        process, stdout, stderr = self._process(run)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{run} is still running after {timeout_s:g} s") from None
        try:
            details = json.loads(stdout.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log = stderr.read_text(encoding="utf-8", errors="replace")[-2000:]
            details = {"state": "Failed", "exitCode": process.returncode, "error": log}
        return RunOutcome(str(details.get("state") or "Failed"), details)

    def stop(self, run: Run) -> None:
        """Ask the run to stop as Ctrl-C does: finished rollouts are committed, and submitting
        the same manifest again resumes it."""
        import signal

        process = self._process(run)[0]
        if process.poll() is None:
            process.send_signal(signal.SIGINT)

    def _process(self, run: Run) -> tuple[subprocess.Popen[bytes], Path, Path]:
        try:
            return self._processes[run.run_prefix]
        except KeyError:
            raise ValueError(f"{run} was not submitted through this backend") from None

    def _manifest_file(self, manifest: str | os.PathLike[str] | Mapping[str, Any]) -> Path:
        """A manifest file; a mapping is written to one, its local repo path made absolute
        against `cwd` first (a file's is taken from the file's folder)."""
        if not isinstance(manifest, Mapping):
            return (self.cwd / Path(manifest)).resolve()
        from rollout_operator.api.validation import repo_url_kind

        document = json.loads(json.dumps(dict(manifest)))
        repo = (document.get("spec") or {}).get("repo") or {}
        url = repo.get("url")
        if isinstance(url, str) and repo_url_kind(url) == "local":
            repo["url"] = str((self.cwd / Path(url).expanduser()).resolve())
        folder = Path(tempfile.mkdtemp(prefix="rolloutctl-manifest-"))
        path = folder / "rolloutrun.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path
