"""Issue 11, the audit's findings: a candidate counts once (its last row), unreadable input and bad
expectation files are clear errors, never tracebacks."""

from __future__ import annotations

import copy
import gc
import io
import json
import random
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
from screening import audit
from screening.errors import InputFormatError, RuleDefinitionError

from .conftest import FIXTURES

FIGURE1 = FIXTURES / "figure1" / "candidates.jsonl"


@pytest.fixture(scope="module")
def figure1_text() -> str:
    screened = CliRunner().invoke(cli.main, ["screen", str(FIGURE1), "--format", "jsonl"], catch_exceptions=False)
    assert screened.exit_code == 0
    return screened.output


@pytest.fixture
def rows(figure1_text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in figure1_text.splitlines() if line.strip()]


def _first(rows: list[dict[str, Any]], category: str) -> dict[str, Any]:
    return next(r for r in rows if r["category"] == category)


def _rescreened_as(rows: list[dict[str, Any]], who: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A later row for ``who`` (same site and id) that carries ``outcome``'s decision."""
    row = copy.deepcopy(outcome)
    row["candidate_id"], row["site"] = who["candidate_id"], who["site"]
    return row


def _boxes(counts: audit.ConsortCounts) -> dict[str, Any]:
    report = counts.to_dict()
    return {"counts": report["counts"], "criteria": report["criteria"],
            "arithmetic_problems": report["arithmetic_problems"]}


def _last_rows_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last: dict[tuple[Any, Any], int] = {}
    for i, r in enumerate(rows):
        last[(r.get("site") or "", r["candidate_id"])] = i
    return [r for i, r in enumerate(rows) if last[(r.get("site") or "", r["candidate_id"])] == i]


# -- 1. a candidate counts once: its last row in input order -----------------------------------------


def test_a_candidate_screened_twice_counts_once_by_its_last_row(rows: list[dict[str, Any]], paper: Any) -> None:
    randomized = _first(rows, "randomized")
    later = _rescreened_as(rows, randomized, _first(rows, "withdrawal"))  # declined consent on re-screening
    counts = audit.count(rows + [later], paper)
    flat = counts.flat()
    assert flat["assessed"] == 310
    assert flat["randomized"] == 198
    assert flat["withdrawal"] == 16
    assert counts.rows == 311
    assert counts.superseded == 1
    assert counts.arithmetic() == []


def test_per_criterion_counts_follow_the_last_row(rows: list[dict[str, Any]], paper: Any) -> None:
    """Whatever repeats, the counts equal those of the last rows alone (seeded shuffle of re-screens)."""
    rng = random.Random(11)
    stream = list(rows)
    for _ in range(120):
        who, outcome = rng.choice(rows), rng.choice(rows)
        stream.insert(rng.randrange(len(stream) + 1), _rescreened_as(rows, who, outcome))
    counts = audit.count(stream, paper)
    expected = audit.count(_last_rows_only(stream), paper)
    assert _boxes(counts) == _boxes(expected)
    assert counts.rows == len(stream)
    assert counts.superseded == len(stream) - 310
    assert counts.flat()["assessed"] == 310


def test_order_decides_which_row_counts(rows: list[dict[str, Any]], paper: Any) -> None:
    a = _first(rows, "randomized")
    b = _rescreened_as(rows, a, _first(rows, "not_meeting_inclusion"))
    assert audit.count([a, b], paper).flat()["not_meeting_inclusion"] == 1
    assert audit.count([a, b], paper).flat()["randomized"] == 0
    assert audit.count([b, a], paper).flat()["randomized"] == 1
    assert audit.count([b, a], paper).flat()["not_meeting_inclusion"] == 0


def test_excluded_by_this_only_and_primary_follow_the_last_row(rows: list[dict[str, Any]], paper: Any) -> None:
    excluded = _first(rows, "meeting_exclusion")
    primary = excluded["primary_criterion"]
    later = _rescreened_as(rows, excluded, _first(rows, "randomized"))
    report = audit.count([excluded, later], paper).to_dict()
    assert report["criteria"][primary]["excluded_by_this_only"] == 0
    assert sum(c["primary"] for c in report["criteria"].values()) == 1
    assert report["criteria"]["I4"]["primary"] == 1
    assert report["criteria"][primary]["met"] == 0


def test_an_error_row_then_a_decision_for_the_same_candidate_counts_once_as_the_decision(
        rows: list[dict[str, Any]], paper: Any) -> None:
    decision = _first(rows, "randomized")
    error = {"candidate_id": decision["candidate_id"], "site": decision["site"], "decision": "error",
             "category": "error", "error": "line 1: screening_start: not a date", "ruleset": decision["ruleset"]}
    counts = audit.count([error, decision], paper)
    assert counts.flat()["errors"] == 0 and counts.flat()["randomized"] == 1 and counts.superseded == 1
    counts = audit.count([decision, error], paper)  # re-screened later and now unreadable: the error counts
    assert counts.flat()["errors"] == 1 and counts.flat()["randomized"] == 0 and counts.flat()["assessed"] == 0


def test_error_rows_known_only_by_position_are_never_merged(rows: list[dict[str, Any]], paper: Any) -> None:
    stamp = rows[0]["ruleset"]
    errors = [{"candidate_id": f"{kind} 3", "site": None, "decision": "error", "category": "error",
               "error": f"{kind} 3: not valid JSON", "ruleset": stamp} for kind in ("line", "index", "record")]
    counts = audit.count(errors + copy.deepcopy(errors), paper)
    assert counts.flat()["errors"] == 6
    assert counts.superseded == 0


def test_candidates_match_exactly(rows: list[dict[str, Any]], paper: Any) -> None:
    """Near-duplicates (case, spaces) are different candidates here; `screen` only warns about them."""
    a = _first(rows, "randomized")
    variants = []
    for cid, site in ((a["candidate_id"].lower(), a["site"]), (f" {a['candidate_id']}", a["site"]),
                      (a["candidate_id"], a["site"].upper()), (a["candidate_id"], f"{a['site']} ")):
        row = copy.deepcopy(a)
        row["candidate_id"], row["site"] = cid, site
        variants.append(row)
    counts = audit.count([a] + variants, paper)
    assert counts.superseded == 0 and counts.flat()["randomized"] == 5


def test_a_missing_site_is_the_same_as_an_empty_one_as_in_the_duplicate_check(
        rows: list[dict[str, Any]], paper: Any) -> None:
    a = copy.deepcopy(_first(rows, "randomized"))
    a["site"] = None
    b = copy.deepcopy(a)
    b["site"] = ""
    c = copy.deepcopy(a)
    del c["site"]
    assert audit.count([a, b, c], paper).superseded == 2


def test_the_report_says_how_many_rows_were_superseded(rows: list[dict[str, Any]], paper: Any) -> None:
    later = _rescreened_as(rows, rows[0], rows[1])
    counts = audit.count(rows + [later, copy.deepcopy(later)], paper)
    text = audit.render(counts)
    assert "Rows read (each candidate counts once: its last row)" in text and text.count(" 312") == 1
    line = next(x for x in text.splitlines() if "Superseded by a later row for the same candidate" in x)
    assert line.split()[-1] == "2"
    report = counts.to_dict()
    assert report["rows"] == {"read": 312, "superseded": 2, "candidates": 310}
    assert report["counts"]["assessed"] == 310


def test_rows_of_an_ordinary_run_supersede_nothing(figure1_text: str, paper: Any) -> None:
    counts = audit.count(audit.read_rows(io.BytesIO(figure1_text.encode())), paper)
    assert counts.superseded == 0 and counts.rows == 310 and counts.arithmetic() == []
    assert counts.to_dict()["rows"] == {"read": 310, "superseded": 0, "candidates": 310}


class _Row(dict[str, Any]):
    """A dict that can be watched for being freed."""


def test_counting_keeps_no_rows(rows: list[dict[str, Any]], paper: Any) -> None:
    """Streaming: once counted, neither a row nor its criteria are held (re-screens included)."""
    watched: list[weakref.ref[Any]] = []

    def stream() -> Iterator[dict[str, Any]]:
        for r in rows + rows[:50]:
            row = _Row(copy.deepcopy(r))
            row["criteria"] = _Row(row["criteria"])
            watched.append(weakref.ref(row))
            watched.append(weakref.ref(row["criteria"]))
            yield row

    counts = audit.count(stream(), paper)
    gc.collect()
    assert counts.superseded == 50
    assert len(watched) == 2 * 360
    assert all(ref() is None for ref in watched)


# -- 5. the stamp check, "no decision rows" and the arithmetic with superseded rows ------------------


def test_a_row_of_another_set_superseded_by_a_re_screen_is_not_flagged(
        rows: list[dict[str, Any]], paper: Any, registry: Any) -> None:
    old = copy.deepcopy(rows[0])
    old["ruleset"] = registry.stamp
    counts = audit.count([old] + rows, paper)
    assert counts.superseded == 1
    assert counts.arithmetic() == []
    assert "registry-2023" not in audit.render(counts).splitlines()[0]


def test_a_re_screen_with_another_set_is_flagged(rows: list[dict[str, Any]], paper: Any, registry: Any) -> None:
    new = copy.deepcopy(rows[0])
    new["ruleset"] = registry.stamp
    problems = audit.count(rows + [new], paper).arithmetic()
    assert any(p.startswith("1 row(s) were not made with the criteria set counted with") for p in problems)
    assert any("rows come from 2 criteria sets" in p for p in problems)


def test_nothing_to_count_is_still_a_problem(paper: Any) -> None:
    counts = audit.count(audit.read_rows(io.BytesIO(b"\n\n  \n")), paper)
    assert counts.arithmetic() == ["no decision rows in the input"]
    assert counts.to_dict()["rows"] == {"read": 0, "superseded": 0, "candidates": 0}


def test_the_arithmetic_checks_rows_against_candidates(rows: list[dict[str, Any]], paper: Any) -> None:
    counts = audit.count(rows + rows[:3], paper)
    assert counts.arithmetic() == []
    counts.superseded += 1  # a counter that no longer adds up must be caught
    assert any("rows read" in p for p in counts.arithmetic())


def test_cli_counts_a_re_screened_candidate_once(figure1_text: str, rows: list[dict[str, Any]]) -> None:
    later = _rescreened_as(rows, _first(rows, "randomized"), _first(rows, "withdrawal"))
    text = figure1_text + json.dumps(later) + "\n"
    result = CliRunner().invoke(cli.main, ["audit", "-", "--format", "json"], input=text)
    report = json.loads(result.output)
    assert report["counts"]["assessed"] == 310
    assert report["rows"]["superseded"] == 1


# -- 2. invalid UTF-8, binary and text streams -----------------------------------------------------------


@pytest.mark.timeout(20)
def test_invalid_utf8_names_its_line(figure1_text: str) -> None:
    good = figure1_text.splitlines()[0].encode()
    data = good + b"\n\n" + good.replace(b"NC-", b"NC-\xff") + b"\n" + good + b"\n"
    with pytest.raises(InputFormatError, match=r"^decisions\.jsonl line 3: not valid UTF-8$"):
        list(audit.read_rows(io.BytesIO(data), name="decisions.jsonl"))


@pytest.mark.timeout(20)
def test_binary_input_reads_like_text_input(figure1_text: str, paper: Any) -> None:
    data = b"\xef\xbb\xbf" + figure1_text.replace("\n", "\r\n").encode()
    binary = list(audit.read_rows(io.BytesIO(data)))
    text = list(audit.read_rows(io.StringIO(figure1_text)))
    assert binary == text and len(binary) == 310


@pytest.mark.timeout(20)
def test_a_byte_order_mark_is_only_stripped_from_the_first_line(figure1_text: str) -> None:
    lines = figure1_text.splitlines()
    data = ("\ufeff" + lines[0] + "\n\ufeff" + lines[1] + "\n").encode()
    with pytest.raises(InputFormatError, match=r"^input line 2: not a JSON decision row"):
        list(audit.read_rows(io.BytesIO(data)))


@pytest.mark.timeout(20)
def test_cr_only_line_endings_are_lines(figure1_text: str) -> None:
    lines = figure1_text.splitlines()[:3]
    data = ("\r".join(lines) + "\r").encode()
    assert len(list(audit.read_rows(io.BytesIO(data)))) == 3
    bad = ("\r".join(lines[:2] + ["{oops"]) + "\r").encode()
    with pytest.raises(InputFormatError, match=r"^input line 3: not a JSON decision row"):
        list(audit.read_rows(io.BytesIO(bad)))


def test_cli_on_invalid_utf8_is_a_clear_error_not_a_traceback(figure1_text: str) -> None:
    data = figure1_text.encode() + b'{"candidate_id": "\xc3\x28"}\n'
    result = CliRunner().invoke(cli.main, ["audit", "-"], input=data)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "not valid UTF-8" in result.output
    assert "Traceback" not in result.output


@pytest.mark.timeout(20)
def test_invalid_utf8_in_a_json_array_names_its_line(figure1_text: str) -> None:
    rows = [json.loads(x) for x in figure1_text.splitlines()[:3]]
    text = json.dumps(rows, indent=1).encode()
    lines = text.split(b"\n")
    lines[7] = lines[7].replace(b'"', b'"\xff', 1)
    with pytest.raises(InputFormatError, match=r"^input line 8: not valid UTF-8$"):
        list(audit.read_rows(io.BytesIO(b"\n".join(lines))))


@pytest.mark.timeout(20)
def test_a_json_array_reads_from_binary_and_text(figure1_text: str) -> None:
    rows = [json.loads(x) for x in figure1_text.splitlines()]
    text = "\n" + json.dumps(rows, indent=2, ensure_ascii=False)
    assert list(audit.read_rows(io.BytesIO(text.encode()))) == rows
    assert list(audit.read_rows(io.StringIO(text))) == rows


@pytest.mark.timeout(20)
def test_a_json_syntax_error_in_an_array_names_the_file_line(figure1_text: str) -> None:
    rows = [json.loads(x) for x in figure1_text.splitlines()[:2]]
    lines = ("\n\n" + json.dumps(rows, indent=1)).split("\n")
    lines[6] = lines[6] + " oops"
    with pytest.raises(InputFormatError, match=r"^input line 7 column \d+: not valid JSON"):
        list(audit.read_rows(io.BytesIO("\n".join(lines).encode())))


# -- 4. an over-deep or huge-int JSON array ------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("data, message", [
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ('[{"decision": "x", "category": "y", "n": ' + "9" * 5000 + "}]", "a number too long to read"),
    ('{"decision": "x", "category": "y", "n": ' + "9" * 5000 + "}", "not a JSON decision row"),
    ('{"decision": "x", "category": "y", "n": ' + "[" * 200_000 + "]" * 200_000 + "}", "not a JSON decision row"),
], ids=["deep-array", "huge-int-in-array", "huge-int-in-line", "deep-line"])
@pytest.mark.parametrize("binary", [True, False])
def test_an_over_deep_or_huge_int_input_is_a_clear_error(data: str, message: str, binary: bool) -> None:
    stream: Any = io.BytesIO(data.encode()) if binary else io.StringIO(data)
    with pytest.raises(InputFormatError, match=message) as caught:
        list(audit.read_rows(stream))
    assert "9999" not in str(caught.value) and "set_int_max_str_digits" not in str(caught.value)


