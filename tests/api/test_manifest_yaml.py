"""The bounded YAML loader for users' RolloutRun manifests: ordinary files load as with
yaml.safe_load_all; alias bombs, deep nesting, recursive aliases and oversized files are refused
with one line that says what to change, before any Python object is built."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout_operator.api import manifest_yaml
from rollout_operator.api.manifest_yaml import (
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_NODES,
    ManifestYAMLError,
    load_manifest_documents,
    read_manifest,
)
from tests.support.hostile_yaml import (
    DEEP_BLOCK_LISTS,
    DEEP_BLOCK_MAPS,
    DEEP_FLOW_LISTS,
    DEEP_FLOW_MAPS,
    alias_bomb,
)

ROOT = Path(__file__).resolve().parents[2]
LOADERS = [
    loader
    for loader in (
        manifest_yaml.PythonBoundedLoader,
        getattr(manifest_yaml, "LibyamlBoundedLoader", None),
    )
    if loader is not None
]


@pytest.fixture(params=LOADERS, ids=lambda loader: loader.__name__)
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[Any]:
    """Each test runs over PyYAML's own parser and, when PyYAML has it, libyaml's."""
    monkeypatch.setattr(manifest_yaml, "BoundedLoader", request.param)
    return request.param  # type: ignore[no-any-return]


@pytest.mark.usefixtures("loader")
def test_ordinary_manifests_load_as_safe_load_all_does() -> None:
    for path in sorted((ROOT / "examples").glob("*/rolloutrun*.yaml")):
        text = path.read_text()
        expected = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        assert load_manifest_documents(text) == expected, path
    text = (
        "x-defaults: &defaults {cpu: 500m, memory: 1Gi}\n"
        "spec:\n"
        "  workers: {resources: {requests: *defaults, limits: {<<: *defaults, memory: 2Gi}}}\n"
        "  sandbox: {resources: {requests: *defaults}}\n"
        "  tags: &tags [a, b]\n"
        "  moreTags: *tags\n"
        "---\n"
        "---\n"
        "second: document\n"
    )
    assert load_manifest_documents(text) == [doc for doc in yaml.safe_load_all(text) if doc]


def test_an_alias_bomb_is_refused_before_anything_is_built(
    loader: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    composed: list[int] = []
    real_compose = loader.compose_node

    def count_compose(self: Any, parent: Any, index: Any) -> Any:
        composed.append(1)
        return real_compose(self, parent, index)

    monkeypatch.setattr(loader, "construct_document", lambda self, node: built.append(node))
    monkeypatch.setattr(loader, "compose_node", count_compose)
    with pytest.raises(ManifestYAMLError) as caught:
        load_manifest_documents(alias_bomb(levels=9))  # 9**9: 387 million strings once expanded
    message = str(caught.value)
    assert message.startswith(f"more than {MAX_NODES} YAML nodes once aliases are expanded")
    assert "write values out" in message and "\n" not in message
    assert built == []
    assert len(composed) < 200  # a few lines of the file, not its expansion


@pytest.mark.usefixtures("loader")
def test_aliases_count_by_what_they_stand_for() -> None:
    width = 100
    anchored = "a: &a [" + ", ".join(["x"] * width) + "]\n"
    # The root, keys a and b, list b, and list a with its items; then each alias to a.
    fixed, per_alias = 4 + width + 1, width + 1
    fits = (MAX_NODES - fixed) // per_alias
    within = anchored + "b: [" + ", ".join(["*a"] * fits) + "]\n"
    assert len(load_manifest_documents(within)[0]["b"]) == fits
    beyond = anchored + "b: [" + ", ".join(["*a"] * (fits + 1)) + "]\n"
    with pytest.raises(ManifestYAMLError, match="once aliases are expanded"):
        load_manifest_documents(beyond)


@pytest.mark.usefixtures("loader")
def test_more_nodes_than_any_run_has_are_refused() -> None:
    items = "".join(f"  - item{i}\n" for i in range(MAX_NODES))
    with pytest.raises(ManifestYAMLError) as caught:
        load_manifest_documents("kind: RolloutRun\nitems:\n" + items)
    assert str(caught.value) == (
        f"more than {MAX_NODES} YAML nodes (line {MAX_NODES - 2}); a RolloutRun has a few "
        "hundred: give a file with the RolloutRun alone"
    )


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(
    "text",
    [DEEP_FLOW_LISTS, DEEP_FLOW_MAPS, DEEP_BLOCK_LISTS, DEEP_BLOCK_MAPS],
    ids=["flow-lists", "flow-maps", "block-lists", "block-maps"],
)
def test_deep_nesting_is_refused_without_recursing(text: str) -> None:
    with pytest.raises(ManifestYAMLError) as caught:
        load_manifest_documents(text)
    message = str(caught.value)
    assert message.startswith(f"nested more than {MAX_DEPTH} levels deep (line ")
    assert "remove the extra" in message and "\n" not in message


@pytest.mark.usefixtures("loader")
def test_nesting_up_to_the_limit_loads() -> None:
    depth = MAX_DEPTH - 1
    (document,) = load_manifest_documents("[" * depth + "1" + "]" * depth)
    for _ in range(depth):
        (document,) = document
    assert document == 1


@pytest.mark.usefixtures("loader")
def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestYAMLError, match=r"alias \*loop \(line 2\) refers to a "
                                                r"collection that contains it"):
        load_manifest_documents("spec: &loop\n  again: *loop\n")


@pytest.mark.usefixtures("loader")
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: [unclosed", "not valid YAML: "),
        ("a: *undefined", "found undefined alias 'undefined' (line 1, column 4)"),
        ("a: !!python/object/apply:os.system [true]", "could not determine a constructor"),
        ("a: &x 1\nb: &x 2\n", "found duplicate anchor 'x'"),
    ],
)
def test_yaml_errors_are_one_line(text: str, fragment: str) -> None:
    with pytest.raises(ManifestYAMLError) as caught:
        load_manifest_documents(text)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_files_larger_than_the_limit_are_refused_without_reading_them_whole() -> None:
    big = io.BytesIO(b"# padding\n" * (MAX_MANIFEST_BYTES // 5))
    with pytest.raises(ManifestYAMLError, match=r"larger than 1 MiB"):
        read_manifest(big)
    assert big.tell() == MAX_MANIFEST_BYTES + 1
    with pytest.raises(ManifestYAMLError, match=r"larger than 1 MiB"):
        read_manifest(io.StringIO("é" * (MAX_MANIFEST_BYTES // 2 + 1)))
    with pytest.raises(ManifestYAMLError, match=r"larger than 1 MiB"):
        load_manifest_documents("a: " + "x" * MAX_MANIFEST_BYTES)
    assert read_manifest(io.BytesIO("name: é\n".encode())) == "name: é\n"


def test_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ManifestYAMLError, match=r"not UTF-8 text \(byte 6\)"):
        read_manifest(io.BytesIO(b"name: \xff\n"))
