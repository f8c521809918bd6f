"""Decision rows -> CONSORT enrollment counts, per-criterion counts, arithmetic checks, expectations.

The counts are derived from the rows alone (no counters kept elsewhere), so the audit trail and the
numbers cannot disagree. Zero counts are shown for every category and subcategory of the ruleset.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from .errors import InputFormatError, RuleDefinitionError, did_you_mean
from .protocol import STATUSES, Ruleset, rules_dir


@dataclass
class ConsortCounts:
    """What ``nlc-screen audit`` reports."""

    ruleset: Ruleset
    rows: int = 0
    errors: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    subcategories: Counter[str] = field(default_factory=Counter)
    criteria: dict[str, Counter[str]] = field(default_factory=dict)
    only_reason: Counter[str] = field(default_factory=Counter)
    primary: Counter[str] = field(default_factory=Counter)
    stamps: Counter[str] = field(default_factory=Counter)

    @property
    def assessed(self) -> int:
        return self.rows - self.errors

    @property
    def excluded(self) -> int:
        cons = self.ruleset.consort
        return sum(self.categories[c] for c in cons["categories"]
                   if c not in (cons["eligible"], cons["eligible_pending"], cons["undetermined"]))

    def flat(self) -> dict[str, int]:
        """The counts as one flat mapping (``meeting_exclusion.secondary_cause`` for subcategories)."""
        cons = self.ruleset.consort
        out: dict[str, int] = {"assessed": self.assessed, "excluded": self.excluded}
        for cat in cons["categories"]:
            out[cat] = self.categories[cat]
            for sub in cons["subcategories"].get(cat, []):
                out[f"{cat}.{sub}"] = self.subcategories[f"{cat}.{sub}"]
        out["errors"] = self.errors
        return out

    def arithmetic(self) -> list[str]:
        """Consistency checks; each failing one as a sentence (empty when all hold)."""
        cons = self.ruleset.consort
        problems = []
        total = sum(self.categories[c] for c in cons["categories"])
        if total != self.assessed:
            problems.append(f"categories add up to {total}, not the {self.assessed} assessed")
        for cat, subs in cons["subcategories"].items():
            parts = sum(self.subcategories[f"{cat}.{s}"] for s in subs)
            if parts != self.categories[cat]:
                problems.append(f"{cat}: subcategories add up to {parts}, not {self.categories[cat]}")
        unknown = set(self.categories) - set(cons["categories"])
        if unknown:
            problems.append(f"rows with categories this ruleset does not know: {sorted(unknown)}")
        if len(self.stamps) > 1:
            problems.append(f"rows come from {len(self.stamps)} criteria sets: {', '.join(sorted(self.stamps))}")
        mine = f"{self.ruleset.name} {self.ruleset.version} {self.ruleset.sha256[:12]}"
        other = sum(n for stamp, n in self.stamps.items() if stamp != mine)
        if other:
            problems.append(f"{other} row(s) were not made with the criteria set counted with ({mine}); "
                            "re-screen them, or pass the set they were made with to --rules")
        if self.rows == 0:
            problems.append("no decision rows in the input")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset.stamp,
            "counts": self.flat(),
            "criteria": {cid: {s: self.criteria.get(cid, Counter())[s] for s in STATUSES} | {
                "excluded_by_this_only": self.only_reason[cid], "primary": self.primary[cid]}
                for cid in self.ruleset.precedence},
            "arithmetic_problems": self.arithmetic(),
        }


def count(rows: Iterable[dict[str, Any]], ruleset: Ruleset) -> ConsortCounts:
    """Count decision rows into CONSORT boxes and per-criterion statuses."""
    counts = ConsortCounts(ruleset)
    crits = ruleset.criteria
    for row in rows:
        counts.rows += 1
        stamp = row.get("ruleset") or {}
        counts.stamps[f"{stamp.get('name')} {stamp.get('version')} {str(stamp.get('sha256'))[:12]}"] += 1
        if row.get("decision") == "error":
            counts.errors += 1
            continue
        category = str(row.get("category"))
        counts.categories[category] += 1
        if row.get("subcategory"):
            counts.subcategories[f"{category}.{row['subcategory']}"] += 1
        if row.get("primary_criterion"):
            counts.primary[row["primary_criterion"]] += 1
        failing = []
        for cid, result in (row.get("criteria") or {}).items():
            status = result.get("status")
            counts.criteria.setdefault(cid, Counter())[status] += 1
            if cid in crits and crits[cid].fails(status):
                failing.append(cid)
        if row.get("decision") == "excluded" and len(failing) == 1:
            counts.only_reason[failing[0]] += 1
    return counts


def read_rows(stream: IO[str], *, name: str = "input") -> Iterator[dict[str, Any]]:
    """Decision rows from JSON Lines (streamed) or a JSON array (read whole).

    :raises InputFormatError: naming the line (or index) that is not a decision row.
    """
    lines = iter(stream.readline, "")
    for number, line in enumerate(lines, start=1):
        text = line.strip().lstrip("\ufeff")
        if not text:
            continue
        if text.startswith("["):
            try:
                data = json.loads(text + "".join(lines))
            except (ValueError, RecursionError) as exc:
                raise InputFormatError(f"{name}: not valid JSON: {exc}") from None
            for index, row in enumerate(data if isinstance(data, list) else [data]):
                yield _check_row(row, f"{name} index {index}")
            return
        try:
            row = json.loads(text)
        except (ValueError, RecursionError):
            raise InputFormatError(f"{name} line {number}: not a JSON decision row") from None
        yield _check_row(row, f"{name} line {number}")


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("decision"), str) or not isinstance(row.get("category"), str):
        raise InputFormatError(f"{where}: not a decision row (needs 'decision' and 'category'); "
                               "did you pass candidate records instead of `nlc-screen screen` output?")
    stamp = row.get("ruleset")
    if stamp is not None and not (isinstance(stamp, dict) and all(isinstance(stamp.get(k), str)
                                                                   for k in ("name", "version", "sha256"))):
        raise InputFormatError(f"{where}: 'ruleset' must be {{name, version, sha256}}")
    criteria = row.get("criteria", {})
    if not isinstance(criteria, dict) or not all(isinstance(v, dict) and isinstance(v.get("status"), str)
                                                 for v in criteria.values()):
        raise InputFormatError(f"{where}: 'criteria' must map criterion ids to {{status, reason}}")
    return row


def load_expectation(spec: str) -> dict[str, Any]:
    """An expected flow (``figure1``, or a YAML path) with ``name``, ``title`` and ``counts``."""
    path = Path(spec)
    if not path.suffix:
        folder = rules_dir() / "expectations"
        path = folder / f"{spec}.yaml"
        if not path.is_file():
            names = [p.stem for p in folder.glob("*.yaml")]
            raise RuleDefinitionError(f"no expected flow named {spec!r}{did_you_mean(spec, names)}; "
                                      f"available: {', '.join(sorted(names))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleDefinitionError(f"cannot read expected flow: {exc}", file=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("counts"), dict):
        raise RuleDefinitionError("must have a 'counts' mapping", file=str(path), field="counts")
    return data


def compare(counts: ConsortCounts, expected: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(box, expected, actual) for every box that differs; unknown box names count as differences."""
    actual = counts.flat()
    diffs = []
    for box, want in expected["counts"].items():
        have = actual.get(box)
        if have is None:
            raise RuleDefinitionError(f"unknown box {box!r}{did_you_mean(box, actual)}",
                                      file=str(expected.get("name")), field="counts")
        if have != want:
            diffs.append((box, int(want), have))
    return diffs


