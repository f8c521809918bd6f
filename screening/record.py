"""The v1 candidate intake record (shared/intake-record.md) as strict pydantic models.

Absent or ``null`` means *unknown*, never "no". Unknown field names are errors (a typo would
otherwise turn a criterion into "unknown" silently). Records are validated from JSON text in
strict mode, so ``"14"`` is not an integer, ``"yes"`` is not a boolean and ``0`` is not a date.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import CandidateRecordError, FieldProblem, did_you_mean

ConditionStatus = Literal["active", "history", "absent", "unknown"]
DifferentialStatus = Literal["absent", "explains_symptoms", "coexisting", "not_assessed"]
Consent = Literal["pending", "signed", "declined", "withdrawn"]

CONDITION_KEYS: tuple[str, ...] = (
    "hypothyroidism", "hemodialysis", "peritoneal_dialysis", "hypoglycemia", "alcoholism",
    "amyotrophic_lateral_sclerosis", "poliomyelitis_sequelae", "lumbar_spinal_stenosis",
    "parkinson_disease", "radiculopathy", "motor_neuron_disease", "liver_cirrhosis",
    "malignant_tumor",
)
DIFFERENTIAL_KEYS: tuple[str, ...] = ("restless_legs", "claudication", "myositis", "peripheral_neuropathy")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


NonEmpty = Annotated[str, Field(min_length=1)]
#: A calendar date in a range where date arithmetic (D0 + 14, look-backs) cannot overflow.
Date = Annotated[dt.date, Field(ge=dt.date(1800, 1, 1), le=dt.date(2199, 12, 31))]


class Episode(_Model):
    """One cramp episode in the screening diary."""

    night_of: Date = Field(description="The evening the sleep period began (a cramp at 02:00 belongs to the previous date).")
    duration_min: Annotated[float, Field(ge=0)] | None = None
    severity: Annotated[int, Field(ge=1, le=10)] | None = None
    leg: Literal["left", "right", "both"] | None = None
    muscle: Literal["calf", "foot", "thigh", "other"] | None = None


class Diary(_Model):
    """The 14-night screening diary. Absent: not yet collected."""

    nights_recorded: Annotated[int, Field(ge=0, le=14)] | None = None
    episodes: list[Episode] | None = None


class Differentials(_Model):
    restless_legs: DifferentialStatus | None = None
    claudication: DifferentialStatus | None = None
    myositis: DifferentialStatus | None = None
    peripheral_neuropathy: DifferentialStatus | None = None


class NlcAssessment(_Model):
    """The investigator's history and physical examination."""

    confirmed: bool | None = None
    differentials: Differentials | None = None


class Conditions(_Model):
    """Condition key -> status; a key that is not present is unknown."""

    hypothyroidism: ConditionStatus | None = None
    hemodialysis: ConditionStatus | None = None
    peritoneal_dialysis: ConditionStatus | None = None
    hypoglycemia: ConditionStatus | None = None
    alcoholism: ConditionStatus | None = None
    amyotrophic_lateral_sclerosis: ConditionStatus | None = None
    poliomyelitis_sequelae: ConditionStatus | None = None
    lumbar_spinal_stenosis: ConditionStatus | None = None
    parkinson_disease: ConditionStatus | None = None
    radiculopathy: ConditionStatus | None = None
    motor_neuron_disease: ConditionStatus | None = None
    liver_cirrhosis: ConditionStatus | None = None
    malignant_tumor: ConditionStatus | None = None
    liver_cirrhosis_ascites_paracentesis: bool | None = None
    malignant_tumor_site: str | None = None


class Medication(_Model):
    """A medicine or supplement as recorded."""

    name: NonEmpty
    atc: Annotated[str, Field(pattern=r"^[A-Za-z][0-9A-Za-z ]{0,9}$")] | None = None
    rxnorm: Annotated[str, Field(pattern=r"^[0-9]+$")] | None = None
    start_date: Date | None = None
    stop_date: Date | None = None
    ongoing: bool | None = None

    @model_validator(mode="after")
    def _stop_after_start(self) -> "Medication":
        if self.start_date and self.stop_date and self.stop_date < self.start_date:
            raise ValueError("stop_date is before start_date")
        return self


