"""Each generic derivation of screening/derivations.py on its own, on a small record declared here.

A pack names these derivations in its facts.yaml; these tests pin what each computes (and when it
says unknown), independently of any trial's rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from screening.derivations import MISSING, read_declarations
from screening.errors import CandidateRecordError, RuleDefinitionError
from screening.fields import load_record_spec
from screening.matching import DrugClassifier, words
from screening.protocol import DrugClass, SiteList
from screening.record import parse_record

FIELDS: dict[str, Any] = {
    "name": "test-record",
    "enums": {"status": ["active", "absent", "unknown"]},
    "fields": {
        "candidate_id": {"type": "id", "required": True},
        "screening_start": {"type": "date", "required": True},
        "enrollment_date": {"type": "date", "not_before": {"field": "screening_start", "plus_days": {"param": "offset"},
                                                           "message": "is too early"}},
        "birth_date": {"type": "date"},
        "seen": {"type": "bool"},
        "count": {"type": "int", "min": 0, "max": 9},
        "choice": {"type": "enum", "values": ["a", "b"]},
        "place": {"type": "text"},
        "log": {"type": "object", "fields": {
            "nights": {"type": "int"},
            "entries": {"type": "list", "items": {"type": "object", "fields": {"night": {"type": "date",
                                                                                          "required": True}}}}}},
        "problems": {"type": "object", "fields": {
            "first": {"type": "enum", "values": "status", "label": "the first"},
            "second": {"type": "enum", "values": "status", "label": "the second"},
            "note": {"type": "text"}}},
        "deceased_date": {"type": "date"},
        "meds": {"type": "list", "items": {"type": "object", "fields": {
            "name": {"type": "text", "required": True}, "atc": {"type": "atc_code"},
            "rxnorm": {"type": "rxnorm_code"}, "start_date": {"type": "date"}, "stop_date": {"type": "date"},
            "ongoing": {"type": "bool"}}}},
    },
}
PARAMS = {"offset": {"type": "int", "min": 0, "max": 30}, "turns": {"type": "int", "min": 0, "max": 130},
          "lookback": {"type": "choice", "values": ["calendar_months", "days", "current"]},
          "months": {"type": "int", "min": 0, "max": 24}}
DATES = {"start": {"field": "screening_start"},
         "enroll": {"field": "enrollment_date", "planned": {"from": "start", "plus_days": {"param": "offset"}},
                    "quotes": {"note": "enroll_note"}}}
VALUES = {"offset": 3, "turns": 65, "lookback": "calendar_months", "months": 2}
SITES = {"breast": SiteList("breast", "breast", (("breast",),), ())}
CLASSES = {"vka": DrugClass("vka", "VKA", ("B01AA",), (), frozenset({"11289"}), (("warfarin",),), (), ()),
           "k2": DrugClass("k2", "K2", (), (), frozenset(), (("menaquinone",), ("vitamin", "k2")), (), ())}


def _fail(message: str, where: str) -> RuleDefinitionError:
    return RuleDefinitionError(message, file="facts.yaml", field=where)


def _plan(facts: list[dict[str, Any]], warnings: list[dict[str, Any]] | None = None,
          context: list[dict[str, Any]] | None = None) -> Any:
    record = load_record_spec(FIELDS, _fail)
    decl = read_declarations({"parameters": PARAMS, "dates": DATES, "facts": facts, "warnings": warnings or [],
                              "context": context or []}, record, _fail)
    catalogue, entries = decl.catalogue(record, VALUES, CLASSES, SITES, _fail)
    plan = decl.compile(record, VALUES, CLASSES, SITES, DrugClassifier(CLASSES), entries, _fail)
    return record, catalogue, plan


def _run(facts: list[dict[str, Any]], record: dict[str, Any], **kwargs: Any) -> Any:
    spec, _, plan = _plan(facts, **kwargs)
    base = {"candidate_id": "T1", "screening_start": "2023-03-01"}
    return plan.run(parse_record(json.dumps(base | record), spec.model))


def test_age_counts_completed_years_on_a_named_date_and_quotes_the_birthday() -> None:
    facts = [{"name": "age", "derive": "age", "args": {"born": "birth_date", "at": "start", "birthday": {"param": "turns"}},
              "quotes": {"at": "on", "born": "born", "birthday": "turns_on"}}]
    st = _run(facts, {"birth_date": "1958-03-02"})
    assert st.facts == {"age": 64}
    assert st.ctx["turns_on"] == "2023-03-02" and st.ctx["on"] == "2023-03-01" and st.ctx["born"] == "1958-03-02"
    st = _run(facts, {"birth_date": "1956-02-29"})
    assert st.ctx["turns_on"] == "2021-03-01"  # a leap-day birthday falls on 1 March
    st = _run(facts, {})
    assert "age" not in st.facts and "born" not in st.ctx  # unknown: left out, never 0


def test_a_planned_date_follows_its_parameter_and_a_given_one_is_checked() -> None:
    facts = [{"name": "age", "derive": "age", "args": {"born": "birth_date", "at": "enroll"}}]
    st = _run(facts, {"birth_date": "1958-03-03"})
    assert st.ctx["enroll"] == "2023-03-04" and st.ctx["enroll_note"] == " (planned: start + 3 days)"
    assert st.facts == {"age": 65} and st.planned == {"enroll": 3}
    spec, _, plan = _plan(facts)
    text = json.dumps({"candidate_id": "T1", "screening_start": "2023-03-01", "enrollment_date": "2023-03-02"})
    with pytest.raises(CandidateRecordError, match="enrollment_date: is too early"):
        parse_record(text, spec.model, parameters=VALUES)          # with the set's parameters, the model checks
    early = parse_record(text, spec.model)                        # without them, the derivation does
    with pytest.raises(CandidateRecordError) as info:
        plan.run(early, position="line 4")
    assert info.value.describe() == "line 4, candidate T1: enrollment_date: is too early"


def test_count_in_window_counts_inside_and_outside_and_knows_a_missing_list_from_no_log() -> None:
    args = {"list": "log.entries", "date": "night", "start": "start", "nights": 14}
    facts = [{"name": "inside", "derive": "count_in_window", "args": args | {"count": "inside"}, "quotes": {"end": "end"}},
             {"name": "outside", "derive": "count_in_window", "args": args | {"count": "outside"},
              "quotes": {"note": "note"}}]
    nights = ["2023-02-28", "2023-03-01", "2023-03-14", "2023-03-15", "2023-03-14"]
    st = _run(facts, {"log": {"entries": [{"night": n} for n in nights]}})
    assert st.facts == {"inside": 3, "outside": 2} and st.ctx["end"] == "2023-03-14"
    assert st.ctx["note"] == "; 2 outside the window ignored (2023-02-28, 2023-03-15)"
    assert _run(facts, {}).facts == {"inside": 0, "outside": 0}            # no log yet: none so far
    assert _run(facts, {"log": {"nights": 3}}).facts == {"outside": 0}      # a log without its list: unknown


@pytest.mark.parametrize("derive, args, record, expected", [
    ("number", {"field": "count"}, {"count": 4}, 4),
    ("number", {"field": "count"}, {}, MISSING),
    ("yes_no", {"field": "seen"}, {"seen": False}, "no"),
    ("yes_no", {"field": "seen"}, {}, "unknown"),
    ("enum_value", {"field": "choice"}, {"choice": "b"}, "b"),
    ("enum_value", {"field": "choice"}, {}, "unknown"),
    ("enum_value", {"field": "choice", "default": "a"}, {}, "a"),
    ("is_true", {"field": "seen", "yes": "taken", "no": "not_taken"}, {"seen": True}, "taken"),
    ("is_true", {"field": "seen", "yes": "taken", "no": "not_taken"}, {"seen": False}, "not_taken"),
    ("is_true", {"field": "seen", "yes": "taken", "no": "not_taken"}, {}, "not_taken"),
    ("in_site_list", {"field": "place", "list": "breast"}, {"place": "left Breast"}, "listed"),
    ("in_site_list", {"field": "place", "list": "breast"}, {"place": "lung"}, "other"),
    ("in_site_list", {"field": "place", "list": "breast"}, {"place": "  "}, "unknown"),
])
def test_single_field_derivations(derive: str, args: dict, record: dict, expected: Any) -> None:
    st = _run([{"name": "f", "derive": derive, "args": args}], record)
    assert st.facts.get("f", MISSING) == expected


def test_an_enum_fact_lists_the_values_it_can_take() -> None:
    _, catalogue, _ = _plan([{"name": "c", "derive": "enum_value", "args": {"field": "choice", "default": "a"}},
                             {"name": "d", "derive": "enum_value", "args": {"field": "choice"}},
                             {"name": "n", "derive": "number", "args": {"field": "count"}}])
    assert catalogue.facts["c"].values == ("a", "b") and catalogue.facts["d"].values == ("a", "b", "unknown")
    assert catalogue.facts["n"].kind == "int" and catalogue.facts["c"].reads == ("choice",)


def test_count_values_counts_fields_holding_values_and_quotes_their_labels_and_paths() -> None:
    facts = [{"name": "open", "derive": "count_values",
              "args": {"object": "problems", "values": ["unknown"], "missing": True},
              "quotes": {"names": "open_names", "fields": ["open_fields", "open_too"]}}]
    spec, catalogue, _ = _plan(facts)
    assert "open_fields" in catalogue.lists and "open_names" in catalogue.quotes
    st = _run(facts, {"problems": {"first": "unknown"}})
    assert st.facts == {"open": 2}  # unknown, and missing; the text field is not a status
    assert st.ctx["open_names"] == "the first, the second"
    assert st.ctx["open_fields"] == st.ctx["open_too"] == ["problems.first", "problems.second"]
    assert _run(facts, {"problems": {"first": "absent", "second": "active"}}).facts == {"open": 0}


def test_for_each_makes_one_fact_per_status_field_so_a_new_field_is_a_new_fact() -> None:
    facts = [{"name": "p_{key}", "for_each": {"object": "problems", "enum": "status"}, "derive": "enum_value",
              "args": {"field": "problems.{key}"}, "doc": "problems.{key}"}]
    _, catalogue, _ = _plan(facts)
    assert list(catalogue.facts) == ["p_first", "p_second"] and catalogue.facts["p_first"].doc == "problems.first"
    assert _run(facts, {"problems": {"second": "active"}}).facts == {"p_first": "unknown", "p_second": "active"}
    assert _run(facts, {}).facts == {"p_first": "unknown", "p_second": "unknown"}
    FIELDS["fields"]["problems"]["fields"]["third"] = {"type": "enum", "values": "status"}
    try:
        assert _run(facts, {"problems": {"third": "absent"}}).facts["p_third"] == "absent"
    finally:
        del FIELDS["fields"]["problems"]["fields"]["third"]


EXPOSURE = [{"name": "exp_{class}", "for_each": {"drug_class": True}, "derive": "exposure",
             "args": {"list": "meds", "class": "{class}", "end": "enroll", "lookback": {"param": "lookback"},
                      "months": {"param": "months"}},
             "quotes": {"start": "lookback_start", "drug": "exp_{class}_drug", "when": "exp_{class}_when"}}]


@pytest.mark.parametrize("med, vka", [
    ({"name": "warfarin 3 mg", "ongoing": True}, "inside"),
    ({"name": "Marevan", "atc": "b01aa03", "stop_date": "2023-01-04"}, "inside"),   # L = 2023-01-04
    ({"name": "warfarin", "stop_date": "2023-01-03"}, "outside"),
    ({"name": "warfarin", "start_date": "2023-03-05", "ongoing": True}, "outside"),  # starts after enrollment
    ({"name": "warfarin"}, "unknown"),                                                # no stop, not ongoing
    ({"name": "amlodipine", "ongoing": True}, "none"),
])
def test_exposure_in_a_calendar_month_look_back(med: dict, vka: str) -> None:
    st = _run(EXPOSURE, {"meds": [med]})
    assert st.facts == {"exp_vka": vka, "exp_k2": "none"}
    assert st.ctx["lookback_start"] == "2023-01-04" and st.ctx["enroll"] == "2023-03-04"


def test_warnings_quote_their_values() -> None:
    warnings = [{"derive": "planned_with_exposure", "args": {"date": "enroll", "list": "meds"},
                 "message": "planned {date} (+{days})"},
                {"derive": "date_given", "args": {"field": "deceased_date"}, "message": "died {value}"}]
    st = _run([], {"meds": [{"name": "vitamin K2", "ongoing": True}], "deceased_date": "2023-02-01"},
              warnings=warnings)
    assert st.warnings == ["planned 2023-03-04 (+3)", "died 2023-02-01"]
    assert _run([], {"enrollment_date": "2023-03-09", "meds": [{"name": "warfarin", "ongoing": True}]},
                warnings=warnings).warnings == []


def test_presence_text_quotes_whether_an_object_was_given() -> None:
    context = [{"derive": "presence_text", "args": {"field": "log", "absent": "no log", "present": "a log"},
                "quotes": {"text": "log_state"}}]
    assert _run([], {}, context=context).ctx["log_state"] == "no log"
    assert _run([], {"log": {}}, context=context).ctx["log_state"] == "a log"


@pytest.mark.parametrize("fact, message", [
    ({"name": "a", "derive": "agge", "args": {}}, "unknown derivation 'agge'; did you mean 'age'"),
    ({"name": "a", "derive": "age", "args": {"born": "birth_date", "at": "start", "on": "start"}},
     "age takes no argument 'on'"),
    ({"name": "a", "derive": "age", "args": {"born": "birthdate", "at": "start"}},
     "'birthdate' is no field of the record; did you mean 'birth_date'"),
    ({"name": "a", "derive": "age", "args": {"born": "seen", "at": "start"}}, "seen is a bool, not a date"),
    ({"name": "a", "derive": "age", "args": {"born": "birth_date", "at": "screening"}}, "is not one of the dates"),
    ({"name": "a", "derive": "number", "args": {"field": "count"}, "quotes": {"x": "y"}}, "number quotes no 'x'"),
    ({"name": "A b", "derive": "number", "args": {"field": "count"}}, "lower_case_with_underscores"),
])
def test_a_bad_declaration_names_the_fact_and_what_is_wrong(fact: dict, message: str) -> None:
    with pytest.raises(RuleDefinitionError) as info:
        _plan([fact])
    assert message in str(info.value) and "facts.yaml" in str(info.value)


def test_words_used_for_matching() -> None:
    assert words("Vitamin K₂ (MK-7)") == ("vitamin", "k2", "mk", "7")
