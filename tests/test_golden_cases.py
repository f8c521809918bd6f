"""Golden edge cases: one JSON file per case in fixtures/cases/ (record + expected decision).

Adding a case needs no code. Each file: description, spec, rules (default paper-2024), record or
record_text, and expect: decision, category, subcategory, primary_criterion, criteria (a subset of
statuses), ask_next_first, reason_contains, error_field. See fixtures/cases/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import screening
from screening.io import Item

from .conftest import FIXTURES

CASES = sorted((FIXTURES / "cases").glob("*.json"))


def _screen(case: dict[str, Any]) -> dict[str, Any]:
    ruleset = screening.load_ruleset(case.get("rules", "paper-2024"))
    text = case["record_text"] if "record_text" in case else json.dumps(case["record"])
    return screening.Screener(ruleset).item(Item("line 1", text))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    expect = case["expect"]
    row = _screen(case)
    got = {"decision": row["decision"], "category": row["category"]}
    want = {"decision": expect["decision"], "category": expect["category"]}
    if "subcategory" in expect:
        got["subcategory"], want["subcategory"] = row.get("subcategory"), expect["subcategory"]
    if "primary_criterion" in expect:
        got["primary_criterion"], want["primary_criterion"] = row.get("primary_criterion"), expect["primary_criterion"]
    for cid, status in expect.get("criteria", {}).items():
        got[cid], want[cid] = row["criteria"][cid]["status"], status
    if "ask_next_first" in expect:
        got["ask_next_first"] = (row.get("ask_next") or [None])[0]
        want["ask_next_first"] = expect["ask_next_first"]
    assert got == want, f"{case['description']}\n{json.dumps(row, indent=1, ensure_ascii=False)}"
    for cid, needles in expect.get("reason_contains", {}).items():
        for needle in needles:
            assert needle in row["criteria"][cid]["reason"], (cid, row["criteria"][cid]["reason"])
    if expect["decision"] == "error":
        field = expect.get("error_field")
        if field:
            assert field in row["error_fields"], row["error"]
        else:
            assert row["error_fields"] == [""], row["error"]
    else:
        # a reasoned decision: every criterion has a status and a sentence
        assert set(row["criteria"]) == set(screening.load_ruleset(case.get("rules", "paper-2024")).criteria)
        assert all(r["reason"] and "{" not in r["reason"] and "${" not in r["reason"] for r in row["criteria"].values())
