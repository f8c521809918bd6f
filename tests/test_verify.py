"""nlc-screen verify (issue 19, point 3): every logged decision re-derived under the set stamped on it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import cli
import screening

from .conftest import FIXTURES, ROOT

FIGURE1 = str(FIXTURES / "figure1" / "candidates.jsonl")


def _run(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli.main, list(args), input=stdin)


def _verify_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = _run("verify", *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _moved_by_a_higher_minimum_age(records: list[dict[str, Any]], old: int, new: int) -> set[str]:
    """The candidates whose age criterion changes when the minimum age goes from ``old`` to ``new``,
    worked out from the records alone: those aged old..new-1 on screening_start (the set's age reference)
    met it and no longer do. (Someone younger than ``old`` who turns ``old`` before enrollment did not
    meet it either: the set says not_met, naming the disagreement.)"""
    moved = set()
    for record in records:
        if not record.get("birth_date") or not record.get("screening_start"):
            continue
        born, start = dt.date.fromisoformat(record["birth_date"]), dt.date.fromisoformat(record["screening_start"])
        if old <= _age(born, start) < new:
            moved.add(record["candidate_id"])
    return moved


def test_the_figure1_log_verifies_clean(log_url: str, tmp_path: Path) -> None:
    screened = _run("screen", FIGURE1, "--format", "jsonl", "-o", str(tmp_path / "out.jsonl"), "--log", log_url)
    assert screened.exit_code == 0, screened.output
    code, report = _verify_json("--log", log_url)
    assert code == 0 and report["clean"]
    assert (report["checked"], report["same"], report["differ"], report["erased"]) == (310, 310, 0, 0)
    [used] = report["sets"]
    assert (used["pack"], used["name"], used["path"]) == ("nlc-k2", "paper-2024", "rules/nlc-k2/paper-2024.yaml")
    text = _run("verify", "--log", log_url)
    assert text.exit_code == 0 and "310 the same, 0 different" in text.stdout and "Clean" in text.stdout


def test_a_threshold_edited_in_place_is_caught_with_exactly_the_decisions_it_changes(tmp_path: Path) -> None:
    # A site's copy of the pack; the set is screened with, then edited in place without a new version
    packs = tmp_path / "packs"
    shutil.copytree(ROOT / "rules" / "nlc-k2", packs / "nlc-k2")
    set_file = packs / "nlc-k2" / "paper-2024.yaml"
    log = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    screened = _run("screen", FIGURE1, "--rules", str(set_file), "--format", "jsonl", "-o", str(tmp_path / "o.jsonl"),
                    "--log", log)
    assert screened.exit_code == 0, screened.output
    assert _verify_json("--log", log, "--rules-dir", str(packs))[0] == 0  # clean before the edit

    text = set_file.read_text()
    assert text.count("min_age_years: 65") == 1
    set_file.write_text(text.replace("min_age_years: 65", "min_age_years: 70"))

    code, report = _verify_json("--log", log, "--rules-dir", str(packs))
    assert code == 1 and not report["clean"]
    [used] = report["sets"]
    assert used["found_sha256"] and used["found_sha256"] != used["sha256"]  # edited without a new version
    records = [json.loads(line) for line in Path(FIGURE1).read_text().splitlines() if line.strip()]
    assert screening.load_ruleset().parameters["age_reference"] == "screening_start"
    expected = _moved_by_a_higher_minimum_age(records, 65, 70)
    assert expected  # the cohort does have candidates aged 65 to 69
    differing = {d["candidate_id"] for d in report["differences"]}
    assert differing == expected
    assert report["differ"] == len(expected) and report["same"] == 310 - len(expected)
    for d in report["differences"]:  # the age criterion, and only what follows from it, changed
        assert d["logged"]["criteria"]["I1"] != d["now"]["criteria"]["I1"]
        assert (d["logged"]["criteria"]["I1"], d["now"]["criteria"]["I1"]) == ("met", "not_met")
        assert {cid for cid, status in d["now"]["criteria"].items() if d["logged"]["criteria"][cid] != status} == {"I1"}
        if d["logged"]["decision"] == "eligible" and d["now"]["criteria"]["I1"] == "not_met":
            assert (d["now"]["decision"], d["now"]["primary_criterion"]) == ("excluded", "I1")

    text = _run("verify", "--log", log, "--rules-dir", str(packs))
    assert text.exit_code == 1 and "CHANGED" in text.stdout and "I1 met -> not_met" in text.stdout


def test_an_entry_made_with_an_archived_set_version_is_re_derived_from_the_archive(log_url: str,
                                                                                       tmp_path: Path) -> None:
    screened = _run("screen", FIGURE1, "--rules", "paper-2024@1.1.0", "--format", "jsonl",
                    "-o", str(tmp_path / "old.jsonl"), "--log", log_url)
    assert screened.exit_code == 0, screened.output
    current = screening.load_ruleset("paper-2024")
    assert current.version != "1.1.0"  # 1.1.0 is archived: the stamp is not the current set
    code, report = _verify_json("--log", log_url)
    assert code == 0 and report["checked"] == 310
    [used] = report["sets"]
    assert used["version"] == "1.1.0"
    assert used["path"] == "rules/nlc-k2/archive/paper-2024-1.1.0/paper-2024.yaml"


def test_verify_decisions_re_screens_rows_made_with_include_record(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert _run("screen", FIGURE1, "--format", "jsonl", "--include-record", "-o", str(out)).exit_code == 0
    code, report = _verify_json(str(out))
    assert code == 0 and report["checked"] == 310

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    eligible = next(i for i, row in enumerate(rows) if i > 0 and row["category"] == "randomized")
    rows[eligible]["category"] = "withdrawal"  # a row altered after the fact
    del rows[0]["record"]                      # and one written without its record
    (tmp_path / "altered.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, report = _verify_json(str(tmp_path / "altered.jsonl"))
    assert code == 1 and report["no_input"] == 1
    [diff] = report["differences"]
    assert diff["candidate_id"] == rows[eligible]["candidate_id"]
    assert diff["changes"] == ["category withdrawal -> randomized"]


def test_a_stamped_set_that_cannot_be_found_is_not_clean(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert _run("screen", FIGURE1, "--format", "jsonl", "--include-record", "-o", str(out)).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()][:3]
    for row in rows:
        row["ruleset"]["version"] = "9.9.9"
    (tmp_path / "future.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, report = _verify_json(str(tmp_path / "future.jsonl"))
    assert code == 1 and report["unverifiable"] == 3 and report["checked"] == 0
    assert "no criteria set paper-2024 version 9.9.9" in report["sets"][0]["problem"]


def test_verify_needs_a_file_or_the_log() -> None:
    assert _run("verify").exit_code == 2
    assert _run("verify", "x.jsonl", "--log", "sqlite:///x").exit_code == 2
