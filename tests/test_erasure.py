"""Erasure on the append-only screening log (issue 19, point 4): a candidate's records cleared, the
counts kept, the erasure itself audited — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import create_engine, text

import cli
from screening.log import ScreeningLog, migrate

from .conftest import FIXTURES, base_record

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"
SITE = "Erasure Test Hospital"
#: values only the candidate to erase holds: none may survive the erasure anywhere in the log
MARKERS = ("1931-07-29", "marker-zq-medication-9137")


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), env=env)


def _candidate(**changes: Any) -> dict[str, Any]:
    record = base_record(candidate_id="ER-1", site=SITE, birth_date=MARKERS[0], **changes)
    record["medications"] = [{"name": MARKERS[1], "atc": "C08CA01", "start_date": "2020-01-01", "ongoing": True}]
    return record


def _screen_cohort(log_url: str, tmp_path: Path) -> None:
    """Figure 1 plus the candidate, then the candidate screened again (two entries of it)."""
    first = tmp_path / "first.jsonl"
    first.write_text(FIGURE1.read_text(encoding="utf-8") + json.dumps(_candidate()) + "\n", encoding="utf-8")
    again = tmp_path / "again.jsonl"
    again.write_text(json.dumps(_candidate(consent=None)) + "\n", encoding="utf-8")  # consent not yet recorded
    for path in (first, again):
        done = _run("screen", str(path), "--format", "jsonl", "--include-record", "-o", str(tmp_path / "o.jsonl"),
                    "--log", log_url)
        assert done.exit_code == 0, done.output


def _audit(log_url: str) -> dict[str, Any]:
    done = _run("audit", "--log", log_url, "--format", "json", "--by", "site")
    assert done.exit_code in (0, 1), done.output
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _export(log_url: str) -> list[dict[str, Any]]:
    done = _run("log", "export", log_url)
    assert done.exit_code == 0, done.output
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_an_erasure_clears_the_records_keeps_the_counts_and_leaves_a_tombstone(log_url: str, tmp_path: Path) -> None:
    _screen_cohort(log_url, tmp_path)
    before = _export(log_url)
    mine = [e for e in before if e["candidate_id"] == "ER-1"]
    assert len(mine) == 2 and all(m in json.dumps(mine) for m in MARKERS)  # the record, the reasons quoting it
    audit_before = _audit(log_url)
    current_before = [e["row"]["category"] for e in before if e["candidate_id"] == "ER-1"]

    done = _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "consent withdrawn",
                "--log", log_url, env={"NLC_SCREEN_SCREENER": "coordinator-4"})
    assert done.exit_code == 0, done.output
    assert "2 input record(s) cleared from 2 entries" in done.stderr

    after = _export(log_url)
    assert len(after) == len(before)  # no entry removed
    assert _audit(log_url) == audit_before  # the counts, by site too, are what they were
    erased = [e for e in after if e["candidate_id"] == "ER-1"]
    for entry, old in zip(erased, mine):
        assert entry["record"] is None
        tomb = entry["erasure"]
        assert (tomb["erased_by"], tomb["reason"], tomb["entries"]) == ("coordinator-4", "consent withdrawn", 2)
        assert tomb["erased_at"]
        row, was = entry["row"], old["row"]
        for key in ("decision", "category", "subcategory", "primary_criterion", "ruleset", "candidate_id", "site"):
            assert row[key] == was[key]
        assert {c: r["status"] for c, r in row["criteria"].items()} == \
            {c: r["status"] for c, r in was["criteria"].items()}
        assert row["erased"] is True and "record" not in row and "warnings" not in row
        for key in ("entry_id", "set_sha256", "screened_at", "screener", "batch_id", "position", "input_sha256"):
            assert entry[key] == old[key]
    assert [e["row"]["category"] for e in erased] == current_before
    assert not any(m in json.dumps(erased) for m in MARKERS)
    others = [e for e in after if e["candidate_id"] != "ER-1"]
    assert others == [e | {"erasure": None} for e in before if e["candidate_id"] != "ER-1"]  # nobody else touched

    verified = _run("verify", "--log", log_url, "--format", "json")
    report = json.loads(verified.stdout)
    assert verified.exit_code == 0 and report["clean"]
    assert (report["erased"], report["checked"], report["differ"]) == (2, 310, 0)

    history = ScreeningLog(log_url)
    try:
        assert [t["reason"] for t in history.erasures()] == ["consent withdrawn"]
    finally:
        history.close()

    if log_url.startswith("sqlite"):  # nothing of the record left in the database's files
        path = Path(log_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert not any(m.encode() in raw for m in MARKERS)
        assert b"Chengdu" in raw  # the files were read: the other candidates are there
    else:
        engine = create_engine(log_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            dump = json.dumps([list(r) for r in conn.execute(text(
                "SELECT e.row, r.body FROM entries e JOIN records r USING (entry_id)")).all()])
        engine.dispose()
        assert not any(m in dump for m in MARKERS)


def test_erasing_a_candidate_the_log_does_not_hold_or_without_a_reason_is_refused(log_url: str,
                                                                                  tmp_path: Path) -> None:
    _screen_cohort(log_url, tmp_path)
    unknown = _run("log", "erase", "--site", SITE, "--candidate", "ER-404", "--reason", "x", "--log", log_url)
    assert unknown.exit_code == 1 and "holds no entry of candidate ER-404" in unknown.output
    wrong_site = _run("log", "erase", "--candidate", "ER-1", "--reason", "x", "--log", log_url)
    assert wrong_site.exit_code == 1 and "(no site)" in wrong_site.output
    blank = _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "  ", "--log", log_url)
    assert blank.exit_code == 1 and "needs a reason" in blank.output
    assert all(m in json.dumps(_export(log_url)) for m in MARKERS)  # nothing was erased
    assert _run("log", "erase", "--candidate", "ER-1", "--log", log_url).exit_code == 2  # --reason is required

    first = _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "asked", "--log", log_url)
    second = _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "asked again", "--log", log_url)
    assert first.exit_code == second.exit_code == 0 and "were erased already" in second.stderr
    log = ScreeningLog(log_url)
    try:  # both requests are on record; the entries keep the tombstone of the erasure that cleared them
        assert [t["reason"] for t in log.erasures()] == ["asked", "asked again"]
    finally:
        log.close()
    lines = _export(log_url)
    assert {e["erasure"]["reason"] for e in lines if e.get("candidate_id") == "ER-1"} == {"asked"}
    # the request that cleared nothing follows the entries as a line of its own
    assert [(e["tombstone"]["reason"], e["tombstone"]["candidate_id"]) for e in lines if "tombstone" in e] == \
        [("asked again", "ER-1")]


def test_tombstones_travel_with_an_export_and_erase_the_entries_an_import_finds(log_url: str,
                                                                                tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    _screen_cohort(source, tmp_path)
    unerased = tmp_path / "before.jsonl"
    assert _run("log", "export", source, "-o", str(unerased)).exit_code == 0
    assert _run("log", "import", str(unerased), log_url).exit_code == 0  # the central copy, before the erasure
    assert _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "request", "--log",
                source).exit_code == 0
    erased = tmp_path / "after.jsonl"
    assert _run("log", "export", source, "-o", str(erased)).exit_code == 0
    done = _run("log", "import", str(erased), log_url)  # every entry already there: the tombstones apply
    assert done.exit_code == 0 and "0 entries imported" in done.stderr
    central = _export(log_url)
    assert central == _export(source)
    assert not any(m in json.dumps(central) for m in MARKERS)

    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"  # and a new log imports them erased
    assert _run("log", "import", str(erased), fresh).exit_code == 0
    assert _export(fresh) == central

    older = tmp_path / "older.jsonl"  # an export written before erasures existed has no "erasure" field
    older.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "erasure"}) + "\n"
                             for line in unerased.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    oldest = f"sqlite:///{tmp_path / 'oldest.sqlite3'}"
    assert _run("log", "import", str(older), oldest).exit_code == 0
    assert _export(oldest) == [json.loads(line) for line in unerased.read_text(encoding="utf-8").splitlines()]


def test_a_log_at_the_previous_revision_is_upgraded_and_can_be_erased(log_url: str, tmp_path: Path) -> None:
    url = log_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    migrate(engine, "0003")
    engine.dispose()
    record = _candidate()
    engine = create_engine(url)  # an entry as nlc-screen wrote it at 0003 (not through ScreeningLog: it upgrades)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO entries (entry_id, site, candidate_id, identity, decision, category, row, pack, set_name, "
            "set_version, set_sha256, tool_version, screened_at, screener, batch_id, position) VALUES "
            "('e-1', :s, 'ER-1', :i, 'eligible', 'randomized', :r, 'nlc-k2', 'paper-2024', '1.2.0', 'x', '0.1.0', "
            "'2023-03-02 00:00:00', 'old', 'b-1', 'line 1')"),
            {"s": SITE, "i": f"{SITE}\x1fER-1", "r": json.dumps({"candidate_id": "ER-1", "site": SITE,
                                                                 "decision": "eligible", "category": "randomized",
                                                                 "criteria": {"I1": {"status": "met",
                                                                                     "reason": MARKERS[0]}}})})
        conn.execute(text("INSERT INTO records (entry_id, input_sha256, body) VALUES ('e-1', 'h', :b)"),
                     {"b": json.dumps(record)})
    engine.dispose()
    done = _run("log", "erase", "--site", SITE, "--candidate", "ER-1", "--reason", "r", "--log", log_url)
    assert done.exit_code == 0, done.output
    [entry] = _export(log_url)
    assert entry["record"] is None and entry["erasure"]["reason"] == "r"
    assert entry["row"]["criteria"] == {"I1": {"status": "met"}}
