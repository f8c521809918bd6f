"""A garbage corpus for the input readers: broken inputs whose every record must still give one row.

:func:`garbage_corpus` returns ``(name, data, items)`` triples: a file name (its suffix selects the
format, as ``nlc-screen screen NAME`` would), the file's bytes, and how many items
:func:`screening.io.read_records` yields for it — exactly one per record in the input, good or
bad, and nothing else. For every entry the reader reads the whole input (``unread`` stays None), so
screening one of these files must give exactly ``items`` rows (1 or N workers, any output format)
and no traceback. Empty inputs are included (0 items).

:func:`unreadable_corpus` lists inputs whose rest truly cannot be read (``unread`` is set): each
entry also gives a piece of the expected ``unread`` sentence.

The records are small valid candidates (``G-<case>-<n>``); the broken ones sit early, so a reader
that stops at the first bad element loses most of the file.
"""

from __future__ import annotations

import json
from typing import Any

from .conftest import base_record


def _records(case: str, n: int) -> list[dict[str, Any]]:
    return [base_record(candidate_id=f"G-{case}-{i}") for i in range(n)]


def _lines(records: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) for r in records]


def _array(elements: list[str], *, pretty: bool = False) -> bytes:
    sep = ",\n  " if pretty else ", "
    start, end = ("[\n  ", "\n]\n") if pretty else ("[", "]")
    return (start + sep.join(elements) + end).encode()


def _csv(case: str, n: int, bad: dict[int, str]) -> bytes:
    header = "candidate_id,site,screening_start,birth_date,sex,consent"
    rows = [header] + [bad.get(i, f"G-{case}-{i},site A,2023-03-01,1950-06-15,female,signed") for i in range(n)]
    return ("\n".join(rows) + "\n").encode()


