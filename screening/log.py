"""The screening log: every decision kept, append-only, in SQLite (the default) or PostgreSQL.

What coordinators count, follow up and defend. Each screened record adds one **entry** — the
decision row, the pack and criteria set (name, version, sha256), the nlc-screen version, a SHA-256
of the input text, the time, who screened it, and the batch id with the record's position in its
input — and its input record goes to a table of its own (``records``), so that an erasure can clear
the record without touching a count. Entries are never updated: a re-screen adds an entry, and a
candidate's current decision is its latest (a candidate is its site and candidate_id). The one
exception is an erasure (:meth:`ScreeningLog.erase`): it clears a candidate's records and the values
its rows quote, keeps their decisions, and leaves a tombstone (table ``erasures``; docs/log.md).

::

    log = ScreeningLog()                       # the default file in the data directory
    with log.batch(screener="nurse-7", source="intake.jsonl") as batch:
        batch.add(row, text, position="line 1")
    rows = log.current_rows(site="Chengdu-3")  # the current decision of every candidate

The database is created, or upgraded, on first use with the Alembic migrations shipped in
``screening/migrations``. SQLite runs in WAL mode with a busy timeout and takes its write lock at
the start of a transaction, so concurrent writers wait instead of failing; PostgreSQL migrates
under an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from .errors import LogError
from .screen import DuplicateCheck

#: The environment variable naming nlc-screen's data directory (the default log lives there).
HOME_ENV = "NLC_SCREEN_HOME"
#: The default log's file name, in the data directory.
LOG_FILE = "screening-log.sqlite3"
#: Seconds a SQLite writer waits for another's lock before giving up.
BUSY_TIMEOUT_S = 60
#: Entries written per transaction by :meth:`ScreeningLog.batch` (a crash loses at most the last ones
#: not yet written; an HTTP batch is one transaction whatever its size).
COMMIT_EVERY = 500
#: Seconds an erasure waits for other processes reading a SQLite log before it gives up purging the WAL.
PURGE_WAIT_S = 10.0

metadata_ = MetaData()

#: One input record, kept apart so that an erasure can clear ``body`` and leave the entry.
records = Table(
    "records", metadata_,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), ForeignKey("entries.entry_id"), nullable=False, unique=True),
    Column("input_sha256", String(64)),
    Column("body", Text),
    Column("erased_at", DateTime(timezone=True)),
    #: the erasure that cleared ``body`` (see :data:`erasures`)
    Column("erasure_id", String(36)),
)

#: One screening decision. Never updated.
entries = Table(
    "entries", metadata_,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(36), nullable=False, unique=True),
    Column("site", Text, nullable=False),  # "" for none
    Column("candidate_id", Text, nullable=False),
    #: the candidate (site, candidate_id), or the entry itself for an error row identified only by its position
    Column("identity", Text, nullable=False),
    Column("decision", String(20), nullable=False),
    Column("category", String(100), nullable=False),
    Column("subcategory", String(100)),
    Column("primary_criterion", String(40)),
    Column("screening_start", Date),
    Column("row", Text, nullable=False),
    Column("pack", String(100), nullable=False),
    Column("set_name", String(100), nullable=False),
    Column("set_version", String(40), nullable=False),
    Column("set_sha256", String(64), nullable=False),
    Column("tool_version", String(40), nullable=False),
    Column("input_sha256", String(64)),
    Column("screened_at", DateTime(timezone=True), nullable=False),
    Column("screener", String(200), nullable=False),
    Column("batch_id", String(36), nullable=False),
    Column("position", Text, nullable=False),
)

#: One run that appended entries: who, from what, with which nlc-screen.
batches = Table(
    "batches", metadata_,
    Column("batch_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("screener", String(200), nullable=False),
    Column("source", String(300), nullable=False),
    Column("tool_version", String(40), nullable=False),
)

#: One erasure (``nlc-screen log erase``): a candidate's input records cleared, when, by whom and why.
erasures = Table(
    "erasures", metadata_,
    Column("erasure_id", String(36), primary_key=True),
    Column("identity", Text, nullable=False),
    Column("site", Text, nullable=False),
    Column("candidate_id", Text, nullable=False),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    Column("erased_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("entries", Integer, nullable=False),
)

#: What an erasure keeps of a decision row: the decision and its box, each criterion's status (not its
#: reason, which quotes the record), what to ask next (field paths), the stamps, and an error row's
#: message and fields (which never quote a value). Reasons, warnings and an included record go.
KEPT_ON_ERASURE = ("candidate_id", "site", "decision", "category", "subcategory", "primary_criterion", "ask_next",
                   "error", "error_fields", "ruleset", "parameters")

#: The columns an export line holds, in order (``record`` is the kept input, or null once erased).
EXPORT_FIELDS = ("entry_id", "site", "candidate_id", "decision", "category", "subcategory", "primary_criterion",
                 "screening_start", "pack", "set_name", "set_version", "set_sha256", "tool_version", "input_sha256",
                 "screened_at", "screener", "batch_id", "position", "row", "record", "erasure")
#: Export fields an older export may lack (its lines are imported all the same).
OPTIONAL_EXPORT_FIELDS = ("erasure",)


def data_dir() -> Path:
    """nlc-screen's data directory: ``$NLC_SCREEN_HOME``, else the platform's user data directory."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("nlc-screen", appauthor=False))


