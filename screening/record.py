"""Reading candidate records strictly: the shared field types, errors, duplicate keys.

A pack's ``fields.yaml`` declares its record; :mod:`screening.fields` builds the model from it on
the base and types defined here.

Absent or ``null`` means *unknown*, never "no". Unknown field names are errors (a typo would
otherwise turn a criterion into "unknown" silently). Records are validated from JSON text in
strict mode, so ``"14"`` is not an integer, ``"yes"`` is not a boolean and ``0`` is not a date.
A key that appears twice in one object is an error (JSON parsers keep the last silently), and so
is a number that is not finite (``Infinity``, ``NaN``, ``1e999``). Error messages name fields,
never values; an unknown key's name is shown only when it is a short identifier.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from .errors import CandidateRecordError, FieldProblem, did_you_mean


class RecordBase(BaseModel):
    """The base of every record model a pack's fields build (screening.fields): strict, no unknown
    names, no infinite numbers, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


NonEmpty = Annotated[str, Field(min_length=1)]


def _not_blank(value: str) -> str:
    if value and not value.strip():
        raise ValueError("holds only spaces; give the id or name, or leave the field out")
    return value


#: An identifier or name that, when given, holds more than spaces (a blank id would print as an
#: indented line of the candidate above it, and cannot be told from "no site").
Named = Annotated[str, AfterValidator(_not_blank)]
#: A record's identifier: text, not empty and not only spaces.
RequiredId = Annotated[NonEmpty, AfterValidator(_not_blank)]
#: The record field every pack's record has, outside its ``fields.yaml``: what an importer says about
#: where each value came from (shared/intake-record.md ``provenance``). It never changes a decision, so
#: it is no criteria set's (not in any sha256), and no CSV column.
IMPORT_METADATA = "provenance"
#: ``provenance``: a field path -> the sources of its value (``Condition/123``, a file name).
Provenance = dict[Annotated[str, Field(min_length=1, max_length=200)], list[Annotated[str, Field(min_length=1, max_length=500)]]]
#: A calendar date in a range where date arithmetic (D0 + 14, look-backs) cannot overflow.
Date = Annotated[dt.date, Field(ge=dt.date(1800, 1, 1), le=dt.date(2199, 12, 31))]


def normalise_atc(code: str) -> str:
    """An ATC code as compared with a value set: the record's form (no surrounding whitespace, upper
    case) without the spaces some sources put inside (``"C03 CA01"``)."""
    return code.strip().replace(" ", "").upper()


def normalise_rxnorm(code: str) -> str:
    """An RxCUI as compared with a value set: the record's form, without surrounding whitespace."""
    return code.strip()


#: An ATC code (or a local code shaped like one). The model strips surrounding whitespace before
#: the pattern is checked and holds it upper case, so every reader (the drug classifier,
#: ``--include-record``) sees one form: ``" c03ca01 "``, ``"c03ca01 "`` and ``"C03CA01"`` are one
#: code. (Checked in pydantic-core, not by a Python validator: this runs for every medication.)
AtcCode = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z][0-9A-Za-z ]{0,9}$"),
                    Field(description="ATC code; surrounding whitespace is removed and letters are upper-cased",
                          json_schema_extra={"pattern": r"^\s*[A-Za-z][0-9A-Za-z ]{0,9}\s*$"})]
#: An RxNorm concept id (digits), held without surrounding whitespace.
RxCui = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]+$"),
                  Field(description="RxNorm RxCUI (digits); surrounding whitespace is removed",
                        json_schema_extra={"pattern": r"^\s*[0-9]+\s*$"})]


def _default_model() -> type[BaseModel]:
    """The record model of the default criteria set's pack (for callers that name no set)."""
    from .protocol import load_ruleset
    return load_ruleset().record.model


def __getattr__(name: str) -> Any:
    """``CandidateRecord``, ``Medication``, … : the default pack's record model classes, by name."""
    if name.startswith("__") or not name[:1].isupper():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found = _models_by_name(_default_model()).get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return found


