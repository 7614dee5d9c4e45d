"""`spec.model.serve` on this machine: vLLM or SGLang as a local process on a loopback port.

The engine must be installed here: `vllm` on the PATH (or importable by this Python), or the
`sglang` package for `python -m sglang.launch_server`. The server runs outside the sandbox (it
needs the GPUs and downloads the model) and is stopped when the run ends. Rollouts then request
`serve.model` from `http://127.0.0.1:PORT/v1`, as workers in a cluster ask the inference Service.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rollout_operator.api.spec import ServeSpec
from rollout_operator.local.processes import Child, start_child, wait_healthy

MODEL_START_TIMEOUT_S = 1800.0
"""The first start downloads the model's weights."""


class EngineMissing(RuntimeError):
    """The engine `spec.model.serve` names is not installed; the message says what to install."""


@dataclass
class ModelServer:
    base_url: str
    child: Child


def engine_command(serve: ServeSpec, port: int) -> list[str]:
    """The command line that serves `serve.model` on 127.0.0.1:`port`, or `EngineMissing`."""
    parallel = ["--tensor-parallel-size", str(serve.gpus)] if serve.gpus > 1 else []
    if serve.engine == "vllm":
        executable = shutil.which("vllm") or _beside_python("vllm")
        if executable is None and importlib.util.find_spec("vllm") is None:
            raise EngineMissing(
                "spec.model.serve.engine is vllm, but vLLM is not installed here: install it "
                f"into this environment ({sys.executable} -m pip install vllm; it needs a "
                "supported GPU), or run any OpenAI-compatible server yourself and set "
                "spec.model.name and spec.model.baseURL instead of serve"
            )
        prefix = [executable, "serve"] if executable else [
            sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
        if serve.gpus > 1 and _has_option(serve.args, "--tensor-parallel-size", "-tp"):
            parallel = []
        return [*prefix, serve.model, "--host", "127.0.0.1", "--port", str(port),
                *parallel, *serve.args]
    if importlib.util.find_spec("sglang") is None:
        raise EngineMissing(
            "spec.model.serve.engine is sglang, but SGLang is not installed here: install it "
            f"into this environment ({sys.executable} -m pip install 'sglang[all]'; it needs a "
            "supported GPU), or run any OpenAI-compatible server yourself and set "
            "spec.model.name and spec.model.baseURL instead of serve"
        )
    tp = ["--tp", str(serve.gpus)] if serve.gpus > 1 and not _has_option(
        serve.args, "--tp", "--tp-size", "--tensor-parallel-size") else []
    return [sys.executable, "-m", "sglang.launch_server", "--model-path", serve.model,
            "--host", "127.0.0.1", "--port", str(port), *tp, *serve.args]


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _has_option(args: list[str], *names: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in args for name in names)


async def start_model_server(
    serve: ServeSpec,
    *,
    environ: Mapping[str, str],
    log_path: Path,
    timeout_s: float = MODEL_START_TIMEOUT_S,
) -> ModelServer:
    """Start the engine and wait for its `/health`; `EngineMissing` when it is not installed."""
    from rollout_operator.local.processes import loopback_listener

    with loopback_listener() as probe:
        port = probe.getsockname()[1]
    command = engine_command(serve, port)
    child = await start_child(f"{serve.engine} server", command, env=dict(environ),
                              log_path=log_path, sandbox=None, cwd=log_path.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(f"{base}/health", child, timeout_s=timeout_s)
    except BaseException:
        await child.stop(grace_s=10)
        raise
    return ModelServer(f"{base}/v1", child)
