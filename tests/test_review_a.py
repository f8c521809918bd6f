"""Regression tests for review A's findings on the question order, the interview and the form
(the reproductions of /tmp/review-a/, made self-contained): the medicines are asked before the
history is called complete (1), an answer is not asked round and round and a list answer adds to the
list (2), an unreadable record is never "decided" (7), the probe budget, the page data's escaping,
and the interview's accepted answers living in i18n.py. Findings 3 and 6: tests/test_service_guard.py
and tests/test_form_browser.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import screening
from screening import i18n
from screening.ask import PROBE_BUDGET, QuestionOrder, question_order
from screening.interview import BadAnswer, interview, parse_answer
from screening.log import ScreeningLog
from tests.conftest import ROOT, base_record

#: /tmp/review-a/nomeds.json: everything answered but the medicines and whether their history is complete
NOMEDS = base_record(candidate_id="GC-033", medications=None, medication_history_taken=None)
#: /tmp/review-a/meds.json: a stopped anticoagulant and a diuretic without a stop date
MEDS = base_record(candidate_id="GC-034", medications=[
    {"name": "warfarin sodium 3 mg", "atc": "B01AA03", "start_date": "2021-05-01", "stop_date": "2022-06-01"},
    {"name": "furosemide 40 mg", "atc": "C03CA01", "start_date": "2022-01-01"}])
#: /tmp/review-a/hypo.json: a past condition, which the investigator reviews
HYPO = base_record(candidate_id="GC-035", medications=[],
                   conditions={**base_record()["conditions"], "hypothyroidism": "history"})


def _run(record: dict[str, Any] | None, answers: bytes, tmp_path: Path) -> tuple[subprocess.CompletedProcess[bytes],
                                                                                Path]:
    exe = Path(sys.executable).with_name("nlc-screen")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-c", "import cli; cli.main()"]
    out = tmp_path / "out.json"
    args = ["-o", str(out)]
    if record is not None:
        resume = tmp_path / "resume.json"
        resume.write_text(json.dumps(record), encoding="utf-8")
        args += ["--resume", str(resume)]
    env = {**os.environ, "NLC_SCREEN_HOME": str(tmp_path)}
    env.pop("NLC_SCREEN_LANG", None)
    done = subprocess.run([*cli, "interview", *args], input=answers, capture_output=True, cwd=ROOT, env=env,
                          timeout=120)
    return done, out


def _asked(stdout: bytes) -> list[str]:
    lines = stdout.decode().splitlines()
    return [lines[i + 1].split(" — ")[0].strip() for i, line in enumerate(lines)
            if line.startswith("Q") and i + 1 < len(lines) and " — " in lines[i + 1]]


# -- finding 1: the medicines before "the history is complete" -------------------------------------

def test_the_medicines_are_asked_before_the_history_is_called_complete(paper: screening.Ruleset) -> None:
    order = [q.path for q in question_order(NOMEDS, paper).questions]
    assert order == ["medications", "medication_history_taken"]
    # from nothing: still just before it, whatever the probes say about the yes/no alone
    order = [q.path for q in question_order({"candidate_id": "A", "screening_start": "2023-03-01"}, paper).questions]
    assert order.index("medications") == order.index("medication_history_taken") - 1
    # once the list is answered, the ordinary ranking applies again
    assert question_order({**NOMEDS, "medications": []}, paper).questions[0].path == "medication_history_taken"


def test_a_candidate_on_a_diuretic_is_excluded_once_the_screener_lists_it(tmp_path: Path) -> None:
    # the review's reproduction: `printf 'yes\n' | nlc-screen interview --resume nomeds.json` was ELIGIBLE
    done, out = _run(NOMEDS, b"", tmp_path)
    assert _asked(done.stdout) == ["medications"] and b"ELIGIBLE" not in done.stdout
    # listed with its dates: excluded at once
    listed = b'[{"name": "furosemide 40 mg", "start_date": "2023-01-01", "ongoing": true}]\n'
    done, out = _run(NOMEDS, listed, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _asked(done.stdout) == ["medications"] and b"EXCLUDED" in done.stdout and b"because E13" in done.stdout
    # by name first, then the history, then the same medicine again with what it lacked
    answers = b'furosemide 40 mg\nyes\n{"name": "furosemide 40 mg", "ongoing": true}\n'
    done, out = _run(NOMEDS, answers, tmp_path)
    assert _asked(done.stdout) == ["medications", "medication_history_taken", "medications"]
    assert b"EXCLUDED" in done.stdout and b"because E13" in done.stdout
    assert json.loads(out.read_text())["medications"] == [{"name": "furosemide 40 mg", "ongoing": True}]


# -- finding 2: no question round and round; a list answer adds ------------------------------------

def test_an_answer_under_review_is_not_asked_again(paper: screening.Ruleset, tmp_path: Path) -> None:
    plan = question_order(HYPO, paper)
    assert plan.row["criteria"]["E1"]["status"] == "review" and plan.questions == []
    done, out = _run(HYPO, b"history\nhistory\nhistory\n", tmp_path)
    assert done.returncode == 0 and _asked(done.stdout) == []
    assert b"the investigator decides the criteria in review" in done.stdout and b"Decided" not in done.stdout
    assert json.loads(out.read_text()) == HYPO


def test_an_answer_that_leaves_a_criterion_unknown_is_not_asked_forever(paper: screening.Ruleset) -> None:
    answers = iter(["unknown", "unknown", "unknown"])
    asked: list[str] = []
    record = {**HYPO, "conditions": {**HYPO["conditions"], "hypothyroidism": "absent", "alcoholism": None}}
    record["conditions"].pop("alcoholism")
    done = interview(paper, ask=lambda _p: next(answers, None), say=lambda t: asked.append(t) if t.startswith("Q") else None,
                     record=record)
    assert len(asked) == 1 and done.ended == "unknown" and done.record["conditions"]["alcoholism"] == "unknown"


def test_a_list_answer_adds_to_the_list_and_shows_what_it_holds(tmp_path: Path) -> None:
    done, out = _run(MEDS, b"furosemide\n\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert b'now: [{"name": "warfarin sodium 3 mg"' in done.stdout and b"entries are added" in done.stdout
    saved = json.loads(out.read_text())["medications"]
    assert saved[:2] == MEDS["medications"]  # warfarin and every date kept (the review: all gone)
    assert saved[2:] == [{"name": "furosemide"}]
    # the same entry again updates it, keeping what the answer does not give
    done, out = _run(MEDS, b'{"name": "furosemide 40 mg", "stop_date": "2022-02-01"}\n', tmp_path)
    saved = json.loads(out.read_text())["medications"]
    assert saved[1] == {**MEDS["medications"][1], "stop_date": "2022-02-01"} and len(saved) == 2
    assert b"ELIGIBLE" in done.stdout


# -- finding 7: an unreadable record is never "decided" --------------------------------------------

def test_an_unreadable_record_asks_its_refused_fields_or_fails_naming_them(tmp_path: Path) -> None:
    bad = {"candidate_id": "B-1", "screening_start": "2023-03-01", "sex": "f", "birth_date": "1950-13-01"}
    done, _ = _run(bad, b"", tmp_path)  # the review: "Decided after 0 question(s)", exit 0
    assert done.returncode == 1 and b"Decided" not in done.stdout
    assert b"resume.json" in done.stderr and b"birth_date, sex" in done.stderr
    done, out = _run(bad, b"1950-01-01\nfemale\n", tmp_path)
    assert _asked(done.stdout)[:2] == ["birth_date", "sex"] and b"The record's answer is not accepted" in done.stdout
    assert json.loads(out.read_text())["birth_date"] == "1950-01-01" and json.loads(out.read_text())["sex"] == "female"
    # a refused list entry cannot be asked as one value: fail naming the file and the field
    entry = {**base_record(), "medications": [{"name": "x", "start_date": "2023-01-01", "stop_date": "2022-01-01"}]}
    done, _ = _run(entry, b"", tmp_path)
    assert done.returncode == 1 and b"medications[0]" in done.stderr and b"Decided" not in done.stdout


def test_an_answer_that_is_not_utf8_is_asked_again(paper: screening.Ruleset, tmp_path: Path) -> None:
    with pytest.raises(BadAnswer):
        parse_answer(paper.record.get("candidate_id"), "C-\udcff\udcfe1")
    done, out = _run(None, b"C-\xff\xfe1\nC-1\n2023-03-01\n", tmp_path)
    assert b"Not an answer this question takes" in done.stdout
    assert json.loads(out.read_text())["candidate_id"] == "C-1"


# -- suspected/minor -------------------------------------------------------------------------------

def test_the_probes_of_a_large_record_stay_within_the_budget(paper: screening.Ruleset,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    many = [{"name": f"vitamin D {i}", "start_date": "2020-01-01", "stop_date": "2020-02-01"} for i in range(4000)]
    record = {"candidate_id": "BIG", "screening_start": "2023-03-01", "medications": many}  # ~20 fields open
    size = len(json.dumps(record, ensure_ascii=False))
    assert size > 300_000
    order = QuestionOrder(paper)
    calls: list[int] = []
    real = order.screen

    def counting(rec: Any, **kw: Any) -> dict[str, Any]:
        calls.append(1)
        return real(rec, **kw)

    monkeypatch.setattr(order, "screen", counting)
    began = time.perf_counter()
    plan = order(record)
    assert len(calls) * size <= PROBE_BUDGET + 2 * size  # the review: each open field re-screened per probe
    assert plan.questions and time.perf_counter() - began < 5


def test_the_page_data_cannot_break_out_of_its_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screening import form
    from screening.service import create_app

    real = form.page_data

    def hostile(ruleset: screening.Ruleset, *, auth: bool) -> dict[str, Any]:
        data = real(ruleset, auth=auth)
        data["boxes"]["randomized"]["en"] = "R <!--<script> & </script><script>alert(1)</script>"
        return data

    monkeypatch.setattr(form, "page_data", hostile)
    with TestClient(create_app(log=ScreeningLog(f"sqlite:///{tmp_path / 'l.db'}"), tokens={}),
                    base_url="http://localhost") as client:
        page = client.get("/").text
    start = page.index('<script id="nlc-data" type="application/json">') + len('<script id="nlc-data" type="application/json">')
    body = page[start:page.index("</script>", start)]
    assert not set("<>&") & set(body)
    assert json.loads(body)["boxes"]["randomized"]["en"].startswith("R <!--<script> & </script>")


def test_the_interviews_accepted_answers_live_in_i18n(paper: screening.Ruleset,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = paper.record.get("medication_history_taken")
    assert parse_answer(spec, "是") is True and parse_answer(spec, "否") is False
    assert parse_answer(paper.record.get("medications"), "无") == []
    monkeypatch.setitem(i18n.ANSWER_WORDS["yes"], "en", ("aye",))
    assert parse_answer(spec, "aye") is True
    with pytest.raises(BadAnswer):
        parse_answer(spec, "yes")  # no longer one of them: the interview has no list of its own
