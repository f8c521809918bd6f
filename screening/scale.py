"""Screening in several processes, with the same output as one: ``nlc-screen screen --workers N``.

Work goes to a pool of worker processes (``fork``) in chunks of :data:`CHUNK` records. Each worker
builds its own :class:`~screening.screen.Screener` — and so its own durable_rules engine — the first
time it is used, screens its chunk and sends back one :class:`Block`: the chunk's rows already
serialised as JSON Lines text, with the candidates' 8-byte digests for the duplicate check. The
main process yields the blocks in input order, with at most ``2 × workers`` chunks in flight, so
memory stays flat whatever the input size.

How many processes: at most :data:`MAX_WORKERS`, and never more than there are chunks of work —
the first ``workers`` chunks are cut before the pool is started and the pool is sized to the chunks
actually found (a 19-record file is one chunk: one process, whatever ``--workers`` says).

Workers die with the main process: each one asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG`` on Linux; elsewhere a thread that watches the parent's pid), so killing the
main process — SIGKILL included — never leaves workers running or holding the caller's pipe open.
Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the main process stops
them) and die on SIGTERM, whatever handler the main process installed before forking.

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
:class:`WorkerError` — a :class:`~screening.errors.ScreeningError` naming exactly the records in
flight (the first to the last chunk sent and not yet written) and saying that rows from the first
of them on are missing — instead of hanging the batch; chunks that were already screened are still
yielded first, so the rows written are whole, one per input record, up to the first record lost.
The pool is shut down either way.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait as wait_ready
from typing import Any

import orjson

from .batch import MAX_WORKERS
from .errors import ScreeningError, WorkerError
from .io import Item, detect_format, foreign_encoding, jsonl_line_count, read_jsonl_lines
from .protocol import Ruleset

#: Records per chunk sent to a worker: large enough to amortise the inter-process traffic, small
#: enough that 2 × workers chunks in flight (~3 KB of rendered row a record) stay small.
CHUNK = 1000
#: Bytes of a JSON Lines file per chunk when workers read the file themselves (~1,000 records).
CHUNK_BYTES = 1 << 20
#: The smallest byte range of a file worth a process of its own when a small file is shared out
#: (~45 records): below it, forking and starting a worker costs more than the screening.
MIN_CHUNK_BYTES = 64 << 10
#: Seconds between checks, while waiting for a chunk, that no worker died unnoticed by the pool (a
#: worker killed while sending its result leaves the pool's reader waiting for the rest for ever).
POLL_SECONDS = 0.5
#: Seconds the pool gets, after a worker was seen dead, to report it before the batch is stopped.
DEAD_GRACE_SECONDS = 3.0


def keep_freed_memory() -> None:
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
    #: the chunk's input items, when the main process read them (not when workers read a file themselves)
    items: list[Item] | None = None
    #: each row's duplicate-check key and spelling tag (:meth:`~screening.screen.DuplicateCheck.key`; key 0:
    #: takes no part), when the check runs: what a resumable run journals
    keys: array[int] | None = None
    tags: array[int] | None = None

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


def _init_worker(ruleset: Ruleset, options: dict[str, Any], parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C to the group: the main process stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the main process's handler (it raises KeyboardInterrupt)
    _die_with_parent(parent)
    _WORKER.clear()
    _WORKER.update(ruleset=ruleset, options=options, screener=None)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Make this worker die as soon as ``parent`` (the main process) does, however it died.

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``; the pool's
    processes are forked by the thread that iterates the blocks, and the signal follows that thread).
    If the parent died before that was set, ``getppid`` has changed already: exit at once. Elsewhere a
    daemon thread checks twice a second whether the parent is still there.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            armed = False
    if os.getppid() != parent:  # the parent is gone already (the race before the line above)
        os._exit(1)
    if not armed:  # pragma: no cover - not Linux
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:  # pragma: no cover - not Linux
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _render(items: Iterable[Item | None]) -> tuple[bytes, bytes, bytes, int, int]:
    """Screen items in this worker: (rows as JSON Lines text, keys, entries, errors, count).

    ``None`` stands for an item the main process renders itself (an empty line in the text). Keys and
    entries are the duplicate check's (:meth:`~screening.screen.DuplicateCheck.row_key`,
    :meth:`~screening.screen.DuplicateCheck.entry`): a key of 0 means "takes no part"; an entry's
    position is 0 when the item is not a line (the main process encodes it).
    """
    from .screen import DuplicateCheck, Screener

    screener = _WORKER.get("screener")
    if screener is None:  # built lazily, in this process: its own engine
        screener = _WORKER["screener"] = Screener(_WORKER["ruleset"], **_WORKER["options"])
    parts: list[bytes] = []
    keys = array("Q")
    entries = array("Q")
    errors = 0
    row_key, line_code, entry = DuplicateCheck.row_key, DuplicateCheck.line_code, DuplicateCheck.entry
    for item in items:
        if item is None:
            parts.append(b"")
            keys.append(0)
            entries.append(0)
            continue
        row = screener.item(item)
        parts.append(orjson.dumps(row))
        if row["decision"] == "error":
            errors += 1
        key, tag = row_key(row)
        keys.append(key)
        kind, _, number = item.position.partition(" ")
        entries.append(entry(tag, line_code(int(number)) if kind == "line" else 0))
    text = b"\n".join(parts) + b"\n" if parts else b""
    return text, keys.tobytes(), entries.tobytes(), errors, len(parts)


def _screen_items(payload: list[tuple[str, str | None]]) -> tuple[bytes, bytes, bytes, int, int]:
    return _render(Item(position, text) if text is not None else None for position, text in payload)


def _screen_shard(path: str, start: int, end: int, first_line: int) -> tuple[bytes, bytes, bytes, int, int]:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return _render(read_jsonl_lines(data.split(b"\n"), first_line))


# ---------------------------------------------------------------------------------------------
# In the main process


Span = tuple[str, str]
Task = tuple[Span, Any, tuple[Any, ...]]


class _Pipeline:
    """Chunks through a worker pool, results back in order, a bounded number in flight."""

    def __init__(self, ruleset: Ruleset, workers: int, options: dict[str, Any], check_duplicates: bool,
                 duplicates: Any = None) -> None:
        from .screen import DuplicateCheck, Screener

        if workers < 1:
            raise ValueError("workers must be at least 1")
        if workers > MAX_WORKERS:
            raise ValueError(f"workers must be at most {MAX_WORKERS}")
        self.ruleset = ruleset
        self.workers = workers
        self.options = options
        self.dupes = duplicates if duplicates is not None else \
            DuplicateCheck(options.get("lang", "en")) if check_duplicates else None
        self._local: Screener | None = None  # renders rows of unreadable items here (no engine call)

    def run(self, tasks: Iterator[Task]) -> Iterator[Block]:
        """``tasks``: (the chunk's first and last position, for messages; its items or None; the worker
        call's arguments). Starts one process per chunk found among the first ``workers``."""
        first = list(itertools.islice(tasks, self.workers))
        if not first:
            return
        keep_freed_memory()  # before the fork: the workers inherit it
        pool = ProcessPoolExecutor(max_workers=len(first), mp_context=get_context("fork"),
                                   initializer=_init_worker, initargs=(self.ruleset, self.options, os.getpid()))
        source = itertools.chain(first, tasks)
        pending: deque[tuple[Span, Any, Future[Any]]] = deque()
        limit = 2 * len(first)
        unsent: tuple[Span, BrokenProcessPool] | None = None  # a chunk the broken pool refused
        processes: list[Any] = []  # the pool's processes, once started (all at the first submit)
        finished = False
        try:
            exhausted = False
            while True:
                while not exhausted and unsent is None and len(pending) < limit:
                    task = next(source, None)
                    if task is None:
                        exhausted = True
                        break
                    span, items, call = task
                    try:
                        future = pool.submit(*call)
                    except BrokenProcessPool as exc:  # write what was screened, then report what was not
                        unsent = span, exc
                        break
                    pending.append((span, items, future))
                    if not processes:
                        processes = list((getattr(pool, "_processes", None) or {}).values())
                if not pending:
                    if unsent is not None:
                        raise _died(None, unsent[0][0]) from unsent[1]
                    break
                span, items, future = pending[0]
                try:
                    result = _result(future, processes)
                except BrokenProcessPool as exc:
                    raise _died(_in_flight(pending), span[0]) from exc
                except ScreeningError:
                    raise
                except Exception as exc:  # an unexpected failure inside the worker: name it, stop
                    raise WorkerError(f"a screening worker failed on records {_span(*span)} "
                                      f"({type(exc).__name__}: {exc}); rows from {span[0]} on are "
                                      f"missing") from exc
                pending.popleft()
                yield self._block(result, items)
            finished = True
        finally:
            results = getattr(pool, "_result_queue", None)  # shutdown forgets it
            manager = getattr(pool, "_executor_manager_thread", None)
            pool.shutdown(wait=finished, cancel_futures=True)
            if not finished:
                _terminate(processes, results)
                # Let the pool's manager thread finish before the interpreter exits: on Python 3.11 the
                # exit hook of concurrent.futures can race its closing and print "Bad file descriptor".
                if manager is not None:
                    manager.join(timeout=5)

    def _block(self, result: tuple[bytes, bytes, bytes, int, int], items: list[Item] | None) -> Block:
        from .screen import DuplicateCheck

        text, key_bytes, entry_bytes, errors, count = result
        lines: list[bytes] | None = None
        keys = array("Q", key_bytes)
        entries = array("Q", entry_bytes)
        if items is not None and any(item.error is not None for item in items):
            from .screen import Screener

            lines = text.split(b"\n")
            for i, item in enumerate(items):
                if item.error is not None:  # the reader could not read it: render its error row here
                    if self._local is None:
                        self._local = Screener(self.ruleset, **self.options)
                    row = self._local.error(item.error, item.position)
                    lines[i] = orjson.dumps(row)
                    errors += 1
                    key, tag = DuplicateCheck.row_key(row)
                    keys[i], entries[i] = key, DuplicateCheck.entry(tag, 0)
        dupes = self.dupes
        if dupes is not None:
            position_bits = DuplicateCheck.position_code(-1)  # all the position bits of an entry
            for i, key in enumerate(keys):
                if not key:
                    continue
                entry = entries[i]
                if not entry & position_bits:  # not a line: encoded here, where the table is
                    entry |= dupes.encode(items[i].position if items is not None else "")
                first = dupes.seen(key, entry)
                if first is not None:  # a second record for this candidate: warn as one worker would
                    from .screen import add_duplicate_warning

                    if lines is None:
                        lines = text.split(b"\n")
                    row = orjson.loads(lines[i])
                    add_duplicate_warning(row, dupes.position(first[0]), near=not first[1], lang=dupes.lang)
                    lines[i] = orjson.dumps(row)
        if lines is not None:
            text = b"\n".join(lines)
        if dupes is None:
            return Block(text, count, errors, items)
        tags = array("Q", (entry >> DuplicateCheck._TAG_SHIFT for entry in entries))
        return Block(text, count, errors, items, keys=keys, tags=tags)


def screen_blocks(items: Iterable[Item], ruleset: Ruleset, *, workers: int, include_record: bool = False,
                  check_duplicates: bool = True, chunk_size: int = CHUNK, duplicates: Any = None,
                  **screener_options: Any) -> Iterator[Block]:
    """Screen a stream of items in up to ``workers`` processes: blocks of rows, in input order.

    ``workers`` is at most :data:`MAX_WORKERS`; no more processes are started than there are chunks
    of ``chunk_size`` items among the first ``workers`` (none for an empty stream). Extra keyword
    arguments go to each worker's :class:`~screening.screen.Screener`. ``duplicates``: the duplicate
    check to go on with (a resumed batch's), else a new one when ``check_duplicates``.

    :raises ValueError: ``workers`` is below 1 or above :data:`MAX_WORKERS`.
    :raises WorkerError: a worker process died or failed; the message names the records in flight.
    """
    pipeline = _Pipeline(ruleset, workers, dict(screener_options, include_record=include_record), check_duplicates,
                         duplicates)

    def tasks() -> Iterator[Task]:
        source = iter(items)
        while chunk := list(itertools.islice(source, chunk_size)):
            payload = [(item.position, item.text if item.error is None else None) for item in chunk]
            yield (chunk[0].position, chunk[-1].position), chunk, (_screen_items, payload)

    return pipeline.run(tasks())


def screen_file_blocks(path: str, ruleset: Ruleset, *, workers: int, include_record: bool = False,
                       check_duplicates: bool = True, chunk_bytes: int = CHUNK_BYTES,
                       **screener_options: Any) -> Iterator[Block]:
    """Screen a JSON Lines file in up to ``workers`` processes that read their own lines: blocks, in order.

    The file is cut into byte ranges of whole lines of about ``chunk_bytes`` (smaller for a small
    file, so every worker gets some, but not below :data:`MIN_CHUNK_BYTES` unless ``chunk_bytes`` is);
    the main process only counts their newlines, in C. No more processes are started than there are
    ranges. Gives the same rows as :func:`~screening.screen.screen_items` over the same file.

    :raises ValueError: ``workers`` is below 1 or above :data:`MAX_WORKERS`.
    :raises WorkerError: a worker process died or failed; the message names the lines in flight.
    """
    pipeline = _Pipeline(ruleset, workers, dict(screener_options, include_record=include_record), check_duplicates)
    size = os.path.getsize(path)
    target = max(1, min(chunk_bytes, max(MIN_CHUNK_BYTES, size // (4 * workers) + 1)))

    def tasks() -> Iterator[Task]:
        with open(path, "rb") as f:
            start, line = 0, 1
            while start < size:
                data = f.read(target)
                data += f.readline()  # to the end of the line the range stopped in
                if not data:
                    break
                end = start + len(data)
                lines = jsonl_line_count(data)  # lone CRs end lines too, as the reader counts them
                last = line + lines - 1
                yield (f"line {line}", f"line {last}"), None, (_screen_shard, path, start, end, line)
                start, line = end, last + 1

    return pipeline.run(tasks())


def shardable(path: str | None, fmt: str | None) -> bool:
    """Whether workers can read an input themselves: a regular file of JSON Lines."""
    if not path or not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if foreign_encoding(head):  # the main process reads it, and refuses it
        return False
    if fmt is not None:
        return fmt == "jsonl"
    return detect_format(path, head.decode("utf-8", "replace")) == "jsonl"


def screen_parallel(items: Iterable[Item], ruleset: Ruleset, *, workers: int, **options: Any) -> Iterator[RenderedRow]:
    """As :func:`screen_blocks`, one :class:`RenderedRow` at a time (same rows as ``screen_items``)."""
    for block in screen_blocks(items, ruleset, workers=workers, **options):
        yield from block.rows()


def _result(future: Future[Any], processes: list[Any]) -> Any:
    """``future.result()``, but a worker found dead while the pool does not report it (its reader stuck on
    a half-sent result) raises :class:`BrokenProcessPool` after :data:`DEAD_GRACE_SECONDS`, not never."""
    dead_since: float | None = None
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except FutureTimeout:
            pass
        if dead_since is None:
            if processes and wait_ready([p.sentinel for p in processes], timeout=0):
                dead_since = time.monotonic()
        elif time.monotonic() - dead_since > DEAD_GRACE_SECONDS:
            raise BrokenProcessPool("a worker process ended while its pool waited for it")


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} … {last}"


def _in_flight(pending: deque[tuple[Span, Any, Future[Any]]]) -> str:
    """The records sent to workers and not yet written: the first chunk's first to the last one's last."""
    return _span(pending[0][0][0], pending[-1][0][1])


def _died(in_flight: str | None, first_missing: str) -> WorkerError:
    what = f" while screening records {in_flight}" if in_flight else ""
    return WorkerError(f"a screening worker process died{what} (killed, out of memory, or a crash in the "
                       f"rules engine); rows from {first_missing} on are missing. Re-run, or use --workers 1 "
                       f"to find the record.")


def _terminate(processes: list[Any], results: Any) -> None:
    """Stop the pool's processes now (after an error or an abandoned iteration), without waiting for
    the chunks they are screening; ``processes`` and ``results`` are taken before ``shutdown`` drops them.

    A worker stopped while sending its result leaves the pool's reader thread waiting for the rest of
    it, and the interpreter waits for that thread at exit: once the workers are gone, closing the
    main process's copy of the result pipe's writing end lets that read end (end of file).
    """
    for process in processes:
        try:
            if process.is_alive():
                process.terminate()
        except (OSError, ValueError, AttributeError):  # pragma: no cover - already gone
            pass
    for process in processes:
        try:
            process.join(timeout=5)
            if process.is_alive():  # pragma: no cover - ignored SIGTERM somehow
                process.kill()
                process.join(timeout=5)
        except (OSError, ValueError, AttributeError):  # pragma: no cover
            pass
    writer = getattr(results, "_writer", None)
    if writer is not None:
        try:
            writer.close()
        except OSError:  # pragma: no cover
            pass


# ---------------------------------------------------------------------------------------------
# A warm pool for a long-running service


class WarmPool:
    """Worker processes kept by a long-running service (``nlc-screen serve``) for large batches.

    Started once, from a ``forkserver`` process — never a fork of the server itself, whose threads
    may hold locks and whose engine is already built — each worker loads the criteria set and builds
    its own engine before the first batch, then screens chunks of it for every batch after. The rows
    are those :func:`screening.screen.screen_items` gives for the same items (the duplicate check runs
    here, in input order).
    """

    def __init__(self, ruleset: Ruleset, workers: int = 2) -> None:
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers is 1 … {MAX_WORKERS}")
        self.ruleset = ruleset
        self.workers = workers
        spec = f"{ruleset.pack}/{ruleset.name}@{ruleset.version}" if ruleset.pack else ruleset.path
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("forkserver"),
                                         initializer=_init_warm, initargs=(spec, ruleset.sha256))
        for future in [self._pool.submit(_warm) for _ in range(workers)]:
            future.result()  # every worker up, its engine built
        self._local: Any = None

    def screen(self, items: list[Item], lang: str = "en") -> Iterator[dict[str, Any]]:
        """One row per item, in order, as the workers finish their chunks (items the reader could not
        read become error rows here)."""
        from .screen import DuplicateCheck, Screener

        size = max(200, -(-len(items) // (self.workers * 2)))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        futures = [self._pool.submit(_screen_warm, [(it.position, it.text if it.error is None else None)
                                                   for it in chunk], lang) for chunk in chunks]
        dupes = DuplicateCheck(lang)
        for chunk, future in zip(chunks, futures):
            lines = future.result().split(b"\n")
            for item, line in zip(chunk, lines):
                if item.error is not None:
                    if self._local is None:
                        self._local = Screener(self.ruleset, lang=lang)
                    row = self._local.error(item.error, item.position)
                else:
                    row = orjson.loads(line)
                yield dupes(row, item.position)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _init_warm(spec: str, sha256: str) -> None:
    from .protocol import load_ruleset

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ruleset = load_ruleset(spec)
    if ruleset.sha256 != sha256:  # the set changed on disk since the service loaded it
        raise ScreeningError(f"criteria set {spec} changed since the service started; restart it")
    _WORKER.clear()
    _WORKER.update(ruleset=ruleset, screeners={})


def _warm() -> bool:
    _warm_screener("en")
    return True


def _warm_screener(lang: str) -> Any:
    from .screen import Screener

    screeners = _WORKER["screeners"]
    if lang not in screeners:
        screeners[lang] = Screener(_WORKER["ruleset"], lang=lang)
    return screeners[lang]


def _screen_warm(payload: list[tuple[str, str | None]], lang: str) -> bytes:
    """Rows for (position, text) pairs, as JSON Lines (an empty line where the main process renders)."""
    screener = _warm_screener(lang)
    return b"\n".join(orjson.dumps(screener.item(Item(position, text))) if text is not None else b""
                      for position, text in payload)
