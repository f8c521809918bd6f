"""A pack's record fields (``fields.yaml``) -> a field tree and the strict pydantic record model.

The record a trial screens is data: each field's path, type, whether it is required, its label and
help text, and checks between dates. :func:`load_record_spec` validates that data and builds the
model from it, with the same strict rules for every pack (see :mod:`screening.record`): unknown
names are errors, ``null`` is unknown, ``"14"`` is not a number. The field tree also tells the
readers of flat formats (CSV) each column's kind, the rules loader which paths ``ask`` may name,
and the derivations which fields of an object hold one status each.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator, model_validator

from .errors import RuleDefinitionError
from .i18n import DEFAULT_LANG, LANGUAGES, localized
from .i18n import message as say
from .record import IMPORT_METADATA, AtcCode, Date, Named, NonEmpty, Provenance, RecordBase, RequiredId, RxCui

#: The field types a pack may declare (see rules/README.md).
TYPES = ("id", "name", "text", "date", "int", "number", "bool", "enum", "atc_code", "rxnorm_code", "object", "list")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
#: The deepest nesting of objects and lists a record may declare.
MAX_FIELD_DEPTH = 6

Fail = Callable[[str, str], RuleDefinitionError]


@dataclass(frozen=True)
class DateCheck:
    """``not_before`` / ``not_after``: this date against another field of the same object."""

    other: str
    message: str
    plus_days: int | None = None
    plus_param: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    """One field of the record (or the record itself: type ``object``, path ``""``)."""

    name: str
    path: str
    type: str
    required: bool = False
    label: str = ""
    help: str = ""
    #: what an absent or null value means for this field (the record's convention: unknown)
    unknown: str = ""
    #: the screener's question for this field, by language (``en``, ``zh``)
    question: dict[str, str] = field(default_factory=dict)
    #: the label by language (``en`` is ``label``), when the pack translates it
    labels: dict[str, str] = field(default_factory=dict)
    #: the expected answer, by language, when the field's type does not say it well enough
    answer: dict[str, str] = field(default_factory=dict)
    values: tuple[str, ...] = ()
    enum_name: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    items: FieldSpec | None = None
    model: str | None = None
    not_before: DateCheck | None = None
    not_after: DateCheck | None = None
    checks: tuple[tuple[str, str, str], ...] = ()   # (field, not_before field, message), object level


@dataclass(frozen=True)
class RecordSpec:
    """A pack's record: the field tree and the model built from it."""

    name: str
    title: str
    root: FieldSpec
    enums: dict[str, tuple[str, ...]]
    #: language -> a note on its questions (a draft that needs a native speaker's review …)
    question_review: dict[str, str] = field(default_factory=dict)

    def question(self, path: str, lang: str = "en") -> str | None:
        """The screener's question for a field path in a language, or None."""
        spec = self.get(path)
        return spec.question.get(lang) if spec is not None else None

    def answer_format(self, path: str, lang: str = "en") -> str | None:
        """The answer a field expects, in words: the pack's ``answer`` for it, or what its type says
        (``a date, YYYY-MM-DD``; ``one of active, history, absent, unknown``). None for no such field."""
        spec = self.get(path)
        return None if spec is None else field_answer(spec, lang)

    @cached_property
    def model(self) -> type[BaseModel]:
        return _build(self.root)

    def date_checks(self) -> Iterator[tuple[str, DateCheck]]:
        """Every ``not_before`` / ``not_after`` of the record, with the path of the field it is on."""
        for spec in self.walk():
            for check in (spec.not_before, spec.not_after):
                if check is not None:
                    yield spec.path, check

    def walk(self) -> Iterator[FieldSpec]:
        """Every field under the record (lists' items entered), depth first, in declared order."""
        stack = list(reversed(self.root.fields.values()))
        while stack:
            spec = stack.pop()
            yield spec
            children = spec.items.fields if spec.items is not None else spec.fields
            stack.extend(reversed(children.values()))

    def get(self, path: str, *, through_lists: bool = False) -> FieldSpec | None:
        """The field at ``path`` (``diary.nights_recorded``); a list's item fields
        (``diary.episodes.night_of``) only ``through_lists``: a record holds many of them."""
        spec: FieldSpec | None = self.root
        for part in path.split("."):
            if spec is None:
                return None
            if spec.items is not None and not through_lists:
                return None
            children = spec.items.fields if spec.items is not None else spec.fields
            spec = children.get(part)
        return spec

    @cached_property
    def paths(self) -> tuple[str, ...]:
        """Every field path ``ask`` may name: objects and their fields; lists are paths of their own
        (their items' fields are not entered)."""
        out: list[str] = []

        def visit(spec: FieldSpec) -> None:
            for child in spec.fields.values():
                out.append(child.path)
                if child.type == "object":
                    visit(child)
        visit(self.root)
        return tuple(out)

    @cached_property
    def kinds(self) -> dict[str, str]:
        """Each value-holding path (objects entered, lists are leaves) and its JSON kind: ``bool``,
        ``int``, ``number``, ``list`` or ``text``. Readers of flat formats (CSV) type their cells by this."""
        out: dict[str, str] = {}

        def visit(spec: FieldSpec) -> None:
            for child in spec.fields.values():
                if child.type == "object":
                    visit(child)
                else:
                    out[child.path] = {"list": "list", "bool": "bool", "int": "int", "number": "number"}.get(child.type,
                                                                                                         "text")
        visit(self.root)
        return out



