"""Screening in several processes, with the same output as one: ``nlc-screen screen --workers N``.

The main process reads the input (streaming), cuts it into chunks of :data:`CHUNK` records and sends
each chunk, as ``(position, JSON text)`` pairs, to a pool of worker processes (``fork``). Each worker
builds its own :class:`~screening.screen.Screener` — and so its own durable_rules engine — the first
time it is used, screens its chunk and sends the rows back already serialised as JSON Lines text.
The main process yields the rows in input order, with at most ``2 × workers`` chunks in flight, so
memory stays flat whatever the input size.

What stays in the main process, so that 1 and N workers give byte-for-byte the same output:

* records the reader could not read (their ``error`` rows are built here);
* the duplicate-candidate check (one table of digests for the whole batch, see
  :class:`~screening.screen.DuplicateCheck`): a duplicate's row is decoded, warned and re-encoded.

A worker that dies (killed, out of memory, a crash in the engine's C code) raises
:class:`WorkerError` — a :class:`~screening.errors.ScreeningError` naming the records that were in
flight — instead of hanging the batch; the pool is shut down either way.

Rows come back as :class:`RenderedRow`: a read-only mapping that carries its JSON Lines text
(``row.jsonl``), which :class:`~screening.output.RowWriter` writes as is for ``jsonl`` and ``json``
output; for ``csv`` and ``text`` output, or any other key lookup, it decodes the text on first use.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

import orjson

from .errors import ScreeningError
from .io import Item
from .output import dumps
from .protocol import Ruleset

#: Records per chunk sent to a worker: large enough to amortise the inter-process traffic, small
#: enough that 2 × workers chunks in flight (input text and rendered rows, ~7 KB a record) stay
#: around 30 MB in the main process.
CHUNK = 1000


class WorkerError(ScreeningError):
    """A worker process died or failed while screening; the batch stops with this message."""


class RenderedRow(Mapping[str, Any]):
    """A decision row screened in a worker: its JSON Lines text, decoded only if a key is needed.

    ``decision`` is known without decoding (the CLI counts error rows); ``dict(row)`` is the row.
    """

    __slots__ = ("jsonl", "_decision", "_data")

    def __init__(self, jsonl: str, decision: str) -> None:
        self.jsonl = jsonl
        self._decision = decision
        self._data: dict[str, Any] | None = None

    def _row(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self.jsonl)
        return self._data

    def __getitem__(self, key: str) -> Any:
        if key == "decision":
            return self._decision
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


def _screen_chunk(chunk: list[tuple[str, str | None]]) -> list[tuple[str, str, str, str | None] | None]:
    """Rows for a chunk: (jsonl text, decision, candidate_id, site), or None for an unread slot."""
    screener = _WORKER.get("screener")
    if screener is None:  # built lazily, in this process: its own engine
        from .screen import Screener
        screener = _WORKER["screener"] = Screener(_WORKER["ruleset"], **_WORKER["options"])
    out: list[tuple[str, str, str, str | None] | None] = []
    for position, text in chunk:
        if text is None:
            out.append(None)
            continue
        row = screener.item(Item(position, text))
        out.append((dumps(row), row["decision"], row.get("candidate_id", ""), row.get("site")))
    return out


# ---------------------------------------------------------------------------------------------
# In the main process


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _span(chunk: list[Item]) -> str:
    return chunk[0].position if len(chunk) == 1 else f"{chunk[0].position} … {chunk[-1].position}"


def screen_parallel(items: Iterable[Item], ruleset: Ruleset, *, workers: int, include_record: bool = False,
                    check_duplicates: bool = True, chunk_size: int = CHUNK,
                    **screener_options: Any) -> Iterator[Mapping[str, Any]]:
    """Screen a stream of items in ``workers`` processes; exactly one row per item, in input order.

    Gives the same rows as :func:`~screening.screen.screen_items` (as :class:`RenderedRow`).
    Extra keyword arguments go to each worker's :class:`~screening.screen.Screener`.

    :raises WorkerError: a worker process died or failed; the message names the records in flight.
    """
    from .screen import DuplicateCheck, Screener

    if workers < 1:
        raise ValueError("workers must be at least 1")
    options = dict(screener_options, include_record=include_record)
    local: Screener | None = None  # for rows of unreadable items, built here (no engine call)
    dupes = DuplicateCheck() if check_duplicates else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"),
                               initializer=_init_worker, initargs=(ruleset, options))
    pending: deque[tuple[list[Item], Future[Any]]] = deque()
    limit = 2 * workers
    finished = False
    try:
        source = _chunks(items, chunk_size)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                    break
                payload = [(item.position, item.text if item.error is None else None) for item in chunk]
                try:
                    future = pool.submit(_screen_chunk, payload)
                except BrokenProcessPool as exc:
                    raise _died(chunk) from exc
                pending.append((chunk, future))
            if not pending:
                break
            chunk, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool as exc:
                raise _died(chunk) from exc
            except ScreeningError:
                raise
            except Exception as exc:  # an unexpected failure inside the worker: name it, stop
                raise WorkerError(f"a screening worker failed on records {_span(chunk)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
            for item, result in zip(chunk, results):
                if result is None:
                    if local is None:
                        local = Screener(ruleset, **options)
                    assert item.error is not None
                    row: Mapping[str, Any] = local.error(item.error, item.position)
                    if dupes is not None:
                        dupes(row, item.position)  # type: ignore[arg-type]
                    yield RenderedRow(dumps(row), row["decision"])
                    continue
                text, decision, candidate_id, site = result
                if dupes is not None:
                    head: dict[str, Any] = {"candidate_id": candidate_id, "site": site, "decision": decision}
                    dupes(head, item.position)
                    if "warnings" in head:  # a second record for this candidate: warn as one worker would
                        text = _add_warnings(text, head["warnings"])
                yield RenderedRow(text, decision)
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:
            _terminate(pool)


def _add_warnings(text: str, warnings: list[str]) -> str:
    """The row's text with duplicate warnings added exactly as DuplicateCheck adds them."""
    row = orjson.loads(text)
    row.setdefault("warnings", []).extend(warnings)
    if "ruleset" in row:  # DuplicateCheck's field order: warnings before the stamp
        for key in ("ruleset", "parameters", "record"):
            if key in row:
                row[key] = row.pop(key)
    return dumps(row)


def _died(chunk: list[Item]) -> WorkerError:
    return WorkerError(f"a screening worker process died while screening records {_span(chunk)} "
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


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
