"""Scrubbing known secret values: the `Scrubber`, the log filter, and where pods apply them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from rollout_operator.cli.pod_common import (
    MAX_TERMINATION_MESSAGE_BYTES,
    write_termination_message,
)
from rollout_operator.resources.pod_template import GIT_CREDENTIAL_KEYS, STORAGE_CREDENTIAL_KEYS
from rollout_operator.runtime.models.naming import PROVIDER_KEY_ENV
from rollout_operator.runtime.records import RecordError, TrajectoryRecord
from rollout_operator.runtime.run_config import MODEL_API_KEY_ENV
from rollout_operator.runtime.scrub import (
    MASK,
    Scrubber,
    install_log_scrubbing,
    process_scrubber,
    secret_env_names,
    use_process_scrubber,
)
from rollout_operator.runtime.shards import ShardWriter, read_all_records
from rollout_operator.runtime.storage import open_store

MODEL_KEY = "sk-model-7Hq2LmX9vRt4"
JUDGE_KEY = "jk/4f+9Qx=Zt8LmW2p"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"


@pytest.fixture
def scrubbing() -> Iterator[Scrubber]:
    """The process scrubber set to the test's secrets, restored afterwards."""
    before = process_scrubber()
    scrubber = use_process_scrubber(Scrubber.from_environ(
        {MODEL_API_KEY_ENV: MODEL_KEY, "JUDGE_API_KEY": JUDGE_KEY}, ["JUDGE_API_KEY"]))
    try:
        yield scrubber
    finally:
        use_process_scrubber(before)


# --- which values ------------------------------------------------------------------------


def test_the_known_names_cover_every_credential_a_pod_receives() -> None:
    environ = {name: "x" * 20 for name in (
        MODEL_API_KEY_ENV, *PROVIDER_KEY_ENV.values(), "LITELLM_API_KEY",
        *STORAGE_CREDENTIAL_KEYS, *GIT_CREDENTIAL_KEYS,
    )}
    names = set(secret_env_names(environ))
    assert {MODEL_API_KEY_ENV, *PROVIDER_KEY_ENV.values(), "LITELLM_API_KEY"} <= names
    assert {"ROLLOUT_GIT_TOKEN", "ROLLOUT_GIT_SSH_KEY"} <= names
    assert set(STORAGE_CREDENTIAL_KEYS) - names == {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert "ROLLOUT_GIT_USERNAME" not in names


def test_only_secret_variables_and_the_named_judge_keys_are_scrubbed() -> None:
    environ = {
        MODEL_API_KEY_ENV: MODEL_KEY,
        "MY_JUDGE": "judge-secret-value",
        "HOME": "/home/someone-with-a-long-name",
        "AWS_REGION": "eu-central-1",
    }
    text = f"{MODEL_KEY} judge-secret-value /home/someone-with-a-long-name eu-central-1"
    assert Scrubber.from_environ(environ).scrub(text) == (
        "*** judge-secret-value /home/someone-with-a-long-name eu-central-1")
    assert Scrubber.from_environ(environ, ["MY_JUDGE"]).scrub(text) == (
        "*** *** /home/someone-with-a-long-name eu-central-1")


def test_an_empty_environment_scrubs_nothing_and_returns_its_input() -> None:
    scrubber = Scrubber.from_environ({})
    assert not scrubber and len(scrubber) == 0
    text = "nothing secret here"
    data = {"a": [text, 1, None]}
    assert not scrubber.finds(text)
    assert scrubber.scrub(text) is text
    assert scrubber.scrub_data(data) is data
    assert scrubber.scrub_json('{"a":1}') == '{"a":1}'


def test_short_values_are_ignored() -> None:
    scrubber = Scrubber.from_environ({MODEL_API_KEY_ENV: "EMPTY", "AWS_ACCESS_KEY_ID": "abc1234"})
    assert not scrubber
    assert scrubber.scrub("EMPTY abc1234") == "EMPTY abc1234"


# --- how they are found -------------------------------------------------------------------


def test_quoted_and_encoded_forms_are_scrubbed() -> None:
    scrubber = Scrubber([JUDGE_KEY, 'pass"word\\with\nlines'])
    for text in (
        f"key={quote(JUDGE_KEY, safe='')}",
        f"key={quote(JUDGE_KEY)}",
        json.dumps({"key": 'pass"word\\with\nlines'}),
        repr('pass"word\\with\nlines'),
        repr({"nested": repr('pass"word\\with\nlines')}),
        json.dumps(repr('pass"word\\with\nlines')),
    ):
        scrubbed = scrubber.scrub(text)
        assert MASK in scrubbed, text
        for fragment in (JUDGE_KEY, quote(JUDGE_KEY, safe=""), "pass", "word"):
            assert fragment not in scrubbed, (text, scrubbed)


def test_a_value_with_a_trailing_newline_is_found_without_it() -> None:
    scrubber = Scrubber.from_environ({"ROLLOUT_GIT_TOKEN": "ghp_0123456789abcdef\n"})
    assert scrubber.scrub("token ghp_0123456789abcdef used") == "token *** used"


def test_multi_line_and_json_credentials_are_scrubbed_by_their_parts() -> None:
    pem_lines = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "AAAAMwAAAAtzc2gtZWQyNTUxOQ"]
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(pem_lines) + \
        "\n-----END OPENSSH PRIVATE KEY-----\n"
    account = json.dumps({"type": "service_account", "project_id": "demo-project",
                          "private_key_id": "0123456789abcdef0123", "private_key": pem,
                          "client_email": "robot@demo-project.iam.gserviceaccount.com"}, indent=1)
    scrubber = Scrubber.from_environ({"ROLLOUT_GIT_SSH_KEY": pem,
                                      "GOOGLE_SERVICE_ACCOUNT_KEY": account})
    assert scrubber.scrub(f"line: {pem_lines[1]}") == "line: ***"
    assert scrubber.scrub("id 0123456789abcdef0123 in demo-project") == "id *** in demo-project"
    assert scrubber.scrub(account) == MASK
    assert pem_lines[0] not in scrubber.scrub(json.dumps({"key": pem}))


