"""One test per value-set entry: each drug term, code and tumour-site term classes a record.

Every entry of ``rules/nlc-k2/valuesets/drug-classes.yaml`` and ``tumor-sites.yaml`` is screened through the
real pipeline (``screen_one``), on a clean eligible record carrying that one medicine (taken inside
the look-back) or that one tumour site: the derived fact puts it in its class, the criterion that
tests the class moves off its default, and its reason names the medicine or the site.

The cases are the union of the YAML's entries (a new entry gets its test at once) and the snapshot
below (so deleting an entry from the YAML fails that entry's test, by name, instead of silently
removing it). ``test_the_snapshot_matches_the_value_sets`` says what to copy here after a deliberate
change to the value sets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import screening
from screening.facts import derive
from screening.protocol import RANKING, Condition, DrugClass, rules_dir, words
from screening.record import parse_record
from screening.screen import screen_one

from .conftest import base_record

VALUESETS = rules_dir() / "nlc-k2" / "valuesets"

# A snapshot of the value sets' entries (rules/nlc-k2/valuesets/*.yaml, version 1.0.0).
DRUG_ENTRIES: dict[str, dict[str, tuple[str, ...]]] = {
    'diuretic': {
        'names': ('thiazide', 'thiazides', 'loop diuretic', 'loop diuretics', 'bendroflumethiazide',
            'hydroflumethiazide', 'hydrochlorothiazide', 'chlorothiazide', 'polythiazide', 'trichlormethiazide',
            'cyclopenthiazide', 'methyclothiazide', 'cyclothiazide', 'mebutizide', 'quinethazone', 'clopamide',
            'chlortalidone', 'chlorthalidone', 'mefruside', 'clofenamide', 'metolazone', 'meticrane', 'xipamide',
            'indapamide', 'clorexolone', 'fenquizone', 'mersalyl', 'theobromine', 'cicletanine', 'furosemide',
            'bumetanide', 'piretanide', 'torasemide', 'torsemide', 'etacrynic acid', 'ethacrynic acid',
            'tienilic acid', 'muzolimine', 'etozolin', 'spironolactone', 'potassium canrenoate', 'canrenoate',
            'canrenone', 'eplerenone', 'finerenone', 'amiloride', 'triamterene', 'tolvaptan', 'conivaptan',
            'frusemide', 'bendrofluazide', 'ethacrynate', 'ticrynafen', 'hctz', 'lasix', 'bumex', 'demadex',
            'microzide', 'hygroton', 'zaroxolyn', 'aldactone', 'aldactazide', 'inspra', 'kerendia', 'dyazide',
            'maxzide', 'moduretic', 'edecrin', 'samsca', '呋塞米', '速尿', '托拉塞米', '布美他尼', '氢氯噻嗪', '双氢克尿噻', '吲达帕胺', '氯噻酮',
            '美托拉宗', '螺内酯', '安体舒通', '依普利酮', '非奈利酮', '阿米洛利', '氨苯蝶啶', '托伐普坦', '复方利血平氨苯蝶啶片', '降压0号', '复方利血平',),
        'atc': ('C03', 'C03AA01', 'C03AA02', 'C03AA03', 'C03AA04', 'C03AA05', 'C03AA06', 'C03AA07', 'C03AA08',
            'C03AA09', 'C03AA13', 'C03AB', 'C03AH', 'C03AX', 'C03AX01', 'C03BA02', 'C03BA03', 'C03BA04', 'C03BA05',
            'C03BA07', 'C03BA08', 'C03BA09', 'C03BA10', 'C03BA11', 'C03BA12', 'C03BA13', 'C03BB', 'C03BC', 'C03BD',
            'C03BK', 'C03BX', 'C03CA01', 'C03CA02', 'C03CA03', 'C03CA04', 'C03CB', 'C03CC01', 'C03CC02', 'C03CD',
            'C03CX', 'C03DA01', 'C03DA02', 'C03DA03', 'C03DA04', 'C03DA05', 'C03DA54', 'C03DB01', 'C03DB02', 'C03EA',
            'C03EA01', 'C03EA06', 'C03EB', 'C03EB01', 'C03EB02', 'C03EB03', 'C03XA01', 'C03XA02', 'C02L', 'C02LA01',
            'C02LA51', 'C02LC01', 'C02LG02', 'C07B', 'C07C', 'C07D', 'C08GA', 'C08GA01', 'C08GA02', 'C09BA',
            'C09BX01', 'C09BX03', 'C09BX06', 'C09DA', 'C09DX01', 'C09DX03', 'C09DX06', 'C09DX07', 'C09DX08',
            'C09DX09', 'C09XA52', 'C09XA54', 'C10BX13',),
        'rxnorm': ('4603', '1808', '38413', '9997', '298869', '4109', '5487', '2409', '5764', '6916', '316049',
            '316052', '315971', '1719286',),
    },
    'diuretic_review': {
        'names': ('acetazolamide', 'mannitol', '乙酰唑胺', '甘露醇', 'diuretic', 'diuretics', '利尿剂',),
        'atc': ('S01EC01', 'B05BC01',),
    },
    'vka': {
        'names': ('warfarin', 'acenocoumarol', 'phenprocoumon', 'fluindione', 'dicoumarol', 'phenindione',
            'ethyl biscoumacetate', 'clorindione', 'diphenadione', 'tioclomarol', 'vitamin k antagonist',
            'vitamin k antagonists', 'dicumarol', 'acenocoumarin', 'vka', 'coumadin', 'jantoven', 'marcoumar',
            'sintrom', 'previscan', '华法林', '醋硝香豆素',),
        'atc': ('B01AA', 'B01AA01', 'B01AA02', 'B01AA03', 'B01AA04', 'B01AA07', 'B01AA08', 'B01AA09', 'B01AA10',
            'B01AA11', 'B01AA12',),
        'rxnorm': ('11289', '855332',),
        'names_exclude': ('non-vka', 'non-vitamin k antagonist',),
    },
    'vitamin_k2': {
        'names': ('k2', 'k₂', 'menaquinone', 'menaquinone-7', 'mk-7', 'mk 7', 'mk-4', 'menatetrenone', 'vitamin k2',
            '维生素k2', '甲萘醌-7', 'mk7', 'mk4', 'vitamin k-2', 'vitamin k₂', '四烯甲萘醌',),
        'atc': ('M05BX08',),
    },
    'vitamin_k_other': {
        'names': ('phytomenadione', 'phytonadione', 'vitamin k1', 'menadione', 'vitamin k3', 'vit k', 'vitamin k',
            'phylloquinone', 'konakion', 'mephyton', '维生素k1', '维生素k3',),
        'atc': ('B02BA01', 'B02BA02',),
        'names_exclude': ('vitamin k antagonist', 'vitamin k antagonists',),
    },
}
SITE_ENTRIES: dict[str, tuple[str, ...]] = {
    'registry_listed': ('breast', 'prostate', 'lymphoma', 'hodgkin', 'non-hodgkin', 'myeloma', 'multiple myeloma', 'lymphomas', 'hodgkins', 'prostatic', '乳腺', '前列腺', '淋巴瘤', '骨髓瘤', '霍奇金'),
}

DRUG_FIELDS = ("names", "atc", "rxnorm", "names_exclude", "atc_exclude")
#: Inside the look-back of paper-2024 for base_record (D0 2023-03-01, planned enrollment 2023-03-15,
#: look-back from 2023-01-15): last taken 2023-02-20.
TAKEN = {"start_date": "2022-12-01", "stop_date": "2023-02-20"}


def _yaml_drug_entries() -> dict[str, dict[str, tuple[str, ...]]]:
    data = yaml.safe_load((VALUESETS / "drug-classes.yaml").read_text(encoding="utf-8"))
    return {cls: {f: tuple(str(v) for v in raw.get(f) or []) for f in DRUG_FIELDS if raw.get(f)}
            for cls, raw in data["classes"].items()}


def _yaml_site_entries() -> dict[str, tuple[str, ...]]:
    data = yaml.safe_load((VALUESETS / "tumor-sites.yaml").read_text(encoding="utf-8"))
    return {name: tuple(raw["names"]) for name, raw in data["sites"].items()}


def _drug_cases() -> list[Any]:
    cases: dict[tuple[str, str, str], None] = {}
    for source in (DRUG_ENTRIES, _yaml_drug_entries()):
        for cls, fields in source.items():
            for fld, values in fields.items():
                for value in values:
                    cases[(cls, fld, value)] = None
    return [pytest.param(*case, id="-".join(case)) for case in cases]


def _site_cases() -> list[Any]:
    cases: dict[tuple[str, str], None] = {}
    for source in (SITE_ENTRIES, _yaml_site_entries()):
        for name, values in source.items():
            for value in values:
                cases[(name, value)] = None
    return [pytest.param(*case, id="-".join(case)) for case in cases]


def _tests_value(cond: Condition, fact: str, value: str) -> bool:
    """Whether a condition tree holds a test of ``fact`` that ``value`` passes."""
    if cond[0] in ("all", "any"):
        return any(_tests_value(c, fact, value) for c in cond[1])
    _, name, op, operand = cond
    return name == fact and ((op == "eq" and operand == value) or (op == "in" and value in operand))


def _expected(ruleset: screening.Ruleset, fact: str, value: str) -> tuple[str, str]:
    """(criterion, status) for a fact taking ``value``: the best-ranked rule that tests it."""
    found = [(cid, rule.status) for cid, rule in ruleset.flat_rules if _tests_value(rule.when, fact, value)]
    assert found, f"no rule of {ruleset.name} tests {fact} = {value}"
    cid = found[0][0]
    ranking = RANKING[ruleset.criteria[cid].kind]
    return cid, min((s for c, s in found if c == cid), key=ranking.index)


def _in_loaded_class(cls: DrugClass, fld: str, value: str) -> bool:
    if fld in ("names", "names_exclude"):
        latin = cls.names if fld == "names" else cls.names_exclude
        return words(value) in latin or value.lower() in (cls.cjk_names if fld == "names" else ())
    if fld in ("atc", "atc_exclude"):
        return value.upper() in (cls.atc if fld == "atc" else cls.atc_exclude)
    return value in cls.rxnorm


def _medication(fld: str, value: str) -> dict[str, Any]:
    if fld in ("names", "names_exclude"):
        return {"name": value, **TAKEN}
    return {"name": f"coded entry {value}", fld.removesuffix("_exclude"): value, **TAKEN}


def _facts(record: dict[str, Any], ruleset: screening.Ruleset) -> dict[str, Any]:
    return derive(parse_record(json.dumps(record)), ruleset).facts


@pytest.mark.parametrize("cls, fld, value", _drug_cases())
def test_each_drug_entry_classes_a_medicine_and_is_named_in_the_reason(
        paper: screening.Ruleset, cls: str, fld: str, value: str) -> None:
    drug_class = paper.drug_classes.get(cls)
    assert drug_class is not None, f"drug class {cls} is gone from drug-classes.yaml"
    assert _in_loaded_class(drug_class, fld, value), f"{fld} entry {value!r} is gone from class {cls}"
    medication = _medication(fld, value)
    record = base_record(medications=[medication])
    facts = _facts(record, paper)
    if fld.endswith("_exclude"):
        # A veto: the medicine would match the class but for this entry.
        if fld == "names_exclude":
            seq = words(value)
            assert any(seq[i:i + len(t)] == t for t in drug_class.names for i in range(len(seq))), \
                f"{value!r} matches no term of {cls}, so its veto is never needed"
        assert facts[f"exp_{cls}"] == "none"
        return
    assert facts[f"exp_{cls}"] == "inside"
    cid, status = _expected(paper, f"exp_{cls}", "inside")
    row = screen_one(record, paper)
    result = row["criteria"][cid]
    assert result["status"] == status != paper.criteria[cid].default.status, result
    assert f"({medication['name']})" in result["reason"], result


@pytest.mark.parametrize("site_list, term", _site_cases())
def test_each_tumour_site_term_lists_a_site_and_is_named_in_the_reason(
        registry: screening.Ruleset, site_list: str, term: str) -> None:
    sites = registry.site_lists.get(site_list)
    assert sites is not None, f"site list {site_list} is gone from tumor-sites.yaml"
    assert words(term) in sites.names or term.lower() in sites.cjk_names, f"{term!r} is gone from {site_list}"
    conditions = {**base_record()["conditions"], "malignant_tumor": "active", "malignant_tumor_site": term}
    record = base_record(conditions=conditions)
    assert _facts(record, registry)[f"tumor_site_{site_list}"] == "listed"
    cid, status = _expected(registry, f"tumor_site_{site_list}", "listed")
    row = screen_one(record, registry)
    result = row["criteria"][cid]
    assert result["status"] == status != registry.criteria[cid].default.status, result
    assert term in result["reason"], result
    assert row["decision"] == "excluded"


def test_a_medicine_and_a_site_in_no_list_change_nothing(paper: screening.Ruleset,
                                                         registry: screening.Ruleset) -> None:
    """The controls: without a listed entry the same record is eligible, so the tests above can fail."""
    record = base_record(medications=[{"name": "amlodipine", "atc": "C08CA01", "rxnorm": "17767", **TAKEN}])
    facts = _facts(record, paper)
    assert all(facts[f"exp_{cls}"] == "none" for cls in paper.drug_classes)
    assert screen_one(record, paper)["decision"] == "eligible"
    conditions = {**base_record()["conditions"], "malignant_tumor": "active", "malignant_tumor_site": "colon"}
    record = base_record(conditions=conditions)
    assert all(v == "other" for k, v in _facts(record, registry).items() if k.startswith("tumor_site_"))
    row = screen_one(record, registry)
    assert row["decision"] == "eligible" and row["criteria"]["E12"]["status"] == "not_met"


def test_the_snapshot_matches_the_value_sets() -> None:
    """After a deliberate change to a value set, copy its entries into the snapshot above."""
    assert _yaml_drug_entries() == DRUG_ENTRIES
    assert _yaml_site_entries() == SITE_ENTRIES
