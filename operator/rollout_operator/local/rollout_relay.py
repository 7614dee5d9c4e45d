"""The supervisor of a local rollout server (an Osmosis 0.3 workspace's entrypoint), inside a
sandbox that has no network but its own loopback.

It relays both ways across the sandbox's edge:

- in: connections accepted on the listening socket `rolloutctl run` hands over (a port of the
  host's loopback, where the workers speak the rollout protocol) go to the server's port on the
  sandbox's loopback (`_OSMOSIS_ROLLOUT_PORT`);
- out: each gateway port in the sandbox's loopback leads to one Unix socket in `--gateway-dir`,
  which `rolloutctl run` relays to that worker's gateway on the host. Nothing else is
  reachable: the rollout server can call the model only through the gateway.

Like a Deployment, it starts the server again when it dies (after a pause that grows while it
keeps dying young), logging `rollout server exited with code N; restarting (restart K)`.

    python -m rollout_operator.local.rollout_relay --listen-fd FD --port R \
        --gateway-dir DIR --gateway-port P [--gateway-port P2 ...] --cwd DIR -- CMD...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HOLD_S = 60.0
MAX_BACKOFF_S = 5.0
HEALTHY_AFTER_S = 30.0
RESTARTS = 1000


def gateway_socket(directory: Path, port: int) -> Path:
    """The Unix socket that leads to the gateway on `port` of the host's loopback."""
    return directory / f"gateway-{port}.sock"


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def join(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
               b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    await asyncio.gather(pump(a[0], b[1]), pump(b[0], a[1]))


class Supervisor:
    def __init__(self, command: Sequence[str], port: int, cwd: str) -> None:
        self.command = list(command)
        self.port = port
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    async def run(self) -> int:
        restarts = 0
        delay = 0.5
        while True:
            started = time.monotonic()
            self.process = await asyncio.create_subprocess_exec(*self.command, cwd=self.cwd)
            code = await self.process.wait()
            if restarts >= RESTARTS:
                return code or 1
            restarts += 1
            print(f"rollout server exited with code {code}; restarting (restart {restarts})",
                  file=sys.stderr, flush=True)
            if time.monotonic() - started > HEALTHY_AFTER_S:
                delay = 0.5
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A worker's connection, to the server once it listens (held while it restarts)."""
        deadline = time.monotonic() + HOLD_S
        while True:
            try:
                server = await asyncio.open_connection("127.0.0.1", self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    writer.close()
                    return
                await asyncio.sleep(0.2)
        await join((reader, writer), server)

    def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()


async def serve(args: argparse.Namespace) -> int:
    supervisor = Supervisor(args.command, args.port, args.cwd)
    listener = socket.socket(fileno=args.listen_fd)
    servers = [await asyncio.start_server(supervisor.inbound, sock=listener)]
    directory = Path(args.gateway_dir)
    for port in args.gateway_port:
        path = gateway_socket(directory, port)

        async def outbound(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           path: Path = path) -> None:
            try:
                gateway = await asyncio.open_unix_connection(str(path))
            except OSError:
                writer.close()
                return
            await join((reader, writer), gateway)

        servers.append(await asyncio.start_server(outbound, "127.0.0.1", port))
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(supervisor.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        supervisor.stop()
        if supervisor.process is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(supervisor.process.wait(), 10)
        for server in servers:
            server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollout_relay")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway-dir", required=True)
    parser.add_argument("--gateway-port", type=int, action="append", default=[])
    parser.add_argument("--cwd", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("the rollout server's command is missing after --")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
