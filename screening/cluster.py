"""Screening partitioned inputs on a Dask cluster: ``nlc-screen screen --engine dask``.

An input made of many files (partitions: JSON Lines, or Parquet read with pyarrow; also JSON and CSV
files, read as ``nlc-screen screen`` reads them) is screened one partition per task, on a Dask
cluster: a :class:`distributed.LocalCluster` sized to this machine when no scheduler address is
given, else the cluster at that address. Each worker process

* checks that it runs the client's versions of nlc-screen, durable-rules, pydantic, orjson and pyarrow
  (:data:`SAME_VERSIONS`), loads the criteria set itself (by name, or by its file path on a shared file
  system) and checks that its sha256 is the one the client loaded: every worker screens under exactly
  the same code and set;
* builds its screener once (one rules engine per process, kept for every later partition);
* reads its partition file itself, screens it exactly as ``nlc-screen screen PARTITION --format jsonl``
  does (:func:`screening.batch.screen_batch` with one process), and writes the rows to
  ``OUT_DIR/<partition stem>.decisions.jsonl`` (a temporary file beside it, renamed when complete);
* sends back a small summary (rows, error rows, the first error positions), never rows.

So the rows of each output file are, row for row and byte for byte, those of the single-process run
on that partition alone: positions are the partition's own (``line 7``), and the duplicate-candidate
warnings in the rows are those within the partition. The partition an error row comes from is the
output file's name; the run's summary names the first error rows of each partition as
``part-0003.jsonl line 7: …``.

Candidates in more than one partition are found by a second pass over ids once every partition is
done: workers read the output files back and send the 8-byte digests of the (site, candidate_id)
pairs they hold (compared with surrounding spaces and case ignored, as the single-process check
does); for the few digests seen in more than one partition the partitions involved are read again
to name the records. These warnings are in :attr:`ClusterResult.duplicates`, not in the rows.

Parquet partitions: one row per candidate record, columns named as the record's top-level fields
(``nlc-screen schema``); a nested object (``diary``, ``nlc_assessment``, ``conditions``) is a struct
column, a list of objects (``diary.episodes``, ``medications``) a list of structs; dates are
``date32`` (or ``date64``, or a timestamp at midnight) or ISO ``YYYY-MM-DD`` strings; integers and
floats as the record says; a ``null`` anywhere in an object is left out (absent or null means
*unknown*). Row N of a Parquet partition is named ``line N`` in its rows. See docs/cluster.md.

Example::

    from screening.cluster import screen_partitions, read_output_dir
    result = screen_partitions("data/parts/", Path("out/"), load_ruleset(), workers=2)
    result.exit_code, result.summary(), result.duplicates
    audit_rows(read_output_dir("out/"), expect="figure1")
"""

from __future__ import annotations

import datetime as dt
import glob as globbing
import logging
import math
import os
import socket
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from .errors import (
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_RECORD_ERRORS,
    EXIT_UNREADABLE,
    CandidateRecordError,
    FieldProblem,
    InputFormatError,
    OutputError,
    RuleDefinitionError,
    RulesetNotFound,
    ScreeningError,
    WorkerError,
)
from .io import Item, RecordStream
from .protocol import Ruleset
from .scale import keep_freed_memory
from .text import visible

#: File names taken from an input directory (hidden files, ``_``-files such as ``_SUCCESS`` or
#: ``_metadata``, and earlier output, ``*.decisions.jsonl``, are skipped).
INPUT_SUFFIXES = (".jsonl", ".ndjson", ".parquet", ".json", ".csv")
#: What each partition's output file is named: ``<input stem>`` + this.
OUTPUT_SUFFIX = ".decisions.jsonl"
#: Error rows named per partition in :attr:`Partition.error_lines` (all are counted).
ERRORS_NAMED = 20
#: Lines of :meth:`ClusterResult.summary` given to error rows and to duplicates each.
SUMMARY_LINES = 20
#: Parquet rows converted per batch in a worker.
PARQUET_BATCH_ROWS = 4096
#: Seconds to wait for a scheduler to answer, and for its first worker to join.
CONNECT_TIMEOUT = 60.0

