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

Three more rules (found by an outside review: the medicines, repeated questions, the cost of large records):

4. **A list before the fields that complete it.** A list a criterion reads (its entries are free
   text, so a probe cannot show that one entry would exclude) is asked *before* any other field the
   same open criterion asks with it, and ranks with the best of their distances — while the list has
   no answer yet. So "which medicines?" comes before "is the medication history complete?": the
   yes/no alone can never settle the medicine criteria without the list having been asked. (Chosen
   over asking the two together: each question stays one field, and the rule follows from the
   criteria's ``ask`` lists alone.)
5. **An answered field is not asked again for a review.** A field that already holds an answer is
   left out when every open criterion asking it is in ``review``: the investigator decides, the same
   question cannot. (A field whose answer leaves a criterion ``unknown`` — a medicine without dates,
   ``unknown`` itself — is still asked.)
6. **A probe budget.** The probes of one call screen at most :data:`PROBE_BUDGET` bytes of record
   JSON; past it, the fields left keep the current number of questions as their distance (their
   order then is ``ask_next``'s). A record of a few kB is never near it; a 700 kB one is ranked in
   well under a second instead of seconds.

A record the record model refuses has no decision to rank by: its plan asks the refused fields
that can be answered as one value (``refused``), so the screener can correct them; a refused list
entry or an unknown field has no question, and the plan is empty.

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
#: The most record JSON (bytes) the probes of one question order screen (rule 6 of the module's text).
PROBE_BUDGET = 4 << 20


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
    #: whether the record holds an answer the record model refuses (asked to correct it)
    refused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "distance": self.distance, "criteria": list(self.criteria),
                "required": self.required, "refused": self.refused}


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
        self.screened += len(text)
        return (screener or self.screener).item(Item("record 1", text))

    #: bytes of record JSON screened by this order so far (the probe budget counts them)
    screened = 0

    def _refused(self, row: Mapping[str, Any], skipped: set[str]) -> list[Question]:
        """The refused fields of an error row that can be asked again (one value each)."""
        out = []
        for path in row.get("error_fields", []):
            spec = self.ruleset.record.get(path) if path else None
            if spec is not None and spec.type not in ("list", "object") and path not in skipped:
                out.append(Question(path, distance=0, required=spec.required, refused=True))
        return out

    def __call__(self, record: Mapping[str, Any], *, skip: Iterable[str] = ()) -> Plan:
        skipped = set(skip)
        spec = self.ruleset.record
        missing = [name for name, f in spec.root.fields.items()
                   if f.required and record.get(name) in (None, "") and name not in skipped]
        if missing:
            row = self.screen(record)
            return Plan(row, [Question(path, distance=0, required=True) for path in missing])
        start = self.screened
        row = self.screen(record)
        if row["decision"] == "error":
            return Plan(row, self._refused(row, skipped))
        size = self.screened - start
        by_field: dict[str, list[str]] = {}
        unknown: set[str] = set()
        for cid, result in row["criteria"].items():
            if result["status"] in ("unknown", "review"):
                for path in self.ruleset.criteria[cid].ask:
                    by_field.setdefault(path, []).append(cid)
                    if result["status"] == "unknown":
                        unknown.add(path)
        asked = [path for path in row.get("ask_next", []) if path not in skipped
                 and (get_path(record, path) is None or path in unknown or path not in by_field)]  # rule 5
        now = len(row.get("ask_next", []))
        ranked: list[tuple[int, float, Question]] = []
        for index, path in enumerate(asked):
            best = now
            field_spec = spec.get(path)
            if field_spec is not None:
                for value in probes(field_spec, record):
                    if self.screened - start + size > PROBE_BUDGET:  # rule 6
                        break
                    trial = copy.deepcopy(dict(record))
                    set_path(trial, path, value)
                    distance = _distance(self.screen(trial, screener=self._quiet))
                    if distance is not None and distance < best:
                        best = distance
                        if best == 0:
                            break
            ranked.append((best, index, Question(path, best, tuple(by_field.get(path, ())))))
        ranked = self._lists_first(ranked, record)
        ranked.sort(key=lambda item: (item[0], item[1]))
        return Plan(row, [q for _, _, q in ranked])

    def _lists_first(self, ranked: list[tuple[int, float, Question]],
                     record: Mapping[str, Any]) -> list[tuple[int, float, Question]]:
        """Rule 4 of the module's text: an unanswered list goes just before the first of the fields an
        open criterion asks with it, with the best of their distances."""
        out = list(ranked)
        for i, (best, index, question) in enumerate(ranked):
            spec = self.ruleset.record.get(question.path)
            if spec is None or spec.type != "list" or get_path(record, question.path) is not None:
                continue
            partners = [(b, x) for b, x, q in ranked if q.path != question.path and set(q.criteria) & set(question.criteria)]
            if not partners:
                continue
            first = min(partners)
            if (first[0], first[1]) < (best, index):
                out[i] = (first[0], first[1] - 0.5, Question(question.path, first[0], question.criteria))
        return out


def question_order(record: Mapping[str, Any], ruleset: Ruleset, *, skip: Iterable[str] = (),
                   lang: str = "en") -> Plan:
    """The decision for a partial record (JSON-shaped, as the form and the interview hold it) and the
    questions still open, the one that can settle the decision soonest first (see the module's text).

    :param skip: field paths not to ask again (the screener did not know the answer).
    :param lang: the language of the decision row's reasons.
    """
    return QuestionOrder(ruleset, lang=lang)(record, skip=skip)
