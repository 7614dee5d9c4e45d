"""Secrets reach pods only as `secretKeyRef`s: manifests name Secrets and keys, never values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rollout_operator.resources import build_children
from rollout_operator.resources.context import COMPONENT_LABEL
from rollout_operator.resources.security import pod_spec_of
from tests.resources.cases import FETCH_URL, SPECS, make_context

SENTINEL = "s3cr3t-VALUE-never-in-a-manifest"
SECRET_ENV_NAMES = (
    "ROLLOUT_MODEL_API_KEY",
    "ROLLOUT_GIT_TOKEN",
    "ROLLOUT_GIT_SSH_KEY",
    "ROLLOUT_GIT_USERNAME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
)
STORAGE = {
    ("rollout-storage", key)
    for key in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "AWS_DEFAULT_REGION", "GOOGLE_SERVICE_ACCOUNT_KEY",
    )
}
GIT = {("git-credentials", key) for key in ("token", "ssh-privatekey", "username")}
MODEL = {("llm-api-key", "api-key")}
JUDGES = {("judge", "openai"), ("judge", "claude")}


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def secret_refs(container: dict[str, Any]) -> set[tuple[str, str]]:
    refs = set()
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert set(item) == {"name", "valueFrom"}
            assert set(ref) <= {"name", "key", "optional"}
            refs.add((ref["name"], ref["key"]))
    return refs


@pytest.fixture
def poisoned_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secret-looking variables in the builder's own environment must not leak into manifests."""
    for name in SECRET_ENV_NAMES:
        monkeypatch.setenv(name, SENTINEL)


@pytest.mark.usefixtures("poisoned_environment")
@pytest.mark.parametrize("case", sorted(SPECS))
def test_no_secret_value_can_appear(case: str) -> None:
    manifests = build_children(make_context(SPECS[case]))
    text = json.dumps(manifests)
    assert SENTINEL not in text
    for path, node in walk(manifests):
        if isinstance(node, dict):
            assert node.get("kind") != "Secret", path
            assert "envFrom" not in node, path
            assert "secret" not in node, path  # no Secret volumes either
            if node.get("name") in SECRET_ENV_NAMES and "value" in node:
                pytest.fail(f"{path}: {node['name']} has a literal value")


def test_each_pod_gets_only_the_secrets_it_needs() -> None:
    manifests = build_children(make_context(SPECS["credentials"]))
    seen: dict[str, set[tuple[str, str]]] = {}
    for manifest in manifests:
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        component = manifest["metadata"]["labels"][COMPONENT_LABEL]
        for container in pod.get("initContainers", []):
            seen[f"{component}/init"] = secret_refs(container)
        for container in pod["containers"]:
            seen[component] = secret_refs(container)
    assert seen == {
        "sync": GIT | STORAGE,
        "inspect/init": set(),
        "inspect": set(),
        "tools/init": set(),
        "tools": set(),
        "scorers/init": set(),
        "scorers": JUDGES,
        # Workers keep the judge keys only to scrub them from what they write.
        "workers/init": STORAGE,
        "workers": MODEL | JUDGES | STORAGE,
        "aggregate": STORAGE,
    }


def test_judge_keys_keep_their_env_names_and_model_key_is_required() -> None:
    manifests = build_children(make_context(SPECS["credentials"]))
    worker = next(m for m in manifests if m["metadata"]["labels"][COMPONENT_LABEL] == "workers")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "judge", "key": "openai"}
    assert env["ROLLOUT_MODEL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "llm-api-key", "key": "api-key"
    }
    # Storage keys are each optional: a Secret holds AWS or GCS keys, not both.
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


@pytest.mark.parametrize("case", sorted(SPECS))
def test_the_signed_bundle_url_reaches_user_code_pods_only_through_env(case: str) -> None:
    """The signed URL reads the bundle without credentials: only the fetch-bundle init
    containers of user-code pods get it, as an env value (not in a command line, not in the
    run config every pod carries)."""
    manifests = build_children(make_context(SPECS[case]))
    holders = []
    for path, node in walk(manifests):
        if isinstance(node, str) and FETCH_URL in node:
            holders.append(path)
    fetchers = []
    for index, manifest in enumerate(manifests):
        pod = pod_spec_of(manifest)
        if pod is None:
            continue
        component = manifest["metadata"]["labels"][COMPONENT_LABEL]
        for init_index, container in enumerate(pod.get("initContainers", [])):
            if container["name"] == "fetch-bundle":
                fetchers.append(component)
                (env_index,) = [i for i, item in enumerate(container["env"])
                                if item["name"] == "ROLLOUT_BUNDLE_FETCH_URL"]
                assert (f"[{index}].spec.template.spec.initContainers[{init_index}]"
                        f".env[{env_index}].value") in holders
    assert sorted(fetchers) == ["inspect", "scorers", "tools"]
    assert len(holders) == 3, holders


def test_runs_without_credentials_reference_no_secret() -> None:
    manifests = build_children(make_context(SPECS["minimal"]))
    assert "secretKeyRef" not in json.dumps(manifests)
