"""Loading a repo's MCP server and scorers: osmosis-compat.md §4, §3.4 "Eval functions", check 9."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client, FastMCP
from filelock import FileLock

import rollout_operator
from rollout_operator.runtime.errors import EvalFnError, MCPLoadError
from rollout_operator.runtime.repo_loader import (
    discover_scorers,
    inspect_repo,
    load_function,
    load_functions,
    load_mcp_server,
)
from rollout_operator.runtime.tool_schema import list_openai_tools

ROOT = Path(__file__).resolve().parents[2]
CALCULATOR = ROOT / "examples" / "calculator"
REPOS = ROOT / "tests" / "fixtures" / "repos"
SECOND = REPOS / "second_tools"
BROKEN = REPOS / "broken"
CALC_REWARD = "reward_fn.compute_reward:numbers_match_reward"


def _modules_under(root: Path) -> list[str]:
    """Names in sys.modules whose code lives under `root`."""
    prefix = str(root) + os.sep
    found = []
    for name, module in list(sys.modules.items()):
        locations = [getattr(module, "__file__", None) or ""]
        locations += [str(p) for p in getattr(module, "__path__", None) or []]
        if any(loc.startswith(prefix) for loc in locations):
            found.append(name)
    return found


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every load must leave sys.path as it was and no module of a fixture repo behind."""
    path = list(sys.path)
    before = set(_modules_under(CALCULATOR) + _modules_under(REPOS))
    yield
    assert sys.path == path
    assert set(_modules_under(CALCULATOR) + _modules_under(REPOS)) <= before


async def _tool_names(server: FastMCP) -> list[str]:
    return sorted(tool["function"]["name"] for tool in await list_openai_tools(server))


# --- load_mcp_server ----------------------------------------------------------------------------


async def test_calculator_example_loads_with_sibling_imports() -> None:
    server = load_mcp_server(CALCULATOR / "mcp")
    assert isinstance(server, FastMCP)
    # The example registers `add` beside upstream's `multiply`.
    assert await _tool_names(server) == ["add", "multiply"]
    for name in ("server", "tools", "tools.math", "server.mcp_server"):
        assert name not in sys.modules


async def test_two_repos_with_their_own_tools_package_do_not_collide() -> None:
    first = load_mcp_server(CALCULATOR / "mcp")
    second = load_mcp_server(SECOND / "mcp")
    again = load_mcp_server(CALCULATOR / "mcp")
    assert await _tool_names(first) == ["add", "multiply"]
    assert await _tool_names(second) == ["divide", "loaded_as", "shout"]
    assert await _tool_names(again) == ["add", "multiply"]
    assert again is not first  # each load imports the repo afresh


async def test_main_runs_inside_a_synthetic_package_named_after_the_folder() -> None:
    mcp_dir = SECOND / "mcp"
    server = load_mcp_server(mcp_dir)
    digest = hashlib.sha256(str(ROOT / "tests/fixtures/repos/second_tools/mcp").encode())
    async with Client(server) as client:
        result = await client.call_tool("loaded_as", {})
    # The relative import `from .version import VERSION` resolved, and the `__main__` block that
    # raises SystemExit did not run.
    assert result.data == f"_osmosis_mcp_{digest.hexdigest()[:8]}.main second-1"


def test_missing_folder_names_the_path() -> None:
    with pytest.raises(MCPLoadError, match=r"MCP directory not found: .*nowhere") as caught:
        load_mcp_server(REPOS / "nowhere")
    assert "main.py" in str(caught.value)


def test_a_file_instead_of_a_folder_is_rejected() -> None:
    with pytest.raises(MCPLoadError, match="not a directory"):
        load_mcp_server(CALCULATOR / "mcp" / "main.py")


def test_missing_main_py_says_what_to_create() -> None:
    with pytest.raises(MCPLoadError) as caught:
        load_mcp_server(REPOS / "no_main" / "mcp")
    message = str(caught.value)
    assert message.startswith("No main.py in MCP directory ")
    assert str(REPOS / "no_main" / "mcp") in message


