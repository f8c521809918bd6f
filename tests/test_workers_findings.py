"""Issue 11, the parallel workers and the duplicate check: workers die with their parent, never more
processes than work, a dead worker's message names exactly the records in flight (and the rows
written before it are whole, one per record), and near-duplicate candidates are warned."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import screening
from screening import scale
from screening.engine import shared_evaluator
from screening.io import Item, read_records
from screening.output import RowWriter
from screening.scale import MAX_WORKERS, WorkerError, screen_blocks, screen_file_blocks, screen_parallel
from screening.screen import DuplicateCheck

from .conftest import ROOT, as_text, base_record

CLI = [sys.executable, str(ROOT / "cli.py")]


# ---------------------------------------------------------------------------------------------
# Processes: seen through /proc (Linux)

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")  # a zombie is dead, only not yet reaped


def _children(pid: int) -> list[int]:
    """Live child processes, not counting multiprocessing's own helpers (the forkserver and resource
    tracker that a test of the service's warm pool leaves for the rest of the session)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid and stat[0] not in ("Z", "X") and not _helper(int(entry)):
                found.append(int(entry))
    return found


def _helper(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"multiprocessing.forkserver" in command or b"multiprocessing.resource_tracker" in command


def _group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
                found.append(int(entry))
    return found


def _wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _read_to_eof(fd: int, seconds: float) -> tuple[bytes, bool]:
    """Everything left in a pipe, and whether it reached end of file within ``seconds``."""
    data = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 small records: a run of several seconds with two workers."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(200_000):
            f.write(f'{{"candidate_id": "B{i:06d}", "site": "s", "screening_start": "2023-03-01"}}\n')
    return path


class _Run:
    """``nlc-screen screen BIG --workers 2 --format jsonl`` in its own session, stdout to a pipe."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([*CLI, "screen", str(path), "--workers", "2", "--format", "jsonl", *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()

    def wait_for_output_and_workers(self) -> tuple[bytes, list[int]]:
        ready, _, _ = select.select([self.fd], [], [], 60)
        assert ready, "no output within 60 s"
        first = os.read(self.fd, 1 << 16)
        assert first, "the run ended before it could be interrupted"
        assert _wait_for(lambda: len(_children(self.pid)) >= 2, 10), "two workers never showed up"
        return first, _children(self.pid)

    def cleanup(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)  # this run's own session: the processes this test started
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.timeout(120)
def test_sigkill_of_the_main_process_takes_its_workers_and_closes_the_pipe(big_batch: Path) -> None:
    run = _Run(big_batch)
    try:
        _, workers = run.wait_for_output_and_workers()
        os.kill(run.pid, signal.SIGKILL)
        _, eof = _read_to_eof(run.fd, 15)
        assert eof, "the output pipe is still held open after the main process was killed"
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 10), "orphaned workers"
        assert _group(run.pid) == []
    finally:
        run.cleanup()


@pytest.mark.timeout(120)
def test_sigterm_stops_the_run_with_130_and_takes_the_workers(big_batch: Path) -> None:
    """Needs the CLI's SIGTERM handler (SIGTERM handled as SIGINT, exit 130) as well as the workers'
    side in screening.scale; until cli.py has it, the exit-code assertion fails."""
    run = _Run(big_batch)
    try:
        _, workers = run.wait_for_output_and_workers()
        os.kill(run.pid, signal.SIGTERM)
        _, eof = _read_to_eof(run.fd, 15)
        assert eof, "the output pipe is still held open after SIGTERM"
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 10), "orphaned workers"
        assert run.proc.wait(timeout=15) == 130
        assert run.proc.stderr is not None
        assert b"Traceback" not in run.proc.stderr.read()
    finally:
        run.cleanup()


@pytest.mark.timeout(120)
def test_ctrl_c_to_the_whole_group_stops_quietly(big_batch: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the group: workers ignore it (the main process stops
    them), so no worker prints a traceback. The exit code 130 needs the CLI's handler."""
    run = _Run(big_batch)
    try:
        _, workers = run.wait_for_output_and_workers()
        os.killpg(run.pid, signal.SIGINT)
        _, eof = _read_to_eof(run.fd, 15)
        assert eof
        assert _wait_for(lambda: not any(_alive(w) for w in workers), 10), "orphaned workers"
        code = run.proc.wait(timeout=15)
        assert run.proc.stderr is not None
        err = run.proc.stderr.read()
        assert b"Traceback" not in err, err.decode(errors="replace")[-2000:]
        assert code == 130
    finally:
        run.cleanup()


@pytest.mark.timeout(120)
def test_a_killed_worker_ends_the_run_with_whole_rows_up_to_the_first_record_in_flight(big_batch: Path) -> None:
    run = _Run(big_batch)
    try:
        first, workers = run.wait_for_output_and_workers()
        os.kill(workers[0], signal.SIGKILL)
        rest, eof = _read_to_eof(run.fd, 60)
        assert eof
        code = run.proc.wait(timeout=30)
        assert run.proc.stderr is not None
        err = run.proc.stderr.read().decode()
    finally:
        run.cleanup()
    assert code != 0
    match = re.search(r"records line (\d+)(?: … line (\d+))?.*rows from line (\d+) on are missing", err, re.S)
    assert match, err
    start, from_ = int(match[1]), int(match[3])
    assert start == from_
    out = first + rest
    assert out.endswith(b"\n")  # never a partial row
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == start - 1  # exactly one row per record before the first one in flight
    assert [r["candidate_id"] for r in rows] == [f"B{i:06d}" for i in range(start - 1)]
    assert "Traceback" not in err


class _Slow:
    """An evaluator that takes 50 ms a record: a chunk of 100 keeps its worker busy for 5 s."""

    def __init__(self, ruleset: screening.Ruleset) -> None:
        self.inner = shared_evaluator(ruleset)

    def fired(self, facts: dict[str, Any]) -> list[int]:
        time.sleep(0.05)
        return self.inner.fired(facts)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["close", "interrupt"])
