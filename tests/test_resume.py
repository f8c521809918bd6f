"""Crash-safe, resumable batches (issue 19, point 2): ``screen IN -o OUT --resume``, killed with SIGKILL
at random points and run again, gives every input record exactly once in OUT and in the log — and
OUT byte for byte what an uninterrupted run writes."""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
import screening.log
import screening.resume
from screening.log import ScreeningLog

from .conftest import FIXTURES

NLC = str(Path(sys.executable).parent / "nlc-screen")
FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args))


def _input_with_duplicates(path: Path, count: int) -> list[str]:
    """``count`` generated records, then the first record again and a near duplicate of the second (so the
    duplicate check must remember records from before any interruption)."""
    done = subprocess.run([NLC, "generate", "--n", str(count), "--seed", "19", "-o", str(path)], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = path.read_text(encoding="utf-8").splitlines()
    second = json.loads(lines[1])
    second["candidate_id"] = " " + str(second["candidate_id"]).lower() + " "
    lines += [lines[0], json.dumps(second)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _committed(journal: Path) -> int:
    """The rows the journal's last complete commit counts (0 before the first)."""
    try:
        lines = journal.read_bytes().split(b"\n")[1:-1]
    except FileNotFoundError:
        return 0
    return json.loads(lines[-1])["rows"] if lines else 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_batch_killed_again_and_again_resumes_to_every_record_exactly_once(workers: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = _input_with_duplicates(source, 4000)
    total = len(lines)
    reference = tmp_path / "reference.jsonl"
    assert _run("screen", str(source), "--format", "jsonl", "-o", str(reference)).exit_code == 3  # some error rows
    out = tmp_path / "out.jsonl"
    partial, journal = Path(f"{out}.partial"), Path(f"{out}.partial.journal")
    log = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    command = [NLC, "screen", str(source), "--format", "jsonl", "-o", str(out), "--resume", "--log", log,
               "--workers", workers, "--screener", "night-batch"]
    rng = random.Random(int(workers))
    kills: list[int] = []  # the rows committed when each kill struck
    runs = 0
    while not out.exists():
        runs += 1
        assert runs <= 30, f"no completion after {runs} runs (kills at {kills})"
        before = _committed(journal)
        with open(tmp_path / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
            if runs == 1:  # the first kill strikes early: starting up, opening the log, the first rows
                time.sleep(rng.uniform(0.05, 0.4))
            if runs == 1 or len(kills) < 4:  # then at a random moment after the run made progress of its own
                deadline = time.monotonic() + 60
                while runs > 1 and _committed(journal) == before and proc.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.05) if runs > 1 else 0)  # a few hundred rows on, at most
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    if not out.exists():  # (a kill after the rename found the run complete: checked below)
                        kills.append(_committed(journal))
                    continue
            proc.wait(timeout=120)
        stderr = (tmp_path / "stderr.txt").read_text()
        assert proc.returncode == 3, stderr  # error rows among the generated records, as in the reference
        if kills:
            assert "Resuming" in stderr
    assert len(kills) >= 3 and len({k for k in kills if 0 < k < total}) >= 2, kills
    if journal.exists():  # killed between the rename and removing the journal: the next run only tidies up
        tidy = subprocess.run(command, capture_output=True, timeout=120)
        assert tidy.returncode == 0 and b"completed by an earlier run" in tidy.stderr
    assert not partial.exists() and not journal.exists()
    assert out.read_bytes() == reference.read_bytes()  # every row once, in order, as if never interrupted
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == total
    assert sum("a second record for candidate" in " ".join(r.get("warnings", [])) for r in rows) >= 1
    assert any("once case and surrounding spaces are ignored" in " ".join(r.get("warnings", [])) for r in rows)

    with sqlite3.connect(tmp_path / "log.sqlite3") as db:
        logged = db.execute("SELECT position, row, batch_id FROM entries ORDER BY id").fetchall()
    assert len(logged) == total
    assert len({batch for _, _, batch in logged}) == 1  # one batch, resumed, not one per run
    assert [position for position, _, _ in logged] == [f"line {n}" for n in range(1, total + 1)]
    assert [json.loads(row) for _, row, _ in logged] == rows  # the log holds exactly the rows written


class _Killed(KeyboardInterrupt):
    """Stands for the process being stopped after some commits."""


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, commits: int) -> None:
    real = screening.resume.ResumableOutput.commit
    seen = [0]

    def commit(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        seen[0] += 1
        if seen[0] == commits:
            raise _Killed

    monkeypatch.setattr(screening.resume.ResumableOutput, "commit", commit)


@pytest.mark.parametrize("fmt", ["csv", "json", "text", "jsonl"])
def test_every_format_resumes_to_the_output_of_an_uninterrupted_run(fmt: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 40)
    reference, out = tmp_path / f"reference.{fmt}", tmp_path / f"out.{fmt}"
    assert _run("screen", str(FIGURE1), "--format", fmt, "-o", str(reference)).exit_code == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)
        stopped = _run("screen", str(FIGURE1), "--format", fmt, "-o", str(out), "--resume")
    assert stopped.exit_code == 130 and not out.exists()
    assert "run the same command again" in stopped.stderr
    assert _committed(Path(f"{out}.partial.journal")) == 120
    with open(f"{out}.partial", "ab") as f:  # rows written after the last commit, one of them torn
        f.write(b"half a row")
    with open(f"{out}.partial.journal", "ab") as f:
        f.write(b'{"rows": 160, "err')  # a commit being written when the process died
    again = _run("screen", str(FIGURE1), "--format", fmt, "-o", str(out), "--resume")
    assert again.exit_code == 0, again.output
    assert "Resuming" in again.stderr and "going on from record 121" in again.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert not Path(f"{out}.partial").exists() and not Path(f"{out}.partial.journal").exists()


@pytest.mark.parametrize("lost_commits", [0, 2])
def test_a_resumed_run_logs_each_record_once_whether_the_log_is_behind_or_ahead_of_the_output(
        lost_commits: int, log_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 50)
    real_batch = ScreeningLog.batch

    def batch(self: ScreeningLog, **options: Any) -> Any:  # the log commits at other points than the output
        return real_batch(self, **dict(options, commit_every=70))

    monkeypatch.setattr(ScreeningLog, "batch", batch)
    reference, out = tmp_path / "reference.jsonl", tmp_path / "out.jsonl"
    assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(reference)).exit_code == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)  # the output has 150 rows committed; the log 140 entries
        assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume",
                    "--log", log_url).exit_code == 130
    journal = Path(f"{out}.partial.journal")
    if lost_commits:  # the output's last commits never reached the disk, the log's did: the log is ahead (140 > 50)
        lines = journal.read_bytes().split(b"\n")
        journal.write_bytes(b"\n".join(lines[:-1 - lost_commits]) + b"\n")
    assert _committed(journal) == 150 - 50 * lost_commits
    log = ScreeningLog(log_url)
    try:
        assert log.count() == 140
        done = _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume", "--log", log_url)
        assert done.exit_code == 0, done.output
        assert "170 decision(s) appended" in done.stderr
        assert out.read_bytes() == reference.read_bytes()
        positions = [h["position"] for r in log.current_rows() for h in log.history(r["candidate_id"], r["site"])]
        assert sorted(positions) == sorted(f"line {n}" for n in range(1, 311))  # each record logged once
        assert list(log.current_rows()) == [json.loads(line) for line in reference.read_text().splitlines()]
    finally:
        log.close()


