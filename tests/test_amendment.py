"""Amendment impact (issue 18, point 5): `nlc-screen diff-rules OLD NEW INPUT` screens the same
candidates under two criteria sets and lists what changes, with every CONSORT count's change."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
import screening
from screening import amendment

from .conftest import FIXTURES, base_record, copy_record_files

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")
BOX = ("decision", "category", "subcategory")


def _run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, ["diff-rules", *args], input=input)


def _report(*args: str, input: str | None = None) -> dict[str, Any]:
    result = _run(*args, "--format", "json", input=input)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _screen(tmp_path: Path, rules: str, *extra: str, source: str = FIGURE1) -> Path:
    out = tmp_path / f"{rules}{'-'.join(extra)}.jsonl"
    result = CliRunner().invoke(cli.main, ["screen", source, "--rules", rules, "--format", "jsonl", "-o", str(out),
                                           *extra])
    assert result.exit_code in (0, 3), result.output
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _audit_counts(path: Path) -> dict[str, int]:
    result = CliRunner().invoke(cli.main, ["audit", str(path), "--format", "json"])
    counts: dict[str, int] = json.loads(result.stdout)["counts"]
    return counts


def test_the_figure1_cohort_lists_exactly_the_candidates_the_two_sets_decide_differently(tmp_path: Path) -> None:
    report = _report("registry-2023", "paper-2024", FIGURE1)
    # independently: screen the file under each set with `screen`, and diff the rows here
    old = {(r["site"], r["candidate_id"]): r for r in _rows(_screen(tmp_path, "registry-2023"))}
    new = {(r["site"], r["candidate_id"]): r for r in _rows(_screen(tmp_path, "paper-2024"))}
    differ = {key for key in old if tuple(old[key][k] for k in BOX) != tuple(new[key][k] for k in BOX)}
    listed = {(c["site"], c["candidate_id"]) for c in report["changes"]}
    assert listed == differ and len(listed) == report["candidates"]["changed"] > 0
    for change in report["changes"]:
        key = (change["site"], change["candidate_id"])
        assert change["old"] == {k: old[key][k] for k in (*BOX, "primary_criterion")}
        assert change["new"] == {k: new[key][k] for k in (*BOX, "primary_criterion")}
        statuses = {c["id"]: (c["old"], c["new"]) for c in change["criteria"]}
        want = {cid for cid in set(old[key]["criteria"]) | set(new[key]["criteria"])
                if old[key]["criteria"].get(cid, {}).get("status") != new[key]["criteria"].get(cid, {}).get("status")}
        assert set(statuses) == want and want  # every criterion whose status differs, and only those
        for c in change["criteria"]:
            assert c["decided_old"] == (c["id"] == old[key]["primary_criterion"])
            assert c["decided_new"] == (c["id"] == new[key]["primary_criterion"])
    # every count is audit's count of each set's rows, and the changes add up
    old_counts, new_counts = _audit_counts(_screen(tmp_path, "registry-2023")), _audit_counts(
        _screen(tmp_path, "paper-2024"))
    assert [c["box"] for c in report["counts"]] == list(new_counts)
    for c in report["counts"]:
        assert (c["old"], c["new"], c["delta"]) == (old_counts[c["box"]], new_counts[c["box"]],
                                                    new_counts[c["box"]] - old_counts[c["box"]])
        assert c["old"] + c["moved_in"] - c["moved_out"] == c["new"] and c["adds_up"]
    assert new_counts["randomized"] == 199 and new_counts["excluded"] == 111
    categories = ["not_meeting_inclusion", "meeting_exclusion", "withdrawal", "pending", "randomized"]
    assert sum(c["delta"] for c in report["counts"] if c["box"] in categories) == 0
    assert report["arithmetic_problems"] == []
    # the transitions are the boxes of the listed candidates
    moved = Counter((_box(c["old"]), _box(c["new"])) for c in report["changes"])
    assert {(t["from"], t["to"]): t["candidates"] for t in report["transitions"] if t["from"] != t["to"]} == moved
    assert sum(t["candidates"] for t in report["transitions"]) == 310


def _box(outcome: dict[str, Any]) -> str:
    return outcome["category"] + (f".{outcome['subcategory']}" if outcome["subcategory"] else "")


def test_the_text_report_names_the_candidates_the_criteria_and_the_counts() -> None:
    result = _run("registry-2023", "paper-2024", FIGURE1)
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("Amendment impact — registry-2023 1.3.0 → paper-2024 1.3.0 (trial pack nlc-k2)\n")
    assert "Decided differently: 19 candidate(s)" in text
    assert ("  NC-0092 (Affiliated Hospital of North Sichuan Medical College)\n"
            "      UNDETERMINED — Pending (undetermined, or eligible awaiting consent) [E11]\n"
            "    → EXCLUDED — Cramps caused by a listed condition (E1–E11) [E11]\n"
            "      E11  Liver cirrhosis (any, as applied in Figure … unknown  → met      "
            "(decided the old box, decides the new box)\n") in text
    assert "      old box decided by I4 Written informed consent (the same status under both sets)\n" in text
    assert "Randomized                                                   201    199     -2      0      2\n" in text
    assert text.endswith("Arithmetic: every count's change is the candidates moved in less those moved out; the "
                         "categories' changes add up to the change in candidates assessed\n")
    zh = _run("registry-2023", "paper-2024", FIGURE1, "--lang", "zh")
    assert zh.exit_code == 0 and zh.stdout.startswith("方案修订的影响 — registry-2023 1.3.0 → paper-2024 1.3.0")
    assert "已随机化" in zh.stdout


def test_decision_rows_made_with_include_record_give_the_same_result(tmp_path: Path) -> None:
    decisions = _screen(tmp_path, "paper-2024", "--include-record")
    assert _report("registry-2023", "paper-2024", str(decisions)) == _report("registry-2023", "paper-2024", FIGURE1)
    # rows without their records cannot be screened again: refused, saying how to make them
    bare = _run("registry-2023", "paper-2024", str(_screen(tmp_path, "paper-2024")))
    assert bare.exit_code == 1
    assert "line 1: a decision row without its input record" in bare.output and "--include-record" in bare.output


def test_the_screening_log_is_screened_again_from_its_current_input_records(tmp_path: Path, log_url: str) -> None:
    logged = CliRunner().invoke(cli.main, ["screen", FIGURE1, "--rules", "registry-2023", "--format", "jsonl", "-o",
                                           str(tmp_path / "out.jsonl"), "--log", log_url, "--screener", "t"])
    assert logged.exit_code == 0, logged.output
    from_log = _report("registry-2023", "paper-2024", "--log", log_url)
    from_file = _report("registry-2023", "paper-2024", FIGURE1)
    assert ({(c["site"], c["candidate_id"]) for c in from_log["changes"]}
            == {(c["site"], c["candidate_id"]) for c in from_file["changes"]})
    assert from_log["counts"] == from_file["counts"] and from_log["arithmetic_problems"] == []
    site = "Third People's Hospital of Chengdu"
    one = _report("registry-2023", "paper-2024", "--log", log_url, "--site", site)
    assert {c["site"] for c in one["changes"]} == {site}
    assert one["candidates"]["re_screened"] == sum(1 for line in Path(FIGURE1).read_text().splitlines()
                                                   if site in line)


def test_json_and_csv_reports(tmp_path: Path) -> None:
    out = tmp_path / "changes.csv"
    result = _run("registry-2023", "paper-2024", FIGURE1, "--format", "csv", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    report = _report("registry-2023", "paper-2024", FIGURE1)
    assert [r["candidate_id"] for r in rows] == [c["candidate_id"] for c in report["changes"]]
    assert list(rows[0]) == list(amendment.AmendmentImpact.CSV_HEADER)
    by_id = {r["candidate_id"]: r for r in rows}
    assert by_id["NC-0092"]["old_decision"] == "undetermined" and by_id["NC-0092"]["new_decision"] == "excluded"
    assert by_id["NC-0092"]["criteria_changed"] == "E11 unknown>met"
    assert (by_id["NC-0092"]["decided_old"], by_id["NC-0092"]["decided_new"]) == ("E11", "E11")
    assert set(report) == {"old", "new", "pack", "candidates", "changes", "unreadable", "erased", "transitions",
                           "counts", "arithmetic_problems"}
    assert report["old"]["name"] == "registry-2023" and report["new"]["name"] == "paper-2024"


def test_sets_of_different_packs_are_refused() -> None:
    result = _run("paper-2024", "roguin-2017", FIGURE1)
    assert result.exit_code == 2
    assert ("paper-2024 1.3.0 and roguin-2017 1.1.0 belong to different trial packs (nlc-k2, mgo-nlc): their CONSORT "
            "boxes differ") in result.output
    with pytest.raises(screening.ScreeningError, match="different trial packs"):
        amendment.check_comparable(screening.load_ruleset("paper-2024"), screening.load_ruleset("roguin-2017"))


def test_an_unreadable_record_is_reported_once_not_as_a_change() -> None:
    good = base_record(candidate_id="A-1", conditions={**base_record()["conditions"], "parkinson_disease": "active"})
    bad_date = base_record(candidate_id="A-2", screening_start="2023-02-30")
    text = "\n".join([json.dumps(good), json.dumps(bad_date), "[1, 2]"]) + "\n"
    result = _run("registry-2023", "paper-2024", "-", "--format", "json", input=text)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert [c["candidate_id"] for c in report["changes"]] == ["A-1"]
    assert [(u["candidate_id"], u["position"]) for u in report["unreadable"]] == [("A-2", "line 2"),
                                                                                   ("line 3", "line 3")]
    assert "screening_start" in report["unreadable"][0]["error_fields"]
    counts = {c["box"]: c for c in report["counts"]}
    assert (counts["errors"]["old"], counts["errors"]["new"], counts["errors"]["moved_in"]) == (2, 2, 0)
    assert report["candidates"] == {"rows_read": 3, "superseded": 0, "re_screened": 3, "changed": 1,
                                    "unreadable": 2, "same_box_other_primary": 0, "erased": 0}
    assert "2 record(s) could not be read" in result.stderr
    text_report = _run("registry-2023", "paper-2024", "-", input=text).stdout
    assert "Records that could not be read (2; listed once, not as changes):\n  line 2, candidate A-2: " in text_report


def test_each_candidate_counts_once_by_its_last_record() -> None:
    changed = base_record(candidate_id="A-1", conditions={**base_record()["conditions"], "parkinson_disease": "active"})
    fixed = base_record(candidate_id="A-1")
    report = _report("registry-2023", "paper-2024", "-", input=f"{json.dumps(changed)}\n{json.dumps(fixed)}\n")
    assert report["changes"] == []
    assert report["candidates"]["rows_read"] == 2 and report["candidates"]["superseded"] == 1
    assert {c["box"]: c["new"] for c in report["counts"]}["assessed"] == 1
    assert report["arithmetic_problems"] == []


def test_the_check_that_counts_add_up_can_fail() -> None:
    old, new = screening.load_ruleset("registry-2023"), screening.load_ruleset("paper-2024")
    record = base_record(conditions={**base_record()["conditions"], "parkinson_disease": "active"})
    impact = amendment.compare([screening.io.Item("line 1", json.dumps(record))], old, new)
    assert impact.arithmetic() == [] and impact.exit_code == 0
    impact.transitions = Counter({("randomized", "randomized"): 1})  # the move left out
    problems = impact.arithmetic()
    assert "randomized: 1 + 0 moved in − 0 moved out ≠ 0" in problems and impact.exit_code == 1


def test_usage_errors() -> None:
    assert _run("registry-2023", "paper-2024").exit_code == 2
    assert _run("registry-2023", "paper-2024", FIGURE1, "--site", "x").exit_code == 2
    empty = _run("registry-2023", "paper-2024", "-", input="")
    assert empty.exit_code == 1 and "no candidate record" in empty.stderr


def test_error_rows_of_a_decision_file_stay_the_errors_they_were(tmp_path: Path) -> None:
    good = base_record(candidate_id="A-1")
    bad_date = base_record(candidate_id="A-2", screening_start="2023-02-30")
    source = tmp_path / "in.jsonl"
    source.write_text(f"{json.dumps(good)}\n{json.dumps(bad_date)}\n", encoding="utf-8")
    decisions = _screen(tmp_path, "paper-2024", "--include-record", source=str(source))
    from_rows = _report("registry-2023", "paper-2024", str(decisions))
    assert from_rows == _report("registry-2023", "paper-2024", str(source))
    assert [u["candidate_id"] for u in from_rows["unreadable"]] == ["A-2"]
    # a decision row without its record after the first: that row is an error naming it, the rest goes on
    lines = decisions.read_text(encoding="utf-8").splitlines()
    stripped = json.loads(lines[0])
    del stripped["record"]
    mixed = "\n".join([lines[0], json.dumps(stripped)]) + "\n"
    report = _report("registry-2023", "paper-2024", "-", input=mixed)
    assert report["unreadable"][0]["position"] == "line 2"
    assert "a decision row without its input record" in report["unreadable"][0]["error"]
    assert report["unreadable"][0]["error_fields"] == ["record"]


def _draft(tmp_path: Path, edit: Any) -> Path:
    """A draft amendment: the current paper-2024 set as a file of its own, edited."""
    pack = FIXTURES.parent / "rules" / "nlc-k2"
    (tmp_path / "valuesets").mkdir()
    for f in (pack / "valuesets").glob("*.yaml"):
        (tmp_path / "valuesets" / f.name).write_bytes(f.read_bytes())
    copy_record_files(pack, tmp_path)
    text = (pack / "paper-2024.yaml").read_text(encoding="utf-8")
    edited = edit(text)
    assert edited != text
    path = tmp_path / "draft.yaml"
    path.write_text(edited, encoding="utf-8")
    return path


def test_a_draft_amendment_in_a_file_of_its_own(tmp_path: Path) -> None:
    draft = _draft(tmp_path, lambda text: text.replace("  min_age_years: 65\n", "  min_age_years: 70\n"))
    report = _report("paper-2024", str(draft), FIGURE1)
    assert report["changes"] and all(c["new"]["primary_criterion"] == "I1" and c["criteria"][0]["id"] == "I1"
                                     for c in report["changes"])
    assert report["arithmetic_problems"] == []
    assert _run("paper-2024", str(draft), FIGURE1).stdout.startswith(
        f"Amendment impact — paper-2024 1.3.0 (sha256 {report['old']['sha256'][:12]}…) → paper-2024 1.3.0 (sha256 "
        f"{report['new']['sha256'][:12]}…)")
    counts = {c["box"]: c for c in report["counts"]}
    assert counts["not_meeting_inclusion"]["delta"] == len(report["changes"]) - sum(
        1 for c in report["changes"] if c["old"]["category"] == "not_meeting_inclusion")


def test_a_set_outside_any_pack_is_compared_by_its_boxes() -> None:
    paper = screening.load_ruleset("paper-2024")
    loose = dataclasses.replace(paper, pack="")
    amendment.check_comparable(loose, paper)  # the same boxes: comparable
    consort = {**paper.consort, "subcategories": {"meeting_exclusion": ["secondary_cause", "malignancy"]}}
    with pytest.raises(screening.ScreeningError, match="do not have the same CONSORT boxes"):
        amendment.check_comparable(dataclasses.replace(paper, pack="", consort=consort), paper)


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A record as one CSV row: nested objects as dotted columns, lists as JSON text."""
    out: dict[str, str] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            out[prefix + key] = json.dumps(value)
        elif isinstance(value, bool):
            out[prefix + key] = "true" if value else "false"
        else:
            out[prefix + key] = str(value)
    return out


def test_csv_records_give_what_the_same_records_as_json_lines_give() -> None:
    conditions = base_record()["conditions"]
    records = [base_record(candidate_id="A-1", conditions={**conditions, "parkinson_disease": "active"}),
               base_record(candidate_id="A-2"), base_record(candidate_id="A-3", consent="pending",
                                                            conditions={**conditions, "liver_cirrhosis": "active"})]
    rows = [_flat(r) for r in records]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    from_csv = _report("registry-2023", "paper-2024", "-", "--input-format", "csv", input=buffer.getvalue())
    from_jsonl = _report("registry-2023", "paper-2024", "-", input="".join(json.dumps(r) + "\n" for r in records))
    assert [c["candidate_id"] for c in from_csv["changes"]] == [c["candidate_id"] for c in from_jsonl["changes"]]
    assert [c["candidate_id"] for c in from_csv["changes"]] == ["A-1", "A-3"]
    assert from_csv["counts"] == from_jsonl["counts"] and from_csv["unreadable"] == []
