"""Two languages for screeners (issue 13): Chinese and English texts in the packs, `--lang` on screen,
rules and audit, what the investigator decides on a `review`, and the answer each question takes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
import screening
from screening.decision_row import DecisionRow
from screening.errors import RuleDefinitionError
from screening.i18n import PHRASES, Phrase, phrase
from screening.text import clip, pad, width

from .conftest import ROOT, base_record

ONE = str(ROOT / "examples" / "one.json")
SPARSE = str(ROOT / "examples" / "sparse.json")
FIGURE1 = str(ROOT / "fixtures" / "figure1" / "candidates.jsonl")
ROGUIN = str(ROOT / "fixtures" / "roguin-2017" / "candidates.jsonl")
CJK = re.compile(r"[\u4e00-\u9fff]")
CURRENT = ["paper-2024", "registry-2023", "mgo-nlc/roguin-2017"]


def _run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args), input=stdin, env=env)
    return result.exit_code, result.output


def _rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the packs: every text in both languages, every review says what to decide ---------------------

@pytest.mark.parametrize("name", CURRENT)
def test_every_current_set_is_written_in_english_and_chinese_and_says_it_is_a_draft(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    assert ruleset.languages == ("en", "zh")
    assert "native" in ruleset.translations["zh"]
    for crit in ruleset.ordered:
        assert CJK.search(crit.titles["zh"]), crit.id
        for outcome in (crit.default, *crit.rules):
            assert set(outcome.reasons) == {"en", "zh"} and CJK.search(outcome.reasons["zh"]), crit.id
    for box, texts in ruleset.labels.items():
        assert CJK.search(texts["zh"]), box


@pytest.mark.parametrize("name", CURRENT)
def test_every_review_outcome_says_what_the_investigator_decides_and_records(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    reviews = [(c.id, r) for c in ruleset.ordered for r in c.rules if r.status == "review"]
    assert reviews or name == "mgo-nlc/roguin-2017", "the nlc-k2 sets have review outcomes (roguin-2017 has none)"
    for cid, rule in reviews:
        assert set(rule.decide) == {"en", "zh"}, cid
        assert re.search(r"\b(record|log)\b", rule.decide["en"]), (cid, "says where to record it")
        assert CJK.search(rule.decide["zh"]) and "记" in rule.decide["zh"], cid


@pytest.mark.parametrize("name", CURRENT)
def test_every_asked_field_has_its_questions_its_label_and_answer_in_both_languages(name: str) -> None:
    ruleset = screening.load_ruleset(name)
    asked = {a for c in ruleset.ordered for a in (*c.ask, *(x for r in c.rules for x in r.ask)) if not a.startswith("@")}
    questioned = {spec.path for spec in ruleset.record.walk() if spec.question}
    assert asked <= questioned  # the fields behind an "@list" (differentials) have questions too
    for path in sorted(questioned):
        spec = ruleset.record.get(path)
        assert spec is not None and set(spec.question) == {"en", "zh"}, path
        assert set(spec.labels) == {"en", "zh"}, path
        for lang in ("en", "zh"):
            assert ruleset.record.answer_format(path, lang), (path, lang)
        assert CJK.search(ruleset.record.answer_format(path, "zh") or ""), path


def test_the_answer_format_follows_the_field_type_unless_the_pack_says_it() -> None:
    record = screening.load_ruleset("paper-2024").record
    assert record.answer_format("birth_date") == "a date, YYYY-MM-DD"
    assert record.answer_format("conditions.hypothyroidism") == "one of active / history / absent / unknown"
    assert record.answer_format("diary.nights_recorded") == "a whole number from 0 to 14"
    assert record.answer_format("medication_history_taken", "zh") == "是或否（true / false）"
    assert record.answer_format("medications", "en").startswith("one entry per medicine")  # the pack's own
    assert record.answer_format("no.such.field") is None


# -- screening in Chinese -----------------------------------------------------------------------

def test_screen_one_example_in_chinese_explains_the_decision_in_chinese() -> None:
    code, out = _run("screen", ONE, "--lang", "zh")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == ("CD-0420 (Third People's Hospital of Chengdu): 排除 — 符合排除标准 / "
                        "近期使用维生素K拮抗剂或维生素K2（E14、E15）")
    assert lines[1].startswith("  原因：E14 入组前2个月内使用维生素K拮抗剂：维生素K拮抗剂（warfarin sodium 3 mg）最后一次服用于 2023-01-20")
    assert any(line.startswith("  警告：本决定基于计划入组日期") for line in lines)
    assert any(line.startswith("           由研究者决定：") for line in lines)  # I3 review
    assert lines[-1].startswith("  ※ 中文为草稿") and "native" in lines[-1]
    for english in ("last taken", "inside the look-back", "because", "warning:", "ask next", "criteria ("):
        assert english not in out, english


def test_a_chinese_screen_asks_its_questions_in_chinese_with_the_field_and_the_answer() -> None:
    _, out = _run("screen", SPARSE, "--lang", "zh", "--brief")
    lines = out.splitlines()
    assert lines[2] == "  接下来请询问："
    assert lines[3] == ("    候选人目前或既往是否患有甲状腺功能减退症？ [conditions.hypothyroidism] — "
                        "回答：以下之一：active / history / absent / unknown")


def test_json_keeps_english_keys_and_statuses_with_chinese_reasons() -> None:
    _, en = _run("screen", FIGURE1, "--format", "jsonl")
    _, zh = _run("screen", FIGURE1, "--format", "jsonl", "--lang", "zh")
    en_rows, zh_rows = _rows(en), _rows(zh)
    assert len(en_rows) == len(zh_rows) == 310
    english_phrases = [t["en"] for t in PHRASES.values() if " " in t["en"].strip()]
    for a, b in zip(en_rows, zh_rows):
        assert list(a) == list(b)
        for key in ("decision", "category", "subcategory", "primary_criterion", "ask_next", "ruleset", "parameters"):
            assert a[key] == b[key], key
        assert a["criteria"].keys() == b["criteria"].keys()
        for cid, result in b["criteria"].items():
            assert result["status"] == a["criteria"][cid]["status"]
            assert CJK.search(result["reason"]) and "{" not in result["reason"], (b["candidate_id"], cid)
            assert not any(p.strip("; ()") in result["reason"] for p in english_phrases), result["reason"]
            assert ("decide" in result) == ("decide" in a["criteria"][cid])
        assert len(a["warnings"]) == len(b["warnings"])
        DecisionRow.model_validate(b)


def test_csv_reasons_follow_the_language_but_its_columns_do_not() -> None:
    _, en = _run("screen", ONE, "--format", "csv")
    _, zh = _run("screen", ONE, "--format", "csv", "--lang", "zh")
    assert en.splitlines()[0] == zh.splitlines()[0]
    assert "警告" not in zh and "本决定基于计划入组日期" in zh  # the warning column holds the Chinese text


def test_parallel_workers_give_the_same_chinese_rows_as_one_process(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    two = tmp_path / "two.jsonl"
    assert _run("screen", FIGURE1, "--format", "jsonl", "--lang", "zh", "-o", str(one))[0] == 0
    assert _run("screen", FIGURE1, "--format", "jsonl", "--lang", "zh", "--workers", "2", "-o", str(two))[0] == 0
    assert one.read_bytes() == two.read_bytes()


def test_the_environment_sets_the_default_language_and_the_option_overrides_it() -> None:
    _, zh = _run("screen", ONE, env={"NLC_SCREEN_LANG": "zh"})
    assert "排除" in zh.splitlines()[0]
    _, en = _run("screen", ONE, "--lang", "en", env={"NLC_SCREEN_LANG": "zh"})
    assert "EXCLUDED" in en.splitlines()[0]
    code, out = _run("screen", ONE, env={"NLC_SCREEN_LANG": "fr"})
    assert code == 2 and "NLC_SCREEN_LANG" in out or "fr" in out


def test_a_set_without_chinese_refuses_an_explicit_lang_zh_and_falls_back_from_the_environment() -> None:
    code, out = _run("screen", ONE, "--rules", "paper-2024@1.1.0", "--lang", "zh")
    assert code == 1 and "paper-2024 1.1.0 is written in en only" in out
    result = CliRunner().invoke(cli.main, ["screen", ONE, "--rules", "paper-2024@1.1.0"], env={"NLC_SCREEN_LANG": "zh"})
    assert result.exit_code == 0 and "EXCLUDED" in result.stdout
    assert "NLC_SCREEN_LANG=zh is ignored" in result.stderr


def test_record_errors_stay_english_in_every_language() -> None:
    bad = json.dumps({"candidate_id": "X", "screening_start": "2023-02-30"})
    _, out = _run("screen", "-", "--lang", "zh", stdin=bad)
    assert out.startswith("X: 错误 — 无法读取该记录") and "screening_start" in out and "date" in out


# -- rules and audit in Chinese -----------------------------------------------------------------

def test_audit_in_chinese_counts_the_same_boxes_with_chinese_labels() -> None:
    _, rows = _run("screen", FIGURE1, "--format", "jsonl")
    code_en, en = _run("audit", "-", "--expect", "figure1", stdin=rows)
    code_zh, zh = _run("audit", "-", "--expect", "figure1", "--lang", "zh", stdin=rows)
    assert code_en == code_zh == 0
    assert "不符合纳入标准" in zh and "符合排除标准" in zh and "全部" in zh and "Not meeting" not in zh
    numbers = [re.findall(r"\d+", line)[-1:] for line in en.splitlines()]  # each line's count (titles hold digits)
    assert numbers[2:12] == [re.findall(r"\d+", line)[-1:] for line in zh.splitlines()][2:12]
    for line in zh.splitlines()[2:12]:  # the counts stay in one column, Chinese labels counted two wide
        assert width(line.rstrip()[:-6]) == 58 or "ok" in line, line


def test_rules_in_chinese_shows_chinese_titles_and_what_to_decide() -> None:
    _, table = _run("rules", "--rules", "paper-2024", "--lang", "zh")
    assert "E1   甲状腺功能减退症" in table and "研究者决定：" in table
    _, page = _run("rules", "--rules", "paper-2024", "--format", "markdown", "--lang", "zh")
    assert "### E1 — 甲状腺功能减退症" in page and "| 结果 | 条件 | 理由 | 研究者需决定 |" in page
    _, data = _run("rules", "--rules", "paper-2024", "--format", "json", "--lang", "zh")
    parsed = json.loads(data)
    assert parsed["languages"] == ["en", "zh"] and parsed["criteria"][1]["title"] == "甲状腺功能减退症"


# -- English is unchanged by the translation ------------------------------------------------------

@pytest.mark.parametrize(("new", "old", "fixture"), [
    ("paper-2024", "paper-2024@1.1.0", FIGURE1),
    ("registry-2023", "registry-2023@1.1.0", FIGURE1),
    ("mgo-nlc/roguin-2017", "mgo-nlc/roguin-2017@1.0.0", ROGUIN),
])
def test_the_translated_sets_decide_in_english_exactly_as_the_released_ones(new: str, old: str, fixture: str) -> None:
    _, a = _run("screen", fixture, "--rules", new, "--format", "jsonl")
    _, b = _run("screen", fixture, "--rules", old, "--format", "jsonl")
    decided = 0
    for x, y in zip(_rows(a), _rows(b), strict=True):
        x.pop("ruleset"), y.pop("ruleset")
        for result in x.get("criteria", {}).values():
            decided += result.pop("decide", None) is not None
        assert x == y
    assert decided or "roguin" in new, "some review outcome in the fixture now says what to decide"


# -- the loader ---------------------------------------------------------------------------------

def _set(tmp_path: Path, edit: Any) -> Path:
    folder = tmp_path / "nlc-k2"
    import shutil

    shutil.copytree(ROOT / "rules" / "nlc-k2", folder, ignore=shutil.ignore_patterns("archive"))
    path = folder / "paper-2024.yaml"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def test_a_set_with_translations_refuses_a_text_without_chinese(tmp_path: Path) -> None:
    path = _set(tmp_path, lambda s: s.replace('reason: {en: "consent pending", zh: "知情同意待签署"}',
                                              'reason: "consent pending"'))
    with pytest.raises(RuleDefinitionError) as err:
        screening.load_ruleset(str(path))
    assert "I4" in str(err.value) and "every language" in str(err.value)


def test_a_set_without_translations_refuses_a_text_in_two_languages(tmp_path: Path) -> None:
    path = _set(tmp_path, lambda s: re.sub(r"translations:\n  zh: [^\n]*\n", "", s))
    with pytest.raises(RuleDefinitionError) as err:
        screening.load_ruleset(str(path))
    assert "translations" in str(err.value)


def test_a_chinese_reason_is_checked_like_the_english_one(tmp_path: Path) -> None:
    path = _set(tmp_path, lambda s: s.replace('zh: "知情同意待签署"', 'zh: "知情同意待签署 {no_such_fact}"'))
    with pytest.raises(RuleDefinitionError) as err:
        screening.load_ruleset(str(path))
    assert "no_such_fact" in str(err.value) and "I4" in str(err.value) and ".zh" in str(err.value)


def test_an_unknown_translation_language_is_refused(tmp_path: Path) -> None:
    path = _set(tmp_path, lambda s: s.replace("translations:\n  zh:", "translations:\n  fr:"))
    with pytest.raises(RuleDefinitionError) as err:
        screening.load_ruleset(str(path))
    assert "fr" in str(err.value) and "translations" in str(err.value)


# -- the pieces ---------------------------------------------------------------------------------

def test_a_phrase_is_its_english_and_knows_its_chinese() -> None:
    said = phrase("last_taken", date="2023-01-20")
    assert said == "last taken 2023-01-20" and said.say("zh") == "最后一次服用于 2023-01-20"
    import pickle

    again = pickle.loads(pickle.dumps(said))
    assert isinstance(again, Phrase) and again.say("zh") == said.say("zh")
    assert set(PHRASES) and all(set(t) == {"en", "zh"} for t in PHRASES.values())


def test_text_width_counts_chinese_characters_as_two_columns() -> None:
    assert width("abc") == 3 and width("排除") == 4
    assert pad("排除", 6) == "排除  " and pad("abc", 2) == "abc"
    assert clip("甲状腺功能减退症", 9) == "甲状腺功…" and width(clip("甲状腺功能减退症", 9)) <= 9


def test_screen_one_takes_a_language() -> None:
    row = screening.screen_one(base_record(candidate_id="L-1", consent="pending"), screening.load_ruleset(), lang="zh")
    assert row["decision"] == "eligible" and row["criteria"]["I4"]["reason"] == "知情同意待签署"
    with pytest.raises(ValueError, match="written in en only"):
        screening.screen_one(base_record(), screening.load_ruleset("paper-2024@1.1.0"), lang="zh")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_duplicate_warnings_follow_the_language(tmp_path: Path, workers: str) -> None:
    record = base_record()
    near = dict(record, candidate_id=f" {record['candidate_id'].lower()} ")
    source = tmp_path / "dupes.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in (record, record, near)), encoding="utf-8")

    def warnings(lang: str) -> list[list[str]]:
        result = CliRunner().invoke(cli.main, ["screen", str(source), "--format", "jsonl", "--lang", lang,
                                               "--workers", workers])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["warnings"] for line in result.stdout.splitlines()]
    english, chinese = warnings("en"), warnings("zh")
    assert any(w.startswith("a second record for candidate") for w in english[1])
    assert any(w.startswith("candidate") and "case and surrounding spaces" in w for w in english[2])
    assert any(w.startswith("本批中候选人") and "第一条在 line 1" in w for w in chinese[1])
    assert any(w.startswith("忽略大小写和首尾空格后") for w in chinese[2])
    assert not any("second record" in w or "surrounding spaces" in w for row in chinese for w in row)
