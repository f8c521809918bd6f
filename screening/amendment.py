"""Amendment impact: the same candidates screened under two criteria sets, and what changes.

``nlc-screen diff-rules OLD NEW INPUT`` (or ``--log``) re-screens every candidate under an old and a
new criteria set of one trial pack and reports

* each candidate whose decision, CONSORT category or subcategory changes, with the criteria
  responsible: those whose status differs between the sets, marking the one that decided the old
  box and the one that decides the new (each row's ``primary_criterion``);
* every CONSORT count under each set — counted by :func:`screening.audit.count` on the two streams of
  rows, so they are exactly what ``audit`` would print — with its change, and the candidates moved
  into and out of each box;
* the transitions (old box → new box: candidates), and a check that they account for every change
  of count: per box, old + moved in − moved out = new; the categories' changes add up to the change
  in candidates assessed (0 when the same candidates are assessed).

A box is a category, or ``category.subcategory``, or ``error`` for a record that cannot be read. A
record that cannot be read is reported once (not as a change). As in ``audit``, each candidate (its
site and candidate_id) counts once, by its last record in the input.

Input items are candidate records, decision rows made with ``screen --include-record`` (their
``record`` is screened again; an ``error`` row stays the error it was), or the current input
record of each candidate in a screening log (:func:`log_items`).

Streaming: the two sets' counts run beside the screening (one thread each, fed in blocks); per
candidate only its pair of boxes is kept, and the details of the changed and unreadable ones.

Example::

    old, new = load_ruleset("registry-2023"), load_ruleset("paper-2024")
    with open("candidates.jsonl", "rb") as source:
        impact = compare(record_items(source, old, name="candidates.jsonl"), old, new)
    impact.changes[0].criteria, impact.box_changes()[0], impact.arithmetic()
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import orjson

from .audit import ConsortCounts, count
from .decision import error_row
from .errors import CandidateRecordError, FieldProblem, IncomparableRulesets, InputFormatError
from .i18n import DEFAULT_LANG, message, status_word
from .io import Item, RecordStream, read_records
from .output import csv_line
from .protocol import Ruleset
from .screen import DuplicateCheck, Evaluator, Screener
from .text import clip, pad, visible

if TYPE_CHECKING:
    from .log import ScreeningLog

#: The box of a row that is an unreadable record.
ERROR_BOX = "error"


@dataclass(frozen=True)
class Given:
    """An input item that is already a decision row (an ``error`` row of a decision file or log): it
    is the same error under both sets, not screened again."""

    position: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Erased:
    """A candidate of a screening log whose input record was erased (``nlc-screen log erase``): it
    cannot be screened again; reported apart, never as unreadable, and not counted (see
    :class:`AmendmentImpact`). ``row`` is the decision row as the erasure kept it."""

    position: str
    row: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"candidate_id": self.row.get("candidate_id"), "site": self.row.get("site"), "position": self.position,
                "logged": _outcome(self.row).to_dict()}


class Outcome(NamedTuple):
    """A candidate's decision under one set."""

    decision: str
    category: str
    subcategory: str | None
    primary_criterion: str | None

    @property
    def box(self) -> str:
        return box_of(self.category, self.subcategory)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


def box_of(category: str, subcategory: str | None) -> str:
    """The finest CONSORT box: ``category.subcategory``, or the category (``error`` for error rows)."""
    return f"{category}.{subcategory}" if subcategory else category


def _outcome(row: dict[str, Any]) -> Outcome:
    if row["decision"] == "error":
        return Outcome("error", ERROR_BOX, None, None)
    return Outcome(row["decision"], row["category"], row.get("subcategory"), row.get("primary_criterion"))


@dataclass
class CriterionChange:
    """One criterion whose status differs between the sets (None: the set has no such criterion)."""

    id: str
    old: str | None
    new: str | None
    old_reason: str | None
    new_reason: str | None
    decided_old: bool
    decided_new: bool

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "old": self.old, "new": self.new, "old_reason": self.old_reason,
                "new_reason": self.new_reason, "decided_old": self.decided_old, "decided_new": self.decided_new}


