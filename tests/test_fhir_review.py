"""FHIR import, the outside review's findings (review A, items 4, 5 and 8 and the minor ones): no
identifier but the candidate id leaves the EHR, deceasedBoolean warns, an absurd value costs one
value and not the patient, every abatement[x] means history, and a consent counts up to the planned
enrollment date and only when it names the study exactly (criteria.md §8.3, §1.2)."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import screening
from screening.fhir_import import FhirImport, _Bundle, load_mapping
from screening.record import parse_record

D0 = dt.date(2021, 4, 1)
SCT = "http://snomed.info/sct"
PD = "49049000"  # Parkinson's disease -> conditions.parkinson_disease (E8)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FUROSEMIDE = {"text": "furosemide 40 mg", "coding": [{"system": RXNORM, "code": "315971"}]}


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "birthDate": "1950-06-15", "gender": "female", **extra}


def condition(cid: str, code: str = PD, subject: str = "Patient/p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": subject},
            "code": {"coding": [{"system": SCT, "code": code}]}, "onsetDateTime": "2015-01-01", **extra}


def consent(cid: str, status: str, when: str | None, policy: str = "https://clinicaltrials.gov/study/NCT05547750",
            **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "Consent", "id": cid, "status": status, "patient": {"reference": "Patient/p1"},
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                      "code": "research"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "policy": [{"uri": policy}], **extra}
    if when is not None:
        resource["dateTime"] = when
    return resource


def bundle(*resources: dict[str, Any]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": r} for r in resources]}).encode()


def one(paper: screening.Ruleset, *resources: dict[str, Any], **options: Any) -> dict[str, Any]:
    [record] = FhirImport(paper, screening_start=D0, **options).bundle(io.BytesIO(bundle(*resources)), "b.json")
    if "error" not in record:
        parse_record(json.dumps(record), paper.record.model, parameters=paper.parameters)  # a valid v1 record
    return record


# -- item 4: with --id-system, no other identifier anywhere -------------------------------------


MRN_PATIENT = patient(id="mrn-778899", name=[{"family": "Doe", "given": ["Jane"]}],
                      identifier=[{"system": "urn:study", "value": "S-01"}, {"system": "urn:mrn", "value": "778899"}])


def test_with_an_id_system_neither_patient_id_nor_other_identifier_is_in_the_record(paper: screening.Ruleset) -> None:
    record = one(paper, MRN_PATIENT, condition("c-pd", subject="Patient/mrn-778899"),
                 condition("778899-lss", code="18347007", subject="Patient/mrn-778899"),
                 {"resourceType": "MedicationRequest", "id": "rx-mrn-778899-1", "status": "active", "intent": "order",
                  "subject": {"reference": "Patient/mrn-778899"}, "authoredOn": "2021-03-01",
                  "medicationCodeableConcept": FUROSEMIDE},
                 consent("consent-1", "active", "2021-03-20", patient={"reference": "Patient/mrn-778899"}),
                 id_system="urn:study")
    assert record["candidate_id"] == "S-01"
    text = json.dumps(record)
    for secret in ("mrn-778899", "778899", "Doe", "Jane"):
        assert secret not in text, secret
    prov = record["provenance"]
    # the Patient is named by the identifier system chosen
    assert prov["candidate_id"] == prov["birth_date"] == prov["sex"] == ["Patient (identifier urn:study)"]
    # another resource keeps its id (a screener checks it in the EHR), unless the id carries an identifier
    assert prov["conditions.parkinson_disease"] == ["Condition/c-pd"]
    assert prov["conditions.lumbar_spinal_stenosis"] == ["Condition (entry 3)"]
    assert prov["medications"] == ["MedicationRequest (entry 4)"]
    assert prov["consent"] == ["Consent/consent-1"]
    assert record["conditions"] == {"lumbar_spinal_stenosis": "active", "parkinson_disease": "active"}


def test_without_an_id_system_the_patient_id_is_the_candidate_and_other_identifiers_stay_out(
        paper: screening.Ruleset) -> None:
    record = one(paper, MRN_PATIENT, condition("778899-lss", code="18347007", subject="Patient/mrn-778899"),
                 condition("c-pd", subject="Patient/mrn-778899", verificationStatus={"coding": [{"code": "provisional"}]}))
    assert record["candidate_id"] == "mrn-778899"
    assert record["provenance"]["candidate_id"] == ["Patient/mrn-778899"]
    assert record["provenance"]["conditions.lumbar_spinal_stenosis"] == ["Condition (entry 2)"]
    assert record["provenance"]["conditions.parkinson_disease"] == [
        "Condition/c-pd (not confirmed: 49049000 Parkinson's disease; the screener decides)"]
    assert "778899-lss" not in json.dumps(record)


def test_with_an_id_system_an_error_line_names_the_patient_by_its_entry(paper: screening.Ruleset) -> None:
    no_study_id = patient(id="mrn-778899", identifier=[{"system": "urn:mrn", "value": "778899"}])
    error = one(paper, no_study_id, id_system="urn:study")
    assert error["error"] == "the Patient of entry 1 has no identifier of the system urn:study"
    invalid = one(paper, {**MRN_PATIENT, "birthDate": "1950-13-45"}, id_system="urn:study")
    assert invalid["error"].startswith("entry 1 (Patient) is not a valid FHIR R4B Patient: birthDate")
    assert "778899" not in json.dumps([error, invalid])


# -- item 5: deceasedBoolean warns ---------------------------------------------------------------


def test_deceased_boolean_true_carries_a_deceased_date_so_that_the_decision_warns(paper: screening.Ruleset) -> None:
    record = one(paper, patient(deceasedBoolean=True))
    assert record["deceased_date"] == D0.isoformat()  # the date is not known: D0 stands in
    assert record["provenance"]["deceased_date"] == [
        "Patient/p1 (deceasedBoolean true, no date of death given: screening_start stands in for it; the screener "
        "checks)"]
    row = screening.screen_one(record, paper)
    assert "the source record says the patient died on 2021-04-01" in row["warnings"]


@pytest.mark.parametrize("extra", [{"deceasedBoolean": False}, {"deceasedDateTime": "2021-04-02"}, {}])
def test_a_patient_alive_on_d0_has_no_deceased_date(extra: dict[str, Any], paper: screening.Ruleset) -> None:
    record = one(paper, patient(**extra))
    assert "deceased_date" not in record and "deceased_date" not in record["provenance"]
    assert not [w for w in screening.screen_one(record, paper)["warnings"] if "died" in w]


# -- item 8: an absurd value costs that value, not the patient ----------------------------------


def request(rid: str, status: str, supply: float | None, **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
                "subject": {"reference": "Patient/p1"}, "authoredOn": "2021-01-01",
                "medicationCodeableConcept": FUROSEMIDE, **extra}
    if supply is not None:
        resource["dispenseRequest"] = {"expectedSupplyDuration": {"value": supply, "unit": "days", "code": "d"}}
    return resource


def test_an_overflowing_supply_duration_leaves_the_end_unknown_with_a_note(paper: screening.Ruleset) -> None:
    record = one(paper, patient(), request("m1", "completed", 1e12), request("m2", "completed", 30))
    assert record["medications"] == [
        {"name": "furosemide 40 mg", "rxnorm": "315971", "start_date": "2021-01-01"},  # the end is unknown
        {"name": "furosemide 40 mg", "rxnorm": "315971", "start_date": "2021-01-01", "stop_date": "2021-01-31"}]
    assert record["provenance"]["medications"] == [
        "MedicationRequest/m1 (expected supply duration out of range: ignored, so the end is unknown)",
        "MedicationRequest/m2"]
    assert screening.screen_one(record, paper)["decision"] != "error"


def test_an_overflowing_days_supply_of_a_dispense_leaves_its_prescriptions_end_unknown(
        paper: screening.Ruleset) -> None:
    dispense = {"resourceType": "MedicationDispense", "id": "d1", "status": "completed",
                "medicationCodeableConcept": FUROSEMIDE, "subject": {"reference": "Patient/p1"},
                "authorizingPrescription": [{"reference": "MedicationRequest/m1"}],
                "whenHandedOver": "2021-01-02", "daysSupply": {"value": -1e15, "unit": "days", "code": "d"}}
    record = one(paper, patient(), request("m1", "stopped", 30), dispense)
    assert record["medications"] == [{"name": "furosemide 40 mg", "rxnorm": "315971", "start_date": "2021-01-01"}]
    assert record["provenance"]["medications"] == [
        "MedicationRequest/m1 (its dispense MedicationDispense/d1 has a days supply out of range: ignored, so the "
        "end is unknown)"]


def test_an_unforeseen_value_out_of_range_is_an_error_line_naming_the_entry(paper: screening.Ruleset,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def overflow(self: Any, resource: Any, source: str, aliases: Any) -> None:
        raise OverflowError("date value out of range")
    monkeypatch.setattr(_Bundle, "_procedure", overflow)
    procedure = {"resourceType": "Procedure", "id": "x1", "status": "completed", "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": SCT, "code": "302497006"}]}}
    error = one(paper, patient(), procedure)
    assert error == {"error": "entry 2 (Procedure/x1) cannot be read: a value out of range (OverflowError)",
                     "source": "b.json"}


# -- abatement[x]: every kind means resolved -> history -------------------------------------------


@pytest.mark.parametrize("abatement, status", [
    ({"abatementString": "resolved in 2010"}, "history"),
    ({"abatementBoolean": True}, "history"),       # STU3's element (not in R4): accepted, true = abated
    ({"abatementBoolean": False}, "active"),
    ({"abatementAge": {"value": 60, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}}, "history"),
    ({"abatementAge": {"value": 75, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}}, "active"),
    ({"abatementAge": {"value": 1e12, "unit": "years", "code": "a"}}, "active"),  # never, within the calendar
    ({"abatementRange": {"low": {"value": 70, "unit": "years", "code": "a"}}}, "history"),
    ({"abatementDateTime": "2021-05-01"}, "active"),                              # after D0: active on D0
])
def test_an_abatement_on_or_before_d0_of_any_kind_means_history(abatement: dict[str, Any], status: str,
                                                                paper: screening.Ruleset) -> None:
    record = one(paper, patient(), condition("c1", **abatement))  # born 1950-06-15: 70 on 2020-06-15, 75 in 2025
    assert record["conditions"] == {"parkinson_disease": status}


def test_an_abatement_age_without_a_birth_date_is_an_abatement_of_unknown_date(paper: screening.Ruleset) -> None:
    record = one(paper, {"resourceType": "Patient", "id": "p1"},
                 condition("c1", abatementAge={"value": 90, "unit": "years", "code": "a"}))
    assert record["conditions"] == {"parkinson_disease": "history"}


def test_a_stu3_abatement_that_is_not_a_boolean_is_still_an_invalid_resource(paper: screening.Ruleset) -> None:
    error = one(paper, patient(), condition("c1", abatementBoolean="yes"))
    assert error["error"].startswith("entry 2 (Condition/c1) is not a valid FHIR R4B Condition: abatementBoolean")


# -- Consent: judged at enrollment; the study named exactly --------------------------------------


def test_a_consent_counts_up_to_the_planned_enrollment_date(paper: screening.Ruleset) -> None:
    # enrollment is planned on D0 + 14 = 2021-04-15 (enrollment_offset_days): consent is signed during screening
    assert one(paper, patient(), consent("a", "active", "2021-04-10"))["consent"] == "signed"
    assert one(paper, patient(), consent("a", "active", "2021-04-15T18:00:00+08:00"))["consent"] == "signed"
    late = one(paper, patient(), consent("a", "active", "2021-03-01"), consent("b", "inactive", "2021-06-01"))
    assert late["consent"] == "signed"  # withdrawn after randomisation is not a screening withdrawal (D12)
    assert late["provenance"]["consent"] == [
        "Consent/b (dated after the planned enrollment date 2021-04-15: not counted; the screener checks)",
        "Consent/a"]
    only_late = one(paper, patient(), consent("b", "active", "2021-04-16"))
    assert "consent" not in only_late and len(only_late["provenance"]["consent"]) == 1
    assert one(paper, patient(), consent("u", "rejected", None))["consent"] == "declined"  # undated: counts


@pytest.mark.parametrize("policy, named", [
    ("https://clinicaltrials.gov/study/NCT05547750", True),
    ("https://clinicaltrials.gov/ct2/show/NCT05547750?term=k2", True),
    ("https://clinicaltrials.gov/study/NCT055477501", False),
    ("https://clinicaltrials.gov/study/XNCT05547750", False),
    ("https://clinicaltrials.gov/study/NCT0554775", False),
])
def test_a_consent_names_the_study_exactly(policy: str, named: bool, paper: screening.Ruleset) -> None:
    record = one(paper, patient(), consent("a", "active", "2021-03-20", policy=policy))
    assert ("consent" in record) is named


def test_a_consent_may_name_the_study_in_its_policy_rule_or_provision(paper: screening.Ruleset) -> None:
    def without_policy(**extra: Any) -> dict[str, Any]:
        resource = consent("a", "active", "2021-03-20", **extra)
        del resource["policy"]
        return resource
    assert one(paper, patient(), without_policy(policyRule={"text": "NCT05547750 informed consent v2"}))["consent"] \
        == "signed"
    coded = {"coding": [{"system": "https://clinicaltrials.gov", "code": "NCT05547750"}]}
    assert one(paper, patient(), without_policy(policyRule=coded))["consent"] == "signed"
    provision = {"type": "permit", "purpose": [{"system": "https://clinicaltrials.gov", "code": "NCT05547750"}]}
    assert one(paper, patient(), without_policy(policyRule={"text": "research"}, provision=provision))["consent"] \
        == "signed"
    assert "consent" not in one(paper, patient(), without_policy(policyRule={"text": "NCT05547750X"}))


def test_the_consent_limit_is_checked_when_the_mapping_loads(paper: screening.Ruleset) -> None:
    assert load_mapping(paper).consent["until"] == paper.parameters["enrollment_offset_days"] == 14


def test_fhir_yaml_is_in_no_criteria_sets_sha256(paper: screening.Ruleset, tmp_path: Path) -> None:
    """The consent limit added to fhir.yaml changes no set: the file is outside every sha256."""
    pack = tmp_path / "nlc-k2"
    shutil.copytree(paper.pack_dir, pack)  # type: ignore[arg-type]
    text = (pack / "fhir.yaml").read_text(encoding="utf-8")
    (pack / "fhir.yaml").write_text(text.replace("until: {end_plus_days: {param: enrollment_offset_days}}",
                                                 "until: {end_plus_days: 30}"), encoding="utf-8")
    copy = screening.load_ruleset(str(pack / "paper-2024.yaml"))
    assert copy.sha256 == paper.sha256
    assert load_mapping(copy).consent["until"] == 30
