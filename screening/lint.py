"""Lint a loaded criteria set: what loads but cannot be meant (``nlc-screen rules --check``).

Loading (:mod:`screening.protocol`) refuses a set that is malformed. This module looks for what a
valid set can still get wrong, each reported as a :class:`Finding` that names the set file, the
criterion and rule (or value-set entry) and what is wrong:

* ``contradiction``: a rule whose condition no facts at all can satisfy (``age_years ≥ 65`` and
  ``age_years < 60``; ``{known: false}`` beside a test of the same number; ``eq: active`` and
  ``eq: history`` of one fact);
* ``unreachable``: a rule that only values no valid record can give would satisfy (a number fact
  read from a field declared ``max: 14`` tested ``ge: 15``), from the ranges the pack's record and
  derivations give each fact (:class:`~screening.derivations.FactType` ``low`` / ``high``);
* ``shadowed``: a rule that never decides its criterion, because whenever it applies an earlier
  rule of the same status applies too (the first listed rule of the winning status gives the
  reason), or a rule of a status that outranks it (criteria.md §1.1);
* ``criterion-unreached``: a criterion no record field can move off its default: it asks for
  fields but has no rule, or none of its rules can apply (a criterion with neither rules nor
  ``ask`` is a placeholder kept for its id, such as registry-2023's "not a criterion" entries, and
  is not reported);
* ``empty-box``: a CONSORT category or subcategory that no criterion counts into (the boxes of
  eligible, eligible-pending and undetermined candidates excepted);
* ``no-procedural``: a set without a procedural criterion (the loader refuses such a set, so
  ``rules --check`` reports it as a load error; kept here for sets built in code);
* ``code``: a code malformed for its system in the set's value sets: ATC (the letter/digit pattern of
  its level, a first letter that is an anatomical main group), RxNorm (an RxCUI: digits, no leading
  zero), ICD-10-CM (letter, digit, digit or letter, then up to four characters after a dot) and
  SNOMED CT (a concept id: 6–18 digits, no leading zero, a concept partition, a valid Verhoeff check
  digit).

Conditions are reasoned about with the engine's semantics (:mod:`screening.conditions`): a number
fact that is unknown is absent and fails every test but ``{known: false}``; an enum fact is never
absent. Each condition is spread into alternatives of tests (at most :data:`MAX_ALTERNATIVES`;
beyond that a rule is not linted rather than linted wrong).

Example::

    from screening.lint import lint
    from screening.protocol import load_ruleset, resolve

    for finding in lint(load_ruleset("paper-2024"), resolve("paper-2024")):
        print(finding)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stdnum import verhoeff

from .derivations import FactType
from .describe import condition_text
from .errors import ScreeningError
from .protocol import RANKING, Condition, Criterion, Ruleset, display_path, read_yaml_file

#: The most alternatives (conjunctions of tests) one check spreads a condition into.
MAX_ALTERNATIVES = 4096

CHECKS = ("contradiction", "unreachable", "shadowed", "criterion-unreached", "empty-box", "no-procedural", "code")


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a set that loads: where (file, criterion, field) and what."""

    check: str
    file: str
    message: str
    criterion: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ", ".join(part for part in (f"file {self.file}", self.criterion and f"criterion {self.criterion}",
                                            self.field and f"field {self.field!r}") if part)
        return f"{where}: {self.message} [{self.check}]"

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "file": self.file, "criterion": self.criterion, "field": self.field,
                "message": self.message}


def lint(ruleset: Ruleset, source: Path | None = None) -> list[Finding]:
    """Every finding of every check on a loaded set; ``source`` (its file) lets the code check name
    the value-set files (without it they are named by the set file)."""
    found: list[Finding] = []
    types = ruleset.fact_types()
    for crit in ruleset.ordered:
        found.extend(_rules(ruleset.path, crit, types))
    found.extend(_boxes(ruleset))
    if not any(c.kind == "procedural" for c in ruleset.criteria.values()):
        found.append(Finding("no-procedural", ruleset.path, "the set has no procedural criterion (kind: procedural, "
                             "e.g. written informed consent): declined candidates would be counted as randomized",
                             field="criteria"))
    found.extend(_codes(ruleset, source))
    return found


# ---------------------------------------------------------------------------------------------
# Conditions: alternatives of tests, and whether some facts satisfy one

