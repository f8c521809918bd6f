"""The trial lives in its pack, the core is generic (issue: trial packs).

* no Python file of the core names a condition, drug, diary rule or trial registration;
* a pack's thresholds, conditions and records are data: editing a temporary copy of the pack
  changes decisions with no code change;
* the released 1.0.0 sets stay loadable from their archive snapshots with their original sha256,
  and every later version (1.1.0, 1.2.0, 1.3.0) decides exactly as 1.0.0 on the golden cases, the Figure 1 cohort and generated records.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest

import screening
from screening.conditions import PythonEvaluator
from screening.errors import RuleDefinitionError
from screening.generate import write_jsonl
from screening.io import Item
from screening.protocol import load_ruleset, rules_dir
from screening.screen import Screener

from .conftest import FIXTURES, ROOT, base_record

PACK = rules_dir() / "nlc-k2"
#: The stamps of release 1.0.0 (before the sets declared their records): archived, they keep them.
STAMPS_1_0_0 = {
    "paper-2024": "c61edf9ae94b84c17f3fb3719d20a49f12d86f763ec0b565459675a5a84af9c6",
    "registry-2023": "3e209eb3fcfcfa32a0b110860a099414182f0fe539dd4180ec5ecce27d0ad037",
}
#: A sha256 over every file of each 1.0.0 snapshot (names and bytes): a snapshot never changes. The
#: set's own stamp leaves out fields.yaml and facts.yaml (1.0.0 named no record files), so this pins them.
SNAPSHOTS_1_0_0 = {
    "paper-2024": "40792a072c319304750882d7cce1644b92c063440ec5b622fd24a009af8a668a",
    "registry-2023": "2a074e8a7850b7cdd03396f6965dae0038795d2c88133576e0149134b816b993",
}
#: The English-only releases archived when the Chinese texts came (issue 13): folder digest, and stamp.
SNAPSHOTS_ENGLISH = {
    "nlc-k2/paper-2024@1.1.0": ("5d704ff14912717c459f3d4bff75ad97db283063d9e1fa347e7890ca36eef186",
                                "02eb7d0affb4df98f92e9eebd38d06a337b44a2dca00129f0cb85695e3edb8c2"),
    "nlc-k2/registry-2023@1.1.0": ("82daaf758b49746aef1a23252ef0f0ee6290c23447211e5f859374147c2f2b24",
                                   "431567631bfed8b169f4492a11c5a8e5335e5679e98cfe664ff76d8257d85e0e"),
    "mgo-nlc/roguin-2017@1.0.0": ("0b66b82724bc1002857acd14cc268db9a9dd9b358e6cee57eec85962748fadbb",
                                  "0b66b82724bc1002857acd14cc268db9a9dd9b358e6cee57eec85962748fadbb"),
}
#: The releases archived when 1.3.0 settled the condition codes marked CHECK (issue 16): folder digest, and stamp.
SNAPSHOTS_1_2_0 = {
    "paper-2024": ("5c07f2bb44da5371f3da33dc3a8543b2a029a75f64b051be9f5b562a6969d772",
                   "b32750ab447a0383918369c23ed8e477065706d44e077aff2f27bd3fd9c2fb18"),
    "registry-2023": ("dd7852311bd3c03a5e3a674aa0c7c79fd92e660d0e3b75206b7b693ca1ee610c",
                      "e5c6143a71331a42613e597e28c10e06f6de710a64dd32b5ca38c55fa67755d6"),
}
TRIAL_WORDS = ("hypothyroid", "parkinson", "warfarin", "menaquinone", "diuretic", "stenosis", "NCT05547750")


def _snapshot_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# A generic core


def test_no_core_file_names_a_trial_condition_drug_or_registration() -> None:
    files = sorted((ROOT / "screening").glob("*.py")) + [ROOT / "cli.py"]
    assert len(files) > 15
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for word in TRIAL_WORDS:
            for match in re.finditer(re.escape(word), text, re.IGNORECASE):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {word}")
    assert not found, "trial-specific words in the core:\n" + "\n".join(found)


def _pack_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "nlc-k2"
    shutil.copytree(PACK, folder, ignore=shutil.ignore_patterns("archive"))
    return folder


def _screen(ruleset: screening.Ruleset, records: list[dict]) -> list[dict]:
    screener = Screener(ruleset, evaluator=PythonEvaluator(ruleset))
    return [screener.item(Item(f"line {i}", json.dumps(r))) for i, r in enumerate(records, 1)]


def test_thresholds_follow_the_pack(tmp_path: Path) -> None:
    """Raising the minimum age and the minimum number of episodes in a copy of the pack changes the
    decisions of the candidates between the old and the new thresholds, and only theirs."""
    folder = _pack_copy(tmp_path)
    set_file = folder / "paper-2024.yaml"
    text = set_file.read_text(encoding="utf-8")
    edited = text.replace("  min_age_years: 65\n", "  min_age_years: 70\n").replace("  min_episodes: 2\n",
                                                                                     "  min_episodes: 5\n")
    assert edited.count("\n") == text.count("\n") and edited != text
    set_file.write_text(edited, encoding="utf-8")
    shipped, changed = load_ruleset("paper-2024"), load_ruleset(set_file)
    assert (changed.parameters["min_age_years"], changed.parameters["min_episodes"]) == (70, 5)
    assert changed.sha256 != shipped.sha256

    six = {"nights_recorded": 14, "episodes": [{"night_of": f"2023-03-0{d}"} for d in range(2, 8)]}
    aged_67 = base_record(candidate_id="A67", birth_date="1955-06-01", diary=six)          # 67 on 2023-03-01
    aged_72 = base_record(candidate_id="A72", birth_date="1950-06-01", diary=six)
    episodes = [{"night_of": f"2023-03-0{d}"} for d in (2, 3, 4)]
    three = base_record(candidate_id="E3", birth_date="1950-06-01", diary={"nights_recorded": 14, "episodes": episodes})
    before = _screen(shipped, [aged_67, aged_72, three])
    after = _screen(changed, [aged_67, aged_72, three])
    assert [r["category"] for r in before] == ["randomized"] * 3
    assert [r["category"] for r in after] == ["not_meeting_inclusion", "randomized", "not_meeting_inclusion"]
    assert [r["primary_criterion"] for r in after] == ["I1", "I4", "I2"]
    assert "needs ≥ 70" in after[0]["criteria"]["I1"]["reason"]
    assert after[2]["criteria"]["I2"]["status"] == "not_met"


def test_a_condition_added_by_yaml_alone_excludes(tmp_path: Path) -> None:
    """A new condition: one line in fields.yaml (the record accepts it and a fact follows from
    facts.yaml's for_each) and one criterion in the set. No code."""
    record = base_record(candidate_id="MG-1")
    record["conditions"]["myasthenia_gravis"] = "active"
    shipped = load_ruleset("paper-2024")
    row = _screen(shipped, [record])[0]
    assert row["decision"] == "error" and "conditions.myasthenia_gravis: unknown field" in row["error"]

    folder = _pack_copy(tmp_path)
    fields = folder / "fields.yaml"
    text = fields.read_text(encoding="utf-8")
    anchor = "      liver_cirrhosis_ascites_paracentesis:\n"
    assert anchor in text
    fields.write_text(text.replace(anchor, "      myasthenia_gravis: {type: enum, values: condition_status, "
                                           "label: Myasthenia gravis}\n" + anchor), encoding="utf-8")
    set_file = folder / "paper-2024.yaml"
    text = set_file.read_text(encoding="utf-8")
    criterion = ("  - id: E16\n    kind: exclusion\n    title: {en: Myasthenia gravis, zh: 重症肌无力}\n"
                 "    protocol_text: \"added for this test\"\n    sources: [methods_2024]\n    spec: none\n"
                 "    category: meeting_exclusion\n    subcategory: secondary_cause\n"
                 "    template: {name: condition_presence, key: myasthenia_gravis, label: Myasthenia gravis, "
                 "label_zh: 重症肌无力}\n\n")
    text = text.replace("\ncriteria:\n", "\ncriteria:\n" + criterion, 1)
    text = text.replace("precedence: [I1, E1,", "precedence: [I1, E16, E1,", 1)
    set_file.write_text(text, encoding="utf-8")
    ruleset = load_ruleset(set_file)
    assert ruleset.fact_types()["cond_myasthenia_gravis"].values == ("active", "history", "absent", "unknown")

    absent = base_record(candidate_id="MG-0")
    absent["conditions"]["myasthenia_gravis"] = "absent"
    unknown = base_record(candidate_id="MG-2")
    rows = _screen(ruleset, [record, absent, unknown])
    assert (rows[0]["decision"], rows[0]["category"], rows[0]["subcategory"], rows[0]["primary_criterion"]) == \
        ("excluded", "meeting_exclusion", "secondary_cause", "E16")
    assert rows[0]["criteria"]["E16"]["reason"].startswith("Myasthenia gravis is active")
    assert rows[1]["category"] == "randomized"
    assert rows[2]["decision"] == "undetermined" and rows[2]["ask_next"] == ["conditions.myasthenia_gravis"]


def test_a_fact_naming_a_field_the_record_lacks_fails_when_the_pack_loads(tmp_path: Path) -> None:
    folder = _pack_copy(tmp_path)
    facts = folder / "facts.yaml"
    text = facts.read_text(encoding="utf-8")
    facts.write_text(text.replace("args: {field: nlc_assessment.confirmed}", "args: {field: nlc_assessment.confirmd}"),
                     encoding="utf-8")
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(folder / "paper-2024.yaml")
    message = str(info.value)
    assert "facts.yaml" in message and "nlc_confirmed" in message and "did you mean" in message


def test_an_undeclared_parameter_is_refused_and_a_declared_one_range_checked(tmp_path: Path) -> None:
    folder = _pack_copy(tmp_path)
    set_file = folder / "paper-2024.yaml"
    text = set_file.read_text(encoding="utf-8")
    set_file.write_text(text.replace("  min_episodes: 2\n", "  min_episodes: 2\n  max_episodes: 9\n"), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"parameters\.max_episodes.*unknown field"):
        load_ruleset(set_file)
    set_file.write_text(text.replace("  min_episodes: 2\n", "  min_episodes: 1001\n"), encoding="utf-8")
    with pytest.raises(RuleDefinitionError, match=r"parameters\.min_episodes.*whole number in 0 … 1000"):
        load_ruleset(set_file)


# ---------------------------------------------------------------------------------------------
# Versions and archive


@pytest.mark.parametrize("name", sorted(STAMPS_1_0_0))
def test_the_released_version_loads_from_its_snapshot_with_its_original_stamp(name: str) -> None:
    old = load_ruleset(f"{name}@1.0.0")
    assert (old.version, old.sha256) == ("1.0.0", STAMPS_1_0_0[name])
    assert old.path == f"rules/nlc-k2/archive/{name}-1.0.0/{name}.yaml"
    snapshot = PACK / "archive" / f"{name}-1.0.0"
    assert sorted(p.name for p in snapshot.iterdir()) == ["facts.yaml", "fields.yaml", f"{name}.yaml", "valuesets"]
    assert _snapshot_digest(snapshot) == SNAPSHOTS_1_0_0[name], "an archived snapshot changed"
    new = load_ruleset(name)
    assert new.version == "1.3.0" and new.sha256 != old.sha256
    assert {Path(f).name for f in new.files} >= {"fields.yaml", "facts.yaml"}


@pytest.mark.parametrize("spec", sorted(SNAPSHOTS_ENGLISH))
def test_the_english_only_releases_keep_their_snapshots_and_stamps(spec: str) -> None:
    digest, sha = SNAPSHOTS_ENGLISH[spec]
    old = load_ruleset(spec)
    pack, rest = spec.split("/")
    name, version = rest.split("@")
    folder = ROOT / "rules" / pack / "archive" / f"{name}-{version}"
    assert old.path == f"rules/{pack}/archive/{name}-{version}/{name}.yaml"
    assert (old.version, old.sha256, old.languages) == (version, sha, ("en",))
    assert _snapshot_digest(folder) == digest, "an archived snapshot changed"
    current = load_ruleset(f"{pack}/{name}")
    assert current.languages == ("en", "zh") and current.sha256 != sha


@pytest.mark.parametrize("name", sorted(SNAPSHOTS_1_2_0))
def test_the_1_2_0_releases_keep_their_snapshots_and_stamps(name: str) -> None:
    digest, sha = SNAPSHOTS_1_2_0[name]
    old = load_ruleset(f"{name}@1.2.0")
    folder = PACK / "archive" / f"{name}-1.2.0"
    assert old.path == f"rules/nlc-k2/archive/{name}-1.2.0/{name}.yaml"
    assert (old.version, old.sha256, old.languages) == ("1.2.0", sha, ("en", "zh"))
    assert _snapshot_digest(folder) == digest, "an archived snapshot changed"
    current = load_ruleset(name)
    assert current.version == "1.3.0" and current.sha256 != sha
    # 1.3.0 changed the condition-code value set only: the codes 1.0.0 marked CHECK are settled
    codes = {c["code"]: c["maps_to"] for entry in current.condition_codes.values()
             for group in ("snomed", "icd10", "procedures") for c in entry.get(group) or []}
    assert (codes["105502003"], codes["265764009"], codes["F10.21"], codes["G20.C"]) == (
        "screener", "screener", "history", "screener")
    assert "F10.21" not in {c["code"] for c in old.condition_codes["alcoholism"]["icd10"]}


def _rows(ruleset: screening.Ruleset, items: list[Item]) -> list[str]:
    """Rows without their stamp, and without ``decide`` (what a review asks of the investigator, which
    1.2.0 added: its decisions and reasons are 1.1.0's)."""
    screener = Screener(ruleset)
    out = []
    for item in items:
        row = screener.item(item)
        assert row.pop("ruleset") == ruleset.stamp
        for result in row.get("criteria", {}).values():
            result.pop("decide", None)
        out.append(json.dumps(row, ensure_ascii=False))
    return out


def _golden_items() -> list[Item]:
    items = []
    for path in sorted((FIXTURES / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        items.append(Item(path.name, json.dumps(case.get("record"))))
    lines = (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    return items + [Item(f"line {i}", line) for i, line in enumerate(lines, 1)]


@pytest.mark.parametrize("name", sorted(STAMPS_1_0_0))
def test_every_version_decides_as_1_0_0_on_the_golden_cases_and_figure_1(name: str) -> None:
    """1.1.0 (the trial as a pack), 1.2.0 (the Chinese texts, what to decide) and 1.3.0 (condition codes
    for importers) decide as 1.0.0."""
    items = _golden_items()
    assert len(items) > 400
    first = _rows(load_ruleset(f"{name}@1.0.0"), items)
    assert _rows(load_ruleset(f"{name}@1.1.0"), items) == first
    assert _rows(load_ruleset(f"{name}@1.2.0"), items) == first
    assert _rows(load_ruleset(name), items) == first


@pytest.mark.timeout(600)
def test_the_current_version_decides_as_1_0_0_on_100k_generated_records() -> None:
    buffer = io.StringIO()
    write_jsonl(buffer, 100_000, seed=12, mix=None, ruleset=load_ruleset("paper-2024"))
    items = [Item(f"line {i}", line) for i, line in enumerate(buffer.getvalue().splitlines(), 1)]
    assert len(items) == 100_000
    new, old = _rows(load_ruleset("paper-2024"), items), _rows(load_ruleset("paper-2024@1.0.0"), items)
    assert sum(1 for row in new if '"decision": "error"' in row) > 100  # the mix includes unreadable records
    assert new == old


# ---------------------------------------------------------------------------------------------
# A pack's files are checked when it loads: a hostile or careless edit is an error naming the file
# and field, never a set that loads and then fails on every record


def _edit(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("name, old, new, message", [
    ("fields.yaml", "plus_days: {param: enrollment_offset_days}", "plus_days: {param: lookback}",
     "plus_days reads 'lookback'"),
    ("fields.yaml", "plus_days: {param: enrollment_offset_days}", "plus_days: {param: nothing}",
     "plus_days reads 'nothing'"),
    ("fields.yaml", "  site:\n    type: name", "  model_config:\n    type: name", "keeps for itself"),
    ("fields.yaml", "        name:\n          type: text\n          min_length: 1",
     "        name:\n          type: text\n          min_length: -3", "0 … 1000000"),
    ("fields.yaml", "    model: Diary", "    model: Conditions", "each object needs a name of its own"),
    ("fields.yaml", "        atc: {type: atc_code, label: ATC code}\n", "", "need atc (atc_code)"),
    ("facts.yaml", "args: {list: diary.episodes, date: night_of, start: screening_start, nights: {param: diary_window_nights}, count: inside}",
     "args: {list: medications, date: start_date, start: screening_start, nights: {param: diary_window_nights}, count: inside}",
     "no required date field"),
    ("facts.yaml", "args: {field: diary.nights_recorded}", "args: {field: diary.episodes.severity}",
     "is no field of the record"),
    ("facts.yaml", "quotes: {end: window_end}", "quotes: {end: []}", "must be a name"),
    ("facts.yaml", "quotes: {end: window_end}", "quotes: {end: min_age_years}", "the name of a date, parameter"),
    ("facts.yaml", "quotes: {end: window_end}", "quotes: {end: birth_date}", "which facts[0] (age_years) quotes too"),
    ("facts.yaml", "from: {param: study_window_start}", "from: {param: study_window_strat}",
     "no parameter 'study_window_strat' is declared"),
    ("facts.yaml", 'age_reference: "{age_reference}"', 'age_reference: "{age_reference:>99999999}"', "is no parameter"),
    ("facts.yaml", "  - derive: presence_text", "  - message: x\n    derive: presence_text", "belongs under warnings"),
    ("facts.yaml", "  enrollment_offset_days:\n    type: int\n    min: 1\n    max: 3660",
     "  enrollment_offset_days:\n    type: int\n    min: 1\n    max: 99999999999", "within 0 … 3660"),
])
def test_a_bad_pack_file_is_refused_when_it_loads(tmp_path: Path, name: str, old: str, new: str, message: str) -> None:
    folder = _pack_copy(tmp_path)
    _edit(folder, name, old, new)
    with pytest.raises(RuleDefinitionError) as info:
        load_ruleset(folder / "paper-2024.yaml")
    assert message in str(info.value) and ".yaml" in str(info.value), str(info.value)


def test_a_set_outside_an_archive_must_name_its_record_files(tmp_path: Path) -> None:
    """Only an archived set released before packs may read fields.yaml and facts.yaml unhashed."""
    folder = _pack_copy(tmp_path)
    _edit(folder, "paper-2024.yaml", "record: {fields: fields.yaml, facts: facts.yaml}\n", "")
    with pytest.raises(RuleDefinitionError, match="record.*only an archived set"):
        load_ruleset(folder / "paper-2024.yaml")


def test_comparing_with_a_set_of_another_pack_reads_the_record_with_that_packs_fields() -> None:
    """--compare-with across packs: the other set reads the record with its own model; a field it does
    not know makes the check an error, never a crash of the batch."""
    roguin, paper = load_ruleset("roguin-2017"), load_ruleset("paper-2024")
    record = {"candidate_id": "X1", "screening_start": "2020-01-01", "birth_date": "1950-01-01", "consent": "signed",
              "diary": {"nights_recorded": 14, "episodes": [{"night_of": f"2020-01-0{d}"} for d in range(1, 6)]}}
    row = Screener(roguin, compare_with=paper).item(Item("line 1", json.dumps(record)))
    assert row["category"] == "randomized"
    assert (row["criteria_set_check"]["set"], row["criteria_set_check"]["decision"]) == ("paper-2024", "undetermined")
    row = Screener(paper, compare_with=roguin).item(Item("line 1", json.dumps(base_record())))
    assert row["criteria_set_check"]["decision"] == "error"
    assert "conditions: unknown field" in row["criteria_set_check"]["error"]
    model = roguin.record.model.model_validate_json(json.dumps(record))
    assert screening.screen_one(model, paper)["decision"] == "undetermined"  # read again with paper's fields


def test_a_pack_without_a_site_field_screens(tmp_path: Path) -> None:
    folder = _pack_copy(tmp_path)
    _edit(folder, "fields.yaml", "  site:\n    type: name\n    label: Site\n    help: Screening centre.\n", "")
    ruleset = load_ruleset(folder / "paper-2024.yaml")
    record = base_record()
    del record["site"]
    row = _screen(ruleset, [record])[0]
    assert (row["decision"], row["site"]) == ("eligible", None)


def test_csv_cells_of_number_and_negative_int_fields_are_typed(tmp_path: Path) -> None:
    folder = _pack_copy(tmp_path)
    _edit(folder, "fields.yaml", "  deceased_date:\n", "  weight_kg: {type: number, min: 20}\n  offset: {type: int, min: -5}\n"
          "  deceased_date:\n")
    ruleset = load_ruleset(folder / "paper-2024.yaml")
    from screening.io import read_records
    text = "candidate_id,screening_start,weight_kg,offset\nA,2023-03-01,71.5,-3\nB,2023-03-01,heavy,x\n"
    items = list(read_records(io.StringIO(text), "csv", kinds=ruleset.record.kinds))
    rows = [Screener(ruleset, evaluator=PythonEvaluator(ruleset)).item(item) for item in items]
    assert rows[0]["decision"] == "undetermined"
    assert rows[1]["decision"] == "error" and "weight_kg: must be a finite number" in rows[1]["error"]


# ---------------------------------------------------------------------------------------------
# The screener's questions live in the pack, beside their fields


def _asked(ruleset: screening.Ruleset) -> set[str]:
    """Every field path an ask of the set can name (field lists expanded to every field they may hold)."""
    paths: set[str] = set()
    for crit in ruleset.criteria.values():
        for item in set(crit.ask).union(*(rule.ask for rule in crit.rules)):
            if item.startswith("@"):  # a list of an object's fields: any of them
                paths |= {p for p in ruleset.record.paths if p.startswith("nlc_assessment.differentials.")}
            else:
                paths.add(item)
    return paths


@pytest.mark.parametrize("name", ["paper-2024", "registry-2023", "roguin-2017"])
def test_every_field_a_set_asks_about_has_a_question_in_english_and_chinese(name: str) -> None:
    ruleset = load_ruleset(name)
    asked = _asked(ruleset)
    assert "birth_date" in asked and "consent" in asked
    for path in sorted(asked):
        spec = ruleset.record.get(path)
        assert spec is not None, path
        assert set(spec.question) == {"en", "zh"}, path
        assert spec.question["en"].endswith("?") and re.search(r"[\u4e00-\u9fff]", spec.question["zh"]), path
    assert "native" in ruleset.record.question_review["zh"]  # the Chinese drafts say they need review


def test_text_output_asks_the_open_questions_one_per_line_most_decisive_first(tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cli
    result = CliRunner().invoke(cli.main, ["screen", str(ROOT / "examples" / "sparse.json")])
    lines = result.output.splitlines()
    start = lines.index("  ask next:")
    asked = [line.split(" — answer: ")[0] for line in lines[start + 1:] if line.startswith("    ") and "] — " in line]
    assert asked[0] == "    Has the candidate ever had hypothyroidism (now, in the past, or never)? " \
                       "[conditions.hypothyroidism]"
    row = json.loads(CliRunner().invoke(cli.main, ["screen", str(ROOT / "examples" / "sparse.json"), "--format",
                                                   "jsonl"]).output)
    assert [line.rsplit("[", 1)[1][:-1] for line in asked] == row["ask_next"]  # JSON keeps the field paths
