"""Writing decision rows: JSON Lines, a JSON array, CSV, and readable text for a screener.

Nothing a record holds can forge output:

* **text** shows every value (ids, sites, reasons quoting medication names, warnings, error messages) with
  control characters and the invisible bidirectional-text controls escaped visibly (:func:`visible`): a
  newline in an id prints as ``\\n``, ESC as ``\\x1b``, RIGHT-TO-LEFT OVERRIDE as ``\\u202e``; so no value can
  start a line of its own or drive the terminal.
* **CSV** quotes every cell that holds a CR, LF, comma or double quote (RFC 4180; Python's ``csv`` module
  leaves a bare CR unquoted), so reading the file back gives exactly the rows written. A cell that a
  spreadsheet would run as a formula, one starting with ``=``, ``+``, ``-``, ``@``, a tab or a CR (OWASP
  "CSV injection"; also their full-width forms ``＝ ＋ － ＠``), gets a single quote ``'`` in front. For machine
  readers that want the raw values, ``RowWriter(..., csv_formula_guard=False)`` turns that off. See
  docs/csv.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from .i18n import DEFAULT_LANG, message, status_word
from .protocol import Criterion, Ruleset
from .text import pad, visible

OUTPUT_FORMATS = ("text", "json", "jsonl", "csv")
class TextOut(Protocol):
    """Where a :class:`RowWriter` writes: any text stream (``sys.stdout``, ``io.StringIO``, an open file, or a
    :class:`screening.sink.OutputStream`). A ``buffer`` attribute (bytes), when present, takes JSON Lines as
    they are. Every ``write`` call a RowWriter makes ends on a row boundary."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def dumps(row: Mapping[str, Any]) -> str:
    """One row as compact JSON text (UTF-8, no ASCII escaping); the same bytes as
    ``json.dumps(row, ensure_ascii=False, separators=(",", ":"))``, three times faster."""
    return orjson.dumps(row).decode()


def _mark(crit: Criterion | None, status: str) -> str:
    """+ passes, x rules the candidate out, ? unknown, ! needs the investigator."""
    if status in ("unknown", "review"):
        return "?" if status == "unknown" else "!"
    if crit is None:
        return " "
    return "x" if crit.fails(status) else "+"


def compare_text(check: Mapping[str, Any]) -> str:
    """``criteria_set_check`` in words: what the other criteria set would decide."""
    if check.get("decision") == "error":
        return f"under {check['set']} {check['version']} the record cannot be read: {check.get('error', '')}"
    differs = ", ".join(check.get("differs_on", [])) or "no single criterion"
    box = check["category"] + (f" / {check['subcategory']}" if check.get("subcategory") else "")
    return (f"under {check['set']} {check['version']} this candidate would be {check['decision'].upper()} — {box} "
            f"(primary {check.get('primary_criterion')}; the sets differ on {differs})")


