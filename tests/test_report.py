"""`audit --report FILE.html` (issue 18): one self-contained page, in English or Chinese, printable.

The page's numbers are read back from its HTML and compared with `audit --format json` and with the
paper's Figure 1; a headless Chromium opens it offline, screenshots it and prints it to PDF. The
screenshots and the PDF are kept in tests/artifacts/ (or $NLC_SCREEN_ARTIFACTS) to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
from screening import load_ruleset

from .conftest import FIXTURES, needs_program

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")
ARTIFACTS = Path(os.environ.get("NLC_SCREEN_ARTIFACTS") or Path(__file__).parent / "artifacts")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: Graphviz draws the page's diagram, and Chromium checks the page
needs_dot = needs_program("dot", package="graphviz", what="the report's diagram")
needs_chromium = needs_program("chromium", "chromium-browser", package="chromium",
                               what="opening and printing the report in a browser")


class _Page(HTMLParser):
    """What the report page holds: every tag's attributes, the text of each section's table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.section: str | None = None
        self.rows: dict[str, list[list[str]]] = {}
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self.section = dict(attrs).get("id")
        elif tag == "tr" and self.section:
            self.rows.setdefault(self.section, []).append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.section:
            self.rows[self.section][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "decisions.jsonl"
    assert CliRunner().invoke(cli.main, ["screen", FIGURE1, "--format", "jsonl", "-o", str(out)]).exit_code == 0
    return out


def _report(decisions: Path, target: Path, *args: str) -> _Page:
    result = CliRunner().invoke(cli.main, ["audit", str(decisions), "--report", str(target), *args])
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed(target.read_text(encoding="utf-8"))
    return page


def _counts(page: _Page) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in page.rows["counts"][1:] if not row[0].startswith("·")}


@needs_dot
def test_report_page_holds_the_audit_and_loads_nothing(decisions: Path, tmp_path: Path) -> None:
    page = _report(decisions, tmp_path / "report.html", "--expect", "figure1")
    # self-contained: no script, style sheet, image, frame or font from anywhere; links only inside the page
    assert not [t for t, _ in page.tags if t in ("script", "link", "img", "iframe", "object", "embed")]
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, name, value)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "@import" not in html and "url(" not in html
    # the diagram is inline SVG with Figure 1's numbers
    svg = html[html.index("<svg"):html.index("</svg>")]
    for n in (310, 111, 56, 40, 26, 14, 15, 199):
        assert f"(n = {n})" in svg, n
    # the count table agrees with audit --format json, and with the paper
    report = json.loads(CliRunner().invoke(cli.main, ["audit", str(decisions), "--format", "json"]).stdout)
    counts = _counts(page)
    assert counts["Assessed for eligibility"] == report["counts"]["assessed"] == 310
    assert counts["Excluded"] == 111 and counts["Randomized"] == 199
    assert counts["Recent vitamin K antagonist or vitamin K2 (E14, E15)"] == 14
    assert all(row[1] == row[2] for row in page.rows["counts"][1:] if row[2]), "every expected count matches"
    parts = [row for row in page.rows["counts"] if row[0].startswith("· E")]
    assert sum(int(row[1]) for row in parts if row[0][3:].split()[0] in {f"{i}" for i in range(1, 12)}) == 26
    # per criterion, by site, attrition: the same numbers as the JSON report
    criteria = {row[0].split()[0]: [int(c) for c in row[1:]] for row in page.rows["criteria"][1:]}
    for cid, c in report["criteria"].items():
        assert criteria[cid] == [c["met"], c["not_met"], c["unknown"], c["review"], c["excluded_first"],
                                 c["excluded_by_this_only"], c["excluded_any"], c["pending_first"]], cid
    sites = page.rows["groups"]
    assert len(sites[0]) == 4  # box, total and the two hospitals
    for row in sites[1:]:
        assert int(row[1]) == int(row[2]) + int(row[3]), row[0]
    steps = [row for row in page.rows["attrition"] if row and re.fullmatch(r"\d+", row[0])]
    assert len(steps) == 19 and steps[-1][1].startswith("I4") and steps[-1][3] == "199"
    assert "No candidate is pending." in "".join(page.text)
    current = load_ruleset("paper-2024")
    assert f"paper-2024 {current.version} (sha256 {current.sha256})" in "".join(page.text)


@needs_dot
def test_report_in_chinese_and_with_pending_candidates(decisions: Path, tmp_path: Path) -> None:
    sparse = json.loads((Path(cli.__file__).parent / "examples" / "sparse.json").read_text(encoding="utf-8"))
    rows = decisions.read_text(encoding="utf-8")
    extra = tmp_path / "sparse.jsonl"
    extra.write_text("".join(json.dumps(dict(sparse, candidate_id=f"P-{i}")) + "\n" for i in range(2)),
                     encoding="utf-8")
    screened = CliRunner().invoke(cli.main, ["screen", str(extra), "--format", "jsonl"])
    mixed = tmp_path / "decisions.jsonl"
    mixed.write_text(rows + screened.stdout, encoding="utf-8")
    page = _report(mixed, tmp_path / "report.zh.html", "--lang", "zh")
    html = (tmp_path / "report.zh.html").read_text(encoding="utf-8")
    assert '<html lang="zh-Hans">' in html
    text = "".join(page.text)
    assert "CONSORT 流程图：入组" in text and "逐项剔除" in text and "待定候选人" in text
    assert "草稿" in text  # the translation's review mark
    pending = page.rows["pending"]
    total = next(row for row in pending if row[0] == "合计")
    assert int(total[1]) + int(total[2]) == 2
    questions = pending[pending.index(["人数", "问题", "字段"]) + 1:]
    assert questions and all(row[0] == "2" for row in questions[:3]), questions  # both ask the first questions
    assert all(re.search("[\u4e00-\u9fff]", row[1]) and ("." in row[2] or "_" in row[2]) for row in questions)


def test_report_without_graphviz_says_what_to_install(decisions: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result = CliRunner().invoke(cli.main, ["audit", str(decisions), "--report", str(tmp_path / "r.html")])
    assert result.exit_code != 0 and "apt-get install graphviz" in result.output
    assert not (tmp_path / "r.html").exists()


def _chromium(*args: str) -> subprocess.CompletedProcess[Any]:
    assert CHROMIUM is not None, "CI installs Debian's chromium"
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
             "--no-proxy-server", "--proxy-bypass-list=*"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root otherwise
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=90, check=False)


@needs_dot
@needs_chromium
@pytest.mark.timeout(300)
def test_a_browser_shows_and_prints_the_page_offline(decisions: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "zh"):
        page = ARTIFACTS / f"report.{lang}.html"
        _report(decisions, page, "--expect", "figure1", "--lang", lang)
        shot = ARTIFACTS / f"report.{lang}.png"
        pdf = ARTIFACTS / f"report.{lang}.pdf"
        for target in (shot, pdf):
            target.unlink(missing_ok=True)
        done = _chromium("--window-size=1100,2600", f"--screenshot={shot}", page.as_uri())
        assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1100
        assert len(png) > 100_000, "a page with a diagram and tables, not a blank one"
        done = _chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
        assert pdf.exists(), done.stderr.decode(errors="replace")[-2000:]
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF-")
        pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
        assert 2 <= pages <= 8, pages
        assert b"/MediaBox [0 0 594.95" in data or b"/MediaBox [0 0 595" in data, "A4"
