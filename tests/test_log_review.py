"""Findings of the outside review of the screening log (erasure, export/import), verify and
diff-rules: each case failed before its fix — on SQLite and PostgreSQL where a log is involved."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import cli
from screening import log as log_module
from screening.log import ScreeningLog, migrate

from .conftest import FIXTURES, base_record

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"
MARKER = "1931-07-29"


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), env=env)


def _export(url: str) -> list[dict[str, Any]]:
    done = _run("log", "export", url)
    assert done.exit_code == 0, done.output
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assessed(url: str) -> int:
    done = _run("audit", "--log", url, "--format", "json")
    assert done.exit_code in (0, 1), done.output
    return int(json.loads(done.stdout)["counts"]["assessed"])


def _screen(url: str, tmp_path: Path, *records: dict[str, Any], name: str = "in.jsonl") -> None:
    source = tmp_path / name
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    done = _run("screen", str(source), "--format", "jsonl", "-o", str(tmp_path / (name + ".out")), "--log", url)
    assert done.exit_code == 0, done.output


# -- 1. two candidates whose site and id join to the same text stay two ------------------------------

def test_candidates_whose_site_and_id_share_a_joined_text_stay_two_and_an_erasure_touches_one(
        log_url: str, tmp_path: Path) -> None:
    one = base_record(candidate_id="B\x1fC", site="A", birth_date=MARKER)
    two = base_record(candidate_id="C", site="A\x1fB")
    _screen(log_url, tmp_path, one, two)
    assert _assessed(log_url) == 2  # as `audit` of the decision file counts them
    done = _run("log", "erase", "--site", "A\x1fB", "--candidate", "C", "--reason", "test", "--log", log_url)
    assert done.exit_code == 0, done.output
    assert "1 input record(s) cleared from 1 entry" in done.stderr
    entries = {e["candidate_id"]: e for e in _export(log_url)}
    assert entries["C"]["record"] is None and entries["C"]["erasure"] is not None
    assert entries["B\x1fC"]["record"] is not None and entries["B\x1fC"]["erasure"] is None
    assert MARKER in entries["B\x1fC"]["record"]
    assert _assessed(log_url) == 2


def test_a_log_at_0004_is_upgraded_to_identities_that_tell_those_candidates_apart(log_url: str) -> None:
    url = log_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    migrate(engine, "0004")
    rows = [("e-1", "A", "B\x1fC"), ("e-2", "A\x1fB", "C"), ("e-3", "", "line 4")]
    with engine.begin() as conn:  # entries as nlc-screen wrote them at 0004: one identity for the first two
        for entry_id, site, cid in rows:
            identity = f"entry:{entry_id}" if cid.startswith("line") else f"{site}\x1f{cid}"
            row = {"candidate_id": cid, "site": site or None, "decision": "eligible", "category": "randomized"}
            conn.execute(text(
                "INSERT INTO entries (entry_id, site, candidate_id, identity, decision, category, row, pack, "
                "set_name, set_version, set_sha256, tool_version, screened_at, screener, batch_id, position) VALUES "
                "(:e, :s, :c, :i, 'eligible', 'randomized', :r, 'nlc-k2', 'paper-2024', '1.2.0', 'x', '0.1.0', "
                "'2023-03-02 00:00:00', 'old', 'b-1', 'line 1')"),
                {"e": entry_id, "s": site, "c": cid, "i": identity, "r": json.dumps(row)})
            conn.execute(text("INSERT INTO records (entry_id, input_sha256, body) VALUES (:e, 'h', '{}')"),
                         {"e": entry_id})
        conn.execute(text(
            "INSERT INTO erasures (erasure_id, identity, site, candidate_id, erased_at, erased_by, reason, entries) "
            "VALUES ('t-1', :i, 'A', 'B\x1fC', '2023-03-03 00:00:00', 'old', 'r', 2)"), {"i": "A\x1fB\x1fC"})
    engine.dispose()
    log = ScreeningLog(log_url)  # upgrades
    try:
        assert len(list(log.current_rows())) == 3
        engine = create_engine(url)
        with engine.connect() as conn:
            found = dict(conn.execute(text("SELECT entry_id, identity FROM entries")).all())
            tomb = conn.execute(text("SELECT identity FROM erasures")).scalar_one()
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        engine.dispose()
        assert head == "0005"
        assert found == {"e-1": r'["A","B\u001fC"]', "e-2": r'["A\u001fB","C"]', "e-3": "entry:e-3"}
        assert tomb == found["e-1"]
        erasure = log.erase(site="A\x1fB", candidate_id="C", reason="r", erased_by="t")
        assert erasure.entries == 1
    finally:
        log.close()


# -- 2. an erasure whose WAL cannot be written back says so ------------------------------------------

def test_an_erasure_a_reader_keeps_from_purging_says_so_and_log_purge_finishes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "PURGE_WAIT_S", 0.2)
    path = tmp_path / "log.sqlite3"
    url = f"sqlite:///{path}"
    _screen(url, tmp_path, base_record(candidate_id="ER-1", site="S", birth_date=MARKER))
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM records").fetchone()  # a read transaction holds the WAL
        done = _run("log", "erase", "--site", "S", "--candidate", "ER-1", "--reason", "r", "--log", url)
        assert done.exit_code == 1, done.output
        assert "NOT PURGED" in done.output and "log purge" in done.output
        still = _run("log", "purge", "--log", url)
        assert still.exit_code == 1 and "NOT PURGED" in still.output
    finally:
        reader.close()
    done = _run("log", "purge", "--log", url)
    assert done.exit_code == 0, done.output
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("log.sqlite3*"))
    assert MARKER.encode() not in raw and b"ER-1" in raw


# -- 5. every tombstone goes through export and import -----------------------------------------------

def test_a_repeated_erasure_is_exported_and_imported_too(log_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    _screen(source, tmp_path, base_record(candidate_id="ER-1", site="S"))
    for reason in ("first request", "second request"):
        assert _run("log", "erase", "--site", "S", "--candidate", "ER-1", "--reason", reason,
                    "--log", source).exit_code == 0
    exported = tmp_path / "export.jsonl"
    assert _run("log", "export", source, "-o", str(exported)).exit_code == 0
    done = _run("log", "import", str(exported), log_url)
    assert done.exit_code == 0, done.output
    assert _run("log", "import", str(exported), log_url).exit_code == 0  # twice: nothing more
    for url in (source, log_url):
        log = ScreeningLog(url)
        try:
            assert sorted(t["reason"] for t in log.erasures()) == ["first request", "second request"]
        finally:
            log.close()
    assert _export(log_url) == _export(source)


# -- 6. a malformed export line is an error naming the line and the field ----------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"erasure": {"erasure_id": "x", "erased_at": "2024-01-01T00:00:00+00:00", "erased_by": "a", "reason": "r",
                  "entries": "three"}}, "'erasure.entries'"),
    ({"erasure": {"erasure_id": "x", "erased_at": "2024-01-01T00:00:00+00:00", "erased_by": "a", "reason": "r",
                  "entries": None}}, "'erasure.entries'"),
    ({"erasure": {"erasure_id": 5, "erased_at": "2024-01-01T00:00:00+00:00", "erased_by": "a", "reason": "r",
                  "entries": 1}}, "'erasure.erasure_id'"),
    ({"candidate_id": None}, "'candidate_id'"),
    ({"batch_id": 7}, "'batch_id'"),
    ({"record": 7}, "'record'"),
])
def test_a_malformed_export_line_is_refused_naming_the_line_and_field(change: dict[str, Any], field: str,
                                                                       tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    _screen(source, tmp_path, base_record(candidate_id="T-1"), base_record(candidate_id="T-2"))
    lines = [json.loads(line) for line in _run("log", "export", source).stdout.splitlines()]
    lines[1].update(change)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    target = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    done = _run("log", "import", str(bad), target)
    assert done.exit_code == 1
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert f"bad.jsonl line 2: {field}" in done.output, done.output
    log = ScreeningLog(target)
    try:
        assert log.count() == 0  # nothing imported
    finally:
        log.close()


# -- 7. verify names a row whose error_fields is not a list ------------------------------------------

def test_verify_names_a_row_whose_error_fields_are_not_a_list(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    row = {"candidate_id": "T-1", "site": None, "decision": "error", "category": "error", "error": "x",
           "error_fields": 5, "record": base_record()}
    rows.write_text(json.dumps(row) + "\n", encoding="utf-8")
    done = _run("verify", str(rows))
    assert done.exit_code == 1
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert "rows.jsonl row 1: 'error_fields' must be a list" in done.output


# -- 4. diff-rules --log lists erased candidates apart, not as unreadable ----------------------------

def test_diff_rules_log_lists_erased_candidates_apart_and_says_how_its_counts_relate_to_audit(
        log_url: str, tmp_path: Path) -> None:
    records = [json.loads(line) for line in FIGURE1.read_text(encoding="utf-8").splitlines()[:40]]
    _screen(log_url, tmp_path, *records)
    erased = records[:3]
    for record in erased:
        done = _run("log", "erase", "--site", record.get("site") or "", "--candidate", record["candidate_id"],
                    "--reason", "withdrawn", "--log", log_url)
        assert done.exit_code == 0, done.output
    assessed = _assessed(log_url)
    done = _run("diff-rules", "paper-2024", "registry-2023", "--log", log_url, "--format", "json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["candidates"]["unreadable"] == 0 and report["unreadable"] == []
    assert report["candidates"]["erased"] == 3
    assert [e["candidate_id"] for e in report["erased"]] == [r["candidate_id"] for r in erased]
    old = {c["box"]: c["old"] for c in report["counts"]}
    assert old["assessed"] + 3 == assessed and old["errors"] == 0
    assert "erased from the screening log" in done.stderr
    text_report = _run("diff-rules", "paper-2024", "registry-2023", "--log", log_url)
    assert text_report.exit_code == 0
    assert "3 candidate(s) erased from the screening log" in text_report.stdout
    assert "listed once, not as changes" not in text_report.stdout  # no list of unreadable records