@dataclass
class Change:
    """A candidate the two sets decide differently (decision, category or subcategory)."""

    candidate_id: str
    site: str | None
    position: str
    old: Outcome
    new: Outcome
    criteria: list[CriterionChange]

    def to_dict(self) -> dict[str, Any]:
        return {"candidate_id": self.candidate_id, "site": self.site, "position": self.position,
                "old": self.old.to_dict(), "new": self.new.to_dict(),
                "criteria": [c.to_dict() for c in self.criteria]}


@dataclass
class Unreadable:
    """A record that could not be read (under the old set; reported once)."""

    candidate_id: str
    site: str | None
    position: str
    error: str
    error_fields: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"candidate_id": self.candidate_id, "site": self.site, "position": self.position,
                "error": self.error, "error_fields": self.error_fields}


class BoxChange(NamedTuple):
    """One CONSORT count under both sets and the candidates that moved in and out of it."""

    box: str
    old: int
    new: int
    moved_in: int
    moved_out: int

    @property
    def delta(self) -> int:
        return self.new - self.old

    @property
    def adds_up(self) -> bool:
        return self.old + self.moved_in - self.moved_out == self.new

    def to_dict(self) -> dict[str, Any]:
        return {"box": self.box, "old": self.old, "new": self.new, "delta": self.delta, "moved_in": self.moved_in,
                "moved_out": self.moved_out, "adds_up": self.adds_up}


def check_comparable(old: Ruleset, new: Ruleset) -> None:
    """Refuse two sets whose CONSORT boxes are not the same boxes.

    Two sets of different trial packs are refused; a set file outside any pack is compared by its
    boxes (categories and subcategories), which must be the other set's.

    :raises IncomparableRulesets: naming both sets and why.
    """
    names = f"{old.name} {old.version} and {new.name} {new.version}"
    if old.pack and new.pack and old.pack != new.pack:
        raise IncomparableRulesets(f"{names} belong to different trial packs ({old.pack}, {new.pack}): their "
                                   "CONSORT boxes differ, so their counts cannot be compared; compare two sets of "
                                   "one pack")
    if _boxes(old) != _boxes(new):
        raise IncomparableRulesets(f"{names} do not have the same CONSORT boxes "
                                   f"({', '.join(_boxes(old))} / {', '.join(_boxes(new))}), so their counts "
                                   "cannot be compared")


def _boxes(rs: Ruleset) -> list[str]:
    cons = rs.consort
    return [box for cat in cons["categories"]
            for box in [cat, *(f"{cat}.{sub}" for sub in cons["subcategories"].get(cat, []))]]


# -- input -------------------------------------------------------------------------------------------

def record_items(stream: IO[bytes] | IO[str], ruleset: Ruleset, *, input_format: str | None = None,
                 name: str | None = None) -> _Items:
    """The items of an input of candidate records or of decision rows made with ``--include-record``.

    A decision row (an object with ``decision`` and ``category``) gives its ``record``; an ``error``
    row stays that error (:class:`Given`); a decision row without its record is an error item
    naming its position — and when the first row is one, the whole input is refused.

    :raises InputFormatError: the format is unknown, the input cannot be read, or it holds decision
        rows made without ``--include-record``.
    """
    return _Items(read_records(stream, input_format, name=name, kinds=ruleset.record.kinds))


class _Items(Iterator["Item | Given"]):
    """Items of a :class:`RecordStream`, decision rows turned into their records; ``unread`` as the
    stream's."""

    def __init__(self, stream: RecordStream) -> None:
        self.stream = stream
        self._items = self._read()

    @property
    def unread(self) -> str | None:
        return self.stream.unread

    def __iter__(self) -> Iterator[Item | Given]:
        return self

    def __next__(self) -> Item | Given:
        return next(self._items)

    def _read(self) -> Iterator[Item | Given]:
        first = True
        for item in self.stream:
            yield from_decision_row(item, first=first)
            first = False


