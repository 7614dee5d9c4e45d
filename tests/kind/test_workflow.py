""".github/workflows/e2e-kind.yaml cannot run here (no Docker engine, no kind), so what can be
checked without them is checked here: every local path it uses exists, the actions are pinned,
the chart renders with its values into what the images and manifests expect, and the names it
shares with the manifests and tests/kind/test_kind_e2e.py agree.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rollout_operator.resources.pod_template import STORAGE_CREDENTIAL_KEYS
from tests.images.contract import subcommand_problems

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "e2e-kind.yaml"
KIND_DIR = REPO_ROOT / "tests" / "kind"
MANIFESTS = KIND_DIR / "manifests"
CHART_DIR = "charts/rollout-operator"
SCRIPTED_MODEL = REPO_ROOT / "tests" / "support" / "scripted_model.py"

# Paths the workflow must use; the extraction below must find each (so it cannot pass empty).
REQUIRED_PATHS = {
    ".",
    "sandbox-image/Dockerfile",
    "sandbox-image/operator.Dockerfile",
    CHART_DIR,
    "tests/kind",
    "tests/kind/kind-config.yaml",
    "tests/kind/manifests/minio.yaml",
    "tests/kind/manifests/scripted-model.yaml",
    "tests/support/scripted_model.py",
}

_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


# Reading the workflow ------------------------------------------------------------------------


@cache
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def triggers() -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean true.
    value = workflow().get("on", workflow().get(True))
    return value if isinstance(value, dict) else {name: None for name in value or []}


def steps() -> list[dict[str, Any]]:
    return [step for job in workflow()["jobs"].values() for step in job["steps"]]


def env() -> dict[str, str]:
    return {str(k): str(v) for k, v in (workflow().get("env") or {}).items()}


def expand(text: str) -> str:
    """`$NAME` and `${NAME}` replaced from the workflow's env (others are left alone)."""
    values = env()
    return _VAR.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def commands(script: str) -> Iterator[list[str]]:
    """Each simple command of a run script, as words (variables from the workflow's env)."""
    joined = re.sub(r"\\\n", " ", script)
    for line in joined.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in lexer:
            if token in _OPERATORS:
                if words:
                    yield words
                words = []
            else:
                words.append(expand(token))
        if words:
            yield words


def run_commands() -> list[list[str]]:
    return [words for step in steps() if "run" in step for words in commands(step["run"])]


def _option_values(words: list[str], names: set[str]) -> Iterator[str]:
    for index, word in enumerate(words):
        name, sep, value = word.partition("=")
        if name in names:
            if sep:
                yield value
            elif index + 1 < len(words):
                yield words[index + 1]


def _positionals(words: list[str], takes_value: set[str]) -> list[str]:
    found: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = "=" not in word and word in takes_value
        else:
            found.append(word)
    return found


def local_paths(words: list[str]) -> list[str]:
    """Repository paths a command reads: Dockerfiles and the build context, manifests and
    ConfigMap files for kubectl, the chart and values files for helm, pytest's targets and
    kind's cluster config."""
    program, args = words[0], words[1:]
    if program == "python" and args[:2] == ["-m", "pytest"]:
        program, args = "pytest", args[2:]
    if program == "docker" and args[:1] == ["build"]:
        takes = {"-f", "--file", "-t", "--tag", "--build-arg", "--target", "--platform"}
        context = _positionals(args[1:], takes)
        return [*_option_values(args, {"-f", "--file"}), *context[-1:]]
    if program == "kubectl":
        files = list(_option_values(args, {"-f", "--filename"}))
        for value in _option_values(args, {"--from-file"}):
            files.append(value.split("=", 1)[-1])
        return files
    if program == "helm" and args[:1] and args[0] in ("install", "upgrade", "template"):
        takes = {"--namespace", "-n", "--timeout", "--set", "--set-string", "--values", "-f",
                 "--version"}
        positionals = _positionals(args[1:], takes)
        return [*positionals[1:2], *_option_values(args, {"--values", "-f"})]
    if program == "pytest":
        return _positionals(args, {"-k", "-m", "-p", "--maxfail", "-c", "--rootdir"})
    if program == "kind":
        return list(_option_values(args, {"--config"}))
    return []


