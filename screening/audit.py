"""Decision rows -> CONSORT enrollment counts, per-criterion counts, arithmetic checks, expectations.

The counts are derived from the rows alone (no counters kept elsewhere), so the audit trail and the
numbers cannot disagree. Zero counts are shown for every category and subcategory of the ruleset.

**Each candidate counts once, by its last row in input order.** A candidate is its (site,
candidate_id), matched exactly: no case folding, no trimming of spaces (``screen`` only *warns* about
such near-duplicates); a missing or null site is the same as an empty one, as in screen's duplicate
check (:class:`screening.screen.DuplicateCheck`). A later row for the same candidate — a re-screen,
or a decision after an error row was fixed — *supersedes* the earlier one: its CONSORT box,
primary criterion, per-criterion statuses, "excluded by this only" and criteria-set stamp are taken
back and the later row's are counted instead. Error rows whose candidate_id is only their position
(``line 7``, ``index 3``, ``record 12``: the record's id could not be read) are never merged. An
error row with an id but no site (the site itself could not be read) is superseded by a later
decision for the same id at any site: the record was fixed, site included. The
report says how many rows were read and how many were superseded. The criteria-set check applies to
the rows counted: a row made with another set and superseded by a re-screen is not flagged; a
re-screen made with another set is.

Counting streams: no row is kept. Per candidate only a reference to its current contribution is
held (identical contributions are shared), about 150–250 bytes per distinct candidate.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from .errors import InputFormatError, RuleDefinitionError, did_you_mean
from .i18n import DEFAULT_LANG, message
from .protocol import STATUSES, Ruleset, available_packs, read_yaml_file
from .screen import DuplicateCheck
from .text import clip, pad, visible


@dataclass
class ConsortCounts:
    """What ``nlc-screen audit`` reports.

    ``rows`` is every row read; ``superseded`` those replaced by a later row for the same candidate.
    The other counts are over the candidates, each by its last row.
    """

    ruleset: Ruleset
    rows: int = 0
    superseded: int = 0
    errors: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    subcategories: Counter[str] = field(default_factory=Counter)
    criteria: dict[str, Counter[str]] = field(default_factory=dict)
    only_reason: Counter[str] = field(default_factory=Counter)
    primary: Counter[str] = field(default_factory=Counter)
    stamps: Counter[str] = field(default_factory=Counter)
    #: (box — a category, or category.subcategory —, primary criterion) -> candidates
    box_primary: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the criteria each candidate fails, in precedence order -> candidates (attrition is derived from it)
    failing: Counter[tuple[str, ...]] = field(default_factory=Counter)

    @property
    def candidates(self) -> int:
        """Candidates counted: rows read less rows superseded."""
        return self.rows - self.superseded

    @property
    def assessed(self) -> int:
        return self.candidates - self.errors

    @property
    def excluded(self) -> int:
        cons = self.ruleset.consort
        return sum(self.categories[c] for c in cons["categories"]
                   if c not in (cons["eligible"], cons["eligible_pending"], cons["undetermined"]))

    def flat(self) -> dict[str, int]:
        """The counts as one flat mapping (``meeting_exclusion.secondary_cause`` for subcategories)."""
        cons = self.ruleset.consort
        out: dict[str, int] = {"assessed": self.assessed, "excluded": self.excluded}
        for cat in cons["categories"]:
            out[cat] = self.categories[cat]
            for sub in cons["subcategories"].get(cat, []):
                out[f"{cat}.{sub}"] = self.subcategories[f"{cat}.{sub}"]
        out["errors"] = self.errors
        return out

    def arithmetic(self) -> list[str]:
        """Consistency checks; each failing one as a sentence (empty when all hold)."""
        cons = self.ruleset.consort
        problems = []
        counted = self.errors + sum(self.categories.values())
        if counted != self.candidates:
            problems.append(f"rows read ({self.rows}) less rows superseded ({self.superseded}) make "
                            f"{self.candidates} candidates, but {counted} were counted")
        total = sum(self.categories[c] for c in cons["categories"])
        if total != self.assessed:
            problems.append(f"categories add up to {total}, not the {self.assessed} assessed")
        for cat, subs in cons["subcategories"].items():
            parts = sum(self.subcategories[f"{cat}.{s}"] for s in subs)
            if parts != self.categories[cat]:
                problems.append(f"{cat}: subcategories add up to {parts}, not {self.categories[cat]}")
        unknown = set(self.categories) - set(cons["categories"])
        if unknown:
            problems.append(f"rows with categories this ruleset does not know: {sorted(unknown)}")
        if len(self.stamps) > 1:
            problems.append(f"rows come from {len(self.stamps)} criteria sets: {', '.join(sorted(self.stamps))}")
        mine = f"{self.ruleset.name} {self.ruleset.version} {self.ruleset.sha256[:12]}"
        other = sum(n for stamp, n in self.stamps.items() if stamp != mine)
        if other:
            problems.append(f"{other} row(s) were not made with the criteria set counted with ({mine}); "
                            "re-screen them, or pass the set they were made with to --rules")
        if self.rows == 0:
            problems.append("no decision rows in the input")
        return problems

    def excluded_first(self, cid: str) -> int:
        """Excluded candidates whose box ``cid`` decided (their primary criterion); over all criteria
        these add up to Excluded."""
        return sum(self.box_primary[(box, cid)] for box in self._excluding_boxes())

    def excluded_any(self, cid: str) -> int:
        """Candidates failing ``cid``, whatever else they fail (a candidate counts under each criterion it fails)."""
        return sum(n for failed, n in self.failing.items() if cid in failed)

    def pending_first(self, cid: str) -> int:
        """Undetermined candidates whose first open criterion is ``cid`` (the one their decision names)."""
        return self.box_primary[(self.ruleset.consort["undetermined"], cid)]

    def primary_breakdown(self, box: str) -> list[tuple[str, int]]:
        """The candidates of an excluding box (``category`` or ``category.subcategory``) by the criterion
        that excluded them, in precedence order; they add up to the box."""
        return [(cid, self.box_primary[(box, cid)]) for cid in self.ruleset.precedence if self.box_primary[(box, cid)]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleset": self.ruleset.stamp,
            "rows": {"read": self.rows, "superseded": self.superseded, "candidates": self.candidates},
            "counts": self.flat(),
            "criteria": {cid: {s: self.criteria.get(cid, Counter())[s] for s in STATUSES} | {
                "excluded_first": self.excluded_first(cid), "excluded_by_this_only": self.only_reason[cid],
                "excluded_any": self.excluded_any(cid), "pending_first": self.pending_first(cid),
                "primary": self.primary[cid]}
                for cid in self.ruleset.precedence},
            "by_primary_criterion": {box: dict(self.primary_breakdown(box)) for box in self._excluding_boxes()},
            "arithmetic_problems": self.arithmetic(),
        }

    def _excluding_boxes(self) -> list[str]:
        cons = self.ruleset.consort
        out = []
        for cat in cons["categories"]:
            if cat in (cons["eligible"], cons["eligible_pending"], cons["undetermined"]):
                continue
            subs = cons["subcategories"].get(cat, [])
            out += [f"{cat}.{sub}" for sub in subs] if subs else [cat]
        return out


class _Contribution(NamedTuple):
    """What one row adds to the counts: all that is kept of it (shared between identical rows)."""

    stamp: str
    error: bool
    category: str
    subcategory: str | None
    primary: str | None
    statuses: tuple[tuple[str, str], ...]
    only_reason: str | None
    failing: tuple[str, ...] = ()


def _contribution(row: dict[str, Any], ruleset: Ruleset) -> _Contribution:
    stamp = row.get("ruleset") or {}
    stamp_text = f"{stamp.get('name')} {stamp.get('version')} {str(stamp.get('sha256'))[:12]}"
    if row.get("decision") == "error":
        return _Contribution(stamp_text, True, "error", None, None, (), None)
    crits = ruleset.criteria
    statuses = []
    failing = []
    for cid, result in (row.get("criteria") or {}).items():
        status = result.get("status")
        statuses.append((cid, status))
        if cid in crits and crits[cid].fails(status):
            failing.append(cid)
    only = failing[0] if row.get("decision") == "excluded" and len(failing) == 1 else None
    if len(failing) > 1:
        rank = ruleset.rank
        failing.sort(key=lambda cid: rank[cid])
    category = str(row.get("category"))
    sub = row.get("subcategory")
    return _Contribution(stamp_text, False, category, f"{category}.{sub}" if sub else None,
                         row.get("primary_criterion") or None, tuple(statuses), only, tuple(failing))


def count(rows: Iterable[dict[str, Any]], ruleset: Ruleset) -> ConsortCounts:
    """Count decision rows into CONSORT boxes and per-criterion statuses, each candidate once.

    A candidate's later row supersedes its earlier one (see the module docstring). Streams: keeps
    only each candidate's current contribution, never a row.
    """
    shared: dict[_Contribution, _Contribution] = {}
    tally: dict[_Contribution, int] = {}
    latest: dict[tuple[str, str], _Contribution] = {}
    sites: dict[str, str] = {}
    read = superseded = 0
    for row in rows:
        read += 1
        made = _contribution(row, ruleset)
        made = shared.setdefault(made, made)
        cid = row.get("candidate_id")
        if isinstance(cid, str) and DuplicateCheck.counts(row):
            site = row.get("site") or ""
            key = (sites.setdefault(site, site), cid)
            before = latest.get(key)
            if before is None and site and not made.error:  # an error row that lost its site, now fixed
                orphan = latest.get(("", cid))
                if orphan is not None and orphan.error:
                    before = latest.pop(("", cid))
            if before is not None:
                superseded += 1
                tally[before] -= 1
            latest[key] = made
        tally[made] = tally.get(made, 0) + 1
    counts = ConsortCounts(ruleset, rows=read, superseded=superseded)
    for made, n in tally.items():
        if not n:
            continue
        counts.stamps[made.stamp] += n
        if made.error:
            counts.errors += n
            continue
        counts.categories[made.category] += n
        if made.subcategory:
            counts.subcategories[made.subcategory] += n
        if made.primary:
            counts.primary[made.primary] += n
            counts.box_primary[(made.subcategory or made.category, made.primary)] += n
        for cid, status in made.statuses:
            counts.criteria.setdefault(cid, Counter())[status] += n
        if made.only_reason:
            counts.only_reason[made.only_reason] += n
        if made.failing:
            counts.failing[made.failing] += n
    return counts


_BOM = b"\xef\xbb\xbf"
_JSON_SPACE = " \t\r\n"


def _lines(stream: IO[bytes] | IO[str], name: str) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of a binary or text stream, decoded line by line.

    A line ends at LF, CR LF or CR (a raw CR cannot occur inside a JSON row). A byte order mark is
    stripped from the first line only.
    """
    number = 0
    first = True
    while True:
        try:
            raw = stream.readline()
        except UnicodeDecodeError:  # a text stream decodes ahead of the lines it hands out
            raise InputFormatError(f"{name} line {number + 1} or after: not valid UTF-8") from None
        if not raw:
            return
        if isinstance(raw, bytes):
            if first and raw.startswith(_BOM):
                raw = raw[3:]
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            for part in raw.split(b"\r") if b"\r" in raw else (raw,):
                number += 1
                try:
                    yield number, part.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputFormatError(f"{name} line {number}: not valid UTF-8") from None
        else:
            text = raw.removeprefix("\ufeff") if first else raw
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text
            for part_text in text.split("\r") if "\r" in text else (text,):
                number += 1
                yield number, part_text
        first = False