# ---------------------------------------------------------------------------------------------
# Reading fields.yaml


def load_record_spec(data: dict[str, Any], fail: Fail) -> RecordSpec:
    """Validate a ``fields.yaml`` mapping. ``fail(message, field)`` makes the error to raise."""
    _keys(data, {"name", "fields"}, {"title", "model", "help", "enums", "question_review"}, "", fail)
    review = data.get("question_review", {})
    if not isinstance(review, dict) or not all(k in LANGUAGES and isinstance(v, str) for k, v in review.items()):
        raise fail("must map a language to a note on its questions' review", "question_review")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise fail("must be text such as 'my-trial-record'", "name")
    enums: dict[str, tuple[str, ...]] = {}
    raw_enums = data.get("enums") or {}
    if not isinstance(raw_enums, dict):
        raise fail("must map a name to a list of values", "enums")
    for key, values in raw_enums.items():
        enums[_word(key, "enums", fail)] = _values(values, f"enums.{key}", fail)
    root_raw = {"type": "object", "fields": data["fields"], "model": data.get("model", "CandidateRecord"),
                "help": data.get("help", "")}
    root = _field("", "", root_raw, enums, fail, depth=0)
    for key in ("candidate_id", "screening_start"):
        found = root.fields.get(key)
        if found is None or not found.required:
            raise fail(f"every record needs a required {key} (the screening log names candidates by it"
                       f"{'' if key == 'candidate_id' else '; dates are counted from it'})", f"fields.{key}")
    if root.fields["candidate_id"].type != "id" or root.fields["screening_start"].type != "date":
        raise fail("candidate_id is an id and screening_start a date", "fields")
    title = data.get("title", name)
    if not isinstance(title, str):
        raise fail("must be text", "title")
    spec = RecordSpec(name=name, title=title, root=root, enums=enums, question_review=dict(review))
    seen: dict[str, str] = {root.model or "": "the record"}
    for declared in spec.walk():
        item = declared.items if declared.items is not None else declared
        if item.type == "object" and item.model is not None:
            other = seen.setdefault(item.model, declared.path)
            if other != declared.path:
                raise fail(f"model name {item.model!r} is also {other}'s; each object needs a name of its own",
                           f"fields.{declared.path}.model")
    spec.model  # noqa: B018 - build now, so a problem is reported when the pack loads
    return spec


def _keys(raw: dict[str, Any], required: set[str], optional: set[str], where: str, fail: Fail) -> None:
    from .errors import did_you_mean
    for key in raw:
        if key not in required | optional:
            raise fail(f"unknown key {key!r}{did_you_mean(str(key), sorted(required | optional))}", f"{where}{key}")
    for key in sorted(required - set(raw)):
        raise fail("required key is missing", f"{where}{key}")