_POSITION_IDS = ("line ", "index ", "record ")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Partition:
    """One input partition and how its screening ended (a task's small summary)."""

    input: Path
    output: Path
    rows: int = 0
    errors: int = 0
    #: the first :data:`ERRORS_NAMED` error rows as ``<partition file> <its error>``
    #: (``part-0003.jsonl line 7: not valid JSON``)
    error_lines: list[str] = field(default_factory=list)
    #: why the partition, or the rest of it, could not be read (no output file when nothing was read)
    unread: str | None = None
    #: why the output file could not be written (it was then not written at all)
    failed: str | None = None
    #: which worker screened it (host and process id) and how long it took there
    worker: str = ""
    seconds: float = 0.0
    #: CPU seconds of the thread that screened it (below ``seconds`` when the worker waited for a core)
    cpu_seconds: float = 0.0

    @property
    def written(self) -> bool:
        return self.failed is None and not (self.unread and self.rows == 0)


@dataclass
class ClusterResult:
    """How a partitioned run ended: per partition, the totals, and the cross-partition duplicates."""

    partitions: list[Partition]
    out_dir: Path
    #: cross-partition duplicate warnings (a second record for a candidate in another partition),
    #: in partition order; within a partition the rows carry their own warnings
    duplicates: list[str] = field(default_factory=list)
    #: ``*.decisions.jsonl`` files in the output directory that this run did not write (an earlier
    #: run's): ``nlc-screen audit OUT_DIR`` would count them too
    stale: list[Path] = field(default_factory=list)
    #: the scheduler's address and how many workers it had
    scheduler: str = ""
    workers: int = 0
    seconds: float = 0.0
    #: wall seconds of each phase: ``start`` (cluster up, or connected), ``screen`` (every partition),
    #: ``duplicates`` (the second pass), ``close``
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.partitions)

    @property
    def exit_code(self) -> int:
        """4 when an output file could not be written; 1 when a partition (or part of one) could not
        be read or no record was read at all; 3 when some records were error rows; else 0 — as
        :attr:`screening.batch.BatchResult.exit_code`. Duplicates do not change it."""
        if any(p.failed for p in self.partitions):
            return EXIT_OUTPUT
        if any(p.unread for p in self.partitions) or self.rows == 0:
            return EXIT_UNREADABLE
        return EXIT_RECORD_ERRORS if self.errors else EXIT_OK

    def summary(self) -> str:
        """What to tell the user (stderr): the totals, then what went wrong, partition by partition, and
        the cross-partition duplicates. Values from records (ids, sites) are escaped visibly."""
        lines = [f"{self.rows:,} record(s) in {len(self.partitions)} partition(s) screened on {self.workers} Dask "
                 f"worker(s) ({self.scheduler}) in {self.seconds:.1f} s; {self.errors:,} error row(s); "
                 f"decisions in {self.out_dir}/*{OUTPUT_SUFFIX}"]
        for p in self.partitions:
            if p.failed:
                lines.append(f"{p.input.name}: not written: {p.failed}")
            if p.unread:
                lines.append(f"{p.input.name}: {p.unread}")
        if self.rows == 0:
            lines.append("0 records read: the input holds no candidate record.")
        if self.errors:
            named = [line for p in self.partitions for line in p.error_lines]
            lines.append(f"{self.errors:,} record(s) could not be read; see their error rows:")
            lines += ["  " + visible(line) for line in named[:SUMMARY_LINES]]
            if self.errors > min(len(named), SUMMARY_LINES):
                lines.append(f"  … and {self.errors - min(len(named), SUMMARY_LINES):,} more")
        if self.duplicates:
            lines.append(f"{len(self.duplicates):,} candidate record(s) also in an earlier partition:")
            lines += ["  " + visible(text) for text in self.duplicates[:SUMMARY_LINES]]
            if len(self.duplicates) > SUMMARY_LINES:
                lines.append(f"  … and {len(self.duplicates) - SUMMARY_LINES:,} more (ClusterResult.duplicates)")
        if self.stale:
            lines.append(f"{len(self.stale)} other decision file(s) in {self.out_dir} were not written by this run "
                         f"(an audit of the directory counts them too): "
                         + ", ".join(visible(p.name) for p in self.stale[:5]) + (" …" if len(self.stale) > 5 else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Finding partitions and naming outputs


def find_partitions(inputs: Sequence[Path | str] | Path | str) -> list[Path]:
    """The partition files of an input, in input order.

    A directory: its files ending in one of :data:`INPUT_SUFFIXES`, by name (hidden and ``_`` files and
    ``*.decisions.jsonl`` skipped). One file: itself. Anything else is a glob pattern (``**`` recurses),
    its matching files by name. A list: its paths, in the order given.

    :raises InputFormatError: nothing matches, or two partitions would write the same output file.
    """
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and _partition_name(f.name))
            if not files:
                raise InputFormatError(f"the input directory {inputs} holds no partition file "
                                       f"({', '.join('*' + s for s in INPUT_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        else:
            files = sorted(Path(name) for name in globbing.glob(str(inputs), recursive=True) if os.path.isfile(name))
            if not files:
                raise InputFormatError(f"no partition file matches {inputs} (neither a directory, a file nor a "
                                       f"glob pattern that matches files)")
    else:
        files = [Path(p) for p in inputs]
        if not files:
            raise InputFormatError("no input partition given")
    outputs: dict[str, Path] = {}
    for f in files:
        earlier = outputs.setdefault(output_name(f), f)
        if earlier is not f:
            raise InputFormatError(f"partitions {earlier} and {f} would both be written to {output_name(f)}: "
                                   f"partitions need different names (before their last suffix)")
    return files


def _partition_name(name: str) -> bool:
    low = name.lower()
    return not name.startswith((".", "_")) and low.endswith(INPUT_SUFFIXES) and not low.endswith(OUTPUT_SUFFIX)


def output_name(partition: Path | str) -> str:
    """The output file name of a partition: ``part-0003.jsonl`` -> ``part-0003.decisions.jsonl``."""
    return Path(partition).stem + OUTPUT_SUFFIX


def ruleset_spec(ruleset: Ruleset) -> str:
    """How a worker finds the criteria set: ``PACK/SET@VERSION`` for a set shipped with nlc-screen, else
    the set file's absolute path (which must be the same on every worker: a shared file system)."""
    if ruleset.pack and ruleset.path.startswith("rules/"):
        return f"{ruleset.pack}/{ruleset.name}@{ruleset.version}"
    return str(Path(ruleset.path).resolve())


#: The distributions whose versions must be the same on the client and every worker for the rows to be the
#: same (the screening code, the engine, the record validation and its messages, the row encoding, Parquet).
SAME_VERSIONS = ("nlc-screen", "durable-rules", "pydantic", "pydantic-core", "orjson", "pyarrow")


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in SAME_VERSIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
            found[name] = None
    return found


# ---------------------------------------------------------------------------------------------
# Parquet partitions


class _NotRecordValue(Exception):
    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def _field_path(loc: tuple[str | int, ...]) -> str:
    """A field path for a message (``medications[0].start_date``), cut before a name not to be shown."""
    from .record import format_path, shown_name

    shown: list[str | int] = []
    for part in loc:
        if isinstance(part, str):
            name = shown_name(part)
            if name is None:
                break
            part = name
        shown.append(part)
    return format_path(tuple(shown))


def _plain(value: Any, loc: tuple[str | int, ...]) -> Any:
    """A Parquet value as the record's JSON holds it (see the module docstring)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotRecordValue(loc, "must be a finite number")
        return value
    if isinstance(value, dict):
        return {key: _plain(inner, (*loc, key)) for key, inner in value.items() if inner is not None}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):  # a map column
            return _plain(dict(value), loc)
        return [_plain(inner, (*loc, i)) for i, inner in enumerate(value)]
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise _NotRecordValue(loc, "a timestamp with a time of day; a date must be a date32 column "
                                       "or ISO YYYY-MM-DD text")
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _NotRecordValue(loc, "must be a finite number")
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotRecordValue(loc, "binary data that is not UTF-8 text") from None
    raise _NotRecordValue(loc, f"a Parquet value of type {type(value).__name__}, which a record cannot hold")


def parquet_record(row: dict[str, Any]) -> dict[str, Any]:
    """One Parquet row (as ``pyarrow`` gives it: ``Table.to_pylist()``) as the record's JSON object.

    :raises ValueError: a value a record cannot hold (its message names the field, never the value).
    """
    try:
        return {key: _plain(value, (key,)) for key, value in row.items() if value is not None}
    except _NotRecordValue as exc:
        raise ValueError(f"{_field_path(exc.loc)}: {exc.message}") from None


def parquet_schema(ruleset: Ruleset) -> Any:
    """The Parquet (pyarrow) schema of the set's record: one column per top-level field, in the record's
    order, every one nullable; objects as structs, lists of objects as lists of structs, dates as
    ``date32``, whole numbers ``int64``, numbers ``float64``, booleans ``bool``, the rest ``string``.
    Write partitions with it (``pyarrow.Table.from_pylist(records, schema=parquet_schema(ruleset))``);
    any schema that holds the same values in the types :func:`parquet_record` reads is accepted too."""
    import pyarrow as pa

    from .record import record_json_schema

    schema = record_json_schema(ruleset.record.model)
    defs = schema.get("$defs", {})

    def arrow(prop: dict[str, Any]) -> Any:
        if "anyOf" in prop:
            options = [p for p in prop["anyOf"] if p.get("type") != "null"]
            prop = options[0] if len(options) == 1 else {"type": "string"}
        if "$ref" in prop:
            prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
        kind = prop.get("type")
        if kind == "object" and "properties" in prop:
            return pa.struct([pa.field(name, arrow(p)) for name, p in prop["properties"].items()])
        if kind == "array":
            return pa.list_(arrow(prop.get("items", {})))
        if kind == "string" and prop.get("format") == "date":
            return pa.date32()
        return {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}.get(str(kind), pa.string())

    return pa.schema([pa.field(name, arrow(p)) for name, p in schema["properties"].items()])


def _parquet_item(row: dict[str, Any], number: int) -> Item:
    position = f"line {number}"
    try:
        record = {key: _plain(value, (key,)) for key, value in row.items() if value is not None}
    except _NotRecordValue as exc:
        cid, site = row.get("candidate_id"), row.get("site")
        return Item(position, error=CandidateRecordError(
            [FieldProblem(_field_path(exc.loc), exc.message)], position=position,
            candidate_id=cid if isinstance(cid, str) else None, site=site if isinstance(site, str) else None))
    return Item(position, orjson.dumps(record).decode())


def read_parquet(path: Path | str, *, batch_rows: int = PARQUET_BATCH_ROWS) -> RecordStream:
    """The items of a Parquet partition: row N is ``line N``, its text the record's JSON
    (:func:`parquet_record`); a row holding a value no record can is an error item. Read a batch of
    rows at a time. When the file cannot be read on to its end (a damaged row group), one error item
    says where reading stopped and ``unread`` how many rows were not read.

    :raises InputFormatError: the file is not a Parquet file that pyarrow can open.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = Path(path).name
    try:
        parquet = pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise InputFormatError(f"{name}: not a Parquet file that can be read ({type(exc).__name__}: {exc})") from None
    total = parquet.metadata.num_rows
    stream = RecordStream()

    def items() -> Iterator[Item]:
        number = 0
        try:
            for group in range(parquet.num_row_groups):  # one at a time: damage stops reading at its group
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group]):
                    for row in batch.to_pylist():
                        number += 1
                        yield _parquet_item(row, number)
        except (pa.ArrowException, OSError) as exc:
            stream.unread = (f"reading {name} stopped at row {number + 1} ({type(exc).__name__}): "
                             f"{max(total - number, 0):,} row(s) were not read")
            yield Item(f"line {number + 1}", error=CandidateRecordError(
                [FieldProblem("", "the Parquet data from this row on could not be read")],
                position=f"line {number + 1}"))
        finally:
            parquet.close()

    stream._items = items()
    return stream


