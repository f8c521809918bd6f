"""Property tests (hypothesis) for what every input must get, whatever it holds (issue 19, point 1):

* any JSON value as a record — wrong types, huge strings and integers, deep nesting, impossible
  dates, negative counts, control characters, unicode, broken JSON — yields exactly one decision or
  error row, in order, and never a traceback (the library's batch path, every output format, and
  the command line);
* a valid record's decision does not depend on the order of its keys, on the input format (JSON
  objects one after another, a JSON array, JSON Lines, CSV) or on ``--workers``;
* error messages, warnings and process logs (the command's stderr, the HTTP service's log) never
  hold a field's value other than ``candidate_id`` and ``site``: records carry unique marker values,
  and no marker may show.

How many cases run is the hypothesis profile's (tests/conftest.py: ``dev`` locally, ``ci`` under
CI=true); each example is a small batch, so the records screened are several times the examples.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import screening
import screening.io
from screening.batch import screen_batch
from screening.generate import generate
from screening.output import RowWriter

from .conftest import ROOT, csv_cells

PAPER = screening.load_ruleset("paper-2024")
SETS = [PAPER, screening.load_ruleset("registry-2023"), screening.load_ruleset("roguin-2017")]
DECISIONS = {"eligible", "excluded", "undetermined", "error"}
CLI = [sys.executable, str(ROOT / "cli.py")]


def scaled(fraction: float, *, at_least: int = 2) -> int:
    """A share of the active profile's max_examples, for tests whose examples are costly."""
    return max(at_least, int(settings.default.max_examples * fraction))


# ---------------------------------------------------------------------------------------------
# Screening a batch through the library


def screen_bytes(data: bytes, fmt: str | None, ruleset: screening.Ruleset = PAPER, *, workers: int = 1,
                 out_fmt: str = "jsonl", name: str | None = None, **options: Any) -> tuple[list[dict[str, Any]], str]:
    """The rows (and the raw output) of ``screen_batch`` on ``data``: the library's batch path."""
    out = io.StringIO()
    screen_batch(io.BytesIO(data), RowWriter(out, out_fmt, ruleset), ruleset, input_format=fmt, workers=workers,
                 name=name, **options)
    text = out.getvalue()
    if out_fmt != "jsonl":
        return [], text
    return [json.loads(line) for line in text.split("\n") if line], text


def check_rows(rows: list[dict[str, Any]], count: int, ruleset: screening.Ruleset = PAPER) -> None:
    """``count`` rows, each a decision with every criterion of the set, or an error row saying why."""
    assert len(rows) == count
    for row in rows:
        assert row["decision"] in DECISIONS and row["ruleset"] == ruleset.stamp
        if row["decision"] == "error":
            assert isinstance(row["error"], str) and row["error"] and isinstance(row["error_fields"], list)
        else:
            assert set(row["criteria"]) == set(ruleset.criteria)


# ---------------------------------------------------------------------------------------------
# Strategies: anything JSON, records with nasty values, lines that are not JSON at all

FIELD_PATHS = sorted({spec.path for ruleset in SETS for spec in ruleset.record.walk()})
LIST_ITEMS = sorted({f"{spec.path}.0.{key}" for ruleset in SETS for spec in ruleset.record.walk()
                     if spec.items is not None for key in spec.items.fields})
IMPOSSIBLE_DATES = ["2023-02-29", "2023-02-30", "2023-04-31", "2023-13-01", "2023-00-10", "0000-01-01",
                    "10000-01-01", "2023-1-1", "20230101", "2023-01-01T00:00:00", "+2023-01-01", "-2023-01-01",
                    " 2023-01-01", "2023-01-01\n", "１９５０-０１-０１", "1900-02-29", "2023-W01-1", ""]
CONTROL = "".join(map(chr, [*range(0, 32), 127, *range(0x80, 0xA0), 0x2028, 0x2029, 0x202E, 0x2066, 0x200F,
                            0xFEFF]))
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(CONTROL), max_size=10),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.integers(1, 300_000).map(lambda n: "x" * n),                       # huge strings
    st.sampled_from(IMPOSSIBLE_DATES),
    st.dates().map(lambda d: d.isoformat()),                              # years 1 … 9999
)
NUMBERS = st.one_of(st.integers(-(10 ** 6), 10 ** 6), st.integers(min_value=-(10 ** 300), max_value=10 ** 300),
                    st.sampled_from([-1, 0, 14, 15, 2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 19]),
                    st.floats(allow_nan=True, allow_infinity=True))      # NaN / Infinity: not JSON numbers
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, NASTY_TEXT)
KEYS = st.one_of(st.sampled_from([p.rsplit(".", 1)[-1] for p in FIELD_PATHS]), st.text(max_size=8))
JSON_VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(KEYS, inner, max_size=5)), max_leaves=12)


