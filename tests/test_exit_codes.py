"""The exit-code table (README "Exit codes", screening.errors): each code comes from a real run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screening import errors

from .conftest import ROOT, base_record

NLC = str(Path(sys.executable).parent / "nlc-screen")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def run(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([NLC, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exit") / "big.jsonl"
    subprocess.run([NLC, "generate", "--n", "60000", "--seed", "3", "-o", str(path)], check=True, timeout=120)
    return path


def test_the_readme_table_lists_every_code() -> None:
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    table = README.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert {int(c) for c in re.findall(r"^\|\s*(\d+)\s*\|", table, re.M)} == codes


def test_0_every_record_screened() -> None:
    done = run("screen", "-", "--format", "jsonl", stdin=json.dumps(base_record()).encode())
    assert done.returncode == errors.EXIT_OK and done.stderr == b""


@pytest.mark.parametrize("stdin, args, message", [
    (b"", ["screen", "-"], b"0 records read"),
    (b"\n \n", ["screen", "-"], b"0 records read"),
    (b"candidate_id,screening_start\n", ["screen", "-", "--input-format", "csv"], b"0 records read"),
    (b'[{"candidate_id":"A","screening_start":"2023-03-01"},{"candidate_id":"B","x":"never closes}, '
     b'{"candidate_id":"C","screening_start":"2023-03-01"}]', ["screen", "-"], b"could not be read: about 1 more"),
    (b"{}", ["screen", "-", "--rules", "no-such-set"], b"no criteria set named"),
    (b"", ["audit", "-"], b"no decision rows"),
    (b"", ["screen", "/no/such/file.jsonl"], b"cannot read the input /no/such/file.jsonl"),
    (b"", ["screen", "/tmp"], b"cannot read the input /tmp"),
    (b"", ["audit", "/no/such/decisions.jsonl"], b"cannot read the input"),
])
def test_1_unreadable_or_empty_input_or_rules(stdin: bytes, args: list[str], message: bytes) -> None:
    done = run(*args, stdin=stdin)
    assert done.returncode == errors.EXIT_UNREADABLE
    assert message in done.stderr + done.stdout
    assert b"Traceback" not in done.stderr


def test_1_an_empty_csv_output_still_has_its_header() -> None:
    done = run("screen", "-", "--format", "csv", stdin=b"")
    assert done.returncode == errors.EXIT_UNREADABLE
    assert done.stdout.decode().startswith("candidate_id,site,decision,category")


@pytest.mark.parametrize("args", [["screen", "-", "--formt", "json"], ["screen", "-", "--workers", "33"],
                                  ["screen", "-", "--workers", "0"]])
def test_2_usage_error(args: list[str]) -> None:
    assert run(*args, stdin=b"{}").returncode == errors.EXIT_USAGE


def test_3_some_records_were_error_rows() -> None:
    text = json.dumps(base_record()) + "\n" + '{"candidate_id": "B", "screening_start": "2023-02-30"}\n'
    done = run("screen", "-", "--format", "jsonl", stdin=text.encode())
    assert done.returncode == errors.EXIT_RECORD_ERRORS
    assert len(done.stdout.splitlines()) == 2
    assert b"1 of 2 record(s) could not be read" in done.stderr


def test_4_output_cannot_be_written(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(base_record()) + "\n")
    before = source.read_bytes()
    done = run("screen", str(source), "-o", str(source))
    assert done.returncode == errors.EXIT_OUTPUT and source.read_bytes() == before
    full = run("screen", str(source), "-o", "/dev/full")
    assert full.returncode == errors.EXIT_OUTPUT
    assert b"No space left on device" in full.stderr and b"Traceback" not in full.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_130_interrupted(big: Path, tmp_path: Path, sig: signal.Signals, workers: str) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([NLC, "screen", str(big), "--format", "jsonl", "-o", str(out), "--workers", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30  # wait until the run is writing (its temporary file exists)
    while not [p for p in os.listdir(tmp_path) if p.endswith(".part")] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == errors.EXIT_INTERRUPTED, err
    assert b"Interrupted" in err and b"Traceback" not in err
    assert not out.exists()  # a -o file appears only when the run is complete
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_141_the_reader_went_away(big: Path, workers: str) -> None:
    proc = subprocess.Popen([NLC, "screen", str(big), "--format", "jsonl", "--workers", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"{")
    proc.stdout.close()  # as `| head -1` does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == errors.EXIT_BROKEN_PIPE
    assert err == b""