def default_url() -> str:
    """The default screening log: a SQLite file in the data directory."""
    return f"sqlite:///{data_dir() / LOG_FILE}"


def tool_version() -> str:
    try:
        return metadata.version("nlc-screen")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


def shown_url(url: str) -> str:
    """A log URL as messages may show it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _date(text: Any) -> dt.date | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class Entry:
    """One row to log: the decision row, the input text it was screened from, and where it was."""

    row: dict[str, Any]
    text: str | None
    position: str
    screening_start: dt.date | None = None


class ScreeningLog:
    """A screening log at ``url`` (``None``: the default file, created on first use).

    :raises LogError: the URL is not SQLite or PostgreSQL, or the database cannot be opened or upgraded.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url: str = url or default_url()
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise LogError(f"not a database URL: {self.url[:60]!r} (sqlite:///FILE or postgresql://…)") from None
        if parsed.drivername == "postgres":  # the scheme many tools write
            parsed = parsed.set(drivername="postgresql")
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})
            _sqlite_pragmas(self.engine)
        elif backend == "postgresql":
            if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
                raise LogError(f"the screening log reaches PostgreSQL through psycopg 3: write postgresql://…, "
                               f"not {parsed.drivername}://…")
            parsed = parsed.set(drivername="postgresql+psycopg")  # the pinned driver
            self.engine = create_engine(parsed, pool_pre_ping=True)
        else:
            raise LogError(f"the screening log is SQLite or PostgreSQL, not {backend!r}")
        self.backend: str = backend
        try:
            migrate(self.engine)
        except SQLAlchemyError as exc:
            raise LogError(f"cannot open the screening log {shown_url(self.url)}: {_reason(exc)}") from None

    @property
    def shown(self) -> str:
        """The log's URL without its password, for messages."""
        return shown_url(self.url)

    def close(self) -> None:
        """Close the log's connections (a closed log opens new ones when used again)."""
        self.engine.dispose()

    def __enter__(self) -> ScreeningLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def append(self, items: Iterable[Entry], *, screener: str, source: str, pack: str = "") -> str:
        """Log ``items`` as one batch in one transaction; the batch id."""
        with self.batch(screener=screener, source=source, pack=pack, commit_every=None) as batch:
            for item in items:
                batch.add(item.row, item.text, item.position, item.screening_start)
        return batch.batch_id

    @contextmanager
    def batch(self, *, screener: str, source: str, pack: str = "",
              commit_every: int | None = COMMIT_EVERY, batch_id: str | None = None) -> Iterator[Batch]:
        """A batch to add entries to (rows screened with a set of ``pack``); written every
        ``commit_every`` entries (None: once, at the end, in one transaction). ``batch_id``: go on with
        that batch (a resumed run; see :meth:`batch_progress`), else a new one."""
        batch = Batch(self, screener=screener, source=source, pack=pack, commit_every=commit_every, batch_id=batch_id)
        try:
            yield batch
        except BaseException:
            batch.abort()
            raise
        batch.close()

    # -- reading --------------------------------------------------------------------------------

    def _current_ids(self) -> Any:
        """Each identity's current entry: its latest by the time it was screened, then by entry order
        (an imported older entry does not become current)."""
        ranked = select(entries.c.id, func.row_number().over(
            partition_by=entries.c.identity, order_by=(entries.c.screened_at.desc(), entries.c.id.desc())
        ).label("rank")).subquery()
        return select(ranked.c.id).where(ranked.c.rank == 1)

    def current_rows(self, *, site: str | None = None, since: dt.date | None = None,
                     until: dt.date | None = None) -> Iterator[dict[str, Any]]:
        """The current decision row of every candidate (its latest entry), oldest first; ``site``,
        ``since`` and ``until`` (both included) filter on the site and the record's screening_start."""
        query = select(entries.c.row).where(entries.c.id.in_(self._current_ids()))
        if site is not None:
            query = query.where(entries.c.site == site)
        if since is not None:
            query = query.where(entries.c.screening_start >= since)
        if until is not None:
            query = query.where(entries.c.screening_start <= until)
        yield from (orjson.loads(text) for text in self._scalars(query.order_by(entries.c.screened_at, entries.c.id)))

    def current_records(self, *, site: str | None = None) -> Iterator[tuple[dict[str, Any], str | None]]:
        """The current decision row of every candidate with the input record it was screened from (its
        JSON text; None when it was erased, or could not be read as text), oldest first; streamed."""
        query = (select(entries.c.row, records.c.body)
                 .select_from(entries.outerjoin(records, entries.c.entry_id == records.c.entry_id))
                 .where(entries.c.id.in_(self._current_ids())))
        if site is not None:
            query = query.where(entries.c.site == site)
        with self._read() as conn:
            for r in conn.execution_options(yield_per=500).execute(query.order_by(entries.c.screened_at,
                                                                                  entries.c.id)):
                yield orjson.loads(r.row), r.body

    def history(self, candidate_id: str, site: str | None) -> list[dict[str, Any]]:
        """Every entry of one candidate, oldest first: when, who, with which set, and the row."""
        query = (select(entries.c.screened_at, entries.c.screener, entries.c.batch_id, entries.c.position,
                        entries.c.row)
                 .where(entries.c.identity == _identity_of(site or "", candidate_id))
                 .order_by(entries.c.screened_at, entries.c.id))
        with self._read() as conn:
            return [{"screened_at": _iso(r.screened_at), "screener": r.screener, "batch_id": r.batch_id,
                     "position": r.position, "row": orjson.loads(r.row)} for r in conn.execute(query)]

    def latest(self, candidate_id: str, site: str | None) -> tuple[dict[str, Any], str | None] | None:
        """A candidate's current entry: its decision row and its kept input record (None once erased),
        or None when the log has no entry for it."""
        query = (select(entries.c.row, records.c.body)
                 .select_from(entries.outerjoin(records, entries.c.entry_id == records.c.entry_id))
                 .where(entries.c.identity == _identity_of(site or "", candidate_id))
                 .order_by(entries.c.screened_at.desc(), entries.c.id.desc()).limit(1))
        with self._read() as conn:
            found = conn.execute(query).first()
        return None if found is None else (orjson.loads(found.row), found.body)

    def worklist(self, *, pending: Iterable[str], site: str | None = None) -> list[dict[str, Any]]:
        """Candidates whose current decision is in a ``pending`` category (undetermined, or eligible
        awaiting consent), by site, oldest screening_start first, with the fields still open."""
        query = (select(entries.c.site, entries.c.candidate_id, entries.c.screening_start, entries.c.screened_at,
                        entries.c.row)
                 .where(entries.c.id.in_(self._current_ids()), entries.c.category.in_(list(pending)),
                        entries.c.decision != "error"))
        if site is not None:
            query = query.where(entries.c.site == site)
        query = query.order_by(entries.c.site, entries.c.screening_start, entries.c.candidate_id)
        out = []
        with self._read() as conn:
            for r in conn.execute(query):
                row = orjson.loads(r.row)
                out.append({"site": r.site or None, "candidate_id": r.candidate_id,
                            "screening_start": r.screening_start.isoformat() if r.screening_start else None,
                            "decision": row["decision"], "category": row["category"],
                            "primary_criterion": row.get("primary_criterion"), "ask_next": row.get("ask_next", []),
                            "screened_at": _iso(r.screened_at)})
        return out

    def count(self) -> int:
        return int(self._scalars(select(func.count()).select_from(entries))[0])

    def export(self, write: Callable[[str], object]) -> int:
        """Every entry as one JSON line (:data:`EXPORT_FIELDS`) given to ``write``, oldest first; how many.
        A tombstone is on the entries whose records it cleared (``erasure``); one that cleared none (a
        request repeated) follows them as a line of its own, ``{"tombstone": {…, "site", "candidate_id"}}``."""
        query = (select(*(entries.c[name] for name in EXPORT_FIELDS if name not in ("record", "erasure")),
                        records.c.body, erasures.c.erasure_id, erasures.c.erased_at.label("erasure_at"),
                        erasures.c.erased_by, erasures.c.reason, erasures.c.entries.label("erasure_entries"))
                 .select_from(entries.outerjoin(records, entries.c.entry_id == records.c.entry_id)
                              .outerjoin(erasures, records.c.erasure_id == erasures.c.erasure_id))
                 .order_by(entries.c.id))
        written = 0
        with self._read() as conn:
            for r in conn.execute(query).mappings():
                line = {name: r[name] for name in EXPORT_FIELDS if name not in ("record", "row", "erasure")}
                line["screening_start"] = r["screening_start"].isoformat() if r["screening_start"] else None
                line["screened_at"] = _iso(r["screened_at"])
                line["row"] = orjson.loads(r["row"])
                line["record"] = r["body"]
                line["erasure"] = None if r["erasure_id"] is None else {
                    "erasure_id": r["erasure_id"], "erased_at": _iso(r["erasure_at"]), "erased_by": r["erased_by"],
                    "reason": r["reason"], "entries": r["erasure_entries"]}
                write(orjson.dumps(line).decode() + "\n")
                written += 1
            # a tombstone that cleared no record (a repeated request) is on no entry: a line of its own
            unnamed = (select(erasures).where(~select(records.c.id).where(records.c.erasure_id == erasures.c.erasure_id)
                                             .exists())
                       .order_by(erasures.c.erased_at, erasures.c.erasure_id))
            for r in conn.execute(unnamed).mappings():
                write(orjson.dumps({"tombstone": {
                    "erasure_id": r["erasure_id"], "site": r["site"], "candidate_id": r["candidate_id"],
                    "erased_at": _iso(r["erased_at"]), "erased_by": r["erased_by"], "reason": r["reason"],
                    "entries": r["entries"]}}).decode() + "\n")
        return written

    def erase(self, *, site: str | None, candidate_id: str, reason: str, erased_by: str) -> Erasure:
        """Clear the input records of every entry of one candidate (its site and candidate_id, exactly as
        logged) and the values their decision rows quote, keeping each entry's decision, category,
        criteria statuses and stamps (:data:`KEPT_ON_ERASURE`); keep a tombstone saying when, who
        and why. Counts, audits and the current decision stay as they were.

        :raises LogError: the log holds no entry of that candidate, the reason is empty, or the log
            cannot be written.
        """
        reason = reason.strip()
        if not reason:
            raise LogError("an erasure needs a reason (--reason TEXT): the log keeps it with the tombstone")
        identity = _identity_of(site or "", candidate_id)
        who = f"candidate {candidate_id} at site {site}" if site else f"candidate {candidate_id} (no site)"
        erasure = Erasure(erasure_id=str(uuid.uuid4()), site=site or "", candidate_id=candidate_id,
                          erased_at=_now(), erased_by=erased_by[:200], reason=reason[:2000])
        try:
            with self.engine.begin() as conn:
                ids = list(conn.execute(select(entries.c.entry_id).where(entries.c.identity == identity)
                                        .order_by(entries.c.id)).scalars())
                if not ids:
                    raise LogError(f"the screening log {self.shown} holds no entry of {who}; check the site and "
                                   "id as they were screened (`nlc-screen audit --log --by site`)")
                erasure.entries = len(ids)
                conn.execute(insert(erasures).values(
                    erasure_id=erasure.erasure_id, identity=identity, site=erasure.site,
                    candidate_id=candidate_id, erased_at=erasure.erased_at, erased_by=erasure.erased_by,
                    reason=erasure.reason, entries=erasure.entries))
                erasure.records = _clear(conn, ids, erasure.erasure_id, erasure.erased_at)
        except SQLAlchemyError as exc:
            raise LogError(f"cannot write to the screening log {self.shown}: {_reason(exc)}") from None
        erasure.purged = self._purge()
        return erasure

    def purge(self) -> bool:
        """Finish the erasures' purge of the log's files (SQLite: write the WAL back and empty it), as
        :meth:`erase` does at its end; whether it could (see :meth:`_purge`)."""
        return self._purge()

    def erasures(self) -> list[dict[str, Any]]:
        """Every erasure's tombstone, oldest first."""
        query = select(erasures.c.erasure_id, erasures.c.site, erasures.c.candidate_id, erasures.c.erased_at,
                       erasures.c.erased_by, erasures.c.reason, erasures.c.entries).order_by(erasures.c.erased_at)
        with self._read() as conn:
            return [dict(r, erased_at=_iso(r["erased_at"])) for r in conn.execute(query).mappings()]

    def _purge(self) -> bool:
        """After an erasure: SQLite copies the write-ahead log into the file and empties it (the cleared
        values were overwritten with zeros there: ``secure_delete``); whether it could (another process
        reading the log blocks it: until the next complete checkpoint the old pages stay in the file and
        the new ones in ``FILE-wal``). PostgreSQL keeps old row versions until VACUUM (docs/log.md): True."""
        if self.backend != "sqlite":
            return True
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(PURGE_WAIT_S * 1000)}")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            found = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        except Exception:  # noqa: BLE001 - the checkpoint could not run: the values may still be in the files
            return False
        finally:
            raw.close()
        # (busy, frames in the WAL, frames checkpointed): busy 0 and a WAL emptied (-1: not in WAL mode)
        return found is not None and found[0] == 0 and found[1] in (0, -1)

    def batch_progress(self, batch_id: str) -> tuple[int, str | None]:
        """How many entries batch ``batch_id`` has in the log, and the input position of its last (None
        when it has none). A batch's chunks are committed in input order, so they are its first records."""
        with self._read() as conn:
            count = conn.execute(select(func.count()).select_from(entries)
                                 .where(entries.c.batch_id == batch_id)).scalar_one()
            last = conn.execute(select(entries.c.position).where(entries.c.batch_id == batch_id)
                                .order_by(entries.c.id.desc()).limit(1)).scalar()
        return int(count), last

    def replay(self) -> Iterator[dict[str, Any]]:
        """Every entry with what re-screening it needs, oldest first: ``entry_id``, ``position``,
        ``candidate_id``, ``site``, ``pack``, ``set_name``, ``set_version``, ``set_sha256``, ``row`` (the
        decision logged), ``record`` (the input text kept, or None) and ``erased_at`` (None unless erased)."""
        query = (select(entries.c.entry_id, entries.c.position, entries.c.candidate_id, entries.c.site,
                        entries.c.pack, entries.c.set_name, entries.c.set_version, entries.c.set_sha256,
                        entries.c.row, records.c.body, records.c.erased_at)
                 .select_from(entries.outerjoin(records, entries.c.entry_id == records.c.entry_id))
                 .order_by(entries.c.id))
        with self._read() as conn:
            for r in conn.execution_options(yield_per=500).execute(query).mappings():
                item = dict(r)
                item["row"] = orjson.loads(item["row"])
                item["record"] = item.pop("body")
                item["erased_at"] = _iso(item["erased_at"])
                yield item

    def import_(self, lines: Iterable[bytes], *, name: str = "input") -> tuple[int, int]:
        """Entries exported from another log, in one transaction; (added, already there). An entry
        already in this log (its ``entry_id``) is skipped, so importing twice adds nothing; every
        tombstone is kept (once), and applied to the entries it cleared there.

        :raises LogError: a line is not what an export writes (naming it and the field), or the log
            cannot be written (naming the line); nothing is imported."""
        added = skipped = 0
        where = name
        try:
            with self.engine.begin() as conn:
                seen_batches: set[str] = set()
                for number, raw in enumerate(lines, 1):
                    if not raw.strip():
                        continue
                    where = f"{name} line {number}"
                    item = _export_line(raw, where)
                    if "tombstone" in item:  # an erasure that cleared no record there
                        lone = item["tombstone"]
                        _keep_tombstone(conn, lone, _identity_of(lone["site"] or "", lone["candidate_id"]), lone)
                        continue
                    exists = conn.execute(select(entries.c.id).where(entries.c.entry_id == item["entry_id"])).first()
                    if exists:
                        tombstone = item.get("erasure")
                        if tombstone is not None:  # erased there: erased here too
                            identity = conn.execute(select(entries.c.identity).where(
                                entries.c.entry_id == item["entry_id"])).scalar_one()
                            _keep_tombstone(conn, tombstone, identity, item)
                            _clear(conn, [item["entry_id"]], tombstone["erasure_id"], tombstone["erased_at"])
                        skipped += 1
                        continue
                    if item["batch_id"] not in seen_batches:
                        seen_batches.add(item["batch_id"])
                        known = conn.execute(select(batches.c.batch_id).where(
                            batches.c.batch_id == item["batch_id"])).first()
                        if not known:
                            conn.execute(insert(batches).values(
                                batch_id=item["batch_id"], started_at=item["screened_at"], screener=item["screener"],
                                source=f"imported from {name}"[:300], tool_version=item["tool_version"]))
                    values = {k: item[k] for k in EXPORT_FIELDS if k not in ("record", "row", "erasure")}
                    values["site"] = values["site"] or ""
                    identity = (_identity_of(item["site"] or "", item["candidate_id"])
                                if DuplicateCheck.counts(item["row"]) else f"entry:{item['entry_id']}")
                    conn.execute(insert(entries).values(**values, identity=identity,
                                                        row=orjson.dumps(item["row"]).decode()))
                    tombstone = item.get("erasure")
                    if tombstone is not None:
                        _keep_tombstone(conn, tombstone, identity, item)
                    conn.execute(insert(records).values(
                        entry_id=item["entry_id"], input_sha256=item["input_sha256"],
                        body=None if tombstone is not None else item["record"],
                        erased_at=tombstone["erased_at"] if tombstone is not None else None,
                        erasure_id=tombstone["erasure_id"] if tombstone is not None else None))
                    added += 1
        except SQLAlchemyError as exc:
            raise LogError(f"cannot write to the screening log {shown_url(self.url or '')} ({where}): "
                           f"{_reason(exc)}") from None
        return added, skipped

    def _scalars(self, query: Any) -> list[Any]:
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise LogError(f"cannot read the screening log {shown_url(self.url or '')}: {_reason(exc)}") from None


