"""Reading candidate records and writing decision rows: JSON, JSON Lines, CSV, text. Streaming.

Readers yield :class:`Item` objects — one per input record, each with its position (``line 17``,
``index 3``) and its raw JSON text — and never stop a batch for one bad record: a line that is not
JSON becomes an ``Item`` with an ``error``. Memory stays flat: JSON Lines and CSV are read line by
line, a JSON array element by element.

CSV input: one row per candidate, columns named by record field paths (``candidate_id``,
``screening_start``, ``diary.nights_recorded``, ``conditions.hypothyroidism``,
``nlc_assessment.differentials.restless_legs`` …). An empty cell is unknown. ``true``/``false`` for
booleans, whole numbers for integers. The list fields ``diary.episodes`` and ``medications`` hold
JSON text (an array of objects). See docs/csv.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .errors import CandidateRecordError, FieldProblem, InputFormatError, did_you_mean
from .record import field_kinds

FORMATS = ("json", "jsonl", "csv")
_CHUNK = 1 << 16


@dataclass
class Item:
    """One input record: where it was, and its JSON text (or why it could not be read)."""

    position: str
    text: str | None = None
    error: CandidateRecordError | None = None


def _unreadable(position: str, message: str, *, where: str | None = None) -> Item:
    """An input item that could not be read as a record: it becomes that position's error row."""
    return Item(position, error=CandidateRecordError([FieldProblem("", message)], position=where or position))


def detect_format(name: str | None, head: str) -> str:
    """Guess the input format from a file name, else from the first characters."""
    if name:
        low = name.lower()
        for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv")):
            if low.endswith(suffix):
                return fmt
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        if "\n" not in stripped:  # one line, perhaps longer than the head: JSON Lines either way
            return "jsonl"
        try:  # a complete first line that parses is JSON Lines; a pretty-printed object is not
            json.loads(stripped.split("\n", 1)[0])
            return "jsonl"
        except (ValueError, RecursionError):
            return "json"
    return "csv"


