"""Coordinators' breakdowns (issue 18, second slice): boxes by the criterion that excluded, `audit --by
FIELD`, rows from several criteria sets refused first or counted apart with `--by ruleset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import cli

from .conftest import FIXTURES

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")


def _decisions(tmp_path: Path, rules: str = "paper-2024") -> Path:
    out = tmp_path / f"{rules}.jsonl"
    assert CliRunner().invoke(cli.main, ["screen", FIGURE1, "--rules", rules, "--format", "jsonl", "-o",
                                         str(out)]).exit_code == 0
    return out


def _json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli.main, ["audit", *args, "--format", "json"])
    return json.loads(result.stdout)


def test_every_excluding_box_breaks_down_by_the_criterion_that_excluded(tmp_path: Path) -> None:
    report = _json(str(_decisions(tmp_path)))
    parts = report["by_primary_criterion"]
    counts = report["counts"]
    for box, by in parts.items():
        assert sum(by.values()) == counts[box], box
    secondary = parts["meeting_exclusion.secondary_cause"]
    assert set(secondary) <= {f"E{i}" for i in range(1, 12)} and len(secondary) > 1
    assert sum(parts["not_meeting_inclusion"].values()) == 56
    text = CliRunner().invoke(cli.main, ["audit", str(_decisions(tmp_path))]).stdout
    assert "        · E1 Hypothyroidism" in text


def test_by_site_gives_per_site_boxes_that_add_up_to_the_totals(tmp_path: Path) -> None:
    report = _json(str(_decisions(tmp_path)), "--by", "site")
    groups = report["breakdown"]["groups"]
    assert len(groups) == 2
    for box, total in report["breakdown"]["total"].items():
        assert sum(g[box] for g in groups.values()) == total, box
    assert report["breakdown"]["total"]["assessed"] == 310


def test_rows_of_two_sets_are_refused_on_the_first_line_or_counted_apart_by_ruleset(tmp_path: Path) -> None:
    paper = _decisions(tmp_path).read_text(encoding="utf-8").splitlines()
    registry = _decisions(tmp_path, "registry-2023").read_text(encoding="utf-8").splitlines()
    renamed = [line.replace('"candidate_id":"', '"candidate_id":"R-', 1) for line in registry]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(paper + renamed) + "\n", encoding="utf-8")
    refused = CliRunner().invoke(cli.main, ["audit", str(mixed)])
    assert refused.exit_code == 1 and refused.stdout.startswith("NOT A VALID COUNT: rows come from 2 criteria sets")
    apart = CliRunner().invoke(cli.main, ["audit", str(mixed), "--by", "ruleset", "--format", "json"])
    assert apart.exit_code == 0, apart.output
    groups = json.loads(apart.stdout)["breakdown"]["groups"]
    assert groups["paper-2024@1.3.0"]["randomized"] == 199
    assert groups["registry-2023@1.3.0"]["assessed"] == 310


def test_the_pending_list_names_each_pending_candidate_with_its_questions(tmp_path: Path) -> None:
    generated = tmp_path / "gen.jsonl"
    CliRunner().invoke(cli.main, ["generate", "--n", "300", "--seed", "9", "--mix", "undetermined=0.5,eligible=0.5",
                                  "-o", str(generated)])
    decisions = tmp_path / "d.jsonl"
    CliRunner().invoke(cli.main, ["screen", str(generated), "--format", "jsonl", "-o", str(decisions)])
    report = _json(str(decisions), "--pending")
    rows = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines()]
    awaiting = report["pending"]["eligible_awaiting_consent"]
    undetermined = report["pending"]["undetermined"]
    assert sum(map(len, awaiting.values())) == sum(1 for r in rows if r["decision"] == "eligible"
                                                   and r["category"] == "pending")
    assert sum(map(len, undetermined.values())) == sum(1 for r in rows if r["decision"] == "undetermined")
    assert sum(map(len, awaiting.values())) + sum(map(len, undetermined.values())) == report["counts"]["pending"]
    assert all(c["ask_next"] == ["consent"] for found in awaiting.values() for c in found)
    tally = report["pending"]["most_often_open"]
    assert [t["candidates"] for t in tally] == sorted((t["candidates"] for t in tally), reverse=True)
    text = CliRunner().invoke(cli.main, ["audit", str(decisions), "--pending", "--lang", "zh"]).stdout
    assert "符合条件，等待知情同意" in text and "[consent]" in text and "最常未决的问题" in text