def test_overlapping_and_nested_secrets_are_replaced_whole() -> None:
    scrubber = Scrubber(["abcdefgh12345678", "12345678zyxwvuts", "secretvalue123",
                         "xxsecretvalue123yy"])
    # Overlapping: neither value may survive in part.
    assert scrubber.scrub("<abcdefgh12345678zyxwvuts>") == "<***>"
    # One inside another, and the shorter alone.
    assert scrubber.scrub("a xxsecretvalue123yy b secretvalue123 c") == "a *** b *** c"
    # Adjacent values become one mask; repeated values each get one.
    assert scrubber.scrub("abcdefgh12345678secretvalue123") == "***"
    assert scrubber.scrub("secretvalue123 and secretvalue123") == "*** and ***"


def test_nested_structures_are_scrubbed_and_untouched_parts_kept() -> None:
    scrubber = Scrubber([MODEL_KEY, JUDGE_KEY])
    clean = {"scores": {"r": 1.0}, "tools": ["multiply"]}
    data = {
        "messages": [{"role": "tool", "content": f"result (debug {MODEL_KEY})"},
                     {"role": "assistant", "content": "#### 4"}],
        "error": ("reward", f"judge rejected {JUDGE_KEY!r}"),
        f"key-{MODEL_KEY}": 3,
        "clean": clean,
        "count": 2,
        "none": None,
    }
    scrubbed = scrubber.scrub_data(data)
    assert scrubbed == {
        "messages": [{"role": "tool", "content": "result (debug ***)"},
                     {"role": "assistant", "content": "#### 4"}],
        "error": ("reward", "judge rejected '***'"),
        "key-***": 3,
        "clean": clean,
        "count": 2,
        "none": None,
    }
    assert scrubbed["clean"] is clean
    assert scrubbed["messages"][1] is data["messages"][1]
    assert MODEL_KEY in data["messages"][0]["content"]  # the input is not changed


def test_scrubbed_json_stays_valid_where_a_value_follows_an_escape() -> None:
    # "n12345678" follows the backslash of an escaped newline in the JSON text: replacing it
    # there would leave "\\***", an invalid escape. The JSON is scrubbed as data instead.
    scrubber = Scrubber(["n12345678"])
    text = json.dumps({"a": "line\n12345678", "b": "xn12345678"})
    scrubbed = scrubber.scrub_json(text)
    assert json.loads(scrubbed) == {"a": "line\n12345678", "b": "x***"}


# --- where they are applied ---------------------------------------------------------------


