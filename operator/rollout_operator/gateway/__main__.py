"""`python -m rollout_operator.gateway`: serve the model gateway for one run.

Configuration comes from the environment, so that no secret appears on a command line:
`ROLLOUT_GATEWAY_TOKEN` (the rollouts' bearer), `ROLLOUT_GATEWAY_ADMIN_TOKEN` (the driver's),
`ROLLOUT_MODEL` (`provider/model`), `ROLLOUT_MODEL_BASE_URL` (an OpenAI-compatible endpoint;
without it litellm routes the model) and `ROLLOUT_MODEL_API_KEY` (the provider key). It prints
`PORT <n>` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from rollout_operator.gateway.server import Gateway
from rollout_operator.gateway.upstream import make_upstream


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"{name} is not set: the gateway needs it (python -m rollout_operator.gateway)")
    return value


async def serve(host: str, port: int) -> None:
    key = os.environ.get("ROLLOUT_MODEL_API_KEY") or None
    upstream = make_upstream(_required("ROLLOUT_MODEL"), os.environ.get("ROLLOUT_MODEL_BASE_URL"),
                             key)
    gateway = Gateway(upstream, _required("ROLLOUT_GATEWAY_TOKEN"), provider_key=key,
                      admin_token=_required("ROLLOUT_GATEWAY_ADMIN_TOKEN"))
    await gateway.start(host, port)
    print(f"PORT {gateway.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await gateway.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rollout_operator.gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