def test_abandoning_the_blocks_stops_busy_workers_at_once(paper: screening.Ruleset, how: str) -> None:
    """Closing the iteration (an interrupted CLI, a broken pipe) must not wait for the chunks in flight."""
    items = (Item(f"line {i + 1}", text) for i, text in enumerate(_records(2000)))
    blocks = screen_blocks(items, paper, workers=2, chunk_size=100, evaluator=_Slow(paper))
    workers: list[int] = []
    if how == "close":
        first = next(blocks)
        assert first.count == 100
        workers.extend(_children(os.getpid()))
        assert len(workers) == 2
        blocks.close()
    else:  # KeyboardInterrupt (the CLI's SIGTERM handler) while the main process waits for a result
        def interrupt() -> None:
            time.sleep(1)
            workers.extend(_children(os.getpid()))
            os.kill(os.getpid(), signal.SIGINT)

        import threading

        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            next(blocks)
        assert len(workers) == 2
    assert _wait_for(lambda: not any(_alive(w) for w in workers), 2), "workers still screening"


# ---------------------------------------------------------------------------------------------
# Never more processes than work

class _Forks:
    """Counts the processes this test process forks while ``counting``."""

    counting = False
    count = 0
    registered = False

    @classmethod
    def _after(cls) -> None:
        if cls.counting:
            cls.count += 1

    def __enter__(self) -> _Forks:
        if not _Forks.registered:
            os.register_at_fork(after_in_parent=_Forks._after)
            _Forks.registered = True
        _Forks.count, _Forks.counting = 0, True
        return self

    def __exit__(self, *exc: object) -> None:
        _Forks.counting = False


def _records(n: int, **changes: Any) -> list[str]:
    return [as_text(base_record(candidate_id=f"W-{i:05d}", **changes)) for i in range(n)]