#: one test: (fact, op, operand)
Test = tuple[str, str, Any]
_NEGATED = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "lt": "ge", "ge": "lt", "le": "gt", "gt": "le"}


class _TooLarge(Exception):
    pass


def _alternatives(cond: Condition) -> list[list[Test]]:
    """The condition as alternatives (``any``) of tests that must all hold (``all``)."""
    kind = cond[0]
    if kind == "cmp":
        return [[(cond[1], cond[2], cond[3])]]
    parts = [_alternatives(c) for c in cond[1]]
    if kind == "any":
        out = [alt for part in parts for alt in part]
    else:
        out = [[]]
        for part in parts:
            if len(out) * len(part) > MAX_ALTERNATIVES:
                raise _TooLarge
            out = [a + b for a in out for b in part]
    if len(out) > MAX_ALTERNATIVES:
        raise _TooLarge
    return out


def _negation(cond: Condition, types: Mapping[str, FactType]) -> Condition:
    """The condition that holds exactly when ``cond`` does not (an absent number fails every test
    but ``known: false``, so ``not (n < 5)`` is ``n unknown or n ≥ 5``)."""
    kind = cond[0]
    if kind in ("all", "any"):
        return ("any" if kind == "all" else "all", tuple(_negation(c, types) for c in cond[1]))
    _, fact, op, operand = cond
    if op == "known":
        return ("cmp", fact, "known", not operand)
    flipped = ("cmp", fact, _NEGATED[op], operand)
    if types[fact].kind == "enum":  # never absent
        return flipped
    return ("any", (("cmp", fact, "known", False), flipped))


def _satisfiable(tests: list[Test], types: Mapping[str, FactType], *, ranges: bool) -> bool:
    """Whether some facts make every test hold (``ranges``: only values a valid record can give)."""
    by_fact: dict[str, list[Test]] = {}
    for test in tests:
        by_fact.setdefault(test[0], []).append(test)
    return all(_fact_satisfiable(types[fact], group, ranges) for fact, group in by_fact.items())


def _fact_satisfiable(ftype: FactType, tests: list[Test], ranges: bool) -> bool:
    if ftype.kind == "enum":
        allowed = set(ftype.values)
        for _, op, operand in tests:
            if op == "eq":
                allowed &= {operand}
            elif op == "ne":
                allowed -= {operand}
            elif op == "in":
                allowed &= set(operand)
            elif op == "not_in":
                allowed -= set(operand)
        return bool(allowed)
    absent = any(op == "known" and operand is False for _, op, operand in tests)
    present = any(op != "known" or operand is True for _, op, operand in tests)
    if absent:
        return not present
    low, high = (ftype.low, ftype.high) if ranges else (None, None)
    among: set[int] | None = None
    excluded: set[int] = set()
    for _, op, v in tests:
        if op in ("ge", "gt", "eq"):
            bound = v + 1 if op == "gt" else v
            low = bound if low is None else max(low, bound)
        if op in ("le", "lt", "eq"):
            bound = v - 1 if op == "lt" else v
            high = bound if high is None else min(high, bound)
        if op == "in":
            among = set(v) if among is None else among & set(v)
        elif op == "ne":
            excluded.add(v)
        elif op == "not_in":
            excluded |= set(v)
    if low is not None and high is not None and low > high:
        return False
    if among is not None:
        return any((low is None or x >= low) and (high is None or x <= high) and x not in excluded for x in among)
    if low is None or high is None:
        return True
    return high - low + 1 > sum(1 for x in excluded if low <= x <= high)


def _can_hold(cond: Condition, types: Mapping[str, FactType], *, ranges: bool) -> bool | None:
    """Whether some facts satisfy ``cond`` (None: too large to tell)."""
    try:
        return any(_satisfiable(alt, types, ranges=ranges) for alt in _alternatives(cond))
    except _TooLarge:
        return None


def _implies(cond: Condition, other: Condition, types: Mapping[str, FactType]) -> bool:
    """Whether ``other`` holds on every valid record ``cond`` holds on (False when too large to tell)."""
    both = ("all", (cond, _negation(other, types)))
    return _can_hold(both, types, ranges=True) is False


def _tested(cond: Condition) -> Iterator[str]:
    """The facts a condition tests, in order (with repeats)."""
    if cond[0] == "cmp":
        yield cond[1]
    else:
        for c in cond[1]:
            yield from _tested(c)