class Batch:
    """Entries being added to a log as one batch (see :meth:`ScreeningLog.batch`).

    Entries are written by a thread of the batch's own, in chunks, while the caller goes on screening
    (the database's work runs outside Python's lock, so the two overlap). With ``commit_every`` the
    writer commits each chunk; without, the whole batch is one transaction, committed by
    :meth:`close` — or rolled back by :meth:`abort`, leaving nothing of it in the log.
    """

    #: Entries per chunk handed to the writer when the batch is one transaction.
    CHUNK = 1000

    def __init__(self, log: ScreeningLog, *, screener: str, source: str, pack: str, commit_every: int | None,
                 batch_id: str | None = None) -> None:
        self.log = log
        self.pack = pack
        self.batch_id = batch_id or str(uuid.uuid4())
        self.screener = screener[:200]
        self.source = source[:300]
        self.commit_every = commit_every
        self.version = tool_version()
        self.pending: list[tuple[dict[str, Any], str | None, str, dt.date | None]] = []
        self.written = 0
        self._chunk = commit_every or self.CHUNK
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)  # back-pressure: a few chunks in flight
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def add(self, row: dict[str, Any], text: str | None, position: str, screening_start: dt.date | None = None) -> None:
        """Log one row, screened from ``text`` (the input record's JSON text, None if unreadable).

        :raises LogError: an earlier chunk could not be written."""
        if screening_start is None and text is not None and row.get("decision") != "error":
            screening_start = _screening_start(text)
        self.pending.append((row, text, position, screening_start))
        if len(self.pending) >= self._chunk:
            self._send()

    def _send(self) -> None:
        self._check()
        self._start()
        chunk, self.pending = self.pending, []
        self._queue.put(chunk)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name=f"log-batch-{self.batch_id[:8]}", daemon=True)
            self._thread.start()

    def _check(self) -> None:
        if self._error is not None:
            error = self._error
            raise LogError(f"cannot write to the screening log {self.log.shown}: "
                           f"{_reason(error) if isinstance(error, SQLAlchemyError) else type(error).__name__}")

    def close(self) -> None:
        """Write what is pending, wait for the writer, commit. Also when nothing was added: the batch is
        recorded. :raises LogError: a chunk could not be written (a one-transaction batch leaves nothing)."""
        self._start()
        if self._error is None:
            chunk, self.pending = self.pending, []
            self._queue.put(chunk)
        self._queue.put(_COMMIT)
        assert self._thread is not None
        self._thread.join()
        self._check()

    def abort(self) -> None:
        """Stop: roll back what is not committed (all of a one-transaction batch)."""
        self.pending.clear()
        if self._thread is not None:
            self._queue.put(_ROLLBACK)
            self._thread.join()

    def _write(self) -> None:
        """The writer thread: chunks from the queue into the database until told to commit or roll back."""
        conn: Connection | None = None
        transaction: Any = None
        try:
            conn = self.log.engine.connect()
            first = True
            while True:
                chunk = self._queue.get()
                if chunk is _COMMIT or chunk is _ROLLBACK:
                    if transaction is not None:
                        (transaction.commit if chunk is _COMMIT else transaction.rollback)()
                    return
                if transaction is None:
                    transaction = conn.begin()
                self._insert(conn, chunk, first)
                first = False
                if self.commit_every is not None:
                    transaction.commit()
                    transaction = None
                self.written += len(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
            while self._queue.get() not in (_COMMIT, _ROLLBACK):  # let the caller finish putting
                pass
        finally:
            if conn is not None:
                conn.close()

    def _insert(self, conn: Connection, chunk: list[tuple[dict[str, Any], str | None, str, dt.date | None]],
                first: bool) -> None:
        now = _now()
        if first and not conn.execute(select(batches.c.batch_id).where(batches.c.batch_id == self.batch_id)).first():
            conn.execute(insert(batches).values(batch_id=self.batch_id, started_at=now, screener=self.screener,
                                                source=self.source, tool_version=self.version))
        if not chunk:
            return
        entry_rows, record_rows = [], []
        for row, text, position, start in chunk:
            stamp = row.get("ruleset") or {}
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() if text is not None else None
            entry_id = str(uuid.uuid4())
            site, cid = row.get("site") or "", str(row.get("candidate_id"))
            entry_rows.append({
                "entry_id": entry_id, "site": site, "candidate_id": cid,
                "identity": _identity_of(site, cid) if DuplicateCheck.counts(row) else f"entry:{entry_id}",
                "decision": row["decision"],
                "category": row["category"], "subcategory": row.get("subcategory"),
                "primary_criterion": row.get("primary_criterion"), "screening_start": start,
                "row": orjson.dumps(row).decode(), "pack": self.pack, "set_name": stamp.get("name", ""),
                "set_version": stamp.get("version", ""), "set_sha256": stamp.get("sha256", ""),
                "tool_version": self.version, "input_sha256": digest, "screened_at": now,
                "screener": self.screener, "batch_id": self.batch_id, "position": position})
            record_rows.append({"entry_id": entry_id, "input_sha256": digest, "body": text})
        _insert_many(conn, entries, entry_rows, dates=("screening_start",), times=("screened_at",))
        _insert_many(conn, records, record_rows)


@dataclass
class Erasure:
    """A tombstone: one candidate's input records cleared (see :meth:`ScreeningLog.erase`)."""

    erasure_id: str
    site: str
    candidate_id: str
    erased_at: dt.datetime
    erased_by: str
    reason: str
    #: the candidate's entries, and how many of their records this erasure cleared (the others were already)
    entries: int = 0
    records: int = 0
    #: whether the cleared values are gone from the log's files (False: SQLite could not write its WAL
    #: back, another process reading the log; they go at the next complete checkpoint)
    purged: bool = True


def erased_row(row: dict[str, Any]) -> dict[str, Any]:
    """A decision row as an erasure leaves it: :data:`KEPT_ON_ERASURE`, each criterion's status only,
    and ``erased: true``."""
    kept = {key: row[key] for key in KEPT_ON_ERASURE if key in row}
    if "criteria" in row:
        kept["criteria"] = {cid: {"status": (result or {}).get("status")} for cid, result in row["criteria"].items()}
    kept["erased"] = True
    return kept


def _clear(conn: Connection, entry_ids: list[str], erasure_id: str, when: dt.datetime) -> int:
    """Clear the records of ``entry_ids`` not cleared yet and strip their rows; how many records were cleared."""
    cleared = 0
    for start in range(0, len(entry_ids), 500):
        ids = entry_ids[start:start + 500]
        cleared += conn.execute(records.update().where(records.c.entry_id.in_(ids), records.c.erased_at.is_(None))
                                .values(body=None, erased_at=when, erasure_id=erasure_id)).rowcount or 0
        for entry_id, text in conn.execute(select(entries.c.entry_id, entries.c.row)
                                           .where(entries.c.entry_id.in_(ids))).all():
            row = orjson.loads(text)
            if not row.get("erased"):
                conn.execute(entries.update().where(entries.c.entry_id == entry_id)
                             .values(row=orjson.dumps(erased_row(row)).decode()))
    return cleared


def _keep_tombstone(conn: Connection, tombstone: dict[str, Any], identity: str, item: dict[str, Any]) -> None:
    """Add an imported tombstone unless the log has it already."""
    if conn.execute(select(erasures.c.erasure_id).where(erasures.c.erasure_id == tombstone["erasure_id"])).first():
        return
    conn.execute(insert(erasures).values(
        erasure_id=tombstone["erasure_id"], identity=identity, site=item["site"] or "",
        candidate_id=item["candidate_id"], erased_at=tombstone["erased_at"], erased_by=tombstone["erased_by"][:200],
        reason=tombstone["reason"], entries=tombstone["entries"]))


_COMMIT, _ROLLBACK = object(), object()


def _identity_of(site: str, candidate_id: str) -> str:
    """A candidate's identity in the log: its site and id (exactly as written), as the JSON array
    ``["site","id"]`` — unambiguous whatever characters either holds (migration 0005 says why)."""
    return json.dumps([site, candidate_id], ensure_ascii=False, separators=(",", ":"))


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]], *,
                 dates: tuple[str, ...] = (), times: tuple[str, ...] = ()) -> None:
    """``INSERT`` many rows through the driver's own executemany, without SQLAlchemy's per-row
    parameter processing (a third of a 10,000-row batch's log time). SQLite gets dates and times as
    the text SQLAlchemy itself stores (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS.ffffff``, UTC)."""
    names = list(rows[0])
    sqlite = conn.dialect.name == "sqlite"
    marks = ", ".join(f":{n}" if sqlite else f"%({n})s" for n in names)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
    if sqlite:  # the columns named dates and times, as SQLAlchemy's SQLite types store them
        shown: dict[Any, str] = {}
        for row in rows:
            for key in dates:
                if row[key] is not None:
                    row[key] = row[key].isoformat()
            for key in times:
                value = row[key]
                if value not in shown:
                    shown[value] = value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
                row[key] = shown[value]
    conn.exec_driver_sql(sql, rows)