def test_a_small_file_forks_no_more_processes_than_chunks(paper: screening.Ruleset, tmp_path: Path) -> None:
    path = tmp_path / "nineteen.jsonl"
    path.write_text("\n".join(_records(19)) + "\n", encoding="utf-8")
    with _Forks() as forks:
        blocks = list(screen_file_blocks(str(path), paper, workers=8))
    assert sum(b.count for b in blocks) == 19
    assert 1 <= forks.count <= len(blocks)
    assert forks.count == 1  # 19 records are less than one chunk's worth: not worth a second process

    path3 = tmp_path / "three.jsonl"
    path3.write_text("\n".join(_records(3)) + "\n", encoding="utf-8")
    with _Forks() as forks:
        blocks = list(screen_file_blocks(str(path3), paper, workers=8, chunk_bytes=100))
    assert len(blocks) == 3 and forks.count == 3


def test_a_small_stream_forks_no_more_processes_than_chunks(paper: screening.Ruleset) -> None:
    items = [Item(f"line {i + 1}", text) for i, text in enumerate(_records(19))]
    with _Forks() as forks:
        blocks = list(screen_blocks(iter(items), paper, workers=8))
    assert len(blocks) == 1 and blocks[0].count == 19
    assert forks.count == 1
    with _Forks() as forks:
        blocks = list(screen_blocks(iter(items), paper, workers=8, chunk_size=5))
    assert len(blocks) == 4 and forks.count == 4


