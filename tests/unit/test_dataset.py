"""The dataset reader: formats, validation messages, row windows and streaming."""

from __future__ import annotations

import csv
import json
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from rollout_operator.runtime.dataset import (
    BadRow,
    DatasetRow,
    count_rows,
    dataset_fingerprint,
    iter_rows,
    iter_rows_lenient,
    validate_dataset,
)
from rollout_operator.runtime.errors import DatasetParseError, DatasetValidationError

SYSTEM = "You are a calculator assistant. Respond with #### and the number."

ROWS: list[dict[str, Any]] = [
    {
        "system_prompt": SYSTEM,
        "user_prompt": f"What is {a} * {b}?",
        "ground_truth": str(a * b),
        "difficulty": level,
        "Source": "unit, test",
    }
    for a, b, level in [(12, 8, "easy"), (52, 85, "hard"), (8, 11, "easy"), (70, 14, "medium")]
]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], row_group_size: int = 1024) -> Path:
    pq.write_table(pa.Table.from_pylist(list(rows)), path, row_group_size=row_group_size)
    return path


WRITERS: dict[str, Callable[[Path, Sequence[dict[str, Any]]], Path]] = {
    ".jsonl": write_jsonl,
    ".csv": write_csv,
    ".parquet": write_parquet,
}


@pytest.fixture(params=sorted(WRITERS))
def write_rows(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[Sequence[dict[str, Any]]], Path]:
    """Writes rows in one of the three formats (the test runs once per format)."""
    suffix: str = request.param

    def write(rows: Sequence[dict[str, Any]]) -> Path:
        return WRITERS[suffix](tmp_path / f"data{suffix}", rows)

    return write


def test_same_content_gives_identical_rows_in_every_format(tmp_path: Path) -> None:
    read = {
        suffix: list(iter_rows(writer(tmp_path / f"data{suffix}", ROWS)))
        for suffix, writer in WRITERS.items()
    }
    assert read[".jsonl"] == read[".csv"] == read[".parquet"]
    first = read[".parquet"][0]
    assert first == DatasetRow(
        row_index=0,
        system_prompt=SYSTEM,
        user_prompt="What is 12 * 8?",
        ground_truth="96",
        extra={"difficulty": "easy", "Source": "unit, test"},
    )
    assert [row.row_index for row in read[".csv"]] == [0, 1, 2, 3]


def test_messages_and_normalised_row() -> None:
    row = DatasetRow(3, "sys", "user", "42", {"Meta": {"k": 1}})
    assert row.messages() == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "user"},
    ]
    as_dict = row.as_dict()
    assert as_dict == {
        "ground_truth": "42",
        "user_prompt": "user",
        "system_prompt": "sys",
        "Meta": {"k": 1},
    }
    assert "row_index" not in as_dict
    as_dict["Meta"] = None
    assert row.extra == {"Meta": {"k": 1}}


def test_headers_match_case_insensitively_and_extra_columns_keep_their_spelling(
    write_rows: Callable[[Sequence[dict[str, Any]]], Path],
) -> None:
    path = write_rows(
        [
            {
                "System_Prompt": "sys",
                "USER_PROMPT": "What is 2 + 2?",
                "Ground_Truth": "4",
                "Difficulty": "easy",
                "metadata": "kept",
            }
        ]
    )
    (row,) = iter_rows(path)
    assert (row.system_prompt, row.user_prompt, row.ground_truth) == ("sys", "What is 2 + 2?", "4")
    assert row.extra == {"Difficulty": "easy", "metadata": "kept"}
    assert list(row.as_dict()) == [
        "ground_truth",
        "user_prompt",
        "system_prompt",
        "Difficulty",
        "metadata",
    ]


def test_offset_and_limit_use_absolute_row_indices(
    write_rows: Callable[[Sequence[dict[str, Any]]], Path],
) -> None:
    path = write_rows(ROWS)
    window = list(iter_rows(path, offset=1, limit=2))
    assert [row.row_index for row in window] == [1, 2]
    assert [row.user_prompt for row in window] == ["What is 52 * 85?", "What is 8 * 11?"]
    assert [row.row_index for row in iter_rows(path, offset=3)] == [3]
    assert list(iter_rows(path, offset=10)) == []
    assert list(iter_rows(path, limit=0)) == []
    assert validate_dataset(path, offset=1, limit=2) == 2
    assert validate_dataset(path, offset=2) == 2
    assert count_rows(path) == len(ROWS)


