"""REDCap: the screening instrument as a data dictionary, and that instrument's exports read as records.

The instrument is generated from the pack's record (``fields.yaml``: types, labels, questions in
English and Chinese, required fields) and its ``redcap.yaml`` (variable names, lists counted per night, repeating
instruments, branching, choice labels). :func:`dictionary_rows` gives REDCap's data dictionary (the
18 columns of its CSV, in its order); :func:`read_export` reads a data export of that instrument —
raw or labels (English or Chinese), with REDCap's missing-data codes as unknown and the rows of a
repeating instrument joined to their record — as one :class:`~screening.io.Item` per record, which
is then screened like any other input.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from .errors import CandidateRecordError, FieldProblem, InputFormatError, RuleDefinitionError
from .fields import FieldSpec, RecordSpec
from .i18n import DEFAULT_LANG, LANGUAGES, message
from .io import Item
from .protocol import Ruleset, read_yaml_file

#: REDCap's data dictionary columns, in the order its import expects.
DICTIONARY_HEADER = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
)
#: A variable or form name REDCap accepts: lowercase letters, digits, underscores, starting with a letter.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: The longest variable name REDCap takes without warning.
MAX_NAME = 26
#: REDCap's missing-data codes (Project Setup → Additional customizations): all read as unknown.
MISSING_CODES = frozenset({"NI", "INV", "UNK", "NASK", "ASKU", "NAV", "MSK", "NA", "NAVU", "NP", "QS", "QI", "TRC",
                           "UNC", "DER", "PINF", "NINF", "OTH"})
#: The export's own columns (raw name, label) that are not fields of the instrument.
REPEAT_INSTRUMENT = ("redcap_repeat_instrument", "Repeat Instrument")
REPEAT_INSTANCE = ("redcap_repeat_instance", "Repeat Instance")
_YES = {"1", "yes", "true", "是"}
_NO = {"0", "no", "false", "否"}


@dataclass(frozen=True)
class Variable:
    """One REDCap variable: the record field it holds (a night's count: the list's date field)."""

    name: str
    path: str
    spec: FieldSpec
    form: str
    #: night n of a per-night list (its variable counts the entries dated that night)
    night: int | None = None
    list_path: str | None = None
    repeating: bool = False


@dataclass(frozen=True)
class Nights:
    """A list of dated entries kept as one count per night: ``<prefix><n>`` holds how many entries fall
    on night n (the ``start`` date + n − 1); shown once ``upto`` (the nights recorded) is entered."""

    nights: int
    prefix: str
    date: str
    start: str
    most: int
    upto: str | None


@dataclass
class Instrument:
    """A pack's REDCap instrument: its variables in order, and how lists are kept."""

    record: RecordSpec
    form: str
    variables: list[Variable] = field(default_factory=list)
    nights: dict[str, Nights] = field(default_factory=dict)
    repeating: dict[str, str] = field(default_factory=dict)
    show_if: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    choices: dict[str, dict[str, str]] = field(default_factory=dict)
    identifiers: frozenset[str] = frozenset()
    names: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def variable(self, path: str) -> str:
        return self.names.get(path, path)


