"""Screening partitioned inputs on a Dask cluster (screening.cluster): every partition's output file is, row for
row, the single-process output on that partition alone, at 1 and 2 Dask workers; Parquet partitions screen as
their JSON Lines form; error rows and cross-partition duplicates are named by partition."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import screening
from screening.audit import audit_rows
from screening.cluster import (
    ClusterResult,
    find_partitions,
    output_name,
    parquet_record,
    parquet_schema,
    read_output_dir,
    read_parquet,
    screen_partitions,
)
from screening.errors import InputFormatError
from screening.generate import write_jsonl
from screening.io import read_records
from screening.screen import screen_items

from .conftest import FIXTURES

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of two worker processes shared by the smaller tests, used through its address (the
    ``--scheduler ADDRESS`` path)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def split(lines: list[bytes], parts: int, folder: Path, stem: str = "part") -> list[Path]:
    """``lines`` cut into ``parts`` JSON Lines files of (nearly) equal length, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(lines) // parts)
    files = []
    for i in range(parts):
        path = folder / f"{stem}-{i:04d}.jsonl"
        path.write_bytes(b"".join(lines[i * size:(i + 1) * size]))
        files.append(path)
    return files


def single_process(path: Path, ruleset: screening.Ruleset) -> bytes:
    """What ``nlc-screen screen PATH --format jsonl`` writes: the rows of one process, as JSON Lines."""
    with open(path, "rb") as f:
        return b"".join(orjson.dumps(row) + b"\n" for row in screen_items(read_records(f, name=str(path)), ruleset))


def assert_same_as_single_process(files: list[Path], out: Path, ruleset: screening.Ruleset) -> None:
    for path in files:
        expected = single_process(path, ruleset)
        got = (out / output_name(path)).read_bytes()
        if got != expected:  # show the first row that differs
            for number, (a, b) in enumerate(zip(got.splitlines(), expected.splitlines()), start=1):
                assert orjson.loads(a) == orjson.loads(b), f"{path.name} row {number}"
            assert got.count(b"\n") == expected.count(b"\n"), path.name
        assert got == expected


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", [1, 2])
def test_figure1_partitions_equal_single_process(tmp_path: Path, paper: screening.Ruleset, workers: int) -> None:
    files = split(FIGURE1.read_bytes().splitlines(keepends=True), 4, tmp_path / "in")
    out = tmp_path / "out"
    progress: list[int] = []
    result = screen_partitions(tmp_path / "in", out, paper, workers=workers, progress=progress.append)
    assert isinstance(result, ClusterResult)
    assert result.workers == workers
    assert [p.input.name for p in result.partitions] == [f.name for f in files]
    assert result.rows == 310 and sum(progress) == 310 and result.errors == 0
    assert result.exit_code == 0, result.summary()
    assert result.duplicates == [] and result.stale == []
    assert sorted(p.name for p in out.iterdir()) == [output_name(f) for f in files]
    assert_same_as_single_process(files, out, paper)
    audit = audit_rows(read_output_dir(out), expect="figure1")
    assert audit.exit_code == 0, audit.diffs
    assert audit.counts.candidates == 310


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, paper: screening.Ruleset) -> tuple[list[Path], Path]:
    """100,000 generated records (seed 3: about 1 % error rows) in 8 partitions, and a folder holding each
    partition's single-process output (made once for both worker counts)."""
    text = io.StringIO()
    write_jsonl(text, 100_000, seed=3, ruleset=paper)
    lines = text.getvalue().encode().splitlines(keepends=True)
    del text
    assert len(lines) == 100_000
    files = split(lines, 8, tmp_path_factory.mktemp("generated"))
    reference = tmp_path_factory.mktemp("reference")
    for path in files:
        (reference / output_name(path)).write_bytes(single_process(path, paper))
    return files, reference


