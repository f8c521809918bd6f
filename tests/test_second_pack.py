"""A second trial pack, rules/mgo-nlc (Roguin Maor et al., JAMA Intern Med 2017), made of data only:
its criteria set, record fields and facts are YAML, and its synthetic cohort reproduces the flow the
paper's abstract reports (166 assessed, 72 excluded = 57 not meeting inclusion + 15 declined,
94 randomized). See docs/packs.md and fixtures/roguin-2017/README.md."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import cli

from .conftest import FIXTURES, ROOT

PACK = ROOT / "rules" / "mgo-nlc"
COHORT_DIR = FIXTURES / "roguin-2017"
COHORT = COHORT_DIR / "candidates.jsonl"
MAKE = COHORT_DIR / "make_cohort.py"
RULES = ["--rules", "roguin-2017"]
FLOW = {"assessed": 166, "excluded": 72, "not_meeting_inclusion": 57, "declined": 15, "pending": 0,
        "randomized": 94, "errors": 0}
DAY = dt.timedelta(days=1)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _records() -> list[dict[str, Any]]:
    return _jsonl(COHORT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def screened() -> str:
    """The cohort screened under roguin-2017, as JSON Lines (stdout only)."""
    result = CliRunner().invoke(cli.main, ["screen", str(COHORT), *RULES, "--format", "jsonl"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def rows(screened: str) -> dict[str, dict[str, Any]]:
    return {row["candidate_id"]: row for row in _jsonl(screened)}


def _make_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("roguin_make_cohort", MAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# (a) the flow of the abstract


def test_the_cohort_has_166_records_with_distinct_ids() -> None:
    records = _records()
    assert len(records) == 166
    assert len({r["candidate_id"] for r in records}) == 166


def test_screen_then_audit_reproduces_the_abstract_flow(runner: CliRunner, screened: str) -> None:
    decisions = _jsonl(screened)
    assert len(decisions) == 166
    assert {r["ruleset"]["name"] for r in decisions} == {"roguin-2017"}
    audited = runner.invoke(cli.main, ["audit", "-", *RULES, "--expect", "figure1"], input=screened,
                            catch_exceptions=False)
    assert audited.exit_code == 0, audited.output
    assert "Arithmetic: consistent" in audited.output
    assert "all 7 counts match" in audited.output
    as_json = runner.invoke(cli.main, ["audit", "-", *RULES, "--format", "json"], input=screened,
                            catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["counts"] == FLOW


def test_the_pipeline_runs_as_documented() -> None:
    """The command of docs/packs.md, as a real pipe between two processes."""
    nlc = f"{sys.executable} -c 'import cli; cli.main()'"
    command = (f"{nlc} screen fixtures/roguin-2017/candidates.jsonl --rules roguin-2017 --format jsonl"
               f" | {nlc} audit - --rules roguin-2017 --expect figure1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 7 counts match" in done.stdout


def test_one_volunteer_changed_breaks_the_flow_check(runner: CliRunner, rows: dict[str, dict[str, Any]],
                                                     tmp_path: Path) -> None:
    """The audit can fail: one randomized volunteer made 20 on D0 moves one count from 94 to 57."""
    records = _records()
    index = next(i for i, r in enumerate(records) if rows[r["candidate_id"]]["category"] == "randomized")
    d0 = dt.date.fromisoformat(records[index]["screening_start"])
    records[index]["birth_date"] = (d0 + DAY).replace(year=d0.year - 21).isoformat()
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    screened = runner.invoke(cli.main, ["screen", str(changed), *RULES, "--format", "jsonl"])
    audited = runner.invoke(cli.main, ["audit", "-", *RULES, "--expect", "figure1"], input=screened.stdout)
    assert audited.exit_code == 1
    assert "not_meeting_inclusion: expected 57, got 58" in audited.output
    assert "randomized: expected 94, got 93" in audited.output


def test_the_expected_flow_is_the_abstracts() -> None:
    data = yaml.safe_load((PACK / "expectations" / "figure1.yaml").read_text(encoding="utf-8"))
    assert data["counts"] == FLOW


# ---------------------------------------------------------------------------------------------
# (b) the cohort is what its seeded script writes


def test_make_cohort_reproduces_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "candidates.jsonl"
    subprocess.run([sys.executable, str(MAKE), "--out", str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == COHORT.read_bytes()


def test_every_volunteer_lands_in_the_box_the_script_built_it_for(rows: dict[str, dict[str, Any]]) -> None:
    """The script's own reading of the criteria (expected_box) and the engine agree record by record."""
    make = _make_module()
    for record in _records():
        box, primary = make.expected_box(record)
        row = rows[record["candidate_id"]]
        assert row["category"] == box, (record["candidate_id"], row["criteria"])
        if primary is not None:
            assert row["primary_criterion"] == primary, record["candidate_id"]


