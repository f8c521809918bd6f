"""Question order: for a partial record, which question to ask next — shared by the web form and
``nlc-screen interview``.

A decision row's ``ask_next`` lists the fields of the still-open criteria in precedence order.
:func:`question_order` ranks them by how soon an answer could settle the candidate:

1. each field is *probed*: the record is screened again with each answer the field could take
   (every value of an enum; yes and no; the ends of a number's range; a date on ``screening_start``
   and a century before it; an empty list and a long one, :data:`PROBE_LIST_LENGTH` entries holding
   their required fields). Answers the record model refuses are not counted;
2. a probe's *distance* is the number of questions its decision still asks: 0 when it decides the
   candidate (excluded, or eligible with nothing left to ask);
3. fields are ordered by their best (smallest) distance — a field whose answer alone could exclude
   comes first — and ties keep ``ask_next``'s order, that is the criteria's precedence.

Fields whose type gives nothing to probe (free text) keep the current number of questions as their
distance. Required fields that are missing (``candidate_id``, ``screening_start``) come before
everything: without them the record cannot be screened.

Example::

    from screening import load_ruleset
    from screening.ask import question_order
    plan = question_order({"candidate_id": "A1", "screening_start": "2023-03-01"}, load_ruleset())
    plan.decided, plan.questions[0].path, plan.questions[0].distance   # (False, 'birth_date', 0)

Nothing here knows a criterion or a field by name: the probes come from the pack's field types, the
distances from the rules.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fields import FieldSpec
from .io import Item
from .protocol import Ruleset
from .screen import Evaluator, Screener

#: How far before ``screening_start`` a probed date lies (a century: an old enough birth date).
PROBE_YEARS = 100
#: How many entries a long list is probed with (each holding its item's required fields, probed).
PROBE_LIST_LENGTH = 20


@dataclass(frozen=True)
class Question:
    """One field to ask about, with what ranks it."""

    path: str
    #: the fewest questions still open after the best answer to this one (0: an answer alone decides)
    distance: int
    #: the open criteria whose ``ask`` names this field (empty for a missing required field)
    criteria: tuple[str, ...] = ()
    #: whether the record cannot be screened without it (a missing required field)
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "distance": self.distance, "criteria": list(self.criteria),
                "required": self.required}


@dataclass
class Plan:
    """The decision for a record as it stands, and the questions still worth asking, best first."""

    row: dict[str, Any]
    questions: list[Question] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        """Nothing left to ask: the candidate is excluded or eligible (or every open question was skipped)."""
        return not self.questions

    @property
    def next(self) -> Question | None:
        return self.questions[0] if self.questions else None

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.row, "questions": [q.to_dict() for q in self.questions], "decided": self.decided}


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    """Set ``record[a][b]`` for ``a.b`` (objects made on the way); ``None`` removes the field."""
    parts = path.split(".")
    node = record
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def get_path(record: Mapping[str, Any], path: str) -> Any:
    """The value at ``a.b`` in a JSON-shaped record, or None."""
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def probes(spec: FieldSpec, record: Mapping[str, Any]) -> list[Any]:
    """The answers a field is probed with (JSON values), from its type alone."""
    if spec.type == "enum":
        return list(spec.values)
    if spec.type == "bool":
        return [True, False]
    if spec.type in ("int", "number"):
        ends = [spec.minimum if spec.minimum is not None else 0, spec.maximum]
        return [int(v) if spec.type == "int" else v for v in dict.fromkeys(ends) if v is not None]
    if spec.type == "list":
        item = spec.items
        if item is None or item.type != "object":
            return [[]]
        entry = {}
        for name, sub in item.fields.items():
            if sub.required:
                found = probes(sub, record)
                if not found:
                    return [[]]
                entry[name] = found[0]
        return [[], [dict(entry) for _ in range(PROBE_LIST_LENGTH)]]
    if spec.type == "date":
        try:
            start = dt.date.fromisoformat(str(record.get("screening_start")))
        except ValueError:
            return []
        return [start.isoformat(), start.replace(year=start.year - PROBE_YEARS, day=min(start.day, 28)).isoformat()]
    return []


def _distance(row: Mapping[str, Any]) -> int | None:
    """Questions a decision row still asks (0: decided); None for a row the record model refused."""
    if row["decision"] == "error":
        return None
    if row["decision"] == "excluded":
        return 0
    return len(row.get("ask_next", ()))


class QuestionOrder:
    """:func:`question_order` for one criteria set, reusing its screener (build once, call per answer)."""

    def __init__(self, ruleset: Ruleset, *, lang: str = "en", evaluator: Evaluator | None = None) -> None:
        self.ruleset = ruleset
        self.screener = Screener(ruleset, lang=lang, evaluator=evaluator)
        self._quiet = Screener(ruleset, evaluator=evaluator) if lang != "en" else self.screener

    def screen(self, record: Mapping[str, Any], *, screener: Screener | None = None) -> dict[str, Any]:
        """The decision (or error) row for a JSON-shaped record."""
        text = json.dumps(record, ensure_ascii=False)
        return (screener or self.screener).item(Item("record 1", text))

    def __call__(self, record: Mapping[str, Any], *, skip: Iterable[str] = ()) -> Plan:
        skipped = set(skip)
        spec = self.ruleset.record
        missing = [name for name, f in spec.root.fields.items()
                   if f.required and record.get(name) in (None, "") and name not in skipped]
        if missing:
            row = self.screen(record)
            return Plan(row, [Question(path, distance=0, required=True) for path in missing])
        row = self.screen(record)
        if row["decision"] == "error":
            return Plan(row, [])
        asked = [path for path in row.get("ask_next", []) if path not in skipped]
        now = len(row.get("ask_next", []))
        by_field: dict[str, list[str]] = {}
        for cid, result in row["criteria"].items():
            if result["status"] in ("unknown", "review"):
                for path in self.ruleset.criteria[cid].ask:
                    by_field.setdefault(path, []).append(cid)
        ranked: list[tuple[int, int, Question]] = []
        for index, path in enumerate(asked):
            best = now
            field_spec = spec.get(path)
            if field_spec is not None:
                for value in probes(field_spec, record):
                    trial = copy.deepcopy(dict(record))
                    set_path(trial, path, value)
                    distance = _distance(self.screen(trial, screener=self._quiet))
                    if distance is not None and distance < best:
                        best = distance
                        if best == 0:
                            break
            ranked.append((best, index, Question(path, best, tuple(by_field.get(path, ())))))
        ranked.sort(key=lambda item: (item[0], item[1]))
        return Plan(row, [q for _, _, q in ranked])


def question_order(record: Mapping[str, Any], ruleset: Ruleset, *, skip: Iterable[str] = (),
                   lang: str = "en") -> Plan:
    """The decision for a partial record (JSON-shaped, as the form and the interview hold it) and the
    questions still open, the one that can settle the decision soonest first (see the module's text).

    :param skip: field paths not to ask again (the screener did not know the answer).
    :param lang: the language of the decision row's reasons.
    """
    return QuestionOrder(ruleset, lang=lang)(record, skip=skip)