def load_instrument(ruleset: Ruleset) -> Instrument:
    """The pack's ``redcap.yaml`` over its record, checked: every name valid and used once, every path
    a field of the record. :raises RuleDefinitionError: naming the file and key."""
    if ruleset.pack_dir is None:
        raise RuleDefinitionError("the criteria set belongs to no pack, so it has no REDCap instrument",
                                  file=ruleset.path)
    path = ruleset.pack_dir / "redcap.yaml"
    shown = f"{ruleset.pack_dir.name}/redcap.yaml"
    if not path.exists():
        raise RuleDefinitionError(f"pack {ruleset.pack} has no REDCap instrument (redcap.yaml)", file=shown)
    data = read_yaml_file(path, display=shown)

    def fail(message: str, key: str) -> RuleDefinitionError:
        return RuleDefinitionError(message, file=shown, field=key)
    if not isinstance(data, dict):
        raise fail("must be a mapping", "")
    unknown = set(data) - {"form", "nights", "repeating", "names", "show_if", "choices", "identifiers", "labels"}
    if unknown:
        raise fail("unknown key", sorted(unknown)[0])
    record = ruleset.record
    form = data.get("form")
    if not isinstance(form, str) or not NAME.match(form):
        raise fail("a form name is lowercase letters, digits and _, starting with a letter", "form")
    names = _mapping(data.get("names"), "names", fail)
    for key, name in names.items():
        if record.get(key, through_lists=True) is None:
            raise fail(f"{key!r} is no field of the record", f"names.{key}")
        if not isinstance(name, str) or not NAME.match(name) or len(name) > MAX_NAME:
            raise fail(f"a variable is lowercase letters, digits and _, starting with a letter, at most {MAX_NAME} "
                       f"characters", f"names.{key}")
    instrument = Instrument(record=record, form=form, names=dict(names))
    for key, raw in _mapping(data.get("nights"), "nights", fail).items():
        spec = record.get(key)
        ok = isinstance(raw, dict) and spec is not None and spec.type == "list"
        date_spec = record.get(f"{key}.{raw.get('date')}", through_lists=True) if ok else None
        start = record.get(str(raw.get("start", ""))) if ok else None
        upto = raw.get("upto") if ok else None
        upto_spec = record.get(str(upto)) if upto is not None else None
        if not ok or date_spec is None or date_spec.type != "date" or start is None or start.type != "date" or \
                not isinstance(raw.get("nights"), int) or not 1 <= raw["nights"] <= 366 or \
                not isinstance(raw.get("prefix"), str) or not NAME.match(raw["prefix"]) or \
                not isinstance(raw.get("most", 20), int) or \
                (upto is not None and (upto_spec is None or upto_spec.type != "int")):
            raise fail("a list of dated entries: {nights: 1 … 366, prefix: a name, date: its date field, start: the "
                       "record's date of night 1, most: the most entries a night, upto: an int field}", f"nights.{key}")
        instrument.nights[key] = Nights(raw["nights"], raw["prefix"], raw["date"], raw["start"], raw.get("most", 20),
                                        upto)
    for key, raw in _mapping(data.get("repeating"), "repeating", fail).items():
        spec = record.get(key)
        if spec is None or spec.type != "list" or not isinstance(raw, dict) or \
                not isinstance(raw.get("form"), str) or not NAME.match(raw["form"]) or raw["form"] == form:
            raise fail("a list field of the record: {form: a form name of its own}", f"repeating.{key}")
        instrument.repeating[key] = raw["form"]
    for key, raw in _mapping(data.get("show_if"), "show_if", fail).items():
        if record.get(key) is None or not isinstance(raw, dict) or len(raw) != 1:
            raise fail("a field of the record: {other field: [values]}", f"show_if.{key}")
        (other, values), = raw.items()
        other_spec = record.get(other)
        if other_spec is None or not isinstance(values, list) or \
                not all(isinstance(v, str) and v in other_spec.values for v in values):
            raise fail(f"{other!r} must be an enum field of the record and the values some of its values",
                       f"show_if.{key}")
        instrument.show_if[key] = (other, tuple(values))
    for value, labels in _mapping(data.get("choices"), "choices", fail).items():
        if not isinstance(labels, dict) or set(labels) != set(LANGUAGES) or \
                not all(isinstance(t, str) and t.strip() for t in labels.values()):
            raise fail(f"a value's labels: {{{', '.join(LANGUAGES)}}}", f"choices.{value}")
        instrument.choices[str(value)] = dict(labels)
    identifiers = data.get("identifiers") or []
    if not isinstance(identifiers, list) or not all(isinstance(i, str) and record.get(i) for i in identifiers):
        raise fail("a list of fields of the record", "identifiers")
    instrument.identifiers = frozenset(identifiers)
    for key, texts in _mapping(data.get("labels"), "labels", fail).items():
        if record.get(key, through_lists=True) is None or not isinstance(texts, dict) or \
                set(texts) != set(LANGUAGES) or not all(isinstance(t, str) and t.strip() for t in texts.values()):
            raise fail(f"a field of the record: {{{', '.join(LANGUAGES)}}}", f"labels.{key}")
        instrument.labels[key] = dict(texts)
    _variables(instrument, fail)
    return instrument


