"""Issue 11, input readers: one broken element costs one error row, the rest is read, and when the
rest truly cannot be read the reader says how much was lost (``RecordStream.unread``)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

import screening
from screening.io import Item, jsonl_line_count, read_jsonl_lines, read_records

from .conftest import base_record
from .garbage import garbage_corpus, unreadable_corpus


def _items(data: bytes | str, name: str | None = None, fmt: str | None = None) -> tuple[list[Item], Any]:
    stream = read_records(io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data), fmt, name=name)
    items = list(stream)
    return items, stream


def _errors(items: list[Item]) -> list[Item]:
    return [item for item in items if item.error is not None]


def _message(item: Item) -> str:
    assert item.error is not None
    return item.error.describe()


def _good_ids(items: list[Item]) -> list[str]:
    return [json.loads(item.text)["candidate_id"] for item in items if item.text is not None]


# ---------------------------------------------------------------------------------------------
# The garbage corpus: every record one item, nothing unread


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, data, count", garbage_corpus(), ids=[c[0] for c in garbage_corpus()])
def test_every_record_of_the_garbage_corpus_is_one_item(name: str, data: bytes, count: int) -> None:
    items, stream = _items(data, name)
    assert len(items) == count
    assert stream.unread is None
    for item in items:  # a good item is one JSON object; a bad one is an error naming its position
        assert (item.text is None) != (item.error is None)
        if item.text is not None:
            assert isinstance(json.loads(item.text), dict)
        else:
            assert item.position in _message(item)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, data, count, unread", unreadable_corpus(), ids=[c[0] for c in unreadable_corpus()])
def test_what_cannot_be_read_is_said(name: str, data: bytes, count: int, unread: str) -> None:
    items, stream = _items(data, name)
    assert len(items) == count
    assert stream.unread is not None and unread in stream.unread


def test_the_garbage_corpus_screens_to_one_row_per_record() -> None:
    ruleset = screening.load_ruleset()
    for name, data, count in garbage_corpus():
        if count > 100:
            continue
        rows = list(screening.screen_items(read_records(io.BytesIO(data), name=name), ruleset))
        assert len(rows) == count, name


# ---------------------------------------------------------------------------------------------
# Finding 1: one broken element costs one error row


def test_json_lines_saved_as_json_lose_only_the_bad_line() -> None:
    lines = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(10_000)]
    lines[5] = '{"candidate_id": "R5", "site": tru}'
    items, stream = _items("\n".join(lines) + "\n", "batch.json")
    assert len(items) == 10_000 and stream.unread is None
    [bad] = _errors(items)
    assert bad.position == "record 6" and "line 6" in _message(bad)
    assert _good_ids(items)[-1] == "R9999"


def test_json_lines_in_a_json_file_resynchronise_after_a_line_cut_short() -> None:
    lines = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(20)]
    lines[3] = lines[3][:30]  # cut inside a string: its quote never closes
    items, _ = _items("\n".join(lines), "batch.json")
    assert len(items) == 20
    assert [i.position for i in _errors(items)] == ["record 4"]


@pytest.mark.parametrize("element, says", [
    ('{"candidate_id": "X", "site": nul}', "not valid JSON"),
    ('{"candidate_id": "X\x00"}', "not valid JSON"),
    ('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
])
def test_one_bad_array_element_is_one_error_item(element: str, says: str) -> None:
    elements = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(1000)]
    elements[2] = element
    items, stream = _items("[" + ",\n".join(elements) + "]", "batch.json")
    assert len(items) == 1000 and stream.unread is None
    [bad] = _errors(items)
    assert bad.position == "index 2" and says in _message(bad)
    assert _good_ids(items)[-1] == "R999"


def test_a_csv_quote_that_never_closes_costs_one_row() -> None:
    rows = [f"R{i},site A,2023-03-01" for i in range(1000)]
    rows[4] = 'R4,"site A,2023-03-01'
    items, stream = _items("candidate_id,site,screening_start\n" + "\n".join(rows) + "\n", "x.csv")
    assert len(items) == 1000 and stream.unread is None
    [bad] = _errors(items)
    assert bad.position == "line 6" and "quote" in _message(bad)
    assert _good_ids(items)[4] == "R5" and _good_ids(items)[-1] == "R999"


def test_a_quoted_csv_cell_may_hold_a_newline() -> None:
    meds = json.dumps([{"name": "amlodipine"}], indent=1).replace('"', '""')
    text = f'candidate_id,screening_start,medications\nA,2023-03-01,"{meds}"\nB,2023-03-01,\n'
    items, _ = _items(text, "x.csv")
    assert [i.position for i in items] == ["line 2", "line 7"] and not _errors(items)
    assert json.loads(items[0].text)["medications"] == [{"name": "amlodipine"}]


def test_a_csv_row_running_over_the_bound_is_one_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import screening.io as sio

    monkeypatch.setattr(sio, "CSV_ROW_LINES", 5)
    meds = "\n".join(['"['] + ['{""name"": ""a""},'] * 6 + ['{""name"": ""b""}]"'])  # 8 lines, valid
    rows = [f"R{i},2023-03-01," for i in range(30)]
    rows[2] = "R2,2023-03-01," + meds
    items, _ = _items("candidate_id,screening_start,medications\n" + "\n".join(rows) + "\n", "x.csv")
    bad = _errors(items)
    assert bad[0].position == "line 4" and "more than 5 lines" in _message(bad[0])
    assert _good_ids(items) == ["R0", "R1"] + [f"R{i}" for i in range(3, 30)]


def test_an_overlong_csv_line_is_one_error_row_wherever_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import screening.io as sio

    monkeypatch.setattr(sio, "CSV_ROW_CHARS", 100)
    rows = [f"R{i},site A,2023-03-01" for i in range(10)]
    rows[2] = 'R2,"site A,2023-03-01'  # its row runs into the next line, which is too long
    rows[3] = "R3,site A," + "x" * 500
    items, _ = _items("candidate_id,site,screening_start\n" + "\n".join(rows) + "\n", "x.csv")
    assert [i.position for i in _errors(items)] == ["line 4", "line 5"]
    assert "quote" in _message(_errors(items)[0]) and "line is longer than" in _message(_errors(items)[1])
    assert len(items) == 10


@pytest.mark.timeout(60)
def test_an_element_over_the_bound_is_one_error_item(monkeypatch: pytest.MonkeyPatch) -> None:
    import screening.io as sio

    monkeypatch.setattr(sio, "MAX_ELEMENT", 1 << 18)
    big = json.dumps(base_record(candidate_id="BIG", site="s" * (1 << 20)))
    text = "[" + big + ", " + json.dumps(base_record(candidate_id="A")) + "]"
    items, stream = _items(text, "a.json")
    assert len(items) == 2 and stream.unread is None
    assert "larger than" in _message(items[0]) and _good_ids(items) == ["A"]


# ---------------------------------------------------------------------------------------------
# Finding 2: when the rest cannot be read, say how much


def test_read_records_says_when_the_rest_of_the_input_is_lost() -> None:
    elements = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(1000)]
    elements[12] = elements[12].replace('"R12"', '"R12', 1)
    items, stream = _items("[" + ", ".join(elements) + "]", "batch.json")
    assert len(items) == 13
    assert _errors(items)[0].position == "index 12"
    assert stream.unread is not None
    assert "index 12" in stream.unread and "about 987 more records" in stream.unread
    assert "bytes" in stream.unread


def test_unread_is_none_for_a_clean_input() -> None:
    for text, name in (("[]", "a.json"), ('{"candidate_id": "A"}\n', "a.jsonl"), ("candidate_id\nA\n", "a.csv")):
        items, stream = _items(text, name)
        assert stream.unread is None


# ---------------------------------------------------------------------------------------------
# Finding 3: linear time, streaming


class _CountingDecoder:
    """Counts the characters json's raw_decode looks at: to the value's end, or (failing) to the end of input."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chars = 0
        original = json.JSONDecoder.raw_decode

        def counted(decoder: json.JSONDecoder, s: str, idx: int = 0) -> Any:
            try:
                value, end = original(decoder, s, idx)
            except BaseException:
                self.chars += len(s) - idx  # a failure may have looked at everything after idx
                raise
            self.chars += end - idx
            return value, end

        monkeypatch.setattr(json.JSONDecoder, "raw_decode", counted)


