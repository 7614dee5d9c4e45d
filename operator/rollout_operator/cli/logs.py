"""Logging for the CLI: quiet by default, `--debug` shows our own and the libraries' details."""

from __future__ import annotations

import logging
import os


def configure_logging(debug: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("rollout_operator").setLevel(level)
    if not debug:
        # FastMCP and litellm log every handled tool error and retry at WARNING/ERROR with
        # tracebacks; the runtime already records those failures on the trajectory.
        for name in ("fastmcp", "mcp", "LiteLLM", "litellm", "httpx", "uvicorn"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        os.environ.setdefault("LITELLM_LOG", "ERROR")
