"""`rolloutctl test -i`: a real session on a pseudo-terminal, against the scripted model server,
and the row-window helpers it relies on."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from rollout_operator.cli.interactive import read_row, window_bounds
from tests.support.scripted_model import ScriptedModelServer

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = ROOT / "examples" / "calculator"
DATASET = CALCULATOR / "test_data.jsonl"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]")


class PtySession:
    """A child process on a pseudo-terminal, read with ANSI escapes stripped."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
            close_fds=True, start_new_session=True,
        )
        os.close(slave)
        self.fd = master
        self.text = ""
        self.pos = 0

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        raw = chunk.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
        self.text += _ANSI.sub("", raw)
        return True

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait for `pattern` after the last match; return the text up to and including it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self.pos)
            if match:
                seen = self.text[self.pos:match.end()]
                self.pos = match.end()
                return seen
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (not self._pump(remaining) and self.proc.poll() is not None):
                raise AssertionError(
                    f"{pattern!r} not seen; output after the last match:\n{self.text[self.pos:]}"
                )

    def idle(self, seconds: float) -> str:
        """Everything the child prints in the next `seconds` (nothing, if it waits for input)."""
        start = len(self.text)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._pump(remaining)
        return self.text[start:]

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\r").encode())

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.close(self.fd)


@pytest.fixture
def session_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]),
        "COLUMNS": "200",
        "LINES": "50",
        "TERM": "xterm",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


def start_session(
    scripted_model: ScriptedModelServer, env: dict[str, str], model: str, *extra: str
) -> PtySession:
    argv = [
        sys.executable, "-m", "rollout_operator.cli.main", "test", "-i",
        "--mcp", str(CALCULATOR / "mcp"), "-d", str(DATASET),
        "--model", model, "--base-url", scripted_model.base_url, *extra,
    ]
    return PtySession(argv, env, ROOT)


def requests_for(scripted_model: ScriptedModelServer, model: str) -> int:
    return sum(1 for body in scripted_model.requests if str(body.get("model", "")).endswith(model))


PAUSE = r"Commands: \[n\]ext, \[c\]ontinue, \[m\]essages, \[t\]ools, \[q\]uit\n> "
ROW_PROMPT = r"Select a row to test \[0-19\] or 'q' to quit:\n> "


def test_interactive_session_steps_continues_and_aborts(
    scripted_model: ScriptedModelServer, session_env: dict[str, str]
) -> None:
    model = "scripted:interactive-session"
    session = start_session(scripted_model, session_env, model, "--row", "1")
    try:
        # --row 1 runs row 1 first: its prompt, its tools, then the first reply and a pause.
        seen = session.expect(r"Turn 1: LLM Response")
        assert "Row 1" in seen
        assert "Initial Messages" in seen
        assert "[User] What is 52 * 85?" in seen
        assert "Available Tools" in seen and "multiply" in seen
        seen = session.expect(PAUSE)
        assert 'multiply({"first_val": 52.0, "second_val": 85.0})' in seen
        calls_at_pause = requests_for(scripted_model, model)

        # Paused: the tool does not run and the model is not asked again until we answer.
        assert session.idle(0.7) == ""
        assert requests_for(scripted_model, model) == calls_at_pause

        session.send("t")
        seen = session.expect(PAUSE)
        assert "Available Tools" in seen
        assert "multiply" in seen and "add" in seen
        assert "Calculate the product of two numbers" in seen
        assert "Parameters: first_val, second_val" in seen

        session.send("m")
        seen = session.expect(PAUSE)
        assert "[0] [System] You are a calculator assistant." in seen
        assert "[1] [User] What is 52 * 85?" in seen
        assert "[2] [Assistant]" in seen
        assert "[3]" not in seen

        session.send("what")
        assert "Unknown command: what" in session.expect(PAUSE)

        # Enter steps: the tool result prints, then the next reply, then another pause.
        session.send("")
        seen = session.expect(r"Turn 2: LLM Response")
        assert re.search(r"Tool result multiply \(call_\w+\): 4420\.0", seen)
        assert "#### 4420.0" in session.expect(PAUSE)
        assert requests_for(scripted_model, model) == calls_at_pause + 1

        session.send("n")
        seen = session.expect(ROW_PROMPT)
        assert "Status: COMPLETED" in seen
        assert "Reward: null" in seen
        assert "Finish reason: stop" in seen
        assert re.search(r"Duration: \d+\.\d\ds", seen)
        assert re.search(r"Tokens: [\d,]+ \(2 LLM calls\)", seen)

        # A row chosen at the prompt; `c` runs it to the end without another pause.
        session.send("2")
        seen = session.expect(PAUSE)
        assert "Row 2" in seen and "Turn 1: LLM Response" in seen
        session.send("c")
        seen = session.expect(ROW_PROMPT)
        assert "Turn 2: LLM Response" in seen
        assert "Commands:" not in seen
        assert "Status: COMPLETED" in seen

        # `q` at a pause aborts the row before its tools run, and the session goes on.
        session.send("3")
        session.expect(PAUSE)
        before_abort = requests_for(scripted_model, model)
        session.send("q")
        seen = session.expect(ROW_PROMPT)
        assert "Aborted by user" in seen
        assert "Status: ERROR" in seen
        assert "Tool result" not in seen
        assert requests_for(scripted_model, model) == before_abort

        session.send("20")
        assert "Invalid row index. Valid range: 0-19" in session.expect(ROW_PROMPT)
        session.send("x")
        assert "Please enter a valid row number" in session.expect(ROW_PROMPT)

        session.send("q")
        session.expect(r"Interactive session ended\.")
        assert session.close() == 0
    finally:
        if session.proc.poll() is None:
            session.close()


