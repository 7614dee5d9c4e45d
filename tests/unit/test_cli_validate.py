"""`rolloutctl validate`: the calculator example passes, and each kind of breakage is named with
the file it is in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rollout_operator.cli.validate_cmd import validate_command

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = ROOT / "examples" / "calculator"

GOOD_ROW = {
    "system_prompt": "You are a calculator.",
    "user_prompt": "What is 2 * 3?",
    "ground_truth": "6",
}

TOOL_SERVER = """\
from fastmcp import FastMCP

mcp = FastMCP("t")


@mcp.tool
def double(x: float) -> float:
    \"\"\"Twice x.\"\"\"
    return 2 * x
"""

REWARD = """\
from osmosis_ai import osmosis_reward


@osmosis_reward
def exact(solution_str: str, ground_truth: str, extra_info: dict = None, **kwargs):
    return 1.0 if solution_str.strip() == ground_truth else 0.0
"""


def run_validate(*args: str) -> Result:
    return CliRunner().invoke(validate_command, list(args), env={"COLUMNS": "200"})


def report_of(*args: str) -> tuple[int, dict[str, Any]]:
    result = run_validate(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


def write_repo(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def jsonl(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def good_repo(root: Path) -> dict[str, str]:
    return {
        "mcp/main.py": TOOL_SERVER,
        "reward_fn/exact.py": REWARD,
        "test_data.jsonl": jsonl(GOOD_ROW, GOOD_ROW),
    }


def test_calculator_example_is_valid() -> None:
    result = run_validate(str(CALCULATOR))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in (
        "multiply",
        "add",
        "first_val, second_val",
        "reward_fn.compute_reward:numbers_match_reward",
        "reward_rubric.reward_rubric_openai:calculator_rubric_openai",
        "test_data.jsonl",
        "No problems found.",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_calculator_example_json_report() -> None:
    code, report = report_of(str(CALCULATOR))
    assert code == 0
    assert report["ok"] is True
    assert report["problems"] == []
    tools = {tool["name"]: tool for tool in report["tools"]}
    assert set(tools) == {"multiply", "add"}
    assert tools["multiply"]["parameters"] == ["first_val", "second_val"]
    assert tools["multiply"]["description"].startswith("Calculate the product")
    scorers = {s["ref"]: s for s in report["scorers"]}
    reward = scorers["reward_fn.compute_reward:numbers_match_reward"]
    assert (reward["kind"], reward["file"]) == ("reward", "reward_fn/compute_reward.py")
    rubric = scorers["reward_rubric.reward_rubric_openai:calculator_rubric_openai"]
    assert (rubric["kind"], rubric["file"]) == ("rubric", "reward_rubric/reward_rubric_openai.py")
    assert report["datasets"] == [
        {"file": "test_data.jsonl", "rows": 20, "bad_rows": 0, "error": None}
    ]


def test_default_repo_is_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CALCULATOR)
    code, report = report_of()
    assert code == 0
    assert Path(report["repo"]) == CALCULATOR.resolve()
    assert {tool["name"] for tool in report["tools"]} == {"multiply", "add"}


def test_a_small_good_repo_passes(tmp_path: Path) -> None:
    code, report = report_of(str(write_repo(tmp_path, good_repo(tmp_path))))
    assert code == 0, report["problems"]
    assert [tool["name"] for tool in report["tools"]] == ["double"]
    assert [s["ref"] for s in report["scorers"]] == ["reward_fn.exact:exact"]
    assert report["datasets"][0]["rows"] == 2


def test_missing_main_py_is_named(tmp_path: Path) -> None:
    files = good_repo(tmp_path)
    files["mcp/server.py"] = files.pop("mcp/main.py")
    result = run_validate(str(write_repo(tmp_path, files)))
    assert result.exit_code == 1
    assert "mcp/main.py" in result.stdout
    assert "missing: the repo folder needs mcp/main.py" in result.stdout
    code, report = report_of(str(tmp_path))
    assert code == 1
    assert [(p["area"], p["file"]) for p in report["problems"]] == [("tools", "mcp/main.py")]
    assert report["tools"] == []
    # The rest of the repo is still checked.
    assert [s["ref"] for s in report["scorers"]] == ["reward_fn.exact:exact"]


def test_reward_module_with_a_syntax_error_is_named(tmp_path: Path) -> None:
    files = good_repo(tmp_path)
    files["reward_fn/broken.py"] = "def score(solution_str:\n    return 1.0\n"
    result = run_validate(str(write_repo(tmp_path, files)))
    assert result.exit_code == 1
    assert "reward_fn/broken.py" in result.stdout
    assert "SyntaxError" in result.stdout
    _, report = report_of(str(tmp_path))
    assert [(p["area"], p["file"]) for p in report["problems"]] == [
        ("scorers", "reward_fn/broken.py")
    ]
    # The good module next to it still loads.
    assert [s["ref"] for s in report["scorers"]] == ["reward_fn.exact:exact"]


def test_bad_dataset_row_reports_the_first_error_per_file(tmp_path: Path) -> None:
    files = good_repo(tmp_path)
    no_prompt = {k: v for k, v in GOOD_ROW.items() if k != "user_prompt"}
    int_truth = {**GOOD_ROW, "ground_truth": 6}
    files["test_data.jsonl"] = jsonl(GOOD_ROW, no_prompt, GOOD_ROW, int_truth)
    files["more.csv"] = "system_prompt,user_prompt,ground_truth\nsys,What is 1 * 1?,1\n"
    result = run_validate(str(write_repo(tmp_path, files)))
    assert result.exit_code == 1
    assert "test_data.jsonl" in result.stdout
    assert "test_data.jsonl: line 2: Missing required columns: ['user_prompt']" in result.stdout
    _, report = report_of(str(tmp_path))
    assert report["problems"] == [
        {
            "area": "dataset",
            "file": "test_data.jsonl",
            "message": "line 2: Missing required columns: ['user_prompt'] (2 bad rows in all)",
        }
    ]
    datasets = {d["file"]: d for d in report["datasets"]}
    assert datasets["test_data.jsonl"]["rows"] == 4
    assert datasets["test_data.jsonl"]["bad_rows"] == 2
    assert datasets["more.csv"] == {"file": "more.csv", "rows": 1, "bad_rows": 0, "error": None}


def test_tool_with_an_invalid_name_is_reported(tmp_path: Path) -> None:
    files = good_repo(tmp_path)
    files["mcp/main.py"] = TOOL_SERVER + textwrap.dedent(
        """

        @mcp.tool(name="bad-name")
        def bad(x: float) -> float:
            return x
        """
    )
    code, report = report_of(str(write_repo(tmp_path, files)))
    assert code == 1
    assert [tool["name"] for tool in report["tools"]] == ["double"]
    [problem] = report["problems"]
    assert problem["area"] == "tools"
    assert problem["file"] == "mcp"
    assert "bad-name" in problem["message"]


def test_every_problem_is_listed_together(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "mcp/tools.py": TOOL_SERVER,
            "reward_rubric/judge.py": "import no_such_module_for_validate\n",
            "data.jsonl": jsonl(GOOD_ROW) + "{oops\n",
        },
    )
    code, report = report_of(str(tmp_path))
    assert code == 1
    files = {p["file"]: p["message"] for p in report["problems"]}
    assert set(files) == {"mcp/main.py", "reward_rubric/judge.py", "data.jsonl"}
    assert "no_such_module_for_validate" in files["reward_rubric/judge.py"]
    assert files["data.jsonl"].startswith("line 2: not valid JSON: ")


def test_missing_repo_folder_fails(tmp_path: Path) -> None:
    code, report = report_of(str(tmp_path / "nowhere"))
    assert code == 1
    assert report["problems"][0]["area"] == "repo"


def test_notes_do_not_fail_a_repo(tmp_path: Path) -> None:
    result = run_validate(str(write_repo(tmp_path, {"mcp/main.py": TOOL_SERVER,
                                                    "test_data.jsonl": jsonl(GOOD_ROW)})))
    assert result.exit_code == 0, result.output
    assert "no @osmosis_reward" in result.stdout


def _manifest(path: Path, repo: Path, model: dict[str, Any], **spec: Any) -> Path:
    document = {"apiVersion": "rollouts.dev/v1alpha1", "kind": "RolloutRun",
                "metadata": {"name": "checked"},
                "spec": {"repo": {"url": str(repo)}, "model": model, **spec}}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_validate_refuses_what_run_refuses_with_the_same_words(tmp_path: Path) -> None:
    """A repo without mcp/: `validate` fails it, and `run` stops before anything starts with
    the same problem (both through `local.preflight`)."""
    repo = write_repo(tmp_path / "repo", {"reward_fn/exact.py": REWARD,
                                          "test_data.jsonl": jsonl(GOOD_ROW)})
    code, report = report_of(str(repo))
    assert code == 1
    [problem] = report["problems"]
    assert (problem["area"], problem["file"]) == ("tools", "mcp/main.py")
    path = _manifest(tmp_path / "run.yaml", repo,
                     {"name": "openai/served", "baseURL": "http://127.0.0.1:9/v1"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    run = subprocess.run([sys.executable, "-m", "rollout_operator.cli.main", "run", "-f",
                          str(path), "--json", "--output", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 2, run.stderr
    refused = json.loads(run.stdout)
    assert [(p["file"], p["message"]) for p in refused["problems"]] == [
        ("mcp/main.py", problem["message"])]
    assert not (tmp_path / "out").exists()


def test_validate_with_a_manifest_checks_the_keys_run_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = write_repo(tmp_path / "repo", good_repo(tmp_path / "repo"))
    for name in ("ROLLOUT_MODEL_API_KEY", "ANTHROPIC_API_KEY", "LITELLM_API_KEY", "JUDGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    path = _manifest(tmp_path / "run.yaml", repo, {"name": "anthropic/claude-sonnet-4-5"},
                     scoring={"secrets": [{"env": "JUDGE_KEY", "secretKeyRef": {
                         "name": "judge", "key": "key"}}]})
    code, report = report_of("-f", str(path))
    assert code == 1
    assert [p["area"] for p in report["problems"]] == ["model", "secrets"]
    assert "ANTHROPIC_API_KEY" in report["problems"][0]["message"]
    assert "JUDGE_KEY is not set" in report["problems"][1]["message"]
    assert [t["name"] for t in report["tools"]] == ["double"]  # the manifest's repo is checked
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    code, report = report_of("-f", str(path))
    assert code == 0, report["problems"]


@pytest.mark.slow
def test_rolloutctl_validate_subcommand(tmp_path: Path) -> None:
    """The installed command line reaches the same command (registration in the CLI group)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    command = [sys.executable, "-m", "rollout_operator.cli.main", "validate"]
    good = subprocess.run(
        [*command, "--json", str(CALCULATOR)], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert {tool["name"] for tool in json.loads(good.stdout)["tools"]} == {"multiply", "add"}
    bad = subprocess.run(
        [*command, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120,
        cwd=write_repo(tmp_path, {"mcp/x.py": "", "test_data.jsonl": "{}\n"}),
    )
    assert bad.returncode == 1
    assert "mcp/main.py" in bad.stdout