def from_decision_row(item: Item, *, first: bool = False) -> Item | Given:
    """The record a decision row made with ``--include-record`` carries (the item as it is when it is
    a candidate record)."""
    if item.text is None or '"decision"' not in item.text:
        return item
    try:
        row = orjson.loads(item.text)
    except orjson.JSONDecodeError:
        return item  # not JSON: screening says so, as for any record
    if not (isinstance(row, dict) and isinstance(row.get("decision"), str) and isinstance(row.get("category"), str)):
        return item
    record = row.get("record")
    if isinstance(record, dict):
        return Item(item.position, orjson.dumps(record).decode())
    if row["decision"] == "error" and isinstance(row.get("candidate_id"), str):
        return Given(item.position, row)
    problem = ("a decision row without its input record: screen the candidates again with "
               "`nlc-screen screen --include-record`, or give their records")
    if first:
        raise InputFormatError(f"{item.position}: {problem}")
    return Item(item.position, error=CandidateRecordError([FieldProblem("record", problem)], position=item.position,
                                                          candidate_id=_text(row.get("candidate_id")),
                                                          site=_text(row.get("site"))))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def log_items(log: ScreeningLog, *, site: str | None = None) -> Iterator[Item | Given | Erased]:
    """The current input record of every candidate in a screening log (``record N``, in the log's
    order). An entry logged as an ``error`` row whose text was not kept stays that error; a candidate
    whose record was erased (``log erase``) is :class:`Erased`; a record missing otherwise is an error
    item saying so."""
    for number, (row, body) in enumerate(log.current_records(site=site), 1):
        position = f"record {number}"
        if body is not None:
            yield Item(position, body)
        elif row.get("erased") is True and row.get("decision") != "error":
            yield Erased(position, row)
        elif row.get("decision") == "error":
            yield Given(position, row)
        else:
            yield Item(position, error=CandidateRecordError(
                [FieldProblem("", "its input record is not in the screening log")],
                position=position, candidate_id=_text(row.get("candidate_id")), site=_text(row.get("site"))))


# -- counting beside the screening ------------------------------------------------------------------

_END = None
_BLOCK = 256


