"""Leaving the process once its results are written, even past a hung user-code thread."""

from __future__ import annotations

import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Exit with `code`, without waiting for threads still running user code.

    A sync tool or scorer that hangs runs in a worker thread that Python cannot interrupt, and
    it would keep the process alive after every result is written; leave without it.
    """
    stragglers = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stragglers:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
