"""The CONSORT diagram (issue 18, first slice): `audit --diagram FILE` in SVG, PNG, DOT and Mermaid,
its numbers those of the audit, for both trials' packs and both languages."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli

from .conftest import FIXTURES, needs_program

#: SVG and PNG are drawn by Graphviz's dot program (the DOT and Mermaid cases need nothing)
needs_dot = needs_program("dot", package="graphviz", what="drawing SVG and PNG")


def _decisions(tmp_path: Path, fixture: str, rules: str) -> Path:
    out = tmp_path / "decisions.jsonl"
    result = CliRunner().invoke(cli.main, ["screen", str(FIXTURES / fixture / "candidates.jsonl"), "--rules", rules,
                                           "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _svg_texts(path: Path) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", t)).strip()
            for t in re.findall(r"<text[^>]*>.*?</text>", path.read_text(encoding="utf-8"), re.S)]


def _numbers(texts: list[str]) -> list[int]:
    return [int(n) for t in texts for n in re.findall(r"\(n = (\d+)\)", t)]


@needs_dot
def test_the_figure1_diagram_shows_the_papers_numbers(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path, "figure1", "paper-2024")
    svg = tmp_path / "flow.svg"
    result = CliRunner().invoke(cli.main, ["audit", str(decisions), "--expect", "figure1", "--diagram", str(svg)])
    assert result.exit_code == 0, result.output
    texts = _svg_texts(svg)
    assert texts[0] == "Assessed for eligibility (n = 310)"
    assert _numbers(texts) == [310, 111, 56, 40, 26, 0, 0, 14, 15, 199]
    assert "Randomized (n = 199)" in texts and not any("Pending" in t for t in texts)


@needs_dot
def test_the_second_trials_diagram_draws_its_own_boxes(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path, "roguin-2017", "roguin-2017")
    svg = tmp_path / "flow.svg"
    assert CliRunner().invoke(cli.main, ["audit", str(decisions), "--diagram", str(svg)]).exit_code == 0
    texts = _svg_texts(svg)
    assert _numbers(texts) == [166, 72, 57, 15, 94]
    assert any(t.startswith("Declined to participate") for t in texts)


@needs_dot
def test_a_chinese_png_and_a_pending_box(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path, "figure1", "paper-2024")
    rows = decisions.read_text(encoding="utf-8").splitlines()
    result = CliRunner().invoke(cli.main, ["screen", "-", "--format", "jsonl"],
                                input='{"candidate_id":"P-1","screening_start":"2023-03-01"}\n')
    (tmp_path / "more.jsonl").write_text("\n".join(rows) + "\n" + result.stdout, encoding="utf-8")
    png = tmp_path / "flow.png"
    svg = tmp_path / "flow.svg"
    for target in (png, svg):
        ran = CliRunner().invoke(cli.main, ["audit", str(tmp_path / "more.jsonl"), "--diagram", str(target),
                                            "--lang", "zh"])
        assert ran.exit_code == 0, ran.output  # one more candidate than Figure 1, pending
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    texts = _svg_texts(svg)
    assert texts[0] == "接受资格评估 (n = 311)" and any(t.startswith("待定") and "(n = 1)" in t for t in texts)


def test_dot_and_mermaid_need_nothing_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decisions = _decisions(tmp_path, "figure1", "paper-2024")
    monkeypatch.setenv("PATH", "/nonexistent")  # no dot anywhere
    for suffix, first in ((".dot", "digraph consort {"), (".mmd", "flowchart TD")):
        target = tmp_path / f"flow{suffix}"
        assert CliRunner().invoke(cli.main, ["audit", str(decisions), "--diagram", str(target)]).exit_code == 0
        text = target.read_text(encoding="utf-8")
        assert text.startswith(first) and "(n = 310)" in text and "(n = 199)" in text
    missing = CliRunner().invoke(cli.main, ["audit", str(decisions), "--diagram", str(tmp_path / "flow.svg")])
    assert missing.exit_code == 1 and "apt-get install graphviz" in missing.output
    wrong = CliRunner().invoke(cli.main, ["audit", str(decisions), "--diagram", str(tmp_path / "flow.pdf")])
    assert wrong.exit_code == 1 and ".svg, .png, .dot, .mmd" in wrong.output
