"""The boundary around user code, as `rolloutctl render` shows it for a run with every kind of
credential: the pods that run the repo's code hold nothing but the judge keys and can reach
almost nothing; the pods that hold the model key, storage or git credentials never run it."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from rollout_operator.cli.main import cli
from rollout_operator.cli.render_cmd import PLACEHOLDER_FETCH_URL

USER_CODE_LABEL = "rollouts.dev/user-code"
COMPONENT_LABEL = "rollouts.dev/component"
STORAGE_RANGES = ("10.9.0.0/16", "2001:db8:5::/48")
DEFAULT_TOOL_EGRESS = ("100.64.0.0/10",)
TOOL_EGRESS = {("10.20.0.0/16", (443,))}
JUDGE_EGRESS = {("203.0.113.0/24", (443,)), ("198.51.100.7/32", ())}

RUN = """\
apiVersion: rollouts.dev/v1alpha1
kind: RolloutRun
metadata:
  name: guarded
  namespace: research
spec:
  repo:
    url: https://git.example.com/team/agent.git
    credentialsSecret: git-credentials
  model:
    name: openai/qwen3-8b
    baseURL: https://llm.example.com/v1
    apiKeySecret: {name: llm-api-key, key: api-key}
  scoring:
    functions: [reward_fn.compute_reward:numbers_match_reward, rubrics.judge:helpful]
    secrets:
      - {env: OPENAI_API_KEY, secretKeyRef: {name: judge-keys, key: openai}}
      - {env: ANTHROPIC_API_KEY, secretKeyRef: {name: judge-keys, key: anthropic}}
    egress:
      - {cidr: 203.0.113.0/24, ports: [443]}
      - {cidr: 198.51.100.7/32}
      - {host: api.judge.example, ports: [443]}
  sandbox:
    runtimeClassName: gvisor
    egress:
      - {cidr: 10.20.0.0/16, ports: [443]}
      - {host: tools.example.com}
  workers: {shards: 2}
  output:
    url: s3://rollouts/runs
    credentialsSecret: rollout-storage
