"""Issue 11, the candidate record: duplicate keys, non-finite numbers, where JSON breaks, unknown
key names that are not echoed, one form of the drug codes, and ids with control characters."""

from __future__ import annotations

import json
from typing import Any

import pytest

import screening
from screening import record as record_module
from screening.errors import CandidateRecordError
from screening.record import Episode, Medication, _colons_in_values, _keys_read, parse_record
from screening.screen import screen_one

from .conftest import base_record


def _error(text: str) -> CandidateRecordError:
    with pytest.raises(CandidateRecordError) as info:
        parse_record(text, position="line 7", parameters={"enrollment_offset_days": 14})
    return info.value


def _problems(text: str) -> dict[str, str]:
    return {p.path: p.message for p in _error(text).problems}


def _base_text() -> str:
    return json.dumps(base_record())


# ---------------------------------------------------------------------------------------------
# 1. Duplicate keys are an error naming the key's path, at any depth


def _with_duplicate(record: dict[str, Any], container: str, key: str) -> str:
    """The record's JSON with a second ``key`` inserted into the object that starts at ``container``."""
    text = json.dumps(record)
    at = text.index(container) + len(container)
    return text[:at] + f'"{key}": {json.dumps(_value_of(text, key))}, ' + text[at:]


def _value_of(text: str, key: str) -> Any:
    found: list[Any] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.extend(v for k, v in pairs if k == key)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found[0]


@pytest.mark.parametrize("container, key, path", [
    ("{", "candidate_id", "candidate_id"),
    ("{", "consent", "consent"),
    ('"conditions": {', "hypothyroidism", "conditions.hypothyroidism"),
    ('"differentials": {', "myositis", "nlc_assessment.differentials.myositis"),
    ('"diary": {', "nights_recorded", "diary.nights_recorded"),
    ('"episodes": [{', "severity", "diary.episodes[0].severity"),
    ('"medications": [{', "name", "medications[0].name"),
])
def test_a_duplicate_key_is_an_error_naming_its_path(container: str, key: str, path: str) -> None:
    text = _with_duplicate(base_record(), container, key)
    problems = _problems(text)
    assert problems[path] == "appears twice in the record"


def test_a_duplicate_key_with_a_different_value_is_an_error_too() -> None:
    text = _base_text().replace('"consent": "signed"', '"consent": "declined", "consent": "signed"')
    assert _problems(text) == {"consent": "appears twice in the record"}


def test_a_duplicate_key_in_the_third_medication_and_three_times() -> None:
    meds = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    text = json.dumps(base_record(medications=meds)).replace('{"name": "c"}', '{"name": "c", "name": "c", "name": "d"}')
    assert _problems(text) == {"medications[2].name": "appears 3 times in the record"}


def test_keys_repeating_across_list_elements_are_not_duplicates() -> None:
    record = base_record()
    record["diary"]["episodes"] = [{"night_of": f"2023-03-{d:02d}", "severity": 2} for d in range(1, 15)]
    record["medications"] = [{"name": f"drug {i}", "atc": "C08CA01", "ongoing": True} for i in range(5)]
    parse_record(json.dumps(record))


def test_colons_inside_values_do_not_hide_or_forge_duplicates() -> None:
    # Colons in strings make the quick pre-check inconclusive: the full check must still decide.
    record = base_record(candidate_id="T:001", site="a: b: c")
    assert parse_record(json.dumps(record)).candidate_id == "T:001"
    text = json.dumps(record).replace('"sex": "female"', '"sex": "female", "sex": "male"')
    assert _problems(text) == {"sex": "appears twice in the record"}


def test_a_duplicate_is_reported_with_the_other_field_problems() -> None:
    text = _base_text().replace('"consent": "signed"', '"consent": "agreed", "sex": "male"')
    problems = _problems(text)
    assert problems["sex"] == "appears twice in the record" and "consent" in problems


def test_a_duplicated_candidate_id_is_not_used_to_name_the_record() -> None:
    text = _base_text().replace('"candidate_id": "T-001"', '"candidate_id": "T-001", "candidate_id": "T-002"')
    error = _error(text)
    assert error.candidate_id is None and "line 7" in error.describe()
    row = screen_one(text, screening.load_ruleset("paper-2024"))
    assert row["decision"] == "error" and row["error_fields"] == ["candidate_id"]


