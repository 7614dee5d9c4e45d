"""parse_spec: valid specs become models with defaults; invalid ones say where and what to fix."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from rollout_operator.api.spec import DEFAULT_DATASET_PATH, RolloutRunSpec
from rollout_operator.api.validation import SpecError, parse_spec, spec_hash

MINIMAL: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/org/repo.git"},
    "model": {"name": "openai/gpt-4o-mini"},
}


def with_(**parts: Any) -> dict[str, Any]:
    """MINIMAL with top-level spec parts replaced."""
    return {**MINIMAL, **parts}


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.repo.revision is None  # the remote's HEAD
    assert spec.repo.path == ""
    assert spec.dataset.path == DEFAULT_DATASET_PATH
    assert spec.dataset.url is None
    assert spec.dataset.samples_per_prompt == 1
    assert spec.agent.max_turns == 10
    assert spec.agent.tool_timeout_seconds == 60
    assert spec.agent.rollout_timeout_seconds == 450
    assert spec.agent.tool_result_max_chars == 100_000
    assert spec.scoring.functions is None
    assert spec.scoring.pass_threshold == 1.0
    assert spec.scoring.timeout_seconds == 150
    assert spec.workers.shards == 1
    assert spec.workers.concurrency == 64
    assert spec.workers.backoff_limit_per_index == 3
    assert spec.sandbox.replicas == 1
    assert spec.sandbox.egress == []
    assert spec.output.url is None
    assert spec.suspend is False
    assert spec.ttl_seconds_after_finished is None
    assert spec.model.served_name == "openai/gpt-4o-mini"


def test_camel_case_keys_and_base_url_alias() -> None:
    spec = parse_spec(
        with_(
            model={
                "name": "openai/qwen",
                "baseURL": "https://llm.example.com/v1",
                "apiKeySecret": {"name": "llm-key", "key": "api-key"},
                "topP": 0.9,
                "maxTokens": 512,
                "requestTimeoutSeconds": 30,
            },
            dataset={"samplesPerPrompt": 4, "offset": 2, "limit": 10},
            workers={"shards": 2, "backoffLimitPerIndex": 0},
            sandbox={"runtimeClassName": "gvisor"},
            ttlSecondsAfterFinished=600,
        )
    )
    assert spec.model.base_url == "https://llm.example.com/v1"
    assert spec.model.api_key_secret is not None
    assert spec.model.api_key_secret.key == "api-key"
    assert spec.model.top_p == 0.9
    assert spec.model.request_timeout_seconds == 30.0
    assert (spec.dataset.samples_per_prompt, spec.dataset.offset, spec.dataset.limit) == (4, 2, 10)
    assert spec.workers.backoff_limit_per_index == 0
    assert spec.sandbox.runtime_class_name == "gvisor"
    assert spec.ttl_seconds_after_finished == 600
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["model"]["baseURL"] == "https://llm.example.com/v1"
    assert "ttlSecondsAfterFinished" in dumped
    assert "runtimeClassName" in dumped["sandbox"]


def test_served_model_name_comes_from_serve() -> None:
    spec = parse_spec(with_(model={"serve": {"model": "Qwen/Qwen3-8B", "gpus": 0}}))
    assert spec.model.serve is not None
    assert spec.model.serve.engine == "vllm"
    assert spec.model.serve.port == 8000
    assert spec.model.served_name == "Qwen/Qwen3-8B"


def test_quantities_accept_integers_and_quantity_strings() -> None:
    spec = parse_spec(
        with_(workers={"resources": {"limits": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1}}})
    )
    assert spec.workers.resources is not None
    assert spec.workers.resources.limits == {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1}


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "negative shards",
        with_(workers={"shards": -2}),
        ["spec.workers.shards: must be >= 1 (got -2)"],
    ),
    (
        "misspelt field",
        with_(workers={"shard": 3}),
        ["spec.workers.shard: unknown field; did you mean 'shards'?"],
    ),
    (
        "unknown top-level field",
        with_(replicas=3),
        [
            "spec.replicas: unknown field; expected one of repo, dataset, model, agent, scoring, "
            "rollout, workers, sandbox, faults, output, scheduling, suspend, "
            "ttlSecondsAfterFinished"
        ],
    ),
    ("missing repo", {"model": {"name": "m"}}, ["spec.repo: is required"]),
    ("missing repo url", with_(repo={}), ["spec.repo.url: is required"]),
    ("empty repo url", with_(repo={"url": ""}), ["spec.repo.url: must not be empty"]),
    (
        "name and serve",
        with_(model={"name": "m", "serve": {"model": "x"}}),
        ["spec.model: set exactly one of name or serve (got both)"],
    ),
    (
        "neither name nor serve",
        with_(model={}),
        ["spec.model: set exactly one of name or serve (got neither)"],
    ),
    (
        "baseURL with serve",
        with_(model={"serve": {"model": "x"}, "baseURL": "https://h/v1"}),
        ["spec.model: baseURL is for an external endpoint; remove it when using serve"],
    ),
    (
        "path and url",
        with_(dataset={"path": "a.jsonl", "url": "s3://bucket/a.jsonl"}),
        ["spec.dataset: set either path or url, not both"],
    ),
    (
        "unknown engine and negative gpus",
        with_(model={"serve": {"engine": "tgi", "model": "x", "gpus": -1}}),
        [
            "spec.model.serve.engine: must be 'vllm' or 'sglang' (got \"tgi\")",
            "spec.model.serve.gpus: must be >= 0 (got -1)",
        ],
    ),
    (
        "ports out of range and an empty egress rule",
        with_(sandbox={"egress": [{"cidr": "10.0.0.0/8", "ports": [0, 70000]}, {}]}),
        [
            "spec.sandbox.egress[0].ports[0]: must be >= 1 (got 0)",
            "spec.sandbox.egress[0].ports[1]: must be <= 65535 (got 70000)",
            "spec.sandbox.egress[1]: set exactly one of cidr or host (got neither)",
        ],
    ),
    (
        "string where an integer belongs",
        with_(agent={"maxTurns": "4"}),
        ['spec.agent.maxTurns: must be an integer (got "4")'],
    ),
    (
        "zero timeout",
        with_(agent={"toolTimeoutSeconds": 0}),
        ["spec.agent.toolTimeoutSeconds: must be > 0 (got 0)"],
    ),
    (
        "yes is not a boolean",
        with_(suspend="yes"),
        ['spec.suspend: must be true or false (got "yes")'],
    ),
    (
        "negative ttl",
        with_(ttlSecondsAfterFinished=-1),
        ["spec.ttlSecondsAfterFinished: must be >= 0 (got -1)"],
    ),
    (
        "fractional and malformed quantities",
        with_(workers={"resources": {"limits": {"cpu": 0.5, "memory": "lots"}}}),
        [
            "spec.workers.resources.limits.cpu: must be an integer or a quantity string such as "
            "'500m', '2' or '4Gi' (quote fractions: '0.5') (got 0.5)",
            "spec.workers.resources.limits.memory: must be an integer or a quantity string such "
            "as '500m', '2' or '4Gi' (quote fractions: '0.5') (got \"lots\")",
        ],
    ),
    (
        "bad resource name",
        with_(sandbox={"resources": {"requests": {"CPU!": 1}}}),
        [
            'spec.sandbox.resources.requests["CPU!"]: must be a resource name such as cpu, '
            'memory or nvidia.com/gpu (got "CPU!")'
        ],
    ),
    (
        "secret names and env names",
        with_(
            repo={"url": "https://h/r.git", "credentialsSecret": "Git_Creds"},
            scoring={"secrets": [{"env": "1KEY", "secretKeyRef": {"name": "judge", "key": "a/b"}}]},
        ),
        [
            "spec.repo.credentialsSecret: must be a Kubernetes object name: lowercase letters, "
            "digits, '-' and '.', starting and ending with a letter or digit (got \"Git_Creds\")",
            "spec.scoring.secrets[0].env: must be an environment variable name: letters, digits "
            "and '_', not starting with a digit (got \"1KEY\")",
            "spec.scoring.secrets[0].secretKeyRef.key: must be a Secret key: letters, digits, "
            "'-', '_' and '.' (got \"a/b\")",
        ],
    ),
    (
        "empty scorer list",
        with_(scoring={"functions": []}),
        ["spec.scoring.functions: must not be empty; omit it to use the default"],
    ),
    (
        "too many samples",
        with_(dataset={"samplesPerPrompt": 5000}),
        ["spec.dataset.samplesPerPrompt: must be <= 1024 (got 5000)"],
    ),
    (
        "section of the wrong type",
        with_(workers=[1]),
        ["spec.workers: must be a mapping of fields (got a list)"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_specs_name_the_field_and_the_fix(
    spec: dict[str, Any], expected: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert caught.value.problems == expected
    assert str(caught.value) == "invalid RolloutRun spec: " + "; ".join(expected)


def test_a_spec_that_is_not_a_mapping() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(["repo"])
    assert caught.value.problems == ["spec: must be a mapping of fields (got a list)"]


def test_long_strings_are_reported_by_length_not_echoed() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_(repo={"url": "https://h/" + "x" * 3000}))
    assert caught.value.problems == ["spec.repo.url: must be at most 2048 characters (got 3010)"]


def test_dump_by_alias_parses_back_to_the_same_spec() -> None:
    spec = parse_spec(
        with_(
            model={
                "name": "openai/m",
                "baseURL": "https://h/v1",
                "apiKeySecret": {"name": "k", "key": "api-key"},
                "temperature": 0.5,
            },
            scoring={
                "functions": ["reward_fn.compute_reward:numbers_match_reward"],
                "secrets": [{"env": "JUDGE_KEY", "secretKeyRef": {"name": "judge", "key": "k"}}],
            },
            workers={"resources": {"requests": {"cpu": "500m"}, "limits": {"memory": 1073741824}}},
            sandbox={"egress": [{"host": "api.example.com", "ports": [443]}]},
            output={"url": "s3://b-1/p", "endpoint": "http://minio:9000", "credentialsSecret": "s"},
            suspend=True,
            ttlSecondsAfterFinished=60,
        )
    )
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    again = parse_spec(dumped)
    assert again == spec
    assert again.model_dump(mode="json", by_alias=True, exclude_none=True) == dumped
    assert RolloutRunSpec.model_validate_json(spec.model_dump_json(by_alias=True)) == spec


def test_python_names_are_accepted_too() -> None:
    spec = parse_spec(
        {"repo": {"url": "https://h/r.git"}, "model": {"name": "m", "base_url": "https://h/v1"}}
    )
    assert spec.model.base_url == "https://h/v1"


class TestSpecHash:
    def test_defaults_written_out_do_not_change_it(self) -> None:
        explicit = with_(
            repo={**MINIMAL["repo"], "path": ""},
            dataset={"path": "test_data.jsonl", "samplesPerPrompt": 1},
            agent={"maxTurns": 10},
            workers={},
        )
        assert spec_hash(parse_spec(explicit)) == spec_hash(parse_spec(MINIMAL))

    def test_suspend_and_ttl_do_not_change_it(self) -> None:
        edited = with_(suspend=True, ttlSecondsAfterFinished=30)
        assert spec_hash(parse_spec(edited)) == spec_hash(parse_spec(MINIMAL))

    @pytest.mark.parametrize(
        "edit",
        [
            {"repo": {"url": "https://git.example.com/org/repo.git", "revision": "v2"}},
            {"dataset": {"samplesPerPrompt": 2}},
            {"model": {"name": "openai/gpt-4o"}},
            {"agent": {"maxTurns": 11}},
            {"scoring": {"passThreshold": 0.5}},
            {"workers": {"shards": 2}},
            {"sandbox": {"replicas": 2}},
            {"output": {"url": "s3://other/prefix"}},
        ],
    )
    def test_every_other_field_changes_it(self, edit: dict[str, Any]) -> None:
        assert spec_hash(parse_spec(with_(**edit))) != spec_hash(parse_spec(MINIMAL))

    def test_it_is_short_hex_and_stable(self) -> None:
        value = spec_hash(parse_spec(MINIMAL))
        assert len(value) == 16
        int(value, 16)
        assert spec_hash(parse_spec(dict(reversed(list(MINIMAL.items()))))) == value


def test_mapping_views_and_tuples_are_accepted() -> None:
    view = MappingProxyType(
        {
            "repo": MappingProxyType({"url": "https://h/r.git"}),
            "model": {"name": "m"},
            "sandbox": {"egress": ({"host": "api.example.com", "ports": (443,)},)},
        }
    )
    spec = parse_spec(view)
    assert spec.sandbox.egress[0].ports == [443]


def test_policy_version_is_free_text_within_bounds() -> None:
    spec = parse_spec(with_(model={"name": "openai/m", "policyVersion": "lora:math-v2 @ step 120"}))
    assert spec.model.policy_version == "lora:math-v2 @ step 120"
    assert parse_spec(MINIMAL).model.policy_version is None
    with pytest.raises(SpecError) as caught:
        parse_spec(with_(model={"name": "openai/m", "policyVersion": "v" * 129}))
    assert caught.value.problems == [
        "spec.model.policyVersion: must be at most 128 characters (got 129)"]
    for bad in ("step-1\nstep-2", " step-1", ""):
        with pytest.raises(SpecError) as caught:
            parse_spec(with_(model={"name": "openai/m", "policyVersion": bad}))
        assert caught.value.problems[0].startswith("spec.model.policyVersion: "), bad
