"""The Figure 1 cohort: each candidate lands in the box its generator intended, and the committed
files are exactly what the seeded generator writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import screening
from screening.io import read_records

from .conftest import FIXTURES

FIG = FIXTURES / "figure1"


def test_every_candidate_lands_in_its_intended_box(paper: screening.Ruleset) -> None:
    with (FIG / "candidates.jsonl").open(encoding="utf-8") as f:
        rows = list(screening.screen_items(read_records(f, "jsonl"), paper))
    expected = [json.loads(line) for line in (FIG / "expected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(expected) == 310
    for row, want in zip(rows, expected):
        got = {k: row.get(k) for k in ("site", "candidate_id", "decision", "category", "subcategory", "primary_criterion")}
        assert got == {k: want.get(k) for k in got}, row["criteria"]


def test_generator_reproduces_the_committed_cohort(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(FIG / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for name in ("candidates.jsonl", "expected.jsonl"):
        assert (tmp_path / name).read_bytes() == (FIG / name).read_bytes(), name
