"""Question order (screening.ask) and the guided interview (screening.interview, `nlc-screen interview`):
piped (the tests count the questions), through the library, and typed into a terminal under tmux as a
person would, Ctrl-C included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import screening
from screening.ask import get_path, question_order, set_path
from screening.interview import BadAnswer, interview, parse_answer
from tests.conftest import ROOT, base_record

START = {"candidate_id": "Q-1", "site": "test site", "screening_start": "2023-03-01"}


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("nlc-screen")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "import cli; cli.main()"]


def _eligible() -> dict[str, Any]:
    """A clean eligible, consented candidate with no medicine listed (the medicines question is answered "[]")."""
    record = base_record(medications=[])
    record.pop("sex")
    return record


def _answer(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- question order -------------------------------------------------------------------------------

def test_an_answer_that_alone_excludes_is_asked_before_one_that_cannot(paper: screening.Ruleset) -> None:
    plan = question_order(START, paper)
    assert not plan.decided and plan.row["decision"] == "undetermined"
    paths = [q.path for q in plan.questions]
    assert paths[0] == "birth_date"  # I1 is first in precedence, and a birth date alone can exclude
    assert plan.questions[0].distance == 0 and plan.questions[0].criteria == ("I1",)
    # the diary needs two answers (nights and episodes): it comes after every field that can exclude alone
    alone = [q.path for q in plan.questions if q.distance == 0]
    assert "conditions.hypothyroidism" in alone and "diary.nights_recorded" not in alone
    assert paths.index("diary.nights_recorded") > max(paths.index(p) for p in alone)
    # the rest are in ask_next's (precedence) order: ties keep it
    ask_next = plan.row["ask_next"]
    assert [p for p in paths if p in alone] == [p for p in ask_next if p in alone]


def test_question_order_is_generic_the_second_pack_asks_less() -> None:
    roguin = screening.load_ruleset("roguin-2017")
    plan = question_order(START, roguin)
    paths = [q.path for q in plan.questions]
    assert paths[0] == "birth_date"
    assert not any(p.startswith(("conditions", "medications", "nlc_assessment")) for p in paths)
    assert set(paths) == {"birth_date", "diary.nights_recorded", "diary.episodes"}


def test_missing_required_fields_are_asked_first_and_a_decided_record_asks_nothing(paper: screening.Ruleset) -> None:
    plan = question_order({}, paper)
    assert [(q.path, q.required) for q in plan.questions] == [("candidate_id", True), ("screening_start", True)]
    decided = question_order(_eligible(), paper)
    assert decided.decided and decided.row["decision"] == "eligible" and decided.questions == []
    excluded = question_order({**START, "birth_date": "1990-01-01"}, paper)
    assert excluded.decided and excluded.row["decision"] == "excluded"


def test_skipped_questions_are_not_asked_again(paper: screening.Ruleset) -> None:
    plan = question_order(START, paper, skip=["birth_date"])
    assert plan.questions[0].path == "conditions.hypothyroidism"


def test_answers_are_parsed_by_the_field_type(paper: screening.Ruleset) -> None:
    spec = paper.record.get
    assert parse_answer(spec("conditions.hypothyroidism"), " Absent ") == "absent"
    assert parse_answer(spec("conditions.hypothyroidism"), "1") == "active"
    assert parse_answer(spec("nlc_assessment.confirmed"), "是") is True
    assert parse_answer(spec("diary.nights_recorded"), "14") == 14
    assert parse_answer(spec("diary.episodes"), "2023-03-02, 2023-03-05") == [
        {"night_of": "2023-03-02"}, {"night_of": "2023-03-05"}]
    assert parse_answer(spec("diary.episodes"), "none") == []
    for path, bad in (("birth_date", "15/06/1950"), ("birth_date", "1950-02-30"), ("diary.nights_recorded", "many"),
                      ("conditions.hypothyroidism", "maybe"), ("nlc_assessment.confirmed", "perhaps")):
        with pytest.raises(BadAnswer):
            parse_answer(spec(path), bad)


def test_the_library_interview_asks_only_what_is_needed(paper: screening.Ruleset) -> None:
    truth = _eligible()
    asked: list[str] = []

    def ask(_prompt: str) -> str | None:
        value = get_path(truth, asked[-1])
        return "" if value is None else _answer(value)

    def say(text: str) -> None:
        if text.startswith("Q"):
            asked.append(text.splitlines()[1].split(" — ")[0].strip())

    done = interview(paper, ask=ask, say=say)
    assert done.ended == "decided" and done.row is not None
    assert (done.row["decision"], done.row["category"]) == ("eligible", "randomized")
    assert done.asked == asked and len(asked) == len(set(asked))
    # every answer was needed: without any one of them the candidate is no longer decided
    for path in asked:
        parts = path.split(".")
        record = json.loads(json.dumps(done.record))
        node = record
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]
        if path in ("candidate_id", "screening_start"):
            continue  # required: without them the record is not screened at all
        if paper.record.get(path).type == "list" and get_path(done.record, path) == []:
            continue  # an empty list is asked before the yes/no that says it is complete (ask.py rule 4)
        assert screening.screen_one(record, paper)["decision"] != "eligible" or \
            screening.screen_one(record, paper)["category"] != "randomized", path


# -- nlc-screen interview, piped ---------------------------------------------------------------------

def _piped(answers: list[str], *args: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "record.json"
    env = {**os.environ, "NLC_SCREEN_HOME": str(tmp_path), "NLC_SCREEN_LANG": ""}
    env.pop("NLC_SCREEN_LANG")
    done = subprocess.run([*_cli(), "interview", "-o", str(out), *args], input="".join(a + "\n" for a in answers),
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    return done, out


def _questions(stdout: str) -> list[str]:
    """The field paths asked, from the transcript: each question's second line names its field."""
    lines = stdout.splitlines()
    return [lines[i + 1].split(" — ")[0].strip() for i, line in enumerate(lines)
            if line.startswith(("Q", "问题")) and i + 1 < len(lines) and " — " in lines[i + 1]]


