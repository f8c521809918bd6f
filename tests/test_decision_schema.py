"""The decision row's published JSON Schema (``nlc-screen schema --decision``) describes every row
``screen`` writes: decisions, error rows, rows with the record and with a second criteria set's
check, for the Figure 1 cohort and every golden case, under each shipped set. And it is not a
rubber stamp: a row with a category, stamp or status the set does not know fails it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

import cli
import screening
from screening.decision_row import DecisionRow, ErrorRow, decision_json_schema

from .conftest import FIXTURES

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"
CASES = sorted((FIXTURES / "cases").glob("*.json"))
SETS = ("paper-2024", "registry-2023")


def _invoke(args: list[str], stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli.main, args, input=stdin, catch_exceptions=False)
    assert result.exit_code in (0, 3), (result.exit_code, result.output)
    return result.stdout


def _screen(path: Path | str, *args: str, stdin: str | None = None) -> list[dict[str, Any]]:
    out = _invoke(["screen", str(path), "--format", "jsonl", *args], stdin)
    return [json.loads(line) for line in out.splitlines()]


def _schema(rules: str) -> dict[str, Any]:
    """What ``nlc-screen schema --decision --rules NAME`` prints."""
    return json.loads(_invoke(["schema", "--decision", "--rules", rules]))


def _validator(rules: str) -> jsonschema.Draft202012Validator:
    schema = _schema(rules)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _assert_valid(validator: jsonschema.Draft202012Validator, rows: list[dict[str, Any]]) -> None:
    for index, row in enumerate(rows):
        errors = sorted(validator.iter_errors(row), key=lambda e: list(e.absolute_path))
        assert not errors, (index, row.get("candidate_id"), [(list(e.absolute_path), e.message[:200]) for e in errors])


def _golden_lines() -> list[str]:
    lines = []
    for path in CASES:
        case = json.loads(path.read_text(encoding="utf-8"))
        text = case["record_text"] if "record_text" in case else json.dumps(case["record"], ensure_ascii=False)
        assert "\n" not in text and "\r" not in text, path
        lines.append(text)
    return lines


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft202012Validator]:
    return {name: _validator(name) for name in SETS}


def test_schema_command_prints_a_draft_2020_12_schema_named_for_the_set() -> None:
    schema = _schema("paper-2024")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "paper-2024" in schema["title"]
    # plain `schema` still prints the intake record's schema, unchanged
    assert json.loads(_invoke(["schema"])) == screening.record_json_schema()


@pytest.mark.parametrize("rules", SETS)
def test_the_schema_enumerates_the_sets_categories_and_criteria(rules: str) -> None:
    ruleset = screening.load_ruleset(rules)
    schema = decision_json_schema(ruleset)
    assert schema == _schema(rules)
    row = schema["$defs"]["DecisionRow"]["properties"]
    assert row["category"]["enum"] == list(ruleset.consort["categories"])
    subs = [s for box in ruleset.consort["subcategories"].values() for s in box]
    assert row["subcategory"]["anyOf"][0]["enum"] == subs
    assert row["primary_criterion"]["enum"] == list(ruleset.precedence)
    assert list(row["criteria"]["properties"]) == list(ruleset.precedence)
    assert row["criteria"]["required"] == list(ruleset.precedence)
    # every field has a description: the schema is documentation too
    for name in ("DecisionRow", "ErrorRow", "CriterionResult", "RulesetStamp"):
        for field, spec in schema["$defs"][name]["properties"].items():
            assert spec.get("description"), (name, field)


@pytest.mark.parametrize("rules", SETS)
def test_every_figure1_row_validates(validators: dict[str, jsonschema.Draft202012Validator], rules: str) -> None:
    rows = _screen(FIGURE1, "--rules", rules)
    assert len(rows) == 310
    _assert_valid(validators[rules], rows)


@pytest.mark.parametrize("rules", SETS)
def test_figure1_rows_with_record_and_compare_with_validate(
        validators: dict[str, jsonschema.Draft202012Validator], rules: str) -> None:
    other = SETS[1 - SETS.index(rules)]
    rows = _screen(FIGURE1, "--rules", rules, "--include-record", "--compare-with", other)
    assert len(rows) == 310
    assert any("criteria_set_check" in r for r in rows) and all("record" in r for r in rows)
    _assert_valid(validators[rules], rows)


@pytest.mark.parametrize("rules", SETS)
def test_every_golden_case_row_validates(validators: dict[str, jsonschema.Draft202012Validator], rules: str,
                                         tmp_path: Path) -> None:
    lines = _golden_lines()
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    other = SETS[1 - SETS.index(rules)]
    for args in ([], ["--include-record", "--compare-with", other]):
        rows = _screen(path, "--rules", rules, "--input-format", "jsonl", *args)
        assert len(rows) == len(lines) == len(CASES)
        kinds = {r["decision"] for r in rows}
        assert {"eligible", "excluded", "undetermined", "error"} <= kinds
        assert any(r.get("warnings") for r in rows)  # duplicate ids across cases, planned enrollment dates
        _assert_valid(validators[rules], rows)


def test_error_rows_validate(validators: dict[str, jsonschema.Draft202012Validator]) -> None:
    text = ('{"candidate_id":"X1","screening_start":"2023-02-30","birthdate":"1950-01-01"}\n[1,2]\nnot json\n'
            '{"candidate_id":"X1","screening_start":"2023-02-30"}\n')
    rows = _screen("-", "--input-format", "jsonl", stdin=text)
    assert [r["decision"] for r in rows] == ["error"] * 4
    assert rows[3]["warnings"]  # a second record for X1
    _assert_valid(validators["paper-2024"], rows)


# --- it rejects what the set would never write --------------------------------------------------


@pytest.fixture(scope="module")
def rows() -> dict[str, dict[str, Any]]:
    got = _screen(FIGURE1, "--include-record", "--compare-with", "registry-2023")
    by_kind: dict[str, dict[str, Any]] = {}
    for row in got:
        by_kind.setdefault(row["decision"], row)
        if "criteria_set_check" in row:
            by_kind.setdefault("checked", row)
    error = _screen("-", "--input-format", "jsonl", stdin="[1]\n")[0]
    by_kind["error"] = error
    return by_kind


def _fails(validator: jsonschema.Draft202012Validator, row: dict[str, Any]) -> bool:
    return not validator.is_valid(row)


def test_the_unchanged_rows_pass(validators: dict[str, jsonschema.Draft202012Validator],
                                 rows: dict[str, dict[str, Any]]) -> None:
    assert set(rows) >= {"eligible", "excluded", "checked", "error"}
    for row in rows.values():
        assert validators["paper-2024"].is_valid(row)


@pytest.mark.parametrize("kind", ["eligible", "excluded", "error"])
def test_unknown_category_fails(validators: dict[str, jsonschema.Draft202012Validator],
                                rows: dict[str, dict[str, Any]], kind: str) -> None:
    row = copy.deepcopy(rows[kind])
    row["category"] = "not_a_box"
    assert _fails(validators["paper-2024"], row)


def test_unknown_subcategory_or_criterion_fails(validators: dict[str, jsonschema.Draft202012Validator],
                                                rows: dict[str, dict[str, Any]]) -> None:
    v = validators["paper-2024"]
    row = copy.deepcopy(rows["excluded"])
    row["subcategory"] = "not_a_sub_box"
    assert _fails(v, row)
    row = copy.deepcopy(rows["excluded"])
    row["primary_criterion"] = "E99"
    assert _fails(v, row)
    row = copy.deepcopy(rows["eligible"])
    row["criteria"]["E99"] = {"status": "met", "reason": "forged"}
    assert _fails(v, row)
    row = copy.deepcopy(rows["eligible"])
    del row["criteria"]["I1"]
    assert _fails(v, row)
    row = copy.deepcopy(rows["checked"])
    row["criteria_set_check"]["differs_on"] = ["E99"]
    assert _fails(v, row)


@pytest.mark.parametrize("kind", ["eligible", "excluded", "error"])
def test_missing_ruleset_stamp_fails(validators: dict[str, jsonschema.Draft202012Validator],
                                     rows: dict[str, dict[str, Any]], kind: str) -> None:
    row = copy.deepcopy(rows[kind])
    del row["ruleset"]
    assert _fails(validators["paper-2024"], row)
    row = copy.deepcopy(rows[kind])
    del row["ruleset"]["sha256"]
    assert _fails(validators["paper-2024"], row)


def test_a_row_stamped_by_another_set_fails(validators: dict[str, jsonschema.Draft202012Validator],
                                            rows: dict[str, dict[str, Any]]) -> None:
    row = copy.deepcopy(rows["eligible"])
    row["ruleset"] = screening.load_ruleset("registry-2023").stamp
    assert _fails(validators["paper-2024"], row)
    row = copy.deepcopy(rows["eligible"])
    row["ruleset"]["sha256"] = "0" * 64
    assert _fails(validators["paper-2024"], row)


@pytest.mark.parametrize("status", ["excluded", "yes", "", None, "MET"])
def test_status_outside_the_four_fails(validators: dict[str, jsonschema.Draft202012Validator],
                                       rows: dict[str, dict[str, Any]], status: Any) -> None:
    row = copy.deepcopy(rows["eligible"])
    row["criteria"]["I1"]["status"] = status
    assert _fails(validators["paper-2024"], row)


def test_impossible_combinations_fail(validators: dict[str, jsonschema.Draft202012Validator],
                                      rows: dict[str, dict[str, Any]]) -> None:
    v = validators["paper-2024"]
    row = copy.deepcopy(rows["eligible"])
    row["decision"] = "excluded"  # excluded, but in the randomized box
    assert _fails(v, row)
    row = copy.deepcopy(rows["excluded"])
    row["primary_criterion"] = "I4"  # an exclusion box decided by consent
    assert _fails(v, row)
    row = copy.deepcopy(rows["eligible"])
    row["category"] = "error"
    assert _fails(v, row)
    row = copy.deepcopy(rows["error"])
    row["decision"] = "eligible"
    assert _fails(v, row)
    row = copy.deepcopy(rows["eligible"])
    row["extra_field"] = 1
    assert _fails(v, row)


def test_the_models_read_the_rows(rows: dict[str, dict[str, Any]]) -> None:
    for kind in ("eligible", "excluded", "undetermined", "checked"):
        if kind in rows:
            model = DecisionRow.model_validate(rows[kind])
            assert model.model_dump(mode="json", exclude_unset=True) == rows[kind]
    error = ErrorRow.model_validate(rows["error"])
    assert error.model_dump(mode="json", exclude_unset=True) == rows["error"]
