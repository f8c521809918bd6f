"""FHIR R4 bundles -> intake records (shared/protocol/criteria.md §8.3).

One record per Patient of a bundle, as of a screening date (D0). Which codes set which record field
comes from the criteria set's value sets (``condition-codes.yaml``: conditions and dialysis
procedures; ``drug-classes.yaml``: the medicines worth copying), and where the values go and what
the FHIR status words mean from the pack's ``fhir.yaml``. Nothing trial-specific is written here.

What a bundle does not say stays unknown: no condition is ever set ``absent`` and
``medication_history_taken`` is never set, so a drug class that appears nowhere stays unknown too.
Every value set is listed in the record's ``provenance`` (field path -> the resources it came from);
a code that only suggests a condition leaves the field unknown and is listed there for the screener.

The bundle is streamed entry by entry (ijson) and each resource the import reads is validated with
its ``fhir.resources`` R4B model, so memory holds one entry and the few facts taken from earlier
ones, whatever the bundle's size. A bundle that cannot be read (not JSON, truncated, an invalid
resource) becomes one ``{"error": …, "source": FILE}`` line and the run goes on::

    from screening.fhir_import import FhirImport
    run = FhirImport(ruleset, screening_start=dt.date(2021, 4, 1), site="Boston")
    for line in run.lines(["bundles/"]):   # records and error lines, as dicts
        ...
    run.stats.summary()
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson
from pydantic import ValidationError

from .derivations import Lookback, minus_months
from .errors import CandidateRecordError, FieldProblem, InputFormatError, RuleDefinitionError
from .io import Item
from .matching import DrugClassifier
from .protocol import Ruleset, read_yaml_file

#: The resource types the import reads; every other entry is skipped unparsed.
READ_TYPES = ("Patient", "Condition", "Procedure", "MedicationRequest", "MedicationStatement", "Medication",
              "MedicationDispense", "Consent")
#: The file endings of bundles in a directory.
BUNDLE_SUFFIXES = (".json",)
_ATC = re.compile(r"^[A-Za-z][0-9A-Za-z]{0,9}$")
_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_RANK = {"active": 2, "history": 1}


class BundleError(Exception):
    """A bundle that cannot be imported; the message names no value of it."""


# ---------------------------------------------------------------------------------------------
# The mapping: fhir.yaml over the criteria set's value sets


@dataclass(frozen=True)
class Code:
    """One code of the condition-code value set: which record field it speaks for, and how."""

    key: str
    field: str
    maps_to: str          # active | history | screener
    code: str
    display: str
    site: str | None = None
    prefix: bool = False


@dataclass
class Mapping:
    """What the import needs of a criteria set and its pack's ``fhir.yaml``, checked on load."""

    ruleset: Ruleset
    systems: dict[str, str]                       # system URI -> snomed | icd10 | rxnorm | atc
    fields: dict[str, str]                        # patient values: name -> record field path
    gender: dict[str, str]
    status_fields: frozenset[str]                 # record fields that hold a condition status
    snomed: dict[str, list[Code]]
    icd_exact: dict[str, list[Code]]
    icd_prefix: list[Code]                        # longest first
    procedures: dict[tuple[str, str], list[Code]]
    not_evidence: frozenset[tuple[str, str]]
    condition: dict[str, Any]
    procedure: dict[str, Any]
    medication: dict[str, Any]
    consent: dict[str, Any]
    provenance: str
    classifier: DrugClassifier
    lookback: Lookback
    lookback_end_days: int

    def icd(self, code: str) -> list[Code]:
        """The value-set entries for an ICD-10 code: exact codes, then prefixes (the longest, most
        specific entry wins); a national extension (``E03.900x001``) is also compared by its WHO stem."""
        code = code.strip().upper()
        for candidate in (code, code[:5], code[:3]):
            found = self.icd_exact.get(candidate)
            if found:
                return found
            best = [c for c in self.icd_prefix if candidate.startswith(c.code)]
            if best:
                longest = len(best[0].code)
                return [c for c in best if len(c.code) == longest]
        return []


def _pack_file(ruleset: Ruleset) -> tuple[Path, str]:
    if ruleset.pack_dir is None:
        raise RuleDefinitionError("the criteria set belongs to no pack, so it has no FHIR mapping", file=ruleset.path)
    return ruleset.pack_dir / "fhir.yaml", f"{ruleset.pack_dir.name}/fhir.yaml"


