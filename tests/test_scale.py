"""Screening at scale: N workers give one worker's bytes, the engine memo changes nothing, a dead
worker is reported (never a hang), memory-bounded streaming, and the compact duplicate check."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import screening
from screening.engine import DurableEvaluator, shared_evaluator
from screening.generate import write_jsonl
from screening.io import Item, read_records
from screening.output import RowWriter
from screening.scale import RenderedRow, WorkerError, screen_parallel
from screening.screen import DuplicateCheck

from .conftest import FIXTURES, ROOT


def _render(rows: Any, ruleset: screening.Ruleset, fmt: str = "jsonl") -> str:
    out = io.StringIO()
    writer = RowWriter(out, fmt, ruleset)
    for row in rows:
        writer.write(row)
    writer.close()
    return out.getvalue()


@pytest.fixture(scope="module")
def generated() -> str:
    """10,000 generated records, plus what a real batch has: repeats of candidates and unreadable lines."""
    out = io.StringIO()
    write_jsonl(out, 10_000, seed=808)
    lines = out.getvalue().splitlines()
    lines[4000:4000] = lines[10:15]          # five candidates seen twice (warned in the second row)
    lines[7000:7000] = ["{not json", "[1, 2]"]  # two unreadable lines (error rows from the reader)
    lines.insert(9000, lines[9500])
    return "\n".join(lines) + "\n"


def test_figure1_cohort_two_workers_match_one_byte_for_byte(tmp_path) -> None:
    source = FIXTURES / "figure1" / "candidates.jsonl"
    outputs = []
    for workers in ("1", "2"):
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "screen", str(source), "--format", "jsonl",
                                 "--workers", workers], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 310


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_generated_records_two_workers_match_one(generated: str, paper: screening.Ruleset, fmt: str) -> None:
    one = _render(screening.screen_items(read_records(io.StringIO(generated), "jsonl"), paper), paper, fmt)
    two = _render(screen_parallel(read_records(io.StringIO(generated), "jsonl"), paper, workers=2,
                                  chunk_size=700), paper, fmt)
    assert one == two
    if fmt == "jsonl":
        rows = [json.loads(line) for line in one.splitlines()]
        assert len(rows) == 10_008
        assert sum("a second record for candidate" in w for r in rows for w in r.get("warnings", [])) == 6
        assert sum(r["decision"] == "error" for r in rows) > 2


def test_include_record_and_rows_as_mappings(paper: screening.Ruleset) -> None:
    text = (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8")
    one = list(screening.screen_items(read_records(io.StringIO(text), "jsonl"), paper, include_record=True))
    two = list(screen_parallel(read_records(io.StringIO(text), "jsonl"), paper, workers=2, include_record=True,
                               chunk_size=64))
    assert all(isinstance(r, RenderedRow) for r in two)
    assert [dict(r) for r in two] == one
    assert two[0]["record"]["candidate_id"] == one[0]["candidate_id"]


def test_engine_memo_changes_nothing(generated: str, paper: screening.Ruleset) -> None:
    memo = shared_evaluator(paper)
    plain = DurableEvaluator(paper, memo_size=0)
    cached = list(screening.screen_items(read_records(io.StringIO(generated), "jsonl"), paper, evaluator=memo))
    asked = list(screening.screen_items(read_records(io.StringIO(generated), "jsonl"), paper, evaluator=plain))
    assert cached == asked
    assert memo.hits > 1000  # the memo was really used
    assert plain.hits == 0 and plain.misses == 0


def test_a_tiny_memo_is_cleared_not_grown(paper: screening.Ruleset, generated: str) -> None:
    small = DurableEvaluator(paper, memo_size=8)
    rows = list(screening.screen_items(read_records(io.StringIO(generated), "jsonl"), paper, evaluator=small))
    assert len(small._memo) <= 8
    assert rows == list(screening.screen_items(read_records(io.StringIO(generated), "jsonl"), paper))


class _DiesOnSecondChunk:
    """An evaluator that kills its worker process partway, as a crash in C code would."""

    def __init__(self, ruleset: screening.Ruleset) -> None:
        self.inner = shared_evaluator(ruleset)
        self.calls = 0

    def fired(self, facts: dict[str, Any]) -> list[int]:
        self.calls += 1
        if self.calls > 150:
            os._exit(9)
        return self.inner.fired(facts)


@pytest.mark.timeout(60)
def test_a_dead_worker_is_reported_not_hung(generated: str, paper: screening.Ruleset) -> None:
    rows = screen_parallel(read_records(io.StringIO(generated), "jsonl"), paper, workers=2, chunk_size=100,
                           evaluator=_DiesOnSecondChunk(paper))
    seen = 0
    with pytest.raises(WorkerError, match="worker process died while screening records line"):
        for _ in rows:
            seen += 1
    assert seen < 10_008


def test_reading_stays_bounded_ahead_of_the_output(paper: screening.Ruleset) -> None:
    pulled = 0
    out = io.StringIO()
    write_jsonl(out, 5000, seed=5)
    lines = out.getvalue().splitlines()

    def items() -> Iterator[Item]:
        nonlocal pulled
        for number, line in enumerate(lines, 1):
            pulled += 1
            yield Item(f"line {number}", line)

    rows = screen_parallel(items(), paper, workers=2, chunk_size=100)
    next(rows)
    assert pulled <= (2 * 2 + 1) * 100  # at most 2 × workers chunks in flight, plus the one being cut
    rest = list(itertools.islice(rows, 10))
    assert len(rest) == 10
    rows.close()  # abandoning the batch stops the workers


def test_duplicate_check_remembers_first_positions_through_growth() -> None:
    check = DuplicateCheck()
    for i in range(5000):
        assert "warnings" not in check({"candidate_id": f"C{i}", "site": "s", "decision": "eligible"}, f"line {i + 1}")
    for i in (0, 1, 1023, 4999):
        row = check({"candidate_id": f"C{i}", "site": "s", "decision": "eligible"}, "line 9999")
        assert row["warnings"] == [f"a second record for candidate C{i} at site s in this batch (first at line {i + 1})"]
    other = check({"candidate_id": "C0", "site": "t", "decision": "eligible"}, "index 7")
    assert "warnings" not in other  # another site: another candidate
    odd = DuplicateCheck()
    odd({"candidate_id": "Z", "site": None, "decision": "eligible"}, "line 007")
    assert odd({"candidate_id": "Z", "site": None, "decision": "eligible"}, "x")["warnings"][0].endswith("(first at line 007)")


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_workers_reading_the_file_themselves_match_one_worker(generated: str, paper: screening.Ruleset,
                                                              tmp_path, fmt: str) -> None:
    """The file path: blank lines, CRLF, a BOM, bytes that are not UTF-8, duplicates, unreadable lines."""
    from screening.scale import screen_file_blocks

    lines = generated.encode("utf-8").split(b"\n")
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[123] += b"\r"
    lines[2500:2500] = [b"", b"   ", b'{"candidate_id": "BAD\xff", "screening_start": "2023-03-01"}']
    path = tmp_path / "batch.jsonl"
    path.write_bytes(b"\n".join(lines))
    with path.open("rb") as f:
        one = _render(screening.screen_items(read_records(f, "jsonl"), paper), paper, fmt)
    out = io.StringIO()
    writer = RowWriter(out, fmt, paper)
    errors = 0
    for block in screen_file_blocks(str(path), paper, workers=2, chunk_bytes=150_000):
        errors += block.errors
        writer.write_block(block.text, block.count)
    writer.close()
    assert out.getvalue() == one
    if fmt == "jsonl":
        rows = [json.loads(line) for line in one.splitlines()]
        assert errors == sum(r["decision"] == "error" for r in rows) >= 4
        assert any(r["candidate_id"] == "line 2503" and "UTF-8" in r["error"] for r in rows)


@pytest.mark.parametrize("tail", [b"", b"\n", b"\n\n"])
def test_a_small_file_with_or_without_a_final_newline(paper: screening.Ruleset, tmp_path, tail: bytes) -> None:
    from screening.scale import screen_file_blocks

    lines = (FIXTURES / "figure1" / "candidates.jsonl").read_bytes().split(b"\n")[:5]
    path = tmp_path / "small.jsonl"
    path.write_bytes(b"\n".join(lines) + tail)
    with path.open("rb") as f:
        one = _render(screening.screen_items(read_records(f, "jsonl"), paper), paper)
    blocks = list(screen_file_blocks(str(path), paper, workers=2, chunk_bytes=100))
    assert b"".join(b.text for b in blocks).decode() == one
    assert sum(b.count for b in blocks) == 5 and len(blocks) > 1