def test_log_records_are_scrubbed_when_they_reach_a_handler(scrubbing: Scrubber) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    top = logging.getLogger("scrub-test")
    top.addHandler(handler)
    top.setLevel(logging.INFO)
    try:
        install_log_scrubbing(top)
        install_log_scrubbing(top)  # twice is once
        assert len(handler.filters) == 1
        child = logging.getLogger("scrub-test.child")  # its records propagate to `top`
        child.warning("calling the judge with %s", JUDGE_KEY)
        child.info("model key %r", MODEL_KEY)
        child.info("100% fine, no args")
        try:
            raise RuntimeError(f"provider said: bad key {MODEL_KEY}")
        except RuntimeError:
            child.exception("request failed")
    finally:
        top.removeHandler(handler)
        top.filters.clear()
    output = stream.getvalue()
    assert MODEL_KEY not in output and JUDGE_KEY not in output
    assert "scrub-test.child: calling the judge with ***" in output
    assert "model key '***'" in output
    assert "100% fine, no args" in output
    assert "RuntimeError: provider said: bad key ***" in output


def test_the_termination_message_is_scrubbed_before_it_is_cut(
    scrubbing: Scrubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "termination-log"
    payload = {"error": f"Model check failed: 401 for key {MODEL_KEY}",
               "problems": [{"message": f"judge {JUDGE_KEY}"}],
               "long": "x" * (MAX_TERMINATION_MESSAGE_BYTES - 40) + MODEL_KEY}
    text = write_termination_message(
        payload, environ={"ROLLOUT_TERMINATION_MESSAGE_PATH": str(path)})
    written = path.read_text()
    printed = capsys.readouterr().out
    assert written == text and MASK in written and text in printed
    for key in (MODEL_KEY, JUDGE_KEY, MODEL_KEY[:12], JUDGE_KEY[:12]):
        assert key not in written and key not in printed
    assert json.loads(written)["error"] == "Model check failed: 401 for key ***"


async def test_the_shard_writer_commits_records_scrubbed(tmp_path: Path) -> None:
    scrubber = Scrubber([MODEL_KEY, JUDGE_KEY, AWS_SECRET])
    store = open_store((tmp_path / "run").as_uri())
    leaky = TrajectoryRecord(
        rollout_id="calc-0-0", row_index=0, status="completed",
        messages=[{"role": "user", "content": "q\n" + MODEL_KEY},
                  {"role": "tool", "content": f"out {MODEL_KEY} {quote(AWS_SECRET, safe='')}"},
                  {"role": "assistant", "content": "#### 1"}],
        error=RecordError(category="reward", message=f"judge: bad key {JUDGE_KEY!r}"),
        scores={"judge": 0.0}, reward=0.0, metadata={"headers": {"x-api-key": MODEL_KEY}},
        turns=[{"token_ids": [1], "logprobs": [float("-inf")]}],
    )
    clean = TrajectoryRecord(rollout_id="calc-1-0", row_index=1, status="completed",
                             messages=[{"role": "assistant", "content": "#### 2"}])
    async with ShardWriter(store, "", 0, scrubber=scrubber) as writer:
        await writer.add(leaky)
        await writer.add(clean)
    data = await store.get(writer.parts[0])
    text = data.decode()
    for secret in (MODEL_KEY, JUDGE_KEY, AWS_SECRET, quote(AWS_SECRET, safe="")):
        assert secret not in text
    lines = text.splitlines()
    assert lines[1] == clean.model_dump_json()  # a clean record is written as it is
    records = [r async for r in read_all_records(store, "")]
    assert records[0].messages[1]["content"] == "out *** ***"
    assert records[0].error is not None and records[0].error.message == "judge: bad key '***'"
    assert records[0].metadata == {"headers": {"x-api-key": "***"}}
    assert records[0].turns[0].logprobs == [float("-inf")]
    assert records[1] == clean


async def test_records_are_scrubbed_as_they_are_read_with_a_scrubber(tmp_path: Path) -> None:
    store = open_store((tmp_path / "run").as_uri())
    record = TrajectoryRecord(rollout_id="calc-0-0", row_index=0, status="completed",
                              messages=[{"role": "tool", "content": f"x {AWS_SECRET}"}])
    async with ShardWriter(store, "", 0, scrubber=Scrubber()) as writer:
        await writer.add(record)
    assert AWS_SECRET in (await store.get(writer.parts[0])).decode()
    read = [r async for r in read_all_records(store, "", scrubber=Scrubber([AWS_SECRET]))]
    assert read[0].messages == [{"role": "tool", "content": "x ***"}]