def _mapping(raw: Any, key: str, fail: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail("must be a mapping", key)
    return raw


def _variables(instrument: Instrument, fail: Any) -> None:
    """Every leaf field of the record as variables, in the record's order (a night's count each); a repeating
    instrument's after the main form's (REDCap keeps each form's fields together)."""
    seen: dict[str, str] = {}
    later: list[Variable] = []

    def add(var: Variable) -> None:
        if var.name in seen:
            raise fail(f"variable {var.name!r} is used for {seen[var.name]} and {var.path}", "names")
        if not NAME.match(var.name) or len(var.name) > MAX_NAME:
            raise fail(f"{var.path} needs a variable name (lowercase, at most {MAX_NAME} characters)",
                       f"names.{var.path}")
        seen[var.name] = var.path
        instrument.variables.append(var)

    def visit(spec: FieldSpec) -> None:
        for child in spec.fields.values():
            if child.type == "object":
                visit(child)
            elif child.type == "list":
                assert child.items is not None
                items = list(child.items.fields.values())
                if child.path in instrument.nights:
                    kept = instrument.nights[child.path]
                    count = FieldSpec(name="count", path=f"{child.path}.{kept.date}", type="int", minimum=0,
                                      maximum=kept.most)
                    for n in range(1, kept.nights + 1):
                        add(Variable(f"{kept.prefix}{n}", count.path, count, instrument.form, night=n,
                                     list_path=child.path))
                elif child.path in instrument.repeating:
                    later.extend(Variable(instrument.variable(item.path), item.path, item,
                                          instrument.repeating[child.path], list_path=child.path, repeating=True)
                                 for item in items)
                else:
                    raise fail(f"list {child.path} needs nights or a repeating instrument", "nights")
            else:
                if "." in child.path and child.path not in instrument.names:
                    raise fail(f"{child.path} needs a variable name", "names")
                add(Variable(instrument.variable(child.path), child.path, child, instrument.form))
    visit(instrument.record.root)
    for var in later:
        add(var)
    first = instrument.variables[0] if instrument.variables else None
    if first is None or not first.spec.required or first.spec.type != "id":
        raise fail("the record's first field must be its required id (REDCap's record id)", "names")


# ---------------------------------------------------------------------------------------------
# The data dictionary


def _label(spec: FieldSpec, lang: str, instrument: Instrument | None = None, night: int | None = None) -> str:
    """A field's text on the form: its question, else its label, in ``lang`` (a night's count: which night)."""
    if night is not None:
        return message("redcap_night", lang, n=night, d=night - 1)
    own = instrument.labels.get(spec.path, {}) if instrument is not None else {}
    return spec.question.get(lang) or spec.labels.get(lang) or own.get(lang) or spec.label or spec.name


def _choice(instrument: Instrument, value: str, lang: str) -> str:
    labels = instrument.choices.get(value)
    return labels.get(lang, labels[DEFAULT_LANG]) if labels else value.replace("_", " ").capitalize()


def _validation(spec: FieldSpec) -> tuple[str, str, str]:
    if spec.type == "date":
        return "date_ymd", "", ""
    if spec.type in ("int", "number"):
        low = "" if spec.minimum is None else _num(spec.minimum)
        high = "" if spec.maximum is None else _num(spec.maximum)
        return ("integer" if spec.type == "int" else "number"), low, high
    return "", "", ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def dictionary_rows(ruleset: Ruleset, lang: str = DEFAULT_LANG) -> list[list[str]]:
    """REDCap's data dictionary for the pack's screening instrument: a header and one row a variable."""
    instrument = load_instrument(ruleset)
    sections = _sections(ruleset, instrument, lang)
    rows = [list(DICTIONARY_HEADER)]
    for var in instrument.variables:
        spec = var.spec
        kind, choices = "text", ""
        if spec.type == "enum":
            kind = "radio"
            choices = " | ".join(f"{v}, {_choice(instrument, v, lang)}" for v in spec.values)
        elif spec.type == "bool":
            kind = "yesno"
        validation, low, high = _validation(spec)
        label = _label(spec, lang, instrument, var.night)
        branching = _branching(instrument, var)
        note = spec.help if lang == DEFAULT_LANG else ""
        rows.append([var.name, var.form, sections.get(var.name, ""), kind, label, choices, note, validation, low,
                     high, "y" if var.path in instrument.identifiers else "", branching,
                     "y" if spec.required and var.night is None and not var.repeating else "", "", "", "", "", ""])
    return rows


def _sections(ruleset: Ruleset, instrument: Instrument, lang: str) -> dict[str, str]:
    """A section header before the first variable of each top-level group of the record, naming the
    criteria that ask about it (``Age — I1``, ``Conditions — E1, E2, …``)."""
    asks: dict[str, list[str]] = {}
    for crit in ruleset.ordered:
        for path in (*crit.ask, *(a for r in crit.rules for a in r.ask)):
            if not path.startswith("@"):
                top = path.split(".")[0]
                if crit.id not in asks.setdefault(top, []):
                    asks[top].append(crit.id)
    headers: dict[str, str] = {}
    done: set[str] = set()
    for var in instrument.variables:
        top = var.path.split(".")[0]
        if top in done or top not in asks:
            continue
        done.add(top)
        spec = instrument.record.get(top)
        title = _label(spec, lang, instrument) if spec is not None and not spec.question else \
            (instrument.labels.get(top, {}).get(lang) or (spec.labels.get(lang) if spec else None) or top)
        headers[var.name] = f"{title} — {', '.join(asks[top])}"
    return headers


def _branching(instrument: Instrument, var: Variable) -> str:
    parts = []
    if var.path in instrument.show_if:
        other, values = instrument.show_if[var.path]
        name = instrument.variable(other)
        parts.append(" or ".join(f"[{name}] = '{v}'" for v in values))
    if var.night is not None and var.list_path is not None:
        upto = instrument.nights[var.list_path].upto
        if upto is not None:  # once the diary's nights are entered (a diary may skip nights: all 14 shown)
            parts.append(f"[{instrument.variable(upto)}] <> ''")
    return " and ".join(f"({p})" if " or " in p and len(parts) > 1 else p for p in parts)


def write_dictionary(out: IO[str], ruleset: Ruleset, lang: str = DEFAULT_LANG) -> int:
    """The data dictionary as REDCap's CSV (every cell quoted as needed, CRLF line ends); how many variables."""
    rows = dictionary_rows(ruleset, lang)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return len(rows) - 1


# ---------------------------------------------------------------------------------------------
# Reading an export


def read_export(stream: IO[bytes] | IO[str], ruleset: Ruleset, *, name: str | None = None) -> Iterator[Item]:
    """One item per record of a REDCap export of the pack's instrument (raw or labels, in English or
    Chinese): the main row joined with its repeating-instrument rows, per-night counts as dated entries. An empty cell and a
    missing-data code (``UNK``, ``NASK``, ``NA``, …) are unknown. A row that cannot be joined is an
    error item naming its line."""
    instrument = load_instrument(ruleset)
    text = stream.read()
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig", "replace")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        return
    by_label = _header_names(instrument)
    columns: list[str | None] = []
    unknown: list[str] = []
    for cell in header:
        cell = cell.strip()
        found = by_label.get(cell) or by_label.get(cell.lower())
        if found is None and not _system_column(cell):
            unknown.append(cell)
        columns.append(found)
    where = name or "the export"
    id_var = instrument.variables[0].name
    if id_var not in columns:
        raise InputFormatError(f"{where}: no {id_var} column — the record id of this instrument comes first (an export "
                               f"of another project, whose record id is {header[0][:40]!r}?)")
    if unknown:
        raise InputFormatError(f"{where}: column(s) this instrument does not have: "
                               f"{', '.join(repr(u[:40]) for u in unknown[:5])} (an export of another instrument, "
                               f"or labels in a language the pack does not write?)")
    repeating_vars = {v.name for v in instrument.variables if v.repeating}
    if repeating_vars & set(c for c in columns if c) and "__repeat_instrument" not in columns:
        raise InputFormatError(f"{where}: the repeating instrument's fields are there but not the "
                               f"redcap_repeat_instrument column that says which rows are theirs")
    if "__event" in columns:
        raise InputFormatError(f"{where}: a longitudinal export (redcap_event_name): export one event")
    labels = _value_names(instrument)
    main_lines: dict[str, int] = {}
    records: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    problems: dict[str, list[FieldProblem]] = {}
    lines: dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        values = {col: cell.strip() for col, cell in zip(columns, cells) if col is not None}
        record_id = values.get(id_var, "")
        if not record_id:
            yield Item(f"line {line}", error=CandidateRecordError(
                [FieldProblem(id_var, "the record id is empty")], position=f"line {line}"))
            continue
        repeat = values.get("__repeat_instrument", "")
        if record_id not in records:
            records[record_id] = {}
            order.append(record_id)
            lines[record_id] = line
        record = records[record_id]
        bad = problems.setdefault(record_id, [])
        if repeat:
            form = _form_of(instrument, repeat)
            if form is None:
                bad.append(FieldProblem("redcap_repeat_instrument", f"line {line}: not a repeating instrument of "
                                                                    f"this project"))
                continue
            entry = _fill(instrument, values, labels, repeating_form=form)
            list_path = next(p for p, f in instrument.repeating.items() if f == form)
            if entry:
                instance = values.get("__repeat_instance", "")
                _put(record, list_path, None, append=(int(instance) if instance.isdigit() else 0, entry))
        else:
            if record_id in main_lines:
                bad.append(FieldProblem(instrument.variables[0].path, f"a second row for this record (lines "
                                        f"{main_lines[record_id]} and {line}): one row a record"))
                continue
            main_lines[record_id] = line
            filled = [v.name for v in instrument.variables if v.repeating and values.get(v.name)]
            if filled:
                bad.append(FieldProblem(filled[0], f"line {line}: a value of the repeating instrument on a row that "
                                                   f"is not one of its rows"))
            try:
                record.update(_fill(instrument, values, labels, repeating_form=None))
            except _Unreadable as exc:
                bad.append(exc.problem)
            record.setdefault(instrument.variables[0].path, record_id)
    for record_id in order:
        position = f"line {lines[record_id]}"
        bad = problems.get(record_id) or []
        if bad:
            yield Item(position, error=CandidateRecordError(bad, position=position, candidate_id=record_id))
            continue
        record = records[record_id]
        if instrument.variables[0].path not in record:
            yield Item(position, error=CandidateRecordError(
                [FieldProblem("", f"record {record_id} has repeating rows but no main row")], position=position,
                candidate_id=record_id))
            continue
        for list_path in instrument.repeating:  # instances in their order, numbers dropped
            entries = _get(record, list_path)
            if entries is not None:
                _put(record, list_path, [entry for _, entry in sorted(entries, key=lambda e: e[0])])
        yield Item(position, orjson.dumps(record).decode())


def _header_names(instrument: Instrument) -> dict[str, str]:
    """Export column (variable name, or field label in any language) -> variable name."""
    out: dict[str, str] = {}
    for var in instrument.variables:
        out[var.name] = var.name
        for lang in LANGUAGES:
            label = _label(var.spec, lang, instrument, var.night)
            out.setdefault(label, var.name)
            out.setdefault(label.lower(), var.name)
    for raw, label in (REPEAT_INSTRUMENT, REPEAT_INSTANCE):
        key = "__repeat_instrument" if raw == REPEAT_INSTRUMENT[0] else "__repeat_instance"
        out[raw] = out[label] = out[label.lower()] = key
    out["redcap_event_name"] = out["Event Name"] = out["event name"] = "__event"
    return out


#: REDCap's own columns of an export, raw and as labels (kept out of the record).
_SYSTEM_LABELS = {"complete?", "data access group", "survey identifier", "survey timestamp"}


def _system_column(cell: str) -> bool:
    low = cell.lower()
    return low.startswith("redcap_") or low.endswith("_complete") or low.endswith("_timestamp") or \
        low in _SYSTEM_LABELS


def _value_names(instrument: Instrument) -> dict[str, str]:
    """A choice's label (any language, any case) -> its code."""
    out: dict[str, str] = {}
    for var in instrument.variables:
        for value in var.spec.values:
            out[value.lower()] = value
            for lang in LANGUAGES:
                out.setdefault(_choice(instrument, value, lang).lower(), value)
    return out


def _form_of(instrument: Instrument, shown: str) -> str | None:
    for form in instrument.repeating.values():
        if shown in (form, form.replace("_", " ").capitalize()) or shown.lower().replace(" ", "_") == form:
            return form
    return None


def _fill(instrument: Instrument, values: dict[str, str], labels: dict[str, str], *,
          repeating_form: str | None) -> dict[str, Any]:
    """The record fields (nested) one export row gives, or for a repeating row its list entry."""
    out: dict[str, Any] = {}
    counts: dict[str, list[tuple[int, Any]]] = {}
    for var in instrument.variables:
        if (var.repeating and var.form != repeating_form) or (repeating_form is not None and not var.repeating):
            continue
        raw = values.get(var.name, "")
        if raw == "" or raw.upper() in MISSING_CODES:
            continue  # unknown
        value = _value(var.spec, raw, labels)
        if var.repeating:
            out[var.path.rsplit(".", 1)[1]] = value
        elif var.night is not None and var.list_path is not None:
            counts.setdefault(var.list_path, []).append((var.night, value))
        else:
            _put(out, var.path, value)
    for list_path, nights in counts.items():  # n entries on a night: n entries dated that night
        kept = instrument.nights[list_path]
        start = _date(_get(out, kept.start))
        if start is None:
            raise _Unreadable(FieldProblem(list_path, f"the nights' counts need {kept.start} to date them"))
        entries = []
        for night, count in nights:
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise _Unreadable(FieldProblem(list_path, f"night {night}: a count of entries is a whole number"))
            entries += [{kept.date: (start + dt.timedelta(days=night - 1)).isoformat()} for _ in range(count)]
        _put(out, list_path, entries)
    for list_path in instrument.nights:  # no count in an object that was filled in: none, not unknown
        parent = list_path.rsplit(".", 1)[0] if "." in list_path else None
        if parent is not None and _get(out, parent) is not None and _get(out, list_path) is None:
            _put(out, list_path, [])
    return out


class _Unreadable(Exception):
    def __init__(self, problem: FieldProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _value(spec: FieldSpec, raw: str, labels: dict[str, str]) -> Any:
    """A cell as the record's JSON holds it; what cannot be read is kept as text, so that the record's
    validation names the field."""
    if spec.type == "bool":
        low = raw.lower()
        return True if low in _YES else False if low in _NO else raw
    if spec.type == "enum":
        return labels.get(raw.lower(), raw)
    if spec.type == "int":
        return int(raw) if re.fullmatch(r"-?\d{1,18}", raw) else raw
    if spec.type == "number":
        try:
            return float(raw) if not re.fullmatch(r"-?\d{1,18}", raw) else int(raw)
        except ValueError:
            return raw
    return raw


def _put(record: dict[str, Any], path: str, value: Any, *, append: tuple[int, dict[str, Any]] | None = None) -> None:
    parts = path.split(".")
    node = record
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if append is not None:
        node.setdefault(parts[-1], []).append(append)
    else:
        node[parts[-1]] = value


def _get(record: dict[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def export_row_cells(instrument: Instrument, record: dict[str, Any], *, labels: bool = False,
                     lang: str = DEFAULT_LANG) -> tuple[list[str], list[list[str]]]:
    """A record as the rows a REDCap export of the instrument holds: (main row, repeating rows), each
    in :func:`export_header` order. For tests and examples (REDCap itself writes real exports)."""
    header = export_header(instrument, labels=labels, lang=lang)
    main = ["" for _ in header]
    repeats: list[list[str]] = []
    index = {name: i for i, name in enumerate(export_header(instrument))}

    def shown(spec: FieldSpec, value: Any) -> str:
        if spec.type == "bool":
            return ("Yes" if value else "No") if labels else ("1" if value else "0")
        if spec.type == "enum" and labels:
            return _choice(instrument, str(value), lang)
        return str(value)
    for var in instrument.variables:
        if var.repeating or var.night is not None:
            continue
        value = _get(record, var.path)
        if value is not None:
            main[index[var.name]] = shown(var.spec, value)
    for list_path, kept in instrument.nights.items():  # entries counted per night of the window
        start = _date(_get(record, kept.start))
        entries = _get(record, list_path)
        if start is None or entries is None:
            continue
        per_night = [0] * kept.nights
        for entry in entries:
            day = _date(entry.get(kept.date))
            if day is not None and 0 <= (day - start).days < kept.nights:
                per_night[(day - start).days] += 1
        for n, count in enumerate(per_night, start=1):
            if count:
                main[index[f"{kept.prefix}{n}"]] = str(count)
    for list_path, form in instrument.repeating.items():
        for n, entry in enumerate(_get(record, list_path) or [], start=1):
            row = ["" for _ in header]
            row[0] = main[0]
            row[index["redcap_repeat_instrument"]] = form.replace("_", " ").capitalize() if labels else form
            row[index["redcap_repeat_instance"]] = str(n)
            for var in instrument.variables:
                if var.repeating and var.list_path == list_path:
                    value = entry.get(var.path.rsplit(".", 1)[1])
                    if value is not None:
                        row[index[var.name]] = shown(var.spec, value)
            repeats.append(row)
    return main, repeats


def export_header(instrument: Instrument, *, labels: bool = False, lang: str = DEFAULT_LANG) -> list[str]:
    """The columns of an export of the instrument, as REDCap orders them (the record id, the repeat
    columns when there is a repeating instrument, then every variable)."""
    names = [instrument.variables[0].name]
    if instrument.repeating:
        names += [REPEAT_INSTRUMENT[0], REPEAT_INSTANCE[0]]
    names += [v.name for v in instrument.variables[1:]]
    if not labels:
        return names
    by_name = {v.name: v for v in instrument.variables}
    out = []
    for name in names:
        var = by_name.get(name)
        if var is None:
            out.append(REPEAT_INSTRUMENT[1] if name == REPEAT_INSTRUMENT[0] else REPEAT_INSTANCE[1])
        else:
            out.append(_label(var.spec, lang, instrument, var.night))
    return out