def test_empty_input_forks_nothing(paper: screening.Ruleset, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with _Forks() as forks:
        assert list(screen_blocks(iter([]), paper, workers=4)) == []
        assert list(screen_file_blocks(str(path), paper, workers=4)) == []
    assert forks.count == 0


def test_workers_are_capped_at_a_documented_maximum(paper: screening.Ruleset) -> None:
    assert 2 <= MAX_WORKERS <= 256
    assert "MAX_WORKERS" in (scale.__doc__ or "") + (scale.screen_blocks.__doc__ or "")
    with pytest.raises(ValueError, match="at most"):
        list(screen_blocks(iter([]), paper, workers=MAX_WORKERS + 1))
    with pytest.raises(ValueError, match="at least"):
        list(screen_blocks(iter([]), paper, workers=0))


# ---------------------------------------------------------------------------------------------
# A dead worker: the message names exactly the records in flight

class _DiesOnAge99:
    """Kills its worker process on the one record aged 99, as a crash in the engine's C code would."""

    def __init__(self, ruleset: screening.Ruleset) -> None:
        self.inner = shared_evaluator(ruleset)

    def fired(self, facts: dict[str, Any]) -> list[int]:
        if facts.get("age_years") == 99:
            time.sleep(0.3)  # usually lets the other worker finish its chunk first (not relied on)
            os._exit(9)
        return self.inner.fired(facts)


def _poisoned(n: int, poison: int, width: int = 0) -> list[str]:
    """``n`` records, the one at line ``poison`` aged 99; each line padded to ``width`` bytes."""
    lines = _records(n)
    lines[poison - 1] = as_text(base_record(candidate_id=f"W-{poison - 1:05d}", birth_date="1923-06-15"))
    if width:
        lines = [line + " " * (width - 1 - len(line.encode())) for line in lines]
    return lines


def _consume(blocks: Iterator[Any], slow: bool) -> tuple[list[dict[str, Any]], str]:
    rows: list[dict[str, Any]] = []
    with pytest.raises(WorkerError) as caught:
        for block in blocks:
            rows.extend(json.loads(line) for line in block.text.decode().splitlines())
            if slow and len(rows) == 100:
                time.sleep(2)  # the worker dies meanwhile: the next submit finds the pool broken
    return rows, str(caught.value)


def _check_in_flight(rows: list[dict[str, Any]], message: str) -> None:
    match = re.search(r"while screening records line (\d+) … line (\d+)\b.*rows from line (\d+) on are missing",
                      message, re.S)
    assert match, message
    first, last, missing = int(match[1]), int(match[2]), int(match[3])
    assert [r["candidate_id"] for r in rows] == [f"W-{i:05d}" for i in range(len(rows))]  # whole, in order
    assert len(rows) % 100 == 0 and len(rows) <= 200
    assert first == missing == len(rows) + 1  # the first record in flight is the first one not written
    assert last >= 400  # chunks 1–4 are submitted before the first result is awaited: all still in flight
    assert last % 100 == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slow", [False, True], ids=["waiting", "submitting"])
def test_a_dead_worker_names_the_records_in_flight_stream(paper: screening.Ruleset, slow: bool) -> None:
    items = (Item(f"line {i + 1}", text) for i, text in enumerate(_poisoned(1000, 250)))
    blocks = screen_blocks(items, paper, workers=2, chunk_size=100, evaluator=_DiesOnAge99(paper))
    _check_in_flight(*_consume(blocks, slow))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slow", [False, True], ids=["waiting", "submitting"])
def test_a_dead_worker_names_the_lines_in_flight_file(paper: screening.Ruleset, tmp_path: Path, slow: bool) -> None:
    path = tmp_path / "poisoned.jsonl"
    path.write_text("\n".join(_poisoned(1000, 250, width=1200)) + "\n", encoding="utf-8")
    assert path.stat().st_size == 1000 * 1200
    blocks = screen_file_blocks(str(path), paper, workers=2, chunk_bytes=100 * 1200 - 1,  # 100 lines a chunk
                                evaluator=_DiesOnAge99(paper))
    _check_in_flight(*_consume(blocks, slow))


class _DiesMidResult:
    """Kills its worker halfway through sending a result, as the OOM killer can: the pool's reader thread
    then waits for the rest of the message for ever, and the pool never reports the dead worker."""

    def __init__(self, ruleset: screening.Ruleset) -> None:
        self.inner = shared_evaluator(ruleset)

    def fired(self, facts: dict[str, Any]) -> list[int]:
        if facts.get("age_years") == 99:
            import multiprocessing
            import struct

            results = multiprocessing.current_process()._args[1]  # type: ignore[attr-defined]
            with results._wlock:
                os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + b"half a result")
                os._exit(9)
        return self.inner.fired(facts)


@pytest.mark.timeout(60)
def test_a_worker_killed_while_sending_is_reported_not_hung(paper: screening.Ruleset) -> None:
    import threading

    items = (Item(f"line {i + 1}", text) for i, text in enumerate(_poisoned(1000, 250)))
    blocks = screen_blocks(items, paper, workers=2, chunk_size=100, evaluator=_DiesMidResult(paper))
    rows, message = _consume(blocks, slow=False)
    assert f"rows from line {len(rows) + 1} on are missing" in message
    assert len(rows) <= 200
    managers = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
    assert _wait_for(lambda: not any(t.is_alive() for t in managers), 10), "the pool's thread is stuck"


# ---------------------------------------------------------------------------------------------
# Near-duplicate candidates

def _row(cid: str, site: str | None = "s") -> dict[str, Any]:
    return {"candidate_id": cid, "site": site, "decision": "eligible"}