def _word(key: Any, where: str, fail: Fail) -> str:
    if not isinstance(key, str) or not _NAME.match(key):
        raise fail(f"names are lower_case_with_underscores, not {str(key)[:40]!r}", where)
    if key.startswith("model_") or hasattr(BaseModel, key):
        raise fail(f"{key!r} is a name the record model keeps for itself; name the field otherwise", where)
    return key


def _values(values: Any, where: str, fail: Fail) -> tuple[str, ...]:
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise fail("must be a non-empty list of words", where)
    if len(set(values)) != len(values):
        raise fail("lists a value twice", where)
    return tuple(values)


#: The languages a question is written in (every question has them all): :data:`screening.i18n.LANGUAGES`.


def _question(raw: Any, where: str, fail: Fail) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) != set(LANGUAGES) or \
            not all(isinstance(v, str) and v.strip() for v in raw.values()):
        raise fail(f"must be {{{', '.join(f'{lang}: <the question>' for lang in LANGUAGES)}}}", where)
    return dict(raw)


def field_answer(spec: FieldSpec, lang: str = DEFAULT_LANG) -> str:
    """The answer a field expects, in words: its ``answer`` from the pack, or what its type says."""
    if spec.answer:
        return spec.answer.get(lang) or spec.answer[DEFAULT_LANG]
    return _answer(spec, lang)


def _answer(spec: FieldSpec, lang: str) -> str:
    """The answer a field's type expects, in words."""
    if spec.type == "date":
        return say("format_date", lang)
    if spec.type == "bool":
        return say("format_bool", lang)
    if spec.type in ("int", "number"):
        bounds = (say("format_range", lang, low=_num(spec.minimum), high=_num(spec.maximum))
                  if spec.minimum is not None and spec.maximum is not None else "")
        return say(f"format_{spec.type}", lang, range=bounds)
    if spec.type == "enum":
        return say("format_enum", lang, values=" / ".join(spec.values))
    if spec.type == "list" and spec.items is not None:
        item = spec.items
        return say("format_list", lang, item=(item.labels.get(lang) or item.label or item.name).lower())
    if spec.type == "object":
        return say("format_object", lang, fields=", ".join(spec.fields))
    return say("format_text", lang)


