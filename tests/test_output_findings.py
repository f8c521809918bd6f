"""Issue 11, the output writers: nothing lost (an unwritable output, an output that is the input) and nothing
forged (CSV rows, formula cells, terminal control characters) in what nlc-screen writes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import resource
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import screening
from screening.errors import OutputError
from screening.io import read_records
from screening.output import RowWriter, text_block

from .conftest import ROOT, base_record

PY = sys.executable


def _screen(paper: screening.Ruleset, *records: dict[str, Any]) -> list[dict[str, Any]]:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    return list(screening.screen_items(read_records(io.BytesIO(data), "jsonl"), paper))


def _render(rows: list[dict[str, Any]], ruleset: screening.Ruleset, fmt: str, **options: Any) -> str:
    out = io.StringIO()
    writer = RowWriter(out, fmt, ruleset, **options)
    for row in rows:
        writer.write(row)
    writer.close()
    return out.getvalue()


def _run(script: str, *, fsize: int | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a python script in a child (optionally under a file-size limit), in the repo."""
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([PY, "-c", textwrap.dedent(script)], cwd=ROOT, preexec_fn=limit, text=True,
                          timeout=120, **kwargs)


# ---------------------------------------------------------------------------------------------
# 1. -o naming the input file


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "relative path"])
def test_an_output_that_is_the_input_file_is_refused_before_anything_is_written(tmp_path: Path, how: str) -> None:
    from screening.sink import check_not_input, open_output

    source = tmp_path / "in.jsonl"
    source.write_text('{"candidate_id": "A"}\n', encoding="utf-8")
    target = tmp_path / "out.jsonl"
    if how in ("same path", "relative path"):
        target = source
    elif how == "symlink":
        target.symlink_to(source)
    elif how == "hard link":
        os.link(source, target)
    name = os.path.relpath(target) if how == "relative path" else str(target)
    with pytest.raises(OutputError, match="is the input"):
        check_not_input(name, str(source))
    with pytest.raises(OutputError, match="is the input"):
        with open_output(name, input_path=str(source)) as out:
            out.write("overwritten\n")
    assert source.read_text(encoding="utf-8") == '{"candidate_id": "A"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"in.jsonl", target.name})


def test_an_output_that_does_not_exist_yet_or_is_another_file_is_fine(tmp_path: Path) -> None:
    from screening.sink import check_not_input, open_output

    source = tmp_path / "in.jsonl"
    source.write_text("x\n", encoding="utf-8")
    other = tmp_path / "other.jsonl"
    other.write_text("old\n", encoding="utf-8")
    check_not_input(str(tmp_path / "new.jsonl"), str(source))
    check_not_input(str(other), str(source))
    check_not_input("-", str(source))
    check_not_input(str(source), None)
    with open_output(str(tmp_path / "new.jsonl"), input_path=str(source)) as out:
        out.write("row\n")
    assert (tmp_path / "new.jsonl").read_text(encoding="utf-8") == "row\n"