def _models_by_name(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """A record model and every model inside it, by class name."""
    out: dict[str, type[BaseModel]] = {}
    stack = [model]
    while stack:
        current = stack.pop()
        out.setdefault(current.__name__, current)
        for field in current.model_fields.values():
            inner = _inner_model(field.annotation)
            if inner is not None and inner.__name__ not in out:
                stack.append(inner)
    return out


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


#: The longest key name an error message shows; a longer identifier is cut here and ends in "…".
SHOWN_NAME_LIMIT = 40
HIDDEN_NAME = "an unknown field (name not shown)"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def shown_name(name: str) -> str | None:
    """A key name as messages and field paths show it: itself, cut to SHOWN_NAME_LIMIT characters
    with "…", or None (not shown) when it is not an ASCII identifier (spaces, quotes, control or
    non-ASCII characters could forge or garble what a reader sees)."""
    if not _IDENTIFIER.fullmatch(name):
        return None
    return name if len(name) <= SHOWN_NAME_LIMIT else name[:SHOWN_NAME_LIMIT] + "…"


def _shown_path(loc: tuple[Any, ...]) -> tuple[str, bool]:
    """The field path of ``loc`` as shown, and whether it was cut before a name that is not shown
    (then the path names the object holding that key)."""
    shown: list[Any] = []
    for part in loc:
        if isinstance(part, str):
            name = shown_name(part)
            if name is None:
                return format_path(tuple(shown)), True
            shown.append(name)
        else:
            shown.append(part)
    return format_path(tuple(shown)), False


def _json_invalid(message: str, text: str | bytes | None) -> str:
    """"not valid JSON at column C (why)" from the parser's message; the line too when the text has
    several. The parser counts bytes; the column shown counts characters."""
    found = _JSON_WHERE.fullmatch(message)
    if found is None:
        return "not valid JSON"
    why, line, column = found.group(1), int(found.group(2)), int(found.group(3))
    if text is not None:
        raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        lines = raw.split(b"\n", line)
        if line <= len(lines):
            column = len(lines[line - 1][:column - 1].decode("utf-8", "ignore")) + 1
        single = raw.count(b"\n") == 0
    else:
        single = line == 1
    where = f"at column {column}" if single else f"at line {line}, column {column}"
    # The parser's reasons are fixed phrases; show one only if it looks like one.
    reason = f" ({why})" if _JSON_REASON.fullmatch(why) else ""
    return f"not valid JSON {where}{reason}"


_JSON_WHERE = re.compile(r"Invalid JSON: (.*) at line (\d+) column (\d+)", re.DOTALL)
_JSON_REASON = re.compile(r"[A-Za-z0-9 `,(){}\[\]\\:-]{1,80}", re.ASCII)


def problems_from_validation(error: ValidationError, text: str | bytes | None = None,
                             model: type[BaseModel] | None = None) -> list[FieldProblem]:
    """Field problems from pydantic's errors: paths and messages, never the offending values.

    :param text: the JSON text validated, if any (a syntax error's column is counted in it).
    :param model: the record model validated (for "did you mean" hints; the default pack's if None).
    """
    problems: list[FieldProblem] = []
    seen: set[tuple[str, str]] = set()
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal[", "constrained-"))))
        kind = item["type"]
        path, hidden = _shown_path(loc)
        if kind == "extra_forbidden":
            if hidden:
                message = HIDDEN_NAME
            else:
                name = str(loc[-1]) if loc else ""
                hint = did_you_mean(name, _field_names(model or _default_model(), loc[:-1])) if len(name) <= SHOWN_NAME_LIMIT else ""
                message = "unknown field" + hint
        elif hidden:  # only unknown keys can have such names; a backstop
            message = f"{HIDDEN_NAME}: {item['msg']}"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "json_invalid":
            message = _json_invalid(item["msg"], text)
        elif kind == "finite_number":
            message = "must be a finite number"
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


# ---------------------------------------------------------------------------------------------
# Duplicate keys. JSON parsers keep the last of two equal keys in an object, silently. A record
# that parsed is checked cheaply: every key is followed by a colon, so the text has at least as
# many colons as keys, and (unknown keys being errors) each key of a valid record sets one field.
# When the colons are exactly the fields set, no key can repeat. Colons inside text values are
# counted from the record when the text has no \u escape (so each colon in a value is one in the
# text). Otherwise the text is read again, keeping every key (about as slow as validating it).


@functools.cache
def _shape(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A model's fields that hold objects (or lists of them), and those that hold text."""
    nested = tuple(name for name, field in model.model_fields.items() if _inner_model(field.annotation) is not None)
    texts = tuple(name for name, field in model.model_fields.items() if str in _base_types(field.annotation))
    return nested, texts


def _set_models(record: BaseModel) -> Iterator[BaseModel]:
    """The record and every object inside it that the text set (lists entered), whatever the model."""
    stack = [record]
    while stack:
        model = stack.pop()
        yield model
        for name in _shape(type(model))[0]:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                stack.append(value)
            elif value:
                stack.extend(value)


@functools.cache
def _key_counter(cls: type[BaseModel]) -> Callable[[BaseModel], int]:
    """A function counting the fields set in an instance of ``cls`` and in the objects inside it,
    built once per model class from its fields (so it follows the model, at hand-written speed)."""
    parts: list[tuple[str, bool, Callable[[BaseModel], int]]] = []
    for name in _shape(cls)[0]:
        annotation = cls.model_fields[name].annotation
        inner = _inner_model(annotation)
        assert inner is not None
        parts.append((name, list in _base_types(annotation), _key_counter(inner)))

    def count(model: BaseModel) -> int:
        n = len(model.__pydantic_fields_set__)
        for name, is_list, child in parts:
            value = getattr(model, name)
            if value is None:
                continue
            if is_list:
                for item in value:
                    n += child(item)
            else:
                n += child(value)
        return n

    return count


def _keys_read(record: BaseModel) -> int:
    """How many keys of the JSON text set a field of ``record`` or of the objects inside it."""
    return _key_counter(type(record))(record)


def _colons_in_values(record: BaseModel) -> int:
    """The colons in the record's text values (dates and numbers cannot hold one)."""
    return sum(value.count(":") for model in _set_models(record) for name in _shape(type(model))[1]
               if isinstance(value := getattr(model, name), str))


def _may_repeat_keys(text: str | bytes, record: BaseModel) -> bool:
    """False when the valid ``record``'s JSON ``text`` cannot have a key twice in one object."""
    colons = text.count(":") if isinstance(text, str) else text.count(b":")
    keys = _keys_read(record)
    if colons == keys:
        return False
    escaped = "\\u" in text if isinstance(text, str) else b"\\u" in text
    return escaped or colons != keys + _colons_in_values(record)


class _Object(dict[str, Any]):
    """A JSON object as read with every key kept: ``repeats`` counts each key that came more than once."""

    __slots__ = ("repeats",)
    repeats: dict[str, int]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.repeats = {}
    if len(obj) != len(pairs):
        for key, _ in pairs:
            obj.repeats[key] = obj.repeats.get(key, 0) + 1
        obj.repeats = {k: n for k, n in obj.repeats.items() if n > 1}
    return obj


def _ignore(_: str) -> int:
    return 0


#: The deepest nesting :func:`load_keeping_keys` reads. Python's json gives up near the interpreter's
#: recursion limit *less the calls already on the stack*, so a text nested almost that deep would read
#: in one place (the main process) and not in another (a worker, deeper in its calls), and its error
#: row would be named by its candidate id in one and by its line in the other. Anything deeper than
#: this is refused everywhere; the record model's own parser refuses far less deep texts anyway.
MAX_NESTING = 512
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _nested_deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether ``text`` nests arrays and objects more than ``limit`` deep (brackets in strings not counted)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the usual case: too few brackets to nest that deep
        return False
    depth = 0
    for byte in _STRING.sub(b"", raw):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def load_keeping_keys(text: str | bytes) -> Any:
    """The JSON value of ``text`` with each object an ``_Object`` that knows its repeated keys.

    Numbers are not converted (they read as 0): only the structure is wanted here, and an integer
    too long for ``int()`` must not stop the check. :raises ValueError, RecursionError: not JSON,
    or nested deeper than :data:`MAX_NESTING` (wherever it is called from).
    """
    if _nested_deeper_than(text, MAX_NESTING):
        raise RecursionError(f"nested more than {MAX_NESTING} deep")
    return json.loads(text, object_pairs_hook=_object, parse_int=_ignore, parse_float=_ignore,
                      parse_constant=_ignore)


def duplicate_keys(value: Any, loc: tuple[Any, ...] = ()) -> list[FieldProblem]:
    """A problem for each key that appears more than once in one object of ``value`` (from
    :func:`load_keeping_keys`), at any depth, named by its field path under ``loc``. Walks
    without recursion: any depth json can read is fine here."""
    problems: list[FieldProblem] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, loc)]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, _Object):
            for key, count in value.repeats.items():
                times = "twice" if count == 2 else f"{count} times"
                path, hidden = _shown_path(loc + (key,))
                if not hidden:
                    problems.append(FieldProblem(path, f"appears {times} in the record"))
                elif _shown_path(loc)[1]:
                    problems.append(FieldProblem(path, f"a key inside {HIDDEN_NAME} appears {times} in the record"))
                else:
                    problems.append(FieldProblem(path, f"{HIDDEN_NAME} appears {times} in the record"))
            stack.extend((item, loc + (key,)) for key, item in reversed(value.items())
                         if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            stack.extend((item, loc + (index,)) for index, item in reversed(list(enumerate(value)))
                         if isinstance(item, (dict, list)))
    return problems


def enrollment_too_early(d0: dt.date, enrollment: dt.date, offset_days: int) -> str | None:
    """What is wrong with an ``enrollment_date`` before D0 + the diary (randomisation follows it), or None."""
    if enrollment < d0 + dt.timedelta(days=offset_days):
        return f"is before screening_start + {offset_days} days (randomisation follows the screening diary)"
    return None


def parse_record(text: str | bytes, model: type[BaseModel] | None = None, *, position: str | None = None,
                 parameters: dict[str, Any] | None = None) -> Any:
    """Validate one record from JSON text against a pack's record model.

    :param model: the record model (``Ruleset.record.model``); the default pack's if None.
    :param parameters: the criteria set's parameters: date checks that name one (an
        ``enrollment_date`` before ``screening_start`` + the diary) are field errors, reported with
        any others. Without them such checks wait for the set's derivation.
    :raises CandidateRecordError: naming the position, the candidate id if it could be read, and
        every field problem (paths and messages only).
    """
    model = model or _default_model()
    try:
        record = model.model_validate_json(text, context={"parameters": parameters})
    except ValidationError as exc:
        raise record_error(exc, text, position, model) from None
    if _may_repeat_keys(text, record):
        try:
            data = load_keeping_keys(text)
        except (ValueError, RecursionError):  # read by pydantic, not by json: no duplicates can be seen
            return record
        problems = duplicate_keys(data)
        if problems:
            raise _record_error(problems, data, position)
    return record


def _is_text(value: str) -> bool:
    """Whether a string can be written as UTF-8: a lone surrogate (JSON ``\\udc80``, which the
    lenient reader behind error rows lets through) cannot, so such an id never names an error row."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_error(exc: ValidationError, text: str | bytes | dict[str, Any],
                 position: str | None, model: type[BaseModel] | None = None) -> CandidateRecordError:
    """The error for a record that failed validation: its field problems and any repeated keys,
    named by the candidate id and site when they can be read (and are not themselves repeated)."""
    data: Any = text
    if not isinstance(text, dict):
        try:
            data = load_keeping_keys(text)
        except (ValueError, RecursionError):
            data = None
    problems = duplicate_keys(data) + problems_from_validation(exc, None if isinstance(text, dict) else text, model)
    if not isinstance(data, dict) and data is not None:
        problems = [FieldProblem("", "not a JSON object")]
    return _record_error(problems, data, position)


def _record_error(problems: list[FieldProblem], data: Any, position: str | None) -> CandidateRecordError:
    candidate_id = site = None
    if isinstance(data, dict):
        repeats = data.repeats if isinstance(data, _Object) else {}
        cid = data.get("candidate_id")
        candidate_id = (cid if isinstance(cid, str) and cid.strip() and "candidate_id" not in repeats and _is_text(cid)
                        else None)
        s = data.get("site")
        site = s if isinstance(s, str) and s.strip() and "site" not in repeats and _is_text(s) else None
    return CandidateRecordError(problems, position=position, candidate_id=candidate_id, site=site)


def record_json_schema(model: type[BaseModel] | None = None, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema of a pack's record (what ``nlc-screen schema`` prints): the default pack's if None."""
    if model is None:
        from .protocol import load_ruleset
        spec = load_ruleset().record
        model, title = spec.model, title or spec.title
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if title:
        schema["title"] = title
    return schema


def _base_types(annotation: Any) -> set[Any]:
    """The plain types behind an annotation (unwrapping Annotated, unions and None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_base_types(a) for a in typing.get_args(annotation))) - {type(None)}
    return {origin or annotation}


def import_error(text: str) -> str | None:
    """The message of an importer's error line (``{"error": …, "source": FILE}``), or None when the
    text is a record."""
    if '{"error"' not in text[:64] or not text.lstrip().startswith('{"error"'):  # the cheap test first: every record
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str) or not set(data) <= {"error", "source"}:
        return None
    source = data.get("source")
    return f"not imported from {source}: {data['error']}" if isinstance(source, str) else f"not imported: {data['error']}"
