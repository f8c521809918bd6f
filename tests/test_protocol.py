"""Loading criteria sets: validation errors name the file, the criterion and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import screening
from screening.errors import RuleDefinitionError, RulesetNotFound
from screening.protocol import load_ruleset, rules_dir

from .conftest import copy_record_files


def _variant(tmp_path: Path, edit) -> Path:
    """A copy of paper-2024 (with its value sets) after ``edit(data)``."""
    src = rules_dir() / "nlc-k2"
    data = yaml.safe_load((src / "paper-2024.yaml").read_text(encoding="utf-8"))
    edit(data)
    (tmp_path / "valuesets").mkdir()
    for f in (src / "valuesets").glob("*.yaml"):
        (tmp_path / "valuesets" / f.name).write_bytes(f.read_bytes())
    copy_record_files(src, tmp_path)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _criterion(data: dict, cid: str) -> dict:
    return next(c for c in data["criteria"] if c["id"] == cid)


def test_shipped_sets_load_and_are_stamped() -> None:
    sets = screening.available_rulesets()
    assert {"nlc-k2/paper-2024", "nlc-k2/registry-2023"} <= set(sets)
    for name in ("paper-2024", "registry-2023"):
        rs = load_ruleset(name)
        assert rs.stamp["name"] == name and len(rs.stamp["sha256"]) == 64
        assert list(rs.precedence) == ["I1"] + [f"E{i}" for i in range(1, 16)] + ["I3", "I2", "I4"]
    assert load_ruleset("paper-2024").sha256 != load_ruleset("registry-2023").sha256


def test_name_at_version_and_unknown_names() -> None:
    assert load_ruleset("paper-2024@1.0.0").version == "1.0.0"
    with pytest.raises(RulesetNotFound, match="did you mean 'paper-2024'"):
        load_ruleset("paper-2042")
    with pytest.raises(RulesetNotFound, match="no version '9.9.9'"):
        load_ruleset("paper-2024@9.9.9")


def test_misspelt_fact_is_caught_with_a_suggestion(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        _criterion(data, "I1")["rules"][0]["when"] = {"age_yaers": {"known": False}}
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_variant(tmp_path, edit))
    msg = str(info.value)
    assert "criterion I1" in msg and "rules[0].when" in msg and "did you mean 'age_years'" in msg
    assert "variant.yaml" in msg


def test_unknown_criterion_field_is_caught(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        _criterion(data, "E8")["subcategroy"] = "secondary_cause"
    with pytest.raises(RuleDefinitionError, match=r"criterion E8, field 'subcategroy': unknown field .*did you mean 'subcategory'"):
        load_ruleset(_variant(tmp_path, edit))


@pytest.mark.parametrize("edit, needle", [
    (lambda d: _criterion(d, "I1")["rules"][2].update(when={"age_years": {"lt": "65"}}), "is a number"),
    (lambda d: _criterion(d, "I4")["rules"][0].update(when={"consent": {"in": ["declned"]}}), "did you mean 'declined'"),
    (lambda d: _criterion(d, "I4")["rules"][0].update(status="maybe"), "must be one of met"),
    (lambda d: _criterion(d, "I1").update(category="not_meeting_inclusoin"), "did you mean 'not_meeting_inclusion'"),
    (lambda d: _criterion(d, "I1")["rules"][0].update(reason={"en": "age {age_yrs}", "zh": "年龄 {age_years}"}),
     "unknown placeholder {age_yrs}"),
    (lambda d: _criterion(d, "I1").update(ask=["birthdate"]), "did you mean 'birth_date'"),
    (lambda d: d["precedence"].remove("E7"), "missing: ['E7']"),
    (lambda d: d["parameters"].update(attribution_mode="investigator"), "record v1 lacks"),
    (lambda d: d["parameters"].update(lookback="fortnight"), "parameters.lookback"),
    (lambda d: _criterion(d, "I1").update(default={"status": "not_met", "reason": {"en": "x", "zh": "x"}}),
     "default of an inclusion"),
    (lambda d: _criterion(d, "I1")["rules"][0].update(when={"age_years": {"between": 3}}), "unknown operator 'between'"),
    (lambda d: _criterion(d, "E1").update(template={"name": "condition_presense", "key": "x", "label": "y"}),
     "did you mean 'condition_presence'"),
    (lambda d: d["templates"]["condition_presence"].update(rulez=d["templates"]["condition_presence"].pop("rules")),
     "templates.condition_presence.rulez': unknown field"),
])
def test_invalid_rules_are_rejected_with_the_place(tmp_path: Path, edit, needle: str) -> None:
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_variant(tmp_path, edit))
    assert needle in str(info.value)
    assert "variant.yaml" in str(info.value)


def test_bad_value_set_names_its_file(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: None)
    vs = tmp_path / "valuesets" / "drug-classes.yaml"
    data = yaml.safe_load(vs.read_text(encoding="utf-8"))
    data["classes"]["vka"]["atc"].append("B01AA0X3")
    vs.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"drug-classes.yaml.*classes.vka.atc.*not an ATC code"):
        load_ruleset(path)


def test_sha256_covers_the_value_sets(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: None)
    before = load_ruleset(path).sha256
    vs = tmp_path / "valuesets" / "tumor-sites.yaml"
    vs.write_text(vs.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    import os
    later = os.path.getmtime(vs) + 5
    os.utime(vs, (later, later))  # only the value set changed: the cache must notice
    assert load_ruleset(path).sha256 != before


def test_condition_codes_are_loaded_for_importers(paper: screening.Ruleset) -> None:
    codes = paper.condition_codes
    assert codes["parkinson_disease"]["record_field"] == "conditions.parkinson_disease"
    assert any(c["code"] == "49049000" for c in codes["parkinson_disease"]["snomed"])
    assert "rules/nlc-k2/valuesets/condition-codes.yaml" in paper.files


def test_a_condition_code_mapping_to_an_unknown_record_field_is_rejected(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: None)
    vs = tmp_path / "valuesets" / "condition-codes.yaml"
    data = yaml.safe_load(vs.read_text(encoding="utf-8"))
    data["conditions"]["hypothyroidism"]["record_field"] = "conditions.hypothyroid"
    vs.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"condition-codes.yaml.*did you mean 'conditions.hypothyroidism'"):
        load_ruleset(path)
