"""Record -> flat derived facts, computed once, from the record's own dates.

Every date here comes from the record: age on ``screening_start`` (or ``enrollment_date``, by the
``age_reference`` parameter), the diary window D0 … D0+13, the look-back ``[L, enrollment_date]``.
There is no clock. Unknown stays unknown: a number fact is left out, an enum fact says ``unknown``.

:func:`derive` returns :class:`Derived`: ``facts`` (small and flat, what the engine sees),
``context`` (display values that reasons quote) and ``warnings``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .catalogue import DIFFERENTIAL_FIELDS
from .errors import CandidateRecordError, FieldProblem
from .protocol import DrugClass, Ruleset, SiteList, words
from .record import (
    CONDITION_KEYS,
    DIFFERENTIAL_KEYS,
    CandidateRecord,
    Medication,
    enrollment_too_early,
    normalise_atc,
    normalise_rxnorm,
)

_DIFF_LABEL = {
    "restless_legs": "restless legs syndrome",
    "claudication": "claudication",
    "myositis": "myositis",
    "peripheral_neuropathy": "peripheral neuropathy",
}


@dataclass
class Derived:
    facts: dict[str, Any]
    context: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Dates


def age_on(birth: dt.date, ref: dt.date) -> int:
    """Completed years on ``ref``; a 29 February birthday falls on 1 March in non-leap years."""
    return ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day))


def birthday(birth: dt.date, years: int) -> dt.date:
    """The date of the ``years``-th birthday (29 February -> 1 March in non-leap years)."""
    year = birth.year + years
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(year):
        return dt.date(year, 3, 1)
    return birth.replace(year=year)


def minus_months(day: dt.date, months: int) -> dt.date:
    """``day`` minus calendar months; a day that does not exist clamps to the month's last day."""
    month0 = day.year * 12 + day.month - 1 - months
    year, month = divmod(month0, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def lookback_start(enrollment: dt.date, params: dict[str, Any]) -> dt.date:
    """L, the first day of the look-back window ``[L, enrollment]`` (criteria.md §1.5)."""
    mode = params["lookback"]
    if mode == "calendar_months":
        return minus_months(enrollment, params["lookback_months"])
    if mode == "days":
        return enrollment - dt.timedelta(days=params["lookback_days"])
    return enrollment  # "current": use on the enrollment date itself


def clear_date(last_dose: dt.date, params: dict[str, Any]) -> dt.date:
    """The earliest enrollment date whose look-back no longer contains ``last_dose``."""
    mode = params["lookback"]
    if mode == "days":
        return last_dose + dt.timedelta(days=params["lookback_days"] + 1)
    if mode == "current":
        return last_dose + dt.timedelta(days=1)
    # calendar months: L(E) is non-decreasing in E; start near the answer and step to it.
    guess = minus_months(last_dose, -params["lookback_months"]) + dt.timedelta(days=1)
    while lookback_start(guess - dt.timedelta(days=1), params) > last_dose:
        guess -= dt.timedelta(days=1)
    while lookback_start(guess, params) <= last_dose:
        guess += dt.timedelta(days=1)
    return guess


# ---------------------------------------------------------------------------------------------
# Classing medicines and tumour sites by the value sets


def _contains(seq: tuple[str, ...], term: tuple[str, ...]) -> bool:
    n = len(term)
    if n == 1:
        return term[0] in seq
    return any(seq[i:i + n] == term for i in range(len(seq) - n + 1))


def matches_terms(text: str, seq: tuple[str, ...], latin: tuple[tuple[str, ...], ...], cjk: tuple[str, ...]) -> bool:
    if any(_contains(seq, term) for term in latin):
        return True
    if cjk:
        low = text.lower()
        return any(term in low for term in cjk)
    return False


def site_status(site: str | None, sites: SiteList) -> str:
    if site is None or not site.strip():
        return "unknown"
    return "listed" if matches_terms(site, words(site), sites.names, sites.cjk_names) else "other"


class DrugClassifier:
    """Which drug classes of a ruleset a medication entry belongs to.

    An entry belongs to a class when its ATC code starts with one of the class's ATC prefixes (and
    none of its excluded ones; compared in :func:`~screening.record.normalise_atc`'s form, which the
    record model already holds), its RxCUI (without surrounding whitespace) is one of the class's,
    or its name contains one of the class's terms as consecutive words (a CJK term as a substring)
    and none of its veto phrases.

    Memoised by (name, atc, rxnorm) — class membership depends on nothing else — with a bounded
    memo (cleared when full), so memory stays flat on any input. Name terms are indexed by their
    first word, so a miss costs one dict lookup per word of the name rather than a scan of every term.
    """

    _LIMIT = 1 << 16

    def __init__(self, classes: dict[str, DrugClass]) -> None:
        self.names = tuple(classes)
        self._classes = tuple(classes.values())
        self._index: list[dict[str, list[tuple[str, ...]]]] = []
        for cls in self._classes:
            index: dict[str, list[tuple[str, ...]]] = {}
            for term in cls.names:
                index.setdefault(term[0], []).append(term)
            self._index.append(index)
        self._memo: dict[tuple[str, str | None, str | None], tuple[bool, ...]] = {}

    def __call__(self, med: Medication) -> tuple[bool, ...]:
        key = (med.name, med.atc, med.rxnorm)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._classify(med)
            if len(self._memo) >= self._LIMIT:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def _classify(self, med: Medication) -> tuple[bool, ...]:
        seq = words(med.name)
        code = normalise_atc(med.atc) if med.atc else None
        rxnorm = normalise_rxnorm(med.rxnorm) if med.rxnorm else None
        low = None
        out = []
        for cls, index in zip(self._classes, self._index):
            found = False
            if code is not None and any(code.startswith(p) for p in cls.atc) \
                    and not any(code.startswith(p) for p in cls.atc_exclude):
                found = True
            elif rxnorm and rxnorm in cls.rxnorm:
                found = True
            else:
                named = False
                for i, word in enumerate(seq):
                    for term in index.get(word, ()):
                        if seq[i:i + len(term)] == term:
                            named = True
                            break
                    if named:
                        break
                if not named and cls.cjk_names:
                    low = med.name.lower() if low is None else low
                    named = any(term in low for term in cls.cjk_names)
                if named:
                    found = not any(_contains(seq, veto) for veto in cls.names_exclude)
            out.append(found)
        return tuple(out)


_CLASSIFIERS: dict[str, DrugClassifier] = {}


def drug_classifier(ruleset: Ruleset) -> DrugClassifier:
    """The process's classifier for a ruleset's drug classes (keyed by the ruleset's sha256)."""
    found = _CLASSIFIERS.get(ruleset.sha256)
    if found is None:
        found = _CLASSIFIERS[ruleset.sha256] = DrugClassifier(ruleset.drug_classes)
    return found


# ---------------------------------------------------------------------------------------------
# The derivation

_CONDITION_FACTS = tuple((key, f"cond_{key}") for key in CONDITION_KEYS)
_NO_DIFFERENTIALS: tuple[str | None, ...] = (None,) * len(DIFFERENTIAL_KEYS)
_DIFF_MEMO: dict[tuple[str | None, ...], tuple[dict[str, int], dict[str, Any]]] = {}


def _differentials(values: tuple[str | None, ...]) -> tuple[dict[str, int], dict[str, Any]]:
    """Facts and context for the differentials' values (in DIFFERENTIAL_KEYS order); memoised.

    At most 5**4 value combinations exist, so the memo stays small. The context's lists are
    shared between records: read them, never change them.
    """
    found = _DIFF_MEMO.get(values)
    if found is not None:
        return found
    groups: dict[str, list[str]] = {"explains_symptoms": [], "unassessed": [], "coexisting": []}
    for key, value in zip(DIFFERENTIAL_KEYS, values):
        if value is None or value == "not_assessed":
            groups["unassessed"].append(key)
        elif value in ("explains_symptoms", "coexisting"):
            groups[value].append(key)
    facts: dict[str, int] = {}
    ctx: dict[str, Any] = {}
    for group, fact in (("explains_symptoms", "explaining"), ("unassessed", "unassessed"), ("coexisting", "coexisting")):
        facts[f"differentials_{fact}"] = len(groups[group])
        ctx[f"differentials_{fact}_names"] = ", ".join(_DIFF_LABEL[k] for k in groups[group])
        ctx[f"differentials_{fact}_fields"] = [f"nlc_assessment.differentials.{k}" for k in groups[group]]
    ctx["differentials_open_fields"] = [f for f in DIFFERENTIAL_FIELDS if f in ctx["differentials_unassessed_fields"]]
    _DIFF_MEMO[values] = facts, ctx
    return facts, ctx


def enrollment_problem(d0: dt.date, enrollment: dt.date | None, params: dict[str, Any]) -> FieldProblem | None:
    """An ``enrollment_date`` before D0 + the diary window is impossible: randomisation follows the diary."""
    message = enrollment_too_early(d0, enrollment, params["enrollment_offset_days"]) if enrollment else None
    return FieldProblem("enrollment_date", message) if message else None


def derive(record: CandidateRecord, ruleset: Ruleset, *, position: str | None = None) -> Derived:
    """Compute the facts a ruleset's rules test, and the values its reasons quote.

    :raises CandidateRecordError: when the record's dates contradict each other (an
        ``enrollment_date`` before D0 + the diary window: randomisation follows the diary).
    """
    p = ruleset.parameters
    d0 = record.screening_start
    offset = p["enrollment_offset_days"]
    planned = record.enrollment_date is None
    enrollment = d0 + dt.timedelta(days=offset) if planned else record.enrollment_date
    assert enrollment is not None
    problem = enrollment_problem(d0, record.enrollment_date, p)
    if problem is not None:
        raise CandidateRecordError([problem], position=position, candidate_id=record.candidate_id, site=record.site)
    facts: dict[str, Any] = {}
    window_end = d0 + dt.timedelta(days=p["diary_window_nights"] - 1)
    ctx: dict[str, Any] = {
        "candidate_id": record.candidate_id,
        "screening_start": d0.isoformat(),
        "window_end": window_end.isoformat(),
        "enrollment_date": enrollment.isoformat(),
        "enrollment_note": f" (planned: screening_start + {offset} days)" if planned else "",
    }
    warnings: list[str] = []

    # I1 age
    ref = d0 if p["age_reference"] == "screening_start" else enrollment
    ctx["age_reference_date"] = ref.isoformat()
    if record.birth_date is not None:
        facts["age_years"] = age_on(record.birth_date, ref)
        facts["age_years_at_enrollment"] = age_on(record.birth_date, enrollment)
        ctx["birth_date"] = record.birth_date.isoformat()
        ctx["min_age_birthday"] = birthday(record.birth_date, p["min_age_years"]).isoformat()

    # I2 diary
    diary = record.diary
    inside = 0
    outside: list[str] = []
    for ep in (diary.episodes or []) if diary else []:
        if d0 <= ep.night_of <= window_end:
            inside += 1
        else:
            outside.append(ep.night_of.isoformat())
    if diary is None or diary.episodes is not None:
        facts["episodes_in_window"] = inside  # no diary yet: no episodes so far (nights unknown)
    # else: a diary whose episode list is missing: the count is unknown, not zero
    facts["episodes_outside_window"] = len(outside)
    ctx["episodes_outside_note"] = (
        f"; {len(outside)} outside the window ignored ({', '.join(outside)})" if outside else "")
    if diary is not None and diary.nights_recorded is not None:
        facts["diary_nights"] = diary.nights_recorded
    ctx["diary_state"] = "no diary yet" if diary is None else "diary.nights_recorded missing"

    # I3 assessment
    nlc = record.nlc_assessment
    confirmed = nlc.confirmed if nlc else None
    facts["nlc_confirmed"] = "unknown" if confirmed is None else ("yes" if confirmed else "no")
    diffs = nlc.differentials if nlc else None
    diff_facts, diff_ctx = _differentials(tuple(getattr(diffs, key) for key in DIFFERENTIAL_KEYS) if diffs
                                          else _NO_DIFFERENTIALS)
    facts.update(diff_facts)
    ctx.update(diff_ctx)

    # I4 consent (default pending)
    facts["consent"] = record.consent or "pending"

    # E1–E12 conditions
    cond = record.conditions
    for key, fact in _CONDITION_FACTS:
        value = getattr(cond, key) if cond else None
        facts[fact] = value or "unknown"
    ascites = cond.liver_cirrhosis_ascites_paracentesis if cond else None
    facts["cirrhosis_ascites_paracentesis"] = "unknown" if ascites is None else ("yes" if ascites else "no")
    site = cond.malignant_tumor_site if cond else None
    ctx["malignant_tumor_site"] = site or "not recorded"
    for name, sites in ruleset.site_lists.items():
        facts[f"tumor_site_{name}"] = site_status(site, sites)

    # E13–E15 exposures
    start = lookback_start(enrollment, p)
    ctx["lookback_start"] = start.isoformat()
    facts["med_history"] = "taken" if record.medication_history_taken is True else "not_taken"
    classify = drug_classifier(ruleset)
    meds = [(m, member) for m in record.medications or [] if any(member := classify(m))]
    any_class_entry = False
    for k, cname in enumerate(classify.names):
        if not meds:  # no entry in any class (the usual case): every class is "none"
            facts[f"exp_{cname}"] = "none"
            ctx[f"exp_{cname}_drug"] = ctx[f"exp_{cname}_when"] = ctx[f"exp_{cname}_clear"] = ""
            continue
        state, drug, when, clear = "none", "", "", ""
        best_stop: dt.date | None = None
        ongoing_name = None
        unknown_name = None
        outside_name = None
        for med, member in meds:
            if not member[k]:
                continue
            any_class_entry = True
            if med.start_date is not None and med.start_date > enrollment:
                outside_name = outside_name or med.name
            elif med.ongoing is True:
                ongoing_name = ongoing_name or med.name
            elif med.stop_date is not None:
                if med.stop_date >= start:
                    if best_stop is None or med.stop_date > best_stop:
                        best_stop, drug = med.stop_date, med.name
                else:
                    outside_name = outside_name or med.name
            else:
                unknown_name = unknown_name or med.name
        if ongoing_name is not None:
            state, drug, when = "inside", ongoing_name, "ongoing"
            clear = "it is ongoing: it counts until it is stopped (and any look-back after that has passed)"
        elif best_stop is not None:
            state, when = "inside", f"last taken {best_stop.isoformat()}"
            clear = f"it would no longer count from enrollment {clear_date(best_stop, p).isoformat()}"
        elif unknown_name is not None:
            state, drug, when = "unknown", unknown_name, "with no stop date and not marked ongoing"
        elif outside_name is not None:
            state, drug, when = "outside", outside_name, "outside the look-back"
        facts[f"exp_{cname}"] = state
        ctx[f"exp_{cname}_drug"] = f"({drug})" if drug else ""
        ctx[f"exp_{cname}_when"] = when
        ctx[f"exp_{cname}_clear"] = clear

    # Warnings that do not change the decision
    if planned and any_class_entry:
        warnings.append(f"decision made on a planned enrollment_date ({enrollment.isoformat()} = screening_start + "
                        f"{offset} days) with a listed medicine in a look-back class; re-screen on the actual date")
    if record.deceased_date is not None:
        warnings.append(f"the source record says the patient died on {record.deceased_date.isoformat()}")
    lo, hi = p.get("study_window_start"), p.get("study_window_end")
    if lo and hi and not (lo <= d0 <= hi):
        warnings.append(f"screening_start {d0.isoformat()} is outside the trial's screening period "
                        f"{lo.isoformat()} … {hi.isoformat()}")
    return Derived(facts, ctx, warnings)
