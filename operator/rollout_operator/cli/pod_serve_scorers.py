"""`rolloutctl serve-scorers`: the scorer pod's server (user-code side).

A supervisor that owns the listening socket and keeps one scorer server process
(`runtime.scorer_server`) running on it: the repo's reward functions and rubrics behind the
scoring API. The scorer refs and the per-call timeout come from the run config when the pod has
one (`spec.scoring`, resolved at inspection), else from the flags. Exits with the server's code
when the scorers cannot be loaded at all (2: a repo problem), 0 when stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from rollout_operator.cli.pod_common import configure_pod_logging
from rollout_operator.cli.process_exit import exit_now
from rollout_operator.runtime.scorer_protocol import DEFAULT_SCORER_PORT

log = logging.getLogger(__name__)


def scorer_server_argv(repo: Path, scorers: list[str], timeout_s: float | None) -> list[str]:
    argv = [sys.executable, "-m", "rollout_operator.runtime.scorer_server", "--repo", str(repo)]
    for ref in scorers:
        argv += ["--scorer", ref]
    if timeout_s is not None:
        argv += ["--timeout", str(timeout_s)]
    return argv


@click.command("serve-scorers", hidden=True)
@click.option("--repo", "repo", type=click.Path(file_okay=False), default=None,
              help="The unpacked bundle (default: the run config's repo_dir).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_SCORER_PORT,
              show_default=True, help="Port to bind.")
@click.option("--listen-fd", type=int, default=None,
              help="Serve on this already listening socket instead of binding --port.")
@click.option("--scorer", "scorers", multiple=True,
              help="module:function to serve (repeatable; default: the run's, else all found).")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Timeout of one scorer call, in seconds (default: spec.scoring).")
def serve_scorers_command(repo: str | None, host: str, port: int, listen_fd: int | None,
                          scorers: tuple[str, ...], timeout_s: float | None) -> None:
    """Serve the repo's scorers over the scoring API, restarting the server when it dies."""
    from rollout_operator.runtime.run_config import DEFAULT_REPO_DIR, RUN_CONFIG_ENV, RunConfig
    from rollout_operator.runtime.supervisor import Supervisor

    configure_pod_logging()
    refs = list(scorers)
    root = repo
    if os.environ.get(RUN_CONFIG_ENV):
        config = RunConfig.from_env()
        refs = refs or config.scorer_refs
        timeout_s = timeout_s if timeout_s is not None else config.spec.scoring.timeout_seconds
        root = root or config.repo_dir
    folder = Path(root or DEFAULT_REPO_DIR).resolve()
    if listen_fd is None:
        listener = socket.create_server((host, port), backlog=1024, reuse_port=False)
        listen_fd = listener.fileno()
    os.set_inheritable(listen_fd, True)
    supervisor = Supervisor(scorer_server_argv(folder, refs, timeout_s), listen_fd,
                            name="scorer server")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.stop)
        return await supervisor.run()

    log.info("serving the scorers of %s", folder)
    exit_now(asyncio.run(main()))
