"""`rolloutctl`: Osmosis-compatible local commands and, later, the operator's entry points."""

from __future__ import annotations

import os
import sys

import click

from rollout_operator import __version__
from rollout_operator.cli.lazy_group import LazyCommand, LazyGroup
from rollout_operator.cli.process_exit import exit_now

_CLI = "rollout_operator.cli."
COMMANDS: dict[str, LazyCommand] = {
    "describe": LazyCommand(_CLI + "describe_cmd:describe_command",
                            "Show one local run: conditions, counts, failures by category, "
                            "output paths."),
    "eval": LazyCommand(_CLI + "eval_cmd:eval_group",
                        "Evaluate a model on a dataset with eval functions (mean, pass@k), with "
                        "a resumable cache."),
    "export": LazyCommand(_CLI + "export_cmd:export_command",
                          "Export the trajectory records of RUN_OUTPUT, a run's folder or "
                          "object-store URL\n(<output.url>/<namespace>/<name>-<uid8>, the "
                          "runPrefix rolloutctl run prints), as\ntraining data. Masked and "
                          "invalid records are never exported."),
    "operator": LazyCommand(_CLI + "operator_cmd:operator_command",
                            "Watch RolloutRun resources and run them (what the Helm chart's "
                            "Deployment runs)."),
    "render": LazyCommand(_CLI + "render_cmd:render_command",
                          "Print the Kubernetes objects a RolloutRun would create, as a YAML "
                          "stream."),
    "report": LazyCommand(_CLI + "report_cmd:report_command",
                          "Write an HTML report of eval results or of a run's output."),
    "run": LazyCommand(_CLI + "run_cmd:run_command",
                       "Run a RolloutRun manifest on this machine: sync, tools, rollouts, "
                       "aggregate."),
    "runs": LazyCommand(_CLI + "runs_cmd:runs_command",
                        "List the local runs in OUTPUT (default ./rollout-output), newest first."),
    "test": LazyCommand(_CLI + "test_cmd:test_command",
                        "Run dataset rows through the agent loop and report which complete."),
    "validate": LazyCommand(_CLI + "validate_cmd:validate_command",
                            "Check that REPO's tools, reward functions, rubrics and datasets load "
                            "(default: .)."),
    "work": LazyCommand(_CLI + "pod_work:work_command", "", hidden=True),
    "aggregate": LazyCommand(_CLI + "pod_aggregate:aggregate_command", "", hidden=True),
    "sync": LazyCommand(_CLI + "pod_sync:sync_command", "", hidden=True),
    "serve-tools": LazyCommand(_CLI + "pod_serve_tools:serve_tools_command", "", hidden=True),
    "serve-scorers": LazyCommand(_CLI + "pod_serve_scorers:serve_scorers_command", "",
                                 hidden=True),
    "inspect": LazyCommand(_CLI + "pod_inspect:inspect_command", "", hidden=True),
    "unpack-bundle": LazyCommand(_CLI + "pod_serve_tools:unpack_bundle_command", "",
                                 hidden=True),
}
"""Every subcommand, imported only when it runs; `--help` lists them from this text."""


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rolloutctl")
def cli() -> None:
    """Run agentic LLM rollouts from an Osmosis Local Rollout repo, locally or on Kubernetes."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True))
    # litellm fetches a price map from the internet at import unless told otherwise.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


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