def _valid_records(seed: int, n: int, ruleset: screening.Ruleset = PAPER) -> list[dict[str, Any]]:
    mix = {"eligible": 3, "not_meeting_inclusion": 1, "meeting_exclusion": 1, "withdrawal": 1, "undetermined": 2}
    return [record for _, record in generate(n, seed=seed, mix=mix, ruleset=ruleset)]


BASES = _valid_records(19, 40) + [{"candidate_id": "S-1", "screening_start": "2023-03-01"}]


def _put(record: Any, path: str, value: Any) -> Any:
    """``record`` with the field at ``path`` (dots; a number indexes a list) set to ``value``."""
    if not path:
        return value
    head, _, rest = path.partition(".")
    if head.isdigit():
        items = list(record) if isinstance(record, list) else []
        index = int(head)
        items.extend([{}] * (index + 1 - len(items)))
        items[index] = _put(items[index], rest, value)
        return items
    obj = dict(record) if isinstance(record, dict) else {}
    obj[head] = _put(obj.get(head), rest, value)
    return obj


def _drop(record: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    out = dict(record)
    if not rest:
        out.pop(head, None)
    elif isinstance(out.get(head), dict):
        out[head] = _drop(out[head], rest)
    return out


@st.composite
def nasty_records(draw: st.DrawFn) -> Any:
    """A record-shaped object with some fields replaced, removed or added, by values of any kind."""
    record: Any = draw(st.sampled_from(BASES))
    for path in draw(st.lists(st.sampled_from(FIELD_PATHS), max_size=2)):
        record = _drop(record, path)
    for path, value in draw(st.lists(st.tuples(st.sampled_from(FIELD_PATHS + LIST_ITEMS + ["", "x", "diary.x"]),
                                               st.one_of(LEAVES, JSON_VALUES)), min_size=1, max_size=4)):
        record = _put(record, path, value)
    return record


RAW_LINES = st.one_of(
    st.integers(1, 3000).map(lambda n: '{"candidate_id": "D", "x": ' + "[" * n + "]" * n + "}"),   # deep nesting
    st.integers(1, 3000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
    st.integers(4000, 20_000).map(lambda n: '{"candidate_id": "B", "diary": {"nights_recorded": ' + "9" * n + "}}"),
    st.text(alphabet=st.sampled_from(CONTROL.replace("\n", "").replace("\r", "")), min_size=1, max_size=8).map(
        lambda c: '{"candidate_id": "C' + c + '", "screening_start": "2023-03-01"}'),       # raw control chars
    st.binary(min_size=1, max_size=40).map(lambda b: b'{"candidate_id": "' + b + b'"}'),      # not UTF-8
    st.just('{"candidate_id": "K", "candidate_id": "K2", "screening_start": "2023-03-01"}'),  # a key twice
    st.just('{"candidate_id": "T", "screening_start": "2023-03-01"'),                        # cut short
    st.text(max_size=30),                                                                    # not JSON
).map(lambda raw: ("raw", raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")))
#: JSON texts no JSON value of Python's makes: nesting deeper than any parser's limit, an integer
#: too long to read, a key twice, numbers that are not finite
RAW_JSON = st.one_of(
    st.integers(500, 5000).map(lambda n: '{"candidate_id": "D", "x": ' + "[" * n + "]" * n + "}"),
    st.integers(500, 5000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
    st.integers(4300, 20_000).map(lambda n: '{"candidate_id": "B", "diary": {"nights_recorded": ' + "9" * n + "}}"),
    st.sampled_from(['{"candidate_id": "K", "candidate_id": "K2", "screening_start": "2023-03-01"}',
                     '{"candidate_id": "N", "diary": {"nights_recorded": 1e999}}',
                     '{"candidate_id": "N", "diary": {"nights_recorded": -Infinity}}',
                     '{"candidate_id": "N", "medications": [{"name": "a", "name": "b"}]}']),
).map(lambda raw: ("rawjson", raw.encode()))
#: One input element: ("json", a JSON value), ("rawjson", JSON text) or ("raw", the bytes of a line
#: that may not be JSON)
ITEMS = st.one_of(nasty_records().map(lambda v: ("json", v)), JSON_VALUES.map(lambda v: ("json", v)), RAW_JSON,
                  RAW_LINES)
INPUTS = st.lists(ITEMS, min_size=1, max_size=12)


def _line(item: tuple[str, Any]) -> bytes:
    """An element as one JSON Lines line (a raw line's line ends replaced, so it stays one line)."""
    kind, value = item
    if kind == "raw":
        return bytes(value).replace(b"\n", b" ").replace(b"\r", b" ")
    if kind == "rawjson":
        return bytes(value)
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _blank(line: bytes) -> bool:
    """Whether a JSON Lines line is blank (white space, a byte-order mark): no record."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not text.strip().lstrip("\ufeff").strip()


def _jsonl(items: list[tuple[str, Any]]) -> tuple[bytes, list[int]]:
    """JSON Lines of ``items``, and the line number of each record (blank lines are not records)."""
    lines = [_line(item) for item in items]
    return b"\n".join(lines) + b"\n", [i + 1 for i, line in enumerate(lines) if not _blank(line)]


# ---------------------------------------------------------------------------------------------
# 1. Any JSON value: exactly one row each, in order, never a traceback


@given(INPUTS, st.sampled_from(SETS), st.sampled_from([None, *SETS]), st.booleans())
def test_any_input_gives_exactly_one_decision_or_error_row_each(items: list[tuple[str, Any]],
                                                                 ruleset: screening.Ruleset,
                                                                 compare_with: screening.Ruleset | None,
                                                                 include_record: bool) -> None:
    data, numbers = _jsonl(items)
    if screening.io.foreign_encoding(data[:4]) is not None:  # NUL bytes first: UTF-16/32 text, the input refused
        with pytest.raises(screening.InputFormatError, match="not UTF-8 text|byte-order mark"):
            screen_bytes(data, "jsonl", ruleset)
        return
    rows, _ = screen_bytes(data, "jsonl", ruleset, compare_with=compare_with, include_record=include_record)
    check_rows(rows, len(numbers), ruleset)
    for row, number in zip(rows, numbers):  # in input order: an error row names its line first
        if row["decision"] == "error":
            assert row["error"].startswith(f"line {number}"), (number, row["error"])
    for out_fmt in ("text", "csv"):  # the other renderings of the same rows (json is jsonl's serialiser)
        screen_bytes(data, "jsonl", ruleset, out_fmt=out_fmt)
    elements = [_line(item) for item in items if item[0] != "raw"]
    if elements:
        array = b"[" + b",\n ".join(elements) + b"]"
        rows, _ = screen_bytes(array, "json", ruleset)
        check_rows(rows, len(elements), ruleset)
        for i, row in enumerate(rows):
            if row["decision"] == "error":
                assert row["error"].startswith(f"index {i}"), (i, row["error"])


CSV_COLUMNS = screening.io.csv_columns(PAPER.record.kinds)
CELLS = st.one_of(NASTY_TEXT, st.text(alphabet=st.sampled_from(CONTROL + ',"\' {}[]:\ufeff'), max_size=12),
                  st.sampled_from(["true", "FALSE", "1.5", "-1", "99999999999999999999", "[]", "[{}]", "null",
                                   '[{"night_of": "2023-03-02"}]', '[{"name": "x", "name": "y"}]']))


@given(st.lists(st.sampled_from(CSV_COLUMNS), min_size=1, max_size=8, unique=True),
       st.lists(st.lists(CELLS, min_size=8, max_size=8), min_size=1, max_size=10))
def test_any_csv_cells_give_exactly_one_row_per_csv_row(columns: list[str], cells: list[list[str]]) -> None:
    columns = ["candidate_id", *[c for c in columns if c != "candidate_id"]]
    table = [[cell.replace("\r", " ").replace("\n", " ") for cell in row[:len(columns)]] for row in cells]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(table)
    data = buf.getvalue().encode("utf-8", "surrogatepass")
    rows, _ = screen_bytes(data, "csv")
    check_rows(rows, sum(1 for row in table if any(cell.strip() for cell in row)))  # a row of blanks: none


@given(st.lists(nasty_records(), min_size=1, max_size=12))
def test_record_shaped_input_keeps_its_position_in_the_batch(records: list[Any]) -> None:
    # every record gets a distinct id first, so that each row can be matched to its record
    tagged = [_put(r, "candidate_id", f"P-{i}") for i, r in enumerate(records)]
    data, _ = _jsonl([("json", r) for r in tagged])
    rows, _ = screen_bytes(data, "jsonl")
    check_rows(rows, len(tagged))
    for i, row in enumerate(rows):
        assert row["candidate_id"] in (f"P-{i}", f"line {i + 1}"), row


# ---------------------------------------------------------------------------------------------
# 2. A valid record's decision: key order, input format and --workers make no difference


#: A seeded random.Random: key orders, column orders, positions (hypothesis' own st.randoms() draws
#: every call from its buffer, which thousands of shuffles overrun).
SEEDED = st.integers(0, 2 ** 32).map(random.Random)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _csv(records: list[dict[str, Any]], rng: random.Random) -> bytes:
    flat = [csv_cells(r) for r in records]
    columns = sorted({c for row in flat for c in row})
    rng.shuffle(columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue().encode()


def _formats(records: list[dict[str, Any]], rng: random.Random) -> dict[str, bytes]:
    """The same records as JSON Lines, a JSON array, JSON objects one after another, and CSV."""
    return {
        "jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(),
        "json": json.dumps(records, ensure_ascii=False, indent=rng.choice([None, 2])).encode(),
        "objects": "".join(json.dumps(r, ensure_ascii=False, indent=2) + "\n" for r in records).encode(),
        "csv": _csv(records, rng),
    }


#: Free text a record may hold in any format: not blank, no line break (a CSV cell holds none outside
#: a list), no surrounding white space (CSV trims its cells, as spreadsheets pad them)
FREE_TEXT = st.text(min_size=1, max_size=20).map(lambda t: t.replace("\r", " ").replace("\n", " ").strip()).filter(
    bool)
TEXT_FIELDS = ("site", "name", "malignant_tumor_site")


def _with_texts(value: Any, texts: Iterator[str], key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _with_texts(v, texts, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_texts(v, texts) for v in value]
    return next(texts) if key in TEXT_FIELDS and isinstance(value, str) else value


@given(st.integers(0, 2 ** 32), st.integers(1, 25), SEEDED, st.lists(FREE_TEXT, min_size=1, max_size=20),
       st.sampled_from(SETS[:2]))  # the sets of the pack with a generator.yaml (nlc-k2)
def test_a_valid_records_decision_ignores_key_order_and_input_format(seed: int, n: int, rng: random.Random,
                                                                      texts: list[str],
                                                                      ruleset: screening.Ruleset) -> None:
    import itertools

    records = [_with_texts(r, itertools.cycle(texts)) for r in _valid_records(seed, n, ruleset)]
    want, _ = screen_bytes(_formats(records, rng)["jsonl"], "jsonl", ruleset)
    assert len(want) == n and all(row["decision"] != "error" for row in want)
    shuffled = [_shuffled(r, rng) for r in records]
    for name, data in _formats(shuffled, rng).items():
        got, _ = screen_bytes(data, None if name == "objects" else name, ruleset)
        assert got == want, name


@settings(max_examples=scaled(0.004), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.large_base_example])
@given(st.integers(0, 2 ** 32), SEEDED, st.lists(ITEMS, min_size=10, max_size=40))
def test_workers_give_the_same_rows_as_one_process(seed: int, rng: random.Random,
                                                   garbage: list[tuple[str, Any]]) -> None:
    # many records in one run (a pool takes a while to start): valid ones in any key order, and
    # garbage lines between them, each a few times over
    lines = [json.dumps(_shuffled(r, rng), ensure_ascii=False).encode() for r in _valid_records(seed, 3000)]
    for item in garbage * 5:
        lines.insert(rng.randrange(len(lines) + 1), _line(item))
    data = b"\n".join(lines) + b"\n"
    one, text = screen_bytes(data, "jsonl")
    check_rows(one, sum(1 for line in lines if not _blank(line)))
    _, pooled = screen_bytes(data, "jsonl", workers=2)
    assert pooled == text


# ---------------------------------------------------------------------------------------------
# 3. No field value in any error message, warning or log line (but candidate_id and site)

MARK = re.compile(r"ZQ[0-9]+QZ|7700[0-9]{6}")


class Marks:
    def __init__(self) -> None:
        self.n = 0

    def text(self) -> str:
        self.n += 1
        return f"ZQ{self.n}QZ"

    def number(self) -> int:
        self.n += 1
        return 7_700_000_000 + self.n


@st.composite
def marked_records(draw: st.DrawFn) -> dict[str, Any]:
    """A generated record whose every text is a unique marker (candidate_id and site, which may be
    shown, are not), with some fields replaced by markers of a type they do not take."""
    marks = Marks()
    record = draw(st.sampled_from(BASES))

    def mark(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: mark(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        if isinstance(value, str) and key in ("name", "malignant_tumor_site", "atc", "rxnorm"):
            return marks.text()
        return value
    record = mark(record)
    record["candidate_id"] = f"CID-{draw(st.integers(0, 10 ** 6))}"
    if "site" in record:
        record["site"] = f"SITE {draw(st.integers(0, 99))}"
    for path in draw(st.lists(st.sampled_from(FIELD_PATHS + LIST_ITEMS + ["unknown_field", "diary.x"]),
                              max_size=4, unique=True)):
        if path in ("candidate_id", "site"):
            continue
        value = draw(st.sampled_from(["text", "number", "list", "object"]))
        marker: Any = {"text": marks.text(), "number": marks.number(), "list": [marks.text()],
                       "object": {"v": marks.text()}}[value]
        record = _put(record, path, marker)
    return record


def _no_marker(text: str, where: str) -> None:
    found = MARK.search(text)
    assert found is None, f"{where} shows a field's value ({found.group()}): {text}"


def _screen_reporting(data: bytes, fmt: str | None) -> list[dict[str, Any]] | str:
    """The rows, or the message of an input that cannot be read at all (a CSV header)."""
    try:
        return screen_bytes(data, fmt)[0]
    except screening.InputFormatError as exc:
        return str(exc)


@given(st.lists(marked_records(), min_size=1, max_size=10), SEEDED)
def test_error_messages_and_warnings_never_show_a_fields_value(records: list[dict[str, Any]],
                                                               rng: random.Random) -> None:
    for name, data in _formats(records, rng).items():
        rows = _screen_reporting(data, None if name == "objects" else name)
        if isinstance(rows, str):  # a column the record does not have: the whole CSV file is refused
            assert name == "csv"
            _no_marker(rows, "csv input error")
            continue
        assert len(rows) == len(records)
        for row in rows:
            _no_marker(row.get("error", ""), f"{name} error")
            _no_marker(" ".join(row.get("error_fields", [])), f"{name} error_fields")
            _no_marker(" ".join(row.get("warnings", [])), f"{name} warning")


def _write_batch(path: Path, items: list[tuple[str, Any]]) -> int:
    data, numbers = _jsonl(items)
    path.write_bytes(data)
    return len(numbers)


@settings(max_examples=scaled(0.002), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                              HealthCheck.large_base_example])
@given(st.lists(st.one_of(ITEMS, marked_records().map(lambda v: ("json", v))), min_size=20, max_size=60),
       st.sampled_from(["text", "csv"]), SEEDED)
def test_the_command_line_gives_a_row_each_no_traceback_and_no_value_in_its_log(
        items: list[tuple[str, Any]], out_fmt: str, rng: random.Random) -> None:
    import tempfile

    batch = items * 20  # a batch big enough to be split between the workers
    rng.shuffle(batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        count = _write_batch(path, batch)
        outputs = []
        for workers in ("1", "2"):
            proc = subprocess.run([*CLI, "screen", str(path), "--format", "jsonl", "--workers", workers],
                                  capture_output=True, timeout=300, cwd=ROOT)
            stderr = proc.stderr.decode("utf-8", "replace")
            assert proc.returncode in (0, 3) and "Traceback" not in stderr, stderr
            _no_marker(stderr, "stderr")
            outputs.append(proc.stdout)
        assert outputs[0] == outputs[1]  # --workers changes nothing
        rows = [json.loads(line) for line in outputs[0].split(b"\n") if line]
        check_rows(rows, count)
        for row in rows:
            _no_marker(row.get("error", ""), "error")
            _no_marker(" ".join(row.get("warnings", [])), "warning")
        other = subprocess.run([*CLI, "screen", str(path), "--format", out_fmt, "--workers", "2"],
                               capture_output=True, timeout=300, cwd=ROOT)
        stderr = other.stderr.decode("utf-8", "replace")
        assert other.returncode == proc.returncode and "Traceback" not in stderr, stderr
        _no_marker(stderr, "stderr")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from screening.log import ScreeningLog
    from screening.service import create_app

    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'log.sqlite3'}"
    with ScreeningLog(url) as log, TestClient(create_app(log=log, tokens={}), base_url="http://localhost") as client:
        yield client


JSON = {"Content-Type": "application/json"}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@settings(max_examples=scaled(0.1))
@given(st.lists(marked_records(), min_size=1, max_size=5))
def test_the_services_log_and_answers_never_show_a_fields_value(service: Any, records: list[dict[str, Any]]) -> None:
    handler = _Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        for record in records:
            answer = service.post("/screen", content=json.dumps(record), headers=JSON)
            assert answer.status_code in (200, 422)
            if answer.status_code == 422:
                _no_marker(answer.text, "POST /screen answer")
        batch = service.post("/screen/batch", content=json.dumps(records), headers=JSON)
        assert batch.status_code == 200 and len(batch.json()) == len(records)
        for row in batch.json():
            _no_marker(row.get("error", ""), "POST /screen/batch error")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    for line in handler.lines:
        _no_marker(line, "service log")
