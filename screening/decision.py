"""Fired rules -> four-valued criterion results -> decision, CONSORT category, reasons, ask_next.

Everything here is generic: which criteria exist, their kinds, precedence, categories and reason
texts all come from the ruleset (criteria.md §1.2):

* ``excluded``: some criterion fails (inclusion ``not_met``, exclusion ``met``, procedural
  ``not_met``), whatever the rest; the first failing one in precedence order is primary and decides
  the category. A failing procedural criterion (consent declined or withdrawn) with nothing else
  failing is a withdrawal, even while other criteria are still open.
* ``undetermined``: nothing fails, but an eligibility criterion is ``unknown`` or ``review``;
  the first such criterion is primary and its fields lead ``ask_next``.
* ``eligible``: every eligibility criterion passes; the procedural criterion (consent) decides
  between the ``eligible`` category (randomized) and ``eligible_pending``.
"""

from __future__ import annotations

from typing import Any

from .facts import Derived
from .protocol import RANKING, Criterion, Ruleset

DECISION_FIELDS = ("candidate_id", "site", "decision", "category", "subcategory", "primary_criterion",
                   "criteria", "ask_next", "warnings", "ruleset", "parameters")


class _Values(dict):  # type: ignore[type-arg]
    """Reason placeholders; a value that is not known reads as 'unknown'."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def describe_parameters(ruleset: Ruleset) -> dict[str, Any]:
    """The parameter values stamped on every decision (criteria.md §1)."""
    p = ruleset.parameters
    lookback = {
        "calendar_months": f"{p['lookback_months']} calendar months",
        "days": f"{p['lookback_days']} days",
        "current": "current use on enrollment_date",
    }[p["lookback"]]
    return {"criteria_set": ruleset.name, "age_reference": p["age_reference"], "lookback": lookback,
            "attribution_mode": p["attribution_mode"]}


class Decider:
    """Turns fired rule numbers into decision rows for one ruleset. Build once, reuse per record."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._rules = ruleset.flat_rules
        self._ordered: list[Criterion] = ruleset.ordered
        self._rank = {c.id: {s: i for i, s in enumerate(RANKING[c.kind])} for c in self._ordered}
        self._params = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in ruleset.parameters.items()}
        self._stamp = ruleset.stamp
        self._parameters = describe_parameters(ruleset)
        self._consort = ruleset.consort

    def criteria_results(self, fired: list[int], derived: Derived) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, ...]]]:
        """Status and reason of every criterion, and the fields that would settle each one."""
        by_crit: dict[str, list[Any]] = {}
        for index in fired:
            cid, rule = self._rules[index]
            by_crit.setdefault(cid, []).append(rule)
        values = _Values(self._params)
        values.update(derived.context)
        values.update(derived.facts)
        results: dict[str, dict[str, str]] = {}
        asks: dict[str, tuple[str, ...]] = {}
        for crit in self._ordered:
            rules = by_crit.get(crit.id)
            if not rules:
                results[crit.id] = {"status": crit.default.status, "reason": crit.default.reason.format_map(values)}
                asks[crit.id] = crit.ask
                continue
            rank = self._rank[crit.id]
            best = min(rules, key=lambda r: rank[r.status])  # first listed among the best-ranked
            results[crit.id] = {"status": best.status, "reason": best.reason.format_map(values)}
            asks[crit.id] = best.ask or crit.ask
        return results, asks

    def decide(self, fired: list[int], derived: Derived, *, candidate_id: str, site: str | None) -> dict[str, Any]:
        """One decision row (see shared/intake-record.md, "Decision")."""
        results, asks = self.criteria_results(fired, derived)
        failing = open_ = None
        open_list: list[Criterion] = []
        for crit in self._ordered:
            status = results[crit.id]["status"]
            if failing is None and crit.fails(status):
                failing = crit
            if crit.kind != "procedural" and status in ("unknown", "review"):
                open_list.append(crit)
        ask_next: list[str] = []
        subcategory = None
        if failing is not None:
            decision, category, primary = "excluded", failing.category, failing.id
            subcategory = failing.subcategory
        elif open_list:
            open_ = open_list[0]
            decision, category, primary = "undetermined", self._consort["undetermined"], open_.id
            for crit in open_list:
                for item in asks[crit.id]:
                    for path in (derived.context.get(item[1:], []) if item.startswith("@") else (item,)):
                        if path not in ask_next:
                            ask_next.append(path)
        else:
            procedural = [c for c in self._ordered if c.kind == "procedural"]
            done = all(results[c.id]["status"] == "met" for c in procedural)
            decision = "eligible"
            category = self._consort["eligible"] if done else self._consort["eligible_pending"]
            primary = procedural[0].id if procedural else self._ordered[-1].id
        row: dict[str, Any] = {
            "candidate_id": candidate_id,
            "site": site,
            "decision": decision,
            "category": category,
            "subcategory": subcategory,
            "primary_criterion": primary,
            "criteria": results,
        }
        if decision == "undetermined":
            row["ask_next"] = ask_next
        if derived.warnings:
            row["warnings"] = list(derived.warnings)
        row["ruleset"] = self._stamp
        row["parameters"] = self._parameters
        return row


def error_row(*, candidate_id: str, site: str | None, message: str, fields: list[str],
              ruleset: Ruleset | None) -> dict[str, Any]:
    """The one output row of a record that could not be read."""
    row: dict[str, Any] = {
        "candidate_id": candidate_id,
        "site": site,
        "decision": "error",
        "category": "error",
        "error": message,
        "error_fields": fields,
    }
    if ruleset is not None:
        row["ruleset"] = ruleset.stamp
    return row
