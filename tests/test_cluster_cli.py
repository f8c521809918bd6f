"""`nlc-screen screen --engine dask` and `nlc-screen audit OUT_DIR` (issue 20): the command line over
screening.cluster, with the same decisions as the single-process run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli

from .conftest import FIXTURES


@pytest.mark.timeout(300)
def test_screen_on_dask_then_audit_the_output_directory(tmp_path: Path) -> None:
    lines = (FIXTURES / "figure1" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):
        (parts / f"part-{i}.jsonl").write_text("\n".join(lines[i * 110:(i + 1) * 110]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, ["screen", str(parts), "--engine", "dask", "--workers", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "310 record(s) in 3 partition(s)" in result.stderr
    for i in range(3):
        single = CliRunner().invoke(cli.main, ["screen", str(parts / f"part-{i}.jsonl"), "--format", "jsonl"])
        assert (out / f"part-{i}.decisions.jsonl").read_text(encoding="utf-8") == single.stdout
    audit = CliRunner().invoke(cli.main, ["audit", str(out), "--expect", "figure1", "--format", "json"])
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.stdout)["counts"]["randomized"] == 199


def test_dask_takes_a_directory_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    runner = CliRunner()
    to_stdout = runner.invoke(cli.main, ["screen", str(tmp_path), "--engine", "dask"])
    assert to_stdout.exit_code == 2 and "name a directory with -o" in to_stdout.output
    with_log = runner.invoke(cli.main, ["screen", str(tmp_path), "--engine", "dask", "-o", str(tmp_path / "o"),
                                        "--log", f"sqlite:///{tmp_path}/l.db"])
    assert with_log.exit_code == 2 and "--log" in with_log.output
    stray = runner.invoke(cli.main, ["screen", "-", "--scheduler", "tcp://x:1"], input="")
    assert stray.exit_code == 2 and "--scheduler is for --engine dask" in stray.output
