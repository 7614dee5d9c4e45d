"""OperatorSettings from ROLLOUT_OPERATOR_* variables, and the checks that depend on them."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from rollout_operator.api.validation import parse_spec
from rollout_operator.resources.context import MissingOutputError, RunContext
from rollout_operator.resources.policy import policy_problems
from rollout_operator.settings import ENV_PREFIX, OperatorSettings
from tests.resources.cases import BASE, SPECS, UID, make_context


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    settings = OperatorSettings()
    assert settings.allow_file_repos is False
    assert settings.service_url_template == "http://{name}.{namespace}.svc:{port}"
    assert settings.namespaces == []
    assert settings.default_limits == {"cpu": "2", "memory": "2Gi"}
    assert settings.service_url("x", "ns", 80) == "http://x.ns.svc:80"


def test_environment_sets_every_kind_of_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_OPERATOR_RUNTIME_IMAGE", "reg.example/sandbox:9")
    monkeypatch.setenv("ROLLOUT_OPERATOR_ALLOW_FILE_REPOS", "true")
    monkeypatch.setenv("ROLLOUT_OPERATOR_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("ROLLOUT_OPERATOR_DEFAULT_EGRESS", '["10.0.0.0/8"]')
    monkeypatch.setenv("ROLLOUT_OPERATOR_DEFAULT_LIMITS", '{"cpu": "4", "memory": "8Gi"}')
    monkeypatch.setenv("ROLLOUT_OPERATOR_SERVICE_URL_TEMPLATE", "http://127.0.0.1:{port}")
    monkeypatch.setenv("ROLLOUT_OPERATOR_RECONCILE_INTERVAL_SECONDS", "0.5")
    settings = OperatorSettings()
    assert settings.runtime_image == "reg.example/sandbox:9"
    assert settings.allow_file_repos is True
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.default_egress == ["10.0.0.0/8"]
    assert settings.default_limits == {"cpu": "4", "memory": "8Gi"}
    assert settings.reconcile_interval_seconds == 0.5
    assert settings.service_url("svc", "ns", 8080) == "http://127.0.0.1:8080"


def test_bad_environment_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_OPERATOR_IMAGE_PULL_POLICY", "Sometimes")
    with pytest.raises(ValidationError, match="image_pull_policy"):
        OperatorSettings()


def test_service_url_template_reaches_the_pods() -> None:
    settings = OperatorSettings(service_url_template="http://127.0.0.1:1{port}/{namespace}/{name}")
    ctx = make_context(SPECS["minimal"], settings=settings)
    assert ctx.run_config().tool_url == f"http://127.0.0.1:18080/team-a/{ctx.child_name('tools')}/mcp"


def test_storage_defaults_fill_the_pods_spec() -> None:
    spec = {**BASE, "output": {}}
    settings = OperatorSettings(
        default_output_url="s3://defaults/runs", default_output_endpoint="http://minio:9000"
    )
    config = make_context(spec, settings=settings).run_config()
    assert config.spec.output.url == "s3://defaults/runs"
    assert config.spec.output.endpoint == "http://minio:9000"
    assert config.run_prefix.startswith("s3://defaults/runs/team-a/calculator-")
    own = make_context(
        {**BASE, "output": {"url": "s3://own/p", "endpoint": "https://s3.own"}}, settings=settings
    ).run_config()
    assert (own.spec.output.url, own.spec.output.endpoint) == ("s3://own/p", "https://s3.own")


def test_a_run_without_any_output_url_cannot_get_a_context() -> None:
    with pytest.raises(MissingOutputError, match=r"spec\.output\.url"):
        RunContext(
            name="calc", namespace="ns", uid=UID, generation=1,
            spec=parse_spec({**BASE, "output": {}}), settings=OperatorSettings(),
        )


def test_policy_problems() -> None:
    restricted = OperatorSettings(allowed_runtime_classes=["kata"])
    isolated = parse_spec(SPECS["isolated"])
    assert policy_problems(isolated, OperatorSettings()) == []
    (problem,) = policy_problems(isolated, restricted)
    assert "spec.sandbox.runtimeClassName" in problem and "kata" in problem
    no_output = parse_spec({**BASE, "output": {}})
    (problem,) = policy_problems(no_output, OperatorSettings())
    assert problem.startswith("spec.output.url:")
    assert policy_problems(no_output, OperatorSettings(default_output_url="s3://d/p")) == []


def test_context_from_an_api_object() -> None:
    obj = {"metadata": {"name": "calc", "namespace": "ns", "uid": UID, "generation": 3}}
    ctx = RunContext.from_object(obj, parse_spec(BASE), OperatorSettings(), commit="abc")
    assert (ctx.name, ctx.namespace, ctx.uid, ctx.generation, ctx.commit) == (
        "calc", "ns", UID, 3, "abc"
    )
    assert ctx.run_prefix == "s3://rollouts/runs/ns/calc-5b0e3c1a"