def test_near_duplicates_are_warned_apart_from_exact_ones() -> None:
    check = DuplicateCheck()
    assert "warnings" not in check(_row("AB-1", "Site One"), "line 1")
    near = check(_row(" ab-1 ", "site one "), "line 2")["warnings"]
    assert len(near) == 1
    assert "line 1" in near[0] and "case and surrounding spaces" in near[0]
    assert not near[0].startswith("a second record for candidate")
    exact = check(_row("AB-1", "Site One"), "line 3")["warnings"]
    assert exact == ["a second record for candidate AB-1 at site Site One in this batch (first at line 1)"]
    again = check(_row(" ab-1 ", "site one "), "line 4")["warnings"]  # an exact repeat of line 2
    assert again == ["a second record for candidate  ab-1  at site site one  in this batch (first at line 2)"]
    third = check(_row("ab-1", "SITE ONE"), "line 5")["warnings"]  # a third spelling: near, first at line 1
    assert "(first at line 1)" in third[0] and "case and surrounding spaces" in third[0]
    assert "warnings" not in check(_row("AB-1", "Site Two"), "line 6")  # another site
    assert "warnings" not in check(_row("AB-11", "Site One"), "line 7")  # inner characters count
    assert "warnings" not in check(_row("A B-1", "Site One"), "line 8")


def test_near_duplicates_without_a_site_and_through_growth() -> None:
    check = DuplicateCheck()
    check(_row("Z", None), "index 3")
    assert "case and surrounding spaces" in check(_row("z ", ""), "index 9")["warnings"][0]
    for i in range(5000):
        check(_row(f"C{i}"), f"line {i + 1}")
    for i in (0, 1023, 4999):
        warning = check(_row(f" c{i}\t"), "line 9999")["warnings"][0]
        assert f"(first at line {i + 1})" in warning and "case and surrounding spaces" in warning
        assert check(_row(f"C{i}"), "line 10000")["warnings"][0].startswith("a second record")


def test_the_duplicate_table_stays_compact() -> None:
    check = DuplicateCheck()
    n = 100_000
    for i in range(n):
        check(_row(f"C{i}"), f"line {i + 1}")
    for i in range(0, n, 10):
        check(_row(f"c{i} "), "line 0")  # near-duplicates: one more entry each, like a new candidate
    table = sum(len(a) * a.itemsize for a in vars(check).values() if hasattr(a, "itemsize"))
    assert table <= 64 * (n + n // 10)  # two 8-byte words a slot, at least a quarter of the slots used


def test_near_duplicates_one_and_two_workers_byte_identical(paper: screening.Ruleset, tmp_path: Path) -> None:
    lines = _records(3000)
    lines[2100] = as_text(base_record(candidate_id=" w-00010 ", site="TEST SITE"))  # near line 11
    lines[2500] = as_text(base_record(candidate_id="W-00020"))                      # exact line 21
    lines[2900] = as_text(base_record(candidate_id=" w-00010 ", site="TEST SITE"))  # exact line 2101
    lines.insert(1500, '{"candidate_id": "w-00030", "site": "Test Site", "screening_start": "bad"}')  # error row
    text = "\n".join(lines) + "\n"
    path = tmp_path / "near.jsonl"
    path.write_text(text, encoding="utf-8")

    def render(rows: Any = None, blocks: Any = None) -> str:
        out = io.StringIO()
        writer = RowWriter(out, "jsonl", paper)
        for row in rows or []:
            writer.write(row)
        for block in blocks or []:
            writer.write_block(block.text, block.count)
        writer.close()
        return out.getvalue()

    one = render(rows=screening.screen_items(read_records(io.StringIO(text), "jsonl"), paper))
    stream = render(rows=screen_parallel(read_records(io.StringIO(text), "jsonl"), paper, workers=2, chunk_size=250))
    shards = render(blocks=screen_file_blocks(str(path), paper, workers=2, chunk_bytes=100_000))
    assert one == stream == shards
    rows = [json.loads(line) for line in one.splitlines()]
    warned = {i + 1: w for i, r in enumerate(rows) for w in r.get("warnings", []) if "batch" in w or "spaces" in w}
    near = {line for line, w in warned.items() if "case and surrounding spaces" in w}
    exact = {line for line, w in warned.items() if w.startswith("a second record")}
    assert near == {1501, 2102}, warned
    assert exact == {2502, 2902}, warned
    assert "(first at line 2102)" in warned[2902]