def test_parquet_offset_starts_inside_a_later_row_group(tmp_path: Path) -> None:
    rows = [
        dict(ROWS[0], user_prompt=f"What is {i} * 2?", ground_truth=str(2 * i)) for i in range(25)
    ]
    path = write_parquet(tmp_path / "groups.parquet", rows, row_group_size=4)
    assert pq.ParquetFile(path).metadata.num_row_groups == 7
    window = list(iter_rows(path, offset=9, limit=8))
    assert [row.row_index for row in window] == list(range(9, 17))
    assert [row.ground_truth for row in window] == [str(2 * i) for i in range(9, 17)]
    assert [row.row_index for row in iter_rows(path, offset=24)] == [24]
    assert list(iter_rows(path, offset=25)) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "system_prompt"}, "Row 1: Missing required columns: ['system_prompt']"),
        (
            {"drop": "ground_truth", "drop2": "user_prompt"},
            "Row 1: Missing required columns: ['ground_truth', 'user_prompt']",
        ),
        ({"set": ("ground_truth", 96)}, "Row 1: 'ground_truth' must be a string, got int"),
        ({"set": ("ground_truth", None)}, "Row 1: 'ground_truth' cannot be null"),
        ({"set": ("system_prompt", "   ")}, "Row 1: 'system_prompt' cannot be empty"),
        ({"set": ("user_prompt", "")}, "Row 1: 'user_prompt' cannot be empty"),
    ],
)
def test_validation_errors_have_the_upstream_messages(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    bad = dict(ROWS[1])
    for key in ("drop", "drop2"):
        if key in change:
            del bad[change[key]]
    if "set" in change:
        name, value = change["set"]
        bad[name] = value
    path = write_jsonl(tmp_path / "data.jsonl", [ROWS[0], bad, ROWS[2]])
    rows = iter_rows(path)
    assert next(rows).row_index == 0  # the error waits until its row is reached
    with pytest.raises(DatasetValidationError) as caught:
        next(rows)
    assert str(caught.value) == f"{message} (line 2)"  # upstream's words, then the file's line
    with pytest.raises(DatasetValidationError, match=r"^Row 1: "):
        validate_dataset(path)


def test_error_row_numbers_are_absolute_when_an_offset_is_used(tmp_path: Path) -> None:
    bad = dict(ROWS[2], ground_truth=88)
    path = write_jsonl(tmp_path / "data.jsonl", [ROWS[0], ROWS[1], bad])
    with pytest.raises(DatasetValidationError, match=r"^Row 2: 'ground_truth' must be a string"):
        list(iter_rows(path, offset=1))
    assert validate_dataset(path, offset=0, limit=2) == 2


def test_int_ground_truth_from_parquet_is_rejected(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "data.parquet",
        [{"system_prompt": "s", "user_prompt": "u", "ground_truth": 96}],
    )
    with pytest.raises(
        DatasetValidationError, match=r"^Row 0: 'ground_truth' must be a string, got int$"
    ):
        validate_dataset(path)


def test_a_non_object_jsonl_line_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '["a", "b"]\n', encoding="utf-8")
    with pytest.raises(DatasetValidationError,
                       match=r"^Row 1: Expected object, got list \(line 2\)$"):
        validate_dataset(path)


def test_a_required_column_spelled_twice_is_ambiguous(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [dict(ROWS[0], Ground_Truth="97")])
    with pytest.raises(DatasetValidationError, match="'ground_truth' appears more than once"):
        validate_dataset(path)


def test_bad_jsonl_line_reports_the_physical_line_number(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        json.dumps(ROWS[0])
        + "\n\n"
        + '{"system_prompt": "s", oops}\n'
        + json.dumps(ROWS[1])
        + "\n",
        encoding="utf-8",
    )
    rows = iter_rows(path)
    assert next(rows).row_index == 0
    with pytest.raises(
        DatasetParseError, match=r"^Invalid JSON at line 3: Expecting property name"
    ):
        next(rows)
    # The bad line still holds row index 1, so the row after it is 2, as count_rows says.
    lenient = list(iter_rows_lenient(path))
    assert [type(r).__name__ for r in lenient] == ["DatasetRow", "BadRow", "DatasetRow"]
    assert [r.row_index for r in lenient] == [0, 1, 2]
    assert count_rows(path) == 3


