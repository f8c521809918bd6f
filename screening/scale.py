"""Screening in several processes, with the same output as one: ``nlc-screen screen --workers N``.

Work goes to a pool of worker processes (``fork``) in chunks of :data:`CHUNK` records. Each worker
builds its own :class:`~screening.screen.Screener` — and so its own durable_rules engine — the first
time it is used, screens its chunk and sends back one :class:`Block`: the chunk's rows already
serialised as JSON Lines text, with the candidates' 8-byte digests for the duplicate check. The
main process yields the blocks in input order, with at most ``2 × workers`` chunks in flight, so
memory stays flat whatever the input size.

Two ways in:

* :func:`screen_file_blocks` — a JSON Lines *file*: the main process only finds where each chunk of
  lines starts and ends in the file; workers read and parse their own lines. This keeps the main
  process nearly idle, so two workers get close to twice the speed of one.
* :func:`screen_blocks` — any stream of input items (stdin, CSV, a JSON array): the main process
  reads and sends each chunk's ``(position, JSON text)`` pairs.

What stays in the main process, so that 1 and N workers give byte-for-byte the same output:

* error rows for items the reader could not read (in :func:`screen_blocks`);
* the duplicate-candidate check (one table of digests for the whole batch, see
  :class:`~screening.screen.DuplicateCheck`): a duplicate's row is decoded, warned and re-encoded.

A worker that dies (killed, out of memory, a crash in the engine's C code) raises
:class:`WorkerError` — a :class:`~screening.errors.ScreeningError` naming the records that were in
flight — instead of hanging the batch; the pool is shut down either way.
"""

from __future__ import annotations

import itertools
import os
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import orjson

from .errors import ScreeningError, WorkerError
from .io import Item, detect_format, read_jsonl_lines
from .protocol import Ruleset

#: Records per chunk sent to a worker: large enough to amortise the inter-process traffic, small
#: enough that 2 × workers chunks in flight (~3 KB of rendered row a record) stay small.
CHUNK = 1000
#: Bytes of a JSON Lines file per chunk when workers read the file themselves (~1,000 records).
CHUNK_BYTES = 1 << 20
#: The most worker processes ``--workers`` may ask for. Each worker is a forked process with its own
#: rules engine (~100 MB resident once warm) and start-up cost; beyond a few per core nothing is gained.
#: Fewer are started when there is less work: never more processes than chunks of input.
MAX_WORKERS = 32


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the kernel at once.

    Chunks move between processes as multi-megabyte strings; with glibc's defaults the heap is
    trimmed and regrown around each one, and every regrowth costs page faults: measured on 100,000
    records with 2 workers, 400,000 minor faults and 1.3 s of system time, against 41,000 and 0.4 s
    with these settings (the same as MALLOC_TRIM_THRESHOLD_=128 MiB, MALLOC_MMAP_THRESHOLD_=64 MiB).
    Memory stays bounded: at most that much freed memory is kept. Does nothing off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_trim_threshold, 128 << 20)
        libc.mallopt(m_mmap_threshold, 64 << 20)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


@dataclass
class Block:
    """Consecutive rows, serialised: ``text`` is ``count`` JSON Lines rows as UTF-8 (each ending in a newline)."""

    text: bytes
    count: int
    errors: int

    def rows(self) -> Iterator[RenderedRow]:
        for line in self.text.split(b"\n")[:self.count]:
            yield RenderedRow(line.decode())


class RenderedRow(Mapping[str, Any]):
    """A decision row screened in a worker: its JSON Lines text, decoded only if a key is needed."""

    __slots__ = ("jsonl", "_data")

    def __init__(self, jsonl: str) -> None:
        self.jsonl = jsonl
        self._data: dict[str, Any] | None = None

    def _row(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self.jsonl)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._row()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._row())

    def __len__(self) -> int:
        return len(self._row())

    def __repr__(self) -> str:
        return f"RenderedRow({self.jsonl[:80]}…)"


# ---------------------------------------------------------------------------------------------
# In the worker process

_WORKER: dict[str, Any] = {}


def _init_worker(ruleset: Ruleset, options: dict[str, Any]) -> None:
    _WORKER.clear()
    _WORKER.update(ruleset=ruleset, options=options, screener=None)


