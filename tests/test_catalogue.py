"""The catalogue of facts (what rules may test) and ``facts.derive`` (what records produce) agree.

The catalogue is made from the pack's ``facts.yaml`` (``Ruleset.catalogue``): every fact a rule may
name, with its kind and values, so that a misspelt fact fails when a set loads. That only protects anything if ``derive`` produces exactly
those facts, with values of those kinds: checked here for both shipped sets, on a full record and
on every record of the fixtures.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator

import pytest

import screening
from screening.derivations import FactType
from screening.errors import CandidateRecordError
from screening.facts import Derived, derive
from screening.record import CandidateRecord, parse_record

from .conftest import FIXTURES, base_record

SETS = ["paper-2024", "registry-2023"]


def _full_record(ruleset: screening.Ruleset) -> CandidateRecord:
    """A record with every field known: a tumour site, and one medicine of each drug class."""
    conditions = {**base_record()["conditions"], "malignant_tumor": "history", "malignant_tumor_site": "breast",
                  "liver_cirrhosis_ascites_paracentesis": False}
    medications = [{"name": " ".join(cls.names[0]) + " 1 mg", "start_date": "2023-01-01", "ongoing": True}
                   for cls in ruleset.drug_classes.values()]
    record = base_record(conditions=conditions, medications=medications, enrollment_date="2023-03-20")
    return parse_record(json.dumps(record))


def _fixture_records() -> Iterator[CandidateRecord]:
    for line in (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8").splitlines():
        yield parse_record(line)
    for path in sorted((FIXTURES / "cases").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8")).get("record")
        if isinstance(raw, dict):
            try:
                yield parse_record(json.dumps(raw))
            except CandidateRecordError:
                continue  # a malformed case: it never reaches derive


def _check_kinds(derived: Derived, types: dict[str, FactType], where: str) -> None:
    for name, value in derived.facts.items():
        assert name in types, f"{where}: derive() produced {name!r}, which the catalogue does not list"
        ftype = types[name]
        if ftype.kind == "int":
            assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {name} = {value!r} is not a number"
        else:
            assert value in ftype.values, f"{where}: {name} = {value!r} is not one of {ftype.values}"
    for name, ftype in types.items():
        if ftype.kind == "enum":  # an unknown enum fact says "unknown"; only number facts may be absent
            assert name in derived.facts, f"{where}: enum fact {name!r} is missing"


@pytest.mark.parametrize("name", SETS)
def test_a_full_record_yields_exactly_the_catalogued_facts(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    types = ruleset.fact_types()
    derived = derive(_full_record(ruleset), ruleset)
    assert set(derived.facts) == set(types)
    _check_kinds(derived, types, "full record")
    for cls in ruleset.drug_classes:
        assert derived.facts[f"exp_{cls}"] == "inside", cls  # the full record really has every class
    quotable = ruleset.catalogue.quotes - set(ruleset.parameters)
    missing = (quotable | ruleset.catalogue.lists) - set(derived.context)
    assert not missing, f"the catalogue lets reasons quote {sorted(missing)}, which derive() never sets"


@pytest.mark.parametrize("name", SETS)
def test_every_fixture_record_yields_only_catalogued_facts_of_the_right_kind(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    types = ruleset.fact_types()
    count = 0
    for count, record in enumerate(_fixture_records(), 1):
        try:
            derived = derive(record, ruleset)
        except CandidateRecordError:
            continue  # dates that contradict the set's diary length: an error row, no facts
        _check_kinds(derived, types, record.candidate_id)
    assert count > 400


@pytest.mark.parametrize("name", SETS)
def test_every_reason_placeholder_is_filled_for_a_full_record(name: str) -> None:
    """The loader checks placeholders against the catalogue; derive() must then supply them."""
    ruleset = screening.load_ruleset(name)
    derived = derive(_full_record(ruleset), ruleset)
    known = set(derived.facts) | set(derived.context) | set(ruleset.parameters)
    for crit in ruleset.ordered:
        for text in [crit.default.reason] + [rule.reason for rule in crit.rules]:
            names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
            assert names <= known, f"{crit.id}: {sorted(names - known)}"


def test_the_catalogue_follows_the_value_sets(paper: screening.Ruleset, registry: screening.Ruleset) -> None:
    """Facts per drug class and site list come from the set's value sets, not from a fixed list."""
    for ruleset in (paper, registry):
        types = ruleset.fact_types()
        assert {n[4:] for n in types if n.startswith("exp_")} == set(ruleset.drug_classes)
        assert {n[11:] for n in types if n.startswith("tumor_site_")} == set(ruleset.site_lists)