def _is_parquet(path: str) -> bool:
    if path.lower().endswith(".parquet"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# In a worker process

#: (sha256, lang) -> the screener this worker process built (its engine is the process's one)
_SCREENERS: dict[tuple[str, str], Any] = {}
_SCREENERS_LOCK = threading.Lock()
#: this worker process's versions of :data:`SAME_VERSIONS` (read once)
_MY_VERSIONS: dict[str, dict[str, str | None]] = {}
#: one partition at a time per process: the engine is not shared between threads (start workers
#: with one thread each: ``dask worker --nthreads 1``)
_SCREENING_LOCK = threading.Lock()


def _where() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _worker_screener(spec: str, sha256: str, lang: str, versions: dict[str, str | None]) -> Any:
    """This process's screener for the set (loaded here from ``spec``, checked against ``sha256``)."""
    from .protocol import load_ruleset
    from .screen import Screener

    with _SCREENERS_LOCK:
        mine = _MY_VERSIONS.setdefault("", _versions())
        differ = [f"{name} {mine.get(name)} (the client's {theirs})" for name, theirs in versions.items()
                  if mine.get(name) != theirs]
        if differ:
            raise ScreeningError(f"the Dask worker on {_where()} runs {', '.join(differ)}: install the same "
                                 f"versions in every worker's environment")
        screener = _SCREENERS.get((sha256, lang))
        if screener is not None:
            return screener
        if not _SCREENERS:  # this process's first partition
            # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536: every freed 64 KiB goes back to the
            # kernel and the heap regrows around each batch (2.0 s of system time for 125,000 records on 2
            # workers, against 0.7 s for --workers 2): keep freed memory as the --workers pool does
            keep_freed_memory()
        try:
            ruleset = load_ruleset(spec)
        except (RulesetNotFound, RuleDefinitionError) as exc:
            raise ScreeningError(f"the Dask worker on {_where()} cannot load the criteria set {spec}: {exc}") from None
        if ruleset.sha256 != sha256:
            raise ScreeningError(f"the criteria set {spec} on the Dask worker {_where()} is not the client's "
                                 f"(sha256 {ruleset.sha256[:12]}…, the client's {sha256[:12]}…): every worker must "
                                 f"have the same pack files")
        screener = _SCREENERS[(sha256, lang)] = Screener(ruleset, lang=lang)
        return screener


class _Watched:
    """A row sink that passes rows on to a :class:`~screening.output.RowWriter` and notes the error rows."""

    def __init__(self, writer: Any, name: str) -> None:
        self.writer = writer
        self.name = name
        self.rows = 0
        self.errors = 0
        self.error_lines: list[str] = []

    def write(self, row: Any) -> None:
        self.writer.write(row)
        self.rows += 1
        if row["decision"] == "error":
            self.errors += 1
            if len(self.error_lines) < ERRORS_NAMED:
                self.error_lines.append(f"{self.name} {row.get('error', '')}")

    def write_block(self, data: bytes, count: int) -> None:  # not used with one process; for completeness
        for line in data.split(b"\n")[:count]:
            self.write(orjson.loads(line))

    def close(self) -> None:
        self.writer.close()


def _screen_partition(job: dict[str, Any]) -> dict[str, Any]:
    """A Dask task: screen one partition file into its output file; return its summary (no rows)."""
    from .batch import screen_batch
    from .output import RowWriter
    from .screen import screen_items
    from .sink import open_output

    started, cpu = time.perf_counter(), time.thread_time()
    source, target = job["input"], job["output"]
    name = Path(source).name
    summary: dict[str, Any] = {"rows": 0, "errors": 0, "error_lines": [], "unread": None, "failed": None,
                               "worker": _where()}
    screener = _worker_screener(job["spec"], job["sha256"], job["lang"], job["versions"])
    ruleset = screener.ruleset
    with _SCREENING_LOCK:
        try:
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            if _is_parquet(source):
                records = read_parquet(source)  # before the output is opened: a file that is not Parquet writes none
                with open_output(target, input_path=source) as out:
                    sink = _Watched(RowWriter(out, "jsonl", ruleset), name)
                    for row in screen_items(records, ruleset, include_record=job["include_record"], lang=job["lang"]):
                        sink.write(row)
                    sink.close()
                summary["unread"] = records.unread
            else:
                with open(source, "rb") as f, open_output(target, input_path=source) as out:
                    sink = _Watched(RowWriter(out, "jsonl", ruleset), name)
                    result = screen_batch(f, sink, ruleset, name=source, include_record=job["include_record"],
                                          lang=job["lang"])
                summary["unread"] = result.unread
            summary.update(rows=sink.rows, errors=sink.errors, error_lines=sink.error_lines)
        except OutputError as exc:
            summary["failed"] = str(exc)
        except InputFormatError as exc:
            summary["unread"] = f"cannot be read: {exc}"
        except OSError as exc:
            summary["unread"] = f"cannot be read: {exc.strerror or exc}"
    summary["seconds"] = time.perf_counter() - started
    summary["cpu_seconds"] = time.thread_time() - cpu
    return summary


def _head(line: bytes) -> dict[str, Any]:
    """The ``candidate_id`` and ``site`` of an output row, decoding only the start of it when it can.

    A row starts ``{"candidate_id":…,"site":…,"decision":…``; inside a JSON string a quote is always
    escaped, so the first ``,"decision":`` in the text ends the site. Anything else is decoded whole."""
    cut = line.find(b',"decision":')
    if cut > 0:
        try:
            head = orjson.loads(line[:cut] + b"}")
        except orjson.JSONDecodeError:
            head = None
        if isinstance(head, dict) and "candidate_id" in head:
            return head
    row = orjson.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a decision row")
    return row


def _takes_part(line: bytes, head: dict[str, Any]) -> bool:
    """Whether a row takes part in the duplicate check (an error row whose id is its position does not)."""
    from .screen import DuplicateCheck

    cid = head.get("candidate_id")
    if isinstance(cid, str) and cid.startswith(_POSITION_IDS):
        return DuplicateCheck.counts(orjson.loads(line))
    return True


def _output_rows(output: str) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    """(row number from 1, its candidate_id and site, its line) of every row of an output file."""
    number = 0
    with open(output, "rb") as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            number += 1
            try:
                head = _head(line)
            except ValueError:
                raise InputFormatError(f"{output} line {line_number}: not a JSON decision row") from None
            yield number, head, line


def _partition_keys(output: str) -> bytes:
    """A Dask task of the second pass: the distinct candidate digests of one output file (sorted 8-byte
    words; compared with surrounding spaces and case ignored, see :meth:`DuplicateCheck.key`).

    One tight loop (this reads every row of the run again): only the start of a row is decoded (:func:`_head`),
    the whole row only for an error row whose id may be its position."""
    from .screen import DuplicateCheck

    key_of, counts, loads, marker = DuplicateCheck.key, DuplicateCheck.counts, orjson.loads, b',"decision":'
    keys: set[int] = set()
    add = keys.add
    with open(output, "rb") as f:
        for number, line in enumerate(f, start=1):
            cut = line.find(marker)
            try:
                head = loads(line[:cut] + b"}") if cut > 0 else None
            except ValueError:
                head = None
            if type(head) is not dict or "candidate_id" not in head:
                if not line.strip():
                    continue
                try:
                    head = _head(line.rstrip(b"\r\n"))
                except ValueError:
                    raise InputFormatError(f"{output} line {number}: not a JSON decision row") from None
            cid = head.get("candidate_id")
            if type(cid) is str and cid.startswith(_POSITION_IDS) and not counts(loads(line)):
                continue
            add(key_of(head.get("site"), cid)[0])
    return array("Q", sorted(keys)).tobytes()


def _positions(job: dict[str, Any]) -> Iterator[str]:
    """The positions of a partition's records, in order (``line 7``): those of its rows."""
    from .io import read_records

    source = job["input"]
    if _is_parquet(source):
        import pyarrow.parquet as pq

        with pq.ParquetFile(source) as parquet:
            total = parquet.metadata.num_rows
        yield from (f"line {n}" for n in range(1, total + 2))  # one more: where a damaged file stopped
        return
    screener = _worker_screener(job["spec"], job["sha256"], job["lang"], job["versions"])
    with open(source, "rb") as f:
        for item in read_records(f, name=source, kinds=screener.ruleset.record.kinds):
            yield item.position


def _find_candidates(job: dict[str, Any], wanted: list[int]) -> list[tuple[int, int, str, str | None, str]]:
    """A Dask task of the second pass: (digest, row number, candidate_id, site, input position) of the rows of
    one partition whose candidate digest is one of ``wanted``."""
    from .screen import DuplicateCheck

    want = set(wanted)
    found: list[tuple[int, int, str, str | None, str]] = []
    positions = _positions(job)
    for number, head, line in _output_rows(job["output"]):
        position = next(positions, f"row {number}")
        if not _takes_part(line, head):
            continue
        key = DuplicateCheck.key(head.get("site"), head.get("candidate_id"))[0]
        if key in want:
            found.append((key, number, str(head.get("candidate_id")), head.get("site"), position))
    return found


# ---------------------------------------------------------------------------------------------
# In the client


def _cross_duplicates(partitions: list[Partition], found: dict[int, list[tuple[int, int, str, str | None, str]]]) -> list[str]:
    """The warnings for candidates in more than one partition, in partition order: for each later partition
    holding a candidate, its first record there, against the candidate's first record overall."""
    by_key: dict[int, list[tuple[int, int, str, str | None, str]]] = {}
    for index in sorted(found):
        for key, number, cid, site, position in found[index]:
            by_key.setdefault(key, []).append((index, number, cid, site, position))
    warnings: list[tuple[int, int, str]] = []
    for occurrences in by_key.values():
        occurrences.sort(key=lambda o: (o[0], o[1]))
        first = occurrences[0]
        where_first = f"{partitions[first[0]].input.name} {first[4]}"
        spellings = {(site or "", cid) for index, _, cid, site, _ in occurrences if index == first[0]}
        done = {first[0]}
        for index, number, cid, site, position in occurrences:
            if index in done:
                continue
            done.add(index)
            where = f"{partitions[index].input.name} {position}"
            if (site or "", cid) in spellings:
                text = (f"a second record for candidate {cid} at site {site or '(none)'} in {where} (first at "
                        f"{where_first}, another partition)")
            else:
                text = (f"candidate {cid} at site {site or '(none)'} in {where} matches the record at {where_first} "
                        f"once case and surrounding spaces are ignored: the same candidate typed differently, "
                        f"or two candidates?")
            warnings.append((index, number, text))
            spellings |= {(s or "", c) for i, _, c, s, _ in occurrences if i == index}
    return [text for _, _, text in sorted(warnings)]


def _gather(client: Any, futures: list[Any], what: Callable[[int], str]) -> list[Any]:
    """The futures' results in order; a task that failed stops the run (the rest are cancelled)."""
    from distributed import KilledWorker

    try:
        return [future.result() for future in futures]
    except KilledWorker as exc:
        index = next((i for i, f in enumerate(futures) if f.status == "error"), None)
        where = what(index) if index is not None else "a partition"
        raise WorkerError(f"the Dask workers screening {where} died ({exc}); partitions finished before it "
                          f"were written, the rest were not") from None
    finally:
        client.cancel([f for f in futures if not f.done()])


def screen_partitions(inputs: Sequence[Path | str] | Path | str, out_dir: Path | str, ruleset: Ruleset, *,
                      scheduler: str | None = None, workers: int | None = None, lang: str = "en",
                      include_record: bool = False, progress: Callable[[int], object] | None = None,
                      connect_timeout: float = CONNECT_TIMEOUT) -> ClusterResult:
    """Screen every partition of ``inputs`` on a Dask cluster, one output file per partition in ``out_dir``.

    :param inputs: a directory, a file, a glob pattern or a list of files (:func:`find_partitions`).
    :param out_dir: where ``<partition stem>.decisions.jsonl`` files go (created by the workers; every worker
        must see it at this path). An existing file of the same name is replaced when its new one is complete.
    :param scheduler: a Dask scheduler's address (``tcp://host:8786``); None starts a
        :class:`distributed.LocalCluster` on this machine, closed at the end.
    :param workers: without ``scheduler``, the LocalCluster's worker processes (one thread each; default: one per
        core); with it, how many workers to wait for before starting (default 1).
    :param progress: called with the number of rows of each partition as it finishes.
    :raises InputFormatError: no partition found, or two would write the same output file.
    :raises ScreeningError: the scheduler cannot be reached or no worker joined; a worker cannot load the same
        criteria set (or runs another nlc-screen version).
    :raises WorkerError: the workers screening a partition died.
    """
    if not ruleset.speaks(lang):
        raise ValueError(f"criteria set {ruleset.name} {ruleset.version} is written in "
                         f"{', '.join(ruleset.languages)} only, not {lang}")
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    started = time.perf_counter()
    files = find_partitions(inputs)
    out = Path(out_dir).absolute()
    partitions = [Partition(input=f, output=out / output_name(f)) for f in files]
    base = {"spec": ruleset_spec(ruleset), "sha256": ruleset.sha256, "lang": lang,
            "include_record": include_record, "versions": _versions()}
    jobs = [{**base, "input": str(p.input.absolute()), "output": str(p.output)} for p in partitions]

    from distributed import Client, as_completed

    cluster: Any = None
    client: Any = None
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    try:
        if scheduler is None:
            import dask
            from distributed import LocalCluster

            # No dashboard, so no use for the workers' statistical profiler (a stack walk every 10 ms).
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)  # type: ignore[no-untyped-call]
        else:
            try:
                client = Client(scheduler, timeout=connect_timeout)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise ScreeningError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            try:
                client.wait_for_workers(workers or 1, timeout=connect_timeout)
            except TimeoutError:
                raise ScreeningError(f"the Dask scheduler at {scheduler} has fewer than {workers or 1} worker(s) "
                                     f"after {connect_timeout:.0f} s; start workers with `dask worker {scheduler} "
                                     f"--nthreads 1`") from None
        lap("start")
        names = [f"nlc-screen-{p.input.name}-{os.getpid()}-{time.time_ns()}" for p in partitions]
        futures = client.map(_screen_partition, jobs, key=names, pure=False)
        if progress is not None:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                if future.status == "finished":
                    progress(int(future.result()["rows"]))
        summaries = _gather(client, futures, lambda i: partitions[i].input.name)
        for partition, summary in zip(partitions, summaries):
            partition.rows, partition.errors = summary["rows"], summary["errors"]
            partition.error_lines = summary["error_lines"]
            partition.unread, partition.failed = summary["unread"], summary["failed"]
            partition.worker, partition.seconds = summary["worker"], summary["seconds"]
            partition.cpu_seconds = summary["cpu_seconds"]
        lap("screen")
        # The second pass: which candidates are in more than one partition.
        done = [i for i, p in enumerate(partitions) if p.written]
        keyed = _gather(client, client.map(_partition_keys, [jobs[i]["output"] for i in done], pure=False),
                        lambda i: partitions[done[i]].output.name)
        first: dict[int, int] = {}
        shared: dict[int, set[int]] = {}
        for index, data in zip(done, keyed):
            keys = array("Q")
            keys.frombytes(data)
            for key in keys:
                seen = first.setdefault(key, index)
                if seen != index:
                    shared.setdefault(seen, set()).add(key)
                    shared.setdefault(index, set()).add(key)
        duplicates: list[str] = []
        if shared:
            order = sorted(shared)
            found = _gather(client, [client.submit(_find_candidates, jobs[i], sorted(shared[i]), pure=False)
                                     for i in order], lambda i: partitions[order[i]].input.name)
            duplicates = _cross_duplicates(partitions, dict(zip(order, found)))
        lap("duplicates")
        info = client.scheduler_info()
        address = "a LocalCluster" if scheduler is None else scheduler
        worker_count = len(info.get("workers", {}))
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        lap("close")
    written = {p.output.name for p in partitions}
    try:
        stale = sorted(f for f in out.glob("*" + OUTPUT_SUFFIX) if f.name not in written and not f.name.startswith("."))
    except OSError:  # pragma: no cover - the output directory is on the workers only
        stale = []
    return ClusterResult(partitions, out, duplicates, stale, address, worker_count, time.perf_counter() - started,
                         timings)