# ---------------------------------------------------------------------------------------------
# The checks on criteria and rules


def _rules(file: str, crit: Criterion, types: Mapping[str, FactType]) -> list[Finding]:
    found: list[Finding] = []
    cid = crit.id

    def finding(check: str, message: str, field: str | None = None) -> None:
        found.append(Finding(check, file, message, criterion=cid, field=field))

    if not crit.rules:
        if crit.ask:  # no rules and no ask: a placeholder kept for its id (registry-2023's "not a criterion")
            finding("criterion-unreached", f"it asks for {', '.join(crit.ask)} but has no rules: it is "
                    f"{crit.default.status!r} (its default) whatever the record holds", "rules")
        return found
    rank = {status: i for i, status in enumerate(RANKING[crit.kind])}
    live: list[int] = []
    for i, rule in enumerate(crit.rules):
        where = f"rules[{i}].when"
        if _can_hold(rule.when, types, ranges=False) is False:
            finding("contradiction", f"this condition can never hold, its tests contradict each other: "
                    f"{condition_text(rule.when)}", where)
        elif _can_hold(rule.when, types, ranges=True) is False:
            finding("unreachable", f"this condition can hold only for values no valid record gives "
                    f"({_ranges(rule.when, types)}): {condition_text(rule.when)}", where)
        else:
            live.append(i)
    for j in live:
        rule = crit.rules[j]
        for i in live:
            other = crit.rules[i]
            if i == j or not (rank[other.status] < rank[rule.status] or (other.status == rule.status and i < j)):
                continue
            if _implies(rule.when, other.when, types):
                why = (f"an earlier rule of the same status ({other.status})" if other.status == rule.status else
                       f"a rule whose status ({other.status}) outranks {rule.status}")
                finding("shadowed", f"shadowed by rules[{i}]: whenever this rule applies, {why} applies too and "
                        f"gives the outcome, so this rule never decides the criterion "
                        f"({condition_text(rule.when)} implies {condition_text(other.when)})", f"rules[{j}]")
                break
    if not live:
        finding("criterion-unreached", f"none of its rules can apply to any record: it is {crit.default.status!r} "
                "(its default) whatever the record holds", "rules")
    return found


def _ranges(cond: Condition, types: Mapping[str, FactType]) -> str:
    """The ranges of the number facts a condition tests, in words."""
    shown = []
    for fact in dict.fromkeys(_tested(cond)):
        ftype = types[fact]
        if ftype.kind == "int" and (ftype.low is not None or ftype.high is not None):
            low = "" if ftype.low is None else f"{ftype.low} ≤ "
            high = "" if ftype.high is None else f" ≤ {ftype.high}"
            shown.append(f"{low}{fact}{high}")
    return "; ".join(shown) or "no value of its facts"


def _boxes(ruleset: Ruleset) -> list[Finding]:
    consort = ruleset.consort
    open_boxes = {consort["eligible"], consort["eligible_pending"], consort["undetermined"]}
    used = {c.category for c in ruleset.criteria.values()} | {c.subcategory for c in ruleset.criteria.values()}
    found = []
    for cat in consort["categories"]:
        subs = consort["subcategories"].get(cat, [])
        if cat not in open_boxes and cat not in used:
            found.append(Finding("empty-box", ruleset.path, f"no criterion counts into the box {cat!r}: it is "
                                 "always 0 (remove it, or name it as a criterion's category)",
                                 field="consort.categories"))
        for sub in subs:
            if sub not in used:
                found.append(Finding("empty-box", ruleset.path, f"no criterion counts into the box {sub!r} "
                                     f"(a subcategory of {cat}): it is always 0", field=f"consort.subcategories.{cat}"))
    return found


# ---------------------------------------------------------------------------------------------
# Codes in the value sets