class _Counting:
    """:func:`screening.audit.count` of one set's rows, run in a thread of its own and fed in blocks,
    so that the two sets' rows are counted while they are made (no row kept longer than a block)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=4)
        self.block: list[dict[str, Any]] = []
        self.result: ConsortCounts | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"count-{ruleset.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            blocks: Iterator[list[dict[str, Any]]] = iter(self.queue.get, _END)
            self.result = count(itertools.chain.from_iterable(blocks), self.ruleset)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            self.error = exc
            while self.queue.get() is not _END:  # keep taking blocks until the caller stops
                pass

    def add(self, row: dict[str, Any]) -> None:
        self.block.append(row)
        if len(self.block) >= _BLOCK:
            self.queue.put(self.block)
            self.block = []

    def finish(self) -> ConsortCounts:
        """The counts of every row added (waits for the thread)."""
        self.stop()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def stop(self) -> None:
        if self.thread.is_alive():
            if self.block:
                self.queue.put(self.block)
                self.block = []
            self.queue.put(_END)
            self.thread.join()


# -- the comparison ---------------------------------------------------------------------------------

@dataclass
class AmendmentImpact:
    """What changes when the candidates are screened under ``new`` instead of ``old``."""

    old: Ruleset
    new: Ruleset
    old_counts: ConsortCounts
    new_counts: ConsortCounts
    #: the candidates decided differently, in input order (of their last record)
    changes: list[Change]
    #: the records that could not be read, once each
    unreadable: list[Unreadable]
    #: (old box, new box) -> candidates; old box == new box for those that stayed
    transitions: Counter[tuple[str, str]]
    #: candidates that stayed in their box, now put there by another criterion
    other_primary: int = 0
    #: where reading stopped, when part of the input could not be read
    unread: str | None = None
    source: str = ""
    #: candidates of a screening log whose record was erased: not screened again, not in any count
    #: here (``audit --log`` counts them in their logged boxes: its counts are the old counts plus theirs)
    erased: list[Erased] = field(default_factory=list)

    @property
    def candidates(self) -> int:
        """Candidates re-screened (each counted once)."""
        return sum(self.transitions.values())

    def box_changes(self) -> list[BoxChange]:
        """Every CONSORT count of ``audit`` (assessed, excluded, each category and subcategory, errors):
        old, new, and the candidates moved in and out (from the transitions)."""
        old_flat, new_flat = self.old_counts.flat(), self.new_counts.flat()
        out = []
        for box in list(new_flat) + [b for b in old_flat if b not in new_flat]:
            moved_in = moved_out = 0
            for (was, now), n in self.transitions.items():
                inside_before, inside_after = self._member(was, box), self._member(now, box)
                if inside_after and not inside_before:
                    moved_in += n
                elif inside_before and not inside_after:
                    moved_out += n
            out.append(BoxChange(box, old_flat.get(box, 0), new_flat.get(box, 0), moved_in, moved_out))
        return out

    def _depth(self, box: str) -> int:
        """How far a count's line is indented in the text report (as in ``audit``)."""
        cons = self.new.consort
        if box in ("assessed", "errors", cons["eligible"]):
            return 0
        if box == "excluded" or box in (cons["undetermined"], cons["eligible_pending"]):
            return 2
        return 6 if "." in box else 4

    def _member(self, leaf: str, box: str) -> bool:
        """Whether a candidate in the finest box ``leaf`` counts in the count ``box``."""
        if box == "errors":
            return leaf == ERROR_BOX
        if box == "assessed":
            return leaf != ERROR_BOX
        category = leaf.split(".", 1)[0]
        if box == "excluded":
            cons = self.new.consort
            return leaf != ERROR_BOX and category not in (cons["eligible"], cons["eligible_pending"],
                                                          cons["undetermined"])
        return leaf == box or ("." not in box and category == box)

    def arithmetic(self) -> list[str]:
        """Each check that fails, as a sentence (empty when all hold): every count's change is the
        candidates moved in less those moved out; the categories' changes add up to the change in
        candidates assessed; each set's own counts are consistent; both counted the same candidates."""
        problems = []
        changes = self.box_changes()
        for change in changes:
            if not change.adds_up:
                problems.append(f"{change.box}: {change.old} + {change.moved_in} moved in − {change.moved_out} moved "
                                f"out ≠ {change.new}")
        cats = self.new.consort["categories"]
        by_box = {c.box: c for c in changes}
        category_delta = sum(by_box[c].delta for c in cats if c in by_box)
        if category_delta != by_box["assessed"].delta:
            problems.append(f"the categories' changes add up to {category_delta:+d}, not to the change in candidates "
                            f"assessed ({by_box['assessed'].delta:+d})")
        for which, counts in (("old", self.old_counts), ("new", self.new_counts)):
            problems += [f"{which} set: {p}" for p in counts.arithmetic() if "no decision rows" not in p]
            if counts.candidates != self.candidates:
                problems.append(f"the {which} set counted {counts.candidates} candidates, the transitions "
                                f"{self.candidates}")
        return problems

    @property
    def exit_code(self) -> int:
        """0 when it ran (differences are findings); 1 when part of the input was not read, it held no
        record, or the counts do not add up."""
        return 1 if self.unread or self.candidates == 0 or self.arithmetic() else 0

    def summary(self) -> str | None:
        """What to say on stderr beside a JSON or CSV report, or None."""
        if self.unread:
            return f"{self.candidates} candidate(s) read; {self.unread}"
        if self.candidates == 0:
            return "0 records read: the input holds no candidate record."
        problems = self.arithmetic()
        if problems:
            return "The counts do not add up: " + "; ".join(problems)
        notes = []
        if self.unreadable:
            notes.append(f"{len(self.unreadable)} record(s) could not be read; they are listed once, not as changes.")
        if self.erased:
            notes.append(f"{len(self.erased)} candidate(s) erased from the screening log: not screened again, not "
                         "counted here (audit --log counts them in their logged boxes).")
        return " ".join(notes) or None

    # -- reports --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The report as ``diff-rules --format json`` gives it (README, "diff-rules")."""
        return {
            "old": self.old.stamp, "new": self.new.stamp, "pack": self.new.pack or self.old.pack or None,
            "candidates": {"rows_read": self.old_counts.rows, "superseded": self.old_counts.superseded,
                           "re_screened": self.candidates, "changed": len(self.changes),
                           "unreadable": len(self.unreadable), "same_box_other_primary": self.other_primary,
                           "erased": len(self.erased)},
            "changes": [c.to_dict() for c in self.changes],
            "unreadable": [u.to_dict() for u in self.unreadable],
            "erased": [e.to_dict() for e in self.erased],
            "transitions": [{"from": was, "to": now, "candidates": n}
                            for (was, now), n in self._ordered_transitions()],
            "counts": [c.to_dict() for c in self.box_changes()],
            "arithmetic_problems": self.arithmetic(),
        }

    def _ordered_transitions(self) -> list[tuple[tuple[str, str], int]]:
        order = {box: i for i, box in enumerate([*_boxes(self.new), *_boxes(self.old), ERROR_BOX])}
        return sorted(self.transitions.items(), key=lambda kv: (order.get(kv[0][0], 99), order.get(kv[0][1], 99)))

    CSV_HEADER = ("candidate_id", "site", "position", "old_decision", "old_category", "old_subcategory",
                  "old_primary_criterion", "new_decision", "new_category", "new_subcategory", "new_primary_criterion",
                  "criteria_changed", "decided_old", "decided_new")

    def csv(self, *, formula_guard: bool = True) -> str:
        """One row per changed candidate (:attr:`CSV_HEADER`). ``criteria_changed`` lists each criterion
        whose status differs as ``ID old>new`` (``none``: not in that set), separated by ``; ``."""
        out = [csv_line(list(self.CSV_HEADER), formula_guard=formula_guard)]
        for c in self.changes:
            moved = "; ".join(f"{k.id} {k.old or 'none'}>{k.new or 'none'}" for k in c.criteria)
            out.append(csv_line([c.candidate_id, c.site or "", c.position, *(_cells(c.old)), *(_cells(c.new)), moved,
                                 c.old.primary_criterion or "", c.new.primary_criterion or ""],
                                formula_guard=formula_guard))
        return "".join(out)

    def text(self, lang: str = DEFAULT_LANG) -> str:
        """The report for a coordinator, in ``lang`` (box labels and titles from the sets)."""
        def say(key: str, **values: Any) -> str:
            return message(key, lang, **values)

        def label(box: str, rs: Ruleset | None = None) -> str:
            """A box's label in the set ``rs`` (the new set's, else the old set's, by default)."""
            if box == ERROR_BOX:
                return say("diff_error_box")
            part = box.split(".")[-1]
            if rs is None:
                rs = self.new if part in self.new.consort.get("labels", {}) else self.old
            return rs.label(part, lang)

        def title(cid: str) -> str:
            crit = self.new.criteria.get(cid) or self.old.criteria.get(cid)
            return clip(crit.title_in(lang), 44) if crit is not None else ""

        def outcome(o: Outcome, rs: Ruleset) -> str:
            if o.decision == "error":
                return label(ERROR_BOX)
            return f"{message(o.decision, lang)} — {label(o.box, rs)}" + (f" [{o.primary_criterion}]"
                                                                          if o.primary_criterion else "")

        def status(value: str | None, rs: Ruleset) -> str:
            return status_word(value, lang) if value is not None else say("diff_not_in_set", name=rs.name)

        names = [f"{rs.name} {rs.version}" for rs in (self.old, self.new)]
        if names[0] == names[1]:  # a draft of the same name and version: tell them apart by their sha256
            names = [f"{name} (sha256 {rs.sha256[:12]}…)" for name, rs in zip(names, (self.old, self.new))]
        out = [say("diff_title", old=names[0], new=names[1], pack=self.new.pack or self.old.pack or "-")]
        out.append(say("diff_read", n=self.candidates, source=self.source or "-", rows=self.old_counts.rows,
                       superseded=self.old_counts.superseded, errors=len(self.unreadable)))
        if self.erased:
            out.append(say("diff_erased", n=len(self.erased)))
        out.append("")
        out.append(say("diff_changed", n=len(self.changes)))
        for c in self.changes:
            who = c.candidate_id + (f" ({c.site})" if c.site else "")
            out += [f"  {who}", f"      {outcome(c.old, self.old)}", f"    → {outcome(c.new, self.new)}"]
            shown = set()
            for k in c.criteria:
                marks = [say("diff_decided_old")] if k.decided_old else []
                marks += [say("diff_decided_new")] if k.decided_new else []
                out.append(f"      {k.id:<4} {pad(title(k.id), 44)} {pad(status(k.old, self.old), 8)} → "
                           f"{pad(status(k.new, self.new), 8)}" + (f" ({', '.join(marks)})" if marks else ""))
                shown.add(k.id)
            for which, primary, key in (("old", c.old.primary_criterion, "diff_old_decided_by"),
                                        ("new", c.new.primary_criterion, "diff_new_decided_by")):
                if primary and primary not in shown:
                    out.append("      " + say(key, id=primary, title=title(primary)))
        if self.other_primary:
            out.append("  " + say("diff_other_primary", n=self.other_primary))
        if self.unreadable:
            out.append("")
            out.append(say("diff_unreadable", n=len(self.unreadable)))
            for u in self.unreadable:
                out.append(f"  {u.error}")
        out.append("")
        out.append(say("diff_transitions"))
        stayed = 0
        for (was, now), n in self._ordered_transitions():
            if was == now:
                stayed += n
                continue
            out.append(f"  {pad(clip(label(was), 44), 44)} → {pad(clip(label(now), 44), 44)} {n:>6}")
        out.append("  " + say("diff_stayed", n=stayed))
        out.append("")
        out.append(pad(say("diff_counts"), 58) + f"{'old':>6} {'new':>6} {'delta':>6} {'in':>6} {'out':>6}")
        labels = {"assessed": say("audit_assessed"), "excluded": say("audit_excluded"), "errors": say("audit_errors")}
        for change in self.box_changes():
            depth = self._depth(change.box)
            shown_label = labels.get(change.box) or label(change.box)
            out.append(" " * depth + pad(clip(shown_label, 56 - depth), 58 - depth) +
                       f"{change.old:>6} {change.new:>6} {_signed(change.delta):>6} {change.moved_in:>6} {change.moved_out:>6}"
                       + ("" if change.adds_up else "   <--"))
        problems = self.arithmetic()
        out.append("")
        out.append(say("audit_arithmetic") + (say("diff_adds_up") if not problems else "; ".join(problems)))
        if lang != DEFAULT_LANG:
            out += ["", "※ " + (self.new.translations.get(lang) or message("draft", lang))]
        return "\n".join(visible(line) for line in out) + "\n"


