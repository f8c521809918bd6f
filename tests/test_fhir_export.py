"""FHIR export (issue 16): decisions as ResearchSubject resources, a criteria set as a ResearchStudy
with one EvidenceVariable per criterion — valid R4B, with the value sets' codes and FHIR's code lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.researchsubject import ResearchSubject

import cli
import screening
from screening.fhir_export import STUDY_STATUSES, SUBJECT_STATUSES, criteria_bundle, research_subjects

from .conftest import FIXTURES

#: FHIR R4B publication-status and related-artifact-type
PUBLICATION = {"draft", "active", "retired", "unknown"}
ARTIFACT_TYPES = {"documentation", "justification", "citation", "predecessor", "successor", "derived-from",
                  "depends-on", "composed-of"}


def run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin)


def value_set_codes(ruleset: screening.Ruleset) -> set[str]:
    codes = {c["code"] for entry in ruleset.condition_codes.values()
             for group in ("snomed", "icd10", "procedures") for c in entry.get(group) or []
             if c.get("maps_to") != "screener"}
    for cls in ruleset.drug_classes.values():
        codes |= set(cls.atc) | set(cls.rxnorm)
    return codes


@pytest.mark.parametrize("name", ["paper-2024", "registry-2023"])
def test_the_criteria_bundle_is_valid_r4b_and_links_study_and_variables(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    bundle = criteria_bundle(ruleset)
    Bundle.model_validate(bundle)  # every resource against its R4B model
    study, *variables = [e["resource"] for e in bundle["entry"]]
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"][:1]}
    assert study["resourceType"] == "ResearchStudy" and study["status"] in STUDY_STATUSES
    assert study["identifier"] == [{"system": "https://clinicaltrials.gov", "value": "NCT05547750"}]
    assert [v["name"] for v in variables] == list(ruleset.precedence)
    assert [a["resource"] for a in study["relatedArtifact"]] == [f"{v['url']}|{ruleset.version}" for v in variables]
    allowed = value_set_codes(ruleset)
    for variable in variables:
        criterion = ruleset.criteria[variable["name"]]
        assert variable["status"] in PUBLICATION and variable["url"] and variable["version"] == ruleset.version
        assert variable["title"] == criterion.title and variable["description"] == criterion.protocol_text
        assert {a["type"] for a in variable["relatedArtifact"]} <= ARTIFACT_TYPES
        assert variable["relatedArtifact"][0] == {"type": "derived-from", "display": "ResearchStudy NCT05547750",
                                                  "url": urls["ResearchStudy"]}
        assert variable["characteristic"], variable["name"]
        for characteristic in variable["characteristic"]:
            definitions = [k for k in characteristic if k.startswith("definition")]
            assert len(definitions) == 1 and isinstance(characteristic["exclude"], bool)
            for coding in characteristic.get("definitionCodeableConcept", {}).get("coding", []):
                assert coding["code"] in allowed, (variable["name"], coding)


def test_characteristics_carry_the_value_sets_codes_and_exclude_flags(paper: screening.Ruleset) -> None:
    variables = {e["resource"]["name"]: e["resource"] for e in criteria_bundle(paper)["entry"][1:]}

    def codes(cid: str) -> set[tuple[str, str]]:
        return {(c["system"].rsplit("/", 1)[-1], c["code"]) for ch in variables[cid]["characteristic"]
                for c in ch.get("definitionCodeableConcept", {}).get("coding", [])}
    assert {("sct", "40930008"), ("icd-10-cm", "E03"), ("sct", "83664006")} <= codes("E1")
    assert {("rxnorm", "316049"), ("atc", "C03"), ("rxnorm", "4603")} <= codes("E13")
    assert ("rxnorm", "855332") in codes("E14") and ("atc", "M05BX08") in codes("E15")
    assert ("sct", "363346000") in codes("E12") and ("sct", "126906006") not in codes("E12")  # → screener
    assert ("sct", "302497006") in codes("E2")  # the dialysis procedure
    for cid in ("E1", "E2", "E12", "E13", "E14"):
        assert all(ch["exclude"] for ch in variables[cid]["characteristic"]), cid
    [age] = [ch for ch in variables["I1"]["characteristic"] if "age_years < 65" == ch["definitionExpression"]["expression"]]
    assert age["exclude"] is True  # under 65 rules the candidate out


def test_rules_format_fhir_prints_the_bundle_and_a_pack_without_a_mapping_is_refused() -> None:
    result = run("rules", "--format", "fhir")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == criteria_bundle(screening.load_ruleset())
    refused = run("rules", "roguin-2017", "--format", "fhir")
    assert refused.exit_code == 1 and "pack mgo-nlc has no FHIR mapping (fhir.yaml)" in refused.output


def figure1_rows() -> list[dict[str, Any]]:
    result = run("screen", str(FIXTURES / "figure1" / "candidates.jsonl"), "--format", "jsonl")
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_decision_becomes_a_valid_research_subject_with_its_status(paper: screening.Ruleset) -> None:
    rows = figure1_rows()
    subjects = list(research_subjects(rows, paper))
    assert len(subjects) == len(rows) == 310
    want = {("eligible", "randomized"): "eligible", ("excluded", "not_meeting_inclusion"): "ineligible",
            ("excluded", "meeting_exclusion"): "ineligible", ("excluded", "withdrawal"): "withdrawn",
            ("undetermined", "pending"): "screening", ("eligible", "pending"): "eligible"}
    for row, subject in zip(rows, subjects):
        ResearchSubject.model_validate(subject)
        assert subject["status"] in SUBJECT_STATUSES
        assert subject["status"] == want[(row["decision"], row["category"])]
        assert subject["individual"]["reference"] == f"Patient/{row['candidate_id']}"
        assert subject["study"]["reference"] == "ResearchStudy/nlc-k2-paper-2024"
        note = subject["extension"][0]["valueAnnotation"]["text"]
        assert note.startswith(f"{row['decision']} ({row['category']}") and row["primary_criterion"] in note
        if row["decision"] == "excluded":
            assert row["criteria"][row["primary_criterion"]]["reason"] in note
    assert len({s["id"] for s in subjects}) == 310


def test_export_fhir_command_skips_error_rows_and_writes_a_bundle(tmp_path: Path) -> None:
    rows = figure1_rows()[:3]
    rows.append({"candidate_id": "line 9", "site": None, "decision": "error", "category": "error", "error": "x"})
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    result = run("export", "fhir", "-", "--id-system", "urn:oid:1.2.3", stdin=text)
    assert result.exit_code == 0, result.output
    subjects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["individual"]["identifier"]["value"] for s in subjects] == [r["candidate_id"] for r in rows[:3]]
    assert "3 ResearchSubject(s) written; 1 error row(s)" in result.stderr
    bundle = run("export", "fhir", "-", "--format", "bundle", stdin=text)
    parsed = Bundle.model_validate_json(bundle.stdout)
    assert [e.resource.id for e in parsed.entry or []] == [s["id"] for s in subjects]
    none = run("export", "fhir", "-", stdin=json.dumps(rows[3]) + "\n")
    assert none.exit_code == 1 and "0 ResearchSubject(s) written" in none.stderr