@cache
def referenced_paths() -> tuple[str, ...]:
    paths = {path for words in run_commands() for path in local_paths(words)}
    for step in steps():
        with_config = (step.get("with") or {}).get("config")
        if with_config:
            paths.add(str(with_config))
    return tuple(sorted(paths))


def helm_set_values() -> dict[str, Any]:
    """The chart values of the workflow's `helm install --set`s, as a nested dict."""
    (install,) = [w for w in run_commands() if w[:2] == ["helm", "install"]]
    values: dict[str, Any] = {}
    for assignment in _option_values(install, {"--set"}):
        key, _, raw = assignment.partition("=")
        value: Any = raw
        if raw.startswith("{") and raw.endswith("}"):
            value = [item for item in raw[1:-1].split(",") if item]
        node = values
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return values


def manifests(name: str) -> list[dict[str, Any]]:
    text = (MANIFESTS / name).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


# The tests -------------------------------------------------------------------------------------


def test_triggers_and_python() -> None:
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers())
    setup = [s for s in steps() if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert len(setup) == 1 and str(setup[0]["with"]["python-version"]) == "3.11"


def test_actions_are_pinned_to_major_tags() -> None:
    uses = [str(step["uses"]) for step in steps() if "uses" in step]
    assert {u.split("@")[0] for u in uses} >= {"actions/checkout", "helm/kind-action"}
    assert [u for u in uses if not re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u)] == []


def test_the_workflow_uses_every_required_path() -> None:
    assert REQUIRED_PATHS - set(referenced_paths()) == set()


@pytest.mark.parametrize("path", referenced_paths())
def test_referenced_path_exists(path: str) -> None:
    assert (REPO_ROOT / path).exists(), f"{WORKFLOW.name} uses {path}, which does not exist"


def test_images_are_built_from_the_repo_root_and_loaded_into_kind() -> None:
    builds = [w for w in run_commands() if w[:2] == ["docker", "build"]]
    tags = {w[w.index("-t") + 1] for w in builds}
    assert tags == {f"{env()['SANDBOX_IMAGE']}:{env()['IMAGE_TAG']}",
                    f"{env()['OPERATOR_IMAGE']}:{env()['IMAGE_TAG']}"}
    assert all(w[-1] == "." for w in builds) and (REPO_ROOT / ".dockerignore").is_file()
    loaded = {w[3] for w in run_commands() if w[:3] == ["kind", "load", "docker-image"]}
    assert loaded == tags
    assert all(not tag.endswith(":latest") for tag in tags)  # kind would try to pull :latest


def test_the_e2e_step_runs_the_kind_tests_with_the_switch_on() -> None:
    (step,) = [s for s in steps()
               if any("tests/kind" in local_paths(words) for words in commands(s.get("run", "")))]
    assert step["env"]["ROLLOUT_E2E_KIND"] == "1"
    assert step["env"]["ROLLOUT_E2E_CONTEXT"] == "kind-${{ env.CLUSTER_NAME }}"


def test_failure_dump() -> None:
    (step,) = [s for s in steps() if s.get("if") == "failure()"]
    script = step["run"]
    for needed in ("kubectl get all -A", "logs deployment/rollout-operator", "get events"):
        assert needed in script