# ---------------------------------------------------------------------------------------------
# (c) edge records, found by what they hold


def _d0(record: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(record["screening_start"])


def _nights(record: dict[str, Any]) -> list[int]:
    """Each episode's night as days after D0 (0 … 13 is the window)."""
    return [(dt.date.fromisoformat(e["night_of"]) - _d0(record)).days for e in record["diary"]["episodes"]]


def _age(record: dict[str, Any]) -> int:
    born, d0 = dt.date.fromisoformat(record["birth_date"]), _d0(record)
    return d0.year - born.year - ((d0.month, d0.day) < (born.month, born.day))


def _one(predicate: Any) -> dict[str, Any]:
    found = [r for r in _records() if predicate(r)]
    assert found, "the cohort lost an edge case"
    return found[0]


def _twenty_first_birthday(record: dict[str, Any], shift: int) -> bool:
    born = dt.date.fromisoformat(record["birth_date"])
    day = _d0(record) + shift * DAY
    return born == day.replace(year=day.year - 21)


def test_21st_birthday_on_screening_start_counts(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: _twenty_first_birthday(r, 0) and r.get("consent") == "signed")
    row = rows[record["candidate_id"]]
    assert row["criteria"]["I1"]["status"] == "met"
    assert row["criteria"]["I1"]["reason"].startswith("age 21 on ")
    assert (row["decision"], row["category"]) == ("eligible", "randomized")


def test_21st_birthday_the_day_after_screening_start_does_not(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: _twenty_first_birthday(r, 1))
    row = rows[record["candidate_id"]]
    assert row["criteria"]["I1"]["status"] == "not_met"
    assert row["criteria"]["I1"]["reason"].startswith("age 20 on ")
    assert (row["decision"], row["category"], row["primary_criterion"]) == ("excluded", "not_meeting_inclusion", "I1")


def test_29_february_birthday_falls_on_1_march(rows: dict[str, dict[str, Any]]) -> None:
    on_feb28 = rows[_one(lambda r: r["birth_date"] == "1992-02-29" and r["screening_start"] == "2013-02-28")["candidate_id"]]
    on_mar1 = rows[_one(lambda r: r["birth_date"] == "1992-02-29" and r["screening_start"] == "2013-03-01")["candidate_id"]]
    assert on_feb28["criteria"]["I1"]["status"] == "not_met" and on_feb28["category"] == "not_meeting_inclusion"
    assert on_mar1["criteria"]["I1"]["status"] == "met" and on_mar1["category"] == "randomized"


def test_an_episode_on_d0_plus_13_counts(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: len(_nights(r)) == 4 and min(_nights(r)) >= 0 and max(_nights(r)) == 13
                  and r.get("consent") == "signed")
    row = rows[record["candidate_id"]]
    assert row["criteria"]["I2"]["status"] == "met"
    assert row["criteria"]["I2"]["reason"].startswith("4 episode(s) in the diary window")
    assert row["category"] == "randomized"


def test_an_episode_on_d0_plus_14_does_not(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: len(_nights(r)) == 4 and max(_nights(r)) == 14 and sum(0 <= n <= 13 for n in _nights(r)) == 3)
    row = rows[record["candidate_id"]]
    assert row["criteria"]["I2"]["status"] == "not_met"
    assert row["criteria"]["I2"]["reason"].startswith("3 episode(s) in the complete 14-night diary")
    assert row["category"] == "not_meeting_inclusion"


def test_episodes_outside_the_window_do_not_make_up_the_count(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: len(_nights(r)) >= 4 and sum(0 <= n <= 13 for n in _nights(r)) < 4 and _age(r) >= 21)
    row = rows[record["candidate_id"]]
    assert (row["criteria"]["I2"]["status"], row["primary_criterion"]) == ("not_met", "I2")


@pytest.mark.parametrize(("diary", "status", "category"), [
    ({"nights_recorded": 14, "episodes": [0, 3, 9]}, "not_met", "not_meeting_inclusion"),
    ({"nights_recorded": 9, "episodes": [0, 3, 9]}, "unknown", "pending"),
    ({"episodes": [0, 3, 9]}, "unknown", "pending"),
    ({"nights_recorded": 14}, "unknown", "pending"),
    (None, "unknown", "pending"),
    ({"nights_recorded": 5, "episodes": [0, 1, 2, 4]}, "met", "randomized"),
])
def test_fewer_than_4_episodes_fail_only_a_complete_diary(runner: CliRunner, diary: dict[str, Any] | None,
                                                          status: str, category: str) -> None:
    """A volunteer still keeping the diary (or without one yet) is pending, never excluded."""
    record = _one(lambda r: r.get("consent") == "signed" and _age(r) >= 21)
    record = {k: v for k, v in record.items() if k != "diary"}
    if diary is not None:
        nights = diary.get("episodes")
        record["diary"] = {**diary} if nights is None else {
            **diary, "episodes": [{"night_of": (_d0(record) + n * DAY).isoformat()} for n in nights]}
    result = runner.invoke(cli.main, ["screen", "-", *RULES, "--format", "jsonl"], input=json.dumps(record))
    assert result.exit_code == 0, result.output
    [row] = _jsonl(result.stdout)
    assert (row["criteria"]["I2"]["status"], row["category"]) == (status, category), row["criteria"]["I2"]
    if category == "pending":
        assert row["decision"] == "undetermined" and row["primary_criterion"] == "I2"
        assert row["ask_next"][0].startswith("diary.")


def test_failing_inclusion_beats_declined_consent(rows: dict[str, dict[str, Any]]) -> None:
    declined = [rows[r["candidate_id"]] for r in _records() if r.get("consent") in ("declined", "withdrawn")]
    failing = [row for row in declined if row["primary_criterion"] in ("I1", "I2")]
    assert len(failing) == 5 and len(declined) == 20
    for row in failing:
        assert row["category"] == "not_meeting_inclusion"
        assert row["criteria"]["I3"]["status"] == "not_met"
    assert sorted(row["category"] for row in declined if row not in failing) == ["declined"] * 15


def test_consent_left_out_is_pending(rows: dict[str, dict[str, Any]]) -> None:
    record = _one(lambda r: "consent" not in r)
    assert rows[record["candidate_id"]]["criteria"]["I3"] == {"status": "unknown", "reason": "consent pending"}


# ---------------------------------------------------------------------------------------------
# (d) the record is the pack's own: a field it does not declare is an error row naming it


@pytest.mark.parametrize(("name", "value"), [("conditions", {}), ("sex", "female"),
                                             ("medications", []), ("nlc_assessment", {"confirmed": True})])
def test_a_field_the_pack_does_not_declare_is_an_error_row(runner: CliRunner, name: str, value: Any) -> None:
    record = _records()[0]
    clean = runner.invoke(cli.main, ["screen", "-", *RULES, "--format", "jsonl"], input=json.dumps(record))
    assert clean.exit_code == 0, clean.output
    assert _jsonl(clean.stdout)[0]["decision"] != "error"
    result = runner.invoke(cli.main, ["screen", "-", *RULES, "--format", "jsonl"],
                           input=json.dumps({**record, name: value}))
    assert result.exit_code == 3
    [row] = _jsonl(result.stdout)
    assert (row["decision"], row["candidate_id"], row["error_fields"]) == ("error", record["candidate_id"], [name])
    assert f"{name}: unknown field" in row["error"]
    assert row["ruleset"]["name"] == "roguin-2017"


def test_the_same_field_is_known_to_nlc_k2(runner: CliRunner) -> None:
    """The error above comes from the pack's record, not from the field itself."""
    record = {**_records()[0], "conditions": {}}
    result = runner.invoke(cli.main, ["screen", "-", "--rules", "paper-2024", "--format", "jsonl"],
                           input=json.dumps(record))
    assert _jsonl(result.stdout)[0]["decision"] != "error"


# ---------------------------------------------------------------------------------------------
# (e) the pack is listed, checked and found like the first


def test_rules_list_lists_both_packs(runner: CliRunner) -> None:
    text = runner.invoke(cli.main, ["rules", "--list"], catch_exceptions=False).output
    lines = text.splitlines()
    assert any(line.startswith("mgo-nlc: ") and "rules/mgo-nlc" in line for line in lines), text
    assert any(line.startswith("nlc-k2: ") for line in lines), text
    assert "  roguin-2017: 1.0.0, 1.1.0 (default)" in lines
    listed = json.loads(runner.invoke(cli.main, ["rules", "--list", "--format", "json"]).output)
    packs = {p["name"]: p for p in listed["packs"]}
    assert sorted(packs) == ["mgo-nlc", "nlc-k2"]
    assert not packs["mgo-nlc"].get("registration")  # the sources state none
    assert packs["mgo-nlc"]["default_set"] == "roguin-2017"
    assert "mgo-nlc/roguin-2017@1.0.0" in [s["spec"] for s in listed["sets"]]


def test_rules_check_accepts_the_pack(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for args in (["--check", "rules/mgo-nlc"], ["--check", "mgo-nlc"]):
        result = runner.invoke(cli.main, ["rules", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "roguin-2017 1.0.0 is valid" in result.output and "roguin-2017 1.1.0 is valid" in result.output


@pytest.mark.parametrize("spec", ["roguin-2017", "roguin-2017@1.0.0", "mgo-nlc/roguin-2017", "mgo-nlc", "rules/mgo-nlc"])
def test_every_way_of_naming_the_set_finds_it(runner: CliRunner, spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    record = _records()[0]
    result = runner.invoke(cli.main, ["screen", "-", "--rules", spec, "--format", "jsonl"], input=json.dumps(record))
    assert result.exit_code == 0, result.output
    assert _jsonl(result.stdout)[0]["ruleset"]["name"] == "roguin-2017"


def test_the_published_decision_schema_validates_every_cohort_row() -> None:
    """`nlc-screen schema --decision --rules roguin-2017` describes the rows screen writes for the
    cohort (its own boxes and ids), and `nlc-screen schema --rules roguin-2017` is its six-field record (and the importers' provenance)."""
    import jsonschema

    runner = CliRunner()
    schema = json.loads(runner.invoke(cli.main, ["schema", "--decision", "--rules", "roguin-2017"]).output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    out = runner.invoke(cli.main, ["screen", str(COHORT), "--rules", "roguin-2017", "--format", "jsonl"]).output
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 166
    for row in rows:
        assert not list(validator.iter_errors(row)), row["candidate_id"]
    wrong = dict(rows[0], category="withdrawal")
    assert list(validator.iter_errors(wrong))  # another pack's box is not this set's
    record = json.loads(runner.invoke(cli.main, ["schema", "--rules", "roguin-2017"]).output)
    assert sorted(record["properties"]) == ["birth_date", "candidate_id", "consent", "diary", "provenance",
                                            "screening_start", "site"]  # provenance: every record's, for importers
    assert record["properties"]["birth_date"]["title"] == "Date of birth"