def read_records(stream: IO[str] | IO[bytes], fmt: str | None = None, *, name: str | None = None) -> Iterator[Item]:
    """Yield one :class:`Item` per record in a stream (format given, or detected).

    A binary stream is read as UTF-8: in JSON Lines a line that is not valid UTF-8 is one error
    item and the rest go on; in CSV or a JSON array, where the structure cannot be resynchronised,
    the first undecodable byte ends the input with one error item.

    :raises InputFormatError: the format is unknown or the whole input is unreadable.
    """
    binary = isinstance(stream.read(0), bytes)
    head: Any = b"" if binary else ""
    if fmt is None:
        head = stream.read(_CHUNK)
        fmt = detect_format(name, head.decode("utf-8", "replace") if binary else head)
    if fmt not in FORMATS:
        raise InputFormatError(f"unknown input format {fmt!r}{did_you_mean(fmt, FORMATS)}; use one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return read_jsonl_lines(_Rewound(head, stream))
    if binary:
        # Undecodable bytes become lone surrogates, so they can be pinned to the row (CSV) or the
        # array element (JSON) they are in, which becomes an error item; the rest goes on.
        text = io.TextIOWrapper(io.BufferedReader(_RawChain(head, stream)),  # type: ignore[arg-type]
                                encoding="utf-8-sig", errors="surrogateescape")
        source = _Rewound("", text)
    else:
        source = _Rewound(head, stream)
    return _read_csv(source) if fmt == "csv" else _read_json(source)


class _RawChain(io.RawIOBase):
    """Bytes already read, then the rest of a binary stream (for io.TextIOWrapper)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = self._stream.read(size)
        buffer[:len(data)] = data
        return len(data)


_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _bad_utf8(text: str) -> bool:
    """Whether text decoded with ``surrogateescape`` held bytes that are not UTF-8."""
    return _BAD_BYTE.search(text) is not None


class _Rewound(io.TextIOBase):
    """A stream with what was already read put back in front (text, or bytes for JSON Lines)."""

    def __init__(self, head: Any, stream: Any) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int | None = -1) -> Any:
        if self._head:
            if size is None or size < 0:
                out, self._head = self._head + self._stream.read(), self._head[:0]
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._stream.read(-1 if size is None else size)

    def readline(self, size: int | None = -1) -> Any:
        if self._head:
            nl = self._head.find("\n" if isinstance(self._head, str) else b"\n")
            if nl >= 0:
                out, self._head = self._head[:nl + 1], self._head[nl + 1:]
                return out
            out, self._head = self._head, self._head[:0]
            return out + self._stream.readline()
        return self._stream.readline()

    def __iter__(self) -> Iterator[Any]:
        head, self._head = self._head, self._head[:0]
        if head:
            nl = "\n" if isinstance(head, str) else b"\n"
            lines = head.split(nl)
            for line in lines[:-1]:
                yield line + nl
            tail = lines[-1]
            if tail:  # the head ended inside a line: finish it from the stream
                yield tail + self._stream.readline()
        yield from self._stream  # the rest at the stream's own (C) speed


def read_jsonl_lines(lines: Iterable[str | bytes], first_line: int = 1) -> Iterator[Item]:
    """Items from JSON Lines lines (text, or bytes read as UTF-8), numbered from ``first_line``.

    Blank lines are not records; a line that is not one JSON object, or not UTF-8, is an error item.
    """
    for number, line in enumerate(lines, start=first_line):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                yield _unreadable(f"line {number}", "not valid UTF-8")
                continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("\ufeff"):
            text = text[1:]
        if not text.startswith("{"):
            try:
                value = json.loads(text)
                what = ("a JSON array, not a record (one JSON object per line)" if isinstance(value, list)
                        else "not a JSON object")
            except (ValueError, RecursionError):
                what = "not valid JSON"
            yield _unreadable(f"line {number}", what)
            continue
        yield Item(f"line {number}", text)


def _read_json(stream: _Rewound) -> Iterator[Item]:
    decoder = json.JSONDecoder()
    buf = stream.read(_CHUNK)
    pos = 0
    while pos < len(buf) and buf[pos] in "\ufeff \t\r\n":
        pos += 1
    if pos >= len(buf):
        return
    if buf[pos] == "{":  # one object, or several one after another (e.g. JSON Lines in a .json file)
        yield from _read_objects(buf + stream.read(), pos, decoder)
        return
    if buf[pos] != "[":
        yield _unreadable("index 0", "input is neither a JSON object nor a JSON array", where="start of input")
        return
    pos += 1
    index = 0
    expect_comma = False
    while True:
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                break
            more = stream.read(_CHUNK)
            if not more:
                yield _unreadable(f"index {index}", "the JSON array is not closed (input ends early)")
                return
            buf, pos = buf[pos:] + more, 0
        ch = buf[pos]
        if ch == "]":
            rest = buf[pos + 1:].strip()
            while not rest:
                more = stream.read(_CHUNK)
                if not more:
                    return
                rest = more.strip()
            yield _unreadable(f"index {index}", "more input after the end of the JSON array; it cannot be read as "
                              "records (use one array, or JSON Lines)", where=f"after index {index - 1}")
            return
        if expect_comma:
            if ch != ",":
                yield _unreadable(f"index {index}", "not valid JSON (expected ',' between array elements); "
                                                    "the rest of the input cannot be read")
                return
            pos += 1
            expect_comma = False
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except RecursionError:
                yield _unreadable(f"index {index}", "nested too deeply to read; the rest of the input cannot be read")
                return
            except json.JSONDecodeError:
                more = stream.read(_CHUNK)
                if not more:
                    yield _unreadable(f"index {index}", "not valid JSON; the rest of the input cannot be read")
                    return
                buf, pos = buf[pos:] + more, 0
        if isinstance(value, dict) and _bad_utf8(buf[pos:end]):
            yield _unreadable(f"index {index}", "not valid UTF-8")
        elif isinstance(value, dict):
            yield Item(f"index {index}", buf[pos:end])
        else:
            yield _unreadable(f"index {index}", "not a JSON object")
        index += 1
        pos = end
        expect_comma = True
        if pos > _CHUNK:
            buf, pos = buf[pos:], 0


def _read_objects(text: str, pos: int, decoder: json.JSONDecoder) -> Iterator[Item]:
    """JSON objects one after another (whitespace between): one item each, ``record 1``, ``record 2``…"""
    number = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return
        number += 1
        position = f"record {number}"
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            yield _unreadable(position, "not valid JSON; the rest of the input cannot be read")
            return
        if isinstance(value, dict):
            yield Item(position, text[pos:end])
        else:
            yield _unreadable(position, "not a JSON object")
        pos = end


# ---------------------------------------------------------------------------------------------
# CSV

_KINDS = field_kinds()


def csv_columns() -> list[str]:
    """The CSV input columns: every record field path that holds a value (not a nested object)."""
    return list(_KINDS)


def _read_csv(stream: _Rewound) -> Iterator[Item]:
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputFormatError(f"CSV header cannot be read: {exc}") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    if "" in header:
        raise InputFormatError(f"CSV header: column {header.index('') + 1} has no name")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise InputFormatError(f"CSV header: {', '.join(map(repr, repeated))} appear(s) more than once")
    known = set(csv_columns())
    unknown = [h for h in header if h and h not in known]
    if unknown:
        raise InputFormatError("CSV header: " + "; ".join(
            f"unknown column {h!r}{did_you_mean(h, known)}" for h in unknown))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield _unreadable(f"line {line}", f"not valid CSV: {exc}")
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        position = f"line {line}"
        if len(row) != len(header):
            yield _unreadable(position, f"has {len(row)} cells; the header has {len(header)}")
            continue
        record: dict[str, Any] = {}
        problems: list[FieldProblem] = []
        for column, cell in zip(header, row):
            cell = cell.strip()
            if cell == "":
                continue
            if _bad_utf8(cell):
                problems.append(FieldProblem(column, "not valid UTF-8"))
                continue
            try:
                value = _csv_value(column, cell)
            except ValueError as exc:
                problems.append(FieldProblem(column, str(exc)))
                continue
            target = record
            parts = column.split(".")
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        if problems:
            cid = record.get("candidate_id") if isinstance(record.get("candidate_id"), str) else None
            site = record.get("site") if isinstance(record.get("site"), str) else None
            yield Item(position, error=CandidateRecordError(problems, position=position, candidate_id=cid, site=site))
            continue
        yield Item(position, json.dumps(record, ensure_ascii=False))


def _csv_value(column: str, cell: str) -> Any:
    kind = _KINDS[column]
    if kind == "bool":
        low = cell.lower()
        if low in ("true", "false"):
            return low == "true"
        raise ValueError("must be true or false")
    if kind == "int":
        if cell.isascii() and cell.isdigit():
            return int(cell)
        raise ValueError("must be a whole number")
    if kind == "list":
        try:
            value = json.loads(cell)
        except (ValueError, RecursionError):
            raise ValueError("must be a JSON array of objects") from None
        if not isinstance(value, list):
            raise ValueError("must be a JSON array of objects")
        return value
    return cell