@pytest.mark.timeout(60)
def test_a_large_array_element_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    big = json.dumps(base_record(candidate_id="BIG", site="s" * (8 << 20)))
    text = "[" + json.dumps(base_record(candidate_id="A")) + ", " + big + "]"
    counter = _CountingDecoder(monkeypatch)
    items, _ = _items(text, "a.json")
    assert _good_ids(items) == ["A", "BIG"]
    assert counter.chars <= 4 * len(text)


@pytest.mark.timeout(60)
def test_a_bad_token_early_in_a_large_array_is_read_past_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    elements = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(5000)]
    elements[1] = '{"candidate_id": "R1", "site": tru}'
    text = "[" + ", ".join(elements) + "]"
    counter = _CountingDecoder(monkeypatch)
    items, _ = _items(text, "a.json")
    assert len(items) == 5000 and len(_errors(items)) == 1
    assert counter.chars <= 4 * len(text)


class _Watched(io.BytesIO):
    """A stream that records how much had been read when each item was taken."""

    largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.largest_read = max(self.largest_read, len(data))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.largest_read = max(self.largest_read, len(data))
        return data


def test_json_lines_in_a_json_file_are_streamed() -> None:
    data = "\n".join(json.dumps(base_record(candidate_id=f"R{i}")) for i in range(3000)).encode()
    source = _Watched(data)
    stream = read_records(source, name="big.json")
    first = next(stream)
    assert first.position == "record 1"
    assert source.tell() < len(data) // 2  # the first record came before the whole file was read
    assert len(list(stream)) == 2999
    assert source.largest_read <= 1 << 17