def read_rows(stream: IO[bytes] | IO[str], *, name: str = "input") -> Iterator[dict[str, Any]]:
    """Decision rows from JSON Lines (streamed) or a JSON array (read whole).

    ``stream`` is binary (each line decoded as UTF-8, a byte order mark stripped from the first) or
    text (already decoded).

    :raises InputFormatError: naming the line (or index) that is not valid UTF-8, not JSON or not a
        decision row — never echoing its content.
    """
    lines = _lines(stream, name)
    for number, line in lines:
        text = line.strip(_JSON_SPACE)
        if not text:
            continue
        if text.startswith("["):
            yield from _array(number, line, lines, name)
            return
        try:
            row = json.loads(text)
        except (ValueError, RecursionError):
            raise InputFormatError(f"{name} line {number}: not a JSON decision row") from None
        yield _check_row(row, f"{name} line {number}")


def _array(number: int, first: str, lines: Iterator[tuple[int, str]], name: str) -> Iterator[dict[str, Any]]:
    """The rows of a JSON array starting at line ``number`` (the rest of the input, read whole)."""
    text = "\n".join([first, *(line for _, line in lines)])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"{name} line {number + exc.lineno - 1} column {exc.colno}: "
                               f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputFormatError(f"{name} line {number}: a JSON array nested too deeply to read") from None
    except ValueError as exc:
        what = "a number too long to read" if "digits" in str(exc) else "a value that cannot be read"
        raise InputFormatError(f"{name} line {number}: not valid JSON: the array holds {what}") from None
    del text
    for index, row in enumerate(data if isinstance(data, list) else [data]):
        yield _check_row(row, f"{name} index {index}")


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("decision"), str) \
            or not isinstance(row.get("category"), str) or not isinstance(row.get("candidate_id"), str):
        raise InputFormatError(f"{where}: not a decision row (needs 'candidate_id', 'decision' and 'category'); "
                               "did you pass candidate records instead of `nlc-screen screen` output?")
    if not isinstance(row.get("site"), (str, type(None))):
        raise InputFormatError(f"{where}: 'site' must be text or null")
    stamp = row.get("ruleset")
    if stamp is not None and not (isinstance(stamp, dict) and all(isinstance(stamp.get(k), str)
                                                                   for k in ("name", "version", "sha256"))):
        raise InputFormatError(f"{where}: 'ruleset' must be {{name, version, sha256}}")
    criteria = row.get("criteria", {})
    if not isinstance(criteria, dict) or not all(isinstance(v, dict) and isinstance(v.get("status"), str)
                                                 for v in criteria.values()):
        raise InputFormatError(f"{where}: 'criteria' must map criterion ids to {{status, reason}}")
    return row


