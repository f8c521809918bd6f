"""Readers: every input record yields exactly one item, bad ones as errors naming their position."""

from __future__ import annotations

import csv
import io
import json

import pytest

import screening
from screening.errors import InputFormatError
from screening.io import csv_columns, detect_format, read_records

from .conftest import base_record, csv_cells


def _rows(text: str, fmt: str | None = None, name: str | None = None) -> list[dict]:
    items = read_records(io.StringIO(text), fmt, name=name)
    return list(screening.screen_items(items, screening.load_ruleset()))


def _csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns())
    writer.writeheader()
    for r in records:
        writer.writerow(csv_cells(r))
    return buf.getvalue()


RECORDS = [base_record(candidate_id="A"), base_record(candidate_id="B", birth_date="1960-01-01"),
           base_record(candidate_id="C", diary=None, consent="pending")]


def test_all_formats_give_the_same_decisions() -> None:
    jsonl = "\n".join(json.dumps(r) for r in RECORDS) + "\n"
    array = json.dumps(RECORDS, indent=2)
    want = _rows(jsonl)
    assert [r["decision"] for r in want] == ["eligible", "excluded", "undetermined"]
    assert _rows(array) == want
    assert _rows(_csv(RECORDS)) == want
    assert _rows(jsonl, "jsonl") == want
    assert _rows(json.dumps(RECORDS[0], indent=2))[0] == want[0]  # one pretty-printed object


@pytest.mark.parametrize("name, head, fmt", [
    ("x.jsonl", "", "jsonl"), ("x.ndjson", "", "jsonl"), ("x.json", "", "json"), ("x.CSV", "", "csv"),
    (None, '[{"a": 1}]', "json"), (None, '{"a": 1}\n{"a": 2}\n', "jsonl"), (None, '{\n "a": 1\n}', "json"),
    (None, "candidate_id,screening_start\n", "csv"),
])
def test_format_detection(name: str | None, head: str, fmt: str) -> None:
    assert detect_format(name, head) == fmt


def test_bad_lines_become_error_rows_and_the_batch_goes_on() -> None:
    lines = [json.dumps(RECORDS[0]), "[1, 2]", "not json", json.dumps(dict(RECORDS[1], birthdate="1950-01-01")),
             "", json.dumps(RECORDS[2])]
    rows = _rows("\n".join(lines) + "\n", "jsonl")
    assert [r["decision"] for r in rows] == ["eligible", "error", "error", "error", "undetermined"]
    assert rows[1]["candidate_id"] == "line 2" and "JSON array" in rows[1]["error"]
    assert rows[2]["candidate_id"] == "line 3" and "not valid JSON" in rows[2]["error"]
    assert rows[3]["candidate_id"] == "B" and rows[3]["error_fields"] == ["birthdate"]
    assert "line 4" in rows[3]["error"] and "did you mean 'birth_date'" in rows[3]["error"]
    assert "1950-01-01" not in rows[3]["error"]  # errors name fields, never values


def test_error_messages_do_not_repeat_record_values() -> None:
    rec = dict(RECORDS[0], sex="F", birth_date="1950-02-30", medications=[{"name": "secret-drug", "rxnorm": 5}])
    row = _rows(json.dumps(rec) + "\n", "jsonl")[0]
    assert row["decision"] == "error"
    assert set(row["error_fields"]) == {"sex", "birth_date", "medications[0].rxnorm"}
    assert "secret-drug" not in row["error"] and "1950-02-30" not in row["error"]


def test_json_array_with_a_non_object_and_a_truncated_end() -> None:
    text = "[" + json.dumps(RECORDS[0]) + ", 5, " + json.dumps(RECORDS[1]) + ", {\"candidate_id\": "
    rows = _rows(text, "json")
    assert [r["decision"] for r in rows] == ["eligible", "error", "excluded", "error"]
    assert rows[1]["candidate_id"] == "index 1"
    assert rows[3]["candidate_id"] == "index 3" and "cannot be read" in rows[3]["error"]


def test_large_json_array_is_read_element_by_element() -> None:
    many = [dict(RECORDS[0], candidate_id=f"X{i}") for i in range(3000)]  # > one 64 KiB chunk
    rows = _rows(json.dumps(many), "json")
    assert len(rows) == 3000 and rows[-1]["candidate_id"] == "X2999"


def test_csv_cells_are_typed_and_checked() -> None:
    text = _csv([RECORDS[0]])
    header, line = text.splitlines()
    bad = line.replace(",true,", ",yes,", 1)
    rows = _rows(header + "\n" + line + "\n" + bad + "\n", "csv")
    assert rows[0]["decision"] == "eligible"
    assert rows[1]["decision"] == "error" and rows[1]["candidate_id"] == "A"
    assert "line 3" in rows[1]["error"] and "must be true or false" in rows[1]["error"]


def test_csv_unknown_column_is_a_whole_input_error() -> None:
    with pytest.raises(InputFormatError, match="did you mean 'birth_date'"):
        _rows("candidate_id,screening_start,birthdate\nA,2023-03-01,1950-01-01\n", "csv")


def test_duplicate_candidates_in_a_batch_are_warned_about() -> None:
    lines = [json.dumps(RECORDS[0]), json.dumps(RECORDS[1]), json.dumps(RECORDS[0])]
    rows = _rows("\n".join(lines) + "\n", "jsonl")
    assert rows[0]["warnings"] == []
    assert any("second record for candidate A" in w and "line 1" in w for w in rows[2]["warnings"])


def test_an_impossible_enrollment_date_is_named_alongside_other_errors() -> None:
    rec = dict(RECORDS[0], enrollment_date="2023-03-10", birth_date="1950-13-01")
    row = _rows(json.dumps(rec) + "\n", "jsonl")[0]
    assert row["decision"] == "error"
    assert sorted(row["error_fields"]) == ["birth_date", "enrollment_date"]