def test_the_chart_renders_with_the_workflows_values() -> None:
    from tests.chart.render import load_chart, one, render

    values = helm_set_values()
    assert values["image"]["pullPolicy"] == "Never"
    rendered = render(load_chart(), values)
    settings = one(rendered, "ConfigMap")["data"]
    e = env()
    assert settings["ROLLOUT_OPERATOR_RUNTIME_IMAGE"] == f"{e['SANDBOX_IMAGE']}:{e['IMAGE_TAG']}"
    assert settings["ROLLOUT_OPERATOR_DEFAULT_OUTPUT_URL"] == f"s3://{e['BUCKET']}/runs"
    assert settings["ROLLOUT_OPERATOR_DEFAULT_OUTPUT_ENDPOINT"] == (
        f"http://minio.{e['E2E_NAMESPACE']}.svc:9000")
    assert json.loads(settings["ROLLOUT_OPERATOR_STORAGE_EGRESS"]) == [e["POD_SUBNET"]]
    (operator,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert operator["image"] == f"{e['OPERATOR_IMAGE']}:{e['IMAGE_TAG']}"
    assert operator["imagePullPolicy"] == "Never"
    # The chart sets args, not command: the image's ENTRYPOINT (rolloutctl) must stay.
    assert "command" not in operator
    assert list(subcommand_problems(operator["args"])) == []


def test_storage_egress_is_the_kind_pod_subnet() -> None:
    config = yaml.safe_load((KIND_DIR / "kind-config.yaml").read_text(encoding="utf-8"))
    assert config["networking"]["podSubnet"] == env()["POD_SUBNET"]


@pytest.mark.parametrize("name", sorted(p.name for p in MANIFESTS.glob("*.yaml")))
def test_manifests_are_valid_and_in_the_e2e_namespace(name: str) -> None:
    for doc in manifests(name):
        kubernetes_validate.validate(doc, "1.33", strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == env()["E2E_NAMESPACE"], doc["metadata"]


def test_minio_serves_the_bucket_and_credentials_the_run_uses() -> None:
    docs = manifests("minio.yaml")
    secret_name = yaml.safe_load((REPO_ROOT / "examples/calculator/rolloutrun.yaml").read_text())[
        "spec"]["output"]["credentialsSecret"]
    secret = find(docs, "Secret", secret_name)
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])
    assert set(secret["stringData"]) <= set(STORAGE_CREDENTIAL_KEYS)
    service = find(docs, "Service", "minio")
    assert [p["port"] for p in service["spec"]["ports"]] == [9000]
    job = find(docs, "Job", "make-bucket")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert f"mb --ignore-existing e2e/{env()['BUCKET']}" in " ".join(container["args"])


def test_the_scripted_model_runs_from_the_sandbox_image_with_its_own_files() -> None:
    docs = manifests("scripted-model.yaml")
    deployment = find(docs, "Deployment", "scripted-model")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"{env()['SANDBOX_IMAGE']}:{env()['IMAGE_TAG']}"
    assert container["imagePullPolicy"] == "Never"
    assert container["command"][:3] == ["python", "-m", "tests.support.scripted_model"]
    assert container["workingDir"] == "/srv"
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/srv/tests"

    # The ConfigMap the workflow creates holds every file of `tests` the server imports ...
    (create,) = [w for w in run_commands() if w[:1] == ["kubectl"] and "configmap" in w]
    files = [value.split("=", 1)[-1] for value in _option_values(create, {"--from-file"})]
    needed = {"tests/support/scripted_model.py", *imported_test_files(SCRIPTED_MODEL)}
    assert needed <= set(files)
    # ... and the volume maps each key to its place in the package.
    (volume,) = pod["volumes"]
    items = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    for file in needed:
        relative = str(Path(file).relative_to("tests"))
        assert items.get(relative) == Path(file).name, (relative, items)
    assert {Path(f).name for f in files} == set(items.values())


