"""spec_problems: the checks a schema cannot express, each with a message that says what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from rollout_operator.api.validation import (
    SpecError,
    parse_spec,
    repo_url_kind,
    spec_problems,
    validate_spec,
)

MINIMAL: dict[str, Any] = {
    "repo": {"url": "https://git.example.com/org/repo.git"},
    "model": {"name": "openai/gpt-4o-mini"},
}


def problems(cluster: bool = True, allow_file_repos: bool = False, **parts: Any) -> list[str]:
    spec = parse_spec({**MINIMAL, **parts})
    return spec_problems(spec, cluster=cluster, allow_file_repos=allow_file_repos)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://github.com/org/repo.git", "https"),
        ("HTTP://host/repo", "http"),
        ("ssh://git@host:2222/org/repo.git", "ssh"),
        ("git@github.com:org/repo.git", "scp"),
        ("deploy@git.internal:repo", "scp"),
        ("file:///srv/git/repo", "file"),
        ("/srv/git/repo", "local"),
        ("./examples/calculator", "local"),
        ("git://host/repo", "other"),
    ],
)
def test_repo_url_kinds(url: str, kind: str) -> None:
    assert repo_url_kind(url) == kind


ALLOWED_IN_CLUSTER = [
    "https://github.com/org/repo.git",
    "ssh://git@github.com/org/repo.git",
    "git@github.com:org/repo.git",
]


@pytest.mark.parametrize("url", ALLOWED_IN_CLUSTER)
def test_cluster_accepts_https_ssh_and_scp_urls(url: str) -> None:
    assert problems(repo={"url": url}) == []


ALLOWED = "https://host/org/repo.git, ssh://git@host/org/repo.git or git@host:org/repo.git"
LOCAL_REPO = (
    "spec.repo.url: a local path or file:// URL is only allowed when the operator runs with "
    f"allow_file_repos (development); use {ALLOWED}"
)

REPO_CASES: list[tuple[str, dict[str, Any], bool, bool, list[str]]] = [
    ("local path in cluster", {"url": "/srv/repo"}, True, False, [LOCAL_REPO]),
    ("file url in cluster", {"url": "file:///srv/repo"}, True, False, [LOCAL_REPO]),
    ("file url with allow_file_repos", {"url": "file:///srv/repo"}, True, True, []),
    ("local path outside a cluster", {"url": "./examples/calculator"}, False, False, []),
    (
        "plain http in cluster",
        {"url": "http://git.example.com/r.git"},
        True,
        False,
        ["spec.repo.url: plain http:// is not allowed; use https:// or ssh://"],
    ),
    ("plain http outside a cluster", {"url": "http://localhost:3000/r.git"}, False, False, []),
    (
        "git protocol",
        {"url": "git://host/r.git"},
        True,
        True,
        [f"spec.repo.url: scheme 'git' is not supported; use {ALLOWED}"],
    ),
    (
        "token in the url",
        {"url": "https://ghp_secret@github.com/org/r.git"},
        True,
        False,
        [
            "spec.repo.url: must not contain credentials (user@ or user:token@); put the token "
            "in a Secret under key 'token' and name it in spec.repo.credentialsSecret"
        ],
    ),
    (
        "password in an ssh url",
        {"url": "ssh://git:hunter2@host/r.git"},
        True,
        False,
        [
            "spec.repo.url: must not contain a password; put an SSH key in a Secret under key "
            "'ssh-privatekey' and name it in spec.repo.credentialsSecret"
        ],
    ),
    (
        "option injection",
        {"url": "--upload-pack=touch /tmp/x"},
        False,
        False,
        ["spec.repo.url: must not contain spaces", "spec.repo.url: must not start with '-'"],
    ),
    (
        "revision with a leading dash",
        {"url": "https://h/r.git", "revision": "--orphan"},
        True,
        False,
        [
            "spec.repo.revision: must be a branch, tag or commit without spaces or a leading '-' "
            '(got "--orphan")'
        ],
    ),
    (
        "dot-dot in repo.path",
        {"url": "https://h/r.git", "path": "examples/../../etc"},
        True,
        False,
        ["spec.repo.path: must not contain '..'; name a folder or file inside the repository"],
    ),
    (
        "absolute repo.path",
        {"url": "https://h/r.git", "path": "/etc"},
        True,
        False,
        ["spec.repo.path: must be relative to the repository, e.g. examples/calculator"],
    ),
]


@pytest.mark.parametrize(
    ("repo", "cluster", "allow_file_repos", "expected"),
    [c[1:] for c in REPO_CASES],
    ids=[c[0] for c in REPO_CASES],
)
def test_repo_checks(
    repo: dict[str, Any], cluster: bool, allow_file_repos: bool, expected: list[str]
) -> None:
    assert problems(cluster, allow_file_repos, repo=repo) == expected


def test_messages_never_repeat_a_url_with_credentials() -> None:
    found = problems(
        repo={"url": "https://user:tok3n@h/r.git"},
        model={"name": "m", "baseURL": "https://user:tok3n@llm/v1"},
        output={"url": "s3://user:tok3n@bucket/p"},
    )
    assert len(found) == 3
    assert not any("tok3n" in message for message in found)


STORAGE = "s3://bucket/prefix or gs://bucket/prefix"

OTHER_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "absolute dataset path",
        {"dataset": {"path": "/etc/passwd.jsonl"}},
        ["spec.dataset.path: must be relative to the repository, e.g. examples/calculator"],
    ),
    (
        "dot-dot in dataset path",
        {"dataset": {"path": "../other/data.jsonl"}},
        ["spec.dataset.path: must not contain '..'; name a folder or file inside the repository"],
    ),
    (
        "unsupported dataset format",
        {"dataset": {"path": "data.txt"}},
        ['spec.dataset.path: must be a .parquet, .jsonl or .csv file (got "data.txt")'],
    ),
    ("dataset in s3", {"dataset": {"url": "s3://datasets/calc.parquet"}}, []),
    (
        "dataset over https",
        {"dataset": {"url": "https://h/data.jsonl"}},
        [f"spec.dataset.url: scheme 'https' is not supported; use {STORAGE}"],
    ),
    (
        "dataset file url in cluster",
        {"dataset": {"url": "file:///data/x.jsonl"}},
        [
            "spec.dataset.url: file:// is only allowed outside a cluster or with the operator's "
            f"allow_file_repos (development); use {STORAGE}"
        ],
    ),
    (
        "output without scheme",
        {"output": {"url": "bucket/prefix"}},
        [f"spec.output.url: no scheme is not supported; use {STORAGE}"],
    ),
    (
        "output bucket name",
        {"output": {"url": "s3://My_Bucket/p"}},
        [
            "spec.output.url: bucket name must be 3-63 lowercase letters, digits, '.', '-' or '_' "
            f"(got 'My_Bucket'); use {STORAGE}"
        ],
    ),
    (
        "endpoint for gs",
        {"output": {"url": "gs://bucket/p", "endpoint": "https://minio:9000"}},
        ["spec.output.endpoint: applies to s3:// URLs only; remove it or use an s3:// url"],
    ),
    (
        "endpoint without scheme",
        {"output": {"url": "s3://bucket/p", "endpoint": "minio:9000"}},
        [
            "spec.output.endpoint: must be an http:// or https:// URL with a host, "
            "e.g. https://host/v1"
        ],
    ),
    (
        "baseURL without scheme",
        {"model": {"name": "openai/m", "baseURL": "llm.example.com/v1"}},
        [
            "spec.model.baseURL: must be an http:// or https:// URL with a host, "
            "e.g. https://host/v1"
        ],
    ),
    (
        "in-cluster http baseURL",
        {"model": {"name": "openai/m", "baseURL": "http://vllm:8000/v1"}},
        [],
    ),
    (
        "model name with spaces around it",
        {"model": {"name": " openai/m "}},
        ["spec.model.name: must be a model name without surrounding spaces"],
    ),
    (
        "scorer refs",
        {
            "scoring": {
                "functions": [
                    "reward_fn.compute_reward",
                    "reward_fn/compute_reward.py:f",
                    "reward_fn.compute_reward:numbers_match_reward",
                    "reward_fn.compute_reward:numbers_match_reward",
                ]
            }
        },
        [
            "spec.scoring.functions[0]: must be module.path:function, e.g. "
            'reward_fn.compute_reward:numbers_match_reward (got "reward_fn.compute_reward")',
            "spec.scoring.functions[1]: must be module.path:function, e.g. "
            'reward_fn.compute_reward:numbers_match_reward (got "reward_fn/compute_reward.py:f")',
            "spec.scoring.functions[3]: 'reward_fn.compute_reward:numbers_match_reward' is "
            "listed twice; remove one",
        ],
    ),
    (
        "judge secrets",
        {
            "scoring": {
                "secrets": [
                    {"env": "OPENAI_API_KEY", "secretKeyRef": {"name": "judge", "key": "k"}},
                    {"env": "OPENAI_API_KEY", "secretKeyRef": {"name": "judge", "key": "k2"}},
                    {"env": "ROLLOUT_RUN_CONFIG", "secretKeyRef": {"name": "judge", "key": "k"}},
                ]
            }
        },
        [
            "spec.scoring.secrets[1].env: 'OPENAI_API_KEY' is set twice; keep one entry",
            "spec.scoring.secrets[2].env: names starting with ROLLOUT_ are reserved for the "
            "operator; choose another name (got 'ROLLOUT_RUN_CONFIG')",
        ],
    ),
    (
        "egress rules",
        {
            "sandbox": {
                "egress": [
                    {"cidr": "10.0.0.0/8", "ports": [443]},
                    {"cidr": "2001:db8::/32"},
                    {"cidr": "10.0.0.1/8"},
                    {"cidr": "10.0.0.1"},
                    {"cidr": "300.1.1.0/24"},
                    {"host": "api.example.com", "ports": [443, 443]},
                    {"host": "https://api.example.com"},
                    {"host": "192.168.1.1"},
                    {"host": "bad_host!"},
                ]
            }
        },
        [
            'spec.sandbox.egress[2].cidr: has host bits set; use 10.0.0.0/8 (got "10.0.0.1/8")',
            "spec.sandbox.egress[3].cidr: must include a prefix length; use 10.0.0.1/32 "
            '(got "10.0.0.1")',
            "spec.sandbox.egress[4].cidr: must be an IP range such as 10.0.0.0/8 or "
            '2001:db8::/32 (got "300.1.1.0/24")',
            "spec.sandbox.egress[5].ports: lists a port twice; remove the duplicate",
            "spec.sandbox.egress[6].host: must be a DNS name without scheme, port or path; "
            "put ports in ports",
            "spec.sandbox.egress[7].host: is an IP address; use cidr: 192.168.1.1/32 (or /128) "
            "instead",
            "spec.sandbox.egress[8].host: must be a DNS name such as api.example.com "
            '(got "bad_host!")',
        ],
    ),
    (
        "image with a space",
        {"sandbox": {"image": "ghcr.io/x/y: latest"}},
        [
            "spec.sandbox.image: must be an image reference without spaces, "
            "e.g. ghcr.io/org/image:tag"
        ],
    ),
]


@pytest.mark.parametrize(
    ("parts", "expected"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
def test_semantic_checks(parts: dict[str, Any], expected: list[str]) -> None:
    assert problems(**parts) == expected


def test_file_storage_is_fine_outside_a_cluster_or_when_allowed() -> None:
    parts: dict[str, Any] = {
        "dataset": {"url": "file:///data/x.jsonl"},
        "output": {"url": "file:///tmp/out"},
    }
    assert problems(cluster=False, **parts) == []
    assert problems(cluster=True, allow_file_repos=True, **parts) == []
    assert len(problems(cluster=True, **parts)) == 2


def test_validate_spec_combines_parsing_and_semantic_checks() -> None:
    assert (
        validate_spec(MINIMAL, cluster=True, allow_file_repos=False).repo.url
        == MINIMAL["repo"]["url"]
    )
    with pytest.raises(SpecError) as caught:
        validate_spec(
            {**MINIMAL, "repo": {"url": "/srv/repo"}}, cluster=True, allow_file_repos=False
        )
    assert caught.value.problems == [LOCAL_REPO]
    with pytest.raises(SpecError) as caught:
        validate_spec({**MINIMAL, "workers": {"shards": 0}}, cluster=True, allow_file_repos=False)
    assert caught.value.problems == ["spec.workers.shards: must be >= 1 (got 0)"]


RESOURCE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "ordinary requests and limits",
        {"workers": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                   "limits": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 1}}},
         "sandbox": {"resources": {"requests": {"memory": 0, "ephemeral-storage": "10Gi"}}},
         "model": {"serve": {"model": "m", "gpus": 2,
                             "resources": {"requests": {"nvidia.com/gpu": 2, "cpu": "8"}}}}},
        [],
    ),
    (
        "memory above 1Pi",
        {"workers": {"resources": {"limits": {"memory": "2Pi"}}}},
        ["spec.workers.resources.limits.memory: 2Pi is more than 1Pi; no container gets that "
         "much memory: give the amount in Mi or Gi, e.g. 4Gi"],
    ),
    (
        "storage given as an exponent",
        {"sandbox": {"resources": {"requests": {"ephemeral-storage": "1e30"}}}},
        ['spec.sandbox.resources.requests["ephemeral-storage"]: 1e30 is more than 1Pi; no '
         "container gets that much ephemeral-storage: give the amount in Mi or Gi, e.g. 4Gi"],
    ),
    (
        "memory without a unit",
        {"workers": {"resources": {"limits": {"memory": 512}}}},
        ["spec.workers.resources.limits.memory: 512 is 512 bytes, less than 1Mi; did you mean "
         "'512Mi'?"],
    ),
    (
        "memory in millibytes",
        {"sandbox": {"resources": {"requests": {"memory": "500m"}}}},
        ["spec.sandbox.resources.requests.memory: 500m is less than 1Mi; give memory in Mi or "
         "Gi, e.g. 512Mi"],
    ),
    (
        "a memory limit of zero",
        {"workers": {"resources": {"limits": {"memory": "0"}}}},
        ["spec.workers.resources.limits.memory: must be at least 1Mi; remove it for the "
         "default limit"],
    ),
    (
        "cpus no node has",
        {"model": {"serve": {"model": "m", "resources": {"limits": {"cpu": "1M"}}}}},
        ["spec.model.serve.resources.limits.cpu: 1M is more than 100,000 cpu; no container "
         "gets that many: give the amount one container needs"],
    ),
    (
        "negative",
        {"sandbox": {"resources": {"requests": {"cpu": "-1"}}}},
        ['spec.sandbox.resources.requests.cpu: must not be negative (got "-1")'],
    ),
    (
        "a fractional exponent the CRD pattern lets through",
        {"workers": {"resources": {"requests": {"cpu": "1e1.5"}}}},
        ["spec.workers.resources.requests.cpu: must be an integer or a quantity string such as "
         "'500m', '2' or '4Gi' (quote fractions: '0.5') (got \"1e1.5\")"],
    ),
    (
        "request above its limit",
        {"workers": {"resources": {"requests": {"memory": "8Gi", "cpu": "500m"},
                                   "limits": {"memory": "4Gi", "cpu": 1}}}},
        ["spec.workers.resources.requests.memory: 8Gi is more than its limit 4Gi; lower the "
         "request or raise spec.workers.resources.limits.memory"],
    ),
    (
        "half a GPU",
        {"workers": {"resources": {"limits": {"nvidia.com/gpu": "0.5"}}}},
        ['spec.workers.resources.limits["nvidia.com/gpu"]: must be a whole number of '
         'nvidia.com/gpu (got "0.5")'],
    ),
    (
        "GPUs requested without a limit",
        {"sandbox": {"resources": {"requests": {"nvidia.com/gpu": 1}}}},
        ['spec.sandbox.resources.limits["nvidia.com/gpu"]: is required when nvidia.com/gpu is '
         "requested; set it to 1 (Kubernetes does not overcommit nvidia.com/gpu)"],
    ),
    (
        "GPUs requested below their limit",
        {"workers": {"resources": {"requests": {"nvidia.com/gpu": 1},
                                   "limits": {"nvidia.com/gpu": 2}}}},
        ['spec.workers.resources.requests["nvidia.com/gpu"]: must equal '
         'spec.workers.resources.limits["nvidia.com/gpu"] (2); Kubernetes does not overcommit '
         "nvidia.com/gpu"],
    ),
    (
        "server GPUs requested beyond serve.gpus",
        {"model": {"serve": {"model": "m", "gpus": 1,
                             "resources": {"requests": {"nvidia.com/gpu": 2}}}}},
        ['spec.model.serve.resources.requests["nvidia.com/gpu"]: 2 is more than its limit 1; '
         "lower the request or raise spec.model.serve.gpus"],
    ),
    (
        "server GPU limit that serve.gpus overrides",
        {"model": {"serve": {"model": "m", "gpus": 2,
                             "resources": {"limits": {"nvidia.com/gpu": 4}}}}},
        ['spec.model.serve.resources.limits["nvidia.com/gpu"]: 4 differs from '
         "spec.model.serve.gpus (2), which sets it; remove it or change spec.model.serve.gpus"],
    ),
]


@pytest.mark.parametrize(
    ("parts", "expected"), [c[1:] for c in RESOURCE_CASES], ids=[c[0] for c in RESOURCE_CASES]
)
def test_resource_quantities(parts: dict[str, Any], expected: list[str]) -> None:
    assert problems(**parts) == expected
    assert problems(cluster=False, allow_file_repos=True, **parts) == expected