# ---------------------------------------------------------------------------------------------
# Finding 4: integers of more than 4,300 digits; also Infinity, NaN, 1e999


@pytest.mark.parametrize("value", ["9" * 5000, "-" + "9" * 4400, "Infinity", "-Infinity", "NaN", "1e999", "-1e400"])
@pytest.mark.parametrize("layout", ["array", "document", "objects"])
def test_numbers_python_cannot_hold_or_json_does_not_allow_are_one_error_item(value: str, layout: str) -> None:
    bad = '{"candidate_id": "X", "diary": {"nights_recorded": ' + value + "}}"
    good = json.dumps(base_record(candidate_id="G"))
    text = {"array": f"[{bad}, {good}]", "document": bad, "objects": f"{bad}\n{good}\n"}[layout]
    items, stream = _items(text, "x.json")
    assert len(items) == (1 if layout == "document" else 2) and stream.unread is None
    assert items[0].error is not None and "number" in _message(items[0])
    assert value not in _message(items[0])
    if layout != "document":
        assert _good_ids(items) == ["G"]


def test_ordinary_numbers_are_still_read() -> None:
    rec = base_record(candidate_id="A")
    rec["diary"]["episodes"][0]["duration_min"] = 1e300
    items, _ = _items(json.dumps([rec]), "x.json")
    assert not _errors(items)


# ---------------------------------------------------------------------------------------------
# Finding 5: syntax errors give their line and column


def test_a_json_syntax_error_names_its_line_and_column_in_the_file() -> None:
    records = [base_record(candidate_id=f"R{i}") for i in range(3000)]  # several 64 KiB chunks
    text = json.dumps(records, indent=2)
    lines = text.split("\n")
    target = next(n for n, line in enumerate(lines) if '"R2500"' in line)
    lines[target] = lines[target].replace('"R2500"', "R2500")
    column = lines[target].index("R2500") + 1
    items, _ = _items("\n".join(lines), "x.json")
    assert len(items) == 3000
    [bad] = _errors(items)
    assert bad.position == "index 2500"
    assert f"line {target + 1}, column {column}" in _message(bad)


