"""The generic derivations a pack's ``facts.yaml`` names, and the plan that runs them per record.

A pack declares each derived fact once: its name, the derivation that computes it and the
arguments (record field paths, dates, literals, ``{param: name}``), the display values it also
gives (``quotes``), and a doc line. :func:`read_declarations` validates that file;
:meth:`Declarations.catalogue` lists every fact (with its type), quotable value and field list a
criteria set may name, for the rules loader to check against; :meth:`Declarations.compile` turns
the declarations into a :class:`Plan` for one criteria set (its parameters are constants by then),
which :func:`screening.facts.derive` runs on each record.

Every derivation here is small and generic — an age on a date, the entries of a list inside a
date window, an enum value with its default, the fields of an object holding given values, the
exposure of a drug class in a look-back — and is tested on its own (tests/test_derivations.py).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import operator
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CandidateRecordError, FieldProblem, RuleDefinitionError, did_you_mean
from .fields import FieldSpec, RecordSpec
from .i18n import Phrase, joined, localized, phrase
from .matching import matches_terms, words

#: Where a number fact is unknown, the derivation returns this and the fact is left out.
MISSING: Any = object()
Fail = Callable[[str, str], RuleDefinitionError]


@dataclass(frozen=True)
class FactType:
    kind: str  # "int" or "enum"
    values: tuple[str, ...] = ()
    doc: str = ""
    reads: tuple[str, ...] = ()
    #: the drug classes of the set's value sets that the fact is derived with (its ``class`` argument)
    classes: tuple[str, ...] = ()
    #: the range an int fact can take on a valid record (None: no bound known), for the rule lint
    low: int | None = None
    high: int | None = None


@dataclass(frozen=True)
class Catalogue:
    """The names a criteria set's rules may use: facts (tested in conditions, quoted in reasons),
    quotable display values, and lists of field paths (``ask: ["@name"]``)."""

    facts: dict[str, FactType]
    quotes: frozenset[str]
    lists: frozenset[str]


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


@dataclass(frozen=True)
class Lookback:
    """The look-back window ``[L, end]`` before a date: ``calendar_months``, ``days`` or ``current``."""

    mode: str
    months: int = 0
    days: int = 0

    def start(self, end: dt.date) -> dt.date:
        if self.mode == "calendar_months":
            return minus_months(end, self.months)
        if self.mode == "days":
            return end - dt.timedelta(days=self.days)
        return end  # "current": on the end date itself

    def clear_date(self, last_dose: dt.date) -> dt.date:
        """The earliest end date whose look-back no longer contains ``last_dose``."""
        if self.mode == "days":
            return last_dose + dt.timedelta(days=self.days + 1)
        if self.mode == "current":
            return last_dose + dt.timedelta(days=1)
        # calendar months: L(E) is non-decreasing in E; start near the answer and step to it.
        guess = minus_months(last_dose, -self.months) + dt.timedelta(days=1)
        while self.start(guess - dt.timedelta(days=1)) > last_dose:
            guess -= dt.timedelta(days=1)
        while self.start(guess) <= last_dose:
            guess += dt.timedelta(days=1)
        return guess


# ---------------------------------------------------------------------------------------------
# Per-record state


class State:
    """One record's derivation in progress: its dates, facts, quotable values and warnings."""

    __slots__ = ("record", "dates", "planned", "facts", "ctx", "warnings", "memo")

    def __init__(self, record: Any) -> None:
        self.record = record
        self.dates: dict[str, dt.date | None] = {}
        self.planned: dict[str, int] = {}
        self.facts: dict[str, Any] = {}
        self.ctx: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.memo: dict[str, Any] = {}


def getter(path: str) -> Callable[[Any], Any]:
    """A function reading a field path of a record (None when it or an object above it is absent)."""
    if "." not in path:
        return operator.attrgetter(path)
    read = operator.attrgetter(path)

    def get(record: Any) -> Any:
        try:
            return read(record)
        except AttributeError:  # an object on the way is None: the field is unknown
            return None
    return get


# ---------------------------------------------------------------------------------------------
# Building: argument checking against the record, the dates and the parameters