def _render(items: Iterable[Item | None]) -> tuple[bytes, bytes, bytes, int, int]:
    """Screen items in this worker: (rows as JSON Lines text, digests, line codes, errors, count).

    ``None`` stands for an item the main process renders itself (an empty line in the text). A
    digest of 0 means "takes no part in the duplicate check"; a line code of 0, "not a line".
    """
    from .screen import DuplicateCheck, Screener

    screener = _WORKER.get("screener")
    if screener is None:  # built lazily, in this process: its own engine
        screener = _WORKER["screener"] = Screener(_WORKER["ruleset"], **_WORKER["options"])
    parts: list[bytes] = []
    digests = array("Q")
    codes = array("Q")
    errors = 0
    row_digest, line_code = DuplicateCheck.row_digest, DuplicateCheck.line_code
    for item in items:
        if item is None:
            parts.append(b"")
            digests.append(0)
            codes.append(0)
            continue
        row = screener.item(item)
        parts.append(orjson.dumps(row))
        if row["decision"] == "error":
            errors += 1
        digests.append(row_digest(row))
        kind, _, number = item.position.partition(" ")
        codes.append(line_code(int(number)) if kind == "line" else 0)
    text = b"\n".join(parts) + b"\n" if parts else b""
    return text, digests.tobytes(), codes.tobytes(), errors, len(parts)


def _screen_items(payload: list[tuple[str, str | None]]) -> tuple[bytes, bytes, bytes, int, int]:
    return _render(Item(position, text) if text is not None else None for position, text in payload)


def _screen_shard(path: str, start: int, end: int, first_line: int) -> tuple[bytes, bytes, bytes, int, int]:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return _render(read_jsonl_lines(data.split(b"\n"), first_line))


# ---------------------------------------------------------------------------------------------
# In the main process


class _Pipeline:
    """Chunks through a worker pool, results back in order, a bounded number in flight."""

    def __init__(self, ruleset: Ruleset, workers: int, options: dict[str, Any], check_duplicates: bool) -> None:
        from .screen import DuplicateCheck, Screener

        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.ruleset = ruleset
        self.workers = workers
        self.options = options
        self.dupes = DuplicateCheck() if check_duplicates else None
        self._local: Screener | None = None  # renders rows of unreadable items here (no engine call)

    def run(self, tasks: Iterator[tuple[str, Any, tuple[Any, ...]]]) -> Iterator[Block]:
        """``tasks``: (what the chunk is, for messages; its items or None; the worker call's arguments)."""
        _keep_freed_memory()  # before the fork: the workers inherit it
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("fork"),
                                   initializer=_init_worker, initargs=(self.ruleset, self.options))
        pending: deque[tuple[str, Any, Future[Any]]] = deque()
        limit = 2 * self.workers
        finished = False
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < limit:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                        break
                    span, items, call = task
                    try:
                        future = pool.submit(*call)
                    except BrokenProcessPool as exc:
                        raise _died(span) from exc
                    pending.append((span, items, future))
                if not pending:
                    break
                span, items, future = pending.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    raise _died(span) from exc
                except ScreeningError:
                    raise
                except Exception as exc:  # an unexpected failure inside the worker: name it, stop
                    raise WorkerError(f"a screening worker failed on records {span}: "
                                      f"{type(exc).__name__}: {exc}") from exc
                yield self._block(result, items)
            finished = True
        finally:
            pool.shutdown(wait=finished, cancel_futures=True)
            if not finished:
                _terminate(pool)

    def _block(self, result: tuple[bytes, bytes, bytes, int, int], items: list[Item] | None) -> Block:
        text, digest_bytes, code_bytes, errors, count = result
        lines: list[bytes] | None = None
        digests = array("Q", digest_bytes)
        if items is not None and any(item.error is not None for item in items):
            from .screen import DuplicateCheck, Screener

            lines = text.split(b"\n")
            for i, item in enumerate(items):
                if item.error is not None:  # the reader could not read it: render its error row here
                    if self._local is None:
                        self._local = Screener(self.ruleset, **self.options)
                    row = self._local.error(item.error, item.position)
                    lines[i] = orjson.dumps(row)
                    errors += 1
                    digests[i] = DuplicateCheck.row_digest(row)
        dupes = self.dupes
        if dupes is not None:
            codes = array("Q", code_bytes)
            for i, digest in enumerate(digests):
                if not digest:
                    continue
                code = codes[i] or dupes.encode(items[i].position if items is not None else "")
                first = dupes.first_seen_code(digest, code)
                if first is not None:  # a second record for this candidate: warn as one worker would
                    from .screen import add_duplicate_warning

                    if lines is None:
                        lines = text.split(b"\n")
                    row = orjson.loads(lines[i])
                    add_duplicate_warning(row, dupes.position(first))
                    lines[i] = orjson.dumps(row)
        if lines is not None:
            text = b"\n".join(lines)
        return Block(text, count, errors)