def garbage_corpus() -> list[tuple[str, bytes, int]]:
    """``(file name, bytes, expected item count)`` for broken inputs that are nonetheless read whole."""
    out: list[tuple[str, bytes, int]] = []

    # JSON Lines saved as .json, one line broken (a bad token) and one line cut short.
    lines = _lines(_records("dotjson", 60))
    lines[4] = '{"candidate_id": "G-dotjson-4", "site": tru}'
    lines[9] = '{"candidate_id": "G-dotjson-9", "site": "a'
    out.append(("jsonl-saved-as.json", ("\n".join(lines) + "\n").encode(), 60))

    # A JSON array with one bad element of each kind; every other element is a good record.
    cases = {
        "bad-token": '{"candidate_id": "X", "site": nul}',
        "nul": '{"candidate_id": "X\x00", "site": "a"}',
        "over-deep": '{"candidate_id": "X", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "big-int": '{"candidate_id": "X", "diary": {"nights_recorded": ' + "9" * 5000 + "}}",
        "infinity": '{"candidate_id": "X", "diary": {"episodes": [{"duration_min": Infinity}]}}',
        "nan": '{"candidate_id": "X", "diary": {"episodes": [{"duration_min": NaN}]}}',
        "huge-float": '{"candidate_id": "X", "diary": {"episodes": [{"duration_min": 1e999}]}}',
        "trailing-comma": '{"candidate_id": "X", "site": "a",}',
        "mismatched": '{"candidate_id": "X", "medications": [{"name": "a"}}',
        "stray-closer": '{"candidate_id": "X", "site": "a"]}',
        "not-an-object": "42",
        "bad-literal": "nonsense",
    }
    for case, element in cases.items():
        elements = _lines(_records(case, 40))
        elements[3] = element
        out.append((f"array-{case}.json", _array(elements), 40))
    # Pretty-printed: a string whose quote never closes ends at its line; the array goes on.
    records = _records("pretty", 30)
    text = json.dumps(records, indent=2).replace('"G-pretty-2"', '"G-pretty-2', 1)
    out.append(("array-unclosed-string-pretty.json", text.encode(), 30))
    # A missing comma between elements: the element after it is the error item.
    elements = _lines(_records("comma", 30))
    out.append(("array-missing-comma.json",
                ("[" + ", ".join(elements[:5]) + " " + ", ".join(elements[5:]) + "]").encode(), 30))
    # Bytes that are not UTF-8 inside one element.
    elements = _lines(_records("utf8", 30))
    raw = _array(elements).replace(b'"G-utf8-6"', b'"G-utf8-\xff6"', 1)
    out.append(("array-bad-utf8.json", raw, 30))

    # CSV: a quote that never closes, one that closes on a later line, and bytes that are not UTF-8.
    out.append(("csv-unclosed-quote.csv", _csv("q", 1000, {4: 'G-q-4,"site A,2023-03-01,1950-06-15,female,signed'}), 1000))
    # (The second quote closes the first one's cell two lines later, and the cells then do not fit
    # the header: the lines are read again one by one. Had they fitted, it would be one row with a
    # multi-line cell: one error row naming its line span; see docs/csv.md.)
    out.append(("csv-two-bad-quotes.csv", _csv("q2", 50, {
        3: 'G-q2-3,"site A,2023-03-01,1950-06-15,female,signed',
        5: 'G-q2-5,site A",2023-03-01'}), 50))
    out.append(("csv-quote-at-end.csv", _csv("q3", 20, {19: 'G-q3-19,"site A,2023-03-01,1950-06-15,female,signed'}), 20))
    out.append(("csv-bad-utf8.csv", _csv("u", 20, {}).replace(b"G-u-7,", b"G-u-7\xfe,", 1), 20))

    # Review round 2. A CSV row whose quotes close and whose cells fit the header is one record,
    # even over several lines: a line break in a plain cell (one error row naming the span), and
    # record-like lines inside a JSON list cell (one error row, nothing forged).
    header = "candidate_id,site,screening_start,birth_date,sex,consent,medications"
    rows = [f"G-ml-{i},site A,2023-03-01,1950-06-15,female,signed," for i in range(30)]
    rows[3] = 'G-ml-3,"Third Hospital\nChengdu",2023-03-01,1950-06-15,female,signed,'
    rows[6] = 'G-ml-6,site A,2023-03-01,1950-06-15,female,signed,"[\nFORGED,S,2023-03-01,1950-06-15,female,signed,\n]"'
    rows[9] = 'G-ml-9,site A,2023-03-01,1950-06-15,female,signed,"[\n{""name"": ""a""}\n]"'
    out.append(("csv-multi-line-cells.csv", ("\n".join([header] + rows) + "\n").encode(), 30))
    # JSON objects one after another, pretty-printed with indent=0 (nested objects start lines with
    # "{" too), one with a bad token; and JSON Lines in a .json file with a line cut after a ":".
    objects = [json.dumps(r, indent=0) for r in _records("indent0", 20)]
    objects[2] = objects[2].replace('"female"', "female", 1)
    out.append(("objects-indent-0.json", ("\n".join(objects) + "\n").encode(), 20))
    lines = _lines(_records("colon", 20))
    lines[5] = lines[5][:lines[5].index('"site":') + 7]
    out.append(("jsonl-saved-as-cut-after-colon.json", ("\n".join(lines) + "\n").encode(), 20))
    # Stray closers and commas in arrays: one error row for the element they are in, or none (an
    # empty slot is no element); index numbers stay element positions.
    text = json.dumps(_records("stray", 30), indent=2).replace('"G-stray-9",', '"G-stray-9", "x": }}', 1)
    out.append(("array-stray-closers-pretty.json", text.encode(), 30))
    elements = _lines(_records("after", 20))
    elements[4] += "}"
    elements[7] += " ] :"
    out.append(("array-stray-closer-after-element.json", _array(elements), 20))
    elements = _lines(_records("slots", 20))
    out.append(("array-empty-slots.json", ("[," + ",, ".join(elements[:10]) + ", " + ",,,".join(elements[10:]) + ",]").encode(), 20))
    # A JSON array in a file named .jsonl: read as an array (a JSON Lines record cannot start with "[").
    out.append(("array-named.jsonl", _array(_lines(_records("named", 25)), pretty=True), 25))

    # JSON Lines with old Mac (CR-only), Windows (CRLF) and mixed line endings.
    lines = _lines(_records("cr", 25))
    out.append(("cr-only.jsonl", "\r".join(lines).encode() + b"\r", 25))
    out.append(("crlf.jsonl", "\r\n".join(lines).encode() + b"\r\n", 25))
    out.append(("mixed-endings.jsonl", ("\r".join(lines[:10]) + "\n" + "\r\n".join(lines[10:])).encode(), 25))
    out.append(("cr-only-saved-as.json", "\r".join(lines).encode(), 25))

    # Empty inputs: nothing to read, no item, no error.
    out += [("empty.json", b"", 0), ("empty.jsonl", b"", 0), ("empty.csv", b"", 0),
            ("blank-lines.jsonl", b"\n\n  \r\n\n", 0), ("blank-lines.json", b"\n \n\t\n", 0),
            ("blank-lines.csv", b"\n\n", 0), ("header-only.csv", b"candidate_id,screening_start\n", 0),
            ("empty-array.json", b"[ ]\n", 0)]
    return out


def unreadable_corpus() -> list[tuple[str, bytes, int, str]]:
    """``(file name, bytes, expected item count, a piece of the expected unread sentence)``.

    Inputs whose rest cannot be read: the reader yields the records before the break and one error
    item for where it stopped, and ``unread`` says how many records it could not read.
    """
    out: list[tuple[str, bytes, int, str]] = []
    # A compact one-line array where a quote never closes: everything after it is inside a string.
    elements = _lines(_records("lost", 1000))
    elements[12] = elements[12].replace('"G-lost-12"', '"G-lost-12', 1)
    out.append(("array-unclosed-string.json", _array(elements), 13, "about 987 more records"))
    # An array cut short inside its last element (a truncated file).
    data = _array(_lines(_records("cut", 10)))
    out.append(("array-truncated.json", data[:-40], 10, "ends inside index 9"))
    # More input after the array's end.
    data = _array(_lines(_records("after", 5))) + b"\n" + _array(_lines(_records("after2", 5)))
    out.append(("array-then-more.json", data, 5, "about 5 more records"))
    return out