def test_a_syntax_error_in_one_document_names_its_line() -> None:
    items, _ = _items('{\n  "candidate_id": "A",\n  "site": x\n}\n', "x.json")
    assert len(items) == 1 and "line 3, column 11" in _message(items[0])


# ---------------------------------------------------------------------------------------------
# Finding 6: CR-only line endings


def test_cr_only_json_lines_are_several_lines() -> None:
    lines = [json.dumps(base_record(candidate_id=f"R{i}")) for i in range(5)]
    items, _ = _items("\r".join(lines).encode() + b"\r", "x.jsonl")
    assert [i.position for i in items] == [f"line {n}" for n in range(1, 6)]
    assert _good_ids(items) == [f"R{i}" for i in range(5)]


def test_line_numbers_count_every_kind_of_line_end() -> None:
    a, b, c, d = (json.dumps({"candidate_id": x}) for x in "abcd")
    data = f"{a}\r{b}\r\n{c}\n\r{d}\n".encode()  # lines 1, 2, 3, (blank) 4, 5
    items, _ = _items(data, "x.jsonl")
    assert [i.position for i in items] == ["line 1", "line 2", "line 3", "line 5"]
    # What the workers are handed: the file split at \n, numbered from a chunk's first line.
    chunk = list(read_jsonl_lines(data.split(b"\n"), 1))
    assert [i.position for i in chunk] == ["line 1", "line 2", "line 3", "line 5"]
    assert [i.position for i in read_jsonl_lines([f"{a}\r{b}".encode(), c.encode()], 7)] == [
        "line 7", "line 8", "line 9"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r", "mixed"])
def test_chunks_of_a_file_are_numbered_as_the_whole_file(ending: str) -> None:
    lines = [json.dumps({"candidate_id": f"R{i}"}) if i % 7 else "  " for i in range(60)]
    ends = [ending if ending != "mixed" else ("\n", "\r\n", "\r")[i % 3] for i in range(60)]
    data = "".join(line + end for line, end in zip(lines, ends)).encode()[:-1]
    whole = [i.position for i in read_jsonl_lines(data.split(b"\n"))]
    assert len(whole) == 60 - 9
    cuts = [0] + [i + 1 for i in range(len(data)) if data[i:i + 1] == b"\n"][::5] + [len(data)]
    pieces, line = [], 1
    for a, b in zip(cuts, cuts[1:]):
        if a == b:
            continue
        pieces += [i.position for i in read_jsonl_lines(data[a:b].split(b"\n"), line)]
        line += jsonl_line_count(data[a:b])
    assert pieces == whole
    assert whole[-1] == "line 60" and line == 61


def test_a_crlf_file_keeps_its_line_numbers() -> None:
    lines = [json.dumps({"candidate_id": x}) for x in "abc"]
    items, _ = _items(("\r\n".join(lines) + "\r\n").encode(), "x.jsonl")
    assert [i.position for i in items] == ["line 1", "line 2", "line 3"]


# ---------------------------------------------------------------------------------------------
# Finding 7: empty inputs yield nothing, and do not raise


@pytest.mark.parametrize("data", [b"", b"\n\n", b"  \r\n\t\n", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("name", ["x.json", "x.jsonl", "x.csv", None])
def test_empty_inputs_yield_no_items(data: bytes, name: str | None) -> None:
    items, stream = _items(data, name)
    assert items == [] and stream.unread is None


def test_a_header_only_csv_yields_no_items() -> None:
    for text in ("candidate_id,screening_start\n", "candidate_id,screening_start", "\n\ncandidate_id\n\n"):
        items, stream = _items(text.encode(), "x.csv")
        assert items == [] and stream.unread is None


# ---------------------------------------------------------------------------------------------
# Review round 2: a record is one row — no forged rows from multi-line cells, nested objects,
# stray brackets or commas; arrays in .jsonl files; no record values echoed as column names.

_ML_HEADER = "candidate_id,site,screening_start,birth_date,consent,medications\n"


def test_a_quoted_multi_line_csv_row_is_one_record_and_forges_nothing() -> None:
    text = (_ML_HEADER + "C1,S,2023-05-10,1957-05-11,signed,\n"
            'C2,"Third Hospital\nChengdu",2023-05-10,1957-05-11,signed,\n'
            'C3,S,2023-05-10,1957-05-11,signed,"[\nFORGED,S,2023-05-10,1957-05-11,signed,\n]"\n'
            "C4,S,2023-05-10,1957-05-11,signed,\n")
    items, stream = _items(text, "ml.csv")
    assert [i.position for i in items] == ["line 2", "line 3", "line 5", "line 8"]
    assert _good_ids(items) == ["C1", "C4"] and stream.unread is None
    c2, c3 = _message(items[1]), _message(items[2])
    assert "lines 3–4" in c2 and "site" in c2 and "Chengdu" not in c2
    assert "medications" in c3 and "FORGED" not in c3
    assert items[1].error is not None and items[1].error.candidate_id == "C2"


def test_a_quote_closed_lines_later_with_the_right_cell_count_is_one_error_row_naming_the_span() -> None:
    rows = [f"R{i},site A,2023-03-01" for i in range(30)]
    rows[2] = 'R2,"site A,2023-03-01'
    rows[6] = 'R6,site A",2023-03-01'  # closes R2's quote: one 5-line row of 3 cells
    items, _ = _items("candidate_id,site,screening_start\n" + "\n".join(rows) + "\n", "x.csv")
    assert len(items) == 26
    [bad] = _errors(items)
    assert bad.position == "line 4" and "lines 4–8" in _message(bad) and "site" in _message(bad)
    assert "R3" not in _good_ids(items) and "R7" in _good_ids(items)


def test_a_quote_closed_lines_later_with_a_wrong_cell_count_does_not_swallow_the_rows_between() -> None:
    rows = [f"R{i},site A,2023-03-01" for i in range(30)]
    rows[2] = 'R2,"site A,2023-03-01'
    rows[6] = 'R6,site A"'  # closes R2's quote: a 5-line row of 2 cells, re-read line by line
    items, _ = _items("candidate_id,site,screening_start\n" + "\n".join(rows) + "\n", "x.csv")
    assert len(items) == 30
    assert [i.position for i in _errors(items)] == ["line 4", "line 8"]
    assert {"R3", "R4", "R5", "R7"} <= set(_good_ids(items))


def _indent0_objects(bad: int | None, n: int = 5) -> str:
    records = [dict(candidate_id=f"P-{i}", site="S", screening_start="2023-05-10", consent="signed",
                    medications=[{"name": "a"}, {"name": "b"}]) for i in range(n)]
    texts = [json.dumps(r, indent=0) for r in records]
    if bad is not None:
        texts[bad] = texts[bad].replace('"signed"', "signed", 1)
    return "\n".join(texts) + "\n"


def test_a_bad_object_among_indent_0_objects_is_one_row() -> None:
    items, stream = _items(_indent0_objects(1), "objs0.json")
    assert [i.position for i in items] == [f"record {n}" for n in range(1, 6)]
    assert [i.position for i in _errors(items)] == ["record 2"]
    assert _good_ids(items) == ["P-0", "P-2", "P-3", "P-4"] and stream.unread is None


def test_a_bad_object_that_never_ends_says_the_rest_is_unread() -> None:
    text = _indent0_objects(None, 6)
    cut = text.index('"P-3"')
    text = text[:cut] + text[cut:].replace("]\n}", "]\n", 1)  # P-3 never closes: everything after is in it
    items, stream = _items(text, "objs0.json")
    assert _good_ids(items) == ["P-0", "P-1", "P-2"]
    assert [i.position for i in _errors(items)] == ["record 4"]
    assert stream.unread is not None and "record 4" in stream.unread and "2 more records" in stream.unread


def _elements(n: int) -> list[str]:
    return [json.dumps(dict(candidate_id=f"P-{i}", site="S", screening_start="2023-05-10")) for i in range(n)]


def test_stray_closers_inside_a_pretty_array_element_cost_one_row() -> None:
    records = [dict(candidate_id=f"P-{i}", site="S", screening_start="2023-05-10") for i in range(30)]
    text = json.dumps(records, indent=2).replace('"P-9",', '"P-9", "x": }}', 1)
    items, stream = _items(text, "pp5.json")
    assert [i.position for i in items] == [f"index {n}" for n in range(30)] and stream.unread is None
    assert [i.position for i in _errors(items)] == ["index 9"]
    assert _good_ids(items) == [f"P-{i}" for i in range(30) if i != 9]


@pytest.mark.parametrize("layout", ["compact", "pretty"])
def test_a_stray_closer_after_an_element_costs_that_element_only(layout: str) -> None:
    e = _elements(3)
    sep = ",\n  " if layout == "pretty" else ", "
    items, stream = _items("[" + e[0] + "}" + sep + sep.join(e[1:]) + "]", "x.json")
    assert [i.position for i in items] == ["index 0", "index 1", "index 2"] and stream.unread is None
    assert [i.position for i in _errors(items)] == ["index 0"]
    assert _good_ids(items) == ["P-1", "P-2"]


@pytest.mark.parametrize("text", ["[{0},, {1}, {2}]", "[, {0}, {1}, {2}]", "[{0}, {1},,, {2},]"])
def test_an_empty_array_slot_is_no_record_and_spoils_nothing(text: str) -> None:
    e = _elements(3)
    items, stream = _items(text.format(*e), "x.json")
    assert [i.position for i in items] == ["index 0", "index 1", "index 2"] and stream.unread is None
    assert not _errors(items) and _good_ids(items) == ["P-0", "P-1", "P-2"]


def test_a_bad_element_ends_at_the_arrays_next_comma() -> None:
    e = _elements(6)
    e[1] = '{"candidate_id": "P-1", "x": ]], "site": "S"}}'
    e[3] = "nonsense ] } :"
    items, stream = _items("[" + ", ".join(e) + "]", "x.json")
    assert [i.position for i in items] == [f"index {n}" for n in range(6)] and stream.unread is None
    assert [i.position for i in _errors(items)] == ["index 1", "index 3"]


def test_a_missing_comma_still_costs_only_the_element_after_it() -> None:
    e = _elements(4)
    items, _ = _items("[" + e[0] + ", " + e[1] + " " + e[2] + ", " + e[3] + "]", "x.json")
    assert [i.position for i in _errors(items)] == ["index 2"] and len(items) == 4


@pytest.mark.parametrize("name", ["x.jsonl", "x.ndjson", "X.JSONL"])
@pytest.mark.parametrize("lead", ["", "\ufeff", "\n  "])
def test_a_json_array_in_a_jsonl_named_file_is_read_as_an_array(name: str, lead: str) -> None:
    from screening.io import detect_format

    text = lead + json.dumps([json.loads(x) for x in _elements(4)], indent=2)
    assert detect_format(name, text) == "json"
    assert detect_format(name, lead + _elements(1)[0]) == "jsonl"
    items, stream = _items(text.encode(), name)
    assert _good_ids(items) == ["P-0", "P-1", "P-2", "P-3"] and stream.unread is None


def test_a_json_array_in_a_jsonl_file_is_not_sharded_to_workers(tmp_path: Any) -> None:
    from screening.scale import shardable

    path = tmp_path / "x.jsonl"
    path.write_text("[" + ", ".join(_elements(3)) + "]")
    assert not shardable(str(path), None)
    path.write_text("\n".join(_elements(3)))
    assert shardable(str(path), None)


def test_a_long_line_that_is_not_an_object_is_not_decoded_to_choose_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    long_array = "[" + ", ".join(_elements(3000)) + "]"
    assert len(long_array) > 1 << 17
    calls: list[int] = []
    original = json.loads

    def counting(s: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(s))
        return original(s, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    items = list(read_jsonl_lines([long_array + "\n", '"' + "x" * 200_000 + '"\n', "[1, 2]\n"]))
    assert [i.position for i in items] == ["line 1", "line 2", "line 3"]
    assert "array" in _message(items[0]) and "not a JSON object" in _message(items[1])
    assert "array" in _message(items[2])
    assert all(size <= 1 << 16 for size in calls)


def _header_error(text: str) -> str:
    from screening.errors import InputFormatError

    with pytest.raises(InputFormatError) as exc:
        _items(text, None, "csv")
    return str(exc.value)


def test_a_headerless_csv_does_not_echo_record_values_as_column_names() -> None:
    message = _header_error("NC-0001,Third Hospital,2023-05-10,1957-05-11,signed\n")
    for value in ("NC-0001", "Third Hospital", "2023-05-10", "1957-05-11"):
        assert value not in message
    assert "no header row" in message and "candidate_id" in message and len(message) < 400


def test_a_column_name_that_is_not_a_field_path_is_not_shown() -> None:
    message = _header_error("candidate_id,site," + "x" * 5000 + ",Ab Cd\nA,B,C,D\n")
    assert "x" * 41 not in message and "Ab Cd" not in message and len(message) < 400
    assert message.count("a column whose name is not shown") == 2
    assert "no header row" not in message


def test_a_misspelt_field_path_column_is_still_named_with_a_suggestion() -> None:
    message = _header_error("candidate_id,sitee,screening_start\nA,B,2023-03-01\n")
    assert "'sitee'" in message and "did you mean 'site'" in message
    long_path = "a" * 41
    assert long_path not in _header_error(f"candidate_id,site,{long_path}\nA,B,C\n")


def test_repeated_columns_are_named_only_when_they_look_like_field_paths() -> None:
    message = _header_error("candidate_id,site,site\nA,B,C\n")
    assert "'site'" in message
    secret = "Jane Doe 1957-05-11"
    assert secret not in _header_error(f"candidate_id,{secret},{secret}\nA,B,C\n")


@pytest.mark.parametrize("junk", ["]", "] :", "}", ": 5", "]]"])
def test_junk_right_before_a_comma_does_not_swallow_the_next_element(junk: str) -> None:
    e = _elements(4)
    items, stream = _items("[" + e[0] + ", " + e[1] + " " + junk + ", " + e[2] + ", " + e[3] + "]", "x.json")
    assert [i.position for i in items] == ["index 0", "index 1", "index 2", "index 3"] and stream.unread is None
    assert [i.position for i in _errors(items)] == ["index 1"]
    assert _good_ids(items) == ["P-0", "P-2", "P-3"]


def test_an_array_followed_by_another_still_says_the_rest_is_unread() -> None:
    e = _elements(6)
    items, stream = _items("[" + ", ".join(e[:3]) + "]\n[" + ", ".join(e[3:]) + "]", "x.json")
    assert _good_ids(items) == ["P-0", "P-1", "P-2"]
    assert stream.unread is not None and "after the end of the JSON array" in stream.unread


@pytest.mark.parametrize("layout", ["indent0", "pretty", "lines"])
@pytest.mark.parametrize("stray", ["}", "]", "}}", "] }"])
def test_stray_closers_in_an_object_among_objects_cost_that_object_only(layout: str, stray: str) -> None:
    records = [dict(candidate_id=f"P-{i}", site="S", medications=[{"name": "a"}, {"name": "b"}]) for i in range(6)]
    texts = [json.dumps(r, indent={"indent0": 0, "pretty": 2, "lines": None}[layout]) for r in records]
    texts[2] = texts[2].replace('"name": "a"', '"name": "a"' + stray, 1)
    items, stream = _items("\n".join(texts) + "\n", "objs.json")
    assert [i.position for i in items] == [f"record {n}" for n in range(1, 7)] and stream.unread is None
    assert [i.position for i in _errors(items)] == ["record 3"]