"""

MODEL_SECRETS = {("llm-api-key", "api-key")}
JUDGE_SECRETS = {("judge-keys", "openai"), ("judge-keys", "anthropic")}
JUDGE_ENV = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
GIT_SECRET = "git-credentials"
STORAGE_SECRET = "rollout-storage"
TRUSTED_SECRETS = {GIT_SECRET, STORAGE_SECRET, "llm-api-key"}

USER_CODE_SUBCOMMANDS = {"inspect", "serve-tools", "serve-scorers"}
"""`rolloutctl` subcommands that import the repo."""


# -- the render ------------------------------------------------------------------------------


def render_documents(path: Path) -> list[dict[str, Any]]:
    """The objects of `rolloutctl render -f path`, as the operator would create them."""
    env = {
        "ROLLOUT_OPERATOR_STORAGE_EGRESS": ",".join(STORAGE_RANGES),
        "ROLLOUT_OPERATOR_DEFAULT_EGRESS": ",".join(DEFAULT_TOOL_EGRESS),
    }
    result = CliRunner().invoke(cli, ["render", "-f", str(path)], env=env)
    assert result.exit_code == 0, result.output
    docs = [doc for doc in yaml.safe_load_all(result.output) if doc is not None]
    assert docs
    return docs


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = tmp_path_factory.mktemp("boundary") / "run.yaml"
    path.write_text(RUN)
    return render_documents(path)


class Pod:
    """One pod template of the render, with what the boundary is about."""

    def __init__(self, workload: Mapping[str, Any]) -> None:
        self.workload = workload
        template = workload["spec"]["template"]
        self.labels: dict[str, str] = dict(template["metadata"]["labels"])
        self.spec: dict[str, Any] = template["spec"]
        self.component = self.labels[COMPONENT_LABEL]

    def __repr__(self) -> str:
        return f"{self.workload['kind']} {self.workload['metadata']['name']}"

    def containers(self) -> Iterator[dict[str, Any]]:
        for key in ("initContainers", "containers", "ephemeralContainers"):
            yield from self.spec.get(key) or []

    def commands(self) -> list[list[str]]:
        return [[*c.get("command", []), *c.get("args", [])] for c in self.containers()]

    @property
    def runs_repo_code(self) -> bool:
        """Whether any container runs a command that imports the repo (or anything that is
        not a known `rolloutctl` command: unknown counts as user code)."""
        return any(not is_trusted_command(command) for command in self.commands())

    @property
    def user_code_label(self) -> bool:
        return self.labels.get(USER_CODE_LABEL) == "true"

    def secret_keys(self) -> set[tuple[str, str]]:
        """(Secret, key) of every env var any container fills from a Secret."""
        return {
            (ref["name"], ref["key"])
            for container in self.containers()
            for item in container.get("env") or []
            if (ref := (item.get("valueFrom") or {}).get("secretKeyRef")) is not None
        }

    def whole_secrets(self) -> set[str]:
        """Secrets a pod gets whole: envFrom secretRefs and secret volumes (plain or
        projected)."""
        names = {
            source["secretRef"]["name"]
            for container in self.containers()
            for source in container.get("envFrom") or []
            if "secretRef" in source
        }
        for volume in self.spec.get("volumes") or []:
            if "secret" in volume:
                names.add(volume["secret"].get("secretName", "?"))
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "secret" in source:
                    names.add(source["secret"].get("name", "?"))
        return names

    def secret_names(self) -> set[str]:
        return {name for name, _ in self.secret_keys()} | self.whole_secrets()

    def env_names(self) -> set[str]:
        return {item["name"] for c in self.containers() for item in c.get("env") or []}

    def token_volumes(self) -> list[str]:
        return [
            volume["name"] for volume in self.spec.get("volumes") or []
            for source in (volume.get("projected") or {}).get("sources") or []
            if "serviceAccountToken" in source
        ]


def is_trusted_command(command: list[str]) -> bool:
    """sync, work, aggregate, or unpacking the bundle from storage by its URL; the user-code
    pods' own `unpack-bundle --url-env` fetch (a credential-free download) counts as trusted
    too: it imports nothing."""
    match command:
        case ["rolloutctl", "sync", *_] | ["rolloutctl", "work"] | ["rolloutctl", "aggregate"]:
            return True
        case ["rolloutctl", "unpack-bundle", "--url", _, "--dest", _]:
            return True
        case ["rolloutctl", "unpack-bundle", "--url-env", _, "--dest", _]:
            return True
    return False


def pods_of(documents: list[dict[str, Any]]) -> list[Pod]:
    return [Pod(doc) for doc in documents
            if doc["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")]


# -- NetworkPolicy matching ------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector against `labels` (an empty selector matches every pod)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get(
            "values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def egress_policies(documents: list[dict[str, Any]], pod: Pod) -> list[dict[str, Any]]:
    """The NetworkPolicies of the render that limit `pod`'s egress."""
    return [
        doc for doc in documents
        if doc["kind"] == "NetworkPolicy"
        and doc["metadata"]["namespace"] == pod.workload["metadata"]["namespace"]
        and selector_matches(doc["spec"].get("podSelector") or {}, pod.labels)
        and "Egress" in (doc["spec"].get("policyTypes") or [])
    ]


def is_dns_rule(rule: Mapping[str, Any]) -> bool:
    """Port 53 of the cluster DNS pods only."""
    peers = rule.get("to") or []
    ports = rule.get("ports") or []
    return bool(peers) and bool(ports) and all(
        set(peer) == {"namespaceSelector", "podSelector"}
        and peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
        and peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
        for peer in peers
    ) and all(port.get("port") == 53 for port in ports)


def cidr_destinations(rule: Mapping[str, Any]) -> set[tuple[str, tuple[int, ...]]] | None:
    """(cidr, ports) of a rule made of ipBlocks only, without exceptions; None otherwise (a
    rule without `to` allows every destination)."""
    peers = rule.get("to") or []
    if not peers or any(set(peer) != {"ipBlock"} or set(peer["ipBlock"]) != {"cidr"}
                        for peer in peers):
        return None
    ports = tuple(sorted(int(port["port"]) for port in rule.get("ports") or []))
    return {(peer["ipBlock"]["cidr"], ports) for peer in peers}


def allowed_egress(component: str) -> set[tuple[str, tuple[int, ...]]]:
    """What each kind of user-code pod may reach besides DNS: the storage ranges (to fetch the
    bundle) and what the spec or the operator declares for it."""
    storage: set[tuple[str, tuple[int, ...]]] = {(cidr, ()) for cidr in STORAGE_RANGES}
    if component == "tools":
        return storage | {(cidr, ()) for cidr in DEFAULT_TOOL_EGRESS} | TOOL_EGRESS
    if component == "scorers":
        return storage | JUDGE_EGRESS
    return storage


def assert_egress_limited(documents: list[dict[str, Any]], pod: Pod) -> None:
    policies = egress_policies(documents, pod)
    assert policies, f"{pod}: no NetworkPolicy limits its egress"
    allowed = allowed_egress(pod.component)
    # Policies add up: every rule of every policy that selects the pod must be allowed.
    for policy in policies:
        for rule in policy["spec"].get("egress") or []:
            if is_dns_rule(rule):
                continue
            destinations = cidr_destinations(rule)
            assert destinations is not None, f"{pod}: egress rule {rule} is not DNS or a CIDR"
            assert destinations <= allowed, f"{pod}: egress to {destinations - allowed}"


