"""Issue 11, rules loader: what outside runs fed ``load_ruleset`` is refused at load time.

Each test here failed before its fix: an alias bomb hung ``rules --check``; a value-set path to a
FIFO or ``/dev/zero`` was read without limit; absurd parameters loaded and then made every record an
error row; a duplicate YAML key silently won; a set without a procedural criterion sent declined
candidates to "randomized". Wrong types (``categories: 5``, ``ask: [[birth_date]]``, …) gave
tracebacks or were accepted; a template could expand an 800 KB file into 40 GB; a line break in a label
forged a line of the audit report and an escape in a title reached the terminal. Every refusal is a
RuleDefinitionError naming the file and the field.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from screening.conditions import PythonEvaluator
from screening.errors import RuleDefinitionError, RulesetNotFound
from screening.io import Item
from screening.protocol import MAX_RULES_FILE_BYTES, load_ruleset, rules_dir
from screening.screen import Screener

from .conftest import FIXTURES, copy_record_files

PACK = rules_dir() / "nlc-k2"
SHIPPED = PACK / "paper-2024.yaml"
#: The text the loader's defences are tried on: the released paper-2024 1.1.0 (English only, so that
#: an edit of a title or reason is one line); the bilingual current set is fuzzed and loaded too.
BASE = PACK / "archive" / "paper-2024-1.1.0" / "paper-2024.yaml"
#: The whole-number parameters the pack declares, and their ranges.
PARAMETER_BOUNDS = {name: (decl["min"], decl["max"])
                    for name, decl in load_ruleset("paper-2024").parameter_declarations.items() if decl["type"] == "int"}


def _copy_set(tmp_path: Path, text: str | None = None, name: str = "variant.yaml") -> Path:
    """paper-2024 (its text, or ``text``) with copies of its value sets, in ``tmp_path``."""
    (tmp_path / "valuesets").mkdir(exist_ok=True)
    for f in (PACK / "valuesets").glob("*.yaml"):
        (tmp_path / "valuesets" / f.name).write_bytes(f.read_bytes())
    copy_record_files(PACK, tmp_path)
    path = tmp_path / name
    path.write_text(BASE.read_text(encoding="utf-8") if text is None else text, encoding="utf-8")
    return path


def _edited(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """paper-2024 after a textual edit (for YAML features safe_dump would not write)."""
    original = BASE.read_text(encoding="utf-8")
    text = edit(original)
    assert text != original, "the edit did not apply"
    return _copy_set(tmp_path, text)


def _variant(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """paper-2024 after ``edit(data)`` on its parsed form."""
    data = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    edit(data)
    return _copy_set(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _refused(path: Path | str) -> str:
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(path)
    return str(info.value)


def _criterion(data: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in data["criteria"] if c["id"] == cid)


_TITLE = re.compile(r"^title: .*$", re.M)


# ---------------------------------------------------------------------------------------------
# 1. YAML aliases (the billion laughs), merge keys, nesting depth, file size


def test_an_alias_is_refused_naming_where_it_is_used(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: re.sub(r"^description: >\n(?:  .*\n)+", "description: *t\n",
                                              _TITLE.sub("title: &t Vitamin K2 trial", t, count=1), count=1, flags=re.M))
    msg = _refused(path)
    assert "variant.yaml" in msg and "alias" in msg and "'description'" in msg


@pytest.mark.timeout(60)  # a watchdog only: before the fix this hung while memory grew past 3 GB
def test_a_billion_laughs_in_the_title_is_refused_at_once(tmp_path: Path) -> None:
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = _edited(tmp_path, lambda t: _TITLE.sub(f"title: [{', '.join(levels)}]", t, count=1))
    msg = _refused(path)
    assert "variant.yaml" in msg and "alias" in msg and "title" in msg


def test_a_merge_key_is_refused(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: t.replace("  min_age_years: 65\n", "  <<: {min_age_years: 70}\n  min_age_years: 65\n", 1))
    msg = _refused(path)
    assert "variant.yaml" in msg and "merge key" in msg and "line" in msg


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: _TITLE.sub("title: " + "[" * 200 + "x" + "]" * 200, t, count=1))
    msg = _refused(path)
    assert "variant.yaml" in msg and "nested deeper than" in msg


def test_an_oversized_rules_file_is_refused(tmp_path: Path) -> None:
    padding = ("# " + "x" * 78 + "\n") * (MAX_RULES_FILE_BYTES // 80 + 1)
    path = _edited(tmp_path, lambda t: t + padding)
    msg = _refused(path)
    assert "variant.yaml" in msg and "larger than" in msg


def test_an_oversized_value_set_is_refused(tmp_path: Path) -> None:
    path = _copy_set(tmp_path)
    vs = tmp_path / "valuesets" / "tumor-sites.yaml"
    vs.write_text(vs.read_text(encoding="utf-8") + ("#" * 99 + "\n") * (MAX_RULES_FILE_BYTES // 100 + 1),
                  encoding="utf-8")
    msg = _refused(path)
    assert "tumor-sites.yaml" in msg and "larger than" in msg


def test_the_shipped_sets_use_no_anchors_and_still_load() -> None:
    shipped = sorted(rules_dir().rglob("*.yaml"))
    assert PACK / "pack.yaml" in shipped and SHIPPED in shipped
    for f in shipped:
        events = yaml.parse(f.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        assert not any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events), f
    for name in ("paper-2024", "registry-2023"):
        assert load_ruleset(name).name == name


# ---------------------------------------------------------------------------------------------
# 2. Value-set paths to what is not a regular file


def _fifo_with_writer(path: Path, payload: bytes) -> threading.Thread:
    """A FIFO whose writer sends ``payload`` to whoever opens it (as a hostile set would arrange)."""
    os.mkfifo(path)

    def write() -> None:
        try:
            with open(path, "wb") as out:
                out.write(payload)
        except OSError:
            pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _release(fifo: Path, thread: threading.Thread) -> None:
    """Let a writer still blocked in open() finish, so no thread outlives the test."""
    if thread.is_alive():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)


@pytest.mark.timeout(30)  # a watchdog: before the fix, reading a FIFO could block forever
def test_a_value_set_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    path = _copy_set(tmp_path)
    vs = tmp_path / "valuesets" / "drug-classes.yaml"
    payload = vs.read_bytes()
    vs.unlink()
    thread = _fifo_with_writer(vs, payload)
    try:
        msg = _refused(path)
    finally:
        _release(vs, thread)
    assert "drug-classes.yaml" in msg and "value_sets.drug_classes" in msg and "not a regular file" in msg


@pytest.mark.timeout(30)  # a watchdog: before the fix, /dev/zero was read until memory ran out
@pytest.mark.parametrize("target", ["symlink", "absolute", "directory"])
def test_a_value_set_that_is_a_device_or_a_directory_is_refused(tmp_path: Path, target: str) -> None:
    if target == "absolute":
        path = _edited(tmp_path, lambda t: t.replace("tumor_sites: valuesets/tumor-sites.yaml",
                                                     "tumor_sites: /dev/zero", 1))
    else:
        path = _copy_set(tmp_path)
        vs = tmp_path / "valuesets" / "tumor-sites.yaml"
        vs.unlink()
        if target == "symlink":
            vs.symlink_to("/dev/zero")
        else:
            vs.mkdir()
    msg = _refused(path)
    assert "value_sets.tumor_sites" in msg and "not a regular file" in msg


@pytest.mark.timeout(30)
def test_a_criteria_set_path_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "set.yaml"
    thread = _fifo_with_writer(fifo, SHIPPED.read_bytes())
    try:
        with pytest.raises((RulesetNotFound, RuleDefinitionError)) as info:
            load_ruleset(fifo)
    finally:
        _release(fifo, thread)
    assert "not a regular file" in str(info.value)


# ---------------------------------------------------------------------------------------------
# 3. Parameters out of range


@pytest.mark.parametrize("key, value", [
    ("lookback_months", 99999999999), ("lookback_months", 241), ("lookback_days", 7321),
    ("lookback_days", 10 ** 12), ("min_age_years", 131), ("diary_window_nights", 0),
    ("diary_window_nights", 367), ("min_episodes", 1001), ("enrollment_offset_days", 3661),
    ("enrollment_offset_days", -1),
])
def test_an_absurd_parameter_is_refused_naming_it(tmp_path: Path, key: str, value: int) -> None:
    msg = _refused(_variant(tmp_path, lambda d: d["parameters"].update({key: value})))
    assert "variant.yaml" in msg and f"parameters.{key}" in msg


def test_the_reported_lookback_no_longer_turns_records_into_error_rows(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda d: d["parameters"].update(lookback_months=99999999999))
    msg = _refused(path)
    assert "parameters.lookback_months" in msg and "0 … 240" in msg and "99999999999" not in msg


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["parameters"].update(study_window_start="2024-01-01", study_window_end="2023-12-31"),
     "parameters.study_window_end"),
    (lambda d: d["parameters"].pop("study_window_end"), "parameters.study_window_end"),
    (lambda d: d["parameters"].pop("study_window_start"), "parameters.study_window_start"),
    (lambda d: d["parameters"].update(enrollment_offset_days=13), "parameters.enrollment_offset_days"),
])
def test_parameters_that_contradict_each_other_are_refused(tmp_path: Path, edit, needle: str) -> None:
    msg = _refused(_variant(tmp_path, edit))
    assert "variant.yaml" in msg and needle in msg


def _at_bound(key: str, value: int) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        params = data["parameters"]
        params[key] = value
        if key == "lookback_days":
            params["lookback"] = "days"
        if key == "diary_window_nights":  # randomisation follows the diary
            params["enrollment_offset_days"] = max(params["enrollment_offset_days"], value)
        if key == "enrollment_offset_days":
            params["diary_window_nights"] = min(params["diary_window_nights"], value)
    return edit


def _figure1_items() -> list[Item]:
    lines = (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    return [Item(f"line {i}", line) for i, line in enumerate(lines, 1)]


@pytest.mark.parametrize("key, value", [(k, v) for k, bounds in PARAMETER_BOUNDS.items() for v in bounds])
def test_every_fixture_record_screens_at_every_parameter_bound(tmp_path: Path, key: str, value: int) -> None:
    """The bounds are safe: at each one, the 310 Figure 1 candidates all get decisions (a large
    enrollment offset only makes an actual enrollment_date too early, a record-level error)."""
    ruleset = load_ruleset(_variant(tmp_path, _at_bound(key, value)))
    screener = Screener(ruleset, evaluator=PythonEvaluator(ruleset))
    items = _figure1_items()
    rows = [screener.item(item) for item in items]
    assert len(rows) == len(items) == 310
    errors = [row for row in rows if row["decision"] == "error"]
    for row, item in zip(rows, items):
        if row["decision"] == "error":
            assert key in ("enrollment_offset_days", "diary_window_nights"), row["error"]
            assert row["error_fields"] == ["enrollment_date"], row["error"]
            assert "enrollment_date" in json.loads(item.text or "{}")
    if value == PARAMETER_BOUNDS[key][0] or key not in ("enrollment_offset_days", "diary_window_nights"):
        assert not errors


# ---------------------------------------------------------------------------------------------
# 4. Duplicate keys


@pytest.mark.parametrize("edit, key, second", [
    (lambda t: t.replace('version: "1.1.0"\n', 'version: "1.1.0"\nversion: "9.9.9"\n', 1), "version", 'version: "9.9.9"'),
    (lambda t: t.replace("  lookback_months: 2\n", "  lookback_months: 2\n  lookback_months: 6\n", 1),
     "lookback_months", "  lookback_months: 6"),
    (lambda t: t.replace("    title: Written informed consent\n",
                         "    title: Written informed consent\n    title: Consent\n", 1), "title", "    title: Consent"),
])
def test_a_duplicate_key_is_refused_naming_it_and_its_line(tmp_path: Path, edit, key: str, second: str) -> None:
    path = _edited(tmp_path, edit)
    line = path.read_text(encoding="utf-8").splitlines().index(second) + 1
    msg = _refused(path)
    assert "variant.yaml" in msg and f"duplicate key {key!r}" in msg and f"line {line}" in msg


def test_a_duplicate_drug_class_in_a_value_set_is_refused(tmp_path: Path) -> None:
    path = _copy_set(tmp_path)
    vs = tmp_path / "valuesets" / "drug-classes.yaml"
    vs.write_text(vs.read_text(encoding="utf-8") + "\n  vka:\n    names: [aspirin]\n", encoding="utf-8")
    msg = _refused(path)
    assert "drug-classes.yaml" in msg and "duplicate key 'vka'" in msg and "line" in msg


def test_numbers_and_booleans_that_collide_as_keys_are_duplicates(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: t.replace("sources:\n", "sources:\n  1: one\n  0x1: one again\n", 1))
    msg = _refused(path)
    assert "duplicate key" in msg


# ---------------------------------------------------------------------------------------------
# 5. What the decision logic needs: a procedural criterion that withdraws the declined


def _drop_i4(data: dict[str, Any]) -> None:
    data["criteria"] = [c for c in data["criteria"] if c["id"] != "I4"]
    data["precedence"].remove("I4")


def _i4_rules(rules: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    return lambda d: _criterion(d, "I4").update(rules=rules)


_DECLINED = {"status": "not_met", "when": {"consent": {"in": ["declined", "withdrawn"]}}, "reason": "consent {consent}"}
_PENDING = {"status": "unknown", "when": {"consent": {"eq": "pending"}}, "reason": "consent pending"}


@pytest.mark.parametrize("edit, field, needle", [
    (_drop_i4, "criteria", "procedural criterion"),
    (lambda d: _criterion(d, "I4").update(kind="inclusion", category="not_meeting_inclusion"), "criteria",
     "procedural criterion"),
    (lambda d: _criterion(d, "I4").update(category="randomized"), "category", "withdrawal"),
    (lambda d: _criterion(d, "I4").update(category="pending"), "category", "withdrawal"),
    (lambda d: _criterion(d, "I4").update(category="not_meeting_inclusion"), "category", "eligibility criteria"),
    (_i4_rules([_PENDING]), "rules", "declined"),
    (_i4_rules([{**_DECLINED, "when": {"consent": {"eq": "declined"}}}, _PENDING]), "rules", "withdrawn"),
    (_i4_rules([_DECLINED]), "rules", "pending"),
    (_i4_rules([{**_DECLINED, "when": {"all": [{"consent": {"in": ["declined", "withdrawn"]}},
                                               {"age_years": {"ge": 65}}]}}, _PENDING]), "rules", "declined"),
    (lambda d: _criterion(d, "I1").update(category="randomized"), "category", "consort.eligible"),
    (lambda d: d["consort"].update(eligible_pending="randomized"), "consort.eligible_pending", "differ"),
])
def test_a_set_that_would_randomise_the_declined_is_refused(tmp_path: Path, edit, field: str, needle: str) -> None:
    msg = _refused(_variant(tmp_path, edit))
    assert "variant.yaml" in msg and field in msg and needle in msg


def test_a_procedural_criterion_written_with_any_and_not_in_is_accepted(tmp_path: Path) -> None:
    rules = [{"status": "not_met", "when": {"any": [{"consent": {"eq": "declined"}}, {"consent": {"eq": "withdrawn"}}]},
              "reason": "left"},
             {"status": "unknown", "when": {"consent": {"not_in": ["signed", "declined", "withdrawn"]}}, "reason": "open"}]
    ruleset = load_ruleset(_variant(tmp_path, _i4_rules(rules)))
    assert ruleset.criteria["I4"].kind == "procedural"


def test_a_value_set_reference_that_is_not_a_path_is_refused(tmp_path: Path) -> None:
    msg = _refused(_variant(tmp_path, lambda d: d["value_sets"].update(tumor_sites=["valuesets/tumor-sites.yaml"])))
    assert "variant.yaml" in msg and "value_sets.tumor_sites" in msg and "path" in msg


def test_read_yaml_file_applies_the_same_limits_to_other_rules_files(tmp_path: Path) -> None:
    from screening.protocol import read_yaml_file
    good = tmp_path / "flow.yaml"
    good.write_text("name: x\ncounts: {a: 1}\n", encoding="utf-8")
    assert read_yaml_file(good) == {"name": "x", "counts": {"a": 1}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncounts: {a: 1, a: 2}\n", encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"bad.yaml.*field 'counts\.a'.*duplicate key 'a' at line 2"):
        read_yaml_file(bad)
    with pytest.raises(RuleDefinitionError, match="not a regular file"):
        read_yaml_file(Path("/dev/zero"))


# ---------------------------------------------------------------------------------------------
# 6. Wrong types: a clear RuleDefinitionError naming the file and the field, never a traceback

_CATEGORIES = "categories: [not_meeting_inclusion, meeting_exclusion, withdrawal, pending, randomized]"
_SUBCATEGORIES = "meeting_exclusion: [secondary_cause, malignancy, diuretic, recent_vka_or_k2]"


@pytest.mark.parametrize("old, new, criterion, field", [
    (_CATEGORIES, "categories: 5", None, "consort.categories"),
    (_CATEGORIES, 'categories: "not_meeting_inclusion meeting_exclusion withdrawal pending randomized"', None,
     "consort.categories"),
    (_CATEGORIES, "categories: [not_meeting_inclusion, [meeting_exclusion], withdrawal, pending, randomized]", None,
     "consort.categories"),
    ("subcategories:\n    " + _SUBCATEGORIES, "subcategories: [meeting_exclusion]", None, "consort.subcategories"),
    (_SUBCATEGORIES, "meeting_exclusion: 7", None, "consort.subcategories.meeting_exclusion"),
    (_SUBCATEGORIES, "meeting_exclusion: [[secondary_cause], malignancy, diuretic, recent_vka_or_k2]", None,
     "consort.subcategories.meeting_exclusion"),
    (re.compile(r"^  labels:\n(?:    .*\n)+", re.M), "  labels: [1]\n", None, "consort.labels"),
    ("    randomized: Randomized", "    randomized: [Randomized]", None, "consort.labels.randomized"),
    ("    randomized: Randomized", "    randomized: Randomized\n    randomised: Randomized", None,
     "consort.labels.randomised"),
    ("eligible: randomized ", "eligible: [randomized] ", None, "consort.eligible"),
    ("sources: [methods_2024, registry_2023-01-25, protocol_2023]", "sources: [[methods_2024]]", "I1", "sources"),
    ("sources: [methods_2024, registry_2023-01-25, protocol_2023]", "sources: methods_2024", "I1", "sources"),
    ("  methods_2024: \"Tan J", "  methods_2024: [\"Tan J", None, "sources.methods_2024"),
    ("template: {name: condition_presence, key: hypothyroidism", "template: {name: [condition_presence], key: hypothyroidism",
     "E1", "template.name"),
    ("key: hypothyroidism, label: Hypothyroidism}", "key: [hypothyroidism], label: Hypothyroidism}", "E1", "template.key"),
    ("status: {param: condition_history}", "status: {param: [condition_history]}", "E1", "rules[2].status"),
    ("ask: [birth_date]", "ask: [[birth_date]]", "I1", "ask"),
    ("ask: [birth_date]", "ask: [{birth_date: 1}]", "I1", "ask"),
    ("ask: [birth_date]", "ask: birth_date", "I1", "ask"),
    ("precedence: [I1,", "precedence: [[I1],", None, "precedence"),
    ("precedence: [I1,", "precedence: [{I1: 1},", None, "precedence"),
    ("- id: I1\n", "- id: [I1]\n", "criteria[0]", "id"),
    ("title: Age ≥ 65 years", "title: [Age]", "I1", "title"),
    ("title: Age ≥ 65 years", "title: !!binary aGVsbG8=", "I1", "title"),
    ("title: Age ≥ 65 years", "title: !!set {a, b}", "I1", "title"),
    ("title: Age ≥ 65 years", "title: 65", "I1", "title"),
    ("spec: criteria.md §1.3, §4.2 I1", "spec: {a: 1}", "I1", "spec"),
    ("category: not_meeting_inclusion\n    ask: [birth_date]", "category: [not_meeting_inclusion]\n    ask: [birth_date]",
     "I1", "category"),
    ("subcategory: secondary_cause", "subcategory: [secondary_cause]", "E1", "subcategory"),
    (re.compile(r"^    extra_rules:\n      - status: review\n        when: \{cond_peritoneal_dialysis.*\n(?:        .*\n)+",
                re.M), "    extra_rules: 5\n", "E2", "extra_rules"),
    ("when: {consent: {eq: pending}}", "when: {consent: {eq: {param: [x]}}}", "I4", "rules[1].when.consent.eq"),
    ("when: {consent: {in: [declined, withdrawn]}}", "when: {consent: {in: [[declined], withdrawn]}}", "I4",
     "rules[0].when.consent.in"),
    ("  condition_presence:\n", "  5: {}\n  condition_presence:\n", None, "templates"),
    ('title: Vitamin K2 for nocturnal', 'title: [Vitamin K2 for nocturnal', None, "title"),
    (re.compile(r"^description: >\n(?:  .*\n)+", re.M), "description: [1]\n", None, "description"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_file_and_field(tmp_path: Path, old: str | re.Pattern[str],
                                                                     new: str, criterion: str | None, field: str) -> None:
    original = BASE.read_text(encoding="utf-8")
    text = old.sub(new, original, count=1) if isinstance(old, re.Pattern) else original.replace(old, new, 1)
    assert text != original, old
    if new.startswith("title: [Vitamin"):
        text = re.sub(r"^(title: \[Vitamin.*)$", r"\1]", text, count=1, flags=re.M)
    if new.startswith('  methods_2024: ["'):
        text = re.sub(r'^(  methods_2024: \[".*)$', r"\1]", text, count=1, flags=re.M)
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_copy_set(tmp_path, text))
    assert info.value.file is not None and info.value.file.endswith("variant.yaml")
    assert info.value.criterion == criterion and info.value.field == field, str(info.value)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return edit


@pytest.mark.parametrize("file, path, value", [
    ("drug-classes.yaml", ("classes", "diuretic", "atc_exclude"), 5),
    ("drug-classes.yaml", ("classes", "diuretic", "atc_exclude"), [["C03"]]),
    ("drug-classes.yaml", ("classes", "diuretic", "rxnorm"), 4603),
    ("drug-classes.yaml", ("classes", "diuretic", "rxnorm"), [4603]),
    ("drug-classes.yaml", ("classes", "diuretic", "title"), ["x"]),
    ("drug-classes.yaml", ("classes", "diuretic", "names_exclude"), {"a": 1}),
    ("drug-classes.yaml", ("classes",), [1]),
    ("condition-codes.yaml", ("conditions", "hypothyroidism", "record_field"), ["conditions.hypothyroidism"]),
    ("condition-codes.yaml", ("conditions", "hypothyroidism", "not_evidence"), 5),
    ("condition-codes.yaml", ("conditions", "hypothyroidism", "note"), {"a": 1}),
    ("tumor-sites.yaml", ("name",), ["x"]),
])
def test_a_value_set_value_of_the_wrong_type_is_refused(tmp_path: Path, file: str, path: tuple[Any, ...],
                                                        value: Any) -> None:
    rules = _copy_set(tmp_path)
    vs = tmp_path / "valuesets" / file
    data = yaml.safe_load(vs.read_text(encoding="utf-8"))
    _set(path, value)(data)
    vs.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(rules)
    assert info.value.file is not None and info.value.file.endswith(file)
    assert info.value.field == ".".join(path), str(info.value)


_ODD_VALUES: list[Any] = [5, [], {}, [[1]], {"a": 1}, "x"]


#: The mappings of a value set that list its entries: like a list, only the first and the last are tried.
_ENTRY_MAPS = ("classes", "sites", "conditions", "other")


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a parsed YAML tree (for a list or a value set's entries: the first and the last)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        keys = list(node)
        if at and at[-1] in _ENTRY_MAPS and len(at) == 1:
            keys = keys[:1] + keys[-1:] if len(keys) > 1 else keys
        for key in keys:
            value = node[key]
            found.append(at + (key,))
            found += _paths(value, at + (key,))
    elif isinstance(node, list) and node:
        for index in sorted({0, len(node) - 1}):
            found.append(at + (index,))
            found += _paths(node[index], at + (index,))
    return found


def _replaced(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``tree`` with the value at ``path`` replaced (copies only along the path)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: _replaced(tree[head], rest, value)}
    copy = list(tree)
    copy[head] = _replaced(tree[head], rest, value)
    return copy


@pytest.mark.timeout(300)  # a watchdog only
@pytest.mark.parametrize("target", ["paper-2024.yaml", "paper-2024.yaml@bilingual", "drug-classes.yaml",
                                    "tumor-sites.yaml", "condition-codes.yaml", "fields.yaml", "facts.yaml"])
def test_any_value_replaced_by_any_odd_value_is_refused_or_loads_never_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    from screening import protocol
    bilingual = target.endswith("@bilingual")  # the current set, its texts {en, zh}
    target = target.removesuffix("@bilingual")
    path = _copy_set(tmp_path, SHIPPED.read_text(encoding="utf-8") if bilingual else None)
    parsed = {f.name: protocol.parse_yaml(f.read_text(encoding="utf-8"))
              for f in [path, *tmp_path.glob("valuesets/*.yaml"), tmp_path / "fields.yaml", tmp_path / "facts.yaml"]}
    parsed[target] = parsed.pop("variant.yaml") if target == "paper-2024.yaml" else parsed[target]
    current: dict[str, Any] = {}

    def read_yaml(self: Any, file: Path, display: str, *, field: str | None = None, hashed: bool = True) -> Any:
        name = "paper-2024.yaml" if file == path else file.name
        if name not in parsed:
            raise self.fail("cannot read: No such file or directory", file=display, field=field)
        data = current.get(name, parsed[name])
        if not isinstance(data, dict):
            raise self.fail("must be a mapping at the top level", file=display)
        return data

    monkeypatch.setattr(protocol._Loader, "_read_yaml", read_yaml)
    parsed["paper-2024.yaml"] = parsed.pop("variant.yaml", parsed.get("paper-2024.yaml"))
    assert protocol._Loader(path).load().criteria  # the unchanged set loads
    tried = refused = 0
    for key_path in _paths(parsed[target]):
        for odd in _ODD_VALUES:
            current[target] = _replaced(parsed[target], key_path, odd)
            tried += 1
            try:
                protocol._Loader(path).load()
            except RuleDefinitionError as exc:
                refused += 1
                assert exc.file is not None, key_path
            except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
                pytest.fail(f"{target} {key_path} = {odd!r}: {type(exc).__name__}: {exc}")
    assert tried >= 30 and refused > tried // 4


# ---------------------------------------------------------------------------------------------
# 7. Template expansion is bounded


@pytest.mark.timeout(60)  # a watchdog: before the fix this asked for 40 GB and died with MemoryError
def test_a_template_that_would_expand_to_gigabytes_is_refused(tmp_path: Path) -> None:
    template = '  condition_presence:\n    ask: ["conditions.${key}"]\n'
    bomb = BASE.read_text(encoding="utf-8").replace(
        template, '  bomb:\n    default: {status: not_met, reason: "' + "${k}" * 100_000 + '"}\n' + template, 1)
    bomb = bomb.replace("template: {name: condition_presence, key: hypothyroidism, label: Hypothyroidism}",
                        'template: {name: bomb, k: "' + "x" * 400_000 + '"}', 1)
    assert MAX_RULES_FILE_BYTES * 0.7 < len(bomb.encode()) < MAX_RULES_FILE_BYTES
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_copy_set(tmp_path, bomb))
    assert info.value.criterion == "E1" and info.value.field == "template", str(info.value)
    assert "variant.yaml" in str(info.value) and "expand" in str(info.value)


def test_a_template_used_by_many_criteria_cannot_add_up_to_gigabytes(tmp_path: Path) -> None:
    """Each expansion under the per-string limit, but thousands of them: the set's total is bounded."""
    data = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    data["templates"]["big"] = {"default": {"status": "not_met", "reason": "${k}" * 4000}}
    extra = [{**copy.deepcopy(_criterion(data, "E1")), "id": f"E{100 + i}", "template": {"name": "big", "k": "y" * 10}}
             for i in range(400)]
    data["criteria"][1:1] = extra
    data["precedence"][1:1] = [c["id"] for c in extra]
    msg = _refused(_copy_set(tmp_path, yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1 << 30)))
    assert "variant.yaml" in msg and "template" in msg and "expand" in msg


