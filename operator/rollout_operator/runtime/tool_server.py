"""Serve a repo's MCP tools over streamable HTTP at `/mcp`, as tool pods and local runs do.

The server is loaded with our own loader, never through the repo's `__main__` block, so the host,
port and path are ours to choose. A `GET /health` route always answers (the repo's own if it has
one). We bind the listening socket ourselves so that port 0 works and the chosen port can be
announced: `python -m rollout_operator.runtime.tool_server --mcp DIR --port 0` prints
`READY http://HOST:PORT/mcp` on stdout once requests are being served. SIGTERM and SIGINT shut
the server down gracefully and the process exits 0.

Two engines serve the same protocol: `lean` (the default; `runtime.mcp_http` on aiohttp, several
times less CPU per session and call) and `fastmcp` (FastMCP's own streamable-HTTP app under
uvicorn, for what the lean engine leaves out: authentication, event streams, server-to-client
messages).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, get_args

from rollout_operator.runtime.errors import MCPLoadError

if TYPE_CHECKING:
    from aiohttp import web
    from fastmcp import FastMCP
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
GRACEFUL_SHUTDOWN_SECONDS = 2

Engine = Literal["lean", "fastmcp"]
ENGINES: tuple[str, ...] = get_args(Engine)


async def _health(request: Request) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"status": "healthy"})


def has_health_route(app: Starlette) -> bool:
    from starlette.routing import Route

    return any(
        isinstance(route, Route)
        and route.path == HEALTH_PATH
        and (route.methods is None or "GET" in route.methods)
        for route in app.routes
    )


def tool_http_app(server: FastMCP) -> Starlette:
    """FastMCP's streamable HTTP app at `/mcp`, with `GET /health` added when the repo has none."""
    from starlette.routing import Route

    app: Starlette = server.http_app(path=MCP_PATH, transport="http")
    if not has_health_route(app):
        app.router.routes.insert(0, Route(HEALTH_PATH, _health, methods=["GET"]))
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def endpoint_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}{MCP_PATH}"


def _write_ready_file(path: Path, url: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(url + "\n", encoding="utf-8")
    os.replace(temporary, path)


async def _serve(
    app: Starlette, sock: socket.socket, url: str, on_ready: Callable[[str], None]
) -> None:
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_ready(url)

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = AnnouncingServer(config)

    # uvicorn installs its own handlers while serving and re-raises the signal once it has shut
    # down; ours only asks it to stop, so that a graceful stop ends in a normal exit.
    def request_stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, request_stop)
    try:
        await server.serve(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _serve_lean(
    app: web.Application, sock: socket.socket, url: str, on_ready: Callable[[str], None]
) -> None:
    """Serve the lean engine's app on `sock` until SIGTERM/SIGINT, then let calls in flight
    finish for a moment."""
    from aiohttp import web

    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,  # a client that hangs up cancels its tool call
        shutdown_timeout=GRACEFUL_SHUTDOWN_SECONDS,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await web.SockSite(runner, sock).start()
        on_ready(url)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _lean_app(server: FastMCP[Any]) -> web.Application | None:
    """The lean engine's app, or None (with a warning) where its dependencies are missing: a
    pod whose repo pins an old FastMCP (without `mcp_types`) is served by that FastMCP."""
    try:
        from rollout_operator.runtime.mcp_http import mcp_http_app
    except ImportError as exc:
        print(f"warning: the lean tool server needs aiohttp and mcp>=2 ({exc}); serving with "
              "the fastmcp engine", file=sys.stderr, flush=True)
        return None
    return mcp_http_app(server)


def serve_tools(
    mcp_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: str | os.PathLike[str] | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
    engine: Engine = "lean",
) -> None:
    """Load `mcp_dir/main.py` and serve its tools until SIGTERM/SIGINT (`MCPLoadError` if it
    cannot be loaded). Once serving, the URL is written to `ready_file` and passed to `on_ready`.
    `engine` picks the HTTP server: `lean` (ours, on aiohttp) or `fastmcp` (FastMCP's own)."""
    from rollout_operator.runtime.repo_loader import load_mcp_server

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    # This process serves one repo, so its modules may stay importable (lazy sibling imports).
    server = load_mcp_server(mcp_dir, isolate=False)
    serve: Callable[[socket.socket, str, Callable[[str], None]], Awaitable[None]]
    lean_app = _lean_app(server) if engine == "lean" else None
    if lean_app is not None:
        serve = functools.partial(_serve_lean, lean_app)
    else:
        serve = functools.partial(_serve, tool_http_app(server))
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = endpoint_url(host, sock.getsockname()[1])

    def announce(ready_url: str) -> None:
        if ready_file is not None:
            _write_ready_file(Path(ready_file), ready_url)
        if on_ready is not None:
            on_ready(ready_url)

    with sock:
        asyncio.run(serve(sock, url, announce))


def _print_ready(url: str) -> None:
    print(f"READY {url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rollout_operator.runtime.tool_server",
        description="Serve a Local Rollout repo's MCP tools over streamable HTTP at /mcp.",
    )
    parser.add_argument("--mcp", required=True, help="folder holding the tool server's main.py")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--ready-file", help="write the endpoint URL here once serving")
    parser.add_argument("--engine", choices=ENGINES, default="lean",
                        help="HTTP server: lean (default, ours) or fastmcp (FastMCP's own)")
    args: Any = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    try:
        serve_tools(args.mcp, args.host, args.port, args.ready_file, on_ready=_print_ready,
                    engine=args.engine)
    except (MCPLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
