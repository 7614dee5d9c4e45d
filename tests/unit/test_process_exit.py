"""`exit_now`: how every rolloutctl command and pod entrypoint leaves its process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env

_EXIT = """
import atexit, sys
from rollout_operator.cli.process_exit import exit_now

class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)

kept = Teardown()
atexit.register(lambda: print("atexit ran", flush=True))
print("buffered", end="")
exit_now(7)
"""


def test_runs_atexit_handlers_flushes_and_skips_teardown(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _EXIT], env=cli_env(), capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 7, done.stderr
    assert done.stdout == "bufferedatexit ran\n"  # no module teardown: no __del__ at exit


_STORAGE = """
import asyncio, sys
from rollout_operator.runtime.storage import open_store
from rollout_operator.cli.process_exit import exit_now

async def main():
    store = open_store(sys.argv[1])
    await asyncio.gather(*(store.put(f"part-{i}", b"x" * 100) for i in range(64)))

asyncio.run(main())
exit_now(0)
"""


@pytest.mark.slow
def test_storage_threads_finishing_late_do_not_crash_the_exit(tmp_path: Path) -> None:
    """obstore's tokio threads hand finished calls back to Python; one still doing so while
    the interpreter finalized aborted the process (about one exit in five). A worker commits
    its last part just before it exits, so this is every worker's exit."""
    codes = []
    for attempt in range(15):
        out = tmp_path / f"out-{attempt}"
        out.mkdir()
        done = subprocess.run([sys.executable, "-c", _STORAGE, out.as_uri()], env=cli_env(),
                              capture_output=True, text=True, timeout=60)
        codes.append((done.returncode, done.stderr[-300:]))
    assert all(code == 0 for code, _ in codes), codes
