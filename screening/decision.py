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
from .i18n import DEFAULT_LANG, PHRASES, Phrase, plain
from .protocol import RANKING, Criterion, Ruleset

DECISION_FIELDS = ("candidate_id", "site", "decision", "category", "subcategory", "primary_criterion",
                   "criteria", "ask_next", "warnings", "ruleset", "parameters")


class _Values(dict):  # type: ignore[type-arg]
    """Reason placeholders; a value that is not known reads as 'unknown'."""

    def __missing__(self, key: str) -> str:
        return "unknown"


class _ValuesIn(dict):  # type: ignore[type-arg]
    """Reason placeholders in another language: phrases in it, and 'unknown' translated."""

    def __init__(self, lang: str, *maps: dict[str, Any]) -> None:
        super().__init__()
        self.unknown = PHRASES["unknown"][lang]
        for values in maps:
            for key, value in values.items():
                self[key] = value.say(lang) if isinstance(value, Phrase) else value

    def __missing__(self, key: str) -> str:
        return self.unknown


def describe_parameters(ruleset: Ruleset) -> dict[str, Any]:
    """The parameter values stamped on every decision: the set's name and what the pack's
    ``facts.yaml`` lists under ``stamp`` (every parameter when it lists nothing)."""
    return {"criteria_set": ruleset.name, **ruleset.stamped_parameters}


class Decider:
    """Turns fired rule numbers into decision rows for one ruleset. Build once, reuse per record.

    :param lang: the language of the rows' reasons and warnings (one of ``ruleset.languages``).
    """

    def __init__(self, ruleset: Ruleset, lang: str = DEFAULT_LANG) -> None:
        if not ruleset.speaks(lang):
            raise ValueError(f"criteria set {ruleset.name} {ruleset.version} is written in "
                             f"{', '.join(ruleset.languages)} only, not {lang}")
        self.ruleset = ruleset
        self.lang = lang
        self._rules = ruleset.flat_rules
        self._ordered: list[Criterion] = ruleset.ordered
        self._rank = {c.id: {s: i for i, s in enumerate(RANKING[c.kind])} for c in self._ordered}
        self._params = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in ruleset.parameters.items()}
        self._stamp = ruleset.stamp
        self._parameters = describe_parameters(ruleset)
        self._consort = ruleset.consort
        # Per criterion, in precedence order: what decide() needs without method calls. A reason
        # with no placeholder is its own text (format_map would return it unchanged).
        default = [c.default.reasons.get(lang, c.default.reason) for c in self._ordered]
        self._plan = [(c.id, c, c.default.status, text, _literal(text), c.ask,
                       "met" if c.kind == "exclusion" else "not_met", c.kind != "procedural")
                      for c, text in zip(self._ordered, default)]
        self._reason = [rule.reasons.get(lang, rule.reason) for _, rule in self._rules]
        self._rule_literal = [_literal(text) for text in self._reason]
        self._decide = [rule.decide.get(lang) or rule.decide.get(DEFAULT_LANG) for _, rule in self._rules]
        self._procedural = [c for c in self._ordered if c.kind == "procedural"]

    def criteria_results(self, fired: list[int], derived: Derived) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, ...]]]:
        """Status and reason of every criterion, and the fields that would settle each one."""
        results, asks, _, _ = self._evaluate(fired, derived)
        return results, asks

    def _evaluate(self, fired: list[int], derived: Derived) -> tuple[
            dict[str, dict[str, str]], dict[str, tuple[str, ...]], Criterion | None, list[Criterion]]:
        """criteria_results, plus the first failing criterion and the open ones, in one pass."""
        by_crit: dict[str, list[Any]] | None = None
        if fired:
            by_crit = {}
            for index in fired:
                cid, rule = self._rules[index]
                by_crit.setdefault(cid, []).append((rule, self._rule_literal[index], index))
        if self.lang == DEFAULT_LANG:
            values: dict[str, Any] = _Values(self._params)
            values.update(derived.context)
            values.update(derived.facts)
        else:
            values = _ValuesIn(self.lang, self._params, derived.context, derived.facts)
        results: dict[str, dict[str, str]] = {}
        asks: dict[str, tuple[str, ...]] = {}
        failing: Criterion | None = None
        open_list: list[Criterion] = []
        for cid, crit, status, reason, literal, ask, fail_status, eligibility in self._plan:
            rules = by_crit.get(cid) if by_crit else None
            if rules:
                rank = self._rank[cid]
                best, literal, index = min(rules, key=lambda r: rank[r[0].status])  # first listed among the best-ranked
                status, reason, ask = best.status, self._reason[index], best.ask or ask
                results[cid] = {"status": status, "reason": reason if literal else reason.format_map(values)}
                if status == "review" and self._decide[index]:  # what the investigator must decide and record
                    results[cid]["decide"] = self._decide[index].format_map(values)
            else:
                results[cid] = {"status": status, "reason": reason if literal else reason.format_map(values)}
            asks[cid] = ask
            if failing is None and status == fail_status:
                failing = crit
            if eligibility and (status == "unknown" or status == "review"):
                open_list.append(crit)
        return results, asks, failing, open_list

    def decide(self, fired: list[int], derived: Derived, *, candidate_id: str, site: str | None) -> dict[str, Any]:
        """One decision row (see shared/intake-record.md, "Decision")."""
        results, asks, failing, open_list = self._evaluate(fired, derived)
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
            procedural = self._procedural
            done = all(results[c.id]["status"] == "met" for c in procedural)
            decision = "eligible"
            category = self._consort["eligible"] if done else self._consort["eligible_pending"]
            primary = procedural[0].id if procedural else self._ordered[-1].id
            for crit in procedural:  # eligible, awaiting consent: ask for it
                if results[crit.id]["status"] != "met":
                    for path in asks[crit.id]:
                        if not path.startswith("@") and path not in ask_next:
                            ask_next.append(path)
        row: dict[str, Any] = {
            "candidate_id": candidate_id,
            "site": site,
            "decision": decision,
            "category": category,
            "subcategory": subcategory,
            "primary_criterion": primary,
            "criteria": results,
        }
        row["ask_next"] = ask_next
        row["warnings"] = [plain(w, self.lang) for w in derived.warnings]
        row["ruleset"] = self._stamp
        row["parameters"] = self._parameters
        return row


def _literal(template: str) -> bool:
    """Whether a reason template has no placeholder (and no escaped brace): format_map returns it as is."""
    return "{" not in template and "}" not in template


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
