"""Leaving the process once its results are written, without tearing the interpreter down."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Exit with `code`: run the atexit handlers, flush the standard streams, `os._exit`.

    The interpreter's own teardown is skipped on purpose, for two reasons:

    - A sync tool or scorer that hangs runs in a worker thread that Python cannot interrupt,
      and it would keep the process alive after every result is written. With such a thread
      alive not even the atexit handlers run (they could wait on it).
    - Native threads of extension modules keep running while Python finalizes. obstore's
      tokio threads hand each finished storage call back to the event loop, and one that is
      still doing so when finalization starts is ended by Python 3.11 with `pthread_exit`,
      which aborts the process from inside Rust code. A worker then died after committing
      its results (exit 134, or 139 as a container's or sandbox's PID 1), and the retry of
      its index found nothing left to do. Nothing is lost by skipping teardown: every file
      the commands write is closed before they return, and logging flushes its handlers
      in an atexit handler.
    """
    stragglers = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stragglers:
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