def test_template_variables_that_collide_as_keys_are_refused(tmp_path: Path) -> None:
    """Two keys of a template mapping that expand to the same text: one would silently win."""
    def edit(data: dict[str, Any]) -> None:
        data["templates"]["two"] = {"default": {"status": "not_met", "reason": "r"},
                                    "rules": [{"status": "met", "when": {"all": [{"cond_${a}": {"eq": "active"}}]},
                                               "reason": "r", "${b}": "x"}]}
        _criterion(data, "E3")["template"] = {"name": "two", "a": "hypoglycemia", "b": "reason"}
    msg = _refused(_variant(tmp_path, edit))
    assert "variant.yaml" in msg and "E3" in msg


def test_the_shipped_sets_still_load_with_the_same_stamp() -> None:
    assert load_ruleset("paper-2024@1.0.0").sha256 == "c61edf9ae94b84c17f3fb3719d20a49f12d86f763ec0b565459675a5a84af9c6"
    assert load_ruleset("registry-2023").name == "registry-2023"


# ---------------------------------------------------------------------------------------------
# 8. Control characters in one-line texts: refused at load, escaped when shown


@pytest.mark.parametrize("old, new, criterion, field", [
    ("    randomized: Randomized",
     '    randomized: "Randomized\\nAssessed for eligibility                                     310   ok"',
     None, "consort.labels.randomized"),
    ("title: Age ≥ 65 years", 'title: "Age\\u001b[2J\\u001b]0;pwn\\u0007 ≥ 65"', "I1", "title"),
    ("title: Age ≥ 65 years", 'title: "Age \\u202e56 ≤"', "I1", "title"),
    ("title: Age ≥ 65 years", 'title: "Age \\u2067≥ 65"', "I1", "title"),
    ("title: Age ≥ 65 years", 'title: "Age\\x85≥ 65"', "I1", "title"),
    ('reason: "consent signed"', 'reason: "consent\\rsigned"', "I4", "default.reason"),
    ('reason: "consent pending"', 'reason: "consent\\tpending"', "I4", "rules[1].reason"),
    ("protocol_text: \"hypoglycemia [P]\"", "protocol_text: \"hypoglycemia\\n[P]\"", "E3", "protocol_text"),
    ("spec: criteria.md §4.3 E3", "spec: \"criteria.md\\n§4.3 E3\"", "E3", "spec"),
    ("key: hypoglycemia, label: Hypoglycaemia}", "key: hypoglycemia, label: \"Hypo\\u001bglycaemia\"}", "E3",
     "template.label"),
    ('  fig1_2024: "Tan J', '  fig1_2024: "\\u001b[31mTan J', None, "sources.fig1_2024"),
    ("    pending: Pending (", "    pending: \"\\u0007Pending (", None, "consort.labels.pending"),
    ("title: Vitamin K2 for nocturnal", "title: \"\\u009b2J\"\nxtitle: Vitamin K2 for nocturnal", None, "title"),
])
def test_a_control_character_in_a_one_line_text_is_refused(tmp_path: Path, old: str, new: str,
                                                           criterion: str | None, field: str) -> None:
    original = BASE.read_text(encoding="utf-8")
    assert old in original, old
    text = original.replace(old, new, 1)
    if new.endswith("Pending ("):
        text = text.replace("\\u0007Pending (undetermined, or eligible awaiting consent)",
                            "\\u0007Pending (undetermined, or eligible awaiting consent)\"", 1)
    if "xtitle" in new:
        text = text.replace("xtitle: ", "xtitle_was: ", 1).replace("\nxtitle_was: ", "\n# ", 1)
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_copy_set(tmp_path, text))
    assert info.value.file is not None and info.value.file.endswith("variant.yaml")
    assert info.value.criterion == criterion and info.value.field == field, str(info.value)
    assert "control character" in str(info.value)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", str(info.value))


