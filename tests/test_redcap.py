"""REDCap (issue 17): the data dictionary generated from the pack, and that instrument's exports
screened — raw and labels, English and Chinese — to the same decisions as the records themselves."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
import screening
from screening.redcap import DICTIONARY_HEADER, MAX_NAME, export_header, export_row_cells, load_instrument

from .conftest import FIXTURES

#: REDCap's field types and text validations (Data Dictionary documentation).
FIELD_TYPES = {"text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "descriptive", "calc", "file",
               "slider", "sql"}
VALIDATIONS = {"", "date_ymd", "date_mdy", "date_dmy", "datetime_ymd", "integer", "number", "email", "phone", "time",
               "zipcode", "alpha_only"}
#: Names REDCap keeps for itself.
RESERVED = re.compile(r"^(redcap_|record_id_dag)|_complete$|^(event_id|arm|event_name|record|dag|instance)$")


def _run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin)


def _dictionary(rules: str, lang: str = "en") -> list[dict[str, str]]:
    result = _run("redcap", "dictionary", "--rules", rules, "--lang", lang)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == DICTIONARY_HEADER and len(DICTIONARY_HEADER) == 18
    return [dict(zip(DICTIONARY_HEADER, row)) for row in rows[1:]]


@pytest.mark.parametrize("rules", ["paper-2024", "roguin-2017"])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_dictionary_is_what_redcaps_import_accepts(rules: str, lang: str) -> None:
    rows = _dictionary(rules, lang)
    names = [r["Variable / Field Name"] for r in rows]
    assert names[0] == "candidate_id" and rows[0]["Required Field?"] == "y"  # the record id comes first
    assert len(set(names)) == len(names)
    for row in rows:
        name = row["Variable / Field Name"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name) and len(name) <= MAX_NAME and not RESERVED.search(name), name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", row["Form Name"]), row["Form Name"]
        assert row["Field Type"] in FIELD_TYPES and row["Text Validation Type OR Show Slider Number"] in VALIDATIONS
        assert row["Field Label"].strip(), name
        assert row["Required Field?"] in ("", "y") and row["Identifier?"] in ("", "y")
        if row["Field Type"] in ("radio", "dropdown", "checkbox"):
            for choice in row["Choices, Calculations, OR Slider Labels"].split(" | "):
                code, _, label = choice.partition(", ")
                assert re.fullmatch(r"[A-Za-z0-9_]+", code) and label.strip(), choice
        else:
            assert row["Choices, Calculations, OR Slider Labels"] == ""
        for referenced in re.findall(r"\[([^\]]+)\]", row["Branching Logic (Show field only if...)"]):
            assert referenced in names[:names.index(name)], (name, referenced)  # an earlier field
    forms = [r["Form Name"] for r in rows]
    assert forms == sorted(forms, key=lambda f: forms.index(f))  # each form's fields together
    if lang == "zh":
        assert sum(1 for r in rows if re.search(r"[\u4e00-\u9fff]", r["Field Label"])) == len(rows)


def test_the_dictionary_follows_the_record_and_its_criteria() -> None:
    rows = {r["Variable / Field Name"]: r for r in _dictionary("paper-2024")}
    assert rows["birth_date"]["Text Validation Type OR Show Slider Number"] == "date_ymd"
    assert rows["birth_date"]["Identifier?"] == "y" and rows["birth_date"]["Section Header"].endswith("— I1")
    assert (rows["diary_nights"]["Text Validation Min"], rows["diary_nights"]["Text Validation Max"]) == ("0", "14")
    assert rows["cond_hypothyroidism"]["Field Type"] == "radio"
    assert rows["cond_hypothyroidism"]["Choices, Calculations, OR Slider Labels"].startswith("active, Active (now) | ")
    assert rows["nlc_confirmed"]["Field Type"] == "yesno"
    assert rows["cond_tumor_site"]["Branching Logic (Show field only if...)"] == \
        "[cond_malignant_tumor] = 'active' or [cond_malignant_tumor] = 'history'"
    assert rows["night2"]["Branching Logic (Show field only if...)"] == "[diary_nights] <> ''"
    assert rows["night1"]["Field Label"] == "Night 1 of the diary (D0 + 0): cramp episodes"
    assert (rows["night14"]["Text Validation Type OR Show Slider Number"], rows["night14"]["Text Validation Min"]) == \
        ("integer", "0")
    assert "night15" not in rows  # one count a night of the 14-night diary
    assert rows["med_name"]["Form Name"] == "medications"  # the repeating instrument


# -- the round trip -------------------------------------------------------------------------------

def _fits(record: Any) -> bool:
    """Whether the instrument holds all a record says: its diary's episodes counted per night of the
    window, and nothing else of them (a case about an episode outside the window, or about a diary
    whose episodes were not entered, tests what an instrument cannot say)."""
    if not isinstance(record, dict):
        return False
    diary = record.get("diary")
    if isinstance(diary, dict):
        if diary.get("episodes") is None:
            return False
        start = record.get("screening_start", "")
        for episode in diary["episodes"]:
            night = episode.get("night_of", "")  # its other details are dropped: the criteria count nights only
            try:
                days = (dt.date.fromisoformat(night) - dt.date.fromisoformat(start)).days
            except (TypeError, ValueError):
                return False
            if not 0 <= days < 14:
                return False
    return True


def _records() -> list[dict[str, Any]]:
    """The golden cases' records and the Figure 1 cohort's that an instrument can hold and that read
    as records (a case about an unreadable record has nothing to round-trip)."""
    ruleset = screening.load_ruleset()
    out = []
    for path in sorted((FIXTURES / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if "record" in case:  # the malformed-text cases hold record_text
            out.append(case["record"])
    out += [json.loads(line) for line in (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8")
            .splitlines()[:120]]
    fitting = []
    seen: set[tuple[Any, Any]] = set()
    for record in out:
        if not _fits(record):
            continue
        if screening.screen_one(record, ruleset)["decision"] == "error":
            continue
        key = (record.get("site"), record.get("candidate_id"))
        if key in seen:  # one export holds one record per id
            continue
        seen.add(key)
        fitting.append(record)
    return fitting


def _export(records: list[dict[str, Any]], *, labels: bool, lang: str) -> str:
    instrument = load_instrument(screening.load_ruleset())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(export_header(instrument, labels=labels, lang=lang))
    for record in records:
        main, repeats = export_row_cells(instrument, record, labels=labels, lang=lang)
        writer.writerow(main)
        writer.writerows(repeats)
    return out.getvalue()


def _decisions(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["candidate_id"], r["decision"], r["category"], r["subcategory"], r["primary_criterion"],
             {cid: c["status"] for cid, c in r["criteria"].items()}, r["ask_next"]) for r in rows]


@pytest.mark.parametrize(("labels", "lang"), [(False, "en"), (True, "en"), (True, "zh")])
def test_an_export_screens_to_the_same_decisions_as_its_records(labels: bool, lang: str, tmp_path: Path) -> None:
    records = _records()
    assert len(records) > 200
    direct = _run("screen", "-", "--format", "jsonl", stdin="\n".join(json.dumps(r) for r in records) + "\n")
    export = tmp_path / "export.csv"
    export.write_text(_export(records, labels=labels, lang=lang), encoding="utf-8")
    via = _run("screen", str(export), "--input-format", "redcap", "--format", "jsonl")
    assert via.exit_code == direct.exit_code == 0, via.output
    a = [json.loads(line) for line in direct.stdout.splitlines()]
    b = [json.loads(line) for line in via.stdout.splitlines()]
    assert _decisions(b) == _decisions(a)
    assert [r["criteria"] for r in b] == [r["criteria"] for r in a]  # the reasons too: the same records


def test_missing_data_codes_and_empty_cells_are_unknown(tmp_path: Path) -> None:
    record = {"candidate_id": "RC-1", "site": "A", "screening_start": "2023-03-01", "birth_date": "1950-01-02",
              "conditions": {"hypothyroidism": "absent", "parkinson_disease": "absent"}, "consent": "signed"}
    text = _export([record], labels=False, lang="en")
    header, row = text.splitlines()
    cells = next(csv.reader([row]))
    names = next(csv.reader([header]))
    cells[names.index("cond_parkinson")] = "UNK"
    cells[names.index("birth_date")] = "NASK"
    export = tmp_path / "e.csv"
    export.write_text(header + "\n" + ",".join(cells) + "\n", encoding="utf-8")
    row_out = json.loads(_run("screen", str(export), "--input-format", "redcap", "--format", "jsonl").stdout)
    assert row_out["criteria"]["E8"]["status"] == "unknown" and row_out["criteria"]["I1"]["status"] == "unknown"
    assert row_out["criteria"]["E1"]["status"] == "not_met"


def test_a_bad_value_is_an_error_row_naming_the_line_and_field(tmp_path: Path) -> None:
    record = {"candidate_id": "RC-2", "screening_start": "2023-03-01"}
    text = _export([record], labels=False, lang="en")
    header, row = text.splitlines()
    names = next(csv.reader([header]))
    cells = next(csv.reader([row]))
    cells[names.index("diary_nights")] = "many"
    orphan = ["RC-9"] + [""] * (len(names) - 1)
    orphan[names.index("redcap_repeat_instrument")] = "medications"
    orphan[names.index("redcap_repeat_instance")] = "1"
    orphan[names.index("med_name")] = "warfarin"
    export = tmp_path / "e.csv"
    export.write_text("\n".join([header, ",".join(cells), ",".join(orphan)]) + "\n", encoding="utf-8")
    result = _run("screen", str(export), "--input-format", "redcap", "--format", "jsonl")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 3 and [r["decision"] for r in rows] == ["error", "error"]
    assert "line 2" in rows[0]["error"] and rows[0]["error_fields"] == ["diary.nights_recorded"]
    assert "line 3" in rows[1]["error"] and "no main row" in rows[1]["error"]


def test_the_second_packs_instrument_round_trips_too(tmp_path: Path) -> None:
    ruleset = screening.load_ruleset("roguin-2017")
    instrument = load_instrument(ruleset)
    lines = (FIXTURES / "roguin-2017" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    records = [r for r in map(json.loads, lines) if _fits(r)]
    assert len(records) > 140
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(export_header(instrument, labels=True, lang="zh"))
    for record in records:
        main, repeats = export_row_cells(instrument, record, labels=True, lang="zh")
        writer.writerow(main)
        writer.writerows(repeats)
    export = tmp_path / "export.csv"
    export.write_text(out.getvalue(), encoding="utf-8")
    direct = _run("screen", "-", "--rules", "roguin-2017", "--format", "jsonl",
                  stdin="\n".join(json.dumps(r) for r in records) + "\n")
    via = _run("screen", str(export), "--rules", "roguin-2017", "--input-format", "redcap", "--format", "jsonl")
    a = [json.loads(line) for line in direct.stdout.splitlines()]
    b = [json.loads(line) for line in via.stdout.splitlines()]
    assert len(a) == len(records) and _decisions(b) == _decisions(a)


def _one_export(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    instrument = load_instrument(screening.load_ruleset())
    header = export_header(instrument)
    main, repeats = export_row_cells(instrument, record)
    return header, [main, *repeats]


def _screen_csv(tmp_path: Path, header: list[str], rows: list[list[str]]) -> Any:
    export = tmp_path / "e.csv"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    export.write_text(out.getvalue(), encoding="utf-8")
    return _run("screen", str(export), "--input-format", "redcap", "--format", "jsonl")


WARFARIN = {"candidate_id": "W-1", "site": "A", "screening_start": "2023-03-01", "birth_date": "1950-01-01",
            "medication_history_taken": True, "consent": "signed",
            "medications": [{"name": "warfarin sodium 3 mg", "atc": "B01AA03", "ongoing": True}]}


def test_a_medication_never_goes_missing_silently(tmp_path: Path) -> None:
    header, rows = _one_export(WARFARIN)
    assert json.loads(_screen_csv(tmp_path, header, rows).stdout)["criteria"]["E14"]["status"] == "met"
    # the repeat columns dropped: the medication rows cannot be told apart from records
    keep = [i for i, h in enumerate(header) if not h.startswith("redcap_repeat")]
    dropped = _screen_csv(tmp_path, [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    assert dropped.exit_code == 1 and "redcap_repeat_instrument" in dropped.output
    # a medication's value on the record's own row: an error row, never a record without it
    merged = list(rows[0])
    merged[header.index("med_name")] = "warfarin"
    one = json.loads(_screen_csv(tmp_path, header, [merged]).stdout)
    assert one["decision"] == "error" and one["error_fields"] == ["med_name"]


def test_columns_of_another_project_and_second_rows_are_refused(tmp_path: Path) -> None:
    header, rows = _one_export(WARFARIN)
    renamed = ["record_id", *header[1:]]
    other = _screen_csv(tmp_path, renamed, rows)
    assert other.exit_code == 1 and "no candidate_id column" in other.output and "record_id" in other.output
    extra = _screen_csv(tmp_path, [*header, "favourite_colour"], [[*r, ""] for r in rows])
    assert extra.exit_code == 1 and "favourite_colour" in extra.output
    system = _screen_csv(tmp_path, [*header, "nlc_screening_complete"], [[*r, "2"] for r in rows])
    assert system.exit_code == 0, system.output  # REDCap's own columns are fine
    twice = _screen_csv(tmp_path, header, [rows[0], rows[0], *rows[1:]])
    row = json.loads(twice.stdout)
    assert row["decision"] == "error" and "a second row for this record" in row["error"]
