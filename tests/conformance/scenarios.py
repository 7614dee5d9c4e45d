"""`eval` invocations whose console output must match `osmosis eval` 0.2.17's.

Each scenario is one or more runs of `eval` in a fresh copy of examples/calculator with its own
cache; the last run's output is what is compared. Golden text recorded from the reference lives
in golden/<name>.txt (bench/reference/record_golden.py writes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.conformance.masking import mask

REWARD = "reward_fn.compute_reward:numbers_match_reward"


def _flags(base_url: str, *extra: str, model: str = "scripted") -> list[str]:
    return ["--mcp", "./mcp", "-d", "test_data.jsonl", "--model", model, "--base-url", base_url,
            "--api-key", "EMPTY", *extra]


@dataclass(frozen=True, slots=True)
class Scenario:
    """`runs` gives each invocation's flags; `command` is `eval` or `test` (`rollout test`)."""

    name: str
    runs: Callable[[str], list[list[str]]]
    command: str = "eval"

    def argv(self, base_url: str) -> list[list[str]]:
        return self.runs(base_url)

    def upstream_command(self) -> list[str]:
        return ["rollout", "test"] if self.command == "test" else ["eval"]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("completed", lambda url: [_flags(url, "--eval-fn", REWARD, "--limit", "3")]),
    Scenario("already_completed",
             lambda url: [_flags(url, "--eval-fn", REWARD, "--limit", "2")] * 2),
    Scenario("pass_at_k",
             lambda url: [_flags(url, "--eval-fn", REWARD, "--limit", "2", "--n", "3")]),
    Scenario("wrong_answers", lambda url: [
        _flags(url, "--eval-fn", REWARD, "--limit", "2", model="scripted:wrong")]),
    Scenario("duplicate_eval_fn", lambda url: [
        _flags(url, "--eval-fn", REWARD, "--eval-fn", REWARD, "--limit", "1")]),
    Scenario("missing_eval_fn", lambda url: [_flags(url, "--limit", "1")]),
    Scenario("fresh_with_retry_failed", lambda url: [
        _flags(url, "--eval-fn", REWARD, "--fresh", "--retry-failed")]),
    Scenario("cache_ls", lambda url: [_flags(url, "--eval-fn", REWARD, "--limit", "1"),
                                      ["cache", "ls"]]),
    Scenario("cache_ls_no_match", lambda url: [
        _flags(url, "--eval-fn", REWARD, "--limit", "1"), ["cache", "ls", "--model", "absent"]]),
    Scenario("cache_rm_without_target", lambda url: [["cache", "rm"]]),
    Scenario("cache_rm_unknown_task", lambda url: [["cache", "rm", "0123456789ab"]]),
    Scenario("cache_rm_all", lambda url: [_flags(url, "--eval-fn", REWARD, "--limit", "1"),
                                          ["cache", "rm", "--all", "-y"], ["cache", "ls"]]),
    Scenario("test_completed", lambda url: [_flags(url, "--limit", "2")], command="test"),
    Scenario("test_window", lambda url: [_flags(url, "--offset", "3", "--limit", "2")],
             command="test"),
    Scenario("test_row_without_interactive", lambda url: [_flags(url, "--row", "1")],
             command="test"),
)


def render(stdout: str, stderr: str, exit_code: int) -> str:
    """Masked stdout, the `Error` lines of stderr (not library warnings) and the exit code."""
    errors = "".join(line + "\n" for line in stderr.splitlines() if line.startswith("Error"))
    shown = mask(errors) if errors else ""
    return f"--- stdout\n{mask(stdout)}--- stderr\n{shown}--- exit {exit_code}\n"
