"""Values recorded from the Osmosis SDK 0.2.17 reference (commit 73c1eea0), pinned.

Each expected value below was computed by the reference itself (bench/reference/osmosis_0217.sh
builds it): its `compute_task_id`, `sanitize_path_part`, fingerprints, judge timeouts and
prompts, and the exit codes and messages of `osmosis eval`. Our code must give the same, or
`osmosis eval` and `rolloutctl eval` could not share a cache.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_operator.cli.eval_task_identity import (
    compute_task_id,
    dataset_fingerprint,
    eval_fns_fingerprint,
    mcp_fingerprint,
    sanitize_path_part,
    task_config,
)
from rollout_operator.runtime.osmosis_compat.judge_prompts import system_prompt, user_prompt
from rollout_operator.runtime.osmosis_compat.rubric import (
    DEFAULT_TIMEOUT_S,
    default_timeout,
    litellm_model_name,
)
from tests.conformance.scenarios import REWARD
from tests.support.cli import EXAMPLE, run_cli
from tests.support.scripted_model import ScriptedModelServer

GOLDEN = Path(__file__).parent / "golden"

BASE: dict[str, Any] = {
    "model": "gpt-5-mini",
    "module": "mcp:/repo/mcp",
    "dataset": "test_data.jsonl",
    "eval_fns": [REWARD],
    "n_runs": 1,
    "max_turns": 10,
    "pass_threshold": 1.0,
}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ("b01101aac623", "b01101aac62319e40adc14498b136476")),
        (
            {"dataset_fingerprint": "d" * 32, "module_fingerprint": "m" * 32,
             "eval_fns_fingerprint": "e" * 32},
            ("1f95561df511", "1f95561df511410f44f0e63738894b97"),
        ),
        (
            {"completion_params": {"temperature": 0.7, "max_tokens": 256}, "limit": 5,
             "offset": 2, "n_runs": 4, "pass_threshold": 0.5},
            ("53c6b06d90a2", "53c6b06d90a246f01d6b4d4ec6a513de"),
        ),
        (
            {"base_url": "http://127.0.0.1:8000/v1", "baseline_model": "Qwen/Qwen3-8B",
             "baseline_base_url": "http://127.0.0.1:8001/v1"},
            ("5b6f891c9f04", "5b6f891c9f04fe5d940dfca41918cbc7"),
        ),
        ({"eval_fns": ["b:z", "a:y"]}, ("62417731db86", "62417731db86ca556a1db919da64da2f")),
        ({"completion_params": {"temperature": -0.0}},
         ("2842029608b1", "2842029608b1834e0a477ecb23f8db3b")),
    ],
    ids=["plain", "fingerprints", "params-window", "baseline", "unsorted-fns", "negative-zero"],
)
def test_task_id_and_config_hash_match_the_reference(
    extra: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert compute_task_id(task_config(**{**BASE, **extra})) == expected


def test_an_empty_completion_params_is_stored_but_not_hashed() -> None:
    config = task_config(**BASE, completion_params={})
    assert config["completion_params"] == {}
    assert compute_task_id(config) == ("b01101aac623", "b01101aac62319e40adc14498b136476")


def test_non_finite_floats_are_refused_as_upstream_does() -> None:
    with pytest.raises(ValueError, match="Non-finite float inf in eval config"):
        compute_task_id(task_config(**{**BASE, "pass_threshold": float("inf")}))


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("openai/gpt-5-mini", "openai-gpt-5-mini"),
        ("scripted:sleep-300", "scripted-sleep-300"),
        ("Qwen/Qwen3-8B", "qwen-qwen3-8b"),
        ("test_data", "test_data"),
        ("Données été", "donnees-ete"),
        ("CON", "_con"),
        ("", "eval-99aa06d3"),
        ("a" * 80, "a" * 55 + "_e0e0"),
        ("模型/名字", "模型-名字"),
    ],
)
def test_cache_folder_names_match_the_reference(name: str, folder: str) -> None:
    assert sanitize_path_part(name) == folder


def test_fingerprints_of_the_calculator_example_match_the_reference(tmp_path: Path) -> None:
    repo = tmp_path / "calculator"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    assert dataset_fingerprint(repo / "test_data.jsonl") == "1b14a0378a007f7e162ab76096cddcaf"
    assert mcp_fingerprint(repo / "mcp") == "510c685ece338738b7fdf250a39d5fa7"
    # The eval functions' fingerprint hashes absolute paths, so it moves with the checkout: the
    # reference gave d019d709... for /tmp/ref/calc; here it is only stable and path-sensitive.
    first = eval_fns_fingerprint([REWARD], repo)
    assert first is not None and first == eval_fns_fingerprint([REWARD, REWARD], repo)
    moved = tmp_path / "elsewhere"
    shutil.copytree(repo, moved)
    assert eval_fns_fingerprint([REWARD], moved) not in (None, first)


@pytest.mark.parametrize(
    ("provider", "model", "seconds"),
    [
        ("openai", "gpt-4o", 30.0),
        ("openai", "gpt-5-mini", 45.0),
        ("OpenAI", "GPT-5", 45.0),
        ("anthropic", "claude-sonnet-4-5", 30.0),
        ("xai", "grok-3", 45.0),
        ("xai", "grok-4-fast", 60.0),
        ("gemini", "gemini-2.5-pro", 45.0),
        ("cerebras", "llama", 60.0),
        ("openrouter", "x", 60.0),
        ("azure", "gpt-5", 30.0),
        ("groq", "llama", 30.0),
    ],
)
def test_judge_default_timeouts_match_the_reference(
    provider: str, model: str, seconds: float
) -> None:
    assert default_timeout(provider, model) == seconds
    assert DEFAULT_TIMEOUT_S == 30.0


@pytest.mark.parametrize(
    ("provider", "model", "litellm_model"),
    [
        ("openai", "gpt-5-mini", "openai/responses/gpt-5-mini"),
        ("OpenAI", "GPT-5-turbo", "openai/responses/GPT-5-turbo"),
        ("anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
        ("", "gpt-4o", "gpt-4o"),
    ],
)
def test_judge_model_names_match_the_reference(
    provider: str, model: str, litellm_model: str
) -> None:
    assert litellm_model_name(provider, model) == litellm_model


def test_judge_prompts_state_the_range_as_the_reference_does() -> None:
    # The reference's _build_user_prompt(..., score_min=0.0, score_max=1.0, ...) line, verbatim,
    # and the range sentence of its system prompt ("between 0.0 and 1.0 (inclusive)").
    user = user_prompt("Score it.", "#### 42", 0, 1, ground_truth="42", metadata={"k": 1})
    assert "\nScore range: 0.0 to 1.0.\n" in user
    for label in ("CANDIDATE_OUTPUT", "GROUND_TRUTH", "METADATA"):
        assert f"<<<BEGIN_{label}>>>" in user and f"<<<END_{label}>>>" in user
    assert "between 0.0 and 1.0 (inclusive)" in system_prompt(0, 1)
    assert "between 0.0 and 10.0 (inclusive)" in system_prompt(0.0, 10)


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


def test_a_cache_left_by_osmosis_eval_is_resumed(
    model: ScriptedModelServer, tmp_path: Path
) -> None:
    """The reference's own in-progress cache file (3 of 5 runs), at the place it put it."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = task_config(
        model="scripted", base_url=model.base_url, module=f"mcp:{(repo / 'mcp').resolve()}",
        dataset="test_data.jsonl", eval_fns=[REWARD], n_runs=1, max_turns=10,
        pass_threshold=1.0, offset=0, limit=5, completion_params={},
        dataset_fingerprint=dataset_fingerprint(repo / "test_data.jsonl"),
        module_fingerprint=mcp_fingerprint(repo / "mcp"),
        eval_fns_fingerprint=eval_fns_fingerprint([REWARD], repo),
    )
    task_id, config_hash = compute_task_id(config)
    recorded = json.loads((GOLDEN / "reference_cache_in_progress.json").read_text())
    recorded.update(task_id=task_id, config_hash=config_hash, config=config)
    folder = tmp_path / "cache" / "eval" / "scripted" / "test_data"
    folder.mkdir(parents=True)
    written = folder / f"{int(time.time()) - 60}_{task_id}.json"
    written.write_text(json.dumps(recorded))

    before = len(model.requests)
    result = run_cli(
        ["eval", "--mcp", "./mcp", "-d", "test_data.jsonl", "--model", "scripted",
         "--base-url", model.base_url, "--api-key", "EMPTY", "--eval-fn", REWARD,
         "--limit", "5"],
        cwd=repo, env={"OSMOSIS_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr
    assert "Resuming eval (3/5 runs completed)" in result.stdout
    assert f"Cache: {written}" in result.stdout
    # the one-token check, then two model calls for each of the two runs left
    assert len(model.requests) - before == 1 + 2 * 2
    document = json.loads(written.read_text())
    assert document["status"] == "completed"
    assert [(r["row_index"], r["run_index"]) for r in document["runs"]] == [
        (i, 0) for i in range(5)
    ]
    assert set(document) == {*recorded, "summary"}
    assert set(document["runs"][4]) == set(recorded["runs"][0])