@dataclass
class Build:
    """What compiling a derivation may consult; ``fail(message)`` names the declaration."""

    record: RecordSpec
    params: dict[str, Any]
    dates: tuple[str, ...]
    drug_classes: dict[str, Any]
    site_lists: dict[str, Any]
    classifier: Callable[[Any], tuple[bool, ...]] | None
    fail: Callable[[str], RuleDefinitionError]
    args: dict[str, Any] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()

    def value(self, name: str, default: Any = MISSING) -> Any:
        """An argument, ``{param: x}`` read from the set's parameters."""
        if name not in self.args:
            if default is MISSING:
                raise self.fail(f"needs the argument {name!r}")
            return default
        value = self.args[name]
        if isinstance(value, dict) and set(value) == {"param"}:
            pname = value["param"]
            if not isinstance(pname, str):
                raise self.fail(f"argument {name!r}: {{param: name}} takes a parameter's name")
            if pname not in self.declared:
                raise self.fail(f"argument {name!r}: no parameter {pname[:40]!r} is declared"
                                f"{did_you_mean(pname, sorted(self.declared))}")
            if pname not in self.params:
                return None  # an optional parameter the set does not give
            return self.params[pname]
        return value

    def field(self, name: str, *types: str) -> FieldSpec:
        path = self.value(name)
        spec = self.record.get(path) if isinstance(path, str) else None
        if spec is None:
            paths = list(self.record.paths)
            raise self.fail(f"argument {name!r}: {str(path)[:60]!r} is no field of the record"
                            f"{did_you_mean(str(path), paths)}")
        if types and spec.type not in types:
            raise self.fail(f"argument {name!r}: {path} is a {spec.type}, not a {' or '.join(types)}")
        return spec

    def date(self, name: str) -> str:
        value = self.value(name)
        if value not in self.dates:
            raise self.fail(f"argument {name!r}: {str(value)[:60]!r} is not one of the dates ({', '.join(self.dates)})")
        return str(value)

    def integer(self, name: str, default: Any = MISSING, *, high: int = 36600) -> int:
        """A whole-number argument in 0 … ``high`` (bounded so that no date arithmetic on a valid
        record can overflow, whatever the parameter's declared range)."""
        value = self.value(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"argument {name!r} must be a whole number or {{param: name}}")
        if not 0 <= value <= high:
            raise self.fail(f"argument {name!r} is {value}; it must be in 0 … {high}")
        return value

    def phrase(self, name: str, default: Any = MISSING) -> Phrase:
        """An argument of words a reason quotes: text, or ``{en: ..., zh: ...}``."""
        value = self.value(name, default)
        return Phrase(localized(value, f"argument {name!r}", lambda message, where: self.fail(f"{where}: {message}")))

    def word(self, name: str, default: Any = MISSING) -> str:
        value = self.value(name, default)
        if not isinstance(value, str):
            raise self.fail(f"argument {name!r} must be text")
        return value

    def words(self, name: str) -> tuple[str, ...]:
        value = self.value(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(f"argument {name!r} must be a list of values")
        return tuple(value)


#: The name a derivation's display value is quoted by ("" when the pack quotes it by no name).
Quote = str


@dataclass(frozen=True)
class Derivation:
    """A generic derivation: the arguments it takes, the display values it can quote (those in
    ``lists`` hold lists of field paths), the type of its fact, and how to compute it."""

    args: frozenset[str]
    quotes: frozenset[str]
    kind: Callable[[Build], FactType]
    make: Callable[[Build, dict[str, Quote]], Callable[[State], Any]]
    lists: frozenset[str] = frozenset()


def _int(_: Build) -> FactType:
    return FactType("int")


def _count_kind(_: Build) -> FactType:
    """A count of list entries: never below 0."""
    return FactType("int", low=0)


def _number_kind(b: Build) -> FactType:
    """An int field's value: within the field's declared min and max."""
    spec = b.field("field", "int")
    return FactType("int", low=None if spec.minimum is None else math.ceil(spec.minimum),
                    high=None if spec.maximum is None else math.floor(spec.maximum))


def _count_values_kind(b: Build) -> FactType:
    """How many enum fields of an object hold given values: 0 … the number of those fields."""
    spec = b.field("object", "object")
    return FactType("int", low=0, high=sum(1 for f in spec.fields.values() if f.type == "enum"))


def _enum(*values: str) -> Callable[[Build], FactType]:
    return lambda _: FactType("enum", values)


# -- age ----------------------------------------------------------------------------------------

def _make_age(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    born = getter(b.field("born", "date").path)
    on = b.date("at")
    years = b.integer("birthday", high=1000) if "birthday" in b.args else None
    q_on, q_born, q_birthday = q["at"], q["born"], q["birthday"]

    def age(st: State) -> Any:
        ref = st.dates[on]
        birth = born(st.record)
        if ref is not None:
            st.ctx[q_on] = ref.isoformat()
        if birth is None or ref is None:
            return MISSING
        st.ctx[q_born] = birth.isoformat()
        if years is not None:
            st.ctx[q_birthday] = birthday(birth, years).isoformat()
        return age_on(birth, ref)
    return age


# -- a list's entries in a date window ------------------------------------------------------------

def _make_count_in_window(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    spec = b.field("list", "list")
    assert spec.items is not None
    key = b.word("date")
    item = spec.items.fields.get(key)
    if item is None or item.type != "date" or not item.required:
        raise b.fail(f"argument 'date': {key!r} is no required date field of the items of {spec.path}")
    items = getter(spec.path)
    parent = getter(spec.path.rsplit(".", 1)[0]) if "." in spec.path else None
    start = b.date("start")
    nights = b.integer("nights")
    count = b.word("count", "inside")
    if count not in ("inside", "outside"):
        raise b.fail("argument 'count' is inside or outside")
    q_end, q_note = q["end"], q["note"]

    slot = f"window:{spec.path}:{key}:{start}:{nights}"
    days = dt.timedelta(days=nights - 1)

    def counted(st: State) -> tuple[str, Any, list[str]] | None:
        """(window end, entries inside or MISSING, the dates of those outside), once per record."""
        found = st.memo.get(slot)
        if found is None:
            d0 = st.dates[start]
            if d0 is None:
                return None
            end = d0 + days
            entries = items(st.record)
            if entries is None:
                # no list in a present parent: unknown; no parent (no diary yet): none so far
                unknown = parent is not None and parent(st.record) is not None
                found = (end.isoformat(), MISSING if unknown else 0, [])
            else:
                inside = 0
                outside: list[str] = []
                for entry in entries:
                    day = getattr(entry, key)
                    if d0 <= day <= end:
                        inside += 1
                    else:
                        outside.append(day.isoformat())
                found = (end.isoformat(), inside, outside)
            st.memo[slot] = found
        return found

    if count == "inside":
        def window(st: State) -> Any:
            found = counted(st)
            if found is None:
                return MISSING
            st.ctx[q_end] = found[0]
            return found[1]
        return window

    def outside(st: State) -> Any:
        found = counted(st)
        if found is None:
            return MISSING
        st.ctx[q_end] = found[0]
        dates = found[2]
        st.ctx[q_note] = phrase("outside_window", count=len(dates), dates=", ".join(dates)) if dates else ""
        return len(dates)
    return outside


# -- single fields --------------------------------------------------------------------------------

def _make_number(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field", "int").path)

    def number(st: State) -> Any:
        value = get(st.record)
        return MISSING if value is None else value
    return number


def _make_yes_no(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field", "bool").path)

    def yes_no(st: State) -> Any:
        value = get(st.record)
        return "unknown" if value is None else ("yes" if value else "no")
    return yes_no


def _enum_kind(b: Build) -> FactType:
    spec = b.field("field", "enum")
    default = b.word("default", "unknown")
    return FactType("enum", spec.values if default in spec.values else spec.values + (default,))


def _make_enum_value(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field", "enum").path)
    default = b.word("default", "unknown")

    def enum_value(st: State) -> Any:
        return get(st.record) or default
    return enum_value


def _is_true_kind(b: Build) -> FactType:
    return FactType("enum", (b.word("yes"), b.word("no")))


def _make_is_true(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field", "bool").path)
    yes, no = b.word("yes"), b.word("no")

    def is_true(st: State) -> Any:
        return yes if get(st.record) is True else no
    return is_true


def _make_presence_text(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field").path)
    absent, present = b.phrase("absent"), b.phrase("present")
    q_text = q["text"]

    def presence_text(st: State) -> Any:
        st.ctx[q_text] = absent if get(st.record) is None else present
        return MISSING
    return presence_text


# -- the fields of an object holding given values -------------------------------------------------

def _make_count_values(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    spec = b.field("object", "object")
    keys = tuple(k for k, f in spec.fields.items() if f.type == "enum")
    if not keys:
        raise b.fail(f"argument 'object': {spec.path} has no enum fields to count")
    values = frozenset(b.words("values"))
    missing = b.value("missing", False)
    if not isinstance(missing, bool):
        raise b.fail("argument 'missing' is true or false")
    allowed = {v for k in keys for v in spec.fields[k].values}
    if not values <= allowed:
        raise b.fail(f"argument 'values': {sorted(values - allowed)[0]!r} is no value of the fields of {spec.path}")
    labels = {k: Phrase(f.labels) if f.labels else (f.label or k) for k, f in ((k, spec.fields[k]) for k in keys)}
    paths = {k: spec.fields[k].path for k in keys}
    get = getter(spec.path)
    q_names, q_fields = q["names"], q["fields"]
    memo: dict[tuple[Any, ...], tuple[int, str, list[str]]] = {}
    none = (None,) * len(keys)
    read = operator.attrgetter(*keys) if len(keys) > 1 else (lambda obj: (getattr(obj, keys[0]),))
    slot = f"values:{spec.path}"

    def count_values(st: State) -> Any:
        state = st.memo.get(slot)
        if state is None:
            obj = get(st.record)
            state = st.memo[slot] = read(obj) if obj is not None else none
        found = memo.get(state)
        if found is None:  # at most (values + 1) ** fields states: the memo stays small
            chosen = [k for k, v in zip(keys, state) if v in values or (missing and v is None)]
            found = (len(chosen), joined([labels[k] for k in chosen]), [paths[k] for k in chosen])
            if len(memo) < 4096:
                memo[state] = found
        ctx = st.ctx
        ctx[q_names] = found[1]
        ctx[q_fields] = found[2]  # shared between records: read, never changed
        return found[0]
    return count_values


# -- a text against the set's site lists ----------------------------------------------------------

def _make_in_site_list(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    get = getter(b.field("field", "text", "name").path)
    name = b.word("list")
    if name not in b.site_lists:
        raise b.fail(f"argument 'list': {name!r} is no site list of the set's value sets")
    sites = b.site_lists[name]
    missing = b.phrase("missing", "not recorded")
    q_value = q["value"]

    def in_site_list(st: State) -> Any:
        site = get(st.record)
        st.ctx[q_value] = site or missing
        if site is None or not site.strip():
            return "unknown"
        return "listed" if matches_terms(site, words(site), sites.names, sites.cjk_names) else "other"
    return in_site_list


# -- exposure to a drug class in a look-back ------------------------------------------------------

#: The item fields the exposure derivations read (a medication entry of the v1 record), and their types.
MEDICATION_FIELDS = {"name": ("text", "name"), "atc": ("atc_code",), "rxnorm": ("rxnorm_code",),
                     "start_date": ("date",), "stop_date": ("date",), "ongoing": ("bool",)}


def _classified(st: State, path: str, items: Callable[[Any], Any],
                classify: Callable[[Any], tuple[bool, ...]]) -> list[tuple[Any, tuple[bool, ...]]]:
    """The entries of a medication list that belong to some drug class, with their classes (once per record)."""
    found = st.memo.get(path)
    if found is None:
        found = st.memo[path] = [(m, member) for m in items(st.record) or () if any(member := classify(m))]
    return found


def _medication_list(b: Build) -> tuple[str, Callable[[Any], Any]]:
    spec = b.field("list", "list")
    assert spec.items is not None
    fields = spec.items.fields
    lacking = [f"{name} ({' or '.join(types)})" for name, types in MEDICATION_FIELDS.items()
               if name not in fields or fields[name].type not in types]
    if lacking or not fields["name"].required:
        raise b.fail(f"argument 'list': the items of {spec.path} need {', '.join(lacking) or 'name'}"
                     f"{'' if fields.get('name') is None or fields['name'].required else ' (name required)'}")
    if b.classifier is None:
        raise b.fail("needs drug classes (value_sets.drug_classes of the set)")
    return spec.path, getter(spec.path)


class _Exposure:
    """Exposure to one drug class in the look-back before a date (``exposure``); several classes
    over the same list, date and look-back run as one :class:`_Exposures` step."""

    def __init__(self, b: Build, q: dict[str, Quote]) -> None:
        self.path, self.items = _medication_list(b)
        cname = b.word("class")
        if cname not in b.drug_classes:
            raise b.fail(f"argument 'class': {cname!r} is no drug class of the set's value sets")
        self.k = list(b.drug_classes).index(cname)
        self.on = b.date("end")
        mode = b.word("lookback")
        if mode not in ("calendar_months", "days", "current"):
            raise b.fail("argument 'lookback' is calendar_months, days or current")
        self.lookback = Lookback(mode, b.integer("months", 0, high=12000), b.integer("days", 0))
        assert b.classifier is not None
        self.classify = b.classifier
        self.q_start, self.q_drug, self.q_when, self.q_clear = q["start"], q["drug"], q["when"], q["clear"]
        self._starts: dict[dt.date, tuple[dt.date, str]] = {}

    def key(self) -> tuple[Any, ...]:
        return (self.path, self.on, self.lookback)

    def start(self, end: dt.date) -> tuple[dt.date, str]:
        """The look-back's first day (and as text) for an end date; memoised."""
        found = self._starts.get(end)
        if found is None:
            if len(self._starts) >= 4096:
                self._starts.clear()
            first = self.lookback.start(end)
            found = self._starts[end] = (first, first.isoformat())
        return found

    def __call__(self, st: State) -> Any:
        end = st.dates[self.on]
        if end is None:
            return "unknown"
        start, shown = self.start(end)
        st.ctx[self.q_start] = shown
        return self.state(st, _classified(st, self.path, self.items, self.classify), start, end)

    def state(self, st: State, meds: list[tuple[Any, tuple[bool, ...]]], start: dt.date, end: dt.date) -> str:
        k = self.k
        drug = ""
        when: str = ""
        clear: str = ""
        state = "none"
        best_stop: dt.date | None = None
        ongoing_name = unknown_name = outside_name = None
        for med, member in meds:
            if not member[k]:
                continue
            if med.start_date is not None and med.start_date > end:
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
            state, drug, when, clear = "inside", ongoing_name, _ONGOING, _ONGOING_CLEAR
        elif best_stop is not None:
            state, when = "inside", phrase("last_taken", date=best_stop.isoformat())
            clear = phrase("clear_from", date=self.lookback.clear_date(best_stop).isoformat())
        elif unknown_name is not None:
            state, drug, when = "unknown", unknown_name, _NO_STOP_DATE
        elif outside_name is not None:
            state, drug, when = "outside", outside_name, _OUTSIDE_LOOKBACK
        ctx = st.ctx
        ctx[self.q_drug] = phrase("drug", drug=drug) if drug else ""
        ctx[self.q_when] = when
        ctx[self.q_clear] = clear
        return state


_ONGOING, _ONGOING_CLEAR = phrase("ongoing"), phrase("ongoing_clear")
_NO_STOP_DATE, _OUTSIDE_LOOKBACK = phrase("no_stop_date"), phrase("outside_lookback")


class _Exposures:
    """The exposure facts of several drug classes over one list, date and look-back, as one step."""

    def __init__(self, name: str, first: _Exposure) -> None:
        self.members: list[tuple[str, _Exposure]] = [(name, first)]

    def accepts(self, step: Any) -> bool:
        return isinstance(step, _Exposure) and step.key() == self.members[0][1].key()

    def __call__(self, st: State) -> Any:
        facts, ctx = st.facts, st.ctx
        first = self.members[0][1]
        end = st.dates[first.on]
        if end is None:
            for name, _ in self.members:
                facts[name] = "unknown"
            return MISSING
        start, shown = first.start(end)
        meds = _classified(st, first.path, first.items, first.classify)
        for name, one in self.members:
            ctx[one.q_start] = shown
            if meds:
                facts[name] = one.state(st, meds, start, end)
            else:  # no entry in any class (the usual case)
                facts[name] = "none"
                ctx[one.q_drug] = ctx[one.q_when] = ctx[one.q_clear] = ""
        return MISSING


def _make_exposure(b: Build, q: dict[str, Quote]) -> Callable[[State], Any]:
    return _Exposure(b, q)


REGISTRY: dict[str, Derivation] = {
    "age": Derivation(frozenset({"born", "at", "birthday"}), frozenset({"at", "born", "birthday"}), _int, _make_age),
    "count_in_window": Derivation(frozenset({"list", "date", "start", "nights", "count"}), frozenset({"end", "note"}),
                                  _count_kind, _make_count_in_window),
    "number": Derivation(frozenset({"field"}), frozenset(), _number_kind, _make_number),
    "yes_no": Derivation(frozenset({"field"}), frozenset(), _enum("yes", "no", "unknown"), _make_yes_no),
    "enum_value": Derivation(frozenset({"field", "default"}), frozenset(), _enum_kind, _make_enum_value),
    "is_true": Derivation(frozenset({"field", "yes", "no"}), frozenset(), _is_true_kind, _make_is_true),
    "count_values": Derivation(frozenset({"object", "values", "missing"}), frozenset({"names", "fields"}),
                               _count_values_kind,
                               _make_count_values, lists=frozenset({"fields"})),
    "in_site_list": Derivation(frozenset({"field", "list", "missing"}), frozenset({"value"}),
                               _enum("listed", "other", "unknown"), _make_in_site_list),
    "exposure": Derivation(frozenset({"list", "class", "end", "lookback", "months", "days"}),
                           frozenset({"start", "drug", "when", "clear"}), _enum("inside", "unknown", "outside", "none"),
                           _make_exposure),
    "presence_text": Derivation(frozenset({"field", "absent", "present"}), frozenset({"text"}), _int,
                                _make_presence_text),
}


# -- warnings -------------------------------------------------------------------------------------

def _warn_planned_with_exposure(b: Build, message: Mapping[str, str]) -> Callable[[State], None]:
    on = b.date("date")
    path, items = _medication_list(b)
    classify = b.classifier
    assert classify is not None

    def warn(st: State) -> None:
        if on in st.planned and _classified(st, path, items, classify):
            day = st.dates[on]
            assert day is not None
            st.warnings.append(_fill(message, date=day.isoformat(), days=st.planned[on]))
    return warn


def _warn_date_given(b: Build, message: Mapping[str, str]) -> Callable[[State], None]:
    get = getter(b.field("field", "date").path)

    def warn(st: State) -> None:
        value = get(st.record)
        if value is not None:
            st.warnings.append(_fill(message, value=value.isoformat()))
    return warn


def _warn_outside_period(b: Build, message: Mapping[str, str]) -> Callable[[State], None]:
    on = b.date("date")
    low, high = b.value("from"), b.value("to")
    if low is None or high is None:
        return lambda st: None
    if not isinstance(low, dt.date) or not isinstance(high, dt.date):
        raise b.fail("arguments 'from' and 'to' are date parameters")

    def warn(st: State) -> None:
        day = st.dates[on]
        if day is not None and not low <= day <= high:
            st.warnings.append(_fill(message, value=day.isoformat(), **{"from": low.isoformat(), "to": high.isoformat()}))
    return warn


WARNINGS: dict[str, tuple[frozenset[str], frozenset[str],
                          Callable[[Build, Mapping[str, str]], Callable[[State], None]]]] = {
    "planned_with_exposure": (frozenset({"date", "list"}), frozenset({"date", "days"}), _warn_planned_with_exposure),
    "date_given": (frozenset({"field"}), frozenset({"value"}), _warn_date_given),
    "outside_period": (frozenset({"date", "from", "to"}), frozenset({"value", "from", "to"}), _warn_outside_period),
}


def _fill(message: Mapping[str, str], **values: Any) -> Phrase:
    """A warning's message, its ``{placeholders}`` filled, in every language it is written in."""
    return Phrase({lang: re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group())), text)
                   for lang, text in message.items()})


# ---------------------------------------------------------------------------------------------
# Declarations (facts.yaml)


@dataclass(frozen=True)
class Entry:
    """One declared fact (``name`` set), quotable-only entry (``name`` None) or warning."""

    name: str | None
    derive: str
    args: dict[str, Any]
    quotes: dict[str, tuple[str, ...]]
    doc: str
    where: str
    #: a warning's message, by language
    message: Mapping[str, str] = field(default_factory=dict)
    #: the declaration a for_each entry was expanded from
    group: str | None = None


@dataclass(frozen=True)
class DateDecl:
    name: str
    field: str
    planned_from: str | None = None
    plus: Any = None
    note: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declarations:
    """A pack's ``facts.yaml``, validated against its record; expanded and compiled per criteria set."""

    parameters: dict[str, dict[str, Any]]
    dates: tuple[DateDecl, ...]
    context: tuple[Entry, ...]
    facts: tuple[dict[str, Any], ...]     # raw, each with its 'where'
    warnings: tuple[Entry, ...]
    stamp: dict[str, Any] | None = None

    def stamp_values(self, params: dict[str, Any], fail: Fail) -> dict[str, Any]:
        """What a decision row's ``parameters`` shows: the ``stamp`` entries, each a text with
        ``{parameter}`` placeholders or ``{by: <parameter>, texts: {<its value>: <text>}}``; every
        parameter as it is when the pack lists none."""
        shown = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in params.items()}
        if self.stamp is None:
            return shown
        out: dict[str, Any] = {}
        for key, spec in self.stamp.items():
            if isinstance(spec, dict):
                by = shown.get(spec["by"]) if isinstance(spec.get("by"), str) else None
                texts = spec.get("texts")
                if not isinstance(texts, dict) or not isinstance(by, str) or by not in texts:
                    raise fail(f"has no text for {spec.get('by')} = {by!r}", f"stamp.{key}")
                spec = texts[by]
            if not isinstance(spec, str):
                raise fail("is a text with {parameter} placeholders, or {by: <parameter>, texts: {...}}", f"stamp.{key}")
            try:
                parts = list(string.Formatter().parse(spec))
            except ValueError as exc:
                raise fail(f"bad placeholder: {exc}", f"stamp.{key}") from None
            for _, name, fmt, conv in parts:
                if name is not None and (name not in shown or fmt or conv):
                    raise fail(f"{{{str(name)[:40]}}} is no parameter (write plain {{name}})", f"stamp.{key}")
            out[key] = spec.format_map(shown)
        return out

    def expand(self, record: RecordSpec, drug_classes: Iterable[str], site_lists: Iterable[str],
               fail: Fail) -> list[Entry]:
        """Every fact entry, ``for_each`` expanded over the record's object fields or the value sets."""
        out: list[Entry] = []
        for raw in self.facts:
            where = raw["where"]
            each = raw.get("for_each")
            if each is None:
                out.append(_entry(raw, where, {}, fail))
                continue
            if not isinstance(each, dict) or len(each) not in (1, 2):
                raise fail("must be {object: <field>, enum: <enums name>}, {drug_class: true} or {site_list: true}",
                           f"{where}.for_each")
            if "object" in each:
                if not set(each) <= {"object", "enum"}:
                    raise fail("is {object: <field>, enum: <enums name>}", f"{where}.for_each")
                obj = record.get(str(each["object"]))
                if obj is None or obj.type != "object":
                    raise fail("names no object field of the record", f"{where}.for_each.object")
                keys = [k for k, f in obj.fields.items() if f.type == "enum" and
                        (each.get("enum") is None or f.enum_name == each.get("enum"))]
                var = "key"
            elif each == {"drug_class": True}:
                keys, var = list(drug_classes), "class"
            elif each == {"site_list": True}:
                keys, var = list(site_lists), "list"
            else:
                raise fail("must be {object: <field>, enum: <enums name>}, {drug_class: true} or {site_list: true}",
                           f"{where}.for_each")
            for key in keys:
                out.append(_entry(raw, f"{where}[{key}]", {var: key}, fail, group=where))
        return out

    def catalogue(self, record: RecordSpec, params: dict[str, Any], drug_classes: dict[str, Any],
                  site_lists: dict[str, Any], fail: Fail) -> tuple[Catalogue, list[Entry]]:
        entries = self.expand(record, drug_classes, site_lists, fail)
        facts: dict[str, FactType] = {}
        fixed = {"candidate_id"} | {d.name for d in self.dates} | set(self.parameters)
        quotes: set[str] = set(fixed)
        lists: set[str] = set()
        owner: dict[str, str] = {}  # quoted name -> the declaration that quotes it
        for d in self.dates:
            quotes.update(d.note)
            owner.update((n, f"dates.{d.name}") for n in d.note)
        for entry in list(self.context) + entries:
            for names in entry.quotes.values():
                for n in names:
                    if n in fixed:
                        raise fail(f"quotes a value as {n!r}, the name of a date, parameter or candidate_id", entry.where)
                    mine = entry.group or entry.where
                    if owner.setdefault(n, mine) != mine:
                        raise fail(f"quotes a value as {n!r}, which {owner[n]} quotes too; one would overwrite the "
                                   f"other", entry.where)
        for entry in list(self.context) + entries:
            derivation = REGISTRY[entry.derive]
            build = self._build(record, params, drug_classes, site_lists, None, entry, fail)
            if entry.name is not None:
                if entry.name in facts:
                    raise fail(f"the fact {entry.name!r} is declared twice", entry.where)
                kind = derivation.kind(build)
                reads = tuple(sorted({v for k, v in entry.args.items() if isinstance(v, str) and record.get(v)}))
                classes = tuple(v for k, v in entry.args.items() if k == "class" and isinstance(v, str))
                facts[entry.name] = FactType(kind.kind, kind.values, entry.doc, reads, classes, kind.low, kind.high)
            for role, names in entry.quotes.items():
                (lists if role in derivation.lists else quotes).update(names)
        clash = set(facts) & (quotes | lists)
        if clash:
            raise fail(f"{sorted(clash)[0]!r} is both a fact and a quoted value", "facts")
        return Catalogue(facts, frozenset(quotes), frozenset(lists)), entries

    def _build(self, record: RecordSpec, params: dict[str, Any], drug_classes: dict[str, Any],
               site_lists: dict[str, Any], classifier: Any, entry: Entry, fail: Fail) -> Build:
        return Build(record, params, tuple(d.name for d in self.dates), drug_classes, site_lists, classifier,
                     lambda message: fail(message, entry.where), dict(entry.args), frozenset(self.parameters))

    def compile(self, record: RecordSpec, params: dict[str, Any], drug_classes: dict[str, Any],
                site_lists: dict[str, Any], classifier: Any, entries: list[Entry], fail: Fail) -> Plan:
        steps: list[tuple[str | None, Callable[[State], Any]]] = []
        aliases: list[tuple[str, str]] = []
        for entry in list(self.context) + entries:
            derivation = REGISTRY[entry.derive]
            build = self._build(record, params, drug_classes, site_lists, classifier, entry, fail)
            quotes = {role: entry.quotes.get(role, ("",))[0] for role in derivation.quotes}
            aliases.extend((names[0], alias) for names in entry.quotes.values() for alias in names[1:])
            step = derivation.make(build, quotes)
            if isinstance(step, _Exposure) and entry.name is not None:
                last = steps[-1][1] if steps else None
                if isinstance(last, _Exposures) and last.accepts(step):
                    last.members.append((entry.name, step))
                else:
                    steps.append((None, _Exposures(entry.name, step)))
            elif entry.group is not None and entry.derive == "enum_value" and steps and \
                    isinstance(steps[-1][1], _EnumValues) and steps[-1][1].group == entry.group:
                steps[-1][1].add(entry.name, build)
            elif entry.group is not None and entry.derive == "enum_value":
                steps.append((None, _EnumValues(entry.group, entry.name, build)))
            else:
                steps.append((entry.name, step))
        warns = []
        for entry in self.warnings:
            build = self._build(record, params, drug_classes, site_lists, classifier, entry, fail)
            warns.append(WARNINGS[entry.derive][2](build, entry.message))
        dates = []
        for d in self.dates:
            get = getter(d.field)
            plus = None
            if d.planned_from is not None:
                plus = d.plus
                if isinstance(plus, dict):
                    plus = params.get(plus["param"])
                if not isinstance(plus, int) or isinstance(plus, bool) or not 0 <= plus <= 3660:
                    raise fail("plus_days is a whole number of days, 0 … 3660 (given or read from a parameter)",
                               f"dates.{d.name}.planned")
            spec = record.get(d.field)
            check = spec.not_before if spec is not None else None
            base_field = next((other.field for other in self.dates if other.name == d.planned_from), None)
            message = (check.message if check is not None and check.other == base_field
                       else f"is before {d.planned_from} + {{days}} days")
            planned = (None if plus is None else
                       (dt.timedelta(days=plus), plus, phrase("planned_date", base=d.planned_from, days=plus)))
            dates.append((d.name, d.field, get, d.planned_from, planned, d.note[0] if d.note else "", message))
        return Plan(tuple(dates), tuple(steps), tuple(warns), tuple(aliases))


class _EnumValues:
    """The enum_value facts of one for_each over an object's fields, as one step (the object read once)."""

    def __init__(self, group: str, name: str | None, build: Build) -> None:
        self.group = group
        self.parent = ""
        self.items: list[tuple[str, str, str]] = []   # (fact, field name, default)
        self.add(name, build)

    def add(self, name: str | None, build: Build) -> None:
        assert name is not None
        path = build.field("field", "enum").path
        parent, _, key = path.rpartition(".")
        assert not self.items or parent == self.parent
        self.parent = parent
        self.items.append((name, key, build.word("default", "unknown")))
        self._get = getter(parent) if parent else (lambda record: record)
        keys = [k for _, k, _ in self.items]
        self._read = operator.attrgetter(*keys) if len(keys) > 1 else (lambda obj: (getattr(obj, keys[0]),))

    def __call__(self, st: State) -> Any:
        facts = st.facts
        obj = self._get(st.record)
        if obj is None:
            for name, _, default in self.items:
                facts[name] = default
        else:
            for (name, _, default), value in zip(self.items, self._read(obj)):
                facts[name] = value or default
        return MISSING


@dataclass(frozen=True)
class Plan:
    """A criteria set's derivation, compiled: run it with :meth:`run`."""

    #: (name, field path, reader, planned from, (days as timedelta, days, note) or None, note's name, message)
    dates: tuple[tuple[str, str, Callable[[Any], Any], str | None, tuple[dt.timedelta, int, str] | None, Quote, str],
                 ...]
    steps: tuple[tuple[str | None, Callable[[State], Any]], ...]
    warnings: tuple[Callable[[State], None], ...]
    #: (quoted name, another name for the same value)
    aliases: tuple[tuple[str, str], ...] = ()

    def run(self, record: Any, *, position: str | None = None) -> State:
        """The facts, quotable values and warnings of one record.

        :raises CandidateRecordError: a date the record gives comes before the earliest the set
            allows (an enrollment before the end of the diary window).
        """
        st = State(record)
        ctx = st.ctx
        ctx["candidate_id"] = record.candidate_id
        dates = st.dates
        for name, path, get, planned_from, plus, note, message in self.dates:
            value = get(record)
            if planned_from is not None:
                base = dates[planned_from]
                assert plus is not None
                if base is None:
                    pass
                elif value is None:
                    value = base + plus[0]
                    st.planned[name] = plus[1]
                    ctx[note] = plus[2]
                else:
                    if value < base + plus[0]:
                        raise CandidateRecordError([FieldProblem(path, message.replace("{days}", str(plus[1])))],
                                                   position=position, candidate_id=record.candidate_id,
                                                   site=getattr(record, "site", None))
                    ctx[note] = ""
            dates[name] = value
            if value is not None:
                ctx[name] = value.isoformat()
        facts = st.facts
        for fact, step in self.steps:
            found = step(st)
            if fact is not None and found is not MISSING:
                facts[fact] = found
        for warn in self.warnings:
            warn(st)
        for quoted, alias in self.aliases:
            if quoted in ctx:
                ctx[alias] = ctx[quoted]
        ctx.pop("", None)  # display values the pack quotes by no name
        return st


_FACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _entry(raw: dict[str, Any], where: str, subst: dict[str, str], fail: Fail, group: str | None = None) -> Entry:
    def sub(value: Any) -> Any:
        if isinstance(value, str):
            for var, key in subst.items():
                value = value.replace("{" + var + "}", key)
            return value
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    for key in raw:
        if key not in {"name", "derive", "args", "quotes", "doc", "for_each", "message", "where"}:
            raise fail(f"unknown key {str(key)[:40]!r}", f"{where}.{str(key)[:40]}")
    derive = raw.get("derive")
    table: dict[str, Any] = REGISTRY if "message" not in raw else WARNINGS
    if not isinstance(derive, str) or derive not in table:
        raise fail(f"unknown derivation {str(derive)[:40]!r}{did_you_mean(str(derive), sorted(table))}",
                   f"{where}.derive")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise fail("must map argument names to values", f"{where}.args")
    allowed = REGISTRY[derive].args if table is REGISTRY else WARNINGS[derive][0]
    for key in args:
        if key not in allowed:
            raise fail(f"{derive} takes no argument {str(key)[:40]!r}{did_you_mean(str(key), sorted(allowed))}",
                       f"{where}.args")
    name = sub(raw.get("name"))
    if name is not None and (not isinstance(name, str) or not _FACT_NAME.match(name)):
        raise fail("a fact name is lower_case_with_underscores", f"{where}.name")
    quotes: dict[str, tuple[str, ...]] = {}
    roles = REGISTRY[derive].quotes if table is REGISTRY else frozenset()
    raw_quotes = sub(raw.get("quotes") or {})
    if not isinstance(raw_quotes, dict):
        raise fail("must map what the derivation shows to the names reasons quote", f"{where}.quotes")
    for role, names in raw_quotes.items():
        if role not in roles:
            raise fail(f"{derive} quotes no {str(role)[:40]!r} (it can quote: {', '.join(sorted(roles)) or 'nothing'})",
                       f"{where}.quotes")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and _FACT_NAME.match(n) for n in names):
            raise fail("must be a name (or a list of names) such as window_end", f"{where}.quotes.{role}")
        quotes[role] = tuple(names)
    doc = sub(raw.get("doc", ""))
    message = localized(raw["message"], f"{where}.message", fail) if "message" in raw else {}
    if not isinstance(doc, str):
        raise fail("must be text", f"{where}.doc")
    return Entry(name, derive, sub(args), quotes, doc, where, message, group)


# ---------------------------------------------------------------------------------------------
# Reading facts.yaml

PARAMETER_TYPES = ("int", "choice", "status", "date", "text")


def read_declarations(data: dict[str, Any], record: RecordSpec, fail: Fail) -> Declarations:
    """Validate a ``facts.yaml`` mapping against the pack's record."""
    allowed = {"parameters", "dates", "facts", "context", "warnings", "stamp"}
    for key in data:
        if key not in allowed:
            raise fail(f"unknown key {str(key)[:40]!r}{did_you_mean(str(key), sorted(allowed))}", str(key)[:40])
    for key in ("parameters", "dates", "facts"):
        if key not in data:
            raise fail("required key is missing", key)
    params = data["parameters"]
    if not isinstance(params, dict):
        raise fail("must map parameter names to declarations", "parameters")
    for pname, decl in params.items():
        where = f"parameters.{pname}"
        if not isinstance(pname, str) or not _FACT_NAME.match(pname) or not isinstance(decl, dict):
            raise fail("each parameter is name: {type: ..., doc: ...}", where)
        extra = {"int": {"min", "max", "at_least", "why"}, "choice": {"values", "hints"}, "date": {"with", "not_before"}}
        kind = decl.get("type")
        if not isinstance(kind, str) or kind not in PARAMETER_TYPES:
            raise fail(f"type is one of {', '.join(PARAMETER_TYPES)}", f"{where}.type")
        for key in decl:
            if key not in {"type", "doc", "optional"} | extra.get(kind, set()):
                raise fail(f"unknown key {str(key)[:40]!r}", f"{where}.{str(key)[:40]}")
        for key in ("doc", "why"):
            if key in decl and not isinstance(decl[key], str):
                raise fail("must be text", f"{where}.{key}")
        if "optional" in decl and not isinstance(decl["optional"], bool):
            raise fail("must be true or false", f"{where}.optional")
        if kind == "choice" and "hints" in decl and (not isinstance(decl["hints"], dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in decl["hints"].items())):
            raise fail("must map a value to a hint", f"{where}.hints")
        if kind == "int":
            for key in ("min", "max"):
                if not isinstance(decl.get(key), int) or isinstance(decl.get(key), bool):
                    raise fail("an int parameter needs whole-number min and max", f"{where}.{key}")
        if kind == "choice" and (not isinstance(decl.get("values"), list) or not decl["values"] or
                                 not all(isinstance(v, str) for v in decl["values"])):
            raise fail("a choice needs its values (words)", f"{where}.values")
        for key in ("at_least", "with", "not_before"):
            if key in decl and (not isinstance(decl[key], str) or decl[key] not in params):
                raise fail("names no declared parameter", f"{where}.{key}")
            other = params[decl[key]] if key in decl else None
            if key in decl and (not isinstance(other, dict) or other.get("type") != ("int" if key == "at_least" else "date")):
                raise fail(f"{key} relates two {'int' if key == 'at_least' else 'date'} parameters", f"{where}.{key}")
    dates: list[DateDecl] = []
    raw_dates = data["dates"]
    if not isinstance(raw_dates, dict) or not raw_dates:
        raise fail("must map date names to {field: ...}", "dates")
    for dname, decl in raw_dates.items():
        where = f"dates.{str(dname)[:40]}"
        if not isinstance(dname, str) or not _FACT_NAME.match(dname):
            raise fail("a date's name is lower_case_with_underscores", where)
        if not isinstance(decl, dict) or not set(decl) <= {"field", "planned", "quotes"} or "field" not in decl:
            raise fail("each date is {field: <date field>, planned: {from: <date>, plus_days: ...}, quotes: {note: name}}",
                       where)
        spec = record.get(decl["field"]) if isinstance(decl["field"], str) else None
        if spec is None or spec.type != "date" or "." in decl["field"]:
            raise fail("names no top-level date field of the record", f"{where}.field")
        quotes = decl.get("quotes") or {}
        if not isinstance(quotes, dict) or not set(quotes) <= {"note"} or not all(
                isinstance(n, str) and _FACT_NAME.match(n) for n in quotes.values()):
            raise fail("is {note: <the name reasons quote the planned-date note by>}", f"{where}.quotes")
        note = (quotes["note"],) if "note" in quotes else ()
        planned = decl.get("planned")
        if planned is None:
            dates.append(DateDecl(dname, decl["field"], note=note))
            continue
        if not isinstance(planned, dict) or set(planned) != {"from", "plus_days"} or \
                planned["from"] not in [d.name for d in dates]:
            raise fail("is {from: <a date declared above>, plus_days: <days or {param: name}>}", f"{where}.planned")
        plus = planned["plus_days"]
        if isinstance(plus, dict):
            pname = plus.get("param") if set(plus) == {"param"} else None
            if not isinstance(pname, str) or not isinstance(params.get(pname), dict) or \
                    params[pname].get("type") != "int" or params[pname].get("optional"):
                raise fail("{param: name} names a whole-number parameter every set gives", f"{where}.planned.plus_days")
        elif not isinstance(plus, int) or isinstance(plus, bool) or not 0 <= plus <= 3660:
            raise fail("must be a whole number of days (0 … 3660) or {param: name}", f"{where}.planned.plus_days")
        dates.append(DateDecl(dname, decl["field"], planned["from"], plus, note))
    for key in ("context", "warnings"):
        if not isinstance(data.get(key) or [], list):
            raise fail("must be a list of entries {derive, args, ...}", key)
    context = []
    for i, raw in enumerate(data.get("context") or []):
        if isinstance(raw, dict) and "message" in raw:
            raise fail("a context entry quotes values; a message belongs under warnings", f"context[{i}]")
        entry = _entry(raw if isinstance(raw, dict) else {}, f"context[{i}]", {}, fail)
        if entry.name is not None:
            raise fail("a context entry names no fact (list it under facts)", f"context[{i}].name")
        context.append(entry)
    facts = []
    raw_facts = data["facts"]
    if not isinstance(raw_facts, list):
        raise fail("must be a list of facts", "facts")
    for i, raw in enumerate(raw_facts):
        if not isinstance(raw, dict) or "name" not in raw:
            raise fail("each fact is {name, derive, args, doc}", f"facts[{i}]")
        for key in raw:
            if key not in {"name", "derive", "args", "quotes", "doc", "for_each"}:
                raise fail(f"unknown key {str(key)[:40]!r}", f"facts[{i}].{str(key)[:40]}")
        facts.append(dict(raw, where=f"facts[{i}] ({str(raw['name'])[:40]})"))
    warnings = []
    for i, raw in enumerate(data.get("warnings") or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("message"), (str, dict)):
            raise fail("each warning is {derive, args, message}", f"warnings[{i}]")
        if "name" in raw or "quotes" in raw or "for_each" in raw:
            raise fail("a warning is {derive, args, message}: it names no fact and quotes nothing", f"warnings[{i}]")
        warnings.append(_entry(raw, f"warnings[{i}]", {}, fail))
    stamp = data.get("stamp")
    if stamp is not None and not isinstance(stamp, dict):
        raise fail("must map a name to the text a decision row shows for it", "stamp")
    return Declarations(dict(params), tuple(dates), tuple(context), tuple(facts), tuple(warnings), stamp)


def check_parameters(values: Any, declared: dict[str, dict[str, Any]], fail: Callable[[str, str], RuleDefinitionError],
                     statuses: tuple[str, ...]) -> dict[str, Any]:
    """A criteria set's ``parameters``, checked against the pack's declarations (names, types, ranges)."""
    if not isinstance(values, dict):
        raise fail("must be a mapping", "parameters")
    for key in values:
        if key not in declared:
            raise fail(f"unknown field {str(key)[:40]!r}{did_you_mean(str(key), sorted(declared))}",
                       f"parameters.{str(key)[:40]}")
    for key, decl in declared.items():
        if key not in values and not decl.get("optional"):
            raise fail("required field is missing", f"parameters.{key}")
    out = dict(values)
    for key, decl in declared.items():
        if key not in values:
            continue
        value, where, kind = values[key], f"parameters.{key}", decl["type"]
        if kind == "int":
            low, high = decl["min"], decl["max"]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise fail(f"must be a whole number in {low} … {high}", where)
        elif kind in ("choice", "status"):
            allowed = tuple(decl["values"]) if kind == "choice" else statuses
            if not isinstance(value, str) or value not in allowed:
                hint = (decl.get("hints") or {}).get(value) if isinstance(value, str) else None
                raise fail(f"must be one of {', '.join(allowed)}{f' ({hint})' if hint else ''}", where)
        elif kind == "date":
            try:
                if isinstance(value, dt.datetime) or not isinstance(value, (str, dt.date)):
                    raise ValueError(key)
                out[key] = value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
            except ValueError:
                raise fail("must be a date YYYY-MM-DD", where) from None
        elif not isinstance(value, str):
            raise fail("must be text", where)
    for key, decl in declared.items():
        if key not in out:
            continue
        other = decl.get("at_least")
        if other is not None and other in out and out[key] < out[other]:
            why = decl.get("why")
            raise fail(f"must be at least {other}{f': {why}' if why else ''}", f"parameters.{key}")
        other = decl.get("with")
        if other is not None and other not in out:
            raise fail(f"required with parameters.{key} (the two go together)", f"parameters.{other}")
        other = decl.get("not_before")
        if other is not None and other in out and out[key] < out[other]:
            raise fail(f"must not be before parameters.{other}", f"parameters.{key}")
    return out
