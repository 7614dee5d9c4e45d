"""A hostile repo through the operator on the API stand-in: its scorers raise, exit, kill their
process and return junk. The run completes with exact records and every fault named on its
trajectory; the pods the operator made are the proof of the boundary (the stand-in runs no
container runtime): every pod that runs the repo's code is labelled, holds no credential but
the judge key, mounts no token and is selected by an egress-limiting NetworkPolicy, and the
model key is in no output, status or Event.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.server import EmulatedCluster
from tests.operator.harness import (
    MODEL_KEY,
    NAMESPACE,
    Harness,
    _secret,
    make_repo,
    run_manifest,
    services,
)
from tests.support.cli import REPO_ROOT
from tests.support.s3 import S3Server
from tests.support.scripted_model import ScriptedModelServer

pytestmark = pytest.mark.slow

HOSTILE = REPO_ROOT / "tests" / "fixtures" / "repos" / "hostile"
HONEST = "reward_fn.honest:exact"
FAULTS = "reward_fn.faults:faulty"
JUDGE_KEY = "sk-judge-key-for-the-scorers-only-77"
ROWS: list[tuple[str | None, str | None]] = [
    (None, None),
    ("raise", "ValueError: this row is cursed"),
    ("os_exit", "its process exited with code 7 (os._exit) while scoring this item"),
    ("segfault", "its process was killed by SIGSEGV while scoring this item"),
    ("nan", "ValueError: returned nan, not a finite number"),
    ("string", "TypeError: must return a number, got str"),
]
SAMPLES = 2
USER_CODE = {"inspect", "tools", "scorers"}


@pytest.fixture
def hostile(k8s_cluster: EmulatedCluster, scripted_model: ScriptedModelServer,
            tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    repo = tmp_path / "repo"
    shutil.copytree(HOSTILE, repo)
    (repo / "data.jsonl").write_text("".join(
        json.dumps({"system_prompt": "Use the tools.", "user_prompt": f"What is {i + 10} * 7?",
                    "ground_truth": str((i + 10) * 7), "fault": fault}) + "\n"
        for i, (fault, _) in enumerate(ROWS)))
    url = make_repo(repo)
    with S3Server() as s3, services(repo, [HONEST, FAULTS]) as services_url:
        h = Harness(k8s_cluster, s3, scripted_model.base_url, services_url, tmp_path)
        h.apply(_secret("judge", {"key": JUDGE_KEY}))
        h.operator.start()
        try:
            yield h, url
        finally:
            h.operator.stop()


def _pod_specs(h: Harness, uid: str) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """Component -> (pod spec, pod labels) of every Job and Deployment of the run."""
    found = {}
    for kind in ("jobs", "deployments"):
        done = h.cluster.kubectl("-n", NAMESPACE, "get", kind, "-l",
                                 f"rollouts.dev/run-uid={uid}", "-o", "json")
        for item in json.loads(done.stdout)["items"]:
            template = item["spec"]["template"]
            labels = template["metadata"]["labels"]
            found[labels["rollouts.dev/component"]] = (template["spec"], labels)
    return found


def _policies(h: Harness, uid: str) -> list[dict[str, Any]]:
    done = h.cluster.kubectl("-n", NAMESPACE, "get", "networkpolicies", "-l",
                             f"rollouts.dev/run-uid={uid}", "-o", "json")
    return list(json.loads(done.stdout)["items"])


def _secret_refs(spec: dict[str, Any]) -> set[str]:
    refs = set()
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.add(ref["name"])
        assert not container.get("envFrom"), container["name"]
    assert not [v for v in spec.get("volumes", []) if "secret" in v or "projected" in v]
    return refs


def test_hostile_scorers_through_the_operator(hostile: tuple[Harness, str]) -> None:
    h, url = hostile
    manifest = run_manifest("hostile", url, h.model_url, h.bucket, h.s3.endpoint,
                            rows=len(ROWS), samples=SAMPLES, shards=2,
                            model="scripted:sleep-400")
    manifest["spec"]["dataset"] = {"path": "data.jsonl", "samplesPerPrompt": SAMPLES}
    manifest["spec"]["scoring"] = {
        "functions": [HONEST, FAULTS], "timeoutSeconds": 5,
        "secrets": [{"env": "JUDGE_API_KEY", "secretKeyRef": {"name": "judge", "key": "key"}}],
    }
    h.apply(manifest)
    running = h.wait_phase("hostile", ("Running",))
    uid = running["metadata"]["uid"]
    pods, policies = _pod_specs(h, uid), _policies(h, uid)  # the servers go once it ends
    run = h.wait_phase("hostile", ("Succeeded", "Failed"), timeout=240)
    status = run["status"]
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)

    records = h.records(run)
    assert sorted((r["row_index"], r["sample_index"]) for r in records) == [
        (row, sample) for row in range(len(ROWS)) for sample in range(SAMPLES)]
    for record in records:
        expected = ROWS[record["row_index"]][1]
        assert record["status"] == "completed", record["error"]
        assert record["scores"][HONEST] == 1.0, record
        if expected is None:
            assert record["scores"][FAULTS] == 1.0 and record["error"] is None, record
        else:
            assert record["scores"][FAULTS] == 0.0
            assert record["error"]["category"] == "reward"
            assert f"{FAULTS}: {expected}" in record["error"]["message"], record

    assert set(pods) >= USER_CODE, sorted(pods)
    for component, (spec, labels) in pods.items():
        secrets = _secret_refs(spec)
        assert spec["automountServiceAccountToken"] is False, component
        assert not spec.get("shareProcessNamespace"), component
        if component in USER_CODE:
            assert labels.get("rollouts.dev/user-code") == "true", component
            assert secrets == ({"judge"} if component == "scorers" else set()), component
            selecting = [p for p in policies
                         if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                         and "Egress" in p["spec"]["policyTypes"]]
            assert selecting, f"no egress policy selects the {component} pods"
        else:
            assert "rollouts.dev/user-code" not in labels, component
            commands = [c["command"][:2] for c in [*spec.get("initContainers", []),
                                                    *spec["containers"]]]
            assert all(cmd[1] in ("sync", "work", "aggregate", "unpack-bundle")
                       for cmd in commands), (component, commands)

    # The model key reached no output, status, Event or log of the operator.
    events = h.cluster.kubectl("-n", NAMESPACE, "get", "events", "-o", "json").stdout
    for text in (h.object_text(), json.dumps(status), events, h.operator.log):
        assert MODEL_KEY not in text
        assert JUDGE_KEY not in text