def test_main_without_fastmcp_instance() -> None:
    with pytest.raises(
        MCPLoadError, match=r"^No FastMCP instance found in .*no_server/mcp/main\.py"
    ):
        load_mcp_server(REPOS / "no_server" / "mcp")


def test_import_error_is_wrapped_with_the_user_code_location() -> None:
    with pytest.raises(MCPLoadError) as caught:
        load_mcp_server(BROKEN / "mcp")
    message = str(caught.value)
    assert message.startswith(f"Error importing {BROKEN / 'mcp' / 'main.py'}: ")
    assert "RuntimeError: tool registry misconfigured" in message
    assert "(at tools/__init__.py:3)" in message


def test_first_fastmcp_attribute_in_dir_order_wins(tmp_path: Path) -> None:
    mcp_dir = tmp_path / "mcp"
    mcp_dir.mkdir()
    (mcp_dir / "main.py").write_text(
        textwrap.dedent(
            """
            from fastmcp import FastMCP

            zeta = FastMCP("Zeta")
            alpha = FastMCP("Alpha")
            """
        )
    )
    assert load_mcp_server(mcp_dir).name == "Alpha"


def test_sys_exit_in_main_becomes_a_load_error(tmp_path: Path) -> None:
    mcp_dir = tmp_path / "mcp"
    mcp_dir.mkdir()
    (mcp_dir / "main.py").write_text("import sys\nsys.exit('not like this')\n")
    with pytest.raises(MCPLoadError, match="SystemExit: not like this"):
        load_mcp_server(mcp_dir)


async def test_cached_module_of_the_same_name_does_not_shadow_the_repo() -> None:
    # A dedicated process (isolate=False) leaves the second repo's `tools` and `server` cached and
    # its folder on sys.path; loading the calculator must still see the calculator's packages.
    path = list(sys.path)
    try:
        load_mcp_server(SECOND / "mcp", isolate=False)
        assert "tools" in sys.modules and str((SECOND / "mcp").resolve()) in sys.path
        calculator = load_mcp_server(CALCULATOR / "mcp")
        assert await _tool_names(calculator) == ["add", "multiply"]
        assert sys.modules["tools"].__file__ == str((SECOND / "mcp/tools/__init__.py").resolve())
    finally:
        sys.path[:] = path
        for name in _modules_under(REPOS):
            del sys.modules[name]


# --- load_function ------------------------------------------------------------------------------


def test_reward_loads_as_namespace_package_from_the_repo_root() -> None:
    assert not (CALCULATOR / "reward_fn" / "__init__.py").exists()
    fn = load_function(CALCULATOR, CALC_REWARD)
    assert fn("The answer is #### 42", "42") == 1.0
    assert fn("42", "42") == 0.0
    assert isinstance(fn("#### 42", "42"), float)
    assert fn(solution_str="#### 42", ground_truth="42", extra_info={}, data_source="x") == 1.0
    assert "reward_fn" not in sys.modules


def test_same_module_path_in_two_repos_loads_each_repos_own() -> None:
    loaded = load_functions(SECOND, ["reward_fn.compute_reward:exact_match_reward"])
    assert loaded["reward_fn.compute_reward:exact_match_reward"]("HI", "HI") == 1.0
    with pytest.raises(EvalFnError, match="has no attribute 'numbers_match_reward'"):
        load_function(SECOND, CALC_REWARD)
    assert load_function(CALCULATOR, CALC_REWARD)("#### 7", "7") == 1.0


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("reward_fn.compute_reward", "expected 'module:function'"),
        (":numbers_match_reward", "expected 'module:function'"),
        ("reward_fn.compute_reward:", "expected 'module:function'"),
        ("reward_fn/compute_reward.py:numbers_match_reward", "not a file path"),
        ("reward_fn.compute_reward:not-a-name", "is not a Python name"),
        ("reward_fn.nope:fn", "no module named 'reward_fn.nope' under "),
        ("nothing_here.compute_reward:fn", "no module named 'nothing_here' under "),
        ("reward_fn.compute_reward:missing", "has no attribute 'missing'"),
        ("reward_fn.compute_reward:_ANSWER", "is a Pattern, not a function"),
    ],
)
def test_bad_references_raise_eval_fn_error(ref: str, expected: str) -> None:
    with pytest.raises(EvalFnError) as caught:
        load_function(CALCULATOR, ref)
    assert expected in str(caught.value)


