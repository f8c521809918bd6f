"""The screening log (issue 14): append-only entries, the current decision per candidate, audits of
the log, export and import, migrations, concurrent writers — on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

import cli
import screening
from screening.log import Entry, ScreeningLog, migrate, revision

from .conftest import FIXTURES, ROOT, base_record

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")
#: the newest migration: a new log is created at it, an older one upgraded to it
HEAD = "0005"


_OPENED: list[ScreeningLog] = []


def _log(url: str) -> ScreeningLog:
    """A log the test may leave open: closed after the test (its connections, SQLite or PostgreSQL)."""
    log = ScreeningLog(url)
    _OPENED.append(log)
    return log


@pytest.fixture(autouse=True)
def _close_logs() -> Any:
    yield
    while _OPENED:
        _OPENED.pop().close()


def _screen(record: dict[str, Any], ruleset: screening.Ruleset | None = None) -> tuple[dict[str, Any], str]:
    text = json.dumps(record)
    return screening.screen_one(text, ruleset or screening.load_ruleset()), text


def _run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin, env=env)


def test_an_entry_keeps_the_decision_its_set_the_tool_the_input_hash_who_when_and_where(log_url: str) -> None:
    log = _log(log_url)
    row, text = _screen(base_record(candidate_id="L-1"))
    batch_id = log.append([Entry(row, text, "line 7")], screener="nurse-7", source="intake.jsonl", pack="nlc-k2")
    engine = create_engine(log.engine.url)
    with engine.connect() as conn:
        entry = conn.execute(text_("SELECT * FROM entries")).mappings().one()
        body = conn.execute(text_("SELECT body, input_sha256 FROM records WHERE entry_id = :i"),
                            {"i": entry["entry_id"]}).one()
        batch = conn.execute(text_("SELECT * FROM batches")).mappings().one()
    ruleset = screening.load_ruleset()
    assert (entry["candidate_id"], entry["site"], entry["decision"], entry["category"]) == \
        ("L-1", "test site", row["decision"], row["category"])
    assert (entry["pack"], entry["set_name"], entry["set_version"], entry["set_sha256"]) == \
        ("nlc-k2", ruleset.name, ruleset.version, ruleset.sha256)
    assert entry["input_sha256"] == hashlib.sha256(text.encode()).hexdigest() == body.input_sha256
    assert body.body == text  # the input record itself, in its own table (an erasure clears it there)
    assert (entry["screener"], entry["batch_id"], entry["position"]) == ("nurse-7", batch_id, "line 7")
    assert str(entry["screening_start"]) == "2023-03-01" and entry["tool_version"]
    assert json.loads(entry["row"]) == row
    assert (batch["screener"], batch["source"]) == ("nurse-7", "intake.jsonl")
    engine.dispose()


def text_(sql: str) -> Any:
    return text(sql)


def test_a_re_screen_adds_an_entry_and_the_latest_is_current(log_url: str) -> None:
    log = _log(log_url)
    first, t1 = _screen(base_record(candidate_id="R-1", consent="pending"))
    log.append([Entry(first, t1, "line 1")], screener="a", source="s")
    second, t2 = _screen(base_record(candidate_id="R-1", consent="signed"))
    other, t3 = _screen(base_record(candidate_id="R-1", site="another site"))  # another candidate: its site
    log.append([Entry(second, t2, "line 1"), Entry(other, t3, "line 2")], screener="b", source="s")
    assert log.count() == 3
    current = list(log.current_rows())
    assert [(r["candidate_id"], r["site"], r["category"]) for r in current] == [
        ("R-1", "test site", "randomized"), ("R-1", "another site", "randomized")]
    history = log.history("R-1", "test site")
    assert [h["row"]["category"] for h in history] == ["pending", "randomized"]  # never updated in place
    assert [h["screener"] for h in history] == ["a", "b"]
    assert log.history("R-1", "nowhere") == []


def test_the_worklist_holds_pending_candidates_by_site_oldest_first_with_their_open_fields(log_url: str) -> None:
    log = _log(log_url)
    def sparse(cid: str, site: str, start: str) -> Entry:
        return Entry(*_screen({"candidate_id": cid, "site": site, "screening_start": start}), position=cid)

    def full(cid: str, site: str, consent: str) -> Entry:
        return Entry(*_screen(base_record(candidate_id=cid, site=site, consent=consent)), position=cid)
    log.append([sparse("W-2", "B", "2023-03-05"), full("W-1", "B", "pending"), sparse("W-3", "A", "2023-04-01"),
                full("W-4", "A", "signed"), sparse("W-5", "A", "2023-01-01")], screener="x", source="s")
    pending = ["pending"]
    work = log.worklist(pending=pending)
    assert [(w["site"], w["candidate_id"]) for w in work] == [("A", "W-5"), ("A", "W-3"), ("B", "W-1"), ("B", "W-2")]
    assert work[0]["decision"] == "undetermined" and "birth_date" in work[0]["ask_next"]
    assert work[2]["decision"] == "eligible" and work[2]["ask_next"] == ["consent"]
    assert [w["candidate_id"] for w in log.worklist(pending=pending, site="B")] == ["W-1", "W-2"]


def test_screen_log_appends_and_audit_log_counts_each_candidate_once(log_url: str) -> None:
    for _ in range(2):  # the same cohort screened twice: 620 entries, 310 candidates
        result = _run("screen", FIGURE1, "--format", "jsonl", "--log", log_url, "--screener", "coordinator")
        assert result.exit_code == 0, result.output
        assert "310 decision(s) appended to the screening log" in result.stderr
    assert _log(log_url).count() == 620
    audit = _run("audit", "--log", log_url, "--expect", "figure1")
    assert audit.exit_code == 0, audit.output
    assert "Compared with" in audit.output and "all" in audit.output
    data = json.loads(_run("audit", "--log", log_url, "--format", "json").output)
    assert data["counts"]["assessed"] == 310 if "counts" in data else data["assessed"] == 310


def test_audit_log_filters_by_site_and_screening_start(log_url: str) -> None:
    _run("screen", FIGURE1, "--format", "jsonl", "--log", log_url)
    rows = [json.loads(line) for line in Path(FIGURE1).read_text(encoding="utf-8").splitlines()]
    site = rows[0]["site"]
    since, until = "2023-01-01", "2023-03-31"
    expected = sum(1 for r in rows if r.get("site") == site and since <= r["screening_start"] <= until)
    assert 0 < expected < len(rows)
    out = _run("audit", "--log", log_url, "--site", site, "--since", since, "--until", until, "--format", "json")
    assert out.exit_code == 0, out.output
    assert _assessed(json.loads(out.output)) + _errors(json.loads(out.output)) == expected


def _assessed(report: dict[str, Any]) -> int:
    flat = report.get("counts", report)
    return int(flat["assessed"])


def _errors(report: dict[str, Any]) -> int:
    flat = report.get("counts", report)
    return int(flat.get("errors", 0))


def test_audit_needs_a_file_or_the_log_and_filters_only_with_the_log(tmp_path: Path) -> None:
    assert _run("audit").exit_code == 2
    assert _run("audit", FIGURE1, "--site", "x").exit_code == 2


def test_the_default_log_is_a_file_in_the_data_directory(tmp_path: Path) -> None:
    env = {"NLC_SCREEN_HOME": str(tmp_path / "home")}
    result = _run("screen", str(ROOT / "examples" / "one.json"), "--log", env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "screening-log.sqlite3").exists()
    audit = _run("audit", "--log", "--format", "json", env=env)
    assert _assessed(json.loads(audit.output)) == 1


def test_unreadable_records_are_logged_as_error_rows(log_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"candidate_id":"E1","screening_start":"2023-02-30"}\n[1,2]\n\xff\xfe\n')
    result = _run("screen", str(source), "--format", "jsonl", "--log", log_url)
    assert result.exit_code == 3
    log = _log(log_url)
    rows = list(log.current_rows())
    assert [r["decision"] for r in rows] == ["error", "error", "error"]
    assert log.count() == 3  # one entry per input record, the unreadable ones included


def test_export_and_import_move_a_log_between_databases_and_importing_twice_adds_nothing(
        log_url: str, tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    _run("screen", FIGURE1, "--format", "jsonl", "--log", source)
    exported = tmp_path / "log.jsonl"
    result = _run("log", "export", source, "-o", str(exported))
    assert result.exit_code == 0 and "310 entries exported" in result.stderr
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 310 and json.loads(lines[0])["record"] is not None
    first = _run("log", "import", str(exported), log_url)
    assert first.exit_code == 0 and "310 entries imported" in first.stderr, first.output
    again = _run("log", "import", str(exported), log_url)
    assert "0 entries imported" in again.stderr and "310 already there" in again.stderr
    moved = _log(log_url)
    assert moved.count() == 310
    assert list(moved.current_rows()) == list(_log(source).current_rows())
    back = tmp_path / "back.jsonl"
    _run("log", "export", log_url, "-o", str(back))
    assert back.read_text(encoding="utf-8") == exported.read_text(encoding="utf-8")


def test_importing_something_that_is_not_an_export_is_refused_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"candidate_id": "x"}\n', encoding="utf-8")
    result = _run("log", "import", str(bad), f"sqlite:///{tmp_path / 'l.sqlite3'}")
    assert result.exit_code == 1 and "line 1" in result.output and "not an exported log entry" in result.output


def test_a_bad_log_url_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("audit", "--log", "mysql://x@y/z")
    assert result.exit_code == 1 and "SQLite or PostgreSQL" in result.output
    result = _run("audit", "--log", "postgresql://nobody:secret@127.0.0.1:1/none")
    assert result.exit_code == 1 and "cannot open the screening log" in result.output
    assert "secret" not in result.output  # the password is never shown


# -- migrations -----------------------------------------------------------------------------------

def test_migrations_create_the_log_from_empty(log_url: str) -> None:
    log = _log(log_url)
    assert revision(log.engine) == HEAD
    tables = set(inspect(log.engine).get_table_names())
    assert {"entries", "records", "batches", "alembic_version"} <= tables
    assert "ix_entries_candidate" in {ix["name"] for ix in inspect(log.engine).get_indexes("entries")}


def test_migrations_upgrade_a_log_from_the_first_revision_keeping_its_entries(log_url: str) -> None:
    url = log_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    migrate(engine, "0001")
    assert revision(engine) == "0001"
    row, record = _screen(base_record(candidate_id="M-1"))
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO entries (entry_id, site, candidate_id, decision, category, row, pack, set_name, set_version, "
            "set_sha256, tool_version, screened_at, screener, batch_id, position) VALUES "
            "('e-1', 'test site', 'M-1', :d, :c, :r, 'nlc-k2', 'paper-2024', '1.2.0', 'x', '0.1.0', :t, 'old', "
            "'b-1', 'line 1')"),
            {"d": row["decision"], "c": row["category"], "r": json.dumps(row), "t": dt.datetime(2023, 3, 2)})
        conn.execute(text("INSERT INTO records (entry_id, input_sha256, body) VALUES ('e-1', 'h', :b)"), {"b": record})
    engine.dispose()
    log = _log(log_url)  # opening it upgrades it
    assert revision(log.engine) == HEAD
    assert [r["candidate_id"] for r in log.current_rows()] == ["M-1"]
    with log.engine.connect() as conn:
        assert conn.execute(text("SELECT screener, source FROM batches")).one() == \
            ("old", "logged before batches were kept")


# -- concurrent writers ---------------------------------------------------------------------------

def _writer(url: str, worker: int, count: int) -> None:
    log = ScreeningLog(url)
    ruleset = screening.load_ruleset()
    with log.batch(screener=f"w{worker}", source="test", pack="nlc-k2", commit_every=25) as batch:
        for i in range(count):
            row, text = _screen(base_record(candidate_id=f"C-{worker}-{i}"), ruleset)
            batch.add(row, text, f"line {i + 1}")
    log.close()


def _four_writers(url: str, entries: int, *, timeout: float) -> list[int | None]:
    """Four processes each appending ``entries`` entries to the log at ``url`` at once; their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, entries)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    return [p.exitcode for p in procs]