def imported_test_files(module: Path) -> set[str]:
    """The files of the `tests` package that `module` imports, transitively."""
    found: set[str] = set()
    pending = [module]
    while pending:
        tree = ast.parse(pending.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
                path = REPO_ROOT / (node.module or "").replace(".", "/")
                file = path.with_suffix(".py")
                relative = str(file.relative_to(REPO_ROOT))
                if relative not in found:
                    found.add(relative)
                    pending.append(file)
    return found


def test_the_scripted_model_needs_only_what_the_image_has() -> None:
    """Standard library, the `tests` files mounted beside it, and the project's dependencies."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dependencies = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("-", "_")
                    for d in project["project"]["dependencies"]}
    modules = {SCRIPTED_MODEL} | {REPO_ROOT / f for f in imported_test_files(SCRIPTED_MODEL)}
    imported: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    outside = {name for name in imported
               if name not in sys.stdlib_module_names and name != "tests"}
    assert "aiohttp" in outside
    assert outside <= dependencies, outside - dependencies


def test_the_e2e_module_defaults_match_the_workflow() -> None:
    from tests.kind import test_kind_e2e

    defaults = test_kind_e2e.E2ESettings.from_env({
        "ROLLOUT_E2E_REPO_URL": "https://example.com/r.git", "ROLLOUT_E2E_REVISION": "main"})
    e = env()
    assert defaults.context == f"kind-{e['CLUSTER_NAME']}"
    assert defaults.namespace == e["E2E_NAMESPACE"]
    assert defaults.output_url == f"s3://{e['BUCKET']}/runs"
    assert defaults.model_url == f"http://scripted-model.{e['E2E_NAMESPACE']}.svc:8000/v1"


def test_the_e2e_run_is_the_calculator_example_against_the_scripted_model() -> None:
    """The RolloutRun the e2e test applies is valid, and asks for rows x samples rollouts."""
    from rollout_operator.api.validation import parse_spec
    from tests.kind import test_kind_e2e

    settings = test_kind_e2e.E2ESettings.from_env({
        "ROLLOUT_E2E_REPO_URL": "https://github.com/example/rollout-operator.git",
        "ROLLOUT_E2E_REVISION": "0123456789abcdef0123456789abcdef01234567",
        "ROLLOUT_E2E_GIT_SECRET": "git-credentials",
    })
    run = test_kind_e2e.calculator_run(settings)
    spec = parse_spec(run["spec"])
    assert spec.repo.path == "examples/calculator"
    assert spec.repo.credentials_secret == "git-credentials"
    assert spec.model.name == "scripted" and spec.model.api_key_secret is None
    assert spec.output.url is None and spec.output.endpoint is None
    rows = sum(1 for line in (REPO_ROOT / "examples/calculator/test_data.jsonl").read_text()
               .splitlines() if line.strip())
    assert test_kind_e2e.expected_rollouts(run) == rows * spec.dataset.samples_per_prompt


def test_the_status_fields_the_e2e_test_reads_are_in_the_api() -> None:
    """The e2e test reads the status as JSON: its field names must be the API's."""
    from rollout_operator.api.status import (
        Artifacts,
        Progress,
        RolloutRunStatus,
        ScorerSummary,
        status_patch,
    )

    status = status_patch(RolloutRunStatus(
        phase="Succeeded", commit="a" * 40, tools=["multiply"],
        progress=Progress.from_counts(80, 80),
        summary={"reward_fn.compute_reward:numbers_match_reward": ScorerSummary(mean=1.0)},
        artifacts=Artifacts(results="s3://rollouts/runs/ns/run-12345678/results.json"),
    ))
    assert status["phase"] == "Succeeded" and status["commit"] == "a" * 40
    assert status["tools"] == ["multiply"]
    assert (status["progress"]["total"], status["progress"]["completed"],
            status["progress"]["failed"], status["progress"]["masked"]) == (80, 80, 0, 0)
    assert status["summary"]["reward_fn.compute_reward:numbers_match_reward"]["mean"] == 1.0
    assert status["artifacts"]["results"].endswith("/results.json")


def test_the_scripted_model_serves_from_the_configmap_layout(tmp_path: Path) -> None:
    """The files laid out as the ConfigMap volume lays them out, run with the manifest's
    command outside the repository (on loopback): the server answers like a model."""
    pod = find(manifests("scripted-model.yaml"), "Deployment", "scripted-model")["spec"][
        "template"]["spec"]
    (container,) = pod["containers"]
    (create,) = [w for w in run_commands() if w[:1] == ["kubectl"] and "configmap" in w]
    files = {Path(v).name: REPO_ROOT / v.split("=", 1)[-1]
             for v in _option_values(create, {"--from-file"})}
    workdir = tmp_path / container["workingDir"].lstrip("/")
    mount = tmp_path / container["volumeMounts"][0]["mountPath"].lstrip("/")
    for item in pod["volumes"][0]["configMap"]["items"]:
        target = mount / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[item["key"]].read_bytes())
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    where = subprocess.run(
        [sys.executable, "-c", "import tests.support.scripted_model as m; print(m.__file__)"],
        cwd=workdir, env=environ, capture_output=True, text=True, check=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(mount)

    argv = list(container["command"])
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = "0"
    assert argv[0] == "python"
    server = subprocess.Popen([sys.executable, *argv[1:]], cwd=workdir, env=environ,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        assert line[:1] == ["PORT"], line
        base = f"http://127.0.0.1:{line[1]}"
        probe = container["readinessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(base + probe, timeout=10) as response:
            assert response.status == 200
        body = json.dumps({"model": "scripted", "messages": [
            {"role": "user", "content": "What is 12 * 8?"}]}).encode()
        request = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        call = reply["choices"][0]["message"]["tool_calls"][0]["function"]
        assert call["name"] == "multiply"
        assert json.loads(call["arguments"]) == {"first_val": 12.0, "second_val": 8.0}
    finally:
        server.terminate()
        server.wait(15)
