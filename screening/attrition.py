"""Attrition: how the assessed candidates fall away, criterion by criterion (``audit --attrition``).

Three views of the same candidates, all derived from the criteria each counted candidate fails
(:attr:`screening.audit.ConsortCounts.failing`, in precedence order):

* **waterfall** — criteria in precedence order; a candidate leaves at the first criterion it fails,
  so ``removed`` adds up to Excluded and ``remaining`` after the last criterion is everyone not
  excluded (randomised, withdrawn-free pending, undetermined);
* **only** — candidates failing this criterion and no other: dropping the criterion would let
  exactly these through;
* **any** — the multi-reason tally: a candidate counts under every criterion it fails, so the column
  adds up to more than Excluded when candidates fail several.

``check`` holds each disagreement between the waterfall and the decisions' own boxes (a decision
whose primary criterion is not its first failing one, or an excluded decision that fails nothing):
empty for rows the engine made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit import Breakdown, ConsortCounts
from .i18n import DEFAULT_LANG, message
from .output import csv_line
from .text import clip, pad, visible

CSV_FIELDS = ("group", "step", "criterion", "title", "removed", "remaining", "excluded_only", "excluded_any")


@dataclass(frozen=True)
class Step:
    criterion: str
    removed: int
    remaining: int
    only: int
    any: int


@dataclass
class Attrition:
    """The attrition of one group of candidates (all of them, or one site's)."""

    counts: ConsortCounts
    assessed: int
    steps: list[Step]
    check: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"assessed": self.assessed, "excluded": self.counts.excluded,
                "steps": [{"criterion": s.criterion, "removed": s.removed, "remaining": s.remaining,
                           "excluded_only": s.only, "excluded_any": s.any} for s in self.steps],
                "check": self.check}

    def text(self, lang: str = DEFAULT_LANG, title: str | None = None) -> str:
        rs = self.counts.ruleset
        out = [title or message("attrition_title", lang, n=self.assessed), message("attrition_head", lang)]
        for number, s in enumerate(self.steps, 1):
            name = pad(clip(f"{s.criterion} {rs.criteria[s.criterion].title_in(lang)}", 40), 40)
            out.append(f"  {number:>2}  {name} {s.removed:>8} {s.remaining:>10} {s.only:>8} {s.any:>8}")
        out.append(message("attrition_total", lang, excluded=sum(s.removed for s in self.steps),
                           remaining=self.steps[-1].remaining if self.steps else self.assessed))
        for problem in self.check:
            out.append("  " + message("attrition_check", lang, problem=problem))
        return "\n".join(visible(line) for line in out) + "\n"


def attrition(counts: ConsortCounts) -> Attrition:
    """The waterfall, only-reason and any-reason tallies of ``counts`` (see the module docstring)."""
    rs = counts.ruleset
    first: dict[str, int] = dict.fromkeys(rs.precedence, 0)
    only: dict[str, int] = dict.fromkeys(rs.precedence, 0)
    any_: dict[str, int] = dict.fromkeys(rs.precedence, 0)
    for failed, n in counts.failing.items():
        first[failed[0]] += n
        if len(failed) == 1:
            only[failed[0]] += n
        for cid in failed:
            any_[cid] += n
    remaining = counts.assessed
    steps = []
    for cid in rs.precedence:
        remaining -= first[cid]
        steps.append(Step(cid, first[cid], remaining, only[cid], any_[cid]))
    check = []
    removed = sum(first.values())
    if removed != counts.excluded:
        check.append(f"criteria failed remove {removed} candidates, but {counts.excluded} are in excluded boxes")
    for cid in rs.precedence:
        boxed = counts.excluded_first(cid)
        if boxed != first[cid]:
            check.append(f"{cid}: first failing criterion of {first[cid]} candidates, primary criterion of {boxed} "
                         "excluded decisions")
    return Attrition(counts, counts.assessed, steps, check)


@dataclass
class AttritionReport:
    """The attrition of all candidates, and of each group when broken down (``--by FIELD``)."""

    #: all candidates; None with ``--by ruleset`` (counts of different sets do not add up)
    total: Attrition | None
    by: str | None = None
    groups: dict[str, Attrition] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {"total": self.total.to_dict() if self.total else None}
        if self.by is not None:
            report["by"] = self.by
            report["groups"] = {name: a.to_dict() for name, a in self.groups.items()}
        return report

    def text(self, lang: str = DEFAULT_LANG) -> str:
        parts = [self.total.text(lang)] if self.total else []
        for name, group in self.groups.items():
            parts.append(group.text(lang, message("attrition_group", lang, field=self.by, value=name,
                                                  n=group.assessed)))
        return "\n".join(parts) + "\n" + message("attrition_legend", lang) + "\n"

    def csv(self) -> str:
        """One row per group and step; the group is ``total`` for all candidates (cells guarded against
        spreadsheet formulas, as ``screen --format csv``)."""
        lines = [csv_line(list(CSV_FIELDS))]
        whole = [("total", self.total)] if self.total else []
        for name, group in [*whole, *self.groups.items()]:
            rs = group.counts.ruleset
            for number, s in enumerate(group.steps, 1):
                lines.append(csv_line([name, str(number), s.criterion, rs.criteria[s.criterion].title_in("en"),
                                       str(s.removed), str(s.remaining), str(s.only), str(s.any)]))
        return "".join(lines)


def attrition_report(counts: ConsortCounts, groups: Breakdown | None = None) -> AttritionReport:
    """The attrition of ``counts``, and of each of ``groups``' groups."""
    if groups is None:
        return AttritionReport(attrition(counts))
    return AttritionReport(attrition(groups.total) if groups.combined else None, groups.field_name,
                           {name: attrition(c) for name, c in groups.groups.items()})
