"""What osmosis-ai 0.3.8 (`osmosis eval run`, CPython 3.12, `--dataset-file`, the scripted
model behind `OPENAI_BASE_URL`, started with `--first-id 100`) produced on
tests/fixtures/workspaces/calculator, in the order of the tests: calculator, the same again, an
edit, `--fresh`; faults, `--retry-failed`; repeated.

Recorded by running the reference locally (docs/osmosis-v03.md says how); its code is not part
of this repository. Durations and rollout ids differ from run to run and are not pinned.
"""

from __future__ import annotations

from typing import Any

CALCULATOR_SUMMARY: dict[str, Any] = {
    "total_samples": 5, "completed_samples": 5, "graded": 5, "passed": 3, "failed": 0,
    "skipped": 0, "pass_rate": 0.6, "pass_threshold": 1.0, "tokens_used": 540,
    "reward_stats": {"mean": 0.6, "median": 1.0, "std": 0.4898979485566356, "min": 0.0,
                     "max": 1.0},
}
CALCULATOR_COUNTS = {"total_work_items": 5, "dispatched": 5, "succeeded": 5, "failed": 0,
                     "skipped": 0, "resumed": 0}
CALCULATOR_ROWS = [  # (row_index, status, reward, tokens)
    (0, "success", 1.0, 134),
    (1, "success", 1.0, 136),
    (2, "success", 0.0, 132),
    (3, "success", 0.0, 50),
    (4, "success", 1.0, 88),
]
RESUMED_COUNTS = {"total_work_items": 5, "dispatched": 0, "succeeded": 5, "failed": 0,
                  "skipped": 0, "resumed": 5}
RESUMED_MESSAGE = "Run 'ref' was already complete; nothing ran: .osmosis/evals/ref"
CHANGED_ROLLOUT_ERROR = {
    "code": "VALIDATION",
    "message": "run 'ref' was created with different resolved inputs, so resuming it would mix "
               "versions inside one set of metrics. Changed: rollout. Restart under the same "
               "name with --fresh (the previous results are archived, never deleted).",
    "details": {},
}
RUN_FILES = {  # rollout ids replaced by ID
    "events.jsonl", "index.jsonl", "logs.txt", "manifest.json", "metrics.json", "progress.json",
    "summary.jsonl", "rollout_trials/ID/.osmosis-health-check", "rollout_trials/ID/trajectory.json",
    *(f"trajectories/row_{row}_run_0.json" for row in range(5)),
}
MANIFEST_INPUTS_WITHOUT_DIGEST: dict[str, Any] = {
    "model_path": "openai/scripted",
    "dataset": {"sha256": "1aefc0021d62b9a837597927a5b7464e47b68c50b6c9ef8390c2b7f502af7890",
                "selected_source_rows": "0-4"},
    "n": 1,
    "rollout": {"name": "calculator", "entrypoint": "main.py"},
    "env": {"CALCULATOR_LOG_LEVEL": "WARNING"},
    "secret_names": ["OPENAI_API_KEY"],
    "timeouts": {"agent_timeout_sec": 30.0, "grader_timeout_sec": 10.0},
    "versions": {"rollout_protocol": "0.4", "dataset_normalization": 1, "state_schema": 1},
}
FAULTS_SUMMARY: dict[str, Any] = {
    "total_samples": 4, "completed_samples": 3, "graded": 1, "passed": 1, "failed": 2,
    "skipped": 1, "pass_rate": 0.3333333333333333, "pass_threshold": 1.0, "tokens_used": 256,
    "reward_stats": {"mean": 1.0, "median": 1.0, "std": 0.0, "min": 1.0, "max": 1.0},
}
FAULTS_ROWS = [  # (row_index, status, reward, tokens, error_type, has trajectory)
    (0, "success", 1.0, 86, None, True),
    (1, "failed", None, None, "timeout", False),
    (2, "failed", None, 84, "validation_error", True),
    (3, "skipped", None, 86, None, True),
]
FAULTS_FAILED_ROWS = [(1, "timeout"), (2, "validation_error"), (3, None)]
REPEATED_SUMMARY: dict[str, Any] = {  # configs/eval/repeated.toml (n = 3) with --rows 0,2-3
    "total_samples": 9, "completed_samples": 9, "graded": 9, "passed": 3, "failed": 0,
    "skipped": 0, "pass_rate": 0.3333333333333333, "pass_threshold": 0.5, "tokens_used": 948,
    "reward_stats": {"mean": 0.3333333333333333, "median": 0.0, "std": 0.4714045207910317,
                     "min": 0.0, "max": 1.0},
    "n_runs": 3,
    "pass_at_k": [{"k": 1, "value": 0.3333333333333333}, {"k": 2, "value": 0.3333333333333333}],
}
REPEATED_SELECTION = "0,2-3"