def render(counts: ConsortCounts, expected: dict[str, Any] | None = None) -> str:
    """The audit as a plain-text report."""
    cons = counts.ruleset.consort
    labels = cons.get("labels", {})
    flat = counts.flat()
    want = (expected or {}).get("counts", {})

    def line(label: str, box: str, indent: int = 0) -> str:
        value = flat[box]
        text = f"{' ' * indent}{label:<{58 - indent}}{value:>6}"
        if box in want:
            text += "   ok" if want[box] == value else f"   expected {want[box]}  <-- differs"
        return text

    stamps = ", ".join(sorted(counts.stamps)) or "no rows"
    rs = counts.ruleset
    out = [f"CONSORT enrollment — counted with {rs.name} {rs.version}; decisions from {stamps}", ""]
    out.append(line("Assessed for eligibility", "assessed"))
    out.append(line("Excluded", "excluded", 2))
    for cat in cons["categories"]:
        if cat in (cons["eligible"],):
            continue
        if cat == cons["undetermined"] or cat == cons["eligible_pending"]:
            continue
        out.append(line(labels.get(cat, cat), cat, 4))
        for sub in cons["subcategories"].get(cat, []):
            out.append(line(labels.get(sub, sub), f"{cat}.{sub}", 6))
    pend = cons["undetermined"]
    out.append(line(labels.get(pend, pend), pend, 2))
    out.append(line(labels.get(cons["eligible"], cons["eligible"]), cons["eligible"]))
    out.append(line("Records that could not be read (not assessed)", "errors"))
    problems = counts.arithmetic()
    out.append("")
    out.append("Arithmetic: " + ("consistent" if not problems else "; ".join(problems)))
    out.append("")
    out.append("Per criterion (precedence order)      met  not_met  unknown  review  primary  excluded-by-this-only")
    for cid in counts.ruleset.precedence:
        c = counts.criteria.get(cid, Counter())
        title = counts.ruleset.criteria[cid].title
        title = title if len(title) <= 30 else title[:29] + "…"
        out.append(f"  {cid:<4} {title:<30} {c['met']:>5} {c['not_met']:>8} "
                   f"{c['unknown']:>8} {c['review']:>7} {counts.primary[cid]:>8} {counts.only_reason[cid]:>22}")
    if expected is not None:
        diffs = compare(counts, expected)
        out.append("")
        title = expected.get("title", expected.get("name", "expected"))
        if diffs:
            out.append(f"Compared with {title}: {len(diffs)} difference(s)")
            for box, w, h in diffs:
                out.append(f"  {box}: expected {w}, got {h}")
        else:
            out.append(f"Compared with {title}: all {len(want)} counts match")
    return "\n".join(out) + "\n"