def screen_blocks(items: Iterable[Item], ruleset: Ruleset, *, workers: int, include_record: bool = False,
                  check_duplicates: bool = True, chunk_size: int = CHUNK, **screener_options: Any) -> Iterator[Block]:
    """Screen a stream of items in ``workers`` processes: blocks of rows, in input order.

    Extra keyword arguments go to each worker's :class:`~screening.screen.Screener`.

    :raises WorkerError: a worker process died or failed; the message names the records in flight.
    """
    pipeline = _Pipeline(ruleset, workers, dict(screener_options, include_record=include_record), check_duplicates)

    def tasks() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        source = iter(items)
        while chunk := list(itertools.islice(source, chunk_size)):
            payload = [(item.position, item.text if item.error is None else None) for item in chunk]
            yield _span(chunk[0].position, chunk[-1].position), chunk, (_screen_items, payload)

    return pipeline.run(tasks())


def screen_file_blocks(path: str, ruleset: Ruleset, *, workers: int, include_record: bool = False,
                       check_duplicates: bool = True, chunk_bytes: int = CHUNK_BYTES,
                       **screener_options: Any) -> Iterator[Block]:
    """Screen a JSON Lines file in ``workers`` processes that read their own lines: blocks, in order.

    The file is cut into byte ranges of whole lines of about ``chunk_bytes`` (smaller for a small
    file, so every worker gets some); the main process only counts their newlines, in C.
    Gives the same rows as :func:`~screening.screen.screen_items` over the same file.

    :raises WorkerError: a worker process died or failed; the message names the lines in flight.
    """
    pipeline = _Pipeline(ruleset, workers, dict(screener_options, include_record=include_record), check_duplicates)
    size = os.path.getsize(path)
    target = max(1, min(chunk_bytes, size // (4 * workers) + 1))

    def tasks() -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
        with open(path, "rb") as f:
            start, line = 0, 1
            while start < size:
                data = f.read(target)
                data += f.readline()  # to the end of the line the range stopped in
                if not data:
                    break
                end = start + len(data)
                lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                last = line + lines - 1
                yield _span(f"line {line}", f"line {last}"), None, (_screen_shard, path, start, end, line)
                start, line = end, last + 1

    return pipeline.run(tasks())


def shardable(path: str | None, fmt: str | None) -> bool:
    """Whether workers can read an input themselves: a regular file of JSON Lines."""
    if not path or not os.path.isfile(path):
        return False
    if fmt is not None:
        return fmt == "jsonl"
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return detect_format(path, head.decode("utf-8", "replace")) == "jsonl"


def screen_parallel(items: Iterable[Item], ruleset: Ruleset, *, workers: int, **options: Any) -> Iterator[RenderedRow]:
    """As :func:`screen_blocks`, one :class:`RenderedRow` at a time (same rows as ``screen_items``)."""
    for block in screen_blocks(items, ruleset, workers=workers, **options):
        yield from block.rows()


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} … {last}"


def _died(span: str) -> WorkerError:
    return WorkerError(f"a screening worker process died while screening records {span} "
                       f"(killed, out of memory, or a crash in the rules engine); rows after the last "
                       f"one written are missing. Re-run, or use --workers 1 to find the record.")


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's processes now (after an error or an abandoned iteration)."""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        try:
            if process.is_alive():
                process.terminate()
        except (OSError, ValueError, AttributeError):  # pragma: no cover - already gone
            pass
    for process in list(processes.values()):
        try:
            process.join(timeout=5)
        except (OSError, ValueError, AttributeError):  # pragma: no cover
            pass
