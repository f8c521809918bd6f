"""The enrollment part of the CONSORT flow diagram, drawn from an audit's counts.

Like the paper's Figure 1: *Assessed for eligibility* → *Excluded* (each excluding box of the pack,
with its subcategories, zero counts shown) → the eligible box (*Randomized*), and a *Pending* box when
any candidate is pending. Boxes and labels come from the criteria set (in its languages), so the
second trial's pack draws its own boxes.

Formats by the file's suffix: ``.dot`` (Graphviz source) and ``.mmd`` (Mermaid) are text and need
nothing installed; ``.svg`` and ``.png`` are drawn by Graphviz's ``dot`` (Debian: ``graphviz``; for
Chinese labels in a PNG, a CJK font such as ``fonts-noto-cjk`` or ``fonts-wqy-zenhei``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .audit import ConsortCounts
from .errors import ReportError
from .i18n import DEFAULT_LANG, message

#: The formats :func:`write_diagram` writes, by suffix.
DIAGRAM_FORMATS = (".svg", ".png", ".dot", ".mmd")


#: The diagram cannot be drawn (an unknown format, or Graphviz missing).
DiagramError = ReportError


def _boxes(counts: ConsortCounts, lang: str) -> tuple[str, list[tuple[str, int, list[tuple[str, int]]]], str, int,
                                                       tuple[str, int] | None]:
    """(assessed label, [(excluding box label, n, [(subcategory label, n)])], eligible label, n, pending)."""
    rs = counts.ruleset
    cons = rs.consort
    flat = counts.flat()
    open_boxes = {cons["undetermined"], cons["eligible_pending"]}
    excluding = []
    for cat in cons["categories"]:
        if cat == cons["eligible"] or cat in open_boxes:
            continue
        subs = [(rs.label(sub, lang), flat[f"{cat}.{sub}"]) for sub in cons["subcategories"].get(cat, [])]
        excluding.append((rs.label(cat, lang), flat[cat], subs))
    pending_n = sum(flat[b] for b in open_boxes)
    pending = (rs.label(cons["undetermined"], lang), pending_n) if pending_n else None
    return message("audit_assessed", lang), excluding, rs.label(cons["eligible"], lang), flat[cons["eligible"]], pending


def _n(count: int) -> str:
    return f"(n = {count})"


def consort_dot(counts: ConsortCounts, lang: str = DEFAULT_LANG) -> str:
    """The diagram as Graphviz DOT source."""
    assessed, excluding, eligible, eligible_n, pending = _boxes(counts, lang)

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = []
    for label, n, subs in excluding:
        lines.append(f"   {label} {_n(n)}\\l")
        lines += [f"      • {sub} {_n(m)}\\l" for sub, m in subs]
    excluded_label = f"{message('audit_excluded', lang)} {_n(counts.excluded)}\\l" + "".join(lines)
    out = [
        "digraph consort {",
        '  graph [rankdir=TB, nodesep=0.6, ranksep=0.5, fontname="sans-serif"];',
        '  node [shape=box, style="rounded", fontname="sans-serif", fontsize=11, margin="0.2,0.1"];',
        '  edge [arrowsize=0.7];',
        f"  assessed [label={quoted(assessed + ' ' + _n(counts.assessed))}];",
        '  split [shape=point, width=0.01, height=0.01, label=""];',
        f"  excluded [label={quoted(excluded_label)}];",
        f"  eligible [label={quoted(eligible + ' ' + _n(eligible_n))}];",
        "  assessed -> split [arrowhead=none];",
        "  split -> excluded;",
        "  split -> eligible;",
        "  { rank=same; split; excluded; }",
    ]
    if pending is not None:
        out += [f"  pending [label={quoted(pending[0] + ' ' + _n(pending[1]))}, style=\"rounded,dashed\"];",
                "  split -> pending [style=dashed];", "  { rank=same; eligible; pending; }"]
    out.append("}")
    # the DOT source's \\l ends a left-justified line; quoted() doubled the backslash: undo that for them
    return "\n".join(out).replace("\\\\l", "\\l") + "\n"


def consort_mermaid(counts: ConsortCounts, lang: str = DEFAULT_LANG) -> str:
    """The diagram as a Mermaid flowchart."""
    assessed, excluding, eligible, eligible_n, pending = _boxes(counts, lang)

    def text(value: str) -> str:
        return value.replace('"', "#quot;")
    parts = [f"{text(label)} {_n(n)}" + "".join(f"<br/>• {text(sub)} {_n(m)}" for sub, m in subs)
             for label, n, subs in excluding]
    out = ["flowchart TD",
           f'  assessed["{text(assessed)} {_n(counts.assessed)}"]',
           f'  excluded["{text(message("audit_excluded", lang))} {_n(counts.excluded)}<br/>' + "<br/>".join(parts) + '"]',
           f'  eligible["{text(eligible)} {_n(eligible_n)}"]',
           "  assessed --> excluded",
           "  assessed --> eligible"]
    if pending is not None:
        out += [f'  pending["{text(pending[0])} {_n(pending[1])}"]', "  assessed -.-> pending"]
    return "\n".join(out) + "\n"


def render_diagram(counts: ConsortCounts, fmt: str, lang: str = DEFAULT_LANG) -> bytes:
    """The diagram in ``fmt`` (a suffix of :data:`DIAGRAM_FORMATS`, such as ``.svg``).

    :raises DiagramError: an unknown format, or ``.svg``/``.png`` without Graphviz's ``dot``.
    """
    suffix = fmt.lower()
    if suffix not in DIAGRAM_FORMATS:
        raise DiagramError(f"the diagram's file name ends in {', '.join(DIAGRAM_FORMATS)}, not {suffix or 'nothing'}")
    if suffix == ".mmd":
        return consort_mermaid(counts, lang).encode()
    dot = consort_dot(counts, lang)
    if suffix == ".dot":
        return dot.encode()
    if shutil.which("dot") is None:
        raise DiagramError(f"drawing {suffix} needs Graphviz's dot program: install it (Debian/Ubuntu: "
                           f"apt-get install graphviz; macOS: brew install graphviz), or write .dot or .mmd")
    import graphviz

    try:
        data: bytes = graphviz.Source(dot).pipe(format=suffix[1:])
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as exc:
        raise DiagramError(f"Graphviz could not draw the diagram: {str(exc).splitlines()[0][:200]}") from None
    return data


def write_diagram(counts: ConsortCounts, path: str | Path, lang: str = DEFAULT_LANG) -> None:
    """Write the diagram to ``path`` in the format its suffix names (:data:`DIAGRAM_FORMATS`).

    :raises DiagramError: an unknown suffix, or ``.svg``/``.png`` without Graphviz's ``dot``.
    """
    target = Path(path)
    _write(target, render_diagram(counts, target.suffix, lang))


def _write(target: Path, data: bytes) -> None:
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise DiagramError(f"cannot write the diagram {target}: {exc.strerror or exc}") from None