def test_piped_interview_of_an_eligible_candidate(paper: screening.Ruleset, tmp_path: Path) -> None:
    truth = _eligible()
    plan_order = []
    record: dict[str, Any] = {}
    while True:  # what the questions must be: the library's order, answered from the truth
        plan = question_order(record, paper)
        if plan.decided:
            break
        path = plan.questions[0].path
        plan_order.append(path)
        set_path(record, path, get_path(truth, path))
    answers = [_answer(get_path(truth, path)) for path in plan_order]
    done, out = _piped(answers, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    asked = _questions(done.stdout)
    assert asked == plan_order
    # 2 required + birth date + 12 conditions + 5 NLC assessment + medications + medication history + episodes
    # + consent: two diary episodes settle I2 whatever the nights recorded, so that question is not needed;
    # the medicines are asked before the history is said to be complete (ask.py rule 4)
    assert len(asked) == 24
    assert not {"conditions.peritoneal_dialysis", "diary.nights_recorded"} & set(asked)
    assert asked.index("medications") == asked.index("medication_history_taken") - 1  # review A, finding 1
    assert "Decided after 24 question(s)." in done.stdout
    assert "T-001: ELIGIBLE" in done.stdout  # site is not asked: the decision does not need it
    saved = json.loads(out.read_text())
    assert saved["consent"] == "signed" and len(saved["diary"]["episodes"]) == 2


@pytest.mark.parametrize(("answers", "count", "primary"), [
    (["X-1", "2023-03-01", "1990-01-01"], 3, "I1"),                  # the birth date alone excludes
    (["X-1", "2023-03-01", "1950-01-01", "active"], 4, "E1"),        # hypothyroidism alone excludes
])
def test_piped_interview_stops_at_the_answer_that_excludes(answers: list[str], count: int, primary: str,
                                                           tmp_path: Path) -> None:
    done, out = _piped(answers + ["absent"] * 5, tmp_path=tmp_path)  # answers to spare: none may be asked for
    assert done.returncode == 0, done.stderr
    assert len(_questions(done.stdout)) == count
    assert f"Decided after {count} question(s)." in done.stdout
    assert "X-1: EXCLUDED" in done.stdout and f"because {primary} " in done.stdout
    assert json.loads(out.read_text())["candidate_id"] == "X-1"


def test_a_malformed_answer_is_asked_again_with_the_expected_format(tmp_path: Path) -> None:
    done, _ = _piped(["X-2", "1st of March", "2023-03-01", "2024-01-01", "1990-01-01"], tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Not an answer this question takes: a date, YYYY-MM-DD. Please answer again.") == 1
    # a birth date after screening_start is refused by the record model, naming the field, not the value
    assert "Not accepted (birth_date: is after screening_start)" in done.stdout
    assert "2024-01-01" not in done.stdout.split("Not accepted")[1].splitlines()[0]
    assert len(_questions(done.stdout)) == 3 and "X-2: EXCLUDED" in done.stdout


def test_chinese_interview_of_the_second_pack_resumes_and_logs(tmp_path: Path) -> None:
    resume = tmp_path / "start.json"
    resume.write_text(json.dumps({"candidate_id": "M-1", "screening_start": "2013-03-01"}))
    log = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    done, out = _piped(["1960-05-05", "2013-03-02, 2013-03-03, 2013-03-04, 2013-03-05", "signed"],
                       "--rules", "roguin-2017", "--lang", "zh", "--resume", str(resume), "--log", log,
                       tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "志愿者的出生日期是哪一天？" in done.stdout
    # four episodes settle I2 whatever the nights recorded: birth date, episodes, consent
    assert _questions(done.stdout) == ["birth_date", "diary.episodes", "consent"]
    assert "共问 3 个问题后作出决定。" in done.stdout
    from screening.log import ScreeningLog
    with ScreeningLog(log) as opened:
        history = opened.history("M-1", None)
    assert [h["row"]["decision"] for h in history] == ["eligible"]
    assert json.loads(out.read_text())["consent"] == "signed"


def test_skipping_every_open_question_leaves_the_candidate_undetermined(tmp_path: Path) -> None:
    done, _ = _piped(["U-1", "2013-03-01", "", "", ""], "--rules", "roguin-2017", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Every open question was skipped (5 asked)" in done.stdout
    assert "U-1: UNDETERMINED" in done.stdout


def test_the_end_of_piped_answers_saves_the_record(tmp_path: Path) -> None:
    done, out = _piped(["U-2", "2023-03-01", "1950-01-01"], tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No more answers (4 question(s) asked)" in done.stdout
    assert json.loads(out.read_text()) == {"candidate_id": "U-2", "screening_start": "2023-03-01",
                                           "birth_date": "1950-01-01"}


# -- typed, under tmux ---------------------------------------------------------------------------------

def _tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed: CI runs the typed interview under tmux (.ci/run installs it)")
        pytest.skip("tmux is not installed (Debian: apt-get install tmux): the typed interview is not run")
    return found


@pytest.mark.timeout(120)
def test_typed_interview_under_tmux_and_ctrl_c_saves(tmp_path: Path) -> None:
    tmux = _tmux()
    socket = str(tmp_path / "tmux.sock")
    out = tmp_path / "typed.json"
    command = " ".join([*_cli(), "interview", "-o", str(out)])
    env = {**os.environ, "NLC_SCREEN_HOME": str(tmp_path)}
    env.pop("NLC_SCREEN_LANG", None)
    env.pop("TMUX", None)
    subprocess.run([tmux, "-S", socket, "new-session", "-d", "-x", "200", "-y", "50", "-s", "t",
                    f"cd {ROOT} && {command}; echo EXIT=$?; sleep 30"], check=True, env=env)

    def screen() -> str:
        return subprocess.run([tmux, "-S", socket, "capture-pane", "-p", "-t", "t", "-S", "-200"],
                              capture_output=True, text=True, check=True).stdout

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{screen()}")

    def type_(text: str) -> None:
        subprocess.run([tmux, "-S", socket, "send-keys", "-t", "t", text, "Enter"], check=True)

    try:
        wait_for("Q1. Candidate id?")
        type_("TY-1")
        wait_for("Q2.")
        type_("2023-03-01")
        wait_for("Q3. What is the candidate's date of birth?")
        type_("1950-13-01")  # a month that does not exist: asked again
        wait_for("Please answer again.")
        type_("1950-01-01")
        wait_for("Q4. Has the candidate ever had hypothyroidism")
        subprocess.run([tmux, "-S", socket, "send-keys", "-t", "t", "C-c"], check=True)
        shown = wait_for("EXIT=")
        assert "Interrupted: the answers so far are saved." in shown
        assert "EXIT=130" in shown
        assert json.loads(out.read_text()) == {"candidate_id": "TY-1", "screening_start": "2023-03-01",
                                               "birth_date": "1950-01-01"}
        # resumed, typed again: it goes on from the fourth question and stops at the answer that excludes
        subprocess.run([tmux, "-S", socket, "kill-session", "-t", "t"], check=True)
        subprocess.run([tmux, "-S", socket, "new-session", "-d", "-x", "200", "-y", "50", "-s", "t",
                        f"cd {ROOT} && {command} --resume {out}; echo EXIT=$?; sleep 30"], check=True, env=env)
        wait_for("Q1. Has the candidate ever had hypothyroidism")
        type_("active")
        shown = wait_for("EXIT=")
        assert "Decided after 1 question(s)." in shown and "TY-1: EXCLUDED" in shown and "EXIT=0" in shown
    finally:
        subprocess.run([tmux, "-S", socket, "kill-server"], capture_output=True)
