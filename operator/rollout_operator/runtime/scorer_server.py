"""The scorer server: the repo's reward functions and rubrics behind the scoring API.

This process runs user code, on the user-code side of the boundary: it holds no model key, no
storage or git credential, only the judge keys the spec declares. It serves on a listening
socket it is handed (`--listen-fd`) by its supervisor (`runtime.supervisor`), which starts it
again whenever it dies, so the socket, and the clients' view of the server, outlive any one
process.

Faults of one scorer stay with the trajectory it was scoring: an exception, `sys.exit`, a
timeout or a non-number is an error of that scorer on that item. What cannot be contained in
the process ends it, and the supervisor starts a new one, which runs every scorer call in a
forked process of its own for its first two minutes (a repo whose scorers keep killing
processes pays a fork per call instead of more server deaths; one that crashed once is back at
full speed soon after):

- `os._exit`, a segfault, the memory limit: the process is gone (the client retries the
  batch's items one scorer at a time to find and name the one that kills it);
- a sync scorer that does not return: after `--timeout` its item gets an error, but its thread
  cannot be stopped; once `MAX_ABANDONED_THREADS` such threads pile up, the server finishes
  its answers and exits for a fresh process;
- an async scorer that blocks the event loop: a watchdog thread ends the process when the
  loop has not run for longer than the timeout plus `STALL_GRACE_S`.

    python -m rollout_operator.runtime.scorer_server --listen-fd FD --repo DIR \
        [--scorer REF ...] [--timeout S] [--ready-file FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rollout_operator.runtime.scorer_protocol import (
    HEALTH_PATH,
    PROTOCOL_VERSION,
    SCORE_PATH,
    SCORERS_PATH,
    Health,
    LoadProblem,
    ScoreItem,
    ScoreRequest,
    ScorerInfo,
    truncate,
)
from rollout_operator.runtime.scoring import (
    Scorer,
    as_score,
    call_kwargs,
    describe_failure,
    score_trajectory,
)
from rollout_operator.runtime.supervisor import GENERATION_ENV

log = logging.getLogger(__name__)

EXIT_LOAD_FAILED = 2
EXIT_RESTART = 75
"""The server asks its supervisor for a fresh process (hung threads, a stalled loop)."""
MAX_ABANDONED_THREADS = 8
CAREFUL_AFTER_CRASH_S = 120.0
"""How long a server started after a crash runs every call in a forked process."""
STALL_GRACE_S = 10.0
THREADS = 64


class ScorerService:
    """Scores batches with loaded scorers; counts the threads timeouts leave behind."""

    def __init__(self, scorers: Sequence[Scorer], problems: Sequence[LoadProblem], *,
                 timeout_s: float | None, generation: int = 0) -> None:
        self.scorers = list(scorers)
        self.by_ref = {scorer.ref: scorer for scorer in self.scorers}
        self.problems = list(problems)
        self.timeout_s = timeout_s
        self.generation = generation
        self.careful_until = time.monotonic() + CAREFUL_AFTER_CRASH_S if generation else 0.0
        self._inflight: dict[object, float] = {}
        self.restart_requested = False

    def scorer_list(self) -> dict[str, Any]:
        return {
            "version": PROTOCOL_VERSION,
            "generation": self.generation,
            "scorers": [ScorerInfo(ref=s.ref, mode=s.mode).model_dump() for s in self.scorers],
            "problems": [problem.model_dump() for problem in self.problems],
        }

    async def score(self, request: ScoreRequest) -> dict[str, Any]:
        chosen, unknown = self.scorers, []
        if request.scorers is not None:
            chosen = [self.by_ref[ref] for ref in request.scorers if ref in self.by_ref]
            unknown = [ref for ref in request.scorers if ref not in self.by_ref]
        # For a while after a crash every call runs in a process of its own: a scorer that
        # kills processes then costs forks, never another server death.
        careful = request.isolate or time.monotonic() < self.careful_until
        score_item = self._score_isolated if careful else self._score_item
        results = await asyncio.gather(
            *(score_item(item, chosen, unknown) for item in request.items)
        )
        if self.abandoned >= MAX_ABANDONED_THREADS and not self.restart_requested:
            self.restart_requested = True
            log.warning("%d scorer threads did not return after their timeout; asking for a "
                        "fresh process", self.abandoned)
            asyncio.get_running_loop().call_later(0.2, _exit_for_restart)
        return {"version": PROTOCOL_VERSION, "generation": self.generation, "results": results}

    async def _score_item(self, item: ScoreItem, scorers: Sequence[Scorer],
                          unknown: Sequence[str]) -> dict[str, Any]:
        outcome = await score_trajectory(
            [self._tracked(s) for s in scorers], item.messages, item.ground_truth, item.row,
            self.timeout_s,
        )
        errors = {ref: truncate(message) for ref, message in outcome.errors.items()}
        errors.update({ref: "not loaded by the scorer server" for ref in unknown})
        return {"id": item.id, "scores": outcome.scores, "errors": errors,
                "scoring_ms": outcome.scoring_ms}

    async def _score_isolated(self, item: ScoreItem, scorers: Sequence[Scorer],
                              unknown: Sequence[str]) -> dict[str, Any]:
        """Each scorer in a forked process of its own: one that kills its process (os._exit,
        a segfault, the memory limit) or hangs is an error of that scorer, and this server
        lives on."""
        start = time.perf_counter()
        scores: dict[str, float] = {}
        errors: dict[str, str] = {}
        outcomes = await asyncio.gather(*(
            asyncio.to_thread(run_forked, scorer, item.messages, item.ground_truth, item.row,
                              self.timeout_s)
            for scorer in scorers))
        for scorer, (score, error) in zip(scorers, outcomes, strict=True):
            scores[scorer.ref] = 0.0 if score is None else score
            if error is not None:
                errors[scorer.ref] = truncate(error)
        errors.update({ref: "not loaded by the scorer server" for ref in unknown})
        return {"id": item.id, "scores": scores, "errors": errors,
                "scoring_ms": (time.perf_counter() - start) * 1000}

    def _tracked(self, scorer: Scorer) -> Scorer:
        """`scorer`, its sync calls counted as abandoned while they run past the timeout."""
        if scorer.is_async or self.timeout_s is None:
            return scorer
        return Scorer(scorer.ref, self._watched(scorer.fn), scorer.mode, is_async=False)

    def _watched(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        inflight = self._inflight

        @functools.wraps(fn)
        def call(**kwargs: Any) -> Any:
            key = object()
            inflight[key] = time.monotonic()
            try:
                return fn(**kwargs)
            finally:
                inflight.pop(key, None)

        return call

    @property
    def abandoned(self) -> int:
        """Sync scorer calls still running past their timeout (threads that cannot be
        stopped)."""
        if self.timeout_s is None:
            return 0
        cutoff = time.monotonic() - self.timeout_s
        return sum(1 for started in list(self._inflight.values()) if started < cutoff)


def run_forked(scorer: Scorer, messages: list[dict[str, Any]], ground_truth: str | None,
               row: dict[str, Any], timeout_s: float | None) -> tuple[float | None, str | None]:
    """Call `scorer` in a forked child process; (score, None) or (None, what went wrong),
    including how the child ended when it did not answer."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: score, answer through the pipe, leave without cleanup
        code = 0
        try:
            os.close(read_fd)
            try:  # no event loop and no thread unless the scorer is async: fork-safe
                kwargs = call_kwargs(scorer, messages, ground_truth, row)
                result = scorer.fn(**kwargs)
                if scorer.is_async:
                    result = asyncio.run(result)
                answer: dict[str, Any] = {"score": as_score(result)}
            except BaseException as exc:
                answer = {"error": describe_failure(exc, timeout_s)}
            data = json.dumps(answer, allow_nan=False).encode("utf-8")
            while data:
                data = data[os.write(write_fd, data):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data, status = _collect(read_fd, pid, timeout_s)
    finally:
        os.close(read_fd)
    if status is None:
        return None, f"timed out after {timeout_s}s"
    try:
        answer = json.loads(data)
    except ValueError:
        return None, f"its process {_ended(status)} while scoring this item"
    if "score" in answer:
        return float(answer["score"]), None
    return None, str(answer.get("error"))


def _collect(fd: int, pid: int, timeout_s: float | None) -> tuple[bytes, int | None]:
    """What child `pid` wrote to `fd` and its wait status, or (data, None) once `timeout_s`
    passes (the child is then killed). The child's end of the pipe may also be held by other
    children forked meanwhile, so the end of the answer is the child's exit, not EOF."""
    import select

    os.set_blocking(fd, False)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    while True:
        select.select([fd], [], [], 0.05)
        drain()
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            drain()
            return b"".join(chunks), status
        if deadline is not None and time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return b"".join(chunks), None


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with code {os.WEXITSTATUS(status)} (os._exit)"


def _exit_for_restart() -> None:
    logging.shutdown()
    os._exit(EXIT_RESTART)


def build_app(service: ScorerService) -> Any:
    """The aiohttp application serving `service`."""
    from aiohttp import web

    async def health(_: web.Request) -> web.Response:
        return web.json_response(Health(generation=service.generation).model_dump())

    async def scorers(_: web.Request) -> web.Response:
        return web.json_response(service.scorer_list())

    async def score(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = ScoreRequest.model_validate_json(body)
        except ValidationError as exc:
            message = truncate("; ".join(str(error["msg"]) for error in exc.errors()))
            return web.json_response({"version": PROTOCOL_VERSION, "error": message},
                                     status=400)
        answer = await service.score(parsed)
        return web.Response(body=_dumps(answer), content_type="application/json")

    app = web.Application(client_max_size=256 * 2**20)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(SCORERS_PATH, scorers)
    app.router.add_post(SCORE_PATH, score)
    return app


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def load_service(repo: Path, refs: Sequence[str] | None, *, timeout_s: float | None,
                 generation: int) -> ScorerService:
    """Load the named scorers (all discovered ones when `refs` is None) from `repo`."""
    from rollout_operator.runtime.bundle import activate_bundle
    from rollout_operator.runtime.errors import EvalFnError
    from rollout_operator.runtime.repo_loader import discover_scorers
    from rollout_operator.runtime.scoring import load_scorers

    activate_bundle(repo)  # scorers may import the repo's own dependencies
    problems: list[LoadProblem] = []
    wanted = list(refs) if refs else [found.ref for found in discover_scorers(repo)]
    scorers: list[Scorer] = []
    for ref in wanted:
        try:
            scorers.extend(load_scorers(repo, [ref]))
        except EvalFnError as exc:
            problems.append(LoadProblem(file=None, message=f"{ref}: {exc}"))
    return ScorerService(scorers, problems, timeout_s=timeout_s, generation=generation)


class LoopWatchdog:
    """Ends the process when the event loop has not run for `limit_s` (a scorer blocked it)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.last = time.monotonic()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        def tick() -> None:
            self.last = time.monotonic()
            loop.call_later(0.5, tick)

        loop.call_soon(tick)
        threading.Thread(target=self._watch, name="loop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            stalled = time.monotonic() - self.last
            if stalled > self.limit_s:
                log.error("a scorer blocked the event loop for %.0f s; asking for a fresh "
                          "process", stalled)
                _exit_for_restart()


async def serve(service: ScorerService, listener: socket.socket, *,
                ready_file: Path | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve `service` on `listener` until `stop` is set (forever when None)."""
    from aiohttp import web

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="scorer"))
    if service.timeout_s is not None:
        LoopWatchdog(service.timeout_s + STALL_GRACE_S).start(loop)
    runner = web.AppRunner(build_app(service), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, listener)
    await site.start()
    if ready_file is not None:
        await asyncio.to_thread(ready_file.write_text, str(os.getpid()), encoding="utf-8")
    log.info("serving %d scorer(s) (generation %d): %s", len(service.scorers),
             service.generation, ", ".join(s.ref for s in service.scorers) or "none")
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--scorer", action="append", default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s scorer-server: %(message)s")
    sys.dont_write_bytecode = True
    from rollout_operator.runtime.scrub import (
        Scrubber,
        install_log_scrubbing,
        use_process_scrubber,
    )

    use_process_scrubber(Scrubber.from_environ(os.environ))  # judge keys, from this side's logs
    install_log_scrubbing()
    generation = int(os.environ.get(GENERATION_ENV, "0") or 0)
    listener = socket.socket(fileno=args.listen_fd)
    try:
        service = load_service(args.repo.resolve(), args.scorer, timeout_s=args.timeout,
                               generation=generation)
    except Exception as exc:
        log.error("the scorers cannot be loaded: %s", exc)
        sys.stderr.flush()
        os._exit(EXIT_LOAD_FAILED)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(service, listener, ready_file=args.ready_file))


if __name__ == "__main__":
    main()