@pytest.mark.timeout(600)
def test_four_concurrent_writers_lose_no_entry(log_url: str) -> None:
    _log(log_url).close()  # create it first, as a site would
    assert _four_writers(log_url, 2500, timeout=540) == [0, 0, 0, 0]
    log = _log(log_url)
    assert log.count() == 10_000
    ids = {r["candidate_id"] for r in log.current_rows()}
    assert len(ids) == 10_000


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert _four_writers(url, 5, timeout=120) == [0, 0, 0, 0]
    assert _log(url).count() == 20


def test_screen_with_workers_logs_exactly_the_rows_it_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    out = tmp_path / "out.jsonl"
    result = _run("screen", FIGURE1, "--format", "jsonl", "--workers", "2", "-o", str(out), "--log", url)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    logged = list(_log(url).current_rows())
    assert logged == written and len(written) == 310


def test_importing_an_older_log_does_not_make_its_decisions_current(log_url: str, tmp_path: Path) -> None:
    older = f"sqlite:///{tmp_path / 'older.sqlite3'}"
    first, t1 = _screen(base_record(candidate_id="O-1", consent="pending"))
    _log(older).append([Entry(first, t1, "line 1")], screener="desk", source="s")
    later, t2 = _screen(base_record(candidate_id="O-1", consent="signed"))
    _log(log_url).append([Entry(later, t2, "line 1")], screener="desk", source="s")
    exported = tmp_path / "older.jsonl"
    _run("log", "export", older, "-o", str(exported))
    assert _run("log", "import", str(exported), log_url).exit_code == 0
    current = list(_log(log_url).current_rows())
    assert [r["category"] for r in current] == ["randomized"]  # the later decision, whatever the import order
    assert [h["row"]["category"] for h in _log(log_url).history("O-1", "test site")] == ["pending", "randomized"]


def test_unreadable_records_of_two_runs_stay_two(log_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"candidate_id":"U-1","screening_start":"2023-03-01"}\n[1]\n', encoding="utf-8")
    for _ in range(2):
        _run("screen", str(source), "--format", "jsonl", "--log", log_url)
    report = json.loads(_run("audit", "--log", log_url, "--format", "json").output)
    assert report["counts"]["errors"] == 2 and report["counts"]["assessed"] == 1  # U-1 once, each "line 2" apart


def test_long_ids_are_kept_whole(log_url: str) -> None:
    log = _log(log_url)
    long_a, long_b = "L" * 205 + "a", "L" * 205 + "b"
    rows = [Entry(*_screen(base_record(candidate_id=cid)), position=cid[-1]) for cid in (long_a, long_b)]
    log.append(rows, screener="x", source="s")
    assert sorted(r["candidate_id"] for r in log.current_rows()) == [long_a, long_b]
    assert len(log.history(long_b, "test site")) == 1