@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", [1, 2])
def test_100k_generated_records_equal_single_process(tmp_path: Path, paper: screening.Ruleset,
                                                     generated: tuple[list[Path], Path], workers: int) -> None:
    files, reference = generated
    result = screen_partitions(files[0].parent, tmp_path, paper, workers=workers)
    assert result.rows == 100_000
    assert result.workers == workers
    assert result.errors > 0 and result.exit_code == 3  # the generator's ~1 % of unreadable records
    for path in files:
        got, expected = (tmp_path / output_name(path)).read_bytes(), (reference / output_name(path)).read_bytes()
        assert got.count(b"\n") == expected.count(b"\n") == 12_500, path.name
        assert got == expected, path.name
    assert result.errors == sum(1 for row in read_output_dir(tmp_path) if row["decision"] == "error")


def test_inputs_glob_and_list(tmp_path: Path) -> None:
    files = split(FIGURE1.read_bytes().splitlines(keepends=True)[:6], 3, tmp_path)
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden.jsonl").write_text("")
    (tmp_path / "part-0000.decisions.jsonl").write_text("")  # an earlier run's output in the same folder
    assert find_partitions(tmp_path) == files
    assert find_partitions(str(tmp_path / "part-000[12].jsonl")) == files[1:]
    assert find_partitions([files[2], files[0]]) == [files[2], files[0]]
    with pytest.raises(InputFormatError, match="no partition file matches"):
        find_partitions(str(tmp_path / "nothing-*.jsonl"))
    other = tmp_path / "sub"
    other.mkdir()
    (other / "part-0000.parquet").write_bytes(b"")
    with pytest.raises(InputFormatError, match="would both be written to part-0000.decisions.jsonl"):
        find_partitions([files[0], other / "part-0000.parquet"])


def test_broken_line_names_partition_and_line(tmp_path: Path, paper: screening.Ruleset, scheduler: str) -> None:
    lines = FIGURE1.read_bytes().splitlines(keepends=True)[:8]
    files = split(lines, 2, tmp_path / "in")
    broken = files[1].read_bytes().splitlines(keepends=True)
    broken.insert(2, b'{"candidate_id": "X-1", "site": \n')
    files[1].write_bytes(b"".join(broken))
    result = screen_partitions(files, tmp_path / "out", paper, scheduler=scheduler)
    assert result.exit_code == 3 and result.errors == 1 and result.rows == 9
    [named] = result.partitions[1].error_lines
    assert named.startswith("part-0001.jsonl line 3: not valid JSON")
    assert "part-0001.jsonl line 3: " in result.summary()
    rows = [json.loads(line) for line in (tmp_path / "out" / "part-0001.decisions.jsonl").read_text().splitlines()]
    assert rows[2]["decision"] == "error" and rows[2]["candidate_id"] == "line 3"
    assert_same_as_single_process(files, tmp_path / "out", paper)


def test_candidate_in_two_partitions_is_reported(tmp_path: Path, paper: screening.Ruleset, scheduler: str) -> None:
    lines = FIGURE1.read_bytes().splitlines(keepends=True)[:9]
    first = json.loads(lines[0])
    near = dict(json.loads(lines[1]), candidate_id=f" {json.loads(lines[1])['candidate_id'].lower()} ")
    files = split(lines, 3, tmp_path / "in")
    with files[2].open("ab") as f:  # the first candidate again, and the second one typed differently
        f.write(json.dumps(first).encode() + b"\n" + json.dumps(near).encode() + b"\n")
    with files[0].open("ab") as f:  # a repeat within one partition: warned in its rows, not in the summary
        f.write(lines[2])
    result = screen_partitions(tmp_path / "in", tmp_path / "out", paper, scheduler=scheduler)
    assert result.exit_code == 0, result.summary()
    assert result.duplicates == [
        f"a second record for candidate {first['candidate_id']} at site {first['site']} in part-0002.jsonl line 4 "
        f"(first at part-0000.jsonl line 1, another partition)",
        f"candidate {near['candidate_id']} at site {near['site']} in part-0002.jsonl line 5 matches the record at "
        f"part-0000.jsonl line 2 once case and surrounding spaces are ignored: the same candidate typed "
        f"differently, or two candidates?",
    ]
    assert "2 candidate record(s) also in an earlier partition" in result.summary()
    rows = [json.loads(line) for line in (tmp_path / "out" / "part-0000.decisions.jsonl").read_text().splitlines()]
    assert any("a second record" in w for w in rows[-1]["warnings"])
    assert_same_as_single_process(files, tmp_path / "out", paper)


