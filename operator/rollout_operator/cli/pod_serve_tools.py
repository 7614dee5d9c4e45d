"""`rolloutctl unpack-bundle` and `rolloutctl serve-tools`: the tool pod's two containers.

The init container downloads the run's bundle (it alone gets the storage credentials) and
unpacks it into the shared workspace; the server container then serves the bundle's
`mcp/main.py` over streamable HTTP at `/mcp` (with the lean engine unless `--engine fastmcp`),
with `GET /health` for the probes, importing the bundle's `_deps` after the runtime's own
packages.

A restarted pod finds the workspace already filled: a marker beside the destination
(`.<dest>.bundle`, holding the bundle URL) says the folder is ours, so it is replaced rather
than refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollout_operator.cli.pod_common import (
    EXIT_CONFIG,
    PodFailure,
    load_run_config,
    run_pod_command,
)

if TYPE_CHECKING:
    from rollout_operator.runtime.tool_server import Engine

log = logging.getLogger(__name__)

DEFAULT_TOOL_PORT = 8080


def _marker(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.bundle"


def unpack_bundle_url(url: str, dest: Path, *, endpoint: str | None = None) -> Path:
    """Download the bundle at `url` and unpack it safely into `dest`."""
    from rollout_operator.runtime.bundle import unpack_bundle
    from rollout_operator.runtime.storage import download_url

    dest = dest.resolve()
    if dest.exists() and any(dest.iterdir()):
        if not _marker(dest).is_file():
            raise PodFailure(
                f"{dest} is not empty and was not filled by unpack-bundle; give an empty folder",
                exit_code=EXIT_CONFIG,
            )
        log.info("replacing the bundle unpacked earlier in %s", dest)
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-download-") as scratch:
        archive = Path(scratch) / "bundle.tar.gz"
        asyncio.run(download_url(url, archive, endpoint=endpoint))
        unpacked = unpack_bundle(archive, dest)
    _marker(dest).write_text(url.split("?", 1)[0] + "\n", encoding="utf-8")
    return unpacked


def _run_config_value(name: str) -> Any:
    """A field of the run config when this pod has one (local use works without)."""
    from rollout_operator.runtime.run_config import RUN_CONFIG_ENV

    if not os.environ.get(RUN_CONFIG_ENV):
        return None
    config = load_run_config()
    if name == "endpoint":
        return config.spec.output.endpoint
    return getattr(config, name)


@click.command("unpack-bundle", hidden=True)
@click.option("--url", default=None,
              help="URL of the bundle (s3://, gs://, file://, or a signed https:// URL).")
@click.option("--url-env", default=None,
              help="Read the URL from this environment variable (a signed URL stays out of "
                   "the command line and the logs).")
@click.option("--dest", required=True, type=click.Path(file_okay=False),
              help="Folder to unpack into (absent, empty, or filled by an earlier unpack).")
@click.option("--endpoint", default=None,
              help="S3 endpoint override (default: the run's spec.output.endpoint).")
def unpack_bundle_command(url: str | None, url_env: str | None, dest: str,
                          endpoint: str | None) -> None:
    """Download a repo bundle and unpack it (the init container of pods that use the repo)."""

    def body() -> dict[str, Any]:
        chosen_url = url or (os.environ.get(url_env) if url_env else None)
        if not chosen_url:
            raise PodFailure("give --url, or --url-env naming a variable that holds the URL",
                             exit_code=EXIT_CONFIG)
        chosen = endpoint if endpoint is not None else _run_config_value("endpoint")
        unpacked = unpack_bundle_url(chosen_url, Path(dest), endpoint=chosen)
        files = sum(1 for path in unpacked.rglob("*") if path.is_file())
        shown = chosen_url.split("?", 1)[0]
        return {"ok": True, "bundle": shown, "dest": str(unpacked), "files": files}

    run_pod_command(body)


@click.command("serve-tools", hidden=True)
@click.option("--repo", "repo", type=click.Path(file_okay=False), default=None,
              help="The unpacked bundle (default: the run config's repo_dir).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_TOOL_PORT,
              show_default=True, help="Port to bind; 0 picks a free one.")
@click.option("--ready-file", type=click.Path(dir_okay=False), default=None,
              help="Write the endpoint URL here once serving.")
@click.option("--engine", type=click.Choice(["lean", "fastmcp"]), default="lean",
              show_default=True,
              help="HTTP server: lean (ours, several times less CPU per session) or fastmcp "
                   "(FastMCP's own, for authentication, event streams and server messages).")
def serve_tools_command(
    repo: str | None, host: str, port: int, ready_file: str | None, engine: Engine
) -> None:
    """Serve the bundle's mcp/main.py over streamable HTTP at /mcp (the tool pod's server)."""

    def body() -> dict[str, Any]:
        from rollout_operator.runtime.bundle import activate_bundle
        from rollout_operator.runtime.run_config import DEFAULT_REPO_DIR
        from rollout_operator.runtime.tool_server import serve_tools

        root = Path(repo or _run_config_value("repo_dir") or DEFAULT_REPO_DIR).resolve()
        if not (root / "mcp" / "main.py").is_file():
            raise PodFailure(f"{root}/mcp/main.py not found: is the bundle unpacked there?",
                             exit_code=EXIT_CONFIG)
        deps = activate_bundle(root)
        if deps is not None:
            log.info("bundle dependencies from %s", deps)

        def announce(url: str) -> None:
            log.info("serving tools at %s", url)
            print(f"READY {url}", flush=True)

        serve_tools(root / "mcp", host, port, ready_file, on_ready=announce, engine=engine)
        return {"ok": True, "stopped": True}

    run_pod_command(body)
