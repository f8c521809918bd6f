"""A criteria set described for people: the table `nlc-screen rules` prints, and its JSON form."""

from __future__ import annotations

import textwrap
from typing import Any

from .decision import describe_parameters
from .protocol import Condition, Ruleset
from .text import visible

_OPS = {"eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥", "in": "in", "not_in": "not in"}


def condition_text(cond: Condition) -> str:
    """A condition tree in words: ``age_years < 65 and age_years_at_enrollment ≥ 65``."""
    if cond[0] in ("all", "any"):
        joiner = " and " if cond[0] == "all" else " or "
        parts = [condition_text(c) for c in cond[1]]
        return joiner.join(f"({p})" if (" and " in p or " or " in p) else p for p in parts)
    _, name, op, value = cond
    if op == "known":
        return f"{name} is {'known' if value else 'unknown'}"
    shown = "[" + ", ".join(map(str, value)) + "]" if isinstance(value, tuple) else str(value)
    return f"{name} {_OPS[op]} {shown}"


def ruleset_json(ruleset: Ruleset) -> dict[str, Any]:
    return {
        "ruleset": ruleset.stamp,
        "title": ruleset.title,
        "parameters": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in ruleset.parameters.items()},
        "precedence": list(ruleset.precedence),
        "criteria": [
            {"id": c.id, "kind": c.kind, "title": c.title, "protocol_text": c.protocol_text,
             "sources": list(c.sources), "spec": c.spec, "category": c.category, "subcategory": c.subcategory,
             "default": c.default.status,
             "rules": [{"status": r.status, "when": condition_text(r.when)} for r in c.rules]}
            for c in ruleset.ordered
        ],
    }


def ruleset_table(ruleset: Ruleset) -> str:
    """The set as the text table `nlc-screen rules` prints: one line per criterion and rule, every text
    from the set passed through :func:`screening.text.visible`."""
    p = describe_parameters(ruleset)
    out = [f"{ruleset.name} {ruleset.version} — {ruleset.title}",
           f"sha256 {ruleset.sha256}",
           "parameters: " + ", ".join(f"{k} = {v}" for k, v in p.items() if k != "criteria_set"),
           "precedence: " + " → ".join(ruleset.precedence), ""]
    for c in ruleset.ordered:
        box = c.category + (f" / {c.subcategory}" if c.subcategory else "")
        out.append(f"{c.id:<4} {c.title}  [{c.kind}; {box}; {', '.join(c.sources)}]")
        out.extend(textwrap.wrap(f"protocol: {visible(c.protocol_text)}", 100, initial_indent="     ", subsequent_indent="       "))
        for r in c.rules:
            out.extend(textwrap.wrap(f"{r.status:<8} when {condition_text(r.when)}", 100,
                                     initial_indent="     ", subsequent_indent="                "))
        out.append(f"     {c.default.status:<8} otherwise")
    # Titles and texts come from a rules file: escape control characters visibly, so that none can
    # forge a line or drive the terminal (the loader refuses them too; this is defence in depth).
    return "\n".join(visible(line) for line in out) + "\n"