def test_blank_jsonl_lines_are_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(
        "\n" + json.dumps(ROWS[0]) + "\n   \n\n" + json.dumps(ROWS[1]) + "\n\n", encoding="utf-8"
    )
    assert [r.user_prompt for r in iter_rows(path)] == ["What is 12 * 8?", "What is 52 * 85?"]
    assert [r.row_index for r in iter_rows(path, offset=1)] == [1]
    assert count_rows(path) == 2


def test_csv_row_with_too_many_values(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "system_prompt,user_prompt,ground_truth\n"
        "sys,What is 2 + 2?,4\n"
        "sys,What is 1,000 + 1?,1001\n",
        encoding="utf-8",
    )
    rows = iter_rows(path)
    assert next(rows).ground_truth == "4"
    with pytest.raises(DatasetParseError,
                       match=r"^Invalid CSV at line 3: the row has more columns than the header"):
        next(rows)
    (good, bad) = iter_rows_lenient(path, source="data.csv")
    assert isinstance(good, DatasetRow)
    assert isinstance(bad, BadRow)
    assert bad.row_index == 1 and bad.line == 3
    assert bad.message.startswith("data.csv line 3: has more columns than the header")


def test_csv_short_row_reads_missing_values_as_null(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "system_prompt,user_prompt,ground_truth\nsys,What is 2 + 2?\n", encoding="utf-8"
    )
    with pytest.raises(DatasetValidationError,
                       match=r"^Row 0: 'ground_truth' cannot be null \(line 2\)$"):
        validate_dataset(path)


def test_csv_quoting_newlines_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    rows = [dict(ROWS[0], user_prompt='Line one,\nline "two"'), ROWS[1]]
    write_csv(path, rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    read = list(iter_rows(path))
    assert read[0].system_prompt == SYSTEM
    assert read[0].user_prompt == 'Line one,\nline "two"'
    assert read[1].row_index == 1
    assert count_rows(path) == 2


def test_csv_header_only_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("system_prompt,user_prompt,ground_truth\n", encoding="utf-8")
    assert list(iter_rows(path)) == []
    assert count_rows(path) == 0
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert list(iter_rows(empty)) == []
    assert count_rows(empty) == 0


def test_unsupported_extension_and_missing_file(tmp_path: Path) -> None:
    json_file = tmp_path / "data.json"
    json_file.write_text(json.dumps(ROWS), encoding="utf-8")
    expected = (
        "Unsupported file format: .json. Supported formats: .parquet (recommended), .jsonl, .csv"
    )
    for call in (iter_rows, iter_rows_lenient, validate_dataset, count_rows):
        with pytest.raises(DatasetParseError) as caught:
            call(json_file)
        assert str(caught.value) == expected
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError) as not_found:
        iter_rows(missing)  # raised on the call, before the first row is asked for
    assert str(not_found.value) == f"Dataset file not found: {missing}"
    with pytest.raises(FileNotFoundError, match="Dataset file not found"):
        dataset_fingerprint(missing)


def test_broken_parquet_and_bad_utf8_are_parse_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file at all")
    with pytest.raises(DatasetParseError, match=r"^Error reading Parquet file"):
        validate_dataset(broken)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"system_prompt": "caf\xe9", "user_prompt": "u", "ground_truth": "1"}\n')
    with pytest.raises(DatasetParseError, match="not valid UTF-8"):
        validate_dataset(latin)