# -- 3. expectation files are validated when loaded --------------------------------------------------------


def _expectation(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("value", ['"lots"', "3.5", "-1", "true", "null", "[1]", "1e3"])
def test_a_count_that_is_not_a_non_negative_integer_is_refused(tmp_path: Path, value: str, paper: Any) -> None:
    path = _expectation(tmp_path, f"name: flow\ncounts:\n  assessed: 310\n  randomized: {value}\n")
    with pytest.raises(RuleDefinitionError, match=r"file .*flow\.yaml, field 'counts\.randomized': "
                                                   r"must be a whole number ≥ 0"):
        audit.load_expectation(str(path), paper)


def test_an_unknown_box_is_refused_at_load(tmp_path: Path, paper: Any) -> None:
    path = _expectation(tmp_path, "counts:\n  randomised: 199\n")
    with pytest.raises(RuleDefinitionError, match=r"flow\.yaml, field 'counts\.randomised': unknown box; "
                                                   r"did you mean 'randomized'\?"):
        audit.load_expectation(str(path), paper)


@pytest.mark.parametrize("body, field", [
    ("counts: {}\nname: [x]\n", "name"),
    ("counts: {}\ntitle: {a: 1}\n", "title"),
    ("counts: {}\ncount: {}\n", "count"),
    ("counts: [1, 2]\n", "counts"),
    ("counts:\n  assessed: 1\n  assessed: 2\n", "counts.assessed"),
    ("title: &t x\nname: *t\ncounts: {}\n", ""),
])
def test_a_malformed_expectation_file_is_refused(tmp_path: Path, body: str, field: str, paper: Any) -> None:
    path = _expectation(tmp_path, body)
    with pytest.raises(RuleDefinitionError, match="flow.yaml") as caught:
        audit.load_expectation(str(path), paper)
    if field:
        assert f"field '{field}'" in str(caught.value)


def test_the_shipped_expectation_loads(paper: Any) -> None:
    assert audit.load_expectation("figure1", paper)["counts"]["randomized"] == 199


def test_cli_with_a_non_numeric_expected_count_is_a_clear_error(tmp_path: Path, figure1_text: str) -> None:
    path = _expectation(tmp_path, "counts:\n  assessed: three hundred and ten\n")
    result = CliRunner().invoke(cli.main, ["audit", "-", "--expect", str(path)], input=figure1_text)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "field 'counts.assessed': must be a whole number ≥ 0" in result.output
    assert "three hundred" not in result.output
