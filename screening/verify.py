"""Re-deriving past decisions: ``nlc-screen verify``.

Every logged input (or every decision row made with ``--include-record``) is screened again under
the criteria set stamped on it — its pack, set name and version, found among the pack's sets or in
its archive (``rules/<pack>/archive/<set>-<version>/``) — and the new decision is compared with the
one kept. The stamped SHA-256 must match the file found: a set edited in place without a new version
is reported as changed (the entries are still re-screened under the file as it is now, so the report
shows what the edit changed)::

    from screening.verify import verify_log
    result = verify_log(ScreeningLog(url))
    result.exit_code, result.text()

What is compared is the decision, not its wording: ``decision``, ``category``, ``subcategory``,
``primary_criterion`` and every criterion's status (for an error row: the fields it names). Reasons,
warnings and the duplicate check depend on the language and on the batch, not on the record.
An erased entry (``nlc-screen log erase``) is counted as erased, never as a difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import EXIT_OK, EXIT_UNREADABLE, InputFormatError, ScreeningError
from .io import Item
from .protocol import PACK_FILE, Pack, Ruleset, display_path, load_pack, load_ruleset, rules_dir
from .screen import Screener

if TYPE_CHECKING:
    from .log import ScreeningLog

#: The parts of a decision row that re-screening must reproduce.
COMPARED = ("decision", "category", "subcategory", "primary_criterion")


def essence(row: Mapping[str, Any]) -> dict[str, Any]:
    """What of a decision row ``verify`` compares (see the module docstring)."""
    out: dict[str, Any] = {key: row.get(key) for key in COMPARED}
    if row.get("decision") == "error":
        fields = row.get("error_fields")
        # a list of field names as nlc-screen writes it; anything else is compared as it is (a difference)
        out["error_fields"] = list(fields) if isinstance(fields, list) else ([] if fields is None else fields)
    else:
        out["criteria"] = {cid: (result or {}).get("status") for cid, result in (row.get("criteria") or {}).items()}
    return out


def changes(logged: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """How ``now`` differs from ``logged`` (both :func:`essence`), one phrase each: ``decision
    eligible -> excluded``, ``I1 met -> not_met``."""
    out = [f"{key} {logged.get(key)} -> {now.get(key)}" for key in (*COMPARED, "error_fields")
           if logged.get(key) != now.get(key)]
    before, after = logged.get("criteria") or {}, now.get("criteria") or {}
    for cid in [*before, *(c for c in after if c not in before)]:
        if before.get(cid) != after.get(cid):
            out.append(f"{cid} {before.get(cid) or '(none)'} -> {after.get(cid) or '(none)'}")
    return out


@dataclass
class SetCheck:
    """One criteria set (pack, name, version, sha256) stamped on the entries checked, and where it was found."""

    pack: str
    name: str
    version: str
    sha256: str
    #: the file it was loaded from (None: not found or not loadable)
    path: str | None = None
    #: the sha256 of the file found when it is not the one stamped (the set was edited in place)
    found_sha256: str | None = None
    #: why the set could not be used (not found, invalid)
    problem: str | None = None
    entries: int = 0
    same: int = 0
    differ: int = 0

    @property
    def label(self) -> str:
        return f"{self.pack + '/' if self.pack else ''}{self.name} {self.version}"

    @property
    def changed(self) -> bool:
        return self.found_sha256 is not None

    def to_dict(self) -> dict[str, Any]:
        return {"pack": self.pack, "name": self.name, "version": self.version, "sha256": self.sha256,
                "path": self.path, "found_sha256": self.found_sha256, "problem": self.problem,
                "entries": self.entries, "same": self.same, "differ": self.differ}


@dataclass
class Difference:
    """A decision that re-screening does not reproduce."""

    where: str
    candidate_id: str
    site: str | None
    set: str
    changes: list[str]
    logged: dict[str, Any]
    now: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "candidate_id": self.candidate_id, "site": self.site, "set": self.set,
                "changes": self.changes, "logged": self.logged, "now": self.now}


@dataclass
class VerifyResult:
    """What ``verify`` found. Exit 1 on any difference, any set changed in place, and any set not found."""

    source: str
    checked: int = 0
    same: int = 0
    erased: int = 0
    #: entries or rows with no input kept (an input line that could not be read at all; a row made
    #: without --include-record)
    no_input: int = 0
    #: entries whose set could not be found or loaded
    unverifiable: int = 0
    differences: list[Difference] = field(default_factory=list)
    sets: dict[tuple[str, str, str, str], SetCheck] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.differences and not self.unverifiable and not any(s.changed for s in self.sets.values())

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.clean else EXIT_UNREADABLE

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "clean": self.clean, "checked": self.checked, "same": self.same,
                "differ": len(self.differences), "erased": self.erased, "no_input": self.no_input,
                "unverifiable": self.unverifiable, "sets": [s.to_dict() for s in self.sets.values()],
                "differences": [d.to_dict() for d in self.differences]}

    def text(self) -> str:
        lines = [f"Re-screened {self.checked} decision(s) from {self.source}: {self.same} the same, "
                 f"{len(self.differences)} different."]
        if self.erased:
            lines.append(f"{self.erased} erased entr{'y' if self.erased == 1 else 'ies'} (input cleared by "
                         "`nlc-screen log erase`): not re-screened, not a difference.")
        if self.no_input:
            lines.append(f"{self.no_input} without an input to re-screen (an input that could not be read at all, "
                         "or a row written without --include-record).")
        lines.append("Criteria sets:")
        for s in self.sets.values():
            where = s.path or "not found"
            lines.append(f"  {s.label} (sha256 {s.sha256[:12]}…) from {where}: {s.entries} decision(s), "
                         f"{s.same} the same, {s.differ} different")
            if s.changed:
                lines.append(f"    CHANGED: the file found has sha256 {s.found_sha256}, not the {s.sha256} stamped on "
                             "its decisions: the set was edited without a new version (here, or where they were "
                             "screened: --rules-dir names the packs they were screened with); they were re-screened "
                             "under the file as it is")
            if s.problem:
                lines.append(f"    cannot re-screen: {s.problem}")
        for d in self.differences:
            who = d.candidate_id + (f" ({d.site})" if d.site else "")
            lines.append(f"DIFFERS {d.where}: {who} under {d.set}: {'; '.join(d.changes)}")
        lines.append("Clean: every decision re-derived." if self.clean else
                     "NOT clean: see the differences and sets above.")
        return "\n".join(lines) + "\n"


class SetFinder:
    """Finds the file of a stamped criteria set among the packs of ``roots`` (folders of packs, or pack
    folders; default: the shipped packs), current or archived, and loads it."""

    def __init__(self, roots: Iterable[Path] | None = None) -> None:
        self.roots = list(roots) if roots is not None else [rules_dir()]
        self._packs: list[Pack] | None = None
        self._found: dict[tuple[str, str, str, str], tuple[Ruleset | None, SetCheck]] = {}

    def packs(self) -> list[Pack]:
        if self._packs is None:
            found: list[Pack] = []
            for root in self.roots:
                if (root / PACK_FILE).is_file():
                    found.append(load_pack(root))
                elif root.is_dir():
                    found += [load_pack(folder) for folder in sorted(root.iterdir())
                              if folder.is_dir() and (folder / PACK_FILE).is_file()]
            self._packs = found
        return self._packs

    def find(self, pack: str, name: str, version: str, sha256: str) -> tuple[Ruleset | None, SetCheck]:
        """The set stamped (pack may be "" for a set outside any pack), and its check."""
        key = (pack, name, version, sha256)
        hit = self._found.get(key)
        if hit is None:
            hit = self._found[key] = self._find(SetCheck(pack, name, version, sha256))
        return hit

    def _find(self, check: SetCheck) -> tuple[Ruleset | None, SetCheck]:
        try:
            packs = self.packs()
        except ScreeningError as exc:
            check.problem = str(exc)
            return None, check
        candidates = [path for p in packs if not check.pack or p.name == check.pack
                      for ver, path in p.versions().get(check.name, []) if ver == check.version]
        if not candidates:
            where = f"pack {check.pack}" if check.pack else "any pack"
            check.problem = (f"no criteria set {check.name} version {check.version} in {where} under "
                             f"{', '.join(str(r) for r in self.roots)} (current or archived)")
            return None, check
        first: tuple[Ruleset, str] | None = None
        for path in candidates:
            try:
                ruleset = load_ruleset(path)
            except ScreeningError as exc:
                check.problem = str(exc)
                continue
            if ruleset.sha256 == check.sha256:
                check.path, check.problem = display_path(path), None
                return ruleset, check
            first = first or (ruleset, display_path(path))
        if first is None:
            return None, check
        check.path, check.found_sha256, check.problem = first[1], first[0].sha256, None
        return first[0], check


class Verifier:
    """Re-screens one input after another and tallies a :class:`VerifyResult`."""

    def __init__(self, source: str, finder: SetFinder | None = None) -> None:
        self.result = VerifyResult(source)
        self.finder = finder or SetFinder()
        self._screeners: dict[int, Screener] = {}

    def check(self, *, where: str, position: str, row: Mapping[str, Any], record: str | None, pack: str,
              stamp: Mapping[str, Any], erased: bool = False) -> None:
        """Re-screen ``record`` (the input text ``row`` was screened from, at ``position`` in its input)
        under the set ``stamp`` (name, version, sha256) of ``pack``; ``where`` names it in the report."""
        result = self.result
        if erased:
            result.erased += 1
            return
        if record is None:
            result.no_input += 1
            return
        ruleset, check = self.finder.find(pack, str(stamp.get("name", "")), str(stamp.get("version", "")),
                                          str(stamp.get("sha256", "")))
        result.sets.setdefault((check.pack, check.name, check.version, check.sha256), check)
        check.entries += 1
        if ruleset is None:
            result.unverifiable += 1
            return
        screener = self._screeners.get(id(ruleset))
        if screener is None:
            screener = self._screeners[id(ruleset)] = Screener(ruleset)
        now, logged = essence(screener.item(Item(position, record))), essence(row)
        result.checked += 1
        if now == logged:
            result.same += 1
            check.same += 1
            return
        check.differ += 1
        result.differences.append(Difference(
            where=where, candidate_id=str(row.get("candidate_id")), site=row.get("site"), set=check.label,
            changes=changes(logged, now), logged=logged, now=now))


def verify_log(log: ScreeningLog, finder: SetFinder | None = None) -> VerifyResult:
    """Re-screen every entry of the screening log under the set stamped on it."""
    verifier = Verifier(f"the screening log {log.shown}", finder)
    for item in log.replay():
        row = item["row"]
        verifier.check(where=f"entry {item['entry_id']} ({item['position']})", position=item["position"], row=row, record=item["record"],
                       pack=item["pack"], stamp={"name": item["set_name"], "version": item["set_version"],
                                                 "sha256": item["set_sha256"]},
                       erased=item["erased_at"] is not None)
    return verifier.result


def verify_rows(stream: IO[bytes], *, name: str = "input", finder: SetFinder | None = None) -> VerifyResult:
    """Re-screen every decision row of ``stream`` (``nlc-screen screen`` output made with
    ``--include-record``) under the set stamped on it.

    :raises InputFormatError: the stream is not decision rows.
    """
    from .audit import read_rows

    verifier = Verifier(name, finder)
    for number, row in enumerate(read_rows(stream, name=name), 1):
        fields = row.get("error_fields")
        if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise InputFormatError(f"{name} row {number}: 'error_fields' must be a list of field names")
        record = row.get("record")
        text = json.dumps(record, ensure_ascii=False) if isinstance(record, dict) else None
        verifier.check(where=f"{name} row {number}", position=f"record {number}", row=row, record=text, pack="",
                       stamp=row.get("ruleset") or {})
    return verifier.result