def _signed(n: int) -> str:
    return f"{n:+d}" if n else "0"


def _cells(o: Outcome) -> list[str]:
    return [o.decision, o.category, o.subcategory or "", o.primary_criterion or ""]


def _criteria_changes(old_row: dict[str, Any], new_row: dict[str, Any], old: Ruleset, new: Ruleset,
                      old_primary: str | None, new_primary: str | None) -> list[CriterionChange]:
    """The criteria whose status differs between the two rows, in the new set's precedence (then the
    old set's own criteria)."""
    ids = list(new.precedence) + [cid for cid in old.precedence if cid not in new.criteria]
    before, after = old_row.get("criteria") or {}, new_row.get("criteria") or {}
    out = []
    for cid in ids:
        was, now = before.get(cid) or {}, after.get(cid) or {}
        if was.get("status") != now.get("status"):
            out.append(CriterionChange(cid, was.get("status"), now.get("status"), was.get("reason"), now.get("reason"),
                                       cid == old_primary, cid == new_primary))
    return out


class _Seen(NamedTuple):
    """What is kept of a candidate: its boxes under each set, and whether its primary criterion changed."""

    old_box: str
    new_box: str
    other_primary: bool


def compare(items: Iterable[Item | Given | Erased], old: Ruleset, new: Ruleset, *, lang: str = DEFAULT_LANG,
            source: str = "", old_evaluator: Evaluator | None = None,
            new_evaluator: Evaluator | None = None) -> AmendmentImpact:
    """Screen every item under ``old`` and ``new`` and compare (see the module docstring).

    Each candidate (site, candidate_id) counts once, by its last item, exactly as ``audit`` counts
    rows (:func:`screening.audit.count`).

    :raises IncomparableRulesets: the sets' CONSORT boxes differ (different packs).
    :raises InputFormatError: the input cannot be read (decision rows without their records).
    """
    check_comparable(old, new)
    screen_old = Screener(old, evaluator=old_evaluator, lang=lang)
    screen_new = Screener(new, evaluator=new_evaluator, lang=lang)
    counting = (_Counting(old), _Counting(new))
    latest: dict[tuple[str, str], _Seen] = {}
    changes: dict[tuple[str, str], Change] = {}
    unreadable: dict[tuple[str, str], Unreadable] = {}
    loose: Counter[tuple[str, str]] = Counter()  # error rows with no readable id: each its own candidate
    loose_unreadable: list[Unreadable] = []
    sites: dict[str, str] = {}
    shared: dict[_Seen, _Seen] = {}
    other_primary = 0
    erased: list[Erased] = []
    try:
        for item in items:
            if isinstance(item, Erased):  # nothing to screen: listed apart, in no count
                erased.append(item)
                continue
            if isinstance(item, Given):
                old_row = _error_copy(item.row, old)
                new_row = _error_copy(item.row, new)
                position = item.position
            else:
                old_row, new_row = screen_old.item(item), screen_new.item(item)
                position = item.position
            counting[0].add(old_row)
            counting[1].add(new_row)
            before, after = _outcome(old_row), _outcome(new_row)
            seen = _Seen(before.box, after.box, before.box == after.box and before.decision == after.decision
                         and before.primary_criterion != after.primary_criterion)
            seen = shared.setdefault(seen, seen)  # a few distinct values, shared by every candidate
            change = None
            if (before.decision, before.category, before.subcategory) != (after.decision, after.category,
                                                                          after.subcategory):
                change = Change(old_row["candidate_id"], old_row.get("site"), position, before, after,
                                _criteria_changes(old_row, new_row, old, new, before.primary_criterion,
                                                  after.primary_criterion))
            bad = None
            if old_row["decision"] == "error" or new_row["decision"] == "error":
                row = old_row if old_row["decision"] == "error" else new_row
                bad = Unreadable(row["candidate_id"], row.get("site"), position, str(row.get("error", "")),
                                 list(row.get("error_fields") or []))
                if old_row["decision"] == "error" and new_row["decision"] == "error":
                    change = None  # the same unreadable record under both: reported once, not a change
            cid = old_row.get("candidate_id")
            if not (isinstance(cid, str) and DuplicateCheck.counts(old_row)):
                loose[(seen.old_box, seen.new_box)] += 1
                if bad is not None:
                    loose_unreadable.append(bad)
                continue
            site = old_row.get("site") or ""
            key = (sites.setdefault(site, site), cid)
            previous = latest.pop(key, None)
            if previous is None and site and before.decision != "error":  # an error row that lost its site, now fixed
                orphan = latest.get(("", cid))
                if orphan is not None and orphan.old_box == ERROR_BOX:
                    previous = latest.pop(("", cid))
                    changes.pop(("", cid), None)
                    unreadable.pop(("", cid), None)
            if previous is not None:
                if previous.other_primary:
                    other_primary -= 1
                changes.pop(key, None)
                unreadable.pop(key, None)
            latest[key] = seen
            other_primary += seen.other_primary
            if change is not None:
                changes[key] = change
            if bad is not None:
                unreadable[key] = bad
        old_counts, new_counts = counting[0].finish(), counting[1].finish()
    finally:
        for side in counting:
            side.stop()
    transitions: Counter[tuple[str, str]] = Counter((s.old_box, s.new_box) for s in latest.values())
    transitions.update(loose)
    return AmendmentImpact(old, new, old_counts, new_counts, list(changes.values()),
                           list(unreadable.values()) + loose_unreadable, transitions, other_primary,
                           getattr(items, "unread", None), source, erased)


def _error_copy(row: dict[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """A given error row, stamped with ``ruleset`` (it is the same error under either set)."""
    return error_row(candidate_id=row["candidate_id"], site=_text(row.get("site")), message=str(row.get("error", "")),
                     fields=[str(f) for f in row.get("error_fields") or []], ruleset=ruleset)


__all__ = ["AmendmentImpact", "BoxChange", "Change", "CriterionChange", "Erased", "Given", "Outcome", "Unreadable",
           "check_comparable", "compare", "from_decision_row", "log_items", "record_items"]