_START = re.compile(r'"screening_start"\s*:\s*"(\d{4}-\d{2}-\d{2})"')


def _screening_start(text: str) -> dt.date | None:
    """The record's screening_start (the date audits filter on): found in the text (a record that was
    screened has exactly one, at its top level), else read from the parsed JSON."""
    found = _START.search(text)
    if found is not None:
        return _date(found.group(1))
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return _date(data.get("screening_start")) if isinstance(data, dict) else None


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives back naive datetimes: they were written in UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat()


#: Export fields that must be text (the others may also be null).
_TEXT_FIELDS = ("entry_id", "candidate_id", "decision", "category", "pack", "set_name", "set_version", "set_sha256",
                "tool_version", "screener", "batch_id", "position")
_NULLABLE_TEXT_FIELDS = ("site", "subcategory", "primary_criterion", "input_sha256", "screening_start", "record")
_TOMBSTONE_FIELDS = ("erasure_id", "erased_at", "erased_by", "reason", "entries")


def _tombstone(tombstone: Any, where: str, name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """A tombstone of an export line, checked and its time parsed. :raises LogError: naming the field."""
    if not isinstance(tombstone, dict) or set(tombstone) != set(fields):
        raise LogError(f"{where}: {name!r} is not what an export writes (an object of {', '.join(fields)})")
    for key in fields:
        if key == "entries":
            value = tombstone[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LogError(f"{where}: '{name}.entries' is not a whole number")
        elif not isinstance(tombstone[key], str):
            raise LogError(f"{where}: '{name}.{key}' is not text")
    try:
        tombstone["erased_at"] = dt.datetime.fromisoformat(tombstone["erased_at"])
    except ValueError:
        raise LogError(f"{where}: '{name}.erased_at' is not a time") from None
    return tombstone


def _export_line(raw: bytes, where: str) -> dict[str, Any]:
    """One line of an export, checked: an entry, or (``{"tombstone": …}``) an erasure on no entry.

    :raises LogError: naming the line (``where``) and the field, never a value."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LogError(f"{where}: not JSON ({exc})") from None
    if isinstance(item, dict) and set(item) == {"tombstone"}:
        item["tombstone"] = _tombstone(item["tombstone"], where, "tombstone", (*_TOMBSTONE_FIELDS, "site",
                                                                                 "candidate_id"))
        return item
    required = set(EXPORT_FIELDS) - set(OPTIONAL_EXPORT_FIELDS)
    if not isinstance(item, dict) or not required <= set(item) <= set(EXPORT_FIELDS):
        missing = sorted(required - set(item)) if isinstance(item, dict) else []
        raise LogError(f"{where}: not an exported log entry (missing: {', '.join(missing) or 'the fields'})")
    for key in _TEXT_FIELDS:
        if not isinstance(item[key], str):
            raise LogError(f"{where}: {key!r} is not text")
    for key in _NULLABLE_TEXT_FIELDS:
        if item[key] is not None and not isinstance(item[key], str):
            raise LogError(f"{where}: {key!r} is neither text nor null")
    tombstone = item.setdefault("erasure", None)
    if tombstone is not None:
        _tombstone(tombstone, where, "erasure", _TOMBSTONE_FIELDS)
    when = item["screened_at"]
    try:
        item["screened_at"] = dt.datetime.fromisoformat(when) if isinstance(when, str) else None
    except ValueError:
        item["screened_at"] = None
    if item["screened_at"] is None or not isinstance(item["row"], dict):
        raise LogError(f"{where}: screened_at or row is not what an export writes")
    item["screening_start"] = _date(item["screening_start"])
    return item


def _reason(exc: SQLAlchemyError) -> str:
    """A database error in one line, without SQL or parameters (they may hold record contents)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, secure_delete; the write lock taken at BEGIN (no deadlock on upgrade)."""

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN off: ours below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except Exception:  # noqa: BLE001 - a read-only medium: the log can still be read
            pass
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")  # what an erasure clears is overwritten, not left in free space
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# -- migrations -----------------------------------------------------------------------------------

def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create the log's tables, or upgrade them, to ``revision`` (one writer at a time). A log already
    at the head is only read (so that a log on a read-only medium can still be audited)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    if revision == "head":
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        try:
            if current_revision(engine) == head:
                return
        except Exception:  # noqa: BLE001 - cannot tell (the driver's own error): the upgrade says why
            pass

    for attempt in range(5):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7423901)")  # nlc-screen's migration lock
                command.upgrade(alembic_config(conn), revision)
            return
        except OperationalError:
            if attempt == 4:
                raise


def current_revision(engine: Engine) -> str | None:
    """The log's current migration revision, read without a write lock (None for an empty database)."""
    raw = engine.raw_connection()  # the driver's own connection: no BEGIN IMMEDIATE for a read
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT version_num FROM alembic_version")
            found = cursor.fetchone()
        except Exception:  # noqa: BLE001 - no such table yet: an empty database
            return None
        return str(found[0]) if found else None
    finally:
        raw.close()


def revision(engine: Engine) -> str | None:
    """The log's current migration revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