def test_a_duplicate_key_is_an_error_row_when_screened() -> None:
    text = _base_text().replace('"consent": "signed"', '"consent": "signed", "consent": "signed"')
    row = screen_one(text, screening.load_ruleset("paper-2024"))
    assert row["decision"] == "error" and row["error_fields"] == ["consent"]
    assert "consent: appears twice in the record" in row["error"]


def _full_record() -> dict[str, Any]:
    """A record with every field of the model set, text values holding colons."""
    record = base_record(candidate_id="T:1", site="a: b", enrollment_date="2023-03-20", deceased_date="2024-01-01")
    record["conditions"] |= {"liver_cirrhosis_ascites_paracentesis": False, "malignant_tumor_site": "skin: face"}
    record["medications"] = [{"name": "a: b", "atc": "C08CA01", "rxnorm": "17767", "start_date": "2020-01-01",
                              "stop_date": "2021-01-01", "ongoing": False}, {"name": "c"}]
    return record


def _paths(value: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out |= {prefix + key} | _paths(item, prefix + key + ".")
    elif isinstance(value, list):
        for item in value:
            out |= _paths(item, prefix)
    return out


def test_the_quick_check_counts_every_key_of_a_full_record(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _full_record()
    every = set(list(screening.load_ruleset().record.paths)) | {f"diary.episodes.{k}" for k in Episode.model_fields} \
        | {f"medications.{k}" for k in Medication.model_fields}
    assert every <= _paths(record), "add the model's new fields to _full_record"
    text = json.dumps(record, ensure_ascii=False)
    parsed = parse_record(text)
    assert text.count(":") == _keys_read(parsed) + _colons_in_values(parsed)
    # ... so a record like it is decided without reading it a second time
    monkeypatch.setattr(record_module, "load_keeping_keys", _must_not_be_called)
    parse_record(text)
    parse_record(text.encode())
    parse_record(json.dumps(base_record()))


def _must_not_be_called(text: str | bytes) -> Any:
    raise AssertionError("the full duplicate check ran for a record without colons in doubt")


def test_an_escaped_colon_cannot_hide_a_duplicate() -> None:
    # The site's colon is written as an escape: counting colons in the values would balance the
    # duplicate key's colon, so escaped text must take the full check.
    text = json.dumps(base_record(site="a:b")).replace('"a:b"', '"a\\u003ab"')
    parse_record(text)
    text = text.replace('"sex": "female"', '"sex": "female", "sex": "male"')
    assert _problems(text) == {"sex": "appears twice in the record"}


def test_a_duplicate_key_in_bytes_text_is_found() -> None:
    text = _base_text().replace('"consent": "signed"', '"consent": "signed", "consent": "signed"')
    with pytest.raises(CandidateRecordError) as info:
        parse_record(text.encode())
    assert info.value.fields == ["consent"]


# ---------------------------------------------------------------------------------------------
# 2. Non-finite numbers


@pytest.mark.parametrize("token", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_field_error(token: str) -> None:
    text = _base_text().replace('"duration_min": 1.5', f'"duration_min": {token}')
    assert _problems(text) == {"diary.episodes[0].duration_min": "must be a finite number"}


def test_large_finite_durations_are_still_numbers() -> None:
    text = _base_text().replace('"duration_min": 1.5', '"duration_min": 1e300')
    assert parse_record(text).diary.episodes[0].duration_min == 1e300  # type: ignore[union-attr,index]


# ---------------------------------------------------------------------------------------------
# 3. Where JSON breaks


def test_a_syntax_error_gives_its_column() -> None:
    text = '{"candidate_id": "A", "screening_start": "2023-03-01", x}'
    assert _problems(text) == {"": f"not valid JSON at column {text.index('x') + 1} (key must be a string)"}


def test_a_syntax_error_column_counts_characters_not_bytes() -> None:
    text = '{"candidate_id": "é病", x}'
    assert _problems(text) == {"": f"not valid JSON at column {text.index('x') + 1} (key must be a string)"}


def test_a_syntax_error_in_a_multi_line_record_gives_line_and_column() -> None:
    text = '{"candidate_id": "A",\n  "screening_start": "2023-03-01",\n   }'
    assert _problems(text) == {"": "not valid JSON at line 3, column 4 (trailing comma)"}


def test_a_truncated_record_says_where_it_ends() -> None:
    text = _base_text()[:-1]
    assert _problems(text) == {"": f"not valid JSON at column {len(text)} (EOF while parsing an object)"}


# ---------------------------------------------------------------------------------------------
# 4. Unknown key names: truncated, and never echoed unless an identifier


def test_a_long_unknown_name_is_truncated() -> None:
    name = "x" * 500
    problems = _problems(json.dumps(dict(base_record(), **{name: 1})))
    assert problems == {"x" * 40 + "…": "unknown field"}


@pytest.mark.parametrize("name", [
    "bad name", "a\u0001b", "line\nZZ-9999: ELIGIBLE", "\u001b]0;title\u0007", 'quo"te', "é", "\u202eevil",
    "", "1abc", "a-b", "a.b",
])
def test_an_unknown_name_that_is_not_an_identifier_is_not_shown(name: str) -> None:
    error = _error(json.dumps(dict(base_record(), **{name: 1})))
    assert [(p.path, p.message) for p in error.problems] == [("", "an unknown field (name not shown)")]
    if name:
        assert name not in error.describe()


def test_a_hidden_unknown_name_in_a_nested_object_names_the_object() -> None:
    record = base_record()
    record["conditions"]["gout\u001b[2J"] = "active"
    record["medications"][0]["x y"] = 1
    problems = _problems(json.dumps(record))
    assert problems == {"conditions": "an unknown field (name not shown)",
                        "medications[0]": "an unknown field (name not shown)"}


def test_a_duplicated_unknown_name_follows_the_same_rule() -> None:
    text = _base_text()[:-1] + ', "a b": 1, "a b": 2, "' + "y" * 60 + '": 1, "' + "y" * 60 + '": 2}'
    error = _error(text)
    assert sorted((p.path, p.message) for p in error.problems) == [
        ("", "an unknown field (name not shown)"),
        ("", "an unknown field (name not shown) appears twice in the record"),
        ("y" * 40 + "…", "appears twice in the record"),
        ("y" * 40 + "…", "unknown field"),
    ]
    assert "a b" not in error.describe() and "y" * 41 not in error.describe()


def test_an_identifier_typo_is_still_named_with_a_suggestion() -> None:
    assert _problems(json.dumps(dict(base_record(), birthdate="1950-01-01"))) == {
        "birthdate": "unknown field; did you mean 'birth_date'?"}


# ---------------------------------------------------------------------------------------------
# 5. One form of the drug codes


def _diuretic_row(atc: str | None = None, rxnorm: str | None = None) -> dict[str, Any]:
    med: dict[str, Any] = {"name": "tablet 40 mg", "start_date": "2022-01-01", "ongoing": True}
    if atc is not None:
        med["atc"] = atc
    if rxnorm is not None:
        med["rxnorm"] = rxnorm
    record = base_record(medications=[med])
    return screen_one(json.dumps(record), screening.load_ruleset("paper-2024"))


@pytest.mark.parametrize("atc", [" c03ca01 ", "c03ca01 ", "C03CA01", "\tC03CA01\n", "c03 ca01"])
def test_atc_codes_in_any_case_and_surrounding_space_are_one_code(atc: str) -> None:
    row = _diuretic_row(atc=atc)
    same = _diuretic_row(atc="C03CA01")
    assert row["decision"] != "error", row.get("error")
    assert (row["decision"], row["category"], row["subcategory"]) == (
        same["decision"], same["category"], same["subcategory"]) == ("excluded", "meeting_exclusion", "diuretic")
    assert row["criteria"]["E13"] == same["criteria"]["E13"]


def test_the_record_holds_the_normalised_codes() -> None:
    record = base_record(medications=[{"name": "x", "atc": " c03ca01 ", "rxnorm": " 4603 "}])
    med = parse_record(json.dumps(record)).medications[0]  # type: ignore[index]
    assert (med.atc, med.rxnorm) == ("C03CA01", "4603")


def test_rxnorm_with_surrounding_space_is_the_same_drug() -> None:
    rx = next(iter(screening.load_ruleset("paper-2024").drug_classes["diuretic"].rxnorm))
    row, same = _diuretic_row(rxnorm=f" {rx} "), _diuretic_row(rxnorm=rx)
    assert row["subcategory"] == same["subcategory"] == "diuretic"
    assert row["criteria"]["E13"] == same["criteria"]["E13"]


@pytest.mark.parametrize("atc", ["", "   ", "C03 CA01 X9 Z", "3C", "C03-CA01"])
def test_codes_that_are_not_atc_after_normalising_are_still_errors(atc: str) -> None:
    record = base_record(medications=[{"name": "x", "atc": atc}])
    assert "medications[0].atc" in _problems(json.dumps(record))


# ---------------------------------------------------------------------------------------------
# 6. Control characters in ids and sites are data (the writers escape them)


@pytest.mark.parametrize("value", ["A\u0001B", "line\nZZ-9999: ELIGIBLE", "\u001b]0;x\u0007", "\u202eevil", "A\u0000"])
def test_control_characters_in_ids_and_sites_are_accepted(value: str) -> None:
    record = parse_record(json.dumps(base_record(candidate_id=value, site=value)))
    assert record.candidate_id == value and record.site == value


def test_a_deeply_nested_unknown_field_is_one_clear_error() -> None:
    # json reads deeper than pydantic; the duplicate check must not recurse itself to death.
    text = _base_text()[:-1] + ', "x": ' + "[" * 960 + '{"a": 1, "a": 2}' + "]" * 960 + "}"
    problems = _problems(text)
    assert list(problems) == [""] and problems[""].startswith("not valid JSON at column ")
    inner = json.loads('{"a": [[{"b": 1}], {"c": {"d": 1}}]}')
    assert record_module.duplicate_keys(inner) == []
    text = '{"m": [[{"b": 1, "b": 2}], {"c": {"d": 1, "d": 1}}], "n": 3, "n": 4}'
    found = record_module.duplicate_keys(record_module.load_keeping_keys(text), ("medications",))
    assert [str(p) for p in found] == ["medications.n: appears twice in the record",
                                       "medications.m[0][0].b: appears twice in the record",
                                       "medications.m[1].c.d: appears twice in the record"]


def _at_depth(frames: int, call: Any) -> Any:
    """``call()`` with about ``frames`` more calls on the stack (as in a worker, deeper than the main process)."""
    return call() if frames == 0 else _at_depth(frames - 1, call)


def test_a_record_nested_near_the_recursion_limit_is_named_alike_wherever_it_is_read(tmp_path: Any) -> None:
    # found by the property tests: 966 nested lists read (and named the row by its candidate id) in the
    # main process but not in a worker, whose stack is deeper; so 1 and 2 workers gave different rows
    import inspect

    depth = 950 - len(inspect.stack(0))  # about as deep as json reads from here (screen_one adds ~20 calls)
    text = '{"candidate_id": "D", "x": ' + "[" * depth + "]" * depth + "}"
    rows = [_at_depth(frames, lambda: screen_one(text, screening.load_ruleset())) for frames in (0, 300)]
    assert rows[0] == rows[1]
    assert rows[0]["decision"] == "error" and rows[0]["candidate_id"] == "record 1"
    shallow = '{"candidate_id": "D", "x": ' + "[" * 300 + "]" * 300 + "}"  # refused by the model, read by json
    assert screen_one(shallow, screening.load_ruleset())["candidate_id"] == "D"
    from click.testing import CliRunner

    import cli

    lines = [json.dumps(base_record(candidate_id=f"C-{i}")) for i in range(900)]
    for at in (5, 450, 880):
        lines.insert(at, text)
    source = tmp_path / "deep.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = [CliRunner().invoke(cli.main, ["screen", str(source), "--format", "jsonl", "--workers", workers]).stdout
               for workers in ("1", "2")]
    assert outputs[0] == outputs[1]