class CandidateRecord(_Model):
    """One candidate, v1. Required: candidate_id and screening_start (D0)."""

    candidate_id: NonEmpty
    site: str | None = None
    screening_start: Date
    enrollment_date: Date | None = None
    birth_date: Date | None = None
    sex: Literal["female", "male", "other"] | None = None
    diary: Diary | None = None
    nlc_assessment: NlcAssessment | None = None
    conditions: Conditions | None = None
    medication_history_taken: bool | None = None
    medications: list[Medication] | None = None
    consent: Consent | None = None
    # Optional fields added by nlc-screen (allowed by the contract):
    deceased_date: Date | None = Field(
        default=None, description="Set by importers for a deceased patient; the decision warns.")

    @field_validator("enrollment_date")
    @classmethod
    def _enrollment_after_diary(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        offset = (info.context or {}).get("enrollment_offset_days")
        start = info.data.get("screening_start")
        if value is not None and start is not None and offset is not None:
            problem = enrollment_too_early(start, value, offset)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("birth_date")
    @classmethod
    def _born_before_screening(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("screening_start")
        if value is not None and start is not None and value > start:
            raise ValueError("is after screening_start")
        return value


def _field_names(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The field names allowed at a path of the record, for "did you mean" hints."""
    current: Any = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    return list(current.model_fields) if current is not None else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def format_path(loc: tuple[Any, ...]) -> str:
    """('medications', 0, 'rxnorm') -> 'medications[0].rxnorm'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from_validation(error: ValidationError) -> list[FieldProblem]:
    """Field problems from pydantic's errors: paths and messages, never the offending values."""
    problems: list[FieldProblem] = []
    seen: set[tuple[str, str]] = set()
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[", "constrained-"))))
        kind = item["type"]
        path = format_path(loc)
        if kind == "extra_forbidden":
            name = str(loc[-1]) if loc else ""
            message = "unknown field" + did_you_mean(name, _field_names(CandidateRecord, loc[:-1]))
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "json_invalid":
            message = "not valid JSON"
        elif kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
            message = "not a JSON object"
        else:
            message = item["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
        key = (path, message)
        if key not in seen:
            seen.add(key)
            problems.append(FieldProblem(path, message))
    return problems


def enrollment_too_early(d0: dt.date, enrollment: dt.date, offset_days: int) -> str | None:
    """What is wrong with an ``enrollment_date`` before D0 + the diary (randomisation follows it), or None."""
    if enrollment < d0 + dt.timedelta(days=offset_days):
        return f"is before screening_start + {offset_days} days (randomisation follows the screening diary)"
    return None


def parse_record(text: str | bytes, *, position: str | None = None,
                 enrollment_offset_days: int | None = None) -> CandidateRecord:
    """Validate one record from JSON text.

    :param enrollment_offset_days: the criteria set's diary length: an ``enrollment_date`` before
        ``screening_start`` + this is a field error, reported with any others.
    :raises CandidateRecordError: naming the position, the candidate id if it could be read, and
        every field problem (paths and messages only).
    """
    try:
        return CandidateRecord.model_validate_json(text, context={"enrollment_offset_days": enrollment_offset_days})
    except ValidationError as exc:
        raise record_error(exc, text, position) from None


def record_error(exc: ValidationError, text: str | bytes | dict[str, Any], position: str | None) -> CandidateRecordError:
    candidate_id = site = None
    data: Any = text
    if not isinstance(text, dict):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
    if isinstance(data, dict):
        cid = data.get("candidate_id")
        candidate_id = cid if isinstance(cid, str) and cid else None
        s = data.get("site")
        site = s if isinstance(s, str) else None
    problems = problems_from_validation(exc)
    if not isinstance(data, dict) and data is not None:
        problems = [FieldProblem("", "not a JSON object")]
    return CandidateRecordError(problems, position=position, candidate_id=candidate_id, site=site)


def record_json_schema() -> dict[str, Any]:
    """The JSON Schema of the v1 intake record (what ``nlc-screen schema`` prints)."""
    schema = CandidateRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "nlc-screen candidate intake record v1"
    return schema


def field_paths(model: type[BaseModel] = CandidateRecord, prefix: str = "") -> list[str]:
    """Every field path of the record (``diary.nights_recorded``, ``conditions.hypothyroidism``…).

    Lists are not entered: ``medications`` and ``diary.episodes`` are paths of their own.
    """
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        inner = _inner_model(field.annotation)
        if inner is not None and "list[" not in str(field.annotation):
            paths.extend(field_paths(inner, f"{path}."))
    return paths


def _base_types(annotation: Any) -> set[Any]:
    """The plain types behind an annotation (unwrapping Annotated, unions and None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_base_types(a) for a in typing.get_args(annotation))) - {type(None)}
    return {origin or annotation}


def field_kinds(model: type[BaseModel] = CandidateRecord, prefix: str = "") -> dict[str, str]:
    """Each value-holding field path and its JSON kind: ``bool``, ``int``, ``list`` or ``text``.

    Nested objects (``diary``, ``conditions`` …) are entered, not listed; lists are leaves. Readers
    of flat formats (CSV) type their cells by this, so they follow the model.
    """
    kinds: dict[str, str] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        bases = _base_types(field.annotation)
        inner = _inner_model(field.annotation)
        if list in bases:
            kinds[path] = "list"
        elif inner is not None:
            kinds.update(field_kinds(inner, f"{path}."))
        elif bases == {bool}:
            kinds[path] = "bool"
        elif bases == {int}:
            kinds[path] = "int"
        else:
            kinds[path] = "text"
    return kinds
