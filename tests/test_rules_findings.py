"""Issue 11, rules loader: what outside runs fed ``load_ruleset`` is refused at load time.

Each test here failed before its fix: an alias bomb hung ``rules --check``; a value-set path to a
FIFO or ``/dev/zero`` was read without limit; absurd parameters loaded and then made every record an
error row; a duplicate YAML key silently won; a set without a procedural criterion sent declined
candidates to "randomized". Every refusal is a RuleDefinitionError naming the file and the field.
"""

from __future__ import annotations

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
from screening.protocol import MAX_RULES_FILE_BYTES, PARAMETER_BOUNDS, load_ruleset, rules_dir
from screening.screen import Screener

from .conftest import FIXTURES

PACK = rules_dir() / "nlc-k2"
SHIPPED = PACK / "paper-2024.yaml"


def _copy_set(tmp_path: Path, text: str | None = None, name: str = "variant.yaml") -> Path:
    """paper-2024 (its text, or ``text``) with copies of its value sets, in ``tmp_path``."""
    (tmp_path / "valuesets").mkdir(exist_ok=True)
    for f in (PACK / "valuesets").glob("*.yaml"):
        (tmp_path / "valuesets" / f.name).write_bytes(f.read_bytes())
    path = tmp_path / name
    path.write_text(SHIPPED.read_text(encoding="utf-8") if text is None else text, encoding="utf-8")
    return path


def _edited(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """paper-2024 after a textual edit (for YAML features safe_dump would not write)."""
    original = SHIPPED.read_text(encoding="utf-8")
    text = edit(original)
    assert text != original, "the edit did not apply"
    return _copy_set(tmp_path, text)


def _variant(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """paper-2024 after ``edit(data)`` on its parsed form."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
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
    (lambda t: t.replace('version: "1.0.0"\n', 'version: "1.0.0"\nversion: "9.9.9"\n', 1), "version", 'version: "9.9.9"'),
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
    with pytest.raises(RuleDefinitionError, match=r"bad.yaml.*field 'counts'.*duplicate key 'a' at line 2"):
        read_yaml_file(bad)
    with pytest.raises(RuleDefinitionError, match="not a regular file"):
        read_yaml_file(Path("/dev/zero"))