DATE_FIELDS = ("screening_start", "birth_date", "enrollment_date", "night_of", "start_date", "stop_date",
               "end_date", "date")


def as_dates(value: Any) -> Any:
    """ISO dates in a record as datetime.date (date32 in Parquet), at any depth."""
    if isinstance(value, dict):
        return {k: (dt.date.fromisoformat(v) if k in DATE_FIELDS and isinstance(v, str) else as_dates(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [as_dates(v) for v in value]
    return value


def write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # pa.array infers one struct type from the keys of every record (absent ones become nulls)
    pq.write_table(pa.Table.from_struct_array(pa.array(records)), path)


def test_parquet_partitions_screen_as_their_json_lines(tmp_path: Path, paper: screening.Ruleset,
                                                        scheduler: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [json.loads(line) for line in FIGURE1.read_bytes().splitlines()[:40]]
    assert any(r.get("medications") for r in records) and all(r["diary"]["episodes"] for r in records[:5])
    (tmp_path / "in").mkdir()
    write_parquet(records[:20], tmp_path / "in" / "a-iso.parquet")  # dates as ISO strings
    write_parquet([as_dates(r) for r in records[20:]], tmp_path / "in" / "b-date32.parquet")
    schema = pq.read_schema(tmp_path / "in" / "b-date32.parquet")
    assert str(schema.field("birth_date").type) == "date32[day]"
    assert "list<element: struct<" in str(schema.field("medications").type)
    # the schema docs/cluster.md shows, made from the record's own fields
    pq.write_table(pa.Table.from_pylist([as_dates(r) for r in records[20:]], schema=parquet_schema(paper)),
                   tmp_path / "in" / "c-schema.parquet")
    (tmp_path / "jsonl").mkdir()
    (tmp_path / "jsonl" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:20]))
    (tmp_path / "jsonl" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[20:]))

    result = screen_partitions(tmp_path / "in", tmp_path / "out", paper, scheduler=scheduler)
    assert result.exit_code == 0, result.summary()
    assert result.rows == 60
    for parquet, jsonl in (("a-iso", "a"), ("b-date32", "b"), ("c-schema", "b")):
        got = (tmp_path / "out" / f"{parquet}.decisions.jsonl").read_bytes()
        assert got == single_process(tmp_path / "jsonl" / f"{jsonl}.jsonl", paper)
    # the record each Parquet row becomes: nulls left out (unknown), dates as ISO text
    assert [parquet_record(row) for row in pq.read_table(tmp_path / "in" / "b-date32.parquet").to_pylist()] \
        == records[20:]


def test_parquet_values_a_record_cannot_hold_are_error_rows(tmp_path: Path, paper: screening.Ruleset) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({
        "candidate_id": ["P-1", "P-2", "P-3"],
        "screening_start": [dt.datetime(2023, 3, 1), dt.datetime(2023, 3, 1, 12, 30), dt.datetime(2023, 3, 1)],
        "diary": [{"nights_recorded": 14.0}, {"nights_recorded": 14.0}, {"nights_recorded": float("nan")}],
    }), path)
    items = list(read_parquet(path))
    assert [i.position for i in items] == ["line 1", "line 2", "line 3"]
    assert json.loads(items[0].text or "") == {"candidate_id": "P-1", "screening_start": "2023-03-01",
                                               "diary": {"nights_recorded": 14.0}}
    assert items[1].error is not None and items[1].error.describe().startswith(
        "line 2, candidate P-2: screening_start: a timestamp with a time of day")
    assert items[2].error is not None and "diary.nights_recorded: must be a finite number" in items[2].error.describe()
    rows = list(screen_items(items, paper))
    assert [r["decision"] for r in rows[1:]] == ["error", "error"]