def test_missing_attribute_lists_the_functions_defined_there() -> None:
    with pytest.raises(EvalFnError) as caught:
        load_function(CALCULATOR, "reward_fn.compute_reward:numbers_match")
    assert "Functions defined there: extract_solution, numbers_match_reward." in str(caught.value)


def test_decoration_error_and_missing_dependency_are_reported() -> None:
    with pytest.raises(EvalFnError) as caught:
        load_function(BROKEN, "reward_fn.bad_signature:two_params")
    assert "TypeError: Function two_params must have at least 3 parameters, got 2" in str(
        caught.value
    )
    with pytest.raises(EvalFnError) as caught:
        load_function(BROKEN, "reward_fn.missing_dependency:anything")
    assert "No module named 'not_an_installed_dependency'" in str(caught.value)
    assert "Install the repo's dependencies" in str(caught.value)


def test_missing_repo_root() -> None:
    with pytest.raises(EvalFnError, match="Repository root not found"):
        load_function(REPOS / "nowhere", CALC_REWARD)


# --- discovery and inspect_repo -----------------------------------------------------------------


def test_discover_scorers_in_the_calculator_example() -> None:
    scorers = discover_scorers(CALCULATOR)
    assert [(s.ref, s.kind) for s in scorers] == [
        (CALC_REWARD, "reward"),
        ("reward_rubric.reward_rubric_openai:calculator_rubric_openai", "rubric"),
    ]
    assert scorers[0].file == CALCULATOR / "reward_fn" / "compute_reward.py"
    assert (scorers[0].module, scorers[0].name) == (
        "reward_fn.compute_reward",
        "numbers_match_reward",
    )
    # Every discovered ref loads through load_function.
    for scorer in scorers:
        assert callable(load_function(CALCULATOR, scorer.ref))


def test_discovery_does_not_leak_between_repos() -> None:
    calculator = [s.ref for s in discover_scorers(CALCULATOR)]
    assert [s.ref for s in discover_scorers(SECOND)] == [
        "reward_fn.compute_reward:exact_match_reward"
    ]
    assert [s.ref for s in discover_scorers(CALCULATOR)] == calculator
    assert CALC_REWARD in calculator


def test_discovery_skips_modules_that_fail_to_import() -> None:
    assert [s.ref for s in discover_scorers(BROKEN)] == ["reward_fn.good_reward:always_one"]


def test_inspect_calculator_repo() -> None:
    report = inspect_repo(CALCULATOR)
    assert report.ok, report.problems
    assert report.has_mcp
    assert sorted(report.tool_names) == ["add", "multiply"]
    assert [s.kind for s in report.scorers] == ["reward", "rubric"]
    assert report.datasets == [CALCULATOR / "test_data.jsonl"]
    assert report.fastmcp_version


def test_inspect_lists_every_problem_with_its_file() -> None:
    report = inspect_repo(BROKEN)
    assert not report.ok
    by_file = {problem.file: problem for problem in report.problems}
    assert set(by_file) == {
        BROKEN / "mcp" / "main.py",
        BROKEN / "reward_fn" / "bad_signature.py",
        BROKEN / "reward_fn" / "missing_dependency.py",
        BROKEN / "reward_rubric" / "judge-v2.py",
    }
    assert "tool registry misconfigured" in by_file[BROKEN / "mcp" / "main.py"].message
    assert "at least 3 parameters" in by_file[BROKEN / "reward_fn" / "bad_signature.py"].message
    assert "Python identifier" in by_file[BROKEN / "reward_rubric" / "judge-v2.py"].message
    assert [s.ref for s in report.scorers] == ["reward_fn.good_reward:always_one"]
    assert report.tools == [] and report.datasets == []


