"""`audit --attrition` and the per-criterion columns (issue 18): the waterfall in precedence order,
"excluded by this criterion only", the multi-reason tally, as a table, JSON and CSV, `--by site`.

The expected numbers are computed here from the decision rows directly (each criterion's status and
kind), not from the audit's own counters."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cli
from screening import load_ruleset

from .conftest import FIXTURES

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("attrition") / "decisions.jsonl"
    assert CliRunner().invoke(cli.main, ["screen", FIGURE1, "--format", "jsonl", "-o", str(out)]).exit_code == 0
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _failing(row: dict[str, Any], kinds: dict[str, str], precedence: list[str]) -> list[str]:
    """The criteria a row fails, in precedence order, from the statuses alone."""
    fails = {cid for cid, result in row["criteria"].items()
             if result["status"] == ("met" if kinds[cid] == "exclusion" else "not_met")}
    return [cid for cid in precedence if cid in fails]


def _audit(*args: str) -> Any:
    result = CliRunner().invoke(cli.main, ["audit", *args])
    assert result.exit_code == 0, result.output
    return result


def test_waterfall_only_and_any_match_the_rows(decisions: Path) -> None:
    rs = load_ruleset("paper-2024")
    kinds = {cid: c.kind for cid, c in rs.criteria.items()}
    precedence = list(rs.precedence)
    failing = [_failing(row, kinds, precedence) for row in _rows(decisions)]
    report = json.loads(_audit(str(decisions), "--attrition", "--format", "json").stdout)
    steps = report["attrition"]["total"]["steps"]
    assert [s["criterion"] for s in steps] == precedence
    remaining = 310
    for step in steps:
        cid = step["criterion"]
        removed = sum(1 for f in failing if f and f[0] == cid)
        remaining -= removed
        assert step["removed"] == removed, cid
        assert step["remaining"] == remaining, cid
        assert step["excluded_only"] == sum(1 for f in failing if f == [cid]), cid
        assert step["excluded_any"] == sum(1 for f in failing if cid in f), cid
        assert report["criteria"][cid]["excluded_any"] == step["excluded_any"]
        assert report["criteria"][cid]["excluded_by_this_only"] == step["excluded_only"]
        assert report["criteria"][cid]["excluded_first"] == removed
    assert steps[-1]["remaining"] == 199  # Figure 1: all but the 111 excluded are randomised
    assert sum(s["removed"] for s in steps) == report["counts"]["excluded"] == 111
    assert report["attrition"]["total"]["check"] == []
    # the multi-reason tally counts a candidate under each criterion it fails: more than the excluded here
    assert sum(s["excluded_any"] for s in steps) > 111


def test_per_criterion_columns_say_what_they_count(decisions: Path) -> None:
    report = json.loads(_audit(str(decisions), "--format", "json").stdout)
    crits = report["criteria"]
    assert sum(c["excluded_first"] for c in crits.values()) == report["counts"]["excluded"]
    # the decision's primary criterion, kept as it was, also names eligible candidates (I4): the new column does not
    assert crits["I4"]["primary"] > crits["I4"]["excluded_first"] == 15
    assert sum(c["pending_first"] for c in crits.values()) == report["counts"]["pending"] == 0
    text = _audit(str(decisions)).stdout
    assert "excluded: first  only   any   pending: first" in text
    assert "the column adds up" in text and "to Excluded" in text


def test_attrition_by_site_adds_up_and_csv_has_every_group_and_step(decisions: Path) -> None:
    report = json.loads(_audit(str(decisions), "--attrition", "--by", "site", "--format", "json").stdout)
    groups = report["attrition"]["groups"]
    assert len(groups) == 2
    total = report["attrition"]["total"]
    assert sum(g["assessed"] for g in groups.values()) == total["assessed"] == 310
    for i, step in enumerate(total["steps"]):
        for key in ("removed", "remaining", "excluded_only", "excluded_any"):
            assert sum(g["steps"][i][key] for g in groups.values()) == step[key], (step["criterion"], key)
    table = list(csv.DictReader(io.StringIO(_audit(str(decisions), "--attrition", "--by", "site",
                                                   "--format", "csv").stdout)))
    assert len(table) == 19 * 3
    assert {row["group"] for row in table} == {"total", *groups}
    last = [row for row in table if row["group"] == "total"][-1]
    assert (last["criterion"], last["remaining"]) == ("I4", "199")


def test_pending_first_counts_undetermined_candidates_by_their_first_open_criterion(tmp_path: Path) -> None:
    sparse = json.loads((Path(cli.__file__).parent / "examples" / "sparse.json").read_text(encoding="utf-8"))
    records = [dict(sparse, candidate_id=f"S-{i}") for i in range(3)]
    source = tmp_path / "sparse.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "decisions.jsonl"
    assert CliRunner().invoke(cli.main, ["screen", str(source), "--format", "jsonl", "-o", str(out)]).exit_code == 0
    rows = _rows(out)
    assert {r["decision"] for r in rows} == {"undetermined"}
    first_open = rows[0]["primary_criterion"]
    report = json.loads(_audit(str(out), "--attrition", "--format", "json").stdout)
    assert report["criteria"][first_open]["pending_first"] == 3
    assert sum(c["pending_first"] for c in report["criteria"].values()) == 3
    assert report["attrition"]["total"]["steps"][-1]["remaining"] == 3  # undetermined: not excluded


def test_text_attrition_in_both_languages(decisions: Path) -> None:
    english = _audit(str(decisions), "--attrition").stdout
    assert "Attrition in precedence order: 310 assessed" in english
    assert "excluded 111; not excluded by any criterion 199" in english
    chinese = _audit(str(decisions), "--attrition", "--lang", "zh").stdout
    assert "按优先顺序的逐项剔除：共评估 310 人" in chinese and "共排除 111 人" in chinese


def test_a_row_whose_box_is_not_its_first_failing_criterion_is_flagged(decisions: Path, tmp_path: Path) -> None:
    rows = _rows(decisions)
    forged = next(r for r in rows if r["primary_criterion"] == "E1" and r["criteria"]["E7"]["status"] == "not_met")
    forged["criteria"]["E7"]["status"] = "met"  # now fails E1 and E7; its box still says E1: consistent
    other = next(r for r in rows if r["primary_criterion"] == "E8")
    other["primary_criterion"] = "E14"  # a box that is not the first criterion the row fails
    path = tmp_path / "forged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = json.loads(CliRunner().invoke(cli.main, ["audit", str(path), "--attrition", "--format", "json"]).stdout)
    check = report["attrition"]["total"]["check"]
    assert any(c.startswith("E8:") for c in check) and any(c.startswith("E14:") for c in check)
    assert not any(c.startswith("E1:") or c.startswith("E7:") for c in check)


def test_csv_needs_attrition(decisions: Path) -> None:
    result = CliRunner().invoke(cli.main, ["audit", str(decisions), "--format", "csv"])
    assert result.exit_code == 2 and "use it with --attrition" in result.output


def test_by_ruleset_shows_no_total_because_counts_of_two_sets_do_not_add_up(decisions: Path, tmp_path: Path) -> None:
    other = tmp_path / "registry.jsonl"
    assert CliRunner().invoke(cli.main, ["screen", FIGURE1, "--rules", "registry-2023", "--format", "jsonl",
                                         "-o", str(other)]).exit_code == 0
    rows = decisions.read_text(encoding="utf-8").splitlines()[:150]
    renamed = [line.replace('"candidate_id":"', '"candidate_id":"R-', 1)
               for line in other.read_text(encoding="utf-8").splitlines()[-160:]]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(rows + renamed) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["audit", str(mixed), "--by", "ruleset", "--attrition", "--format", "json"])
    report = json.loads(result.stdout)
    assert report["breakdown"]["total"] is None and report["attrition"]["total"] is None
    groups = report["attrition"]["groups"]
    assert sorted(g["assessed"] for g in groups.values()) == [150, 160]
    text = CliRunner().invoke(cli.main, ["audit", str(mixed), "--by", "ruleset", "--attrition"]).stdout
    assert "total" not in text.splitlines()[0] and "Attrition in precedence order" not in text
    table = list(csv.DictReader(io.StringIO(CliRunner().invoke(
        cli.main, ["audit", str(mixed), "--by", "ruleset", "--attrition", "--format", "csv"]).stdout)))
    assert len(table) == 2 * 19 and "total" not in {row["group"] for row in table}