def test_a_control_character_in_a_key_is_refused_and_not_echoed(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: t.replace("  min_age_years: 65\n", '  min_age_years: 65\n  "x\\u001b[2J\\ny": 1\n', 1))
    msg = _refused(path)
    assert "variant.yaml" in msg and "parameters" in msg and "control character" in msg
    assert "\x1b" not in msg and "\n" not in msg


def test_a_control_character_in_a_value_set_is_refused(tmp_path: Path) -> None:
    path = _copy_set(tmp_path)
    vs = tmp_path / "valuesets" / "tumor-sites.yaml"
    text = vs.read_text(encoding="utf-8")
    text = re.sub(r"^(    title: )(.*)$", lambda m: m.group(1) + '"\\u001b[2J' + m.group(2).strip('"') + '"', text,
                  count=1, flags=re.M)
    vs.write_text(text, encoding="utf-8")
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(path)
    assert info.value.file is not None and info.value.file.endswith("tumor-sites.yaml")
    assert info.value.field is not None and info.value.field.endswith(".title") and "control character" in str(info.value)


def test_newlines_stay_allowed_in_descriptions_and_notes(tmp_path: Path) -> None:
    path = _edited(tmp_path, lambda t: t.replace("description: >\n", "description: |\n", 1))
    assert "\n" in load_ruleset(path).description.strip()


