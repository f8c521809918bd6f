"""The v1 intake record: strict types, unknown fields rejected, errors with field paths, no values."""

from __future__ import annotations

import json

import pytest

import screening
from screening.errors import CandidateRecordError
from screening.record import parse_record

from .conftest import base_record


def _problems(record: dict) -> dict[str, str]:
    with pytest.raises(CandidateRecordError) as info:
        parse_record(json.dumps(record), position="line 9")
    return {p.path: p.message for p in info.value.problems}


def test_the_base_record_is_valid() -> None:
    rec = parse_record(json.dumps(base_record()))
    assert rec.consent == "signed" and rec.diary is not None and rec.diary.nights_recorded == 14


@pytest.mark.parametrize("change, path", [
    ({"screening_start": None}, "screening_start"),
    ({"candidate_id": ""}, "candidate_id"),
    ({"medication_history_taken": "yes"}, "medication_history_taken"),
    ({"birth_date": 19500101}, "birth_date"),
    ({"consent": "agreed"}, "consent"),
    ({"medications": [{"atc": "C03CA01"}]}, "medications[0].name"),
    ({"medications": [{"name": "x", "rxnorm": "RX5487"}]}, "medications[0].rxnorm"),
    ({"diary": {"nights_recorded": 15}}, "diary.nights_recorded"),
    ({"diary": {"episodes": [{"night_of": "2023-03-02", "severity": 0}]}}, "diary.episodes[0].severity"),
    ({"nlc_assessment": {"confirmed": True, "differentials": {"restless_leg": "absent"}}},
     "nlc_assessment.differentials.restless_leg"),
])
def test_bad_fields_are_named(change: dict, path: str) -> None:
    rec = base_record()
    rec.update(change)
    if change.get("screening_start", 1) is None:
        del rec["screening_start"]
    assert path in _problems(rec)


def test_typo_gets_a_suggestion_and_the_value_is_not_echoed() -> None:
    problems = _problems(dict(base_record(), birthdate="1950-01-01"))
    assert problems == {"birthdate": "unknown field; did you mean 'birth_date'?"}


def test_null_is_unknown_not_an_error() -> None:
    rec = parse_record(json.dumps(base_record(sex=None) | {"birth_date": None, "consent": None}))
    assert rec.birth_date is None and rec.consent is None


def test_schema_lists_every_field_path() -> None:
    schema = screening.record_json_schema()
    assert set(schema["properties"]) == {p for p in list(screening.load_ruleset().record.paths) if "." not in p}
    assert "conditions.malignant_tumor_site" in list(screening.load_ruleset().record.paths)


def test_public_surface_is_what_all_says() -> None:
    exported = {name for name in dir(screening) if not name.startswith("_")}
    modules = {"audit", "conditions", "decision", "decision_row", "derivations", "describe", "engine", "errors", "facts", "i18n",
               "fields", "generate", "io", "matching", "output", "protocol", "record", "scale", "screen", "batch", "sink",
               "text", "log", "service", "redcap", "cluster", "diagram", "lint"}
    assert exported - modules == set(screening.__all__)
