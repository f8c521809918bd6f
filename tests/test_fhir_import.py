"""FHIR R4 import (issue 16): bundles -> intake records (criteria.md §8.3), the fixture bundles
round-trip to their expected records, and `screen --input-format fhir` screens them in one step."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
import screening
from screening.errors import RuleDefinitionError
from screening.fhir_import import FhirImport, load_mapping
from screening.record import parse_record

from .conftest import FIXTURES

FHIR = FIXTURES / "fhir"
D0 = dt.date(2021, 4, 1)
BUNDLES = sorted([*(FHIR / "synthea").glob("*.json"), *(FHIR / "handmade").glob("*.json"), *(FHIR / "broken").glob("*.json")])


def run(*args: str, stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def imported(path: Path, ruleset: screening.Ruleset, **options: Any) -> list[dict[str, Any]]:
    return list(FhirImport(ruleset, screening_start=D0, **options).lines([str(path)]))


def expected(path: Path) -> list[dict[str, Any]]:
    return lines((FHIR / "expected" / f"{path.stem}.jsonl").read_text(encoding="utf-8"))


def by_name(part: str) -> Path:
    return next(p for p in BUNDLES if part in p.name)


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.stem[:24])
def test_every_fixture_bundle_imports_to_its_expected_records(bundle: Path, paper: screening.Ruleset) -> None:
    got = imported(bundle.relative_to(FHIR.parent.parent), paper)
    assert got == expected(bundle)
    for record in got:
        if "error" not in record:
            parse_record(json.dumps(record), paper.record.model, parameters=paper.parameters)  # a valid v1 record


def test_the_synthea_subset_shows_each_exclusion_its_codes_carry(paper: screening.Ruleset) -> None:
    """The exclusions visible in the codes come out met (or review, for a history), never not_met."""
    want = {"Liz_Conn": {"E13": "met"}, "Max_Dicki": {"E14": "met"}, "Florentino_Mertz": {"E12": "met"},
            "Darin_Skiles": {"E12": "review"}, "David_Alc": {"E1": "met"}, "Murray_Hane": {"E4": "met", "E13": "met"}}
    for part, statuses in want.items():
        [record] = imported(by_name(part), paper)
        row = screening.screen_one(record, paper)
        for cid, status in statuses.items():
            assert row["criteria"][cid]["status"] == status, (part, cid, row["criteria"][cid])
        assert not [c for c, r in row["criteria"].items() if r["status"] == "not_met" and c.startswith("E")], part
        assert row["decision"] in ("excluded", "undetermined")


def test_a_deceased_patient_keeps_its_record_and_the_decision_warns(paper: screening.Ruleset) -> None:
    [record] = imported(by_name("Florentino_Mertz"), paper)
    assert record["deceased_date"] == "2001-05-14"
    row = screening.screen_one(record, paper)
    assert any("died on 2001-05-14" in w for w in row["warnings"])


def test_an_import_never_says_absent_nor_that_a_history_was_taken(paper: screening.Ruleset) -> None:
    for bundle in BUNDLES:
        for record in imported(bundle, paper):
            assert "absent" not in record.get("conditions", {}).values()
            assert "medication_history_taken" not in record


def test_no_name_address_phone_or_other_identifier_is_copied(paper: screening.Ruleset) -> None:
    bundle = json.loads(by_name("Max_Dicki").read_text(encoding="utf-8"))
    patient = bundle["entry"][0]["resource"]
    secrets = [n for name in patient["name"] for n in [*name["given"], name["family"]]]
    secrets += [i["value"] for i in patient["identifier"]] + [t["value"] for t in patient.get("telecom", [])]
    secrets += [line for a in patient["address"] for line in a["line"]] + [a["city"] for a in patient["address"]]
    text = json.dumps(imported(by_name("Max_Dicki"), paper))
    assert patient["id"] in text
    for secret in secrets:
        assert secret not in text, "a name, address, phone or identifier was copied"


def test_candidate_ids_from_an_identifier_system(paper: screening.Ruleset) -> None:
    got = imported(by_name("consent"), paper, id_system="urn:oid:1.2.3.4.5.hospital-mrn", site="Chengdu")
    assert [(r["candidate_id"], r["site"], r["consent"]) for r in got] == [
        ("MRN-0042", "Chengdu", "signed"), ("MRN-0043", "Chengdu", "withdrawn")]
    [error] = imported(by_name("dialysis"), paper, id_system="urn:oid:1.2.3.4.5.hospital-mrn")
    # named by its entry: the EHR's id of a patient chosen by another identifier stays in the EHR
    assert error["error"] == "the Patient of entry 1 has no identifier of the system urn:oid:1.2.3.4.5.hospital-mrn"


def test_screening_start_per_candidate_from_a_csv(paper: screening.Ruleset, tmp_path: Path) -> None:
    starts = tmp_path / "starts.csv"
    starts.write_text("candidate_id,screening_start\nhm-dialysis-patient,2019-07-01\n", encoding="utf-8")
    run_ = FhirImport(paper, screening_start_file=str(starts))
    [record] = run_.lines([str(by_name("dialysis"))])
    # the 2021 hemodialysis is after this D0 and ignored; the 2019-06-01 peritoneal dialysis is inside its look-back
    assert record["screening_start"] == "2019-07-01"
    assert record["conditions"] == {"peritoneal_dialysis": "active"}
    [error] = run_.lines([str(by_name("parkinson"))])
    assert "no screening_start for candidate hm-parkinson-patient" in error["error"]


def test_an_invalid_resource_makes_its_bundle_an_error_line_that_quotes_no_value(paper: screening.Ruleset,
                                                                                 tmp_path: Path) -> None:
    bundle = json.loads(by_name("parkinson").read_text(encoding="utf-8"))
    bundle["entry"][1]["resource"]["onsetDateTime"] = "SECRET-2018"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bundle), encoding="utf-8")
    [error] = imported(bad, paper)
    assert error["source"] == str(bad)
    assert error["error"].startswith("entry 2 (Condition/hm-pd) is not a valid FHIR R4B Condition: onsetDateTime")
    assert "SECRET" not in error["error"]


@pytest.mark.parametrize("content, message", [
    (b"", "ends before"), (b"[1, 2]", "no Patient"), (b'{"resourceType": "Patient", "id": "x"}', "no Patient"),
    (b'{"entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]} SECRET', "more text after"),
    (b'{"entry": [7]}', "entry 1 is not an object"), (b'{"entry": [{"resource": SECRET}]}', "not valid JSON"),
])
def test_unreadable_bundles_are_one_error_line_each(content: bytes, message: str, paper: screening.Ruleset) -> None:
    run_ = FhirImport(paper, screening_start=D0)
    [error] = run_.bundle(io.BytesIO(content), "in.json")
    assert message in error["error"] and error["source"] == "in.json"
    assert "SECRET" not in error["error"]
    assert run_.stats.errors == 1 and run_.stats.records == 0


def test_import_fhir_command_writes_records_and_error_lines_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    for part in ("truncated", "dialysis", "consent"):
        shutil.copy(by_name(part), folder / by_name(part).name)
    result = run("import", "fhir", str(folder), "--screening-start", "2021-04-01", "--site", "S1")
    assert result.exit_code == 3, result.output
    rows = lines(result.stdout)
    assert [r.get("candidate_id") or r["error"][:20] for r in rows] == [
        "hm-consent-signed", "hm-consent-withdrawn", "hm-dialysis-patient", "the file ends before"]
    assert "Imported 3 patient record(s) from 3 bundle(s); 1 error line(s)." in result.stderr
    assert "No bundle provided: conditions.hypothyroidism" in result.stderr and "diary.episodes" in result.stderr
    # the error line becomes one error row naming the file when the records are screened
    screened = run("screen", "-", "--format", "jsonl", stdin=result.stdout)
    assert screened.exit_code == 3
    decisions = lines(screened.stdout)
    assert [d["decision"] for d in decisions] == ["undetermined", "excluded", "excluded", "error"]
    assert decisions[3]["error"].startswith(f"line 4: not imported from {folder / by_name('truncated').name}: the file")


def test_import_fhir_needs_a_screening_date_and_takes_fhir_options_only_with_fhir() -> None:
    result = run("import", "fhir", str(by_name("dialysis")))
    assert result.exit_code == 1 and "--screening-start" in result.output
    result = run("screen", str(FIXTURES / "figure1" / "candidates.jsonl"), "--site", "S1")
    assert result.exit_code == 2 and "--site are for --input-format fhir" in result.output


def test_screen_input_format_fhir_in_one_step_matches_import_then_screen(tmp_path: Path) -> None:
    folder = FHIR / "synthea"
    one = run("screen", str(folder), "--input-format", "fhir", "--screening-start", "2021-04-01", "--format", "jsonl")
    assert one.exit_code == 0, one.output
    assert "Imported 6 patient record(s)" in one.stderr
    two = run("screen", "-", "--format", "jsonl",
              stdin=run("import", "fhir", str(folder), "--screening-start", "2021-04-01").stdout)
    assert lines(one.stdout) == lines(two.stdout)
    assert [r["primary_criterion"] for r in lines(one.stdout)] == ["I1", "I1", "E12", "I1", "E14", "E4"]


def test_the_mapping_is_checked_when_it_loads(paper: screening.Ruleset, tmp_path: Path) -> None:
    mapping = load_mapping(paper)
    assert mapping.systems["http://snomed.info/sct"] == "snomed"
    assert "conditions.hemodialysis" in mapping.status_fields
    assert "nlc_assessment.differentials.restless_legs" not in mapping.status_fields  # never filled by an import
    pack = tmp_path / "nlc-k2"
    shutil.copytree(paper.pack_dir, pack)  # type: ignore[arg-type]
    text = (pack / "fhir.yaml").read_text(encoding="utf-8")
    (pack / "fhir.yaml").write_text(text.replace("list: medications", "list: medication"), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"fhir.yaml, field 'medication.list': 'medication' is no field"):
        load_mapping(screening.load_ruleset(str(pack / "paper-2024.yaml")))
    (pack / "fhir.yaml").write_text(text.replace("active: signed", "active: agreed"), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"consent.status.active"):
        load_mapping(screening.load_ruleset(str(pack / "paper-2024.yaml")))


def test_provenance_is_a_map_of_field_paths_to_sources(paper: screening.Ruleset) -> None:
    record = {"candidate_id": "P1", "screening_start": "2021-04-01", "provenance": {"birth_date": ["Patient/1"]}}
    row = screening.screen_one(record, paper)
    assert row["decision"] == "undetermined"
    bad = screening.screen_one({**record, "provenance": {"birth_date": "Patient/1"}}, paper)
    assert bad["decision"] == "error" and bad["error_fields"] == ["provenance.birth_date"]


def test_the_codes_settled_in_condition_codes_1_1_0(paper: screening.Ruleset, tmp_path: Path) -> None:
    """F10.21 (alcohol dependence, in remission) is history; G20.C (parkinsonism, unspecified),
    105502003 (dependence on renal dialysis) and a 265764009 renal dialysis procedure (type not named)
    are shown to the screener and set nothing."""
    def condition(cid: str, system: str, code: str) -> dict[str, Any]:
        return {"resource": {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
                             "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": "2020-01-01"}}
    icd, sct = "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        condition("c1", icd, "F10.21"), condition("c2", icd, "G20.C"), condition("c3", sct, "105502003"),
        {"resource": {"resourceType": "Procedure", "id": "x1", "status": "completed", "subject": {"reference": "Patient/p1"},
                      "code": {"coding": [{"system": sct, "code": "265764009"}]}, "performedDateTime": "2021-03-20"}}]}
    path = tmp_path / "settled.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    [record] = imported(path, paper)
    assert record["conditions"] == {"alcoholism": "history"}
    hints = record["provenance"]
    assert hints["conditions.parkinson_disease"] == [
        "Condition/c2 (suggests only: G20.C Parkinsonism, unspecified; the screener decides)"]
    assert sorted(hints["conditions.hemodialysis"]) == [
        "Condition/c3 (suggests only: 105502003 Dependence on renal dialysis; the screener decides)",
        "Procedure/x1 (suggests only: 265764009 Renal dialysis; the screener decides)"]


def test_a_patient_without_the_identifier_is_one_error_line_and_the_others_go_on(paper: screening.Ruleset,
                                                                                 tmp_path: Path) -> None:
    bundle = json.loads(by_name("consent").read_text(encoding="utf-8"))
    del bundle["entry"][0]["resource"]["identifier"]
    path = tmp_path / "one-without.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    run_ = FhirImport(paper, screening_start=D0, id_system="urn:oid:1.2.3.4.5.hospital-mrn")
    first, second = run_.lines([str(path)])
    assert first == {"error": "the Patient of entry 1 has no identifier of the system "
                              "urn:oid:1.2.3.4.5.hospital-mrn", "source": str(path)}
    assert (second["candidate_id"], second["consent"]) == ("MRN-0043", "withdrawn")
    assert (run_.stats.records, run_.stats.errors) == (1, 1)
