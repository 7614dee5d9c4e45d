"""The rollout runner of a worker whose run has `spec.rollout` (an Osmosis 0.3 workspace).

The worker serves the model gateway itself, on `$ROLLOUT_GATEWAY_PORT` (all interfaces in a
pod, loopback locally), with a bearer that exists only in its memory and the model key from its
environment; it drives the rollout server at `$ROLLOUT_SERVER_URL` and collects each rollout's
ATIF file from `$ROLLOUT_ARTIFACT_URL` (the rollout pod's artifact server, or locally the
artifact directory) into `atif/` of the run's output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollout_operator.cli.pod_common import EXIT_CONFIG, EXIT_RETRY, PodFailure, answer_within
from rollout_operator.runtime.run_config import MODEL_API_KEY_ENV, RunConfig
from rollout_operator.workspaces.shard_runner import (
    ARTIFACT_URL_ENV,
    GATEWAY_BIND_ENV,
    GATEWAY_HOST_ENV,
    GATEWAY_PORT_ENV,
    ROLLOUT_SERVER_URL_ENV,
)

logger = logging.getLogger(__name__)

SERVER_WAIT_S = 300.0
MAX_TRAJECTORY_BYTES = 64 * 2**20
"""An ATIF file is written by user code: a larger one is not kept."""


async def workspace_runner(config: RunConfig, environ: Mapping[str, str], index: int
                           ) -> tuple[Any, list[Any]]:
    """The runner and what to close afterwards; `PodFailure` when the environment lacks what
    the operator (or `rolloutctl run`) gives a worker of such a run."""
    from rollout_operator.gateway.server import Gateway
    from rollout_operator.gateway.upstream import make_upstream
    from rollout_operator.runtime.storage import open_store
    from rollout_operator.workspaces.errors import WorkspaceError
    from rollout_operator.workspaces.protocol import RolloutClient
    from rollout_operator.workspaces.runner import preflight
    from rollout_operator.workspaces.shard_runner import ATIF_PREFIX, WorkspaceRunner, new_token

    spec = config.spec
    missing = [name for name in (ROLLOUT_SERVER_URL_ENV, ARTIFACT_URL_ENV, GATEWAY_HOST_ENV,
                                 GATEWAY_PORT_ENV) if not environ.get(name)]
    if missing:
        raise PodFailure(f"A worker of a spec.rollout run needs {', '.join(missing)} in its "
                         "environment", exit_code=EXIT_CONFIG)
    api_key = environ.get(MODEL_API_KEY_ENV) or _provider_key(config.model_name, environ)
    upstream = make_upstream(config.model_name, config.model_endpoint, api_key)
    try:
        warning = await preflight(upstream, config.model_name)
    except WorkspaceError as exc:
        await upstream.close()
        raise PodFailure(f"Model check failed: {exc}", exit_code=EXIT_RETRY) from None
    if warning:
        logger.warning("%s", warning)
    token = new_token()
    gateway = Gateway(upstream, token, provider_key=api_key)
    # Each shard of a local run has its own port; a pod has one shard at a time.
    port = int(environ[GATEWAY_PORT_ENV]) + (index if environ.get(GATEWAY_BIND_ENV) else 0)
    await gateway.start(environ.get(GATEWAY_BIND_ENV) or "0.0.0.0", port)
    client = RolloutClient(environ[ROLLOUT_SERVER_URL_ENV])
    closers: list[Any] = [client.close, gateway.close, upstream.close]
    try:
        await _wait_for_server(client)
    except BaseException:
        for close in closers:
            await close()
        raise
    store = open_store(config.run_prefix, endpoint=spec.output.endpoint, environ=environ)
    fetch, close_fetch = _fetcher(environ[ARTIFACT_URL_ENV])
    closers.append(close_fetch)

    async def save(rollout_id: str, data: bytes) -> None:
        await store.put(f"{ATIF_PREFIX}/{rollout_id}.json", data)

    runner = WorkspaceRunner(
        gateway=gateway, token=token, client=client,
        gateway_base=f"http://{environ[GATEWAY_HOST_ENV]}:{gateway.port}",
        agent_timeout_s=spec.agent.rollout_timeout_seconds,
        grader_timeout_s=spec.scoring.timeout_seconds,
        fetch_trajectory=fetch, save_trajectory=save, policy_version=config.policy_version,
    )
    return runner, closers


def _provider_key(model: str, environ: Mapping[str, str]) -> str | None:
    """Without spec.model.apiKeySecret (a local run): the provider's usual key variable."""
    from rollout_operator.runtime.models import PROVIDER_KEY_ENV

    provider = model.split("/", 1)[0] if "/" in model else "openai"
    name = PROVIDER_KEY_ENV.get(provider)
    return (environ.get(name) if name else None) or None


async def _wait_for_server(client: Any) -> None:
    try:
        health = await answer_within(client.health, wait_s=SERVER_WAIT_S)
    except Exception as exc:
        raise PodFailure(f"The rollout server at {client.base_url} did not answer "
                         f"within {SERVER_WAIT_S:g} s: {exc}", exit_code=EXIT_RETRY) from None
    logger.info("Rollout server at %s: %s", client.base_url, health.get("status"))


def _fetcher(base: str) -> tuple[Any, Any]:
    """Reads `<base>/<rollout id>/trajectory.json` over HTTP, or from a local directory."""
    import aiohttp

    if not base.startswith(("http://", "https://")):
        root = Path(base.removeprefix("file://"))

        async def read(rollout_id: str) -> bytes | None:
            path = root / rollout_id / "trajectory.json"
            if path.is_symlink() or not path.is_file() \
                    or path.stat().st_size > MAX_TRAJECTORY_BYTES:
                return None
            return await asyncio.to_thread(path.read_bytes)

        async def nothing() -> None:
            return None

        return read, nothing
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def fetch(rollout_id: str) -> bytes | None:
        async with session.get(f"{base.rstrip('/')}/{rollout_id}/trajectory.json") as reply:
            if reply.status != 200:
                return None
            data = bytearray()
            async for chunk in reply.content.iter_chunked(65536):
                data += chunk
                if len(data) > MAX_TRAJECTORY_BYTES:
                    return None
            return bytes(data)

    return fetch, session.close