def test_the_rules_table_escapes_control_characters_of_a_loaded_set(paper: Any) -> None:
    """Defence in depth: a Ruleset built around the loader still cannot drive the terminal."""
    import dataclasses

    from screening.describe import ruleset_table
    i1 = dataclasses.replace(paper.criteria["I1"], title="Age\x1b[2J\x1b]0;pwn\x07\u202e ≥ 65",
                             protocol_text="text\nZZ-9999: ELIGIBLE")
    forged = dataclasses.replace(paper, title="t\x1b[31m", criteria={**paper.criteria, "I1": i1})
    table = ruleset_table(forged)
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", table)
    assert "\\x1b[2J" in table and "\\u202e" in table
    assert not any(line.startswith("ZZ-9999") for line in table.splitlines())


def test_the_audit_report_escapes_labels_and_titles(paper: Any) -> None:
    import dataclasses

    from screening import audit
    labels = {**paper.consort["labels"], "randomized": "Randomized\nAssessed for eligibility   310   ok"}
    i1 = dataclasses.replace(paper.criteria["I1"], title="Age\x1b[2J")
    forged = dataclasses.replace(paper, consort={**paper.consort, "labels": labels},
                                 criteria={**paper.criteria, "I1": i1})
    text = audit.render(audit.count([], forged))
    assert sum(line.startswith("Assessed for eligibility") for line in text.splitlines()) == 1
    assert "\x1b" not in text and "Randomized\\nAssessed" in text


