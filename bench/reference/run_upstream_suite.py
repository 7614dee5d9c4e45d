"""Run the Osmosis SDK 0.2.17 unit tests against rollout-operator's compatibility layer.

    .venv/bin/python bench/reference/run_upstream_suite.py --sdk /tmp/ref/osmosis-sdk

`--sdk` is an extracted `git archive 73c1eea0` of Osmosis-AI/osmosis-sdk-python (see
`bench/reference/osmosis_0217.sh`). The script copies the upstream test files that exercise
behaviour we reproduce into a scratch folder, beside a small `osmosis_ai` package that maps
upstream's module names onto our code (`runtime/osmosis_compat`, `runtime/dataset`,
`cli/eval_task_identity`, `runtime/metrics`). Upstream names we do not reproduce (its cache
backend classes, its request types) are stand-ins that skip the test using them: those tests
are reported as not applicable. Tests whose upstream behaviour we change on purpose are listed in
`INTENDED` with the reason (and in docs/osmosis-compatibility.md); they count as explained.

Nothing from the SDK is imported: the tests run in this project's venv, against our code only.
The report (pass / fail / n-a, per file, and every failure) is printed and, with `--json`,
written to a file. Exit status 1 when a failure is neither passing nor explained.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

UPSTREAM_TESTS = (
    "tests/unit/test_utils.py",
    "tests/unit/test_rubric_eval.py",
    "tests/unit/rollout/eval/common/test_dataset.py",
    "tests/unit/rollout/eval/evaluation/test_cache.py",
)
"""Upstream test files about the decorators, the judge, datasets and task ids / caches."""

INTENDED: dict[str, str] = {
    "TestBuildSummary::test_pass_at_k": (
        "pass@k keys are strings (\"1\", \"2\") in memory as in the JSON both tools write"
    ),
    "TestBuildSummary::test_pass_at_k_with_fewer_passes_than_k": (
        "pass@k keys are strings (\"1\", \"2\") in memory as in the JSON both tools write"
    ),
}
"""Upstream test (file::name suffix) -> why our behaviour differs on purpose."""

NOT_APPLICABLE: dict[str, str] = {
    "TestCacheLs::": "drives upstream's own EvalCommand class (our `eval cache ls` is tested here)",
    "TestCacheRm::": "drives upstream's own EvalCommand class (our `eval cache rm` is tested here)",
    "TestComputeEvalFnsFingerprint::test_different_modules_different_hash": (
        "hashes upstream's own module files (osmosis_ai.rollout.eval.evaluation.eval_fn)"
    ),
    "TestComputeEvalFnsFingerprint::test_order_independent": (
        "hashes upstream's own module files (osmosis_ai.rollout.eval.evaluation.eval_fn)"
    ),
}
"""Upstream test (file::name part) -> why it does not apply to our layer."""

NOT_PROVIDED_REASON = "upstream internal we do not reproduce"

_ADAPTERS: dict[str, str] = {
    "osmosis_ai/__init__.py": '''
        from rollout_operator.runtime.osmosis_compat import install_osmosis_ai as _install
        from rollout_operator.runtime.osmosis_compat.shim import PACKAGE_EXPORTS as _EXPORTS

        globals().update(_EXPORTS)
        __all__ = list(_EXPORTS)
    ''',
    "osmosis_ai/_stand_in.py": '''
        """Upstream names without a counterpart here: any use skips the test (not applicable)."""
        from typing import Any

        import pytest

        REASON = "upstream internal with no counterpart here: {}"


        class StandIn:
            def __init__(self, name: str) -> None:
                self._name = name

            def _skip(self) -> Any:
                pytest.skip(REASON.format(self._name))

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return self._skip()

            def __getattr__(self, name: str) -> Any:
                if name.startswith("_") or name == "pytestmark":
                    raise AttributeError(name)  # pytest's own probes while collecting
                return self._skip()

            def __iter__(self) -> Any:
                return self._skip()


        def stand_ins(namespace: dict[str, Any], *names: str) -> None:
            for name in names:
                namespace[name] = StandIn(name)


        class Missing:
            """A counterpart this checkout of rollout-operator lacks: using it fails the test."""

            def __init__(self, name: str) -> None:
                self._name = name

            def _fail(self) -> Any:
                raise AssertionError(f"not provided by this rollout-operator: {self._name}")

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return self._fail()

            def __getattr__(self, name: str) -> Any:
                if name.startswith("_") or name == "pytestmark":
                    raise AttributeError(name)
                return self._fail()


        def ours(module: str, name: str) -> Any:
            """`module.name` from our code, or a `Missing` when this checkout has no such thing."""
            import importlib

            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                return Missing(f"{module}.{name}")
    ''',
    "osmosis_ai/utils.py": '''
        from rollout_operator.runtime.osmosis_compat.decorators import (
            _is_str_hint as _is_str_annotation,
            osmosis_reward,
            osmosis_rubric,
        )
    ''',
    "osmosis_ai/rubric/__init__.py": "",
    "osmosis_ai/rubric/types.py": '''
        from rollout_operator.runtime.osmosis_compat.judge_errors import (
            MissingAPIKeyError,
            ModelNotFoundError,
            ProviderRequestError,
        )
        from rollout_operator.runtime.osmosis_compat.rubric import ModelInfo, RewardRubricRunResult
    ''',
    "osmosis_ai/rubric/eval.py": '''
        from typing import Any

        from rollout_operator.runtime.osmosis_compat import judge_prompts, rubric
        from rollout_operator.runtime.osmosis_compat.judge_errors import (
            MissingAPIKeyError,
            ModelNotFoundError,
            ProviderRequestError,
        )
        from osmosis_ai._stand_in import stand_ins

        stand_ins(globals(), "_select_text")

        from osmosis_ai._stand_in import ours

        DEFAULT_REQUEST_TIMEOUT_SECONDS = ours(rubric.__name__, "DEFAULT_TIMEOUT_S")
        _default_timeout_for_model = rubric.default_timeout
        _to_litellm_model = rubric.litellm_model_name


        def _build_user_prompt(
            rubric_prompt: str,
            score_min: float,
            score_max: float,
            candidate_output: str,
            original_input: str | None,
            ground_truth: str | None,
            metadata: dict[str, Any] | None,
        ) -> str:
            return judge_prompts.user_prompt(
                rubric_prompt, candidate_output, score_min, score_max,
                original_input=original_input, ground_truth=ground_truth, metadata=metadata,
            )


        import sys as _sys
        from litellm import completion as _litellm_completion  # patched by the tests


        class _PatchedLitellm:
            """litellm as the tests arranged it: their `completion` stand-in, the rest as is."""

            def __getattr__(self, name: str) -> Any:
                if name == "completion":
                    return globals()["_litellm_completion"]
                return getattr(_sys.modules["litellm"], name)


        def evaluate_rubric(*args: Any, **kwargs: Any) -> Any:
            saved = rubric._litellm
            rubric._litellm = _PatchedLitellm
            try:
                return rubric.evaluate_rubric(*args, **kwargs)
            finally:
                rubric._litellm = saved


        def _sanitize_json(raw: str) -> tuple[float, str]:
            verdict = judge_prompts.parse_verdict(raw)
            return verdict.score, verdict.explanation
    ''',
    "osmosis_ai/rollout/__init__.py": "",
    "osmosis_ai/rollout/eval/__init__.py": "",
    "osmosis_ai/rollout/eval/common/__init__.py": "",
    "osmosis_ai/rollout/eval/common/errors.py": '''
        from rollout_operator.runtime.errors import (
            DatasetParseError,
            DatasetValidationError,
            LocalExecutionError,
            ProviderError,
            SystemicProviderError,
            ToolValidationError,
        )
    ''',
    "osmosis_ai/rollout/eval/common/dataset.py": '''
        from typing import Any

        from rollout_operator.runtime import dataset as _dataset
        from osmosis_ai._stand_in import stand_ins


        class DatasetReader:
            """upstream's reader surface over our dataset module"""

            def __init__(self, file_path: str) -> None:
                self.file_path = file_path
                _dataset._checked_path(file_path)

            def read(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
                return [row.as_dict() for row in _dataset.iter_rows(
                    self.file_path, offset=offset, limit=limit)]

            def __len__(self) -> int:
                return _dataset.count_rows(self.file_path)


        stand_ins(globals(), "dataset_row_to_request")
    ''',
    "osmosis_ai/rollout/eval/evaluation/__init__.py": "",
    "osmosis_ai/rollout/eval/evaluation/report.py": '''
        from rollout_operator.runtime.metrics import pass_at_k
    ''',
    "osmosis_ai/rollout/eval/evaluation/cache.py": '''
        from pathlib import Path
        from typing import Any

        from rollout_operator.runtime import metrics
        from osmosis_ai._stand_in import ours, stand_ins

        _IDENT = "rollout_operator.cli.eval_task_identity"
        _CACHE = "rollout_operator.cli.eval_cache"
        _CACHE_VERSION = ours(_CACHE, "RESULTS_VERSION")
        _deterministic_json = ours(_IDENT, "deterministic_json")
        sanitize_path_part = ours(_IDENT, "sanitize_path_part")
        compute_dataset_fingerprint = ours(_IDENT, "dataset_fingerprint")
        _hash_file = ours(_IDENT, "dataset_fingerprint")  # xxh3-128 of a file's bytes
        _hash_directory_tree = ours(_IDENT, "mcp_fingerprint")  # relative path + bytes per .py


        def compute_task_id(**config: Any) -> tuple[str, str]:
            return ours(_IDENT, "compute_task_id")(config)


        def compute_module_fingerprint(module_path: str) -> str | None:
            if module_path.startswith("mcp:"):
                return ours(_IDENT, "mcp_fingerprint")(Path(module_path[4:]))
            return StandIn("compute_module_fingerprint (module:attr agents)")()


        def compute_eval_fns_fingerprint(eval_fn_paths: list[str]) -> str | None:
            return ours(_IDENT, "eval_fns_fingerprint")(eval_fn_paths, Path.cwd())


        def _get_cache_root() -> Path:
            return ours(_CACHE, "cache_root")()


        def _get_lock_timeout() -> int:
            return int(ours(_CACHE, "lock_timeout_from_env")())


        def build_summary(runs, eval_fn_names, pass_threshold, n_runs):
            return metrics.build_eval_summary(
                runs, list(eval_fn_names), n_runs=n_runs, pass_threshold=pass_threshold)


        from osmosis_ai._stand_in import StandIn

        stand_ins(
            globals(),
            "CacheConfig", "CacheFlushController", "DatasetIntegrityChecker", "DatasetStatus",
            "JsonFileCacheBackend", "_backup_corrupt_cache", "_resolve_source_file",
            "atomic_write_json",
        )
    ''',
    "pytest.ini": '''
        [pytest]
        asyncio_mode = auto
        filterwarnings =
            ignore::pytest.PytestAssertRewriteWarning
    ''',
    "conftest.py": '''
        import pytest


        @pytest.fixture(autouse=True)
        def _clean_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
            for name in ("OSMOSIS_CACHE_DIR", "XDG_CACHE_HOME", "OSMOSIS_EVAL_LOCK_TIMEOUT"):
                monkeypatch.delenv(name, raising=False)
    ''',
}


def write_scratch(sdk: Path, scratch: Path) -> list[Path]:
    """The adapter package and the copied upstream tests; returns the test files."""
    for relative, text in _ADAPTERS.items():
        target = scratch / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    copied = []
    for relative in UPSTREAM_TESTS:
        source = sdk / relative
        if not source.is_file():
            raise SystemExit(f"{source} not found: is --sdk an extracted osmosis-sdk 0.2.17?")
        target = scratch / "upstream" / Path(relative).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target)
    return copied


def run_pytest(scratch: Path, tests: list[Path]) -> Path:
    report = scratch / "junit.xml"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
        "--continue-on-collection-errors",
        "--rootdir", str(scratch), f"--junitxml={report}", "-o", "junit_family=xunit2",
        *map(str, tests),
    ]
    subprocess.run(command, cwd=scratch, check=False, env=_env(scratch))
    return report


def _env(scratch: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch), env.get("PYTHONPATH")]))
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


def classify(report: Path) -> dict[str, list[dict[str, str]]]:
    """pass / fail / explained / n-a, each a list of {test, detail}."""
    outcome: dict[str, list[dict[str, str]]] = {"pass": [], "fail": [], "explained": [], "n/a": []}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        module = case.get("classname", "").split(".")[1] if "." in case.get("classname", "") else ""
        test = f"{module}.py::{name}" if module else name
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        not_applicable = next((k for k in NOT_APPLICABLE if k in test), None)
        if not_applicable is not None:
            outcome["n/a"].append({"test": test, "detail": NOT_APPLICABLE[not_applicable]})
        elif failure is not None:
            detail = (failure.get("message") or "").splitlines()[0][:200] if failure.get(
                "message") else ""
            key = next((k for k in INTENDED if test.endswith(k)), None)
            if key is not None:
                outcome["explained"].append({"test": test, "detail": INTENDED[key]})
            else:
                outcome["fail"].append({"test": test, "detail": detail})
        elif skipped is not None:
            outcome["n/a"].append({"test": test, "detail": skipped.get("message", "")})
        else:
            outcome["pass"].append({"test": test, "detail": ""})
    return outcome


def _markdown(
    per_file: dict[str, Counter[str]],
    counts: Counter[str],
    outcome: dict[str, list[dict[str, str]]],
) -> str:
    lines = [
        "# Osmosis SDK 0.2.17 unit tests against rollout-operator",
        "",
        "Produced by `bench/reference/run_upstream_suite.py --sdk <0.2.17 source>` (commit",
        "73c1eea0 of Osmosis-AI/osmosis-sdk-python, extracted by",
        "`bench/reference/osmosis_0217.sh`).",
        "",
        "| file | pass | fail | differs on purpose | not applicable |",
        "|---|---|---|---|---|",
    ]
    for file, c in sorted(per_file.items()):
        lines.append(f"| {file} | {c['pass']} | {c['fail']} | {c['explained']} | {c['n/a']} |")
    lines.append(f"| total | {counts['pass']} | {counts['fail']} | {counts['explained']} "
                 f"| {counts['n/a']} |")
    lines += ["", "## Failures", ""]
    lines += [f"- `{i['test']}`: {i['detail']}" for i in outcome["fail"]] or ["None."]
    lines += ["", "## Differences on purpose", ""]
    lines += [f"- `{i['test']}`: {i['detail']}" for i in outcome["explained"]] or ["None."]
    reasons = Counter(i["detail"] for i in outcome["n/a"])
    lines += ["", "## Not applicable (reason: tests)", ""]
    lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", type=Path, required=True, help="extracted osmosis-sdk 0.2.17")
    parser.add_argument("--scratch", type=Path, default=None, help="kept when given")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the counts, the explained and n/a tests here")
    args = parser.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="osmosis-upstream-"))
    if scratch.exists() and args.scratch is not None:
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    tests = write_scratch(args.sdk.resolve(), scratch)
    outcome = classify(run_pytest(scratch, tests))
    counts = Counter({key: len(value) for key, value in outcome.items()})
    per_file: dict[str, Counter[str]] = {}
    for key, items in outcome.items():
        for item in items:
            per_file.setdefault(item["test"].split("::", 1)[0], Counter())[key] += 1
    print("\nupstream 0.2.17 suite against rollout-operator")
    for file, c in sorted(per_file.items()):
        print(f"  {file}: pass {c['pass']}, fail {c['fail']}, explained {c['explained']}, "
              f"n/a {c['n/a']}")
    print(f"  total: pass {counts['pass']}, fail {counts['fail']}, "
          f"explained {counts['explained']}, n/a {counts['n/a']}")
    for item in outcome["fail"]:
        print(f"  FAIL {item['test']}: {item['detail']}")
    if args.json:
        args.json.write_text(json.dumps({"counts": dict(counts), **outcome}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(_markdown(per_file, counts, outcome), encoding="utf-8")
    if args.scratch is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if outcome["fail"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
