"""What a screener at the desk reads (issue 13): brief text output, questions instead of field paths."""

from __future__ import annotations

import json

from click.testing import CliRunner

import cli

from .conftest import ROOT, base_record

ONE = str(ROOT / "examples" / "one.json")
SPARSE = str(ROOT / "examples" / "sparse.json")


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, list(args), input=stdin)
    return result.exit_code, result.output


def test_brief_shows_what_rules_out_what_is_open_and_the_warnings_but_no_passing_criterion() -> None:
    code, out = _run("screen", ONE, "--brief")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("CD-0420 (Third People's Hospital of Chengdu): EXCLUDED")
    assert lines[1].startswith("  x E14 Vitamin K antagonist within 2 months before enrollment: ")
    assert lines[2].startswith("  ! I3 ") and "the investigator decides" in lines[2]
    assert lines[3].startswith("      investigator decides: whether the cramps are still nocturnal leg cramps")
    assert lines[3].endswith("in the screening log")  # what to decide, and where to record it
    assert lines[4] == "  ? unknown: I2, I4"
    assert lines[5].startswith("  warning: decision made on a planned enrollment_date")
    assert len(lines) == 6  # no "+ passes" line, no criteria table, no stamp
    _, full = _run("screen", ONE)
    assert "+ E1" in full and "+ E1" not in out and "rules: paper-2024" not in out


def test_brief_asks_the_open_questions_and_is_one_screen() -> None:
    _, out = _run("screen", SPARSE, "--brief")
    lines = out.splitlines()
    assert lines[1].startswith("  ? unknown: E1, E2,") and lines[2] == "  ask next:"
    assert lines[3] == ("    Has the candidate ever had hypothyroidism (now, in the past, or never)? [conditions.hypothyroidism]"
                        " — answer: one of active / history / absent / unknown")
    assert len(lines) < 30


def test_an_eligible_candidate_awaiting_consent_is_asked_for_it() -> None:
    record = base_record(candidate_id="C-1", consent="pending")
    _, out = _run("screen", "-", "--brief", stdin=json.dumps(record))
    assert "ELIGIBLE" in out.splitlines()[0]
    assert ("    Has the candidate signed the written informed consent, or declined or withdrawn? [consent]"
            " — answer: one of pending / signed / declined / withdrawn") in out
    _, jsonl = _run("screen", "-", "--format", "jsonl", stdin=json.dumps(record))
    assert json.loads(jsonl)["ask_next"] == ["consent"]


def test_brief_is_for_text_output_only() -> None:
    code, out = _run("screen", ONE, "--brief", "--format", "jsonl")
    assert code == 2 and "--brief" in out


def test_the_specification_pages_in_docs_criteria_are_current() -> None:
    """docs/criteria/<set>.md is what `nlc-screen rules --format markdown` prints for every current
    shipped set: regenerate them when a set changes (the command is in each page)."""
    import screening

    sets = sorted({name for pack in screening.protocol.available_packs() for name in pack.sets})
    assert sets == ["paper-2024", "registry-2023", "roguin-2017"]
    pages = sorted(p.name for p in (ROOT / "docs" / "criteria").glob("*.md"))
    assert pages == sorted([f"{name}.md" for name in sets] + [f"{name}.zh.md" for name in sets])
    for name in sets:
        for lang, suffix in (("en", ".md"), ("zh", ".zh.md")):
            code, page = _run("rules", "--format", "markdown", "--rules", name, "--lang", lang)
            assert code == 0
            shipped = (ROOT / "docs" / "criteria" / f"{name}{suffix}").read_text(encoding="utf-8")
            assert shipped == page, f"docs/criteria/{name}{suffix} is out of date: regenerate it"
            assert screening.load_ruleset(name).sha256 in page
            for cid in screening.load_ruleset(name).precedence:
                assert f"\n### {cid} — " in page


def test_the_specification_page_shows_each_rule_its_reason_and_the_questions() -> None:
    _, page = _run("rules", "--format", "markdown", "--rules", "paper-2024")
    assert "| met | cond_hypothyroidism = active | Hypothyroidism is active" in page
    assert "- `conditions.hypothyroidism`: Has the candidate ever had hypothyroidism" in page
    assert "/ 候选人目前或既往是否患有甲状腺功能减退症？" in page
    assert "| `min_age_years` | 65 | the youngest age included, in completed years |" in page


def test_every_spec_citation_of_the_sets_is_a_section_of_the_reconciliation_page_in_the_repository() -> None:
    """The sets cite the reconciliation as ``criteria.md §4.3 E1, D10``; docs/reconciliation.md
    restates it in this project's words with the same numbers, and the spec pages link there."""
    import re

    import screening

    page = (ROOT / "docs" / "reconciliation.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ (§\d+(?:\.\d+)?) ", page, re.M))
    decisions = set(re.findall(r"^- \*\*(D\d+)\*\*", page, re.M))
    cited = 0
    for name in ("paper-2024", "registry-2023"):
        for crit in screening.load_ruleset(name).ordered:
            assert crit.spec.startswith("criteria.md "), crit.id
            for section in re.findall(r"§\d+(?:\.\d+)?", crit.spec):
                assert section in headings, (name, crit.id, section)
                cited += 1
            for decision in re.findall(r"\bD\d+\b", crit.spec):
                assert decision in decisions, (name, crit.id, decision)
            for cid in re.findall(r"\b[IE]\d+\b", crit.spec):
                assert f"**{cid}**" in page, (name, crit.id, cid)
        md = (ROOT / "docs" / "criteria" / f"{name}.md").read_text(encoding="utf-8")
        assert "](../reconciliation.md)" in md
    assert cited > 30