def test_damaged_parquet_gives_the_rows_before_the_damage(tmp_path: Path, paper: screening.Ruleset) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "damaged.parquet"
    pq.write_table(pa.table({"candidate_id": [f"C-{i}" for i in range(1000)],
                             "diary": [{"nights_recorded": i % 15} for i in range(1000)]}), path, row_group_size=500)
    column = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    stream = read_parquet(path)
    items = list(stream)
    assert len(items) == 501 and all(item.error is None for item in items[:500])
    assert items[500].position == "line 501" and items[500].error is not None
    assert stream.unread is not None and "stopped at row 501" in stream.unread and "500 row(s) were not read" in stream.unread


def test_unreadable_partitions_exit_1(tmp_path: Path, paper: screening.Ruleset, scheduler: str) -> None:
    files = split(FIGURE1.read_bytes().splitlines(keepends=True)[:4], 2, tmp_path / "in")
    (tmp_path / "in" / "utf16.jsonl").write_bytes('{"candidate_id": "A"}\n'.encode("utf-16"))
    (tmp_path / "in" / "fake.parquet").write_bytes(b"not parquet at all")
    result = screen_partitions(tmp_path / "in", tmp_path / "out", paper, scheduler=scheduler)
    assert result.exit_code == 1
    by_name = {p.input.name: p for p in result.partitions}
    assert "UTF-16" in (by_name["utf16.jsonl"].unread or "")
    assert "not a Parquet file" in (by_name["fake.parquet"].unread or "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [output_name(f) for f in files]
    assert "fake.parquet: cannot be read" in result.summary()


def test_stale_outputs_are_named(tmp_path: Path, paper: screening.Ruleset, scheduler: str) -> None:
    split(FIGURE1.read_bytes().splitlines(keepends=True)[:2], 1, tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old-0009.decisions.jsonl").write_text("")
    result = screen_partitions(tmp_path / "in", tmp_path / "out", paper, scheduler=scheduler)
    assert [p.name for p in result.stale] == ["old-0009.decisions.jsonl"]
    assert "not written by this run" in result.summary()


def test_read_output_dir(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="holds no"):
        list(read_output_dir(tmp_path))
    row = {"candidate_id": "A", "site": None, "decision": "eligible", "category": "randomized"}
    (tmp_path / "b.decisions.jsonl").write_text(json.dumps(dict(row, candidate_id="B")) + "\n")
    (tmp_path / "a.decisions.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "notes.jsonl").write_text("not rows\n")
    assert [r["candidate_id"] for r in read_output_dir(tmp_path)] == ["A", "B"]
    (tmp_path / "c.decisions.jsonl").write_text("{}\n")
    with pytest.raises(InputFormatError, match="c.decisions.jsonl line 1"):
        list(read_output_dir(tmp_path))


def test_worker_refuses_another_criteria_set(tmp_path: Path, paper: screening.Ruleset, scheduler: str) -> None:
    import dataclasses

    split(FIGURE1.read_bytes().splitlines(keepends=True)[:2], 1, tmp_path / "in")
    changed = dataclasses.replace(paper, sha256="0" * 64)
    with pytest.raises(screening.ScreeningError, match="is not the client's"):
        screen_partitions(tmp_path / "in", tmp_path / "out", changed, scheduler=scheduler)


def test_worker_refuses_other_versions(tmp_path: Path, paper: screening.Ruleset, scheduler: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import screening.cluster

    split(FIGURE1.read_bytes().splitlines(keepends=True)[:2], 1, tmp_path / "in")
    client_versions = screening.cluster._versions()
    monkeypatch.setattr(screening.cluster, "_versions", lambda: dict(client_versions, pydantic="0.0.1"))
    with pytest.raises(screening.ScreeningError, match=r"runs pydantic .* \(the client's 0.0.1\): install the same"):
        screen_partitions(tmp_path / "in", tmp_path / "out", paper, scheduler=scheduler)
    assert not (tmp_path / "out").exists()