def text_block(row: Mapping[str, Any], ruleset: Ruleset, *, brief: bool = False, lang: str = DEFAULT_LANG) -> str:
    """A decision explained for a screener: the box, why, what to ask next, every criterion.

    ``brief``: one screen for a desk — only the criteria that rule the candidate out or are still
    open, the questions to ask and the warnings; no passing criterion, no stamp.
    ``lang``: the language of the words (the set's titles, labels and questions, the tool's own
    words); the row's reasons and warnings are in the language it was screened in.
    Every line is passed through :func:`visible`: the values in it come from the record."""
    who = row["candidate_id"] + (f" ({row['site']})" if row.get("site") else "")
    if row["decision"] == "error":
        return f"{visible(who)}: {message('cannot_read', lang)}\n  {visible(str(row['error']))}\n"
    primary = row["primary_criterion"]
    crit = ruleset.criteria.get(primary)
    title = crit.title_in(lang) if crit is not None else ""
    if row["decision"] == "eligible" and row["category"] != ruleset.consort["eligible"]:
        box = message("waiting_for", lang, category=row["category"], id=primary,
                      title=title).rstrip()
    elif row["decision"] == "eligible":
        # every criterion met, the procedural one (consent) included: the candidate goes on to the next box of
        # the flow; screening itself decides nothing more (it does not randomise, allocate or enrol)
        done = (row["criteria"][primary]["reason"] + message("semi", lang) if crit is not None and crit.kind == "procedural"
                else "")
        box = message("all_met", lang, done=done, box=ruleset.label(row["category"], lang))
    else:
        box = ruleset.label(row["category"], lang)
        if row.get("subcategory"):
            box += " / " + ruleset.label(row["subcategory"], lang)
    sep = message("sep", lang)
    lines = [f"{who}: {message(row['decision'], lang)} — {box}"]
    if crit is not None and not brief:
        lines.append("  " + message("because", lang, id=primary, title=title,
                                    reason=row["criteria"][primary]["reason"]))
    if brief:  # what rules out and what the investigator decides, in full; what is unknown, by id
        unknown = []
        for cid in ruleset.precedence:
            result = row["criteria"].get(cid)
            mark = _mark(ruleset.criteria.get(cid), result["status"]) if result else "+"
            if mark in ("x", "!") and result is not None:
                lines.append(f"  {mark} {cid} {ruleset.criteria[cid].title_in(lang)}{sep}{result['reason']}")
                if result.get("decide"):
                    lines.append("      " + message("decide", lang, text=result["decide"]))
            elif mark == "?":
                unknown.append(cid)
        if unknown:
            lines.append("  " + message("unknown_ids", lang, ids=", ".join(unknown)))
    if row.get("ask_next"):  # most decisive first; each question with the field it fills and the answer it takes
        lines.append("  " + message("ask_next", lang))
        for path in row["ask_next"]:
            lines.append("    " + ask_line(ruleset, path, lang))
    if row.get("criteria_set_check"):
        lines.append("  " + message("other_set", lang) + compare_text(row["criteria_set_check"]))
    for warning in row.get("warnings", []):
        lines.append("  " + message("warning", lang, text=warning))
    if not brief:
        lines.append("  " + message("legend", lang))
        for cid in ruleset.precedence:
            result = row["criteria"].get(cid)
            if result is None:
                continue
            mark = _mark(ruleset.criteria.get(cid), result["status"])
            status = pad(status_word(result["status"], lang), 8)
            lines.append(f"    {mark} {cid:<4} {status} {ruleset.criteria[cid].title_in(lang)}{sep}{result['reason']}")
            if result.get("decide"):
                lines.append("           " + message("decide", lang, text=result["decide"]))
        stamp = row["ruleset"]
        lines.append("  " + message("stamp", lang, name=stamp["name"], version=stamp["version"],
                                    sha=stamp["sha256"][:12]))
    if lang != DEFAULT_LANG:
        lines.append("  ※ " + (ruleset.translations.get(lang) or message("draft", lang)))
    return "\n".join(map(visible, lines)) + "\n"


def ask_line(ruleset: Ruleset, path: str, lang: str = DEFAULT_LANG) -> str:
    """One line of "ask next": the screener's question, the field it fills in brackets, the answer it takes."""
    question = ruleset.record.question(path, lang) or ruleset.record.question(path)
    answer = ruleset.record.answer_format(path, lang)
    text = f"{question} [{path}]" if question else f"[{path}]"
    return f"{text} — {message('answer', lang, format=answer)}" if answer else text


def csv_header(ruleset: Ruleset) -> list[str]:
    return (["candidate_id", "site", "decision", "category", "subcategory", "primary_criterion", "ask_next",
             "warnings", "error", "criteria_set_check"] + [f"{cid}" for cid in ruleset.precedence]
            + ["ruleset", "ruleset_version", "ruleset_sha256"])


def csv_cells(row: Mapping[str, Any], ruleset: Ruleset) -> list[str]:
    criteria = row.get("criteria", {})
    stamp = row.get("ruleset", {})
    return ([row["candidate_id"], row.get("site") or "", row["decision"], row["category"],
             row.get("subcategory") or "", row.get("primary_criterion") or "", ";".join(row.get("ask_next", [])),
             " | ".join(row.get("warnings", [])), row.get("error", ""),
             compare_text(row["criteria_set_check"]) if row.get("criteria_set_check") else ""]
            + [criteria.get(cid, {}).get("status", "") for cid in ruleset.precedence]
            + [stamp.get("name", ""), stamp.get("version", ""), stamp.get("sha256", "")])