def test_a_dollar_that_starts_no_template_variable_is_refused(tmp_path: Path) -> None:
    """string.Template raised ValueError (a traceback) on a lone $ in a template's text."""
    def edit(data: dict[str, Any]) -> None:
        data["templates"]["condition_presence"]["default"]["reason"] = "${label} absent; costs $ 5"
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(_variant(tmp_path, edit))
    assert info.value.criterion == "E1" and info.value.field == "template" and "$$" in str(info.value)


def test_a_dollar_written_twice_is_a_dollar_sign(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["templates"]["condition_presence"]["default"]["reason"] = "${label} absent; costs $$5"
    assert load_ruleset(_variant(tmp_path, edit)).criteria["E1"].default.reason == "Hypothyroidism absent; costs $5"


def test_a_procedural_rule_that_may_apply_to_signed_consent_is_refused(tmp_path: Path) -> None:
    text = (rules_dir() / "nlc-k2" / "paper-2024.yaml").read_text(encoding="utf-8")
    old = "when: {consent: {in: [declined, withdrawn]}}"
    assert old in text
    path = _copy_set(tmp_path, text.replace(old, "when: {any: [{consent: {in: [declined, withdrawn]}}, "
                                                 "{age_years: {ge: 0}}]}"))
    with pytest.raises(RuleDefinitionError, match=r"may apply when consent is 'signed'.*field 'rules\[0\]\.when'|"
                                                 r"field 'rules\[0\]\.when'.*may apply when consent is 'signed'"):
        load_ruleset(path)


@pytest.mark.parametrize("when", [
    "{any: [" + ", ".join("{age_years: {eq: %d}}" % i for i in range(500)) + "]}",
    "{age_years: {in: [" + ", ".join(str(i) for i in range(200)) + "]}}",
    "{all: [" + ", ".join("{any: [{age_years: {eq: %d}}, {age_years: {eq: %d}}]}" % (i, i + 1) for i in range(8)) + "]}",
])
def test_a_condition_too_large_for_the_engine_is_refused(tmp_path: Path, when: str) -> None:
    text = (rules_dir() / "nlc-k2" / "paper-2024.yaml").read_text(encoding="utf-8")
    old = "when: {age_years: {lt: {param: min_age_years}}}"
    assert old in text
    path = _copy_set(tmp_path, text.replace(old, "when: " + when, 1))
    with pytest.raises(RuleDefinitionError, match="too large for the rules engine"):
        load_ruleset(path)


def test_an_integer_too_long_for_python_is_a_clear_error(tmp_path: Path) -> None:
    text = (rules_dir() / "nlc-k2" / "paper-2024.yaml").read_text(encoding="utf-8")
    old = "min_age_years: 65"
    assert old in text
    path = _copy_set(tmp_path, text.replace(old, "min_age_years: " + "9" * 5000, 1))
    with pytest.raises(RuleDefinitionError, match="not valid YAML"):
        load_ruleset(path)
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: x\ncounts:\n  randomized: " + "9" * 5000 + "\n", encoding="utf-8")
    from screening.audit import load_expectation
    with pytest.raises(RuleDefinitionError, match="not valid YAML"):
        load_expectation(str(flow))


@pytest.mark.parametrize("box", ["error", "excluded"])
def test_a_reserved_box_name_is_refused(tmp_path: Path, box: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["consort"]["categories"].append(box)
    with pytest.raises(RuleDefinitionError, match=f"'{box}' is reserved"):
        load_ruleset(_variant(tmp_path, edit))
