"""Object storage over URLs, against moto's S3 server on loopback and local folders."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_operator.runtime.storage import (
    ObjectNotFoundError,
    ObjectStore,
    StorageConfigError,
    StorageError,
    download_url,
    open_store,
    split_object_url,
)
from tests.support.loopback import HOST, free_port
from tests.support.s3 import S3Server, s3_server  # noqa: F401 - the fixture


@pytest.fixture(params=["s3", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return open_store(server.bucket("runs/team-a"), environ=server.env)
    return open_store((tmp_path / "out").as_uri())


async def test_put_get_round_trip(store: ObjectStore) -> None:
    assert await store.put("a/b.json", b'{"x": 1}') is True
    assert await store.get("a/b.json") == b'{"x": 1}'
    assert await store.get_text("a/b.json") == '{"x": 1}'
    assert await store.exists("a/b.json")
    assert not await store.exists("a/c.json")


async def test_put_overwrites_unless_if_absent(store: ObjectStore) -> None:
    assert await store.put("k", b"first", if_absent=True) is True
    assert await store.put("k", b"second", if_absent=True) is False
    assert await store.get("k") == b"first"
    assert await store.put("k", b"third") is True
    assert await store.get("k") == b"third"


async def test_if_absent_lets_exactly_one_racer_win(store: ObjectStore) -> None:
    results = await asyncio.gather(
        *(store.put("race", f"writer {i}".encode(), if_absent=True) for i in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    winner = results.index(True)
    assert await store.get("race") == f"writer {winner}".encode()


async def test_list_is_relative_sorted_and_scoped(store: ObjectStore) -> None:
    for key in ("shards/1/part-000002.jsonl", "shards/1/part-000001.jsonl",
                "shards/10/part-000001.jsonl", "run.json"):
        await store.put(key, b"x")
    assert await store.list("shards/1/") == [
        "shards/1/part-000001.jsonl", "shards/1/part-000002.jsonl"
    ]
    assert await store.list("shards/1") == [
        "shards/1/part-000001.jsonl", "shards/1/part-000002.jsonl"
    ]
    assert await store.list() == [
        "run.json", "shards/1/part-000001.jsonl", "shards/1/part-000002.jsonl",
        "shards/10/part-000001.jsonl",
    ]
    assert await store.list("nothing/here/") == []


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put("gone", b"x")
    await store.delete("gone")
    await store.delete("gone")
    assert not await store.exists("gone")


async def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError) as info:
        await store.get("missing.json")
    assert isinstance(info.value, FileNotFoundError)
    assert store.url_for("missing.json") in str(info.value)


async def test_child_store_and_url_for(store: ObjectStore) -> None:
    child = store.child("ns/run-1234abcd")
    assert child.url == store.url + "/ns/run-1234abcd"
    await child.put("results.json", b"{}")
    assert await store.get("ns/run-1234abcd/results.json") == b"{}"
    assert child.url_for("results.json") == store.url + "/ns/run-1234abcd/results.json"


async def test_download_and_put_file(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 4096)
    await store.put_file("data/big.bin", source)
    target = await store.download("data/big.bin", tmp_path / "copy" / "big.bin")
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]


async def test_download_of_missing_object_leaves_no_file(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(ObjectNotFoundError):
        await store.download("nope.jsonl", tmp_path / "d" / "nope.jsonl")
    assert list((tmp_path / "d").iterdir()) == []


def test_keys_outside_the_store_are_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    for key in ("../escape", "/abs", "a/./b"):
        with pytest.raises(StorageError, match="Invalid object key"):
            store.url_for(key)


async def test_s3_writes_are_visible_to_other_clients(s3_server: S3Server) -> None:  # noqa: F811
    url = s3_server.bucket("prefix")
    store = open_store(url, environ=s3_server.env)
    await store.put("shards/0/part-000001.jsonl", b"line\n")
    assert s3_server.keys(url) == ["prefix/shards/0/part-000001.jsonl"]


async def test_s3_endpoint_argument_beats_the_environment(
    s3_server: S3Server,  # noqa: F811
) -> None:
    url = s3_server.bucket()
    env = {**s3_server.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    store = open_store(url, endpoint=s3_server.endpoint, environ=env)
    assert store.endpoint == s3_server.endpoint
    await store.put("x", b"1")
    assert await store.get("x") == b"1"


async def test_s3_missing_bucket_says_what_to_fix(s3_server: S3Server) -> None:  # noqa: F811
    store = open_store("s3://no-such-bucket-here/p", environ=s3_server.env)
    with pytest.raises(StorageError) as info:
        await store.put("x", b"1")
    message = str(info.value)
    assert "bucket 'no-such-bucket-here' does not exist" in message
    assert "output.url" in message
    assert "<?xml" not in message
    with pytest.raises(StorageError, match="does not exist"):
        await store.list("shards/")


def test_s3_credentials_never_appear_in_errors(s3_server: S3Server) -> None:  # noqa: F811
    env = {"AWS_ACCESS_KEY_ID": "AKIASECRETVALUE123", "AWS_REGION": "us-east-1"}
    with pytest.raises(StorageConfigError) as info:
        open_store("s3://bucket/p", environ=env)
    assert "AWS_SECRET_ACCESS_KEY is not set" in str(info.value)
    assert "AKIASECRETVALUE123" not in str(info.value)
    with pytest.raises(StorageConfigError) as info:
        open_store("s3://user:hunter2@bucket/p", environ=s3_server.env)
    assert "hunter2" not in str(info.value)
    assert "do not put credentials" in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/path", "Unsupported storage URL scheme 'ftp://'"),
        ("s3:///prefix-only", "names no bucket"),
        ("gs://", "names no bucket"),
        ("file://host/path", "a file URL has no host"),
        ("s3://bucket/p?x=1", "no ?query"),
        ("", "A storage URL is required"),
    ],
)
def test_bad_urls_say_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(StorageConfigError, match=message.replace("?", r"\?")):
        open_store(url, environ={})


def test_bad_endpoint_is_refused() -> None:
    with pytest.raises(StorageConfigError, match="not an http"):
        open_store("s3://bucket", endpoint="minio:9000", environ={})


def test_gcs_urls_are_understood_without_a_connection() -> None:
    store = open_store("gs://my-bucket/runs/", environ={})
    assert store.scheme == "gs"
    assert store.url == "gs://my-bucket/runs"
    assert store.url_for("ns/run-1/results.json") == "gs://my-bucket/runs/ns/run-1/results.json"
    assert store.child("ns").url == "gs://my-bucket/runs/ns"


def test_local_paths_and_file_urls_are_the_same_store(tmp_path: Path) -> None:
    by_path = open_store(str(tmp_path / "o"))
    by_url = open_store((tmp_path / "o").as_uri())
    assert by_path.url == by_url.url == (tmp_path / "o").as_uri()
    assert (tmp_path / "o").is_dir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageConfigError, match="is a file"):
        open_store(str(tmp_path / "afile"))


async def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    await store.put("shards/0/part-000001.jsonl", b"a\n")
    await store.put("shards/0/part-000001.jsonl", b"b\n", if_absent=True)
    assert sorted(p.name for p in (tmp_path / "shards" / "0").iterdir()) == [
        "part-000001.jsonl"
    ]


def test_split_object_url() -> None:
    assert split_object_url("s3://b/data/x.jsonl") == ("s3://b/data", "x.jsonl")
    assert split_object_url("gs://b/x.parquet") == ("gs://b", "x.parquet")
    with pytest.raises(StorageConfigError, match="does not name an object"):
        split_object_url("s3://bucket")


async def test_download_url(s3_server: S3Server, tmp_path: Path) -> None:  # noqa: F811
    url = s3_server.bucket()
    s3_server.client().put_object(
        Bucket=url.removeprefix("s3://"), Key="data/rows.jsonl", Body=b'{"a": 1}\n'
    )
    path = await download_url(f"{url}/data/rows.jsonl", tmp_path / "rows.jsonl",
                              environ=s3_server.env)
    assert path.read_bytes() == b'{"a": 1}\n'


@pytest.fixture(scope="module")
def s3_with_auth() -> Iterator[str]:
    """A moto S3 server that checks credentials (it knows none, so every key is refused)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        yield endpoint
    finally:
        process.kill()
        process.wait(10)


async def test_refused_credentials_say_what_to_check_and_stay_secret(s3_with_auth: str) -> None:
    env = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN0000", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-xyz",
           "AWS_REGION": "us-east-1"}
    store = open_store("s3://bucket/runs", endpoint=s3_with_auth, environ=env)
    for operation in (store.put("k", b"1"), store.get("k"), store.list("shards/"),
                      store.exists("k")):
        with pytest.raises(StorageError) as info:
            await operation
        message = str(info.value)
        assert "permission denied" in message or "not accepted" in message
        assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message
        assert "s3cr3t-value-xyz" not in message