def load_mapping(ruleset: Ruleset) -> Mapping:
    """The pack's ``fhir.yaml`` with the set's value sets. :raises RuleDefinitionError: naming the key."""
    path, shown = _pack_file(ruleset)
    if not path.exists():
        raise RuleDefinitionError(f"pack {ruleset.pack} has no FHIR mapping (fhir.yaml)", file=shown)
    data = read_yaml_file(path, display=shown)

    def fail(message: str, key: str) -> RuleDefinitionError:
        return RuleDefinitionError(message, file=shown, field=key)

    def mapping(value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail("must be a mapping", key)
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise fail("unknown key", f"{key}.{unknown[0]}")
        return value

    def words(value: Any, key: str) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail("must be a list of words", key)
        return frozenset(value)

    record = ruleset.record

    def path_of(value: Any, key: str, types: tuple[str, ...] | None = None, *, item: bool = False) -> str:
        spec = record.get(value, through_lists=item) if isinstance(value, str) else None
        if spec is None:
            raise fail(f"{value!r} is no field of the record", key)
        if types is not None and spec.type not in types:
            raise fail(f"{value!r} is a {spec.type}, not a {' or '.join(types)}", key)
        return str(value)

    top = mapping(data, "", {"systems", "patient", "condition", "procedure", "medication", "consent", "provenance",
                             "export"})  # export: read and checked by screening.fhir_export
    for key in ("systems", "patient", "condition", "procedure", "medication", "consent", "provenance"):
        if key not in top:
            raise fail("missing", key)
    systems: dict[str, str] = {}
    for name, uris in mapping(top["systems"], "systems", {"snomed", "icd10", "rxnorm", "atc"}).items():
        words(uris, f"systems.{name}")
        for uri in uris:  # in the file's order: the first is the one an export writes
            systems[uri] = name
    patient = mapping(top["patient"], "patient", {"candidate_id", "site", "screening_start", "birth_date", "sex",
                                                   "deceased_date", "gender"})
    fields = {key: path_of(value, f"patient.{key}") for key, value in patient.items() if key != "gender"}
    for key in ("candidate_id", "screening_start"):
        if key not in fields:
            raise fail("missing", f"patient.{key}")
    gender = mapping(patient.get("gender", {}), "patient.gender", {"female", "male", "other", "unknown"})
    sex = record.get(fields["sex"]) if "sex" in fields else None
    for key, value in gender.items():
        if sex is None or value not in sex.values:
            raise fail(f"{value!r} is not a value of the record's {fields.get('sex')}", f"patient.gender.{key}")
    condition = mapping(top["condition"], "condition", {"ignore_verification", "tentative_verification",
                                                        "history_clinical", "site_fields"})
    for key in ("ignore_verification", "tentative_verification", "history_clinical"):
        condition[key] = words(condition.get(key, []), f"condition.{key}")
    site_fields = mapping(condition.get("site_fields", {}), "condition.site_fields", set(ruleset.condition_codes))
    condition["site_fields"] = {k: path_of(v, f"condition.site_fields.{k}", ("text", "name")) for k, v in site_fields.items()}
    procedure = mapping(top["procedure"], "procedure", {"ignore_status", "window"})
    procedure["ignore_status"] = words(procedure.get("ignore_status", []), "procedure.ignore_status")
    window = mapping(procedure.get("window"), "procedure.window", {"end_plus_days", "lookback", "months", "days"})
    params = ruleset.parameters

    def param(block: dict[str, Any], key: str, where: str) -> Any:
        raw = block.get(key)
        if isinstance(raw, dict) and set(raw) == {"param"}:
            if raw["param"] not in params:
                raise fail(f"the criteria set gives no parameter {raw['param']!r}", f"{where}.{key}")
            return params[raw["param"]]
        if raw is None:
            raise fail("missing", f"{where}.{key}")
        return raw

    def days(block: dict[str, Any], key: str, where: str) -> int:
        value = param(block, key, where)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail("must be a whole number of days, 0 or more", f"{where}.{key}")
        return value
    mode = param(window, "lookback", "procedure.window")
    if mode not in ("calendar_months", "days", "current"):
        raise fail("calendar_months, days or current", "procedure.window.lookback")
    lookback = Lookback(str(mode), int(param(window, "months", "procedure.window")),
                        int(param(window, "days", "procedure.window")))
    end_days = days(window, "end_plus_days", "procedure.window")
    medication = mapping(top["medication"], "medication", {"list", "entry", "request", "statement", "dispense"})
    medication["list"] = path_of(medication.get("list"), "medication.list", ("list",))
    entry = mapping(medication.get("entry"), "medication.entry",
                    {"name", "atc", "rxnorm", "start_date", "stop_date", "ongoing"})
    for key, value in entry.items():
        path_of(f"{medication['list']}.{value}" if isinstance(value, str) else value, f"medication.entry.{key}",
                item=True)
    for kind in ("request", "statement", "dispense"):
        block = mapping(medication.get(kind), f"medication.{kind}", {"ignore_status", "ongoing_status", "stopped_status"})
        medication[kind] = {k: words(v, f"medication.{kind}.{k}") for k, v in block.items()}
    consent = mapping(top["consent"], "consent", {"field", "research_scope", "study_ids", "status", "until"})
    # A consent counts up to the planned enrollment date (screening_start + these days); absent: any date.
    until = mapping(consent.get("until", {}), "consent.until", {"end_plus_days"})
    consent["until"] = days(until, "end_plus_days", "consent.until") if until else None
    consent_field = consent.get("field")
    consent_spec = record.get(consent_field) if isinstance(consent_field, str) else None
    if consent_spec is None or consent_spec.type != "enum":
        raise fail("must name an enum field of the record", "consent.field")
    consent["study_ids"] = words(consent.get("study_ids"), "consent.study_ids")
    # named exactly: the id as a whole word of a policy's URI or authority, a code or a text (so
    # "…/NCT00000001" and "NCT00000001 consent" name the study NCT00000001, "NCT000000012" does not)
    consent["study_pattern"] = re.compile("|".join(
        rf"(?<![0-9A-Za-z]){re.escape(study)}(?![0-9A-Za-z])" for study in sorted(consent["study_ids"])))
    status = mapping(consent.get("status"), "consent.status", {"active", "rejected", "inactive", "draft", "proposed"})
    for key, value in status.items():
        if value not in consent_spec.values:
            raise fail(f"{value!r} is not a value of {consent['field']}", f"consent.status.{key}")
    provenance = top["provenance"]
    if provenance != "provenance":
        raise fail("the record's provenance field is 'provenance'", "provenance")

    status_fields = set()
    snomed: dict[str, list[Code]] = {}
    icd_exact: dict[str, list[Code]] = {}
    icd_prefix: list[Code] = []
    procedures: dict[tuple[str, str], list[Code]] = {}
    not_evidence: set[tuple[str, str]] = set()
    for key, entry_raw in ruleset.condition_codes.items():
        target = entry_raw["record_field"]
        spec = record.get(target)
        if spec is not None and spec.type == "enum" and {"active", "history"} <= set(spec.values):
            status_fields.add(target)
        for group in ("snomed", "icd10", "procedures"):
            for raw in entry_raw.get(group) or []:
                code = Code(key, target, raw["maps_to"], raw["code"].strip(), str(raw.get("display", "")),
                            raw.get("site"), raw.get("match") == "prefix")
                if group == "snomed":
                    snomed.setdefault(code.code, []).append(code)
                elif group == "procedures":
                    procedures.setdefault((raw["system"], code.code), []).append(code)
                elif code.prefix:
                    icd_prefix.append(Code(key, target, code.maps_to, code.code.upper(), code.display, code.site, True))
                else:
                    icd_exact.setdefault(code.code.upper(), []).append(code)
        for raw in entry_raw.get("not_evidence") or []:
            not_evidence.add((raw["system"], raw["code"].strip().upper()))
    icd_prefix.sort(key=lambda c: -len(c.code))
    from .matching import drug_classifier

    return Mapping(ruleset=ruleset, systems=systems, fields=fields, gender=dict(gender),
                   status_fields=frozenset(status_fields), snomed=snomed, icd_exact=icd_exact, icd_prefix=icd_prefix,
                   procedures=procedures, not_evidence=frozenset(not_evidence), condition=condition,
                   procedure=procedure, medication=medication, consent=consent, provenance=provenance,
                   classifier=drug_classifier(ruleset.sha256, ruleset.drug_classes), lookback=lookback,
                   lookback_end_days=end_days)


# ---------------------------------------------------------------------------------------------
# Reading FHIR values


def _day(value: Any, *, end: bool = False) -> dt.date | None:
    """The calendar date a FHIR date or dateTime names, as written (no time-zone shift); a partial
    date (``2018``, ``2018-03``) is its first day, or its last with ``end``."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    try:
        if len(text) == 4:
            return dt.date(int(text), 12, 31) if end else dt.date(int(text), 1, 1)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            return dt.date(year, month, calendar.monthrange(year, month)[1] if end else 1)
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def _codes(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of every coding of a CodeableConcept."""
    if concept is None:
        return []
    return [(c.system or "", c.code or "") for c in (concept.coding or []) if c.code]


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (a resource element dumped), at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _words(concept: Any) -> set[str]:
    return {code for _, code in _codes(concept)}


def _ref_key(ref: str | None) -> str | None:
    """A reference as the key resources are found by: ``urn:uuid:…`` as it is, else ``Type/id``."""
    if not ref:
        return None
    if ref.startswith("urn:") or ref.startswith("#"):
        return ref
    found = _REF.search(ref)
    return f"{found.group(1)}/{found.group(2)}" if found else ref


class _OutOfRange(Exception):
    """A duration or date beyond the calendar (years 1 … 9999): the value is ignored, with a note."""


#: The most days between two calendar dates.
_MAX_DAYS = (dt.date.max - dt.date.min).days
_PER = {"d": 1, "day": 1, "wk": 7, "week": 7, "mo": 30, "month": 30, "a": 365, "year": 365}


def _days(duration: Any) -> int | None:
    """A Duration (or days-supply Quantity) in whole days, when its unit says how long.
    :raises _OutOfRange: a length no calendar holds (``1e12`` days)."""
    if duration is None or duration.value is None:
        return None
    unit = (duration.code or duration.unit or "d").lower().rstrip("s")
    per = _PER.get(unit)
    if per is None:
        return None
    days = float(duration.value) * per
    if not math.isfinite(days) or abs(days) > _MAX_DAYS:
        raise _OutOfRange
    return int(days)


def _plus(day: dt.date, days: int) -> dt.date:
    """``day`` + ``days``. :raises _OutOfRange: past the calendar's ends."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        raise _OutOfRange from None


def _at_age(born: dt.date, age: Any) -> dt.date:
    """The day a person born on ``born`` reached an Age (years and months by the calendar, a
    fraction and shorter units in days). :raises _OutOfRange: no such day; ValueError: no unit of time."""
    unit = (age.code or age.unit or "").lower().rstrip("s")
    if unit not in _PER or age.value is None:
        raise ValueError("not an age")
    value = float(age.value)
    if not math.isfinite(value) or abs(value * _PER[unit]) > _MAX_DAYS:
        raise _OutOfRange
    months = {"a": 12, "year": 12, "mo": 1, "month": 1}.get(unit)
    if months is None:
        return _plus(born, int(value * _PER[unit]))
    whole = int(value)
    try:
        day = minus_months(born, -whole * months)
    except ValueError:
        raise _OutOfRange from None
    return _plus(day, int((value - whole) * _PER[unit]))


@dataclass
class _Med:
    """A medicine of a drug class taken from a request or statement (a referenced Medication is
    resolved at the end of the bundle: it may come later)."""

    source: str
    subject: str | None
    drug: _Drug | None
    reference: str | None
    start: dt.date | None
    stop: dt.date | None
    ongoing: bool
    aliases: tuple[str, ...] = ()
    add_dispenses: bool = False
    #: a value of the resource that was ignored (out of range), so the end is unknown
    note: str | None = None


@dataclass(frozen=True)
class _Abated:
    """A Condition's abatement: on a day, at an age (placed by the birth date once the patient is
    known), or neither: an abatementString, STU3's abatementBoolean true, an age without a birth date."""

    day: dt.date | None = None
    age: Any = None

    def by(self, d0: dt.date, born: dt.date | None) -> bool:
        """Whether the condition had abated on or before D0 (an abatement of no known day: yes, as a
        resolved clinicalStatus says)."""
        day = self.day
        if self.age is not None and born is not None:
            try:
                day = _at_age(born, self.age)
            except _OutOfRange:
                return False  # beyond the calendar: not by D0
            except ValueError:
                day = None  # an age in no unit of time: abated, when unknown
        return day is None or day <= d0


