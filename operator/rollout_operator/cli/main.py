"""`rolloutctl`: Osmosis-compatible local commands and, later, the operator's entry points."""

from __future__ import annotations

import os
import sys
import threading

import click

from rollout_operator import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rolloutctl")
def cli() -> None:
    """Run agentic LLM rollouts from an Osmosis Local Rollout repo, locally or on Kubernetes."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True))
    # litellm fetches a price map from the internet at import unless told otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _register() -> None:
    from rollout_operator.cli.eval_cmd import eval_group
    from rollout_operator.cli.operator_cmd import operator_command
    from rollout_operator.cli.pod_aggregate import aggregate_command
    from rollout_operator.cli.pod_serve_tools import serve_tools_command, unpack_bundle_command
    from rollout_operator.cli.pod_sync import sync_command
    from rollout_operator.cli.pod_work import work_command
    from rollout_operator.cli.render_cmd import render_command
    from rollout_operator.cli.run_cmd import run_command
    from rollout_operator.cli.test_cmd import test_command
    from rollout_operator.cli.validate_cmd import validate_command

    cli.add_command(test_command)
    cli.add_command(eval_group)
    cli.add_command(validate_command)
    cli.add_command(operator_command)
    cli.add_command(render_command)
    cli.add_command(run_command)
    cli.add_command(work_command)
    cli.add_command(aggregate_command)
    cli.add_command(sync_command)
    cli.add_command(serve_tools_command)
    cli.add_command(unpack_bundle_command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="rolloutctl", standalone_mode=True)
    except KeyboardInterrupt:
        _exit(130)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        _exit(code)
    _exit(0)


def _exit(code: int) -> None:
    """Exit now, even if a timed-out tool call is still running in a worker thread.

    A sync tool that hangs cannot be interrupted from Python; its thread would keep the process
    alive after every result is written. Results are flushed by then, so leave without it.
    """
    stragglers = [t for t in threading.enumerate()
                  if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stragglers:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
