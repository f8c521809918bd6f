"""Issue 11 findings at the command line: exit codes, empty input, unreadable tails, CSV list cells."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cli


def _jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_a_key_twice_inside_a_csv_list_cell_is_an_error_row_naming_it() -> None:
    text = ('candidate_id,screening_start,medications\n'
            'A,2023-03-01,"[{""name"":""x"",""name"":""y""}]"\n'
            'B,2023-03-01,"[{""name"":""x"",""duration_min"":Infinity}]"\n'
            'C,2023-03-01,\n')
    result = CliRunner().invoke(cli.main, ["screen", "-", "--input-format", "csv", "--format", "jsonl"], input=text)
    rows = _jsonl(result.stdout)
    assert [r["candidate_id"] for r in rows] == ["A", "B", "C"]
    assert rows[0]["error"] == "line 2, candidate A: medications[0].name: appears twice in the record"
    assert rows[1]["decision"] == "error" and "medications" in rows[1]["error_fields"]
    assert rows[2]["decision"] == "undetermined"
    assert result.exit_code == 3


def test_cr_only_lines_are_numbered_alike_by_one_and_two_workers(tmp_path) -> None:
    from .conftest import base_record

    lines = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(6000)]
    lines[3004] = "{not json"
    data = "\r".join(lines[:3000]) + "\r" + "\n".join(lines[3000:]) + "\n"
    path = tmp_path / "mixed.jsonl"
    path.write_text(data, encoding="utf-8")
    outputs = []
    for workers in ("1", "2"):
        result = CliRunner().invoke(cli.main, ["screen", str(path), "--format", "jsonl", "--workers", workers])
        rows = _jsonl(result.stdout)
        assert len(rows) == 6000
        assert rows[3004]["candidate_id"] == "line 3005"
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("field", ["candidate_id", "site"])
def test_a_lone_surrogate_escape_in_the_id_or_site_is_one_error_row(tmp_path, workers: str, field: str) -> None:
    from .conftest import base_record

    lines = [json.dumps(base_record(candidate_id=f"S{i}")) for i in range(3000)]
    lines[1500] = lines[1500].replace('"S1500"' if field == "candidate_id" else '"test site"', '"\\udc80X"')
    path = tmp_path / "surrogate.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["screen", str(path), "--format", "jsonl", "--workers", workers])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    rows = _jsonl(result.stdout)
    assert len(rows) == 3000 and result.exit_code == 3
    bad = rows[1500]
    assert bad["decision"] == "error" and "\udc80" not in json.dumps(bad, ensure_ascii=False)
    assert bad["candidate_id"] == ("line 1501" if field == "candidate_id" else "S1500")


def test_audit_counts_a_fixed_record_once_even_when_its_error_row_lost_the_site() -> None:
    runner = CliRunner()
    broken = runner.invoke(cli.main, ["screen", "-", "--format", "jsonl"],
                           input='{"candidate_id":"X1","site":123,"screening_start":"2023-05-10"}\n').stdout
    fixed = runner.invoke(cli.main, ["screen", "-", "--format", "jsonl"],
                          input='{"candidate_id":"X1","site":"S","screening_start":"2023-05-10"}\n').stdout
    assert json.loads(broken)["site"] is None
    report = json.loads(runner.invoke(cli.main, ["audit", "-", "--format", "json"], input=broken + fixed).stdout)
    assert report["counts"]["assessed"] == 1 and report["counts"]["errors"] == 0
    assert report["rows"]["superseded"] == 1
    # a decision first and an error row after it: the error row is the latest word, counted as such
    report = json.loads(runner.invoke(cli.main, ["audit", "-", "--format", "json"], input=fixed + broken).stdout)
    assert report["counts"]["assessed"] + report["counts"]["errors"] == 2


def test_audit_merges_a_real_id_that_looks_like_a_position() -> None:
    from .conftest import base_record

    runner = CliRunner()
    broken = json.dumps(base_record(candidate_id="line 9", screening_start="2023-02-30")) + "\n"
    fixed = json.dumps(base_record(candidate_id="line 9")) + "\n"
    rows = runner.invoke(cli.main, ["screen", "-", "--format", "jsonl"], input=broken + fixed).stdout
    assert "a second record for candidate line 9" in rows.splitlines()[1]
    report = json.loads(runner.invoke(cli.main, ["audit", "-", "--format", "json"], input=rows).stdout)
    assert report["rows"]["superseded"] == 1 and report["counts"]["errors"] == 0
    # a row named by its position (its id could not be read) still never merges
    unreadable = runner.invoke(cli.main, ["screen", "-", "--format", "jsonl", "--input-format", "jsonl"],
                               input="{bad\n").stdout
    assert json.loads(unreadable)["candidate_id"] == "line 1"
    report = json.loads(runner.invoke(cli.main, ["audit", "-", "--format", "json"],
                                      input=unreadable + unreadable).stdout)
    assert report["counts"]["errors"] == 2 and report["rows"]["superseded"] == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_utf16_and_utf32_inputs_are_refused_naming_the_encoding(tmp_path, encoding: str, suffix: str,
                                                                workers: str) -> None:
    from .conftest import base_record

    records = [base_record(candidate_id=f"U{i}") for i in range(2)]
    if suffix == ".csv":
        text = "candidate_id,screening_start\nU0,2023-03-01\nU1,2023-03-01\n"
    elif suffix == ".json":
        text = json.dumps(records)
    else:
        text = "".join(json.dumps(r) + "\n" for r in records)
    path = tmp_path / f"in{suffix}"
    path.write_bytes(text.encode(encoding))
    result = CliRunner().invoke(cli.main, ["screen", str(path), "--format", "jsonl", "--workers", workers])
    assert result.exit_code == 1 and result.stdout == ""
    assert "save the file as UTF-8" in result.stderr


@pytest.mark.parametrize("field, value", [("candidate_id", "   "), ("candidate_id", "\t"), ("site", "  ")])
def test_an_id_or_site_of_only_spaces_is_an_error_row_naming_it(field: str, value: str) -> None:
    from .conftest import base_record

    record = base_record(candidate_id="B1")
    record[field] = value
    result = CliRunner().invoke(cli.main, ["screen", "-", "--format", "jsonl"], input=json.dumps(record) + "\n")
    row = _jsonl(result.stdout)[0]
    assert result.exit_code == 3 and row["decision"] == "error"
    assert row["error_fields"] == [field] and "holds only spaces" in row["error"]
    assert row["candidate_id"].strip() and (row["site"] is None or row["site"].strip())