def test_standard_output_appending_to_the_input_file_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("x\n", encoding="utf-8")
    script = f"""
        import sys
        from screening.errors import OutputError
        from screening.sink import open_output
        try:
            with open_output("-", input_path={str(source)!r}) as out:
                out.write("row\\n")
        except OutputError as exc:
            sys.stderr.write(f"OutputError: {{exc}}")
            sys.exit(4)
        """
    with source.open("a") as stdout:  # nlc-screen screen in.jsonl >> in.jsonl
        result = _run(script, stdout=stdout, stderr=subprocess.PIPE)
    assert result.returncode == 4, result.stderr
    assert "standard output is the input" in result.stderr
    assert source.read_text(encoding="utf-8") == "x\n"
    with source.open("rb") as stdin, (tmp_path / "out").open("a") as stdout:  # different files: fine
        script_stdin = script.replace(repr(str(source)), "'-'")
        assert _run(script_stdin, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE).returncode == 0
    with source.open("rb") as stdin, source.open("a") as stdout:  # nlc-screen screen - < in.jsonl >> in.jsonl
        result = _run(script_stdin, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    assert result.returncode == 4 and "standard output is the input" in result.stderr


# ---------------------------------------------------------------------------------------------
# 2. the output becoming unwritable mid-run

_WRITE_ROWS = """
    import sys
    from screening.errors import OutputError
    from screening.sink import open_output
    row = '{"candidate_id":"%06d","decision":"eligible","reason":"%s"}\\n'
    try:
        with open_output(sys.argv[1]) as out:
            for i in range(20000):
                if i % 3 == 0:  # the JSON Lines fast path: bytes to out.buffer, between text writes
                    out.flush()
                    out.buffer.write((row % (i, "b" * (i % 97))).encode())
                else:
                    out.write(row % (i, "t" * (i % 89)))
    except OutputError as exc:
        sys.stderr.write(f"OutputError: {exc}\\n")
        sys.exit(4)
    """


def test_a_file_size_limit_leaves_the_target_as_it_was_and_says_why(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("the previous run's rows\n", encoding="utf-8")
    result = _run(_WRITE_ROWS.replace("sys.argv[1]", repr(str(target))), fsize=100_000,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    assert "OutputError: cannot write the output file" in result.stderr and str(target) in result.stderr
    assert "File too large" in result.stderr
    assert target.read_text(encoding="utf-8") == "the previous run's rows\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left behind


def test_a_file_size_limit_on_standard_output_cuts_it_back_to_the_last_complete_row(tmp_path: Path) -> None:
    target = tmp_path / "stdout.jsonl"
    for limit in (100_000, 100_001, 65_536, 70_003):
        with target.open("w") as stdout:
            result = _run(_WRITE_ROWS.replace("sys.argv[1]", "'-'"), fsize=limit, stdout=stdout,
                          stderr=subprocess.PIPE)
        assert result.returncode == 4, result.stderr
        assert "OutputError: cannot write to standard output" in result.stderr
        assert "File too large" in result.stderr and "with a complete row" in result.stderr
        data = target.read_bytes()
        assert 0 < len(data) <= limit and data.endswith(b"\n")
        rows = [json.loads(line) for line in data.splitlines()]
        assert [r["candidate_id"] for r in rows] == [f"{i:06d}" for i in range(len(rows))]


def test_a_full_disk_is_an_output_error(tmp_path: Path) -> None:
    """/dev/full (every Linux has it; nlc-screen runs on Linux) fails every write with ENOSPC."""
    result = _run(_WRITE_ROWS.replace("sys.argv[1]", "'/dev/full'"), stderr=subprocess.PIPE)
    assert result.returncode == 4, result.stderr
    assert "No space left on device" in result.stderr and "/dev/full" in result.stderr
    with open("/dev/full", "w") as stdout:
        result = _run(_WRITE_ROWS.replace("sys.argv[1]", "'-'"), stdout=stdout, stderr=subprocess.PIPE)
    assert result.returncode == 4, result.stderr
    assert "cannot write to standard output: No space left on device" in result.stderr


def test_a_reader_that_goes_away_is_a_broken_pipe_not_an_output_error() -> None:
    script = """
        import sys
        from screening.sink import open_output
        try:
            with open_output("-") as out:
                while True:
                    out.write("x" * 1000 + "\\n")
        except BrokenPipeError:
            sys.stderr.write("BrokenPipeError")
            sys.exit(141)
        """
    with subprocess.Popen([PY, "-c", textwrap.dedent(script)], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141, err
    assert err == "BrokenPipeError"


def test_a_complete_write_replaces_the_target_keeping_its_permissions(tmp_path: Path) -> None:
    from screening.sink import open_output

    target = tmp_path / "out.csv"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    with open_output(str(target)) as out:
        out.write("new 1\n")
        assert target.read_text(encoding="utf-8") == "old\n"  # not yet: only on success
        out.buffer.write("new 2 é\n".encode())
        out.write("new 3\n")
    assert target.read_text(encoding="utf-8") == "new 1\nnew 2 é\nnew 3\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    fresh = tmp_path / "fresh.csv"
    with open_output(str(fresh)) as out:
        out.write("x\n")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


def test_a_symlinked_target_is_written_through_the_link(tmp_path: Path) -> None:
    from screening.sink import open_output

    real = tmp_path / "real.jsonl"
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with open_output(str(link)) as out:
        out.write("new\n")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new\n"


def test_an_error_inside_the_run_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    from screening.sink import open_output

    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with open_output(str(target)) as out:
            out.write("new\n" * 100_000)
            raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_unwritable_targets_are_output_errors(tmp_path: Path) -> None:
    from screening.sink import open_output

    with pytest.raises(OutputError, match="is a directory"):
        with open_output(str(tmp_path)):
            pass
    with pytest.raises(OutputError, match="cannot write the output file .*missing"):
        with open_output(str(tmp_path / "missing" / "out.jsonl")):
            pass
    if os.geteuid() != 0:
        locked = tmp_path / "locked.jsonl"
        locked.write_text("keep\n", encoding="utf-8")
        locked.chmod(0o444)
        with pytest.raises(OutputError, match="Permission denied"):
            with open_output(str(locked)) as out:
                out.write("x\n")
        assert locked.read_text(encoding="utf-8") == "keep\n"


def test_a_device_target_is_written_directly() -> None:
    from screening.sink import open_output

    with open_output(os.devnull) as out:
        out.write("row\n")
        out.buffer.write(b"row\n")
    assert os.path.exists(os.devnull) and stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "text"])
def test_rows_through_the_sink_are_the_same_bytes_as_through_a_text_stream(paper: screening.Ruleset,
                                                                          tmp_path: Path, fmt: str) -> None:
    from screening.sink import open_output

    rows = _screen(paper, *(base_record(candidate_id=f"T-{i}", consent=["signed", "pending"][i % 2])
                            for i in range(600)))
    blocks = [("".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows[i:i + 250])
               .encode(), len(rows[i:i + 250])) for i in range(0, 600, 250)]
    expected = io.StringIO()
    reference = RowWriter(expected, fmt, paper)
    for row in rows[:50]:
        reference.write(row)
    for data, count in blocks:
        reference.write_block(data, count)
    reference.close()
    target = tmp_path / f"out.{fmt}"
    with open_output(str(target)) as out:
        writer = RowWriter(out, fmt, paper)
        for row in rows[:50]:
            writer.write(row)
        for data, count in blocks:
            writer.write_block(data, count)
        writer.close()
    assert target.read_text(encoding="utf-8") == expected.getvalue()


# ---------------------------------------------------------------------------------------------
# 3. CSV: quoting and formula cells


def _forged(paper: screening.Ruleset) -> dict[str, Any]:
    row = _screen(paper, base_record())[0]
    row["candidate_id"] = "A-1\rZZ-9999"  # a bare CR only: today's writer leaves it unquoted
    row["site"] = "site, with\nnewline"
    row["warnings"] = ['say "hi"', "bare\rcr"]
    return row


def test_csv_quotes_every_cell_with_cr_lf_comma_or_quote_so_reading_back_gives_the_rows_written(
        paper: screening.Ruleset) -> None:
    row = _forged(paper)
    text = _render([row, row], paper, "csv")
    read = list(csv.reader(io.StringIO(text, newline="")))
    assert len(read) == 3
    assert read[1] == read[2]
    assert read[1][0] == row["candidate_id"] and read[1][1] == row["site"]
    assert read[1][7] == 'say "hi" | bare\rcr'
    assert not any(r[0].startswith("ZZ-9999") for r in read)


@pytest.mark.parametrize("lead", ["=", "+", "-", "@", "\t", "\r", "＝"])
def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised(paper: screening.Ruleset,
                                                                           lead: str) -> None:
    row = _screen(paper, base_record())[0]
    row["candidate_id"] = lead + "HYPERLINK(\"http://x\",\"click\")"
    row["site"] = "-2+3"
    read = list(csv.reader(io.StringIO(_render([row], paper, "csv"), newline="")))
    assert read[1][0] == "'" + row["candidate_id"]
    assert read[1][1] == "'-2+3"
    assert read[1][2] == "eligible"
    raw = list(csv.reader(io.StringIO(_render([row], paper, "csv", csv_formula_guard=False), newline="")))
    assert raw[1][0] == row["candidate_id"] and raw[1][1] == "-2+3"


def test_csv_guard_is_documented() -> None:
    from screening import output

    assert "formula" in (output.__doc__ or "")
    doc = (ROOT / "docs" / "csv.md").read_text(encoding="utf-8")
    assert "csv_formula_guard" in doc or "--no-csv-formula-guard" in doc
    assert "'" in doc and "=" in doc


# ---------------------------------------------------------------------------------------------
# 4. text: control characters and bidi overrides


def test_a_newline_in_an_id_cannot_forge_a_line(paper: screening.Ruleset) -> None:
    row = _screen(paper, base_record(candidate_id="A-1\nZZ-9999: ELIGIBLE — Randomized"))[0]
    text = _render([row], paper, "text")
    assert not any(line.startswith("ZZ-9999") for line in text.splitlines())
    assert text.startswith("A-1\\nZZ-9999: ELIGIBLE")


def test_control_and_bidi_characters_are_shown_escaped_everywhere_text_shows_a_value(
        paper: screening.Ruleset) -> None:
    nasty = "\x1b]8;;http://x\x07ESC\x1b[2J\u202eRTL\u2066\u200f\u061c\r\x9b\x00"
    row = _screen(paper, base_record(
        candidate_id="C" + nasty, site="S" + nasty,
        medications=[{"name": "warfarin" + nasty, "start_date": "2023-01-01", "ongoing": True}]))[0]
    row["warnings"] = ["W" + nasty]
    row["ask_next"] = ["conditions.x" + nasty]
    row["criteria_set_check"] = {"set": "other", "version": "1", "decision": "error", "error": "E" + nasty}
    error = {"candidate_id": "line 3" + nasty, "site": None, "decision": "error", "category": "error",
             "error": "line 3: bad" + nasty, "error_fields": [""]}
    text = _render([row, error], paper, "text")
    for char in "\x1b\x07\u202e\u2066\u200f\u061c\r\x9b\x00":
        assert char not in text, repr(char)
    escaped = "\\x1b]8;;http://x\\x07ESC\\x1b[2J\\u202eRTL\\u2066\\u200f\\u061c\\r\\x9b\\x00"
    for where in ("C", "S", "warfarin", "W", "conditions.x", "E", "line 3", "line 3: bad"):
        assert where + escaped in text, where
    assert text.count("\n") == len(text.splitlines())  # every newline is one of the writer's own


def test_visible_leaves_ordinary_text_alone() -> None:
    from screening.text import visible

    plain = "Third People's Hospital of Chengdu — 成都市第三人民医院, age ≥ 65 … ✓ café"
    assert visible(plain) is plain
    assert visible("a\tb\nc\\d") == "a\\tb\\nc\\d"


# ---------------------------------------------------------------------------------------------
# 5. text: eligible with consent signed


def test_eligible_with_consent_signed_does_not_read_as_if_the_tool_had_randomised(paper: screening.Ruleset) -> None:
    row = _screen(paper, base_record())[0]
    assert row["category"] == paper.consort["eligible"] == "randomized"
    headline = text_block(row, paper).splitlines()[0]
    assert "— Randomized" not in headline
    assert headline == "T-001 (test site): ELIGIBLE — consent signed; every criterion met, next CONSORT box: Randomized"
    relabelled = dataclasses.replace(paper, consort={**paper.consort, "labels": {
        **paper.consort["labels"], "randomized": "Allocated"}})
    assert text_block(row, relabelled).splitlines()[0].endswith("next CONSORT box: Allocated")
    pending = _screen(paper, base_record(consent="pending"))[0]
    assert text_block(pending, paper).splitlines()[0] == (
        "T-001 (test site): ELIGIBLE — pending: waiting for I4 Written informed consent")


# ---------------------------------------------------------------------------------------------
# 6. empty output


@pytest.mark.parametrize("fmt, expected", [("csv", "header"), ("json", "[]\n"), ("jsonl", ""), ("text", "")])
def test_empty_output_is_still_a_valid_document(paper: screening.Ruleset, fmt: str, expected: str) -> None:
    from screening.output import csv_header

    text = _render([], paper, fmt)
    if expected == "header":
        assert list(csv.reader(io.StringIO(text, newline=""))) == [csv_header(paper)]
    else:
        assert text == expected


# ---------------------------------------------------------------------------------------------
# The command line



def test_cli_refuses_an_output_that_is_the_input(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(base_record()) + "\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for target in (source, link):
        result = subprocess.run([str(ROOT / ".venv" / "bin" / "nlc-screen"), "screen", str(source), "-o",
                                 str(target)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 4, result.stderr
        assert "is the input" in result.stderr
    assert source.read_text(encoding="utf-8") == json.dumps(base_record()) + "\n"


def test_cli_file_size_limit_is_exit_4_with_the_target_untouched(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(base_record(candidate_id=f"T-{i}")) + "\n" for i in range(300)),
                      encoding="utf-8")
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "nlc-screen"), "screen", str(source), "--format", "jsonl",
                             "-o", str(target)], capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and "File too large" in result.stderr
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