_EXPECTATION_KEYS = ("name", "title", "counts")


def _read_expectation_yaml(path: Path, display: str) -> Any:
    """An expectation file, read under the rules files' limits (regular file, size, no aliases, no
    duplicate keys): :func:`screening.protocol.read_yaml_file`."""
    return read_yaml_file(path, display=display)


def _find_expectation(spec: str, ruleset: Ruleset | None) -> Path:
    """The file of the expected flow named ``spec`` (``NAME`` or ``PACK/NAME``): in the
    ``expectations/`` folder of the pack of ``ruleset``, else of the one pack that has it."""
    packs = {pack.name: pack.path for pack in available_packs()}
    pack_name, _, name = spec.rpartition("/")
    if pack_name:
        folders = [packs[pack_name]] if pack_name in packs else []
    else:
        own = ruleset.pack_dir if ruleset is not None else None
        if own is not None and (own / "expectations" / f"{name}.yaml").is_file():
            return own / "expectations" / f"{name}.yaml"
        folders = [folder for folder in packs.values() if (folder / "expectations" / f"{name}.yaml").is_file()]
    found = [folder / "expectations" / f"{name}.yaml" for folder in folders]
    found = [path for path in found if path.is_file()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        where = ", ".join(f"{pack}/{name}" for pack, folder in packs.items() if folder in folders)
        raise RuleDefinitionError(f"expected flow {name!r} is in more than one pack: {where}; name it as PACK/NAME")
    seen = [ruleset.pack_dir] if ruleset is not None and ruleset.pack_dir is not None else []
    seen += [folder for folder in packs.values() if folder not in seen]
    names = sorted({p.stem for folder in seen for p in (folder / "expectations").glob("*.yaml")})
    raise RuleDefinitionError(f"no expected flow named {spec!r}{did_you_mean(spec, names)}; "
                              f"available: {', '.join(names) or 'none'}")


def load_expectation(spec: str, ruleset: Ruleset | None = None) -> dict[str, Any]:
    """An expected flow (``figure1``, ``PACK/NAME``, or a YAML path) with ``name``, ``title`` and ``counts``.

    A name is looked up in the ``expectations/`` folder of the pack of ``ruleset`` first, then in
    every shipped pack (it must then be in exactly one).

    Validated here, before any row is counted: only the keys ``name``, ``title`` (text) and
    ``counts``; every count a whole number ≥ 0; with ``ruleset``, every box one that ruleset has.

    :raises RuleDefinitionError: naming the file and the field (``counts.<box>``), never the value.
    """
    path = Path(spec) if Path(spec).suffix else _find_expectation(spec, ruleset)
    display = str(path)
    data = _read_expectation_yaml(path, display)
    if not isinstance(data, dict):
        raise RuleDefinitionError("must be a mapping with a 'counts' mapping", file=display)
    for key in data:
        if key not in _EXPECTATION_KEYS:
            shown = str(key)[:40]
            raise RuleDefinitionError(f"unknown field{did_you_mean(shown, _EXPECTATION_KEYS)}",
                                      file=display, field=shown)
    for key in ("name", "title"):
        if key in data and not isinstance(data[key], str):
            raise RuleDefinitionError("must be text", file=display, field=key)
    if not isinstance(data.get("counts"), dict):
        raise RuleDefinitionError("must be a mapping of box names to counts", file=display, field="counts")
    boxes = ConsortCounts(ruleset).flat() if ruleset is not None else None
    for box, want in data["counts"].items():
        shown = f"counts.{str(box)[:60]}"
        if boxes is not None and box not in boxes:
            raise RuleDefinitionError(f"unknown box{did_you_mean(str(box), boxes)}; boxes of "
                                      f"{ruleset.name if ruleset else ''}: {', '.join(boxes)}",
                                      file=display, field=shown)
        if type(want) is not int or want < 0:
            raise RuleDefinitionError("must be a whole number ≥ 0", file=display, field=shown)
    return data


def compare(counts: ConsortCounts, expected: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(box, expected, actual) for every box that differs; unknown box names count as differences."""
    actual = counts.flat()
    diffs = []
    for box, want in expected["counts"].items():
        have = actual.get(box)
        if have is None:
            raise RuleDefinitionError(f"unknown box {box!r}{did_you_mean(box, actual)}",
                                      file=str(expected.get("name")), field="counts")
        if have != want:
            diffs.append((box, int(want), have))
    return diffs


@dataclass
class AuditResult:
    """An audit: the counts, the expected flow compared with (if any) and the differences."""

    counts: ConsortCounts
    expected: dict[str, Any] | None = None
    diffs: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a count differs from the expected flow or the arithmetic fails, else 0."""
        return 1 if self.diffs or self.counts.arithmetic() else 0

    def to_dict(self) -> dict[str, Any]:
        """The report as ``audit --format json`` and ``GET /audit`` give it."""
        report = self.counts.to_dict()
        if self.expected is not None:
            report["expected"] = {"name": self.expected.get("name"), "differences": [
                {"box": b, "expected": w, "actual": h} for b, w, h in self.diffs]}
        return report

    def text(self, lang: str = DEFAULT_LANG) -> str:
        return render(self.counts, self.expected, lang)


def audit_rows(rows: Iterable[dict[str, Any]], *, rules: str | None = None, expect: str | None = None,
               load: Callable[[str], Ruleset] | None = None) -> AuditResult:
    """Count decision rows (a file's, or a screening log's current ones) with the criteria set
    ``rules`` — by default the one stamped on the first row — and compare with ``expect``.

    :param load: loads a criteria set by spec (default :func:`screening.protocol.load_ruleset`).
    :raises RulesetNotFound, RuleDefinitionError, InputFormatError: as the set, expectation or rows say.
    """
    from .protocol import DEFAULT_RULESET, load_ruleset

    stream = iter(rows)
    first = next(stream, None)
    if rules is None:  # the set stamped on the first row
        stamp = (first or {}).get("ruleset")
        rules = f"{stamp['name']}@{stamp['version']}" if isinstance(stamp, dict) and "name" in stamp else DEFAULT_RULESET
    ruleset = (load or load_ruleset)(rules)
    expected = load_expectation(expect, ruleset) if expect else None
    counts = count(itertools.chain([first] if first else [], stream), ruleset)
    return AuditResult(counts, expected, compare(counts, expected) if expected else [])


def current_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each candidate's last row, in the order of those rows (a row with no readable id is its own)."""
    latest: dict[tuple[str, str], int] = {}
    kept: list[dict[str, Any] | None] = []
    for row in rows:
        cid = row.get("candidate_id")
        if isinstance(cid, str) and DuplicateCheck.counts(row):
            key = (row.get("site") or "", cid)
            if key in latest:
                kept[latest[key]] = None
            latest[key] = len(kept)
        kept.append(row)
    return [row for row in kept if row is not None]


def group_value(row: dict[str, Any], field_name: str) -> str:
    """What ``--by FIELD`` groups a row under: the field's value as text (the set's name@version for
    ``ruleset``; ``(none)`` when the row has none)."""
    value = row.get(field_name)
    if field_name == "ruleset" and isinstance(value, dict):
        return f"{value.get('name')}@{value.get('version')}"
    if value is None or value == "":
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass
class Breakdown:
    """An audit broken down by a row field: the whole, and each group's counts (they add up)."""

    field_name: str
    total: ConsortCounts
    groups: dict[str, ConsortCounts]

    @property
    def combined(self) -> bool:
        """Whether the groups add up to a total. Not ``--by ruleset``: each set's rows are counted with
        their own set, and counts of different sets do not add up (``total`` then holds the rows of the
        set counted with, for the rest of the report)."""
        return self.field_name != "ruleset"

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.field_name, "total": self.total.flat() if self.combined else None,
                "groups": {name: counts.flat() for name, counts in self.groups.items()}}

    def text(self, lang: str = DEFAULT_LANG) -> str:
        rs = self.total.ruleset
        names = list(self.groups)
        width = min(24, max([8] + [len(n) for n in names]))
        total = self.combined
        head = pad(message("audit_by", lang, field=self.field_name), 52) + (f"{'total':>8}" if total else "") + \
            "".join(f"  {clip(n, width):>{width}}" for n in names)
        out = [head]
        flat = self.total.flat()
        for box, value in flat.items():
            shown = rs.label(box.split(".")[-1], lang) if box not in ("assessed", "excluded", "errors") else \
                message({"assessed": "audit_assessed", "excluded": "audit_excluded",
                         "errors": "audit_errors"}[box], lang)
            prefix = "  " if "." in box else ""
            out.append(pad(clip(prefix + shown, 50), 52) + (f"{value:>8}" if total else "") +
                       "".join(f"  {self.groups[n].flat().get(box, 0):>{width}}" for n in names))
        return "\n".join(visible(line) for line in out) + "\n"


def breakdown(rows: Iterable[dict[str, Any]], field_name: str, ruleset: Ruleset,
              load: Callable[[str], Ruleset] | None = None) -> Breakdown:
    """Count the candidates' current rows as a whole and by ``field_name``. With ``ruleset`` as the
    field, each group is counted with its own criteria set (loaded by ``load``)."""
    current = current_rows(rows)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in current:
        groups.setdefault(group_value(row, field_name), []).append(row)
    counted = {}
    for name in sorted(groups):
        group_set = ruleset
        if field_name == "ruleset" and name != "(none)" and load is not None:
            group_set = load(name)
        counted[name] = count(groups[name], group_set)
    total = count(current, ruleset) if field_name != "ruleset" else count(
        [r for r in current if group_value(r, "ruleset") == f"{ruleset.name}@{ruleset.version}"], ruleset)
    return Breakdown(field_name, total, counted)


@dataclass
class PendingList:
    """The pending candidates (undetermined, or eligible awaiting consent) by site, with what to ask."""

    ruleset: Ruleset
    awaiting: dict[str, list[dict[str, Any]]]
    undetermined: dict[str, list[dict[str, Any]]]
    open_fields: Counter[str]

    def to_dict(self) -> dict[str, Any]:
        def rows(groups: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
            return {site: [{"candidate_id": r["candidate_id"], "primary_criterion": r.get("primary_criterion"),
                            "ask_next": r.get("ask_next", [])} for r in found] for site, found in groups.items()}
        return {"eligible_awaiting_consent": rows(self.awaiting), "undetermined": rows(self.undetermined),
                "most_often_open": [{"field": f, "candidates": n} for f, n in self.open_fields.most_common()]}

    def text(self, lang: str = DEFAULT_LANG) -> str:
        record = self.ruleset.record
        out: list[str] = []
        for title, groups in ((message("pending_awaiting", lang), self.awaiting),
                              (message("pending_undetermined", lang), self.undetermined)):
            total = sum(len(v) for v in groups.values())
            out.append(f"{title} ({total})")
            for site, found in groups.items():
                out.append(f"  {site} ({len(found)})")
                for row in found:
                    out.append(f"    {row['candidate_id']} ({row.get('primary_criterion')})")
                    for path in row.get("ask_next", [])[:5]:
                        question = record.question(path, lang) or record.question(path) or ""
                        out.append(f"      {question} [{path}]".rstrip())
                    more = len(row.get("ask_next", [])) - 5
                    if more > 0:
                        out.append("      " + message("pending_more", lang, n=more))
            out.append("")
        out.append(message("pending_tally", lang))
        for path, n in self.open_fields.most_common(15):
            out.append(f"  {n:>5}  {path}  {record.question(path, lang) or ''}".rstrip())
        return "\n".join(visible(line) for line in out) + "\n"


def pending(rows: Iterable[dict[str, Any]], ruleset: Ruleset) -> PendingList:
    """Each pending candidate's current row (undetermined, or eligible in a pending box), by site."""
    cons = ruleset.consort
    awaiting: dict[str, list[dict[str, Any]]] = {}
    undetermined: dict[str, list[dict[str, Any]]] = {}
    tally: Counter[str] = Counter()
    for row in current_rows(rows):
        if row.get("decision") == "undetermined":
            target = undetermined
        elif row.get("decision") == "eligible" and row.get("category") != cons["eligible"]:
            target = awaiting
        else:
            continue
        target.setdefault(row.get("site") or "(none)", []).append(row)
        tally.update(row.get("ask_next", []))
    return PendingList(ruleset, dict(sorted(awaiting.items())), dict(sorted(undetermined.items())), tally)


def render(counts: ConsortCounts, expected: dict[str, Any] | None = None, lang: str = DEFAULT_LANG) -> str:
    """The audit as a plain-text report in ``lang``: one line per box, control characters in any label,
    title or stamp escaped visibly (:func:`screening.text.visible`). Box names, criterion ids and the
    numbers are the same in every language."""
    cons = counts.ruleset.consort
    rs = counts.ruleset
    flat = counts.flat()
    want = (expected or {}).get("counts", {})

    def say(key: str, **values: Any) -> str:
        return message(key, lang, **values)

    def line(label: str, box: str, indent: int = 0) -> str:
        value = flat[box]
        text = " " * indent + pad(label, 58 - indent) + f"{value:>6}"
        if box in want:
            text += "   ok" if want[box] == value else "   " + say("audit_differs", want=want[box])
        return text

    def breakdown(box: str, indent: int) -> list[str]:
        """The box's candidates by the criterion that excluded them (when more than one criterion did)."""
        parts = counts.primary_breakdown(box)
        if len(parts) < 2:
            return []
        return [" " * indent + pad(f"· {cid} {clip(rs.criteria[cid].title_in(lang), 38)}", 58 - indent) + f"{n:>6}"
                for cid, n in parts]

    stamps = ", ".join(sorted(counts.stamps)) or say("audit_no_rows")
    out = [say("audit_title", name=rs.name, version=rs.version, stamps=stamps), ""]
    mixed = [p for p in counts.arithmetic() if "criteria set" in p]
    if mixed:  # said first: the counts below mix sets (or use another), so they are not to be reported
        out = [say("audit_refused", problems="; ".join(mixed)), ""] + out
    out.append(line(say("audit_assessed"), "assessed"))
    out.append(line(say("audit_excluded"), "excluded", 2))
    for cat in cons["categories"]:
        if cat in (cons["eligible"],):
            continue
        if cat == cons["undetermined"] or cat == cons["eligible_pending"]:
            continue
        out.append(line(rs.label(cat, lang), cat, 4))
        subs = cons["subcategories"].get(cat, [])
        if not subs:
            out += breakdown(cat, 6)
        for sub in subs:
            out.append(line(rs.label(sub, lang), f"{cat}.{sub}", 6))
            out += breakdown(f"{cat}.{sub}", 8)
    pend = cons["undetermined"]
    out.append(line(rs.label(pend, lang), pend, 2))
    out.append(line(rs.label(cons["eligible"], lang), cons["eligible"]))
    out.append(line(say("audit_errors"), "errors"))
    out.append(pad(say("audit_rows"), 58) + f"{counts.rows:>6}")
    out.append("  " + pad(say("audit_superseded"), 56) + f"{counts.superseded:>6}")
    problems = counts.arithmetic()
    out.append("")
    out.append(say("audit_arithmetic") + (say("audit_consistent") if not problems else "; ".join(problems)))
    out.append("")
    out.append(say("audit_per_criterion"))
    for cid in counts.ruleset.precedence:
        c = counts.criteria.get(cid, Counter())
        title = clip(counts.ruleset.criteria[cid].title_in(lang), 30)
        out.append(f"  {cid:<4} {pad(title, 30)} {c['met']:>5} {c['not_met']:>8} {c['unknown']:>8} {c['review']:>7} "
                   f"{counts.excluded_first(cid):>17} {counts.only_reason[cid]:>5} {counts.excluded_any(cid):>5} "
                   f"{counts.pending_first(cid):>16}")
    out += say("audit_per_criterion_legend").split("\n")
    if expected is not None:
        diffs = compare(counts, expected)
        out.append("")
        title = expected.get("title", expected.get("name", "expected"))
        if diffs:
            out.append(say("audit_compared_diff", title=title, n=len(diffs)))
            for box, w, h in diffs:
                out.append("  " + say("audit_diff", box=box, want=w, got=h))
        else:
            out.append(say("audit_compared_ok", title=title, n=len(want)))
    if lang != DEFAULT_LANG:
        out += ["", "※ " + (rs.translations.get(lang) or message("draft", lang))]
    # Labels, titles and stamps come from files anyone can write: a line break in a label must not
    # forge a line of the report, an escape must not reach the terminal (the loader refuses both too).
    return "\n".join(visible(line) for line in out) + "\n"