def test_interactive_window_and_end_of_input(
    scripted_model: ScriptedModelServer, session_env: dict[str, str]
) -> None:
    """--row outside the --offset/--limit window is refused; Ctrl-D at a pause aborts."""
    model = "scripted:interactive-window"
    session = start_session(
        scripted_model, session_env, model, "--offset", "5", "--limit", "3", "--row", "2"
    )
    try:
        seen = session.expect(r"Select a row to test \[5-7\] or 'q' to quit:\n> ")
        assert "Invalid row index: 2. Valid range: 5-7" in seen
        session.send("7")
        seen = session.expect(PAUSE)
        row_7 = json.loads(DATASET.read_text().splitlines()[7])["user_prompt"]
        assert f"[User] {row_7}" in seen
        os.write(session.fd, b"\x04")  # end of input at the pause
        seen = session.expect(r"Select a row to test \[5-7\]")
        assert "Aborted by user" in seen
        os.write(session.fd, b"\x04")
        session.expect(r"Interactive session ended\.")
        assert session.close() == 0
    finally:
        if session.proc.poll() is None:
            session.close()


def test_window_bounds_follow_offset_and_limit(tmp_path: Path) -> None:
    assert window_bounds(str(DATASET), 0, None) == (0, 19)
    assert window_bounds(str(DATASET), 5, 3) == (5, 7)
    assert window_bounds(str(DATASET), 18, 10) == (18, 19)
    first, last = window_bounds(str(DATASET), 25, None)
    assert last < first


def test_read_row_streams_to_an_absolute_index(tmp_path: Path) -> None:
    rows = [
        {"system_prompt": "s", "user_prompt": f"question {i}", "ground_truth": str(i)}
        for i in range(50)
    ]
    path = tmp_path / "rows.jsonl"
    # A broken last line: reading row 7 must not parse (or even reach) it.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    row = read_row(str(path), 7)
    assert row.row_index == 7
    assert row.messages()[1] == {"role": "user", "content": "question 7"}
    with pytest.raises(LookupError):
        read_row(str(path), 51)


def test_run_interactive_on_piped_input(
    scripted_model: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same session without a terminal: commands come from piped stdin."""
    import asyncio

    from rollout_operator.cli.agent_setup import build_model
    from rollout_operator.cli.interactive import run_interactive

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\nn\n0\nc\nq\n"))
    chat = build_model("scripted:interactive-piped", scripted_model.base_url, None)
    asyncio.run(
        run_interactive(chat, CALCULATOR / "mcp", str(DATASET), 0, 2, 10, {}, first_row=1)
    )
    out = capsys.readouterr().out
    assert out.count("Status: COMPLETED") == 2
    assert "Select a row to test [0-1] or 'q' to quit:" in out
    assert "Tool result multiply" in out
    assert "#### 96.0" in out  # row 0, chosen at the prompt
    assert "#### 4420.0" in out  # row 1, from first_row
    assert out.rstrip().endswith("Interactive session ended.")