def test_resume_refuses_another_input_other_options_a_finished_output_and_stdin(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 100)
    source = tmp_path / "in.jsonl"
    source.write_bytes(FIGURE1.read_bytes())
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run("screen", str(source), "--format", "jsonl", "-o", str(out), "--resume").exit_code == 130
    other = _run("screen", str(source), "--format", "csv", "-o", str(out), "--resume")
    assert other.exit_code == 1 and "another format" in other.output
    assert "run the same command again" not in other.output
    with open(f"{out}.partial", "rb") as held:  # a run still writing it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        busy = _run("screen", str(source), "--format", "jsonl", "-o", str(out), "--resume")
    assert busy.exit_code == 1 and "another nlc-screen run is writing" in busy.output
    source.write_bytes(FIGURE1.read_bytes() + FIGURE1.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")
    changed = _run("screen", str(source), "--format", "jsonl", "-o", str(out), "--resume")
    assert changed.exit_code == 1 and "the input file's contents" in changed.output
    assert Path(f"{out}.partial").exists()  # refused, never overwritten

    done = tmp_path / "done.jsonl"
    assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(done), "--resume").exit_code == 0
    finished = _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(done), "--resume")
    assert finished.exit_code == 1 and "it is complete" in finished.output
    assert _run("screen", "-", "-o", str(tmp_path / "x.jsonl"), "--resume").exit_code == 2
    assert _run("screen", str(FIGURE1), "--resume").exit_code == 2
    assert not os.path.exists(tmp_path / "x.jsonl.partial")