def _num(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _text(raw: dict[str, Any], key: str, where: str, fail: Fail) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise fail("must be text", f"{where}{key}")
    return value


def _number(raw: dict[str, Any], key: str, where: str, fail: Fail, *, whole: bool) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise fail("must be a whole number" if whole else "must be a number", f"{where}{key}")
    return value


def _date_check(raw: Any, where: str, fail: Fail) -> DateCheck:
    if not isinstance(raw, dict):
        raise fail("must be {field: <date field>, message: ..., plus_days: <days or {param: name}>}", where)
    _keys(raw, {"field", "message"}, {"plus_days"}, f"{where}.", fail)
    other = _word(raw["field"], f"{where}.field", fail)
    message = _text(raw, "message", f"{where}.", fail)
    plus = raw.get("plus_days")
    if plus is None:
        return DateCheck(other, message)
    if isinstance(plus, dict) and set(plus) == {"param"} and isinstance(plus["param"], str):
        return DateCheck(other, message, plus_param=plus["param"])
    if isinstance(plus, int) and not isinstance(plus, bool) and 0 <= plus <= 3660:
        return DateCheck(other, message, plus_days=plus)
    raise fail("must be a whole number of days (0 … 3660) or {param: name}", f"{where}.plus_days")


def _field(name: str, path: str, raw: Any, enums: dict[str, tuple[str, ...]], fail: Fail, *, depth: int) -> FieldSpec:
    where = f"fields.{path}." if path else ""
    if not isinstance(raw, dict):
        raise fail("must be a mapping {type: ..., label: ..., ...}", f"fields.{path}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise fail(f"must be one of {', '.join(TYPES)}", f"{where}type")
    optional = {"required", "label", "help", "unknown", "question", "answer"}
    extra = {"int": {"min", "max"}, "number": {"min", "max"}, "enum": {"values"}, "text": {"min_length"},
             "object": {"fields", "model", "checks"}, "list": {"items"}, "date": {"not_before", "not_after"}}
    _keys(raw, {"type"} | ({"fields"} if kind == "object" else {"items"} if kind == "list" else set()),
          optional | extra.get(kind, set()), where, fail)
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise fail("must be true or false", f"{where}required")
    labels = localized(raw["label"], f"{where}label", fail) if raw.get("label") is not None else {}
    answer = localized(raw["answer"], f"{where}answer", fail) if raw.get("answer") is not None else {}
    common: dict[str, Any] = {"name": name, "path": path, "type": kind, "required": required,
                              "label": labels.get(DEFAULT_LANG, ""), "help": _text(raw, "help", where, fail),
                              "labels": labels if len(labels) > 1 else {}, "answer": answer,
                              "unknown": _text(raw, "unknown", where, fail),
                              "question": _question(raw.get("question"), f"{where}question", fail)}
    if depth > MAX_FIELD_DEPTH:
        raise fail(f"nests deeper than {MAX_FIELD_DEPTH} objects", f"fields.{path}")
    if kind in ("int", "number"):
        whole = kind == "int"
        low, high = _number(raw, "min", where, fail, whole=whole), _number(raw, "max", where, fail, whole=whole)
        if low is not None and high is not None and low > high:
            raise fail("must not be above max", f"{where}min")
        return FieldSpec(**common, minimum=low, maximum=high)
    if kind == "text":
        length = _number(raw, "min_length", where, fail, whole=True)
        if length is not None and not 0 <= length <= 1_000_000:
            raise fail("must be a whole number of characters, 0 … 1000000", f"{where}min_length")
        return FieldSpec(**common, min_length=None if length is None else int(length))
    if kind == "enum":
        values = raw.get("values")
        if isinstance(values, str):
            if values not in enums:
                raise fail(f"names no list under enums ({', '.join(enums) or 'none'})", f"{where}values")
            return FieldSpec(**common, values=enums[values], enum_name=values)
        return FieldSpec(**common, values=_values(values, f"{where}values", fail))
    if kind == "date":
        before = _date_check(raw["not_before"], f"{where}not_before", fail) if "not_before" in raw else None
        after = _date_check(raw["not_after"], f"{where}not_after", fail) if "not_after" in raw else None
        return FieldSpec(**common, not_before=before, not_after=after)
    if kind == "list":
        item = _field(name, path, raw["items"], enums, fail, depth=depth + 1)
        if item.type != "object":
            raise fail("a list holds objects (type: object, with fields)", f"{where}items.type")
        return FieldSpec(**common, items=item)
    if kind == "object":
        fields_raw = raw["fields"]
        if not isinstance(fields_raw, dict) or not fields_raw:
            raise fail("must map field names to fields", f"{where}fields")
        fields: dict[str, FieldSpec] = {}
        for key, child in fields_raw.items():
            key = _word(key, f"{where}fields", fail)
            fields[key] = _field(key, f"{path}.{key}" if path else key, child, enums, fail, depth=depth + 1)
        model = raw.get("model") or "".join(part.title() for part in name.split("_"))
        if not isinstance(model, str) or not _MODEL.match(model):
            raise fail("a model name is CamelCase, such as Diary", f"{where}model")
        for key, spec in fields.items():
            for check in (spec.not_before, spec.not_after):
                if check is None:
                    continue
                other = fields.get(check.other)
                if other is None or other.type != "date" or check.other == key or \
                        list(fields).index(check.other) > list(fields).index(key):
                    raise fail(f"{check.other!r} must be a date field declared before {key} in the same object",
                               f"{where}fields.{key}")
        checks = []
        if not isinstance(raw.get("checks") or [], list):
            raise fail("must be a list of {field, not_before, message}", f"{where}checks")
        for i, check in enumerate(raw.get("checks") or []):
            if not isinstance(check, dict):
                raise fail("must be {field, not_before, message}", f"{where}checks[{i}]")
            _keys(check, {"field", "not_before", "message"}, set(), f"{where}checks[{i}].", fail)
            for key in ("field", "not_before"):
                if not isinstance(check[key], str) or check[key] not in fields or fields[check[key]].type != "date":
                    raise fail("names no date field of this object", f"{where}checks[{i}].{key}")
            if check["field"] == check["not_before"]:
                raise fail("compares a date with itself", f"{where}checks[{i}]")
            checks.append((check["field"], check["not_before"], _text(check, "message", f"{where}checks[{i}].", fail)))
        return FieldSpec(**common, fields=fields, model=model, checks=tuple(checks))
    return FieldSpec(**common)


# ---------------------------------------------------------------------------------------------
# Building the model

_BASE: dict[str, Any] = {"id": RequiredId, "name": Named, "date": Date, "bool": bool, "atc_code": AtcCode,
                         "rxnorm_code": RxCui}


def _annotation(spec: FieldSpec) -> Any:
    kind = spec.type
    if kind in _BASE:
        return _BASE[kind]
    if kind == "text":
        return NonEmpty if spec.min_length == 1 else (
            Annotated[str, Field(min_length=spec.min_length)] if spec.min_length else str)
    if kind in ("int", "number"):
        bounds: dict[str, Any] = {k: v for k, v in (("ge", spec.minimum), ("le", spec.maximum)) if v is not None}
        base: Any = int if kind == "int" else float
        return Annotated[base, Field(**bounds)] if bounds else base
    if kind == "enum":
        return Literal[spec.values]
    if kind == "list":
        assert spec.items is not None
        return list[_build(spec.items)]  # type: ignore[misc]
    return _build(spec)


def _date_validator(name: str, check: DateCheck, after: bool) -> Any:
    def check_date(cls: Any, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        other = info.data.get(check.other)
        if value is None or other is None:
            return value
        days = check.plus_days
        if check.plus_param is not None:
            days = ((info.context or {}).get("parameters") or {}).get(check.plus_param)
            if days is None:  # parsed without a criteria set: the set's check runs when it derives
                return value
        limit = other + dt.timedelta(days=days or 0)
        if (value > limit) if after else (value < limit):
            raise ValueError(check.message.replace("{days}", str(days or 0)))
        return value
    return field_validator(name)(check_date)


def _object_check(checks: tuple[tuple[str, str, str], ...]) -> Any:
    def check_object(self: BaseModel) -> BaseModel:
        for later, earlier, message in checks:
            a, b = getattr(self, later), getattr(self, earlier)
            if a is not None and b is not None and a < b:
                raise ValueError(message)
        return self
    return model_validator(mode="after")(check_object)


def _build(spec: FieldSpec) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    validators: dict[str, Any] = {}
    for key, child in spec.fields.items():
        annotation = _annotation(child)
        description = " ".join(part for part in (child.help, f"Absent or null: {child.unknown}" if child.unknown else "")
                               if part)
        info: dict[str, Any] = {k: v for k, v in (("title", child.label), ("description", description)) if v}
        if child.required:
            definitions[key] = (annotation, Field(**info))
        else:
            definitions[key] = (annotation | None, Field(default=None, **info))
        if child.not_before is not None:
            validators[f"_{key}_not_before"] = _date_validator(key, child.not_before, after=False)
        if child.not_after is not None:
            validators[f"_{key}_not_after"] = _date_validator(key, child.not_after, after=True)
    if spec.checks:
        validators["_object_checks"] = _object_check(spec.checks)
    if spec.path == "" and IMPORT_METADATA not in definitions:  # the record itself: importers' metadata
        definitions[IMPORT_METADATA] = (Provenance | None, Field(default=None, title="Provenance", description=(
            "Set by importers (FHIR): field path -> the resources (Condition/123, a file) its value came from, "
            "so a screener can check it. Never changes a decision.")))
    assert spec.model is not None
    model: type[BaseModel] = create_model(spec.model, __base__=RecordBase, __doc__=spec.help or None,
                                          __validators__=validators, __module__=__name__, **definitions)
    return model
