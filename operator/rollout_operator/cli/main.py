"""`rolloutctl`: Osmosis-compatible local commands and, later, the operator's entry points."""

from __future__ import annotations

import os
import sys

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
    from rollout_operator.cli.test_cmd import test_command
    from rollout_operator.cli.validate_cmd import validate_command

    cli.add_command(test_command)
    cli.add_command(eval_group)
    cli.add_command(validate_command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="rolloutctl", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
