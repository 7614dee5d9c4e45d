"""`rolloutctl test` as a process: output file, exit codes, flag errors, provider errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.loopback import free_port
from tests.support.scripted_model import ScriptedModelServer


def _test_args(base_url: str, model: str, *extra: str) -> list[str]:
    return ["test", "--mcp", "mcp", "-d", "test_data.jsonl", "--model", model,
            "--base-url", base_url, *extra]


def test_output_file_and_success_exit(scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    out = tmp_path / "test.json"
    done = run_cli(_test_args(scripted_model.base_url, "scripted", "--offset", "1", "--limit",
                              "2", "-o", str(out)))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["summary"]["total"] == 2 and document["summary"]["passed"] == 2
    assert document["summary"]["failed"] == 0
    assert [r["row_index"] for r in document["results"]] == [1, 2]
    result = document["results"][0]
    assert set(result) == {"row_index", "success", "error", "duration_ms", "token_usage",
                           "reward", "finish_reason"}
    assert result["reward"] is None and result["finish_reason"] == "stop"
    assert result["token_usage"]["num_llm_calls"] == 2
    assert result["token_usage"]["total_tokens"] == (
        result["token_usage"]["prompt_tokens"] + result["token_usage"]["completion_tokens"]
    )
    assert document["summary"]["total_tokens"] == sum(
        r["token_usage"]["total_tokens"] for r in document["results"]
    )
    assert "[1/2] Row 1: OK (" in done.stdout and "[2/2] Row 2: OK (" in done.stdout


def test_max_turns_counts_as_success(scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    done = run_cli(_test_args(scripted_model.base_url, "scripted:always-tool", "--limit", "1",
                              "--max-turns", "1", "-o", str(out)))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["success"] is True and result["finish_reason"] == "max_turns"


def test_failed_rows_exit_1_and_the_batch_goes_on(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    out = tmp_path / "t.json"
    done = run_cli(_test_args(scripted_model.base_url, "scripted:status-400", "--limit", "3",
                              "-o", str(out)))
    assert done.returncode == 1
    document = json.loads(out.read_text())
    assert document["summary"] == {**document["summary"], "total": 3, "failed": 3}
    assert all(r["error"] for r in document["results"])


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_systemic_status_stops_before_rows(
    scripted_model: ScriptedModelServer, status: str
) -> None:
    done = run_cli(_test_args(scripted_model.base_url, f"scripted:status-{status}"))
    assert done.returncode == 1
    assert status in done.stderr
    assert "Row 0" not in done.stdout


def test_connection_refused_is_systemic() -> None:
    done = run_cli(_test_args(f"http://127.0.0.1:{free_port()}/v1", "scripted"))
    assert done.returncode == 1
    assert "Error:" in done.stderr


def test_rate_limited_row_fails_alone(scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    done = run_cli(_test_args(scripted_model.base_url, "scripted:status-429", "--limit", "1",
                              "-o", str(out)))
    assert done.returncode == 1
    result = json.loads(out.read_text())["results"][0]
    assert result["success"] is False and "429" in result["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mcp", "mcp", "-m", "a:b", "-d", "x.jsonl"],
         "--module and --mcp are mutually exclusive."),
        (["-d", "test_data.jsonl"], "Either --module (-m) or --mcp is required."),
        (["--mcp", "mcp", "-d", "test_data.jsonl", "--row", "2"],
         "--row can only be used with --interactive mode"),
    ],
)
def test_flag_errors(args: list[str], message: str) -> None:
    done = run_cli(["test", *args])
    assert done.returncode != 0
    assert f"Error: {message}" in done.stderr


def test_missing_api_key_message(tmp_path: Path) -> None:
    done = run_cli(["test", "--mcp", "mcp", "-d", "test_data.jsonl", "--model", "gpt-5-mini"])
    assert done.returncode == 1
    assert ("Missing API key for provider 'openai'. Set OPENAI_API_KEY or LITELLM_API_KEY, "
            "or pass --api-key.") in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"system_prompt": "s", "user_prompt": "u"}\n',
         "Row 0: Missing required columns: ['ground_truth']"),
        ('{"system_prompt": "s", "user_prompt": "u", "ground_truth": 4}\n',
         "Row 0: 'ground_truth' must be a string, got int"),
        ('not json\n', "Invalid JSON at line 1"),
    ],
)
def test_bad_dataset_is_reported(
    scripted_model: ScriptedModelServer, tmp_path: Path, content: str, message: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    done = run_cli(["test", "--mcp", "mcp", "-d", str(data), "--model", "scripted",
                    "--base-url", scripted_model.base_url])
    assert done.returncode == 1
    assert message in done.stderr


def test_missing_main_py_is_reported(scripted_model: ScriptedModelServer, tmp_path: Path) -> None:
    done = run_cli(["test", "--mcp", str(tmp_path), "-d", "test_data.jsonl", "--model",
                    "scripted", "--base-url", scripted_model.base_url])
    assert done.returncode == 1
    assert "main.py" in done.stderr


def test_dotenv_in_working_directory_is_loaded(
    scripted_model: ScriptedModelServer, tmp_path: Path
) -> None:
    """A bare model name goes through litellm with the key and endpoint from ./.env (check 14)."""
    from tests.support.cli import EXAMPLE

    (tmp_path / ".env").write_text(
        f"OPENAI_API_KEY=sk-from-dotenv\nOPENAI_BASE_URL={scripted_model.base_url}\n"
    )
    out = tmp_path / "t.json"
    done = run_cli(["test", "--mcp", str(EXAMPLE / "mcp"), "-d",
                    str(EXAMPLE / "test_data.jsonl"), "--model", "gpt-5-mini", "--limit", "1",
                    "-o", str(out)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["summary"]["passed"] == 1
    assert scripted_model.requests[-1]["model"] == "gpt-5-mini"
