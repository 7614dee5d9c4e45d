"""`rolloutctl`: Osmosis-compatible local commands and, later, the operator's entry points."""

from __future__ import annotations

import os
import sys

import click

from rollout_operator import __version__
from rollout_operator.cli.process_exit import exit_now


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rolloutctl")
def cli() -> None:
    """Run agentic LLM rollouts from an Osmosis Local Rollout repo, locally or on Kubernetes."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True))
    # litellm fetches a price map from the internet at import unless told otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _register() -> None:
    from rollout_operator.cli.describe_cmd import describe_command
    from rollout_operator.cli.eval_cmd import eval_group
    from rollout_operator.cli.export_cmd import export_command
    from rollout_operator.cli.operator_cmd import operator_command
    from rollout_operator.cli.pod_aggregate import aggregate_command
    from rollout_operator.cli.pod_inspect import inspect_command
    from rollout_operator.cli.pod_serve_scorers import serve_scorers_command
    from rollout_operator.cli.pod_serve_tools import serve_tools_command, unpack_bundle_command
    from rollout_operator.cli.pod_sync import sync_command
    from rollout_operator.cli.pod_work import work_command
    from rollout_operator.cli.render_cmd import render_command
    from rollout_operator.cli.report_cmd import report_command
    from rollout_operator.cli.run_cmd import run_command
    from rollout_operator.cli.runs_cmd import runs_command
    from rollout_operator.cli.test_cmd import test_command
    from rollout_operator.cli.validate_cmd import validate_command

    cli.add_command(test_command)
    cli.add_command(eval_group)
    cli.add_command(validate_command)
    cli.add_command(operator_command)
    cli.add_command(render_command)
    cli.add_command(run_command)
    cli.add_command(export_command)
    cli.add_command(runs_command)
    cli.add_command(describe_command)
    cli.add_command(work_command)
    cli.add_command(aggregate_command)
    cli.add_command(sync_command)
    cli.add_command(serve_tools_command)
    cli.add_command(serve_scorers_command)
    cli.add_command(inspect_command)
    cli.add_command(unpack_bundle_command)
    cli.add_command(report_command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="rolloutctl", standalone_mode=True)
    except KeyboardInterrupt:
        exit_now(130)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        exit_now(code)
    exit_now(0)


if __name__ == "__main__":
    main()