def test_negative_window_is_rejected(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    with pytest.raises(ValueError, match="offset"):
        iter_rows(path, offset=-1)
    with pytest.raises(ValueError, match="limit"):
        iter_rows(path, limit=-1)


def test_lenient_reader_turns_bad_rows_into_bad_row_items(
    write_rows: Callable[[Sequence[dict[str, Any]]], Path],
) -> None:
    rows = [dict(row) for row in ROWS]
    rows[1]["user_prompt"] = " "
    rows[3]["ground_truth"] = ""
    path = write_rows(rows)
    items = list(iter_rows_lenient(path, offset=1, source="data"))
    # JSONL: one row a line; CSV: the header is line 1; Parquet has no lines: the row index.
    lines = {".jsonl": (2, 4), ".csv": (3, 5), ".parquet": (None, None)}[path.suffix]
    assert items[0] == BadRow(1, "'user_prompt' cannot be empty", lines[0], "data")
    assert isinstance(items[1], DatasetRow)
    assert items[1].row_index == 2
    assert items[2] == BadRow(3, "'ground_truth' cannot be empty", lines[1], "data")
    where = "row 1" if path.suffix == ".parquet" else f"line {lines[0]}"
    assert items[0].message == f"data {where}: 'user_prompt' cannot be empty"
    strict = r"^Row 1: 'user_prompt' cannot be empty" + (
        "$" if lines[0] is None else rf" \(line {lines[0]}\)$")
    with pytest.raises(DatasetValidationError, match=strict):
        validate_dataset(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_every_reader_names_the_same_file_line(tmp_path: Path, suffix: str) -> None:
    """A blank line before a bad row (and a CSV value over two lines): `test`/`eval` (strict)
    and `validate`/runs (lenient) name the same 1-based line of the file."""
    bad = dict(ROWS[1], ground_truth=None)
    if suffix == ".jsonl":
        text = json.dumps(ROWS[0]) + "\n\n" + json.dumps(bad) + "\n"
        line = 3
    else:
        text = ('system_prompt,user_prompt,ground_truth\n"sys","What is\n2 + 2?",4\n\n'
                "sys,u,\n")
        line = 5  # header 1, the first row 2-3, a blank line 4
    path = tmp_path / f"data{suffix}"
    path.write_text(text, encoding="utf-8")
    [_, lenient] = list(iter_rows_lenient(path, source="data"))
    assert isinstance(lenient, BadRow) and lenient.message.startswith(f"data line {line}: ")
    with pytest.raises(DatasetValidationError) as caught:
        validate_dataset(path)
    assert str(caught.value).endswith(f"(line {line})")
    assert str(caught.value).startswith("Row 1: ")


def test_fingerprint_follows_the_bytes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    first = dataset_fingerprint(path)
    assert first == xxhash.xxh3_128_hexdigest(path.read_bytes())
    assert len(first) == 32
    copy = write_jsonl(tmp_path / "copy.jsonl", ROWS)
    assert dataset_fingerprint(copy) == first
    write_jsonl(path, [*ROWS[:3], dict(ROWS[3], ground_truth="981")])
    assert dataset_fingerprint(path) != first


@pytest.fixture(scope="module")
def large_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 200,000 rows (some 30 MB)."""
    path = tmp_path_factory.mktemp("large") / "large.jsonl"
    template = (
        '{"system_prompt": "You are a calculator assistant. Use the provided tools, then answer.", '
        '"user_prompt": "What is %d * 7?", "ground_truth": "%d", "difficulty": "easy", '
        '"notes": "padding padding padding padding padding padding"}\n'
    )
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, 200_000, 10_000):
            handle.write("".join(template % (i, 7 * i) for i in range(start, start + 10_000)))
    return path


def test_reading_part_of_a_large_file_does_not_load_it(large_jsonl: Path) -> None:
    size = large_jsonl.stat().st_size
    tracemalloc.start()
    try:
        rows = iter_rows(large_jsonl, offset=150_000)
        taken = [next(rows) for _ in range(1_000)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [taken[0].row_index, taken[-1].row_index] == [150_000, 150_999]
    assert taken[0].ground_truth == str(7 * 150_000)
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"


def test_a_full_pass_keeps_memory_flat(tmp_path: Path, large_jsonl: Path) -> None:
    # A smaller slice of the large file, read end to end under tracemalloc (which is slow).
    path = tmp_path / "slice.jsonl"
    with large_jsonl.open(encoding="utf-8") as source:
        path.write_text("".join(next(source) for _ in range(20_000)), encoding="utf-8")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_rows_lenient(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"


def test_parquet_is_read_batch_by_batch(tmp_path: Path) -> None:
    rows = [
        dict(ROWS[0], user_prompt=f"What is {i} * 3? " + "x" * 200, ground_truth=str(3 * i))
        for i in range(50_000)
    ]
    path = write_parquet(tmp_path / "large.parquet", rows, row_group_size=10_000)
    del rows
    metadata = pq.read_metadata(path)
    decoded_size = sum(
        metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups)
    )
    tracemalloc.start()
    try:
        window = iter_rows(path, offset=25_000)
        taken = [next(window) for _ in range(100)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert taken[0].row_index == 25_000
    assert taken[0].ground_truth == str(75_000)
    assert count_rows(path) == 50_000
    assert peak < decoded_size / 10, f"peak {peak} bytes for {decoded_size} decoded bytes"


def test_csv_fields_longer_than_the_csv_module_default(tmp_path: Path) -> None:
    long_prompt = "word " * 60_000  # 300 kB, above the csv module's 128 KiB field limit
    path = write_csv(tmp_path / "long.csv", [dict(ROWS[0], user_prompt=long_prompt), ROWS[1]])
    saved = csv.field_size_limit(131_072)
    try:
        assert count_rows(path) == 2
        csv.field_size_limit(131_072)
        assert [row.user_prompt for row in iter_rows(path)] == [long_prompt, ROWS[1]["user_prompt"]]
    finally:
        csv.field_size_limit(max(saved, csv.field_size_limit()))


def test_lenient_jsonl_names_the_line_of_every_kind_of_bad_row(tmp_path: Path) -> None:
    """A bad JSON line, a wrongly typed row, a missing column and a line that is not UTF-8 are
    bad rows naming their line of the file (blank lines counted); the rows around them read."""
    path = tmp_path / "data.jsonl"
    lines = [
        json.dumps(ROWS[0]).encode(),                                     # line 1, row 0
        b"",                                                              # line 2: blank
        b'{"system_prompt": "s", oops}',                                  # line 3, row 1
        json.dumps(dict(ROWS[1], ground_truth=42)).encode(),              # line 4, row 2
        json.dumps({"system_prompt": "s", "user_prompt": "u"}).encode(),  # line 5, row 3
        b'{"system_prompt": "caf\xe9", "user_prompt": "u", "ground_truth": "1"}',  # line 6
        json.dumps(ROWS[2]).encode(),                                     # line 7, row 5
    ]
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    items = list(iter_rows_lenient(path, source="repo/data.jsonl"))
    assert [r.row_index for r in items] == [0, 1, 2, 3, 4, 5]
    assert count_rows(path) == 6
    good = [r for r in items if isinstance(r, DatasetRow)]
    assert [r.row_index for r in good] == [0, 5]
    assert [(r.line, r.message) for r in items if isinstance(r, BadRow)] == [
        (3, "repo/data.jsonl line 3: not valid JSON: Expecting property name enclosed in "
            "double quotes (column 24)"),
        (4, "repo/data.jsonl line 4: 'ground_truth' must be a string, got int"),
        (5, "repo/data.jsonl line 5: Missing required columns: ['ground_truth']"),
        (6, "repo/data.jsonl line 6: not valid UTF-8 (byte 23 of the line); save the file "
            "as UTF-8"),
    ]
    # The window counts rows, bad ones included; the strict reader stops at the first bad one.
    assert [r.row_index for r in iter_rows_lenient(path, offset=4, limit=1)] == [4]
    with pytest.raises(DatasetParseError, match=r"^Invalid JSON at line 3: "):
        validate_dataset(path)
    with pytest.raises(DatasetParseError, match=r"not valid UTF-8: .* \(line 6, byte offset \d+\)"):
        validate_dataset(path, offset=4)
    assert validate_dataset(path, offset=5) == 1


def test_lenient_csv_row_that_is_not_utf8_is_one_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(
        b"system_prompt,user_prompt,ground_truth\n"
        b'sys,"What is\n2 + 2?",4\n'                  # lines 2-3, row 0
        b"sys,caf\xe9 au lait?,1\n"                     # line 4, row 1
        b"sys,What is 3 + 3?,6\n"                        # line 5, row 2
    )
    items = list(iter_rows_lenient(path, source="data.csv"))
    assert [type(r).__name__ for r in items] == ["DatasetRow", "BadRow", "DatasetRow"]
    bad = items[1]
    assert isinstance(bad, BadRow)
    assert bad.message == "data.csv line 4: not valid UTF-8; save the file as UTF-8"
    assert count_rows(path) == 3
    with pytest.raises(DatasetParseError, match=r"not valid UTF-8: .* \(line 4\)"):
        validate_dataset(path)
    header = tmp_path / "header.csv"
    header.write_bytes(b"system_prompt,user_prompt,ground_truth,caf\xe9\nsys,u,1,x\n")
    with pytest.raises(DatasetParseError, match=r"not valid UTF-8: .* \(the header, line 1\)"):
        list(iter_rows_lenient(header))