#: ATC: the anatomical main groups (level 1), then 2 digits, a letter, a letter, 2 digits (levels 2-5).
_ATC_GROUPS = frozenset("ABCDGHJLMNPRSV")
_ATC = re.compile(r"^[A-Z](?:[0-9]{2}(?:[A-Z](?:[A-Z](?:[0-9]{2})?)?)?)?$")
#: An RxCUI: a whole number written without leading zeros (they run to 7 digits today).
_RXCUI = re.compile(r"^[1-9][0-9]{0,8}$")
#: ICD-10-CM: a letter, a digit, a digit or letter (C4A, M1A), then after a dot up to 4 digits or letters;
#: a stem matched as a prefix (``match: prefix``) may stop after the digit (C0: C00-C09).
_ICD10CM = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")
_ICD10CM_STEM = re.compile(r"^[A-Z][0-9](?:[0-9A-Z](?:\.[0-9A-Z]{1,4})?)?$")
#: SNOMED CT identifiers: 6-18 digits, no leading zero; the two digits before the check digit are
#: the partition (00 and 10: a concept, short and long form).
_SCTID = re.compile(r"^[1-9][0-9]{5,17}$")
_CONCEPT_PARTITIONS = ("00", "10")


def code_problem(system: str, code: str, *, prefix: bool = False) -> str | None:
    """What is wrong with ``code`` as a code of ``system`` (atc, rxnorm, icd10, snomed), or None
    (``prefix``: an ICD-10-CM stem that matches its descendants)."""
    if system == "atc":
        if not _ATC.match(code):
            return ("is not an ATC code: a letter, then 2 digits, a letter, a letter and 2 digits by level "
                    "(C, C03, C03C, C03CA, C03CA01)")
        if code[0] not in _ATC_GROUPS:
            return f"is not an ATC code: {code[0]} is no anatomical main group ({', '.join(sorted(_ATC_GROUPS))})"
        return None
    if system == "rxnorm":
        return None if _RXCUI.match(code) else "is not an RxCUI: digits without a leading zero (such as 4603)"
    if system == "icd10":
        if (_ICD10CM_STEM if prefix else _ICD10CM).match(code):
            return None
        return ("is not an ICD-10-CM " + ("code or stem" if prefix else "code") + ": a letter, a digit, "
                + ("then optionally " if prefix else "") + "a digit or letter, then optionally a dot and 1-4 "
                "digits or letters (E03, E89.0, C4A.0" + (", or the stem C0" if prefix else "") + ")")
    if system == "snomed":
        if not _SCTID.match(code):
            return "is not a SNOMED CT concept id: 6 to 18 digits, no leading zero"
        if code[-3:-1] not in _CONCEPT_PARTITIONS:
            return (f"is not a SNOMED CT concept id: its partition digits {code[-3:-1]} are not a concept's "
                    f"(00 or 10)")
        if not verhoeff.is_valid(code):
            return "is not a SNOMED CT concept id: its check digit is wrong (Verhoeff)"
        return None
    return f"has an unknown code system {system!r}"


def _value_set_files(ruleset: Ruleset, source: Path | None) -> dict[str, str]:
    """value-set kind -> the file as shown in findings (the set file when it cannot be told)."""
    files: dict[str, str] = {}
    if source is not None:
        try:
            data = read_yaml_file(source)
        except ScreeningError:
            data = None
        refs = data.get("value_sets") if isinstance(data, dict) else None
        if isinstance(refs, dict):
            files = {kind: display_path(source.parent / ref) for kind, ref in refs.items() if isinstance(ref, str)}
    return files


def _codes(ruleset: Ruleset, source: Path | None) -> list[Finding]:
    files = _value_set_files(ruleset, source)
    found = []

    def check(kind: str, system: str, code: str, field: str, prefix: bool = False) -> None:
        problem = code_problem(system, code, prefix=prefix)
        if problem is not None:
            shown = files.get(kind)
            message = f"{code!r} {problem}" + (f" (value set of {ruleset.path})" if shown else "")
            found.append(Finding("code", shown or ruleset.path, message, field=field))

    for name, cls in ruleset.drug_classes.items():
        for key, codes in (("atc", cls.atc), ("atc_exclude", cls.atc_exclude)):
            for i, code in enumerate(codes):
                check("drug_classes", "atc", code, f"classes.{name}.{key}[{i}]")
        for code in sorted(cls.rxnorm):
            check("drug_classes", "rxnorm", code, f"classes.{name}.rxnorm")
    for key, entry in ruleset.condition_codes.items():
        for group, fixed in (("snomed", "snomed"), ("icd10", "icd10"), ("procedures", None), ("not_evidence", None)):
            for i, item in enumerate(entry.get(group) or []):
                system = fixed or str(item.get("system"))
                check("condition_codes", system, item["code"], f"conditions.{key}.{group}[{i}]",
                      prefix=item.get("match") == "prefix")
    return found