# -- the acceptance criteria -----------------------------------------------------------------


def test_the_render_has_every_kind_of_pod(documents: list[dict[str, Any]]) -> None:
    components = sorted(pod.component for pod in pods_of(documents))
    assert components == ["aggregate", "inspect", "scorers", "sync", "tools", "workers"]
    assert sorted(p.component for p in pods_of(documents) if p.runs_repo_code) == [
        "inspect", "scorers", "tools"]


def test_every_pod_that_runs_repo_code_is_labelled_and_every_labelled_pod_runs_it(
    documents: list[dict[str, Any]],
) -> None:
    for pod in pods_of(documents):
        assert pod.runs_repo_code == pod.user_code_label, (pod, pod.commands(), pod.labels)
        if not pod.user_code_label:
            assert USER_CODE_LABEL not in pod.labels, pod


def test_user_code_pods_hold_no_secret_but_the_judge_keys(documents: list[dict[str, Any]]) -> None:
    user_code = [pod for pod in pods_of(documents) if pod.runs_repo_code]
    assert {pod.component for pod in user_code} == {"inspect", "tools", "scorers"}
    for pod in user_code:
        assert pod.whole_secrets() == set(), pod
        assert pod.secret_keys() <= JUDGE_SECRETS, (pod, pod.secret_keys() - JUDGE_SECRETS)
        assert not pod.secret_names() & TRUSTED_SECRETS, pod
        assert pod.spec.get("automountServiceAccountToken") is False, pod
        assert pod.token_volumes() == [], pod
        assert not pod.spec.get("shareProcessNamespace"), pod
        for field in ("hostPID", "hostIPC", "hostNetwork"):
            assert not pod.spec.get(field), (pod, field)
        # The init container fetches the bundle through the signed URL, given in env.
        (fetch,) = pod.spec["initContainers"]
        assert fetch["command"][:3] == ["rolloutctl", "unpack-bundle", "--url-env"]
        assert {"name": fetch["command"][3], "value": PLACEHOLDER_FETCH_URL} in fetch["env"]
        assert not [item for item in fetch["env"] if "valueFrom" in item], pod
    scorers = next(pod for pod in user_code if pod.component == "scorers")
    assert scorers.secret_keys() == JUDGE_SECRETS  # the judges need their keys, nothing more
    (server,) = scorers.spec["containers"]
    assert {item["name"] for item in server["env"] if "valueFrom" in item} == JUDGE_ENV


def test_a_judge_key_reaches_no_tool_or_inspection_pod(documents: list[dict[str, Any]]) -> None:
    pods = {pod.component: pod for pod in pods_of(documents)}
    for component in ("tools", "inspect"):
        pod = pods[component]
        assert pod.secret_names() == set(), pod
        assert not pod.env_names() & JUDGE_ENV, pod
    holders = {pod.component for pod in pods.values() if pod.secret_keys() & JUDGE_SECRETS}
    # Workers keep the judge keys only to scrub them from what they write.
    assert holders == {"scorers", "workers"}


def test_user_code_pods_are_selected_by_egress_limiting_policies(
    documents: list[dict[str, Any]],
) -> None:
    user_code = [pod for pod in pods_of(documents) if pod.runs_repo_code]
    for pod in user_code:
        assert_egress_limited(documents, pod)
    policies = {pod.component: egress_policies(documents, pod) for pod in user_code}
    # A host cannot be enforced by a NetworkPolicy: the policy says so instead of allowing it.
    (scorer_policy,) = policies["scorers"]
    assert scorer_policy["metadata"]["annotations"] == {
        "rollouts.dev/egress-hosts-not-enforced": "api.judge.example"}
    (tool_policy,) = policies["tools"]
    assert tool_policy["metadata"]["annotations"] == {
        "rollouts.dev/egress-hosts-not-enforced": "tools.example.com"}
    # Nothing reaches the inspection pod; only this run's workers reach the servers.
    (inspect_policy,) = policies["inspect"]
    assert "Ingress" in inspect_policy["spec"]["policyTypes"]
    assert inspect_policy["spec"]["ingress"] == []
    workers = next(pod for pod in pods_of(documents) if pod.component == "workers")
    for policy in (scorer_policy, tool_policy):
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}
                assert selector_matches(peer["podSelector"], workers.labels)
                assert not any(selector_matches(peer["podSelector"], pod.labels)
                               for pod in user_code)