# RFC 4180: a cell holding any of these is quoted (Python's csv module misses a bare CR with "\\n" line ends)
_CSV_QUOTE = re.compile('[",\r\n]')
#: a cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection", plus full-width forms)
CSV_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def csv_line(cells: list[str], *, formula_guard: bool = True) -> str:
    """One CSV row, ``\\n``-terminated: cells quoted when they hold CR, LF, comma or a double quote; with
    ``formula_guard``, a cell starting with a formula character gets a ``'`` in front."""
    out = []
    for cell in cells:
        if formula_guard and cell and cell[0] in CSV_FORMULA_START:
            cell = "'" + cell
        if _CSV_QUOTE.search(cell):
            cell = '"' + cell.replace('"', '""') + '"'
        out.append(cell)
    return ",".join(out) + "\n"


class RowWriter:
    """Writes rows to a text stream in one of :data:`OUTPUT_FORMATS`, incrementally.

    JSON and JSON Lines text is handed to the stream in batches of :attr:`BATCH` rows (one write
    call each, not one per row); :meth:`flush` and :meth:`close` write out what is pending. Every write
    call ends on a row boundary (screening.sink relies on it to never leave a partial row). CSV output
    neutralises formula cells unless ``csv_formula_guard`` is false (see the module docstring).
    """

    BATCH = 256

    def __init__(self, out: TextOut, fmt: str, ruleset: Ruleset, *, csv_formula_guard: bool = True,
                 brief: bool = False, lang: str = DEFAULT_LANG, already: int = 0) -> None:
        """``already``: rows written to ``out`` before (a resumed run): no CSV header or JSON opening
        bracket again, and the next row is separated from the last."""
        self.out = out
        self.lang = lang
        self.fmt = fmt
        self.ruleset = ruleset
        self.csv_formula_guard = csv_formula_guard
        self.brief = brief
        self._count = already
        self._pending: list[str] = []
        self._write = out.write

    def write(self, row: Mapping[str, Any]) -> None:
        fmt = self.fmt
        if fmt == "jsonl" or fmt == "json":
            # rows screened in a worker process (screening.scale.RenderedRow) arrive serialised
            text = getattr(row, "jsonl", None) or dumps(row)
            pending = self._pending
            if fmt == "jsonl":
                pending.append(text + "\n")
            else:
                pending.append(("[\n" if self._count == 0 else ",\n") + text)
            if len(pending) >= self.BATCH:
                self.flush()
        elif fmt == "csv":
            if self._count == 0:
                self._write(csv_line(csv_header(self.ruleset)))
            self._write(csv_line(csv_cells(row, self.ruleset), formula_guard=self.csv_formula_guard))
        else:
            self._write(("\n" if self._count else "") + text_block(row, self.ruleset, brief=self.brief,
                                                                           lang=self.lang))
        self._count += 1

    def write_block(self, data: bytes, count: int) -> None:
        """Write ``count`` rows given as UTF-8 JSON Lines (each row ending in a newline).

        JSON Lines go to the stream's byte buffer as they are (no decoding and re-encoding) when
        it has one.
        """
        if not count:
            return
        if self.fmt in ("jsonl", "json"):
            if self.fmt == "json":  # row texts never hold a raw newline byte, so it separates rows
                data = (b"[\n" if self._count == 0 else b",\n") + data[:-1].replace(b"\n", b",\n")
            self.flush()
            buffer = getattr(self.out, "buffer", None)
            if buffer is not None:
                self.out.flush()
                buffer.write(data)
            else:
                self._write(data.decode())
        else:
            for line in data.split(b"\n")[:count]:
                self.write(orjson.loads(line))
            return
        self._count += count

    def flush(self) -> None:
        if self._pending:
            self._write("".join(self._pending))
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self.fmt == "json":
            self._write("[]\n" if self._count == 0 else "\n]\n")
        elif self.fmt == "csv" and self._count == 0:  # no rows: still a CSV file, with its header
            self._write(csv_line(csv_header(self.ruleset)))
        self.out.flush()