def test_a_symlinked_output_is_written_through_and_its_partial_file_sits_beside_the_real_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 100)
    real = tmp_path / "store" / "decisions.jsonl"
    real.parent.mkdir()
    real.write_text("yesterday\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(real)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(link), "--resume").exit_code == 1
    # an existing output (yesterday's) with no journal: --resume refuses it rather than guess
    real.unlink()
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(link), "--resume").exit_code == 130
    assert Path(f"{real}.partial").exists() and not Path(f"{link}.partial").exists()
    assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(link), "--resume").exit_code == 0
    assert link.is_symlink() and len(real.read_text().splitlines()) == 310


def test_a_run_killed_after_its_output_was_renamed_is_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 100)
    out = tmp_path / "out.jsonl"
    journal = Path(f"{out}.partial.journal")
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume").exit_code == 130
    kept = journal.read_bytes()
    assert _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume").exit_code == 0
    complete = out.read_bytes()
    journal.write_bytes(kept)  # as if killed after the rename, before the journal was removed
    again = _run("screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume")
    assert again.exit_code == 0 and "completed by an earlier run" in again.stderr
    assert out.read_bytes() == complete and not journal.exists()


def test_resume_refuses_another_screener_or_nlc_screen_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 100)
    out, url = tmp_path / "out.jsonl", f"sqlite:///{tmp_path / 'log.sqlite3'}"
    command = ["screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--resume", "--log", url]
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run(*command, "--screener", "nurse-1").exit_code == 130
    other = _run(*command, "--screener", "nurse-2")  # the batch's entries would name two screeners
    assert other.exit_code == 1 and "another screener" in other.output
    with monkeypatch.context() as patch:
        patch.setattr(screening.log, "tool_version", lambda: "99.0.0")
        newer = _run(*command, "--screener", "nurse-1")
        assert newer.exit_code == 1 and "another nlc_screen_version" in newer.output
    done = _run(*command, "--screener", "nurse-1")
    assert done.exit_code == 0, done.output
    log = ScreeningLog(url)
    try:
        assert log.count() == 310
    finally:
        log.close()


def test_a_stale_journal_whose_output_another_run_completed_is_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(screening.resume, "COMMIT_ROWS", 100)
    out, url = tmp_path / "out.jsonl", f"sqlite:///{tmp_path / 'log.sqlite3'}"
    command = ["screen", str(FIGURE1), "--format", "jsonl", "-o", str(out), "--log", url]
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert _run(*command, "--resume").exit_code == 130  # abandoned: 100 rows and their entries kept
    assert _run(*command).exit_code == 0  # a plain run completes OUT and logs every record
    complete = out.read_bytes()
    log = ScreeningLog(url)
    try:
        logged = log.count()
        stale = _run(*command, "--resume")
        assert stale.exit_code == 1, stale.output
        assert "another run completed it" in stale.output and "delete" in stale.output
        assert log.count() == logged  # nothing logged a second time
        assert out.read_bytes() == complete
    finally:
        log.close()
    Path(f"{out}.partial").unlink()
    Path(f"{out}.partial.journal").unlink()
    assert _run(*command, "--resume").exit_code == 1  # complete, no journal: as before