# ---------------------------------------------------------------------------------------------
# Reading an output directory back


def output_files(path: Path | str) -> list[Path]:
    """The ``*.decisions.jsonl`` files of an output directory, by name.

    :raises InputFormatError: ``path`` is not a directory, or holds no decision file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputFormatError(f"{path} is not a directory")
    files = sorted(f for f in folder.iterdir() if f.name.endswith(OUTPUT_SUFFIX) and not f.name.startswith(".")
                   and f.is_file())
    if not files:
        raise InputFormatError(f"the directory {path} holds no *{OUTPUT_SUFFIX} file (the output of "
                               f"`nlc-screen screen --engine dask`)")
    return files


def read_output_dir(path: Path | str) -> Iterator[dict[str, Any]]:
    """The decision rows of every ``*.decisions.jsonl`` file of an output directory, file by file in name
    order (each read with :func:`screening.audit.read_rows`: errors name the file and line).

    :raises InputFormatError: not a directory, no decision file, or a file holds something else.
    """
    from .audit import read_rows

    for file in output_files(path):
        with open(file, "rb") as stream:
            yield from read_rows(stream, name=str(file))


__all__ = ["ClusterResult", "Partition", "find_partitions", "output_files", "output_name", "parquet_record",
           "parquet_schema", "read_output_dir", "read_parquet", "ruleset_spec", "screen_partitions"]