@dataclass
class _Subject:
    """What one patient's resources said, gathered while the bundle streams; D0 applies at the end."""

    # (codes, onset, abatement, clinical status says history, not confirmed, source)
    conditions: list[tuple[list[Code], dt.date | None, _Abated | None, bool, bool, str]] = field(default_factory=list)
    procedures: list[tuple[list[Code], dt.date | None, str]] = field(default_factory=list)
    consents: list[tuple[dt.date | None, str, str]] = field(default_factory=list)


@dataclass
class _Facts:
    """One patient's condition evidence as of D0: field -> [(status, source)], sites, screener notes
    (field -> [(source, note)])."""

    statuses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    sites: dict[str, list[str]] = field(default_factory=dict)
    hints: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _leaks(text: str, secrets: Iterable[str]) -> bool:
    """Whether a source names one of a patient's identifiers: contains it (4 characters or more),
    or has it as a whole word (shorter ones, so that id ``7`` does not hide ``Condition/17``)."""
    lowered = text.lower()
    words = set(re.split(r"[^0-9a-z]+", lowered))
    return any(secret.lower() in lowered if len(secret) >= 4 else secret.lower() in words for secret in secrets)


class _Bundle:
    """One bundle's import: entries in, records out."""

    def __init__(self, run: FhirImport, name: str) -> None:
        self.run = run
        self.mapping = run.mapping
        self.name = name
        self.patients: list[tuple[Any, tuple[str, ...], int]] = []   # (Patient, its reference keys, entry number)
        self.subjects: dict[str, _Subject] = {}
        self.meds: list[_Med] = []
        self.drugs: dict[str, _Drug] = {}         # Medication reference key -> its medicine, if of a class
        self.dispensed: dict[str, dt.date] = {}   # request reference key -> the latest supply end
        self.unknown_end: dict[str, str] = {}     # request reference key -> a dispense whose supply is out of range
        self.entries: dict[str, str] = {}         # source -> "Kind (entry N)", to name it without its id
        self.number = 0

    # -- entries ----------------------------------------------------------------------------------

    def entry(self, number: int, entry: Any) -> None:
        if not isinstance(entry, dict):
            raise BundleError(f"entry {number} is not an object")
        raw = entry.get("resource")
        if not isinstance(raw, dict):
            return  # a request or response without a resource
        kind = raw.get("resourceType")
        if kind not in READ_TYPES:
            return
        rid = raw.get("id")
        shown = f"{kind}/{rid}" if isinstance(rid, str) and _REF.search(f"{kind}/{rid}") else kind
        if kind == "Patient" and self.run.id_system is not None:
            shown = kind  # the EHR's id of a patient named by another identifier stays in the EHR
        stu3_abated = False
        if kind == "Condition" and isinstance(raw.get("abatementBoolean"), bool):
            # STU3's abatementBoolean (R4 dropped it; some servers still send it): true = abated, date unknown
            stu3_abated = raw["abatementBoolean"]
            raw = {k: v for k, v in raw.items() if k != "abatementBoolean"}
        model = self.run.models[kind]
        try:
            resource: Any = model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BundleError(f"entry {number} ({shown}) is not a valid FHIR R4B {kind}: {where or 'resource'}: "
                              f"{first['type']} ({len(exc.errors())} problem(s))") from None
        full = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        source = f"{kind}/{resource.id}" if resource.id else (full or f"{kind} (entry {number})")
        self.entries.setdefault(source, f"{kind} (entry {number})")
        self.number = number
        aliases = tuple(a for a in (_ref_key(full), f"{kind}/{resource.id}" if resource.id else None) if a)
        try:
            if kind == "Condition":
                self._condition(resource, source, aliases, stu3_abated=stu3_abated)
            else:
                getattr(self, f"_{kind.lower()}")(resource, source, aliases)
        except (ArithmeticError, ValueError) as exc:  # a value no handler foresaw: name the entry, not the value
            raise BundleError(f"entry {number} ({shown}) cannot be read: a value out of range "
                              f"({type(exc).__name__})") from None

    def _subject(self, ref: Any) -> str | None:
        return _ref_key(ref.reference) if ref is not None else None

    def _gather(self, ref: Any) -> _Subject:
        return self.subjects.setdefault(self._subject(ref) or "", _Subject())

    def _patient(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        self.patients.append((resource, aliases, self.number))

    def _match_condition(self, concept: Any) -> list[Code]:
        found: list[Code] = []
        for system, code in _codes(concept):
            name = self.mapping.systems.get(system)
            if name is None or (name, code.strip().upper()) in self.mapping.not_evidence:
                continue
            if name == "snomed":
                found.extend(self.mapping.snomed.get(code.strip(), ()))
            elif name == "icd10":
                found.extend(self.mapping.icd(code))
        return found

    def _condition(self, resource: Any, source: str, aliases: tuple[str, ...], *, stu3_abated: bool = False) -> None:
        rules = self.mapping.condition
        verification = _words(resource.verificationStatus)
        if verification & rules["ignore_verification"]:
            return
        matches = self._match_condition(resource.code)
        if not matches:
            return
        onset = _day(resource.onsetDateTime) or _day(resource.onsetPeriod.start if resource.onsetPeriod else None) \
            or _day(resource.recordedDate)
        abated: _Abated | None = None
        day = _day(resource.abatementDateTime) or _day(
            (resource.abatementPeriod.end or resource.abatementPeriod.start) if resource.abatementPeriod else None)
        span = resource.abatementRange
        if day is not None:
            abated = _Abated(day=day)
        elif resource.abatementAge is not None:
            abated = _Abated(age=resource.abatementAge)
        elif span is not None and (span.low or span.high) is not None:
            abated = _Abated(age=span.low or span.high)  # the earliest age it may have abated at
        elif (resource.abatementString or "").strip() or stu3_abated:
            abated = _Abated()
        history = bool(_words(resource.clinicalStatus) & rules["history_clinical"])
        tentative = bool(verification & rules["tentative_verification"])
        self._gather(resource.subject).conditions.append((matches, onset, abated, history, tentative, source))

    def _procedure(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        if resource.status in self.mapping.procedure["ignore_status"]:
            return
        matches: list[Code] = []
        for system, code in _codes(resource.code):
            name = self.mapping.systems.get(system)
            if name is not None:
                matches.extend(self.mapping.procedures.get((name, code.strip()), ()))
        if not matches:
            return
        period = resource.performedPeriod
        when = _day(resource.performedDateTime) or _day((period.end or period.start) if period else None)
        self._gather(resource.subject).procedures.append((matches, when, source))

    def _facts(self, mine: list[_Subject], d0: dt.date, born: dt.date | None) -> _Facts:
        """The condition statuses that the patient's conditions and procedures give as of D0."""
        facts = _Facts()
        for subject in mine:
            for matches, onset, abated, history, tentative, source in subject.conditions:
                if onset is not None and onset > d0:
                    continue
                history = history or (abated is not None and abated.by(d0, born))
                self._evidence(facts, matches, "history" if history else "active", source, tentative=tentative,
                               what="suggests only")
            first = self.mapping.lookback.start(d0 + dt.timedelta(days=self.mapping.lookback_end_days))
            for matches, when, source in subject.procedures:
                if when is None:
                    self._evidence(facts, matches, "active", source, tentative=True, what="no date")
                elif when <= d0:
                    self._evidence(facts, matches, "active" if when >= first else "history", source,
                                   tentative=False, what="suggests only")
        return facts

    def _evidence(self, facts: _Facts, matches: list[Code], status: str, source: str, *, tentative: bool,
                  what: str) -> None:
        by_field: dict[str, list[Code]] = {}
        for code in matches:
            by_field.setdefault(code.field, []).append(code)
        for target, codes in by_field.items():
            strong = [c for c in codes if c.maps_to != "screener"]
            if tentative or not strong or target not in self.mapping.status_fields:
                shown = "; ".join(sorted({f"{c.code} {c.display}".strip() for c in codes}))
                why = "not confirmed" if tentative and what != "no date" and strong else what
                note = (source, f"{why}: {shown}; the screener decides")
                if note not in facts.hints.setdefault(target, []):
                    facts.hints[target].append(note)
                continue
            value = "history" if any(c.maps_to == "history" for c in strong) and \
                not any(c.maps_to == "active" for c in strong) else status
            facts.statuses.setdefault(target, []).append((value, source))
            site_field = self.mapping.condition["site_fields"].get(strong[0].key)
            if site_field is not None:
                for code in strong:
                    if code.site:
                        facts.sites.setdefault(site_field, []).append(code.site)

    def _medication(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        drug = self._drug(resource.code)
        if drug is not None:  # only a medicine of a class is kept (memory stays flat)
            for alias in aliases:
                self.drugs[alias] = drug

    def _medicationdispense(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        if resource.status in self.mapping.medication["dispense"].get("ignore_status", ()):
            return
        if resource.medicationCodeableConcept is not None and self._drug(resource.medicationCodeableConcept) is None:
            return  # a medicine of no class: its request is not kept either
        handed = _day(resource.whenHandedOver) or _day(resource.whenPrepared)
        if handed is None:
            return
        try:
            end: dt.date | None = _plus(handed, _days(resource.daysSupply) or 0)
        except _OutOfRange:  # the supply is ignored; the prescription's end becomes unknown
            end = None
        for ref in resource.authorizingPrescription or []:
            key = _ref_key(ref.reference)
            if key is None:
                continue
            if end is None:
                self.unknown_end.setdefault(key, source)
            elif key not in self.dispensed or self.dispensed[key] < end:
                self.dispensed[key] = end

    def _med(self, resource: Any, source: str, aliases: tuple[str, ...], rules: dict[str, frozenset[str]],
             start: dt.date | None, stop: dt.date | None, *, request: bool, note: str | None = None) -> None:
        status = resource.status
        if status in rules.get("ignore_status", ()):
            return
        ongoing = status in rules.get("ongoing_status", ())
        stopped = status in rules.get("stopped_status", ())
        reference = resource.medicationReference
        drug = self._drug(resource.medicationCodeableConcept)
        if drug is None and reference is None:
            return  # a medicine of no drug class changes no criterion: not copied
        self.meds.append(_Med(source, self._subject(resource.subject), drug,
                              _ref_key(reference.reference) if reference is not None else None, start,
                              stop if stopped else None, ongoing, aliases, request and stopped and note is None,
                              note if stopped else None))

    def _medicationrequest(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        start = _day(resource.authoredOn)
        supply = resource.dispenseRequest.expectedSupplyDuration if resource.dispenseRequest else None
        stop, note = start, None
        try:
            days = _days(supply)
            if start is not None and days is not None:
                stop = _plus(start, days)
        except _OutOfRange:
            stop, note = None, "expected supply duration out of range: ignored, so the end is unknown"
        self._med(resource, source, aliases, self.mapping.medication["request"], start, stop, request=True, note=note)

    def _medicationstatement(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        period = resource.effectivePeriod
        start = _day(resource.effectiveDateTime) or _day(period.start if period else None)
        stop = _day(period.end, end=True) if period is not None and period.end else _day(resource.effectiveDateTime)
        self._med(resource, source, aliases, self.mapping.medication["statement"], start, stop, request=False)

    def _consent(self, resource: Any, source: str, aliases: tuple[str, ...]) -> None:
        rules = self.mapping.consent
        if rules["research_scope"] not in _words(resource.scope):
            return
        named = [p.model_dump(mode="json") for p in resource.policy or []]
        named += [r.model_dump(mode="json") for r in (resource.policyRule, resource.provision) if r is not None]
        if not any(rules["study_pattern"].search(text) for text in _strings(named)):
            return
        value = rules["status"].get(resource.status)
        if value is None:
            return
        self._gather(resource.patient).consents.append((_day(resource.dateTime), value, source))

    # -- records ----------------------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.patients:
            raise BundleError("no Patient in the bundle (is it a FHIR Bundle of patient data?)")
        lone = len(self.patients) == 1
        for index, (patient, aliases, number) in enumerate(self.patients):
            yield self._record(patient, aliases, number, lone and index == 0)

    def _mine(self, subject: str | None, aliases: tuple[str, ...], lone: bool) -> bool:
        return subject in aliases or (lone and not subject)

    def _record(self, patient: Any, aliases: tuple[str, ...], number: int, lone: bool) -> dict[str, Any]:
        run, fields = self.run, self.mapping.fields
        try:
            candidate = run.candidate_id(patient, number)
        except BundleError as exc:  # this patient's error line; the bundle's other patients go on
            return {"error": str(exc), "source": self.name}
        start = run.start_of(candidate)
        if start is None:
            return {"error": f"no screening_start for candidate {candidate}: give --screening-start, or a row in "
                             f"--screening-start-file", "source": self.name}
        # No identifier of the patient but the candidate id leaves the EHR (§8.3): the Patient is named
        # by the identifier system chosen, and a source that names another identifier (the EHR's
        # Patient.id under --id-system, an MRN within a resource id) by its type and entry number.
        secrets = {str(i.value).strip() for i in patient.identifier or [] if i.value and str(i.value).strip()}
        secrets |= {patient.id} if patient.id else set()
        secrets |= {a.split(":")[-1].split("/")[-1] for a in aliases}
        secrets.discard(candidate)
        if run.id_system is not None:
            source = f"Patient (identifier {run.id_system})"
        else:
            source = f"Patient/{patient.id}"

        def shown(src: str) -> str:
            return self.entries.get(src, src) if _leaks(src, secrets) else src

        record: dict[str, Any] = {}
        prov: dict[str, list[str]] = {}

        def note(path: str, text: str) -> None:
            if text not in prov.setdefault(path, []):
                prov[path].append(text)

        def put(path: str, value: Any, sources: list[str]) -> None:
            parts = path.split(".")
            target = record
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
            for src in sources:
                note(path, src)

        put(fields["candidate_id"], candidate, [source])
        if run.site is not None and "site" in fields:
            put(fields["site"], run.site, [])
        put(fields["screening_start"], start.isoformat(), [])
        born = patient.birthDate if isinstance(patient.birthDate, dt.date) else None
        if "birth_date" in fields and born is not None:
            put(fields["birth_date"], born.isoformat(), [source])
        if "sex" in fields and patient.gender in self.mapping.gender:
            put(fields["sex"], self.mapping.gender[patient.gender], [source])
        if "deceased_date" in fields:
            died = _day(patient.deceasedDateTime)
            if died is not None and died <= start:
                put(fields["deceased_date"], died.isoformat(), [source])
            elif died is None and patient.deceasedBoolean:
                # deceased, no date given: D0 stands in, so that the decision warns as for a date
                put(fields["deceased_date"], start.isoformat(),
                    [f"{source} (deceasedBoolean true, no date of death given: screening_start stands in for it; "
                     f"the screener checks)"])
        mine = [s for key, s in self.subjects.items() if self._mine(key, aliases, lone)]
        facts = self._facts(mine, start, born)
        for target in sorted(facts.statuses, key=self._order):
            found = facts.statuses[target]
            best = max(_RANK[s] for s, _ in found)
            value = next(s for s, r in _RANK.items() if r == best)
            put(target, value, [shown(src) for s, src in found if s == value])
        for target, sites in facts.sites.items():
            put(target, ", ".join(sorted(set(sites))), [])
        for target, hints in facts.hints.items():
            if target not in facts.statuses:
                for src, text in hints:
                    note(target, f"{shown(src)} ({text})")
        meds = self._medications(aliases, lone, start)
        if meds:
            put(self.mapping.medication["list"], [m for m, _, _ in meds], [])
            for _, src, notes in meds:
                texts = [text if by is None else f"its dispense {shown(by)} {text}" for by, text in notes]
                note(self.mapping.medication["list"], f"{shown(src)} ({'; '.join(texts)})" if texts else shown(src))
        self._consent_of(mine, start, put, note, shown)
        if prov:
            record[self.mapping.provenance] = prov
        run.stats.seen(record, self.mapping)
        return record

    def _consent_of(self, mine: list[_Subject], d0: dt.date, put: Any, note: Any, shown: Any) -> None:
        """The latest research consent dated on or before the planned enrollment date (consent is
        judged at enrollment, criteria.md §1.2; a later one is noted, not counted)."""
        target = self.mapping.consent["field"]
        plus = self.mapping.consent["until"]
        try:
            until = _plus(d0, plus) if plus is not None else dt.date.max
        except _OutOfRange:
            until = dt.date.max
        consents = sorted((c for s in mine for c in s.consents), key=lambda c: (c[0] or dt.date.min))
        counted = [c for c in consents if c[0] is None or c[0] <= until]
        for day, _, src in consents:
            if day is not None and day > until:
                note(target, f"{shown(src)} (dated after the planned enrollment date {until.isoformat()}: not counted; "
                             f"the screener checks)")
        if counted:
            _, value, src = counted[-1]
            put(target, value, [shown(src)])

    def _order(self, path: str) -> int:
        paths = self.run.paths
        return paths.index(path) if path in paths else len(paths)

    def _medications(self, aliases: tuple[str, ...], lone: bool,
                     d0: dt.date) -> list[tuple[dict[str, Any], str, list[tuple[str | None, str]]]]:
        """The patient's medicines: (entry, source, notes); a note is (the other resource it is
        about, or None; its text)."""
        entry = self.mapping.medication["entry"]
        out: list[tuple[dict[str, Any], str, list[tuple[str | None, str]]]] = []
        for med in self.meds:
            if not self._mine(med.subject, aliases, lone) or (med.start is not None and med.start > d0):
                continue
            drug = med.drug if med.drug is not None else self.drugs.get(med.reference or "")
            if drug is None:
                continue
            notes: list[tuple[str | None, str]] = []
            if med.note is not None:
                notes.append((None, med.note))
            stop = med.stop
            if med.add_dispenses:
                for alias in med.aliases:
                    if alias in self.unknown_end:
                        notes.append((self.unknown_end[alias],
                                      "has a days supply out of range: ignored, so the end is unknown"))
                    supplied = self.dispensed.get(alias)
                    if supplied is not None and (stop is None or supplied > stop):
                        stop = supplied
            if notes:
                stop = None
            if stop is not None and med.start is not None and stop < med.start:
                stop = med.start
            item: dict[str, Any] = {entry["name"]: drug.name}
            if drug.atc:
                item[entry["atc"]] = drug.atc
            if drug.rxnorm:
                item[entry["rxnorm"]] = drug.rxnorm
            if med.start is not None:
                item[entry["start_date"]] = med.start.isoformat()
            if med.ongoing:
                item[entry["ongoing"]] = True
            elif stop is not None:
                item[entry["stop_date"]] = stop.isoformat()
            out.append((item, med.source, notes))
        return out

    def _drug(self, concept: Any) -> _Drug | None:
        """The medicine a CodeableConcept names, if it is one of the set's drug classes."""
        if concept is None:
            return None
        systems = self.mapping.systems
        rxnorm = next((c.code.strip() for c in concept.coding or [] if c.code and systems.get(c.system or "") == "rxnorm"
                       and c.code.strip().isdigit()), None)
        atc = next((c.code.strip().upper() for c in concept.coding or [] if c.code and systems.get(c.system or "") == "atc"
                    and _ATC.match(c.code.strip())), None)
        name = (concept.text or "").strip() or next((c.display.strip() for c in concept.coding or []
                                                      if c.display and c.display.strip()), "")
        if not name:
            name = f"RxNorm {rxnorm}" if rxnorm else f"ATC {atc}" if atc else ""
        if not name:
            return None
        drug = _Drug(name[:500], atc, rxnorm)
        return drug if any(self.mapping.classifier(drug)) else None


@dataclass(frozen=True)
class _Drug:
    name: str
    atc: str | None
    rxnorm: str | None


# ---------------------------------------------------------------------------------------------
# A run over many bundles


@dataclass
class ImportStats:
    """What a run imported: bundles, patient records, error lines, and the fields it could fill."""

    bundles: int = 0
    records: int = 0
    errors: int = 0
    provided: set[str] = field(default_factory=set)
    asked: tuple[str, ...] = ()

    def seen(self, record: dict[str, Any], mapping: Mapping) -> None:
        def walk(value: Any, prefix: str) -> None:
            if isinstance(value, dict) and prefix != mapping.provenance:
                for key, inner in value.items():
                    walk(inner, f"{prefix}.{key}" if prefix else key)
            else:
                self.provided.add(prefix)
        walk(record, "")

    def missing(self) -> list[str]:
        """The fields the criteria ask about that no imported record holds."""
        return [path for path in self.asked
                if not any(p == path or p.startswith(path + ".") or path.startswith(p + ".") for p in self.provided)]

    def summary(self) -> str:
        text = (f"Imported {self.records} patient record(s) from {self.bundles} bundle(s); "
                f"{self.errors} error line(s).")
        missing = self.missing()
        if missing:
            text += (f" No bundle provided: {', '.join(missing)} (what the criteria need and FHIR did not say stays "
                     f"unknown, so these candidates stay undetermined until a screener adds it).")
        return text


def _screening_starts(path: str | None, mapping: Mapping) -> dict[str, dt.date]:
    """``--screening-start-file``: a CSV with the columns candidate_id and screening_start."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot read the screening-start file {path}: {exc}") from None
    if not rows:
        raise InputFormatError(f"{path}: empty; it needs the columns candidate_id and screening_start")
    header = [h.strip() for h in rows[0]]
    id_col, date_col = mapping.fields["candidate_id"], mapping.fields["screening_start"]
    if id_col not in header or date_col not in header:
        raise InputFormatError(f"{path}: needs the columns {id_col} and {date_col}")
    i, j = header.index(id_col), header.index(date_col)
    starts: dict[str, dt.date] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(i, j):
            raise InputFormatError(f"{path}, line {line}: too few cells")
        try:
            day = dt.date.fromisoformat(row[j].strip())
        except ValueError:
            raise InputFormatError(f"{path}, line {line}: {date_col} is not a date YYYY-MM-DD") from None
        key = row[i].strip()
        if key in starts:
            raise InputFormatError(f"{path}, line {line}: a second row for candidate {key}")
        starts[key] = day
    return starts


def bundle_files(paths: Iterable[str]) -> Iterator[str]:
    """The bundle files of the paths given: a file as it is (``-``: standard input), a directory's
    ``*.json`` files in name order (not its subdirectories)."""
    for path in paths:
        if path != "-" and os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                full = os.path.join(path, name)
                if name.lower().endswith(BUNDLE_SUFFIXES) and os.path.isfile(full):
                    yield full
        else:
            yield path


class FhirImport:
    """An import run: the mapping, D0 (one date, or per candidate from a CSV), the site and the
    identifier system of candidate ids; :meth:`lines` reads bundles, :attr:`stats` counts them."""

    def __init__(self, ruleset: Ruleset, *, screening_start: dt.date | None = None,
                 screening_start_file: str | None = None, site: str | None = None,
                 id_system: str | None = None) -> None:
        from fhir.resources.R4B import get_fhir_model_class

        self.mapping = load_mapping(ruleset)
        self.models = {kind: get_fhir_model_class(kind) for kind in READ_TYPES}
        self.default_start = screening_start
        self.starts = _screening_starts(screening_start_file, self.mapping)
        if screening_start is None and not self.starts:
            raise InputFormatError("a FHIR import needs --screening-start DATE or --screening-start-file CSV: "
                                   "every record is as of its screening date (D0)")
        self.site = site
        self.id_system = id_system
        self.paths = list(ruleset.record.paths)
        asked: list[str] = []
        for criterion in ruleset.ordered:
            for path in criterion.ask:
                if path not in asked and not path.startswith("@"):
                    asked.append(path)
        self.stats = ImportStats(asked=tuple(asked))

    def candidate_id(self, patient: Any, entry: int) -> str:
        """The candidate id of a Patient (entry ``entry`` of its bundle): its identifier of
        ``--id-system``, else its id. :raises BundleError: naming the entry, not the EHR's id."""
        if self.id_system is not None:
            for ident in patient.identifier or []:
                if ident.system == self.id_system and ident.value and ident.value.strip():
                    return str(ident.value.strip())
            raise BundleError(f"the Patient of entry {entry} has no identifier of the system {self.id_system}")
        if not patient.id:
            raise BundleError("a Patient without an id (give --id-system to take its identifier instead)")
        return str(patient.id)

    def start_of(self, candidate: str) -> dt.date | None:
        """D0 of a candidate: its row in the screening-start file, else the run's date."""
        return self.starts.get(candidate, self.default_start)

    def bundle(self, stream: IO[bytes], name: str) -> list[dict[str, Any]]:
        """The records (or the one error line) of one bundle, read entry by entry."""
        self.stats.bundles += 1
        reader = _Bundle(self, name)
        try:
            for number, entry in enumerate(ijson.items(stream, "entry.item", use_float=True), start=1):
                reader.entry(number, entry)
            records = list(reader.records())
        except ijson.JSONError as exc:
            return [self._error(_json_problem(exc), name)]
        except (BundleError, InputFormatError) as exc:
            return [self._error(str(exc), name)]
        except (UnicodeDecodeError, RecursionError, OverflowError, ValueError) as exc:
            return [self._error(f"cannot be read ({type(exc).__name__})", name)]
        for record in records:
            if "error" in record:
                self.stats.errors += 1
            else:
                self.stats.records += 1
        return records

    def _error(self, message: str, name: str) -> dict[str, Any]:
        self.stats.errors += 1
        return {"error": message, "source": name}

    def lines(self, paths: Iterable[str], stdin: IO[bytes] | None = None) -> Iterator[dict[str, Any]]:
        """Every record and error line of the bundles under ``paths``, bundle by bundle."""
        for path in bundle_files(paths):
            if path == "-":
                if stdin is None:
                    raise InputFormatError("standard input is not available here")
                yield from self.bundle(stdin, "-")
                continue
            try:
                stream = open(path, "rb")
            except OSError as exc:
                self.stats.bundles += 1
                yield self._error(f"cannot be opened ({exc.strerror or type(exc).__name__})", path)
                continue
            with stream:
                yield from self.bundle(stream, path)

    def items(self, paths: Iterable[str], stdin: IO[bytes] | None = None) -> Iterator[Item]:
        """The records as input items for :func:`screening.batch.screen_batch`: an error line becomes
        that position's error item."""
        count = 0
        for line in self.lines(paths, stdin):
            count += 1
            position = f"record {count}"
            if "error" in line:
                yield Item(position, error=CandidateRecordError(
                    [FieldProblem("", f"not imported from {line['source']}: {line['error']}")], position=position))
            else:
                yield Item(position, orjson.dumps(line).decode())


def _json_problem(exc: Exception) -> str:
    """What was wrong with a bundle's JSON, without quoting it (ijson's messages show the text)."""
    text = str(exc)
    if "premature EOF" in text or isinstance(exc, ijson.IncompleteJSONError) and "EOF" in text:
        return "the file ends before its JSON does (truncated?)"
    if "trailing garbage" in text:
        return "more text after the bundle's JSON"
    return "not valid JSON"
