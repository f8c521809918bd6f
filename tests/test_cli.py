"""The command line: exit codes, exact messages, and the issue's acceptance checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli

from .conftest import FIXTURES, base_record, condition_keys

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_figure1_cohort_reproduces_figure1(runner: CliRunner) -> None:
    screened = runner.invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl"], catch_exceptions=False)
    assert screened.exit_code == 0
    assert len(_jsonl(screened.output)) == 310
    audited = runner.invoke(cli.main, ["audit", "-", "--expect", "figure1"], input=screened.output,
                            catch_exceptions=False)
    assert audited.exit_code == 0, audited.output
    assert "all 12 counts match" in audited.output
    assert "Assessed for eligibility" in audited.output and "310" in audited.output


def _randomized_row_index(runner: CliRunner) -> int:
    rows = _jsonl(runner.invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl"]).output)
    return next(i for i, r in enumerate(rows) if r["category"] == "randomized")


def test_one_candidate_aged_64_breaks_the_figure1_check(runner: CliRunner, tmp_path: Path) -> None:
    lines = FIGURE1.read_text(encoding="utf-8").splitlines()
    index = _randomized_row_index(runner)
    rec = json.loads(lines[index])
    d0 = rec["screening_start"]
    rec["birth_date"] = f"{int(d0[:4]) - 64}-{d0[5:]}"  # 64th birthday on D0: age 64
    lines[index] = json.dumps(rec, ensure_ascii=False)
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    screened = runner.invoke(cli.main, ["screen", str(changed), "--format", "jsonl"])
    audited = runner.invoke(cli.main, ["audit", "-", "--expect", "figure1"], input=screened.output)
    assert audited.exit_code == 1
    assert "not_meeting_inclusion: expected 56, got 57" in audited.output
    assert "randomized: expected 199, got 198" in audited.output


def test_a_malformed_record_in_1000_gives_one_error_row(runner: CliRunner, tmp_path: Path) -> None:
    lines = [json.dumps(base_record(candidate_id=f"B{i:04d}")) for i in range(1000)]
    lines[417] = lines[417].replace('"nights_recorded": 14', '"nights_recorded": "14"')
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(cli.main, ["screen", str(path), "--format", "jsonl"])
    assert result.exit_code == 3
    rows = _jsonl(result.stdout)
    assert len(rows) == 1000
    errors = [r for r in rows if r["decision"] == "error"]
    assert len(errors) == 1 and errors[0]["candidate_id"] == "B0417"
    assert errors[0]["error"].startswith("line 418, candidate B0417: diary.nights_recorded:")
    assert [r["candidate_id"] for r in rows] == [f"B{i:04d}" for i in range(1000)]
    assert "1 of 1000 record(s) could not be read" in result.stderr


def test_text_output_explains_the_decision(runner: CliRunner) -> None:
    rec = base_record(candidate_id="S-7", birth_date=None)
    result = runner.invoke(cli.main, ["screen", "-"], input=json.dumps(rec), catch_exceptions=False)
    assert result.exit_code == 0
    out = result.output
    assert out.startswith("S-7 (test site): UNDETERMINED — Pending")
    assert "because I1 Age ≥ 65 years: birth_date not recorded" in out
    assert "  ask next:\n    What is the candidate's date of birth? [birth_date] — answer: a date, YYYY-MM-DD\n" in out
    assert "rules: paper-2024 1.3.0" in out


def test_json_and_csv_outputs(runner: CliRunner) -> None:
    text = "\n".join(json.dumps(base_record(candidate_id=c)) for c in ("A", "B")) + "\n"
    as_json = runner.invoke(cli.main, ["screen", "-", "--format", "json"], input=text)
    assert [r["candidate_id"] for r in json.loads(as_json.output)] == ["A", "B"]
    as_csv = runner.invoke(cli.main, ["screen", "-", "--format", "csv"], input=text)
    header, first, second = as_csv.output.splitlines()
    assert header.startswith("candidate_id,site,decision,category")
    assert first.startswith("A,test site,eligible,randomized")


def test_registry_rules_option(runner: CliRunner) -> None:
    rec = base_record(conditions=dict({k: "absent" for k in condition_keys()}, parkinson_disease="active"))
    paper = _jsonl(runner.invoke(cli.main, ["screen", "-", "--format", "jsonl"], input=json.dumps(rec)).output)[0]
    reg = _jsonl(runner.invoke(cli.main, ["screen", "-", "--format", "jsonl", "--rules", "registry-2023"],
                               input=json.dumps(rec)).output)[0]
    assert (paper["decision"], paper["primary_criterion"]) == ("excluded", "E8")
    assert reg["decision"] == "eligible" and reg["ruleset"]["name"] == "registry-2023"
    assert reg["criteria"]["E8"]["reason"] == "not a criterion in registry-2023"


def test_unknown_rules_name_exits_1_with_a_suggestion(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["screen", "-", "--rules", "registy-2023"], input="{}")
    assert result.exit_code == 1
    assert "Error: no criteria set named 'registy-2023'; did you mean 'registry-2023'?" in result.output


def test_wrong_flag_is_a_usage_error(runner: CliRunner) -> None:
    assert runner.invoke(cli.main, ["screen", "-", "--formt", "json"], input="{}").exit_code == 2


def test_audit_rejects_candidate_records(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["audit", str(FIGURE1)])
    assert result.exit_code == 1
    assert "line 1: not a decision row" in result.output


def test_audit_json_report(runner: CliRunner) -> None:
    screened = runner.invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl"])
    report = json.loads(runner.invoke(cli.main, ["audit", "-", "--format", "json", "--expect", "figure1"],
                                      input=screened.output).output)
    assert report["counts"]["meeting_exclusion.recent_vka_or_k2"] == 14
    assert report["counts"]["meeting_exclusion.diuretic"] == 0
    assert report["expected"]["differences"] == []
    assert sum(report["criteria"][c]["primary"] for c in report["criteria"]) == 310


def test_rules_and_schema_commands(runner: CliRunner) -> None:
    table = runner.invoke(cli.main, ["rules"], catch_exceptions=False).output
    assert "E14  Vitamin K antagonist within 2 months before enrollment" in table
    assert "met      when exp_vka = inside" in table
    check = runner.invoke(cli.main, ["rules", "--rules", "registry-2023", "--check"]).output
    assert "registry-2023 1.3.0 is valid" in check
    listed = runner.invoke(cli.main, ["rules", "--list"]).output
    assert "paper-2024: 1.0.0, 1.1.0, 1.2.0, 1.3.0" in listed
    schema = json.loads(runner.invoke(cli.main, ["schema"]).output)
    assert schema["required"] == ["candidate_id", "screening_start"]
    assert schema["additionalProperties"] is False


def test_every_command_has_help(runner: CliRunner) -> None:
    for name, command in cli.main.commands.items():
        assert command.help, name
        assert runner.invoke(cli.main, [name, "--help"]).exit_code == 0


def test_compare_with_flags_rows_that_another_set_decides_differently(runner: CliRunner) -> None:
    parkinson = base_record(candidate_id="P", conditions=dict({k: "absent" for k in condition_keys()},
                                                               parkinson_disease="active"))
    text = json.dumps(parkinson) + "\n" + json.dumps(base_record(candidate_id="Q")) + "\n"
    rows = _jsonl(runner.invoke(cli.main, ["screen", "-", "--format", "jsonl", "--compare-with", "registry-2023"],
                                input=text, catch_exceptions=False).output)
    assert rows[0]["criteria_set_check"] == {"set": "registry-2023", "version": "1.3.0", "decision": "eligible",
                                             "category": "randomized", "subcategory": None, "primary_criterion": "I4",
                                             "differs_on": ["E8"]}
    assert "criteria_set_check" not in rows[1]
    text = runner.invoke(cli.main, ["screen", "-", "--compare-with", "registry-2023"], input=text).output
    assert ("other criteria set: under registry-2023 1.3.0 this candidate would be ELIGIBLE — randomized "
            "(primary I4; the sets differ on E8)") in text


@pytest.mark.parametrize("data, bad", [
    (b'{"candidate_id":"A","screening_start":"2023-03-01"}\n{"candidate_id":"B\xff","screening_start":"2023-03-01"}\n'
     b'{"candidate_id":"C","screening_start":"2023-03-01"}\n', "line 2"),
    (b"candidate_id,screening_start\nA,2023-03-01\nB\xff,2023-03-01\nC,2023-03-01\n", "line 3"),
    (b'[{"candidate_id":"A","screening_start":"2023-03-01"},{"candidate_id":"B\xff","screening_start":"2023-03-01"},'
     b'{"candidate_id":"C","screening_start":"2023-03-01"}]', "index 1"),
])
def test_bytes_that_are_not_utf8_spoil_one_record_only(runner: CliRunner, data: bytes, bad: str) -> None:
    result = runner.invoke(cli.main, ["screen", "-", "--format", "jsonl"], input=data)
    rows = _jsonl(result.stdout)
    assert result.exit_code == 3
    assert [r["candidate_id"] for r in rows] == ["A", bad, "C"]
    assert "not valid UTF-8" in rows[1]["error"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_duplicate_check_can_be_turned_off(runner: CliRunner, tmp_path: Path, workers: str) -> None:
    path = tmp_path / "twice.jsonl"
    path.write_text(json.dumps(base_record(candidate_id="D")) + "\n" + json.dumps(base_record(candidate_id="D")) + "\n")
    on = _jsonl(runner.invoke(cli.main, ["screen", str(path), "--format", "jsonl", "--workers", workers]).output)
    off = _jsonl(runner.invoke(cli.main, ["screen", str(path), "--format", "jsonl", "--workers", workers,
                                          "--no-check-duplicates"]).output)
    assert "a second record for candidate D" in on[1]["warnings"][0]
    assert off[1]["warnings"] == []


def test_audit_flags_rows_made_with_another_criteria_set(runner: CliRunner) -> None:
    screened = runner.invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl", "--rules", "registry-2023"])
    result = runner.invoke(cli.main, ["audit", "-", "--rules", "paper-2024"], input=screened.output)
    assert result.exit_code == 1
    assert "310 row(s) were not made with the criteria set counted with (paper-2024 1.3.0" in result.output


def test_audit_of_nothing_fails(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["audit", "-"], input="\n\n")
    assert result.exit_code == 1
    assert "no decision rows in the input" in result.output


def test_audit_names_the_real_line(runner: CliRunner) -> None:
    screened = runner.invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl"]).output.splitlines()
    text = "\n\n" + "\n".join(screened[:2]) + "\n{oops\n"
    result = runner.invoke(cli.main, ["audit", "-"], input=text)
    assert result.exit_code == 1
    assert "input line 5: not a JSON decision row" in result.output
