"""The pipeline: records -> facts -> engine -> decisions. One row per input record, in input order.

Example::

    from screening import load_ruleset, screen_one
    row = screen_one({"candidate_id": "A1", "screening_start": "2023-03-01"}, load_ruleset())
    row["decision"], row["ask_next"][:1]      # ('undetermined', ['birth_date'])

``screen_items`` streams: it holds one record at a time. A record that cannot be read becomes an
``error`` row naming its position and field; the batch goes on.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable, Iterator, Mapping
from hashlib import blake2b as _blake2b
from typing import Any, Protocol
from zlib import crc32 as _crc32

from pydantic import BaseModel

from .decision import Decider, error_row
from .errors import CandidateRecordError, FieldProblem
from .facts import derive
from .i18n import message
from .io import Item
from .protocol import Ruleset
from .record import import_error, parse_record


class Evaluator(Protocol):
    """Which rules (numbers into ``ruleset.flat_rules``) apply to a fact dict."""

    def fired(self, facts: dict[str, Any]) -> list[int]: ...


class Screener:
    """Screens records against one ruleset. Cheap to call per record; build once per process.

    :param evaluator: defaults to the process's durable_rules engine for this ruleset; tests and the
        benchmark may pass :class:`screening.conditions.PythonEvaluator` or a fake.
    :param include_record: add the validated input record to each decision row.
    :param compare_with: also screen under this other criteria set; when the decision or category
        differs, or the subcategory (the Figure 1 box), the row says so in ``criteria_set_check``
        (criteria.md §1.7: never choose silently).
    :param lang: the language of the rows' reasons and warnings (``en``, or one of the set's translations);
        keys, statuses and field paths stay English.
    """

    def __init__(self, ruleset: Ruleset, *, evaluator: Evaluator | None = None, include_record: bool = False,
                 compare_with: Ruleset | None = None, lang: str = "en") -> None:
        if evaluator is None:
            from .engine import shared_evaluator
            evaluator = shared_evaluator(ruleset)
        self.ruleset = ruleset
        self.evaluator = evaluator
        self.decider = Decider(ruleset, lang)
        self.include_record = include_record
        self.other = Screener(compare_with) if compare_with is not None else None

    def record(self, record: Any, *, position: str | None = None) -> dict[str, Any]:
        """The decision row for a validated record.

        :raises CandidateRecordError: the record's dates contradict each other.
        """
        derived = derive(record, self.ruleset, position=position)
        fired = self.evaluator.fired(derived.facts)
        row = self.decider.decide(fired, derived, candidate_id=record.candidate_id, site=getattr(record, "site", None))
        if self.other is not None:
            check = self.other.check(record, row, position)
            if check is not None:
                row["criteria_set_check"] = check
        if self.include_record:
            row["record"] = record.model_dump(mode="json", exclude_none=True)
        return row

    def check(self, record: Any, row: dict[str, Any], position: str | None) -> dict[str, Any] | None:
        """How this screener's decision differs from ``row`` (made under another set), or None.

        A record read with another pack's model is read again with this set's own (its fields may
        differ); one it cannot read is an ``error`` in the check, never a crash."""
        try:
            record = self.own(record, position)
            mine = self.record(record, position=position)
        except CandidateRecordError as exc:
            return {"set": self.ruleset.name, "version": self.ruleset.version, "decision": "error", "error": exc.describe()}
        box = ("decision", "category", "subcategory")
        if all(mine[k] == row[k] for k in box):
            return None
        differs = [cid for cid, result in row["criteria"].items()
                   if mine["criteria"].get(cid, {}).get("status") != result["status"]]
        return {"set": self.ruleset.name, "version": self.ruleset.version, "decision": mine["decision"],
                "category": mine["category"], "subcategory": mine["subcategory"],
                "primary_criterion": mine["primary_criterion"], "differs_on": differs}

    def own(self, record: Any, position: str | None) -> Any:
        """``record`` as this set's record model holds it (validated again if another pack's model made it).

        :raises CandidateRecordError: the record is not a valid record of this set's pack.
        """
        model = self.ruleset.record.model
        if type(record) is model:
            return record
        return parse_record(record.model_dump_json(exclude_unset=True), model, position=position,
                            parameters=self.ruleset.parameters)

    def item(self, item: Item) -> dict[str, Any]:
        """The row for one input item: a decision, or an error row. Never raises for bad input."""
        try:
            if item.error is not None:
                raise item.error
            assert item.text is not None
            imported = import_error(item.text)
            if imported is not None:  # an importer's error line (FHIR): the bundle it could not import
                raise CandidateRecordError([FieldProblem("", imported)], position=item.position)
            record = parse_record(item.text, self.ruleset.record.model, position=item.position,
                                  parameters=self.ruleset.parameters)
            return self.record(record, position=item.position)
        except CandidateRecordError as exc:
            return self.error(exc, item.position)
        except (ValueError, OverflowError, RecursionError) as exc:  # a backstop: one record, never the batch
            problem = FieldProblem("", f"could not be screened ({type(exc).__name__}); check its dates and nesting")
            return self.error(CandidateRecordError([problem], position=item.position), item.position)

    def error(self, exc: CandidateRecordError, position: str) -> dict[str, Any]:
        return error_row(candidate_id=exc.candidate_id or position, site=exc.site,
                         message=exc.describe(), fields=exc.fields, ruleset=self.ruleset)


def screen_one(record: BaseModel | dict[str, Any] | str, ruleset: Ruleset, *,
               evaluator: Evaluator | None = None, lang: str = "en") -> dict[str, Any]:
    """Screen one record (a model, a dict or JSON text). A bad record gives an ``error`` row."""
    screener = Screener(ruleset, evaluator=evaluator, lang=lang)
    if isinstance(record, BaseModel):
        try:
            return screener.record(screener.own(record, "record 1"), position="record 1")
        except CandidateRecordError as exc:
            return screener.error(exc, "record 1")
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
    return screener.item(Item("record 1", text))


class DuplicateCheck:
    """Warns on a second record for the same (site, candidate_id) in one batch, and on a *near*
    duplicate: a record whose site and id match an earlier record's only once surrounding whitespace
    and case are ignored (``" ab-1 "`` at ``"site one"`` after ``"AB-1"`` at ``"Site One"``) — a
    typing difference, or two candidates; a person must look. Near duplicates get their own warning.

    Memory stays compact: the table keeps no ids, only an 8-byte digest (blake2b) of the *normalised*
    pair (each part stripped and case-folded) and one 8-byte word per slot, in an open-addressing
    table at most half full — 32 to 64 bytes for each spelling of a candidate (32 to 64 MB for a
    million candidates). The word holds where the spelling was first seen (2 bits of kind, 42 of number: see
    :meth:`encode`) and a 20-bit tag of the exact spelling (0 for an already normalised one). Every
    spelling takes its own slot, so a repeat of any spelling is an exact duplicate (naming where that
    spelling was first seen) and a new spelling a near one (naming where the candidate was first
    seen). Two candidates share a digest with probability about n²/2⁶⁵ (3 × 10⁻⁸ at a million); two
    spellings of one candidate that are not normalised share a tag with probability about 2⁻²⁰, and are
    then warned as an exact duplicate instead of a near one.
    """

    _KINDS = ("line ", "index ", "record ")
    _KIND_IDS = {kind[:-1]: i for i, kind in enumerate(_KINDS, start=1)}
    _NUMBER_BITS = 42
    _NUMBER = (1 << _NUMBER_BITS) - 1
    _TAG_SHIFT = _NUMBER_BITS + 2
    _POSITION = (1 << _TAG_SHIFT) - 1
    _TAGS = (1 << (64 - _TAG_SHIFT)) - 1

    def __init__(self, lang: str = "en") -> None:
        #: the language of the warnings it adds (:func:`add_duplicate_warning`)
        self.lang = lang
        self._size = 1024
        self._keys = array("Q", bytes(8 * self._size))
        self._firsts = array("Q", bytes(8 * self._size))
        self._used = 0
        self._other: dict[int, str] = {}  # positions not written "<kind> <number>"

    def _encode(self, position: str) -> int:
        head, _, number = position.rpartition(" ")
        kind = self._KIND_IDS.get(head)
        if kind is not None and number.isdigit() and number.isascii() and len(number) <= 13 \
                and (number[0] != "0" or number == "0") and int(number) <= self._NUMBER:
            return (kind << self._NUMBER_BITS) | int(number)
        code = len(self._other) + 1
        self._other[code] = position
        return code

    def _decode(self, code: int) -> str:
        kind = code >> self._NUMBER_BITS
        if kind == 0:
            return self._other[code]
        return self._KINDS[kind - 1] + str(code & self._NUMBER)

    def _grow(self) -> None:
        old_keys, old_firsts = self._keys, self._firsts
        self._size *= 2
        keys = self._keys = array("Q", bytes(8 * self._size))
        firsts = self._firsts = array("Q", bytes(8 * self._size))
        mask = self._size - 1
        for key, first in zip(old_keys, old_firsts):
            if key:
                slot = key & mask
                while keys[slot]:
                    slot = (slot + 1) & mask
                keys[slot] = key
                firsts[slot] = first

    @staticmethod
    def digest(site: str | None, candidate_id: Any) -> int:
        """The 8-byte digest of a (site, candidate_id) pair as spelled (never 0)."""
        key = f"{site or ''}\0{candidate_id}".encode()
        return int.from_bytes(_blake2b(key, digest_size=8).digest(), "little") or 1

    @classmethod
    def key(cls, site: str | None, candidate_id: Any) -> tuple[int, int]:
        """The candidate's table key (the :meth:`digest` of the pair with each part stripped and
        case-folded) and the tag of its exact spelling: 0 when that is already normalised, else 1 to
        2²⁰ (from a CRC-32 of the spelling: deterministic, and cheap next to a second digest)."""
        site_ = site or ""
        cid = candidate_id if type(candidate_id) is str else str(candidate_id)
        exact = f"{site_}\0{cid}"
        norm = f"{site_.strip()}\0{cid.strip()}".casefold()
        key = int.from_bytes(_blake2b(norm.encode(), digest_size=8).digest(), "little") or 1
        if norm == exact:
            return key, 0
        return key, _crc32(exact.encode()) % cls._TAGS + 1

    @classmethod
    def counts(cls, row: Mapping[str, Any]) -> bool:
        """Whether a row takes part: an error row whose id is only its position (its message then
        starts ``line 7:``; a record's own id, even ``line 7``, reads ``line 2, candidate line 7:``) does not."""
        if row.get("decision") != "error":
            return True
        cid = str(row.get("candidate_id", ""))
        return not (cid.startswith(cls._KINDS) and str(row.get("error", "")).startswith(cid + ":"))

    @classmethod
    def row_key(cls, row: Mapping[str, Any]) -> tuple[int, int]:
        """The row's :meth:`key`, or (0, 0) for a row that takes no part (see :meth:`counts`)."""
        return cls.key(row.get("site"), row.get("candidate_id")) if cls.counts(row) else (0, 0)

    @classmethod
    def entry(cls, tag: int, position_code: int) -> int:
        """The table word for a spelling's tag (see :meth:`key`) and where it is (see :meth:`encode`)."""
        return (tag << cls._TAG_SHIFT) | position_code

    @classmethod
    def position_code(cls, entry: int) -> int:
        """The position part of a table word (0: not known yet)."""
        return entry & cls._POSITION

    def seen(self, key: int, entry: int) -> tuple[int, bool] | None:
        """Where this candidate (a :meth:`key`) was first seen in the batch, as (encoded position, whether
        the spelling is the same), or None if it is new; a new spelling is remembered (``entry``: see
        :meth:`entry`)."""
        keys, mask = self._keys, self._size - 1
        slot = key & mask
        near = 0
        if keys[slot]:  # taken: this candidate, or another one's probe sequence
            firsts, tag, shift, pos = self._firsts, entry >> self._TAG_SHIFT, self._TAG_SHIFT, self._POSITION
            while keys[slot]:
                if keys[slot] == key:
                    word = firsts[slot]
                    if word >> shift == tag:
                        return word & pos, True
                    if not near or word & pos < near:
                        near = word & pos
                slot = (slot + 1) & mask
        keys[slot] = key
        self._firsts[slot] = entry
        self._used += 1
        if 2 * self._used > self._size:
            self._grow()
        return (near, False) if near else None

    @classmethod
    def line_code(cls, line: int) -> int:
        """The encoded position ``line N`` (N below 2⁴²)."""
        return (cls._KIND_IDS["line"] << cls._NUMBER_BITS) | (line & cls._NUMBER)

    def position(self, code: int) -> str:
        """The position an encoded position stands for."""
        return self._decode(code)

    def encode(self, position: str) -> int:
        """A position (``line 17``, ``index 3``, …) as a number the table can hold (never 0)."""
        return self._encode(position)

    def __call__(self, row: dict[str, Any], position: str) -> dict[str, Any]:
        key, tag = self.row_key(row)
        if key:
            first = self.seen(key, (tag << self._TAG_SHIFT) | self._encode(position))
            if first is not None:
                add_duplicate_warning(row, self._decode(first[0]), near=not first[1], lang=self.lang)
        return row


def add_duplicate_warning(row: dict[str, Any], first: str, *, near: bool = False, lang: str = "en") -> None:
    """The warning on a second record for a candidate in one batch, placed before the stamp. ``near``:
    the site and id match the earlier record's only once case and surrounding spaces are ignored."""
    warnings = row.setdefault("warnings", [])
    values = {"cid": row.get("candidate_id"), "site": row.get("site") or message("duplicate_no_site", lang),
              "first": first or message("duplicate_earlier_row", lang)}
    warnings.append(message("duplicate_near" if near else "duplicate_second", lang, **values))
    if "ruleset" in row:  # keep the field order stable: warnings before the stamp
        for key_ in [k for k in row if k in ("ruleset", "parameters", "criteria_set_check", "record")]:
            row[key_] = row.pop(key_)


def screen_items(items: Iterable[Item], ruleset: Ruleset, *, evaluator: Evaluator | None = None,
                 include_record: bool = False, check_duplicates: bool = True,
                 compare_with: Ruleset | None = None, lang: str = "en",
                 duplicates: DuplicateCheck | None = None) -> Iterator[dict[str, Any]]:
    """Screen a stream of input items; yields exactly one row per item, in order.

    ``duplicates``: the duplicate check to go on with (one that has seen the records before these:
    a resumed batch); by default a new one, when ``check_duplicates``."""
    screener = Screener(ruleset, evaluator=evaluator, include_record=include_record, compare_with=compare_with,
                        lang=lang)
    dupes = duplicates if duplicates is not None else DuplicateCheck(lang) if check_duplicates else None
    for item in items:
        row = screener.item(item)
        if dupes is not None:
            dupes(row, item.position)
        yield row
