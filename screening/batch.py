"""Screening a whole input into a writer: the one function behind ``nlc-screen screen``.

It chooses between one process and ``--workers N``, counts what was read, and says how the run
ended — so the command line (and any HTTP front end) only parses options and formats::

    from screening.batch import screen_batch
    with open("in.jsonl", "rb") as source, open_output("out.jsonl", input_path="in.jsonl") as out:
        result = screen_batch(source, RowWriter(out, "jsonl", ruleset), ruleset, name="in.jsonl")
    result.exit_code, result.summary()

Every input record yields exactly one row (a decision or an ``error`` row), in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from .errors import EXIT_OK, EXIT_RECORD_ERRORS, EXIT_UNREADABLE, InputFormatError
from .io import FORMATS, Item, read_records
from .protocol import Ruleset
from .screen import screen_items

if TYPE_CHECKING:
    from .log import Batch
    from .resume import ResumableOutput

#: The most worker processes ``--workers`` may ask for (the CLI refuses more). Each worker is a forked
#: process with its own rules engine and start-up cost; beyond a few per core nothing is gained.
#: Fewer are started when there is less work: never more processes than chunks of input
#: (:mod:`screening.scale`). Kept here so that the CLI knows it without importing the worker pool.
MAX_WORKERS = 32
#: The input formats ``screen`` reads: the record formats, an export of the pack's REDCap instrument, and
#: FHIR R4 bundles (imported by :class:`screening.fhir_import.FhirImport`, handed over as ``items``).
INPUT_FORMATS = (*FORMATS, "redcap", "fhir")


@dataclass
class BatchResult:
    """How a batch ended: rows written, how many were error rows, and what could not be read."""

    rows: int = 0
    errors: int = 0
    #: a sentence saying where reading stopped and how many records were not read, or None
    unread: str | None = None

    @property
    def exit_code(self) -> int:
        """1 when part of the input (or all of it) was not read or it held no record; 3 when some
        records were error rows; else 0 (see the README's exit-code table)."""
        if self.unread or self.rows == 0:
            return EXIT_UNREADABLE
        return EXIT_RECORD_ERRORS if self.errors else EXIT_OK

    def summary(self) -> str | None:
        """What to tell the user on stderr, or None when every record was screened."""
        if self.unread:
            return (f"{self.rows} record(s) read, {self.errors} of them error rows; {self.unread}")
        if self.rows == 0:
            return "0 records read: the input holds no candidate record."
        if self.errors:
            return f"{self.errors} of {self.rows} record(s) could not be read; see their error rows."
        return None


class RowSink(Protocol):
    """Where :func:`screen_batch` puts rows (a :class:`~screening.output.RowWriter`, or anything that
    takes rows and blocks of rendered rows the same way)."""

    def write(self, row: Mapping[str, Any]) -> None: ...

    def write_block(self, data: bytes, count: int) -> None: ...

    def close(self) -> None: ...


def screen_batch(source: IO[bytes], writer: RowSink, ruleset: Ruleset, *, input_format: str | None = None,
                 name: str | None = None, workers: int = 1, include_record: bool = False,
                 compare_with: Ruleset | None = None, check_duplicates: bool = True,
                 progress: Callable[[int], object] | None = None, lang: str = "en",
                 log: Batch | None = None, resume: ResumableOutput | None = None,
                 items: Iterable[Item] | None = None) -> BatchResult:
    """Screen every record of ``source`` into ``writer`` (which this closes), in input order.

    :param name: the input's file name, for format detection and so that ``workers > 1`` can read a
        JSON Lines file itself (in byte ranges) instead of through the main process.
    :param progress: called with the number of rows just written.
    :param lang: the language of the rows' reasons and warnings.
    :param log: a screening-log batch every row is also added to, with the input it was screened from
        (:meth:`screening.log.ScreeningLog.batch`); rows are written to ``writer`` first.
    :param resume: the partial output of a resumable run (:mod:`screening.resume`) that ``writer``
        writes to: the records it (and, with ``log``, the log's batch) already holds are skipped, and
        the rows are committed as they go.
    :param items: the input already read (a FHIR import's :meth:`~screening.fhir_import.FhirImport.items`):
        ``source`` is then not read.
    :raises WorkerError: a worker process died; rows before the records in flight were written.
    :raises InputFormatError: the input cannot be read at all (unknown format, bad CSV header).
    """
    if resume is not None:
        return _screen_resumed(source, writer, ruleset, resume, input_format=input_format, name=name,
                               workers=workers, include_record=include_record, compare_with=compare_with,
                               check_duplicates=check_duplicates, progress=progress, lang=lang, log=log)
    result = BatchResult()
    if input_format == "redcap":  # an export of the pack's REDCap instrument: read with its dictionary
        from .redcap import read_export

        records: Any = read_export(source, ruleset, name=name)
    elif items is not None:
        records = iter(items)
    elif input_format == "fhir":
        raise InputFormatError("FHIR bundles are read by an import (screening.fhir_import.FhirImport): pass its items")
    else:
        records = None
    options: dict[str, Any] = {"include_record": include_record, "compare_with": compare_with,
                               "check_duplicates": check_duplicates, "lang": lang}
    stream = None
    if workers > 1:
        from .scale import screen_blocks, screen_file_blocks, shardable

        if name is not None and log is None and records is None and shardable(name, input_format):  # workers read the lines themselves
            blocks = screen_file_blocks(name, ruleset, workers=workers, **options)
        else:
            stream = records if records is not None else read_records(source, input_format, name=name, kinds=ruleset.record.kinds)
            blocks = screen_blocks(stream, ruleset, workers=workers, **options)
        try:
            for block in blocks:
                writer.write_block(block.text, block.count)
                if log is not None and block.items is not None:
                    for line, item in zip(block.text.split(b"\n"), block.items):
                        log.add(orjson.loads(line), item.text, item.position)
                result.rows += block.count
                result.errors += block.errors
                if progress is not None:
                    progress(block.count)
        finally:  # stops the pool at once when writing fails or the run is interrupted
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
    else:
        stream = records if records is not None else read_records(source, input_format, name=name, kinds=ruleset.record.kinds)
        current: list[Item] = []

        def remembered(items: Iterable[Item]) -> Iterator[Item]:  # the item each row was screened from
            for item in items:
                current[:] = [item]
                yield item
        for row in screen_items(remembered(stream) if log is not None else stream, ruleset, **options):
            writer.write(row)
            if log is not None:
                log.add(row, current[0].text, current[0].position)
            result.rows += 1
            if row["decision"] == "error":
                result.errors += 1
            if progress is not None:
                progress(1)
    writer.close()
    result.unread = getattr(stream, "unread", None)
    return result


def _screen_resumed(source: IO[bytes], writer: RowSink, ruleset: Ruleset, run: ResumableOutput, *,
                    input_format: str | None, name: str | None, workers: int, include_record: bool,
                    compare_with: Ruleset | None, check_duplicates: bool, progress: Callable[[int], object] | None,
                    lang: str, log: Batch | None) -> BatchResult:
    """:func:`screen_batch` for a resumable run (see :mod:`screening.resume`): record ``i`` (from 0) is
    written when ``i >= out_done`` and logged when ``i >= log_done``; records before both are skipped,
    their duplicate-check keys replayed from the journal."""
    from array import array

    from .errors import LogError, ResumeError
    from .screen import DuplicateCheck

    out_done = run.done.rows
    log_done = run.logged if log is not None else out_done
    start = min(out_done, log_done)
    result = BatchResult(rows=out_done, errors=run.done.errors)
    if input_format == "redcap":
        from .redcap import read_export

        stream: Any = read_export(source, ruleset, name=name)
    else:
        stream = read_records(source, input_format, name=name, kinds=ruleset.record.kinds)
    items = iter(stream)
    dupes = DuplicateCheck(lang) if check_duplicates else None
    known = run.done.keys

    def check_logged(index: int, item: Item) -> None:
        if log is not None and index == log_done - 1 and item.position != run.logged_last:
            raise LogError(f"the screening log's batch {run.batch_id} ends with the record at {run.logged_last}, "
                           f"but record {log_done} of the input is at {item.position}: the log does not match this "
                           f"run; resume with the log it was writing to")

    if dupes is not None and len(known) < 2 * start:
        raise ResumeError("the journal lacks the duplicate check's keys of the rows it counts; delete the partial "
                          "output and its journal to start over")
    for index in range(start):
        item = next(items, None)
        if item is None:
            raise ResumeError(f"the input holds fewer records than the interrupted run had done ({start})")
        check_logged(index, item)
        if dupes is not None and known[2 * index]:
            dupes.seen(known[2 * index], DuplicateCheck.entry(known[2 * index + 1], dupes.encode(item.position)))

    index = start
    pending = array("Q")    # (key, tag) of the rows written since the last commit
    since = 0                # rows written since the last commit
    options: dict[str, Any] = {"include_record": include_record, "compare_with": compare_with,
                               "check_duplicates": check_duplicates, "lang": lang}

    def committed() -> None:
        nonlocal since, pending
        run.commit(writer, rows=result.rows, errors=result.errors, keys=pending)
        since, pending = 0, array("Q")

    if workers > 1:
        from .resume import COMMIT_ROWS
        from .scale import screen_blocks

        # chunks of a commit's size: a kill loses at most about one chunk per worker in flight
        blocks = screen_blocks(items, ruleset, workers=workers, duplicates=dupes, chunk_size=COMMIT_ROWS, **options)
        try:
            for block in blocks:
                lines = block.text.split(b"\n")[:block.count]
                block_items = block.items or []
                skip = max(0, min(block.count, out_done - index))  # rows the partial output holds already
                if skip < block.count:
                    kept = lines[skip:]
                    writer.write_block(b"\n".join(kept) + b"\n", len(kept))
                    errors = block.errors if not skip else sum(orjson.loads(line)["decision"] == "error"
                                                               for line in kept)
                    result.rows += len(kept)
                    result.errors += errors
                    since += len(kept)
                    if dupes is not None and block.keys is not None and block.tags is not None:
                        for key, tag in zip(block.keys[skip:], block.tags[skip:]):
                            pending.extend((key, tag))
                    if progress is not None:
                        progress(len(kept))
                if log is not None:
                    for j, (line, item) in enumerate(zip(lines, block_items)):
                        check_logged(index + j, item)
                        if index + j >= log_done:
                            log.add(orjson.loads(line), item.text, item.position)
                index += block.count
                if run.due(since):
                    committed()
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()
    else:
        current: list[Item] = []

        def remembered(source_items: Iterator[Item]) -> Iterator[Item]:
            for item in source_items:
                current[:] = [item]
                yield item
        for row in screen_items(remembered(items), ruleset, duplicates=dupes, **options):
            item = current[0]
            if index >= out_done:
                writer.write(row)
                result.rows += 1
                since += 1
                if row["decision"] == "error":
                    result.errors += 1
                if dupes is not None:
                    pending.extend(DuplicateCheck.row_key(row))
                if progress is not None:
                    progress(1)
            if log is not None:
                check_logged(index, item)
                if index >= log_done:
                    log.add(row, item.text, item.position)
            index += 1
            if run.due(since):
                committed()
    writer.close()
    result.unread = getattr(stream, "unread", None)
    return result