def test_pods_with_trusted_credentials_run_no_repo_code(documents: list[dict[str, Any]]) -> None:
    holders = [pod for pod in pods_of(documents) if pod.secret_names() & TRUSTED_SECRETS]
    assert sorted(pod.component for pod in holders) == ["aggregate", "sync", "workers"]
    for pod in holders:
        assert not pod.runs_repo_code, (pod, pod.commands())
        assert not pod.user_code_label, pod
        for command in pod.commands():
            assert is_trusted_command(command), (pod, command)
            assert not set(command) & USER_CODE_SUBCOMMANDS, (pod, command)
            # Trusted pods read the bundle with their storage credentials, never through the
            # user-code pods' signed URL.
            assert "--url-env" not in command, (pod, command)
        assert PLACEHOLDER_FETCH_URL not in yaml.safe_dump(pod.spec), pod
    model = [pod.component for pod in holders if pod.secret_keys() & MODEL_SECRETS]
    git = [pod.component for pod in holders if GIT_SECRET in pod.secret_names()]
    assert (model, git) == (["workers"], ["sync"])


# -- the checks can fail ---------------------------------------------------------------------


def _scorer_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"
                     and d["metadata"]["labels"][COMPONENT_LABEL] == "scorers"]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def _give_model_key(documents: list[dict[str, Any]]) -> None:
    server = _scorer_pod(documents)["spec"]["containers"][0]
    server["env"].append({"name": "ROLLOUT_MODEL_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "llm-api-key", "key": "api-key"}}})


def _drop_label(documents: list[dict[str, Any]]) -> None:
    del _scorer_pod(documents)["metadata"]["labels"][USER_CODE_LABEL]


def _storage_volume(documents: list[dict[str, Any]]) -> None:
    pod = _scorer_pod(documents)["spec"]
    pod["volumes"].append({"name": "s", "secret": {"secretName": STORAGE_SECRET}})


def _envfrom(documents: list[dict[str, Any]]) -> None:
    fetch = _scorer_pod(documents)["spec"]["initContainers"][0]
    fetch["envFrom"] = [{"secretRef": {"name": STORAGE_SECRET}}]


def _token(documents: list[dict[str, Any]]) -> None:
    _scorer_pod(documents)["spec"]["automountServiceAccountToken"] = True


def _shared_pids(documents: list[dict[str, Any]]) -> None:
    _scorer_pod(documents)["spec"]["shareProcessNamespace"] = True


def _open_egress(documents: list[dict[str, Any]]) -> None:
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy"
                  and d["metadata"]["labels"][COMPONENT_LABEL] == "scorers")
    policy["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})


def _no_policy(documents: list[dict[str, Any]]) -> None:
    documents[:] = [d for d in documents if not (
        d["kind"] == "NetworkPolicy" and d["metadata"]["labels"][COMPONENT_LABEL] == "inspect")]


def _worker_runs_tools(documents: list[dict[str, Any]]) -> None:
    (workers,) = [d for d in documents if d["kind"] == "Job"
                  and d["metadata"]["labels"][COMPONENT_LABEL] == "workers"]
    workers["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "rolloutctl", "serve-tools", "--repo", "/workspace/repo"]


def _judge_to_tools(documents: list[dict[str, Any]]) -> None:
    (tools,) = [d for d in documents if d["kind"] == "Deployment"
                and d["metadata"]["labels"][COMPONENT_LABEL] == "tools"]
    tools["spec"]["template"]["spec"]["containers"][0]["env"].append({
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "judge-keys", "key": "openai"}}})


CHECKS = [
    test_every_pod_that_runs_repo_code_is_labelled_and_every_labelled_pod_runs_it,
    test_user_code_pods_hold_no_secret_but_the_judge_keys,
    test_a_judge_key_reaches_no_tool_or_inspection_pod,
    test_user_code_pods_are_selected_by_egress_limiting_policies,
    test_pods_with_trusted_credentials_run_no_repo_code,
]


@pytest.mark.parametrize("breach", [
    _give_model_key, _drop_label, _storage_volume, _envfrom, _token, _shared_pids,
    _open_egress, _no_policy, _worker_runs_tools, _judge_to_tools,
], ids=lambda f: f.__name__.lstrip("_"))
def test_a_breach_of_the_boundary_is_caught(
    documents: list[dict[str, Any]], breach: Any
) -> None:
    broken = copy.deepcopy(documents)
    breach(broken)
    failures = []
    for check in CHECKS:
        try:
            check(broken)
        except AssertionError:
            failures.append(check.__name__)
    assert failures, f"no check noticed {breach.__name__}"