async def test_inspect_reports_an_invalid_tool_name_and_keeps_the_rest(tmp_path: Path) -> None:
    # Also runs from inside an event loop, as an async caller would.
    (tmp_path / "mcp").mkdir()
    (tmp_path / "mcp" / "main.py").write_text(
        textwrap.dedent(
            """
            from fastmcp import FastMCP

            mcp = FastMCP("T")

            @mcp.tool(name="bad-name")
            def bad() -> str:
                return "x"

            @mcp.tool
            def good(n: int) -> int:
                return n
            """
        )
    )
    (tmp_path / "data.parquet").write_bytes(b"")
    report = inspect_repo(tmp_path)
    assert report.tool_names == ["good"]
    assert [p.area for p in report.problems] == ["tools"]
    assert "invalid tool name 'bad-name'" in report.problems[0].message
    assert report.datasets == [tmp_path / "data.parquet"]


def test_inspect_missing_repo_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    report = inspect_repo(tmp_path / "absent")
    assert [p.area for p in report.problems] == ["repo"]


def test_repo_without_mcp_folder_has_no_tools_and_no_problem(tmp_path: Path) -> None:
    report = inspect_repo(tmp_path)
    assert report.ok and not report.has_mcp and report.tools == [] and report.scorers == []


# --- fastmcp 2.12.x -----------------------------------------------------------------------------

FASTMCP_OLD = "2.12.4"
_OFFLINE_HINTS = (
    "Could not find a version",
    "No matching distribution",
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Connection refused",
    "timed out",
    "ConnectionError",
)


def old_fastmcp_python() -> Path:
    """A venv with only fastmcp==2.12.4 (and its dependencies), cached across test runs."""
    venv = Path(tempfile.gettempdir()) / "rollout-operator-test-venvs" / f"fastmcp-{FASTMCP_OLD}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        if not (done.exists() and python.exists()):
            _build_venv(venv, python)
            done.touch()
    return python


def _build_venv(venv: Path, python: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    try:
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"fastmcp=={FASTMCP_OLD}"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip could not install fastmcp=={FASTMCP_OLD} within 90 s")
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if any(hint in output for hint in _OFFLINE_HINTS):
            pytest.skip(f"pip cannot reach the package index for fastmcp=={FASTMCP_OLD}")
        raise AssertionError(f"pip install fastmcp=={FASTMCP_OLD} failed:\n{output[-3000:]}")


LOAD_SCRIPT = """
import asyncio, json, sys
import fastmcp
from rollout_operator.runtime.repo_loader import load_mcp_server
from rollout_operator.runtime.tool_schema import list_openai_tools

server = load_mcp_server(sys.argv[1])
tools = asyncio.run(list_openai_tools(server))
print(json.dumps({"version": fastmcp.__version__, "tools": tools}))
"""


@pytest.mark.slow
def test_calculator_loads_and_converts_under_fastmcp_2_12() -> None:
    python = old_fastmcp_python()
    operator_dir = Path(rollout_operator.__path__[0]).parent
    env = {**os.environ, "PYTHONPATH": str(operator_dir), "PYTHONWARNINGS": "ignore"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(python), "-c", LOAD_SCRIPT, str(CALCULATOR / "mcp")],
        capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == FASTMCP_OLD
    tools = {tool["function"]["name"]: tool for tool in result["tools"]}
    assert sorted(tools) == ["add", "multiply"]
    # The exact §4 conversion recorded for fastmcp 2.12.4.
    assert tools["multiply"] == {
        "type": "function",
        "function": {
            "name": "multiply",
            "description": "Calculate the product of two numbers\n\nArgs:\n"
            "    first_val: the first value to be multiplied\n"
            "    second_val: the second value to be multiplied",
            "parameters": {
                "type": "object",
                "properties": {"first_val": {"type": "number"}, "second_val": {"type": "number"}},
                "required": ["first_val", "second_val"],
            },
            "strict": False,
        },
    }
