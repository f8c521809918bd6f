"""The coordinator's report: one self-contained HTML page (``audit --report FILE.html``).

The page holds the CONSORT diagram (inline SVG drawn by Graphviz), the counts with each excluding box
by the criterion that excluded, the per-criterion table, the counts by a row field (site by default),
the attrition, a summary of the pending candidates and the criteria-set stamp — in English or
Chinese. It loads nothing: no script, no style sheet, no font, no image from anywhere, so it opens
offline, can be mailed, and prints (A4, tables kept whole where they fit) to a PDF from any browser.

Everything shown is computed by :mod:`screening.audit` and :mod:`screening.attrition`; this module
only lays it out. Text from the pack and the rows is escaped by Jinja2's autoescaping.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from .attrition import AttritionReport, attrition
from .audit import AuditResult, Breakdown, PendingList
from .diagram import render_diagram
from .errors import ReportError
from .i18n import DEFAULT_LANG, message

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("screening", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _svg(result: AuditResult, lang: str) -> str:
    """The diagram as inline SVG: Graphviz's XML declaration, doctype and comments dropped."""
    svg = render_diagram(result.counts, ".svg", lang).decode()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"<!--.*?-->", "", svg, flags=re.S)


def _boxes(result: AuditResult, lang: str) -> list[dict[str, Any]]:
    """The count table's rows: label, count, indent, expected (when compared) and the `·` breakdown."""
    counts = result.counts
    rs = counts.ruleset
    cons = rs.consort
    flat = counts.flat()
    want = (result.expected or {}).get("counts", {})

    def row(label: str, box: str, depth: int, breakdown: bool = False) -> dict[str, Any]:
        parts = counts.primary_breakdown(box) if breakdown else []
        return {"label": label, "n": flat[box], "depth": depth, "expected": want.get(box),
                "parts": [(cid, rs.criteria[cid].title_in(lang), n) for cid, n in parts] if len(parts) > 1 else []}

    rows = [row(message("audit_assessed", lang), "assessed", 0), row(message("audit_excluded", lang), "excluded", 1)]
    for cat in cons["categories"]:
        if cat in (cons["eligible"], cons["undetermined"], cons["eligible_pending"]):
            continue
        subs = cons["subcategories"].get(cat, [])
        rows.append(row(rs.label(cat, lang), cat, 2, breakdown=not subs))
        for sub in subs:
            rows.append(row(rs.label(sub, lang), f"{cat}.{sub}", 3, breakdown=True))
    pend = cons["undetermined"]
    rows.append(row(rs.label(pend, lang), pend, 1))
    rows.append(row(rs.label(cons["eligible"], lang), cons["eligible"], 0))
    rows.append(row(message("audit_errors", lang), "errors", 0))
    return rows


def _criteria(result: AuditResult, lang: str) -> list[dict[str, Any]]:
    counts = result.counts
    out = []
    for cid in counts.ruleset.precedence:
        c = counts.criteria.get(cid, Counter())
        out.append({"id": cid, "title": counts.ruleset.criteria[cid].title_in(lang),
                    "statuses": [c[s] for s in ("met", "not_met", "unknown", "review")],
                    "first": counts.excluded_first(cid), "only": counts.only_reason[cid],
                    "any": counts.excluded_any(cid), "pending": counts.pending_first(cid)})
    return out


def _groups(groups: Breakdown, lang: str) -> dict[str, Any]:
    rs = groups.total.ruleset
    names = list(groups.groups)
    rows = []
    for box, value in groups.total.flat().items():
        if box in ("assessed", "excluded", "errors"):
            label = message({"assessed": "audit_assessed", "excluded": "audit_excluded",
                             "errors": "audit_errors"}[box], lang)
        else:
            label = rs.label(box.split(".")[-1], lang)
        rows.append({"label": label, "depth": 1 if "." in box else 0, "total": value if groups.combined else None,
                     "values": [groups.groups[n].flat().get(box, 0) for n in names]})
    return {"field": groups.field_name, "names": names, "rows": rows, "combined": groups.combined}


def _pending(waiting: PendingList, lang: str) -> dict[str, Any]:
    record = waiting.ruleset.record
    sites = sorted(set(waiting.awaiting) | set(waiting.undetermined))
    return {
        "sites": [(site, len(waiting.awaiting.get(site, [])), len(waiting.undetermined.get(site, [])))
                  for site in sites],
        "awaiting": sum(len(v) for v in waiting.awaiting.values()),
        "undetermined": sum(len(v) for v in waiting.undetermined.values()),
        "open": [(path, record.question(path, lang) or record.question(path) or "", n)
                 for path, n in waiting.open_fields.most_common(10)],
    }


def html_report(result: AuditResult, *, groups: Breakdown, losses: AttritionReport, waiting: PendingList,
                source: str, lang: str = DEFAULT_LANG) -> str:
    """The report page as HTML text (see the module docstring).

    :raises ReportError: Graphviz's ``dot`` is missing (the diagram is part of the page).
    """
    counts = result.counts
    rs = counts.ruleset
    problems = counts.arithmetic()
    steps = [{"n": i, "id": s.criterion, "title": rs.criteria[s.criterion].title_in(lang), "removed": s.removed,
              "remaining": s.remaining, "only": s.only, "any": s.any}
             for i, s in enumerate((losses.total or attrition(result.counts)).steps, 1)]
    by_group = [{"name": name, "assessed": a.assessed, "remaining": [s.remaining for s in a.steps]}
                for name, a in losses.groups.items()]

    def t(key: str, **values: Any) -> str:
        return message(key, lang, **values)

    def paragraph(key: str) -> str:
        """A message wrapped for the terminal, as one paragraph."""
        return ("" if lang == "zh" else " ").join(line.strip() for line in t(key).splitlines())
    from .log import tool_version

    return _TEMPLATES.get_template("report.html").render(
        t=t, paragraph=paragraph, lang=lang, rs=rs, source=source, version=tool_version(),
        stamps=sorted(counts.stamps), rows_read=counts.rows, superseded=counts.superseded,
        refused=[p for p in problems if "criteria set" in p], problems=problems,
        diagram=_svg(result, lang), boxes=_boxes(result, lang), criteria=_criteria(result, lang),
        expected=result.expected, diffs=result.diffs, groups=_groups(groups, lang),
        steps=steps, by_group=by_group, attrition_check=(losses.total or attrition(result.counts)).check, pending=_pending(waiting, lang),
        note=rs.translations.get(lang) if lang != DEFAULT_LANG else None,
    )


def write_report(path: str | Path, html: str) -> None:
    target = Path(path)
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the report {target}: {exc.strerror or exc}") from None
