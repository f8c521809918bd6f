"""Reading candidate records and writing decision rows: JSON, JSON Lines, CSV, text. Streaming.

Readers yield :class:`Item` objects — one per input record, each with its position (``line 17``,
``index 3``, ``record 2``) and its raw JSON text — and never stop a batch for one bad record: a
line, row or element that cannot be read becomes an ``Item`` with an ``error`` and reading goes on
after it. When the rest of an input truly cannot be told apart (a JSON array element that never
ends), :func:`read_records`' :class:`RecordStream` says so in ``unread``. Memory stays flat: JSON
Lines and CSV are read line by line, JSON element by element, each decoded once (linear time).

CSV input: one row per candidate, columns named by the record's field paths (``candidate_id``,
``screening_start``, nested fields written ``object.field``; ``nlc-screen schema`` lists them). An
empty cell is unknown. ``true``/``false`` for booleans, whole numbers for integers. A list field
(a list of objects in the record model) holds JSON text: an array of objects. See docs/csv.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from .errors import CandidateRecordError, FieldProblem, InputFormatError, did_you_mean
from .record import SHOWN_NAME_LIMIT, duplicate_keys, load_keeping_keys, shown_name

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
    """Guess the input format from a file name, else from the first characters.

    A JSON Lines record cannot start with ``[``: a ``.jsonl`` / ``.ndjson`` file whose first
    character (after white space and a byte-order mark) is ``[`` holds a JSON array, read as one.
    """
    stripped = head.lstrip("\ufeff \t\r\n")
    if name:
        low = name.lower()
        for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv")):
            if low.endswith(suffix):
                return "json" if fmt == "jsonl" and stripped.startswith("[") else fmt
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


class RecordStream(Iterator[Item]):
    """The items of one input, in order — and whether all of the input could be read.

    ``unread`` is None while and after a normal read. When a reader has to give up before the end
    of its input (a JSON array element that never ends, more input after the array), it yields one
    error item for where it stopped and sets ``unread`` to a sentence saying where that was and how
    many records were not read (a count, or an estimate from the ``"candidate_id"`` keys and the
    bytes left). Check it after the iteration ends: such an input is readable only in part.
    """

    def __init__(self, items: Iterator[Item] | None = None) -> None:
        self.unread: str | None = None
        self._items: Iterator[Item] = items if items is not None else iter(())

    def __iter__(self) -> Iterator[Item]:
        return self._items  # a for loop runs the reader's own generator, with no call per item here

    def __next__(self) -> Item:
        return next(self._items)


_OTHER_ENCODINGS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                    (b"\xfe\xff", "UTF-16"))


def foreign_encoding(head: bytes) -> str | None:
    """Why the first bytes of an input show it is not UTF-8 text (a UTF-16 or UTF-32 byte-order mark,
    or NUL bytes among the first four, as UTF-16/32 text without one has), or None."""
    for mark, encoding in _OTHER_ENCODINGS:
        if head.startswith(mark):
            return (f"the input is {encoding} text (it starts with a {encoding} byte-order mark); nlc-screen "
                    f"reads UTF-8: save the file as UTF-8 and screen it again")
    if b"\x00" in head[:4]:
        return ("the input is not UTF-8 text (NUL bytes among its first characters: UTF-16 or UTF-32?); nlc-screen "
                "reads UTF-8: save the file as UTF-8 and screen it again")
    return None


def read_records(stream: IO[str] | IO[bytes], fmt: str | None = None, *, name: str | None = None,
                 kinds: Mapping[str, str] | None = None) -> RecordStream:
    """One :class:`Item` per record in a stream (format given, or detected), as a :class:`RecordStream`.

    A binary stream is read as UTF-8. A record that cannot be read is one error item and reading
    goes on with the next: the next line (JSON Lines, CSV — also after a quote that never closes),
    the next element of a JSON array, the next line starting with ``{`` (JSON objects one after
    another). Bytes that are not UTF-8 make the record they are in an error item. Only when the
    rest of the input cannot be told apart does the reader stop; then ``RecordStream.unread`` says
    how much was not read. Empty input (nothing, blank lines, a CSV header alone) yields no item.

    :param kinds: the record's value-holding field paths and their JSON kinds (``Ruleset.record.kinds``),
        which type CSV cells; the default criteria set's record when None.
    :raises InputFormatError: the format is unknown, or (while iterating) the CSV header is unreadable.
    """
    binary = isinstance(stream.read(0), bytes)
    head: Any = b"" if binary else ""
    if binary:
        head = stream.read(_CHUNK)
        problem = foreign_encoding(head)
        if problem:
            raise InputFormatError(problem)
    if fmt is None:
        if not binary:
            head = stream.read(_CHUNK)
        fmt = detect_format(name, head.decode("utf-8", "replace") if binary else head)
    if fmt not in FORMATS:
        raise InputFormatError(f"unknown input format {fmt!r}{did_you_mean(fmt, FORMATS)}; use one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return RecordStream(read_jsonl_lines(_Rewound(head, stream)))
    if binary:
        # Undecodable bytes become lone surrogates, so they can be pinned to the row (CSV) or the
        # array element (JSON) they are in, which becomes an error item; the rest goes on.
        text = io.TextIOWrapper(io.BufferedReader(_RawChain(head, stream)),  # type: ignore[arg-type]
                                encoding="utf-8-sig", errors="surrogateescape")
        source = _Rewound("", text)
    else:
        source = _Rewound(head, stream)
    records = RecordStream()
    records._items = _read_csv(source, kinds or _default_kinds()) if fmt == "csv" else _JsonReader(source, records).items()
    return records


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


def _utf8_len(text: str) -> int:
    """How many bytes ``text`` was in the input (undecodable bytes count as one each)."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


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
        limit = -1 if size is None or size < 0 else size
        if self._head:
            nl = self._head.find("\n" if isinstance(self._head, str) else b"\n")
            take = len(self._head) if nl < 0 else nl + 1
            if limit >= 0:
                take = min(take, limit)
            out, self._head = self._head[:take], self._head[take:]
            if nl >= 0 or self._head or (limit >= 0 and len(out) >= limit):
                return out
            return out + self._stream.readline(-1 if limit < 0 else limit - len(out))
        return self._stream.readline(limit)

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


# ---------------------------------------------------------------------------------------------
# JSON Lines


def read_jsonl_lines(lines: Iterable[str | bytes], first_line: int = 1) -> Iterator[Item]:
    """Items from JSON Lines lines (text, or bytes read as UTF-8), numbered from ``first_line``.

    Blank lines are not records; a line that is not one JSON object, or not UTF-8, is an error item.
    A line end is ``\\n``, ``\\r\\n`` or a lone ``\\r`` (old Mac files): a "line" handed in that
    holds lone ``\\r`` is several lines, and the numbering counts each (so a chunk of a file split
    at ``\\n`` is numbered as the whole file is: ``first_line`` + the line ends before it).
    """
    number = first_line - 1
    for line in lines:
        number += 1
        if ("\r" in line) if isinstance(line, str) else (b"\r" in line):
            parts = _cr_lines(line)
            if len(parts) > 1:  # lone CRs: several lines, numbered one by one
                for part in parts:
                    yield from read_jsonl_lines((part,), number)
                    number += 1
                number -= 1
                continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                yield _unreadable(f"line {number}", "not valid UTF-8")
                continue
        text = line.strip()
        if not text:
            continue
        if not text.startswith("{"):
            if text.startswith("\ufeff"):  # a byte-order mark (the first line of some files)
                text = text[1:].lstrip()
                if not text:
                    continue
                if text.startswith("{"):
                    yield Item(f"line {number}", text)
                    continue
            yield _unreadable(f"line {number}", _not_an_object(text))
            continue
        yield Item(f"line {number}", text)


#: A line longer than this that is not an object is judged by its first character, not decoded.
_JUDGED_WHOLE = 1 << 16


def _not_an_object(text: str) -> str:
    """Why a JSON Lines line that does not start with ``{`` is not a record (a long one is not decoded)."""
    if text.startswith("["):
        return "a JSON array, not a record (one JSON object per line)"
    if len(text) > _JUDGED_WHOLE:
        return "not a JSON object (one JSON object per line)"
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return "not valid JSON"
    return "not a JSON object"


def jsonl_line_count(data: bytes) -> int:
    """How many lines :func:`read_jsonl_lines` numbers in ``data`` (a whole file, or a piece of one
    cut just after a ``\\n``): line ends ``\\n``, ``\\r\\n`` and lone ``\\r``, plus a last line
    without an end. A piece starting at line L is numbered from L; the next one from L + this count."""
    ends = data.count(b"\n")
    if b"\r" in data:
        ends += data.count(b"\r") - data.count(b"\r\n")
    return ends + (0 if not data or data.endswith((b"\n", b"\r")) else 1)


def _cr_lines(line: Any) -> list[Any]:
    """A line split at lone CRs: its end (``\\n``, ``\\r\\n``, or a CR at the very end) removed first."""
    cr, lf = ("\r", "\n") if isinstance(line, str) else (b"\r", b"\n")
    if line.endswith(lf):
        line = line[:-1]
    if line.endswith(cr):
        line = line[:-1]
    return [line] if cr not in line else line.split(cr)


# ---------------------------------------------------------------------------------------------
# JSON: one object, objects one after another, or an array


class _BadNumber(ValueError):
    """A number the reader refuses: not finite (``Infinity``, ``NaN``, ``1e999``)."""


def _reject_constant(name: str) -> Any:
    raise _BadNumber("a number is not a finite JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise _BadNumber("a number is too large (not a finite JSON number)")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
_SPACE = re.compile(r"[ \t\r\n\ufeff]*")
#: Outside strings: the characters that open or close something.
_OUTSIDE = re.compile(r'[\[\]{}"]')
#: ... and in an array element, also the "," that may end it.
_OUTSIDE_ELEMENT = re.compile(r'[\[\]{}",]')
#: ... and in a value that may be JSON Lines, also line breaks.
_OUTSIDE_LINES = re.compile(r'[\[\]{}"\n\r]')
#: A "]" followed by one of these (after white space) does not end an array: it is a stray closer.
_NOT_AFTER_ARRAY = ",:}]"
#: Inside a string: its end, an escape, or a line break (never valid in a JSON string).
_INSIDE = re.compile(r'["\\\n\r]')
#: A bare token (number, literal, garbage) ends at white space or structure.
_TOKEN_END = re.compile(r'[\s,\[\]{}"]')
_KEY = '"candidate_id"'
#: The largest element (characters) kept whole to decode; a larger one is an error item, skipped.
MAX_ELEMENT = 64 << 20
#: After a "," that may end a bad array element, how far the reader looks for a key's ":".
_LOOKAHEAD = 1 << 20


class _Scanner:
    """Finds where one JSON value ends, fed piece by piece, without decoding it.

    String-aware (escapes, quotes), with a stack of open brackets. It recovers as a reader would
    expect: a line break inside a string ends the string (a quote that never closed); a closing
    bracket of the wrong kind closes up to its match; a stray one is ignored. Either marks the
    value ``bad``. Work is linear: compiled regexes jump between the characters that matter.

    Two modes. A *value* (JSON objects one after another) ends where its depth returns to 0 and
    the next record (``{``) or the end of the input follows — anything else after it is still
    part of it (stray closers) — or before a line that starts with ``{`` after a string broken by
    a line break (a line cut short, then the next record) — with ``lines`` (JSON Lines in a .json
    file: the value's first line holds more than its ``{``), after any line break inside it. An array *element*
    (``element=True``) ends at the array's next ``,`` or ``]``: a ``}`` with nothing open is part
    of it, a ``,`` followed by a key (``"name":``) or a stray ``}`` is inside it, and so is a ``]`` with
    nothing open that is followed by ``,``, ``:``, ``}`` or ``]`` (else it ends the array). While such a ``,`` or
    ``]`` is undecided, ``hold`` is its index: the reader keeps the input from there (shifting it
    with :meth:`shift`), and at the end of the input the element ends there.
    """

    def __init__(self, element: bool = False, lines: bool = False) -> None:
        self.stack: list[str] = []
        self.in_string = False
        self.escape = False
        self.token = False
        self.started = False
        self.bad = False
        self.element = element
        self.after_break = False  # value: a string just broke at a line end; does "{" start the next line?
        self.break_cr = False     # ... at a "\r" (a "\n" after it belongs to the same line end)
        self.hold = -1            # the index of a "," or "]" (element), or of the end of depth 0 (value), that may end it
        self.hold_close = False   # ... it is a "]" (the array's end if only white space follows)
        self.lines = lines
        self.key_check = False    # element: the string after that "," is read; is it a key?

    def shift(self, dropped: int) -> None:
        """The reader forgot the first ``dropped`` characters of the text it feeds."""
        if self.hold >= 0:
            self.hold -= dropped

    def feed(self, s: str, i: int) -> int:
        """Scan ``s`` from ``i``: the index just after the value's end (an element: the index of the
        ``,`` or ``]`` after it), or -1 (all of ``s`` is inside it)."""
        n = len(s)
        if not self.started:
            if i >= n:
                return -1
            self.started = True
            c = s[i]
            if c in "[{":
                self.stack.append(c)
            elif c == '"':
                self.in_string = True
            elif not self.element:
                self.token = True
            else:  # an element that starts with anything else: scanned from its first character
                i -= 1
            i += 1
        stack = self.stack
        outside = _OUTSIDE_ELEMENT if self.element else _OUTSIDE_LINES if self.lines else _OUTSIDE
        while True:
            if self.token:
                m = _TOKEN_END.search(s, i)
                return -1 if m is None else m.start()
            if self.after_break:
                if i >= n:
                    return -1
                if self.break_cr and s[i] == "\n":
                    i += 1
                    self.break_cr = False
                    continue
                self.after_break = False
                if s[i] == "{":  # the line was cut short; the next record starts here
                    return i
            if self.hold >= 0 and not self.in_string:
                i = _SPACE.match(s, i).end()  # type: ignore[union-attr]
                if i >= n:
                    return -1
                c = s[i]
                if not self.element:
                    if c == "{":
                        return self.hold  # the next record
                    self.hold, self.bad = -1, True  # more of this one, after a stray closer
                    continue
                if self.hold_close:
                    if c not in _NOT_AFTER_ARRAY:
                        return self.hold  # the array's end (anything else after it is for the reader)
                    self.hold, self.hold_close, self.bad = -1, False, True  # a stray "]" in the element
                    continue
                if self.key_check:
                    self.key_check = False
                    if c != ":":
                        return self.hold
                    self.hold = -1  # a key: the "," was inside this element
                    i += 1
                    continue
                if c == '"':
                    self.key_check = True
                    self.in_string = True
                    i += 1
                    continue
                if c != "}":
                    return self.hold  # "{", "[", "]", ",", a token: the next element (or the end)
                self.hold = -1  # a stray "}": still this element
            if self.in_string:
                if self.escape:
                    if i >= n:
                        return -1
                    i += 1
                    self.escape = False
                m = _INSIDE.search(s, i)
                if m is None:
                    return -1
                c = m.group()
                i = m.end()
                if c == "\\":
                    self.escape = True
                    continue
                if c != '"':  # a line break: this string's quote never closed
                    self.bad = True
                    if not self.element and not self.key_check:
                        self.after_break = True
                        self.break_cr = c == "\r"
                self.in_string = False
                if not stack and not self.element:
                    self.hold = i
                continue
            m = outside.search(s, i)
            if m is None:
                return -1
            c = m.group()
            i = m.end()
            if c == '"':
                self.in_string = True
            elif c in "[{":
                stack.append(c)
            elif c == ",":  # (element mode only) at depth 0, perhaps the end of the element
                if not stack:
                    self.hold = i - 1
            elif c in "\n\r":  # (lines mode only) a line break: is the next line a record?
                self.after_break = True
                self.break_cr = c == "\r"
            elif not stack:  # a closer with nothing open
                self.bad = True
                if not self.element:
                    self.hold = i
                elif c == "]":  # perhaps the array's end
                    self.hold, self.hold_close = i - 1, True
            else:
                want = "[" if c == "]" else "{"
                if stack[-1] == want:
                    stack.pop()
                elif want in stack:
                    self.bad = True
                    while stack.pop() != want:
                        pass
                else:
                    self.bad = True
                    continue
                if not stack and not self.element:
                    self.hold = i


class _Failure:
    """Why an element could not be decoded, and where (an index into the buffer, when known)."""

    def __init__(self, message: str, at: int | None) -> None:
        self.message = message
        self.at = at


class _JsonReader:
    """Reads a JSON input in chunks: one array, or JSON objects one after another.

    Keeps a buffer ``buf`` (from the stream, compacted as it is consumed) and where its first
    character was in the input (``line``, ``col``) for error messages. Each element is decoded
    once by json's C decoder once the buffer holds it (the buffer grows by doubling, so a large
    element costs linear time); one that cannot be decoded is measured with :class:`_Scanner`,
    becomes one error item, and reading goes on after it.
    """

    def __init__(self, stream: Any, out: RecordStream) -> None:
        self.stream = stream
        self.out = out
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # the line of buf[0]
        self.col = 1   # the column of buf[0]
        self.decoder = _DECODER
        self.sizes = 0  # characters of the elements read so far (for estimates)
        self.count = 0
        self.passed_keys = 0
        self.passed_bytes = 0

    # -- the buffer ------------------------------------------------------------------------

    def _drop(self, upto: int) -> None:
        """Forget ``buf[:upto]``, keeping count of lines and columns."""
        if upto <= 0:
            return
        buf = self.buf
        newlines = buf.count("\n", 0, upto)
        if newlines:
            self.line += newlines
            self.col = upto - buf.rfind("\n", 0, upto)
        else:
            self.col += upto
        self.buf = buf[upto:]
        self.pos -= upto

    def _fill(self, want: int) -> None:
        """Make the buffer hold at least ``want`` characters after ``pos`` (unless the input ends)."""
        if self.eof or len(self.buf) - self.pos >= want:
            return
        self._drop(self.pos)
        parts = [self.buf]
        have = len(self.buf)
        while have < want:
            data = self.stream.read(max(_CHUNK, want - have))
            if not data:
                self.eof = True
                break
            parts.append(data)
            have += len(data)
        self.buf = "".join(parts)

    def _skip_space(self) -> bool:
        """Move ``pos`` past white space: True if something follows, False at the end of the input."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return True
            if self.eof:
                return False
            self._fill(_CHUNK)

    def _where(self, i: int) -> str:
        """``line L, column C`` of ``buf[i]`` in the input."""
        buf = self.buf
        nl = buf.rfind("\n", 0, i)
        line = self.line + buf.count("\n", 0, i)
        col = i - nl if nl >= 0 else self.col + i
        return f"line {line}, column {col}"

    def _at(self, failure: _Failure, start: int) -> str:
        """Where a failure is: its own line and column, else those of the element it is in."""
        if failure.at is not None:
            return f"at {self._where(failure.at)}"
        return f"in the element beginning at {self._where(start)}"

    # -- one element --------------------------------------------------------------------------

    def _decode(self) -> tuple[Any, int] | _Failure:
        """Decode the value at ``pos``: (value, end) or why not. The buffer may grow (doubling)."""
        self._fill(_CHUNK // 2)
        while True:
            start = self.pos
            try:
                return self.decoder.raw_decode(self.buf, start)
            except RecursionError:
                return _Failure("nested too deeply to read", None)
            except json.JSONDecodeError as exc:
                held = len(self.buf) - start
                cut_short = exc.pos >= len(self.buf) - 1 or exc.msg.startswith("Unterminated string")
                if cut_short and not self.eof:
                    if held >= MAX_ELEMENT:
                        return _Failure(f"larger than {MAX_ELEMENT >> 20} MiB, or a quote in it never closes", None)
                    self._fill(2 * held)  # perhaps only cut short by the buffer's end: read more, once per doubling
                    continue
                message = exc.msg[:1].lower() + exc.msg[1:]
                return _Failure(f"not valid JSON ({message})", exc.pos)
            except _BadNumber as exc:
                return _Failure(str(exc), None)
            except ValueError:  # int(): more digits than Python converts (4,300 by default)
                return _Failure("a number has too many digits to read", None)

    def _end_of_bad(self, start: int, count_from: int, *, element: bool = False, lines: bool = False) -> bool:
        """Put ``pos`` at the end of the bad value at ``start`` (an array ``element``: at the ``,``
        or ``]`` after it, see :class:`_Scanner`): False if the input ends inside it.

        Then ``passed_keys`` is the number of ``"candidate_id"`` keys after ``count_from`` and
        ``passed_bytes`` the bytes from ``start`` to the end. Keeps nothing of what it passes but
        the text after a ``,`` that may end an element (up to :data:`_LOOKAHEAD` characters).
        """
        scanner = _Scanner(element, lines)
        self.passed_keys = self.passed_bytes = 0
        i = start
        while True:
            end = scanner.feed(self.buf, i)
            if end >= 0:
                self.pos = end
                return True
            keep = scanner.hold if scanner.hold >= 0 else len(self.buf)
            if len(self.buf) - keep > _LOOKAHEAD:  # a very long string after the ",": not a key
                self.pos = keep
                return True
            self.passed_keys += self.buf.count(_KEY, min(count_from, keep), keep)
            self.passed_bytes += _utf8_len(self.buf[min(start, keep):keep])
            i = len(self.buf) - keep
            self._drop(keep)
            scanner.shift(keep)
            start = count_from = 0
            data = self.stream.read(_CHUNK)
            if not data:
                self.eof = True
                if scanner.hold >= 0:  # the input ends after a "," that ends the element
                    self.pos = scanner.hold
                    return True
                return False
            self.buf += data

    def _item(self, position: str, value: Any, start: int, end: int, problem: str | None = None) -> Item:
        if problem is not None:
            return _unreadable(position, problem)
        if not isinstance(value, dict):
            return _unreadable(position, "not a JSON object")
        text = self.buf[start:end]
        if _bad_utf8(text):
            return _unreadable(position, "not valid UTF-8")
        self.sizes += end - start
        self.count += 1
        return Item(position, text)

    def _estimate(self, keys: int, size: int, *, including_bad: bool = False) -> str:
        """How many records ``size`` bytes probably held: their ``"candidate_id"`` keys, else by the
        mean size of the records read so far (less the bad element itself, if it is included)."""
        if keys:
            count = keys
        elif self.count:
            count = max(0, round(size / (self.sizes / self.count)) - (1 if including_bad else 0))
        else:
            return f"an unknown number of records ({size:,} bytes)"
        return f"about {count:,} more record{'s' if count != 1 else ''} ({size:,} bytes)"

    # -- the input ------------------------------------------------------------------------------

    def items(self) -> Iterator[Item]:
        if not self._skip_space():
            return
        if self.buf[self.pos] == "[":
            self.pos += 1
            yield from self._array()
        else:
            yield from self._objects()

    def _objects(self) -> Iterator[Item]:
        """JSON objects one after another (one, JSON Lines in a .json file, or pretty-printed ones).

        A bad one is one error item; reading resumes after it, where :class:`_Scanner` finds its
        end (its depth back to 0, or a line cut short inside a string before a line starting with
        ``{``). When the input ends inside it, ``unread`` says how much was not read.
        """
        number = 0
        while self._skip_space():
            number += 1
            position = f"record {number}"
            result = self._decode()
            start = self.pos
            if not isinstance(result, _Failure):
                value, end = result
                yield self._item(position, value, start, end)
                self.pos = end
                continue
            at = self._at(result, start)
            begins = self._where(start)
            # JSON Lines saved as .json: the record's first line holds a key and its value, where a
            # pretty-printer breaks the line after the "{"; so a line break may end a record cut short.
            end_of_line = self.buf.find("\n", start, start + _CHUNK)
            lines = self.buf[start] == "{" and self.buf.find('":', start, end_of_line if end_of_line >= 0
                                                             else start + _CHUNK) >= 0
            if not self._end_of_bad(start, (result.at if result.at is not None else start) + 1, lines=lines):
                yield _unreadable(position, f"{result.message} {at}; the input ends inside this record, "
                                            "so the rest of the input cannot be read")
                self.out.unread = (
                    f"the input ends inside {position} (it begins at {begins}): a quote or bracket in it never "
                    f"closes, or the input was cut short; the rest of the input after {position} could not be "
                    f"read: {self._estimate(self.passed_keys, self.passed_bytes, including_bad=True)}")
                return
            yield _unreadable(position, f"{result.message} {at}")

    def _array(self) -> Iterator[Item]:
        """The elements of a JSON array (``[`` already read): one item each, ``index 0``…

        A bad element runs to the array's next ``,`` or ``]`` (see :class:`_Scanner`), so stray
        brackets in it cost no extra rows; an empty slot (``,,``) is no element.
        """
        index = 0
        comma_needed = False
        while True:
            if not self._skip_space():
                if index:
                    self.out.unread = (f"the JSON array is not closed: the input ends after index {index - 1}; "
                                       "it may have been cut short")
                else:
                    self.out.unread = "the JSON array is not closed: the input ends after its '['"
                return
            ch = self.buf[self.pos]
            if ch == "]":
                self.pos += 1
                self._after_array()
                return
            if ch == ",":  # the comma after an element, or an empty slot (",,", "[,"): no record
                self.pos += 1
                comma_needed = False
                continue
            missing = self._where(self.pos) if comma_needed else None
            position = f"index {index}"
            result = self._decode()
            start = self.pos
            if not isinstance(result, _Failure):
                value, end = result
                problem = f"not valid JSON (a ',' is missing before this element, at {missing})" if missing else None
                item = self._item(position, value, start, end, problem)
                self.pos = end
                follows = self.buf[self.pos] if self._skip_space() else ""
                if follows == "]":  # the array's end, unless a stray "]" (more follows it)
                    self.pos += 1
                    if not (self._skip_space() and self.buf[self.pos] in _NOT_AFTER_ARRAY):
                        yield item
                        self._after_array()
                        return
                if follows == ",":  # (the usual case: take the comma here)
                    self.pos += 1
                    yield item
                    index += 1
                    comma_needed = False
                    continue
                if follows in ("", "{"):
                    yield item
                else:
                    # Neither a separator nor a next record follows: the element is bad up to the
                    # array's next "," or "]".
                    result = _Failure("not valid JSON (something other than ',' or ']' follows the element)",
                                      self.pos)
                    start = self.pos
            if isinstance(result, _Failure):
                error_at = result.at if result.at is not None else start
                at = self._at(result, start)
                begins = self._where(start)
                if not self._end_of_bad(start, error_at + 1, element=True):  # nothing after it can be told apart
                    yield _unreadable(position, f"{result.message} {at}; the input ends inside this element, "
                                                    "so the rest of the input cannot be read")
                    self.out.unread = (
                        f"the input ends inside index {index} (it begins at {begins}): a quote or bracket in it "
                        f"never closes, or the input was cut short; the rest of the input after index {index} "
                        f"could not be read: "
                        f"{self._estimate(self.passed_keys, self.passed_bytes, including_bad=True)}")
                    return
                yield _unreadable(position, f"{result.message} {at}")
            index += 1
            comma_needed = True

    def _after_array(self) -> None:
        """After the array's ``]``: only white space may follow; anything else is not read."""
        if not self._skip_space():
            return
        where = self._where(self.pos)
        self._drop(self.pos)
        keys = self.buf.count(_KEY)
        size = _utf8_len(self.buf)
        while not self.eof:
            data = self.stream.read(_CHUNK)
            if not data:
                break
            keys += data.count(_KEY)
            size += _utf8_len(data)
        self.out.unread = (f"more input after the end of the JSON array at {where} could not be read as records "
                           f"(use one array, or JSON Lines): {self._estimate(keys, size)}")


# ---------------------------------------------------------------------------------------------
# CSV

#: A CSV row (its quoted cells may hold line breaks) may run over at most this many physical lines
#: and characters; past that its quote is taken as never closed: one error row, and reading goes
#: on at the next physical line.
CSV_ROW_LINES = 200
CSV_ROW_CHARS = 1 << 20


def _default_kinds() -> Mapping[str, str]:
    """The value-holding field paths of the default criteria set's record, and their kinds."""
    from .protocol import load_ruleset
    return load_ruleset().record.kinds


def csv_columns(kinds: Mapping[str, str] | None = None) -> list[str]:
    """The CSV input columns: every record field path that holds a value (not a nested object)."""
    return list(kinds or _default_kinds())


class _RowBroken(Exception):
    """The row being read cannot be: a quote that never closes, or a row over the bounds."""


class _PhysicalLines:
    """The physical lines of a CSV input, handed to ``csv.reader`` one at a time.

    Remembers the lines of the row being read, so that a row found broken costs an error row for
    its first line and reading restarts on its second (:meth:`restart`). Memory stays bounded by
    :data:`CSV_ROW_LINES` / :data:`CSV_ROW_CHARS`.
    """

    def __init__(self, source: _Rewound) -> None:
        self.source = source
        self.again: deque[tuple[int, str | None]] = deque()  # lines to read again after a broken row
        self.row: list[tuple[int, str | None]] = []  # the lines of the row being read (None: too long)
        self.row_chars = 0
        self.number = 0  # the number of the last line read from the source

    def __iter__(self) -> _PhysicalLines:
        return self

    def __next__(self) -> str:
        if self.row and (len(self.row) >= CSV_ROW_LINES or self.row_chars > CSV_ROW_CHARS):
            raise _RowBroken(f"a quoted cell runs over more than {CSV_ROW_LINES} lines or "
                             f"{CSV_ROW_CHARS:,} characters: its quote is probably never closed")
        if self.again:
            number, again = self.again.popleft()
            if again is None:  # a line over the bound, already skipped
                raise self._too_long(number)
            line = again
        else:
            line = self.source.readline(CSV_ROW_CHARS + 1)
            if not line:
                if self.row:
                    raise _RowBroken("a quoted cell is not closed before the input ends")
                raise StopIteration
            self.number += 1
            number = self.number
            if len(line) > CSV_ROW_CHARS and not line.endswith("\n"):
                while True:  # skip the rest of this line without holding it
                    more = self.source.readline(CSV_ROW_CHARS)
                    if not more or more.endswith("\n"):
                        break
                raise self._too_long(number)
        self.row.append((number, line))
        self.row_chars += len(line)
        return line

    def _too_long(self, number: int) -> _RowBroken:
        within = bool(self.row)
        self.row.append((number, None))
        if within:
            return _RowBroken(f"a quoted cell runs into a line longer than {CSV_ROW_CHARS:,} characters: "
                              "its quote is probably never closed")
        return _RowBroken(f"the line is longer than {CSV_ROW_CHARS:,} characters")

    def start_row(self) -> None:
        self.row = []
        self.row_chars = 0

    def first(self) -> int:
        """The number of the current row's first line (the next one, if none is read yet)."""
        if self.row:
            return self.row[0][0]
        return self.again[0][0] if self.again else self.number + 1

    def restart(self) -> None:
        """Read the current row's lines again from its second one."""
        self.again.extendleft(reversed(self.row[1:]))
        self.start_row()


def _showable(name: str) -> bool:
    """Whether a column name may be shown in a message: a field path whose every part the record's
    own rule would show uncut (see :func:`screening.record.shown_name`). Anything else may be a
    record value (the first row of a file without a header) and is not shown."""
    return len(name) <= SHOWN_NAME_LIMIT and all(shown_name(part) == part for part in name.split("."))


def _column_name(name: str) -> str:
    """A column name for a message: quoted if it looks like a field path, else not shown."""
    return repr(name) if _showable(name) else "a column whose name is not shown"


def _check_header(header: list[str], kinds: Mapping[str, str]) -> None:
    """Refuse a CSV header with an unnamed, repeated or unknown column, never echoing a cell that
    may be a record value (the first row of a file without a header)."""
    known = set(kinds)
    unknown = [h for h in header if h and h not in known]
    if len(unknown) * 2 > len(header):
        expected = ", ".join(list(kinds)[:4])
        raise InputFormatError(f"CSV header: {len(unknown)} of the {len(header)} cells of the first line are not "
                               f"known columns: the file seems to have no header row (its first line must name "
                               f"the columns, e.g. {expected}, …; see docs/csv.md)")
    if "" in header:
        raise InputFormatError(f"CSV header: column {header.index('') + 1} has no name")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise InputFormatError(f"CSV header: {', '.join(map(_column_name, repeated))} appear(s) more than once")
    if unknown:
        raise InputFormatError("CSV header: " + "; ".join(
            f"unknown column {_column_name(h)}{did_you_mean(h, known) if _showable(h) else ''}"
            for h in unknown))


def _read_csv(stream: _Rewound, kinds: Mapping[str, str]) -> Iterator[Item]:
    lines = _PhysicalLines(stream)
    reader = csv.reader(lines)
    while True:  # the header: the first line that is not blank
        lines.start_row()
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, _RowBroken) as exc:
            raise InputFormatError(f"CSV header cannot be read: {exc}") from None
        if any(h.strip() for h in header):
            break
    header = [h.strip().lstrip("\ufeff") for h in header]
    _check_header(header, kinds)
    while True:
        lines.start_row()
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, _RowBroken) as exc:
            message = str(exc) if isinstance(exc, _RowBroken) else f"not valid CSV: {exc}"
            yield _unreadable(f"line {lines.first()}", message)
            lines.restart()
            reader = csv.reader(lines)
            continue
        position = f"line {lines.first()}"
        span = (lines.first(), lines.row[-1][0]) if len(lines.row) > 1 else None
        if not any(cell.strip() for cell in row):
            continue
        if span is not None and len(row) != len(header):
            # A row over several lines whose cells do not fit the header: most likely a quote that
            # closes only on a later line (another row's). One error row for its first line; the
            # lines after it are read again, so the rows in between are not lost.
            yield _unreadable(position, f"a quoted cell runs over lines {span[0]}–{span[1]} and the row then has "
                                        f"{len(row)} cells; the header has {len(header)}: is a quote not closed?")
            lines.restart()
            reader = csv.reader(lines)
            continue
        # The quotes close and the cells fit the header: one record, one row (a decision or an error).
        yield _csv_item(position, header, row, kinds, span)


def _csv_item(position: str, header: list[str], row: list[str], kinds: Mapping[str, str],
              span: tuple[int, int] | None = None) -> Item:
    """The item for one CSV row: its record as JSON text, or an error naming the columns.

    ``span`` is the first and last physical line of a row whose quoted cells hold line breaks. A
    line break is allowed only in a JSON list cell; in any other cell it makes the row one error
    row naming the span: it may be a quote closed lines later, with other rows' lines inside it.
    """
    if len(row) != len(header):
        return _unreadable(position, f"has {len(row)} cells; the header has {len(header)}")
    record: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for column, cell in zip(header, row):
        cell = cell.strip()
        if cell == "":
            continue
        if _bad_utf8(cell):
            problems.append(FieldProblem(column, "not valid UTF-8"))
            continue
        if span is not None and kinds[column] != "list" and ("\n" in cell or "\r" in cell):
            problems.append(FieldProblem(column, f"a quoted cell spans lines {span[0]}–{span[1]}: a line break is "
                                                 "allowed only in a JSON list cell (if a quote is not closed, "
                                                 "the rows on those lines are in this one)"))
            continue
        try:
            value = _csv_value(column, cell, kinds)
        except ValueError as exc:
            problems.append(FieldProblem(column, str(exc)))
            continue
        if kinds[column] == "list":  # a key twice in one object of a JSON cell is an error, as in JSON input
            repeated = duplicate_keys(load_keeping_keys(cell), tuple(column.split(".")))
            if repeated:
                problems.extend(repeated)
                continue
        target = record
        parts = column.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    if problems:
        cid = record.get("candidate_id") if isinstance(record.get("candidate_id"), str) else None
        site = record.get("site") if isinstance(record.get("site"), str) else None
        return Item(position, error=CandidateRecordError(problems, position=position, candidate_id=cid, site=site))
    return Item(position, json.dumps(record, ensure_ascii=False))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_NUMBER = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?", re.ASCII)


def _csv_value(column: str, cell: str, kinds: Mapping[str, str]) -> Any:
    kind = kinds[column]
    if kind == "bool":
        low = cell.lower()
        if low in ("true", "false"):
            return low == "true"
        raise ValueError("must be true or false")
    if kind == "int":
        digits = cell[1:] if cell[:1] == "-" else cell
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(cell)
        raise ValueError("must be a whole number")
    if kind == "number":
        if _NUMBER.fullmatch(cell):
            value = float(cell)
            if math.isfinite(value):
                return value
        raise ValueError("must be a finite number")
    if kind == "list":
        try:
            value = json.loads(cell, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise ValueError("must be a JSON array of objects") from None
        if not isinstance(value, list):
            raise ValueError("must be a JSON array of objects")
        return value
    return cell

