"""Rule conditions evaluated in plain Python, with the engine's semantics.

The rules engine (``screening.engine``) is the production path. This evaluator reads the same rule
data with the same meaning (a missing fact fails every test but ``known: false``; ``ne`` on a
missing fact is false, as in durable_rules), so that tests can check the engine against it and the
benchmark can show what the work costs without an engine.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from .protocol import Condition, Ruleset

_MISSING = object()
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
}


def holds(cond: Condition, facts: Mapping[str, Any]) -> bool:
    """Whether a condition tree holds for a fact dict."""
    kind = cond[0]
    if kind == "all":
        return all(holds(c, facts) for c in cond[1])
    if kind == "any":
        return any(holds(c, facts) for c in cond[1])
    _, name, op, operand = cond
    value = facts.get(name, _MISSING)
    if op == "known":
        return (value is not _MISSING) is operand
    if value is _MISSING:
        return False
    return _OPS[op](value, operand)


class PythonEvaluator:
    """Which rules of a ruleset apply to a fact dict, without an engine (see ``flat_rules``)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self._conds = [rule.when for _, rule in ruleset.flat_rules]

    def fired(self, facts: Mapping[str, Any]) -> list[int]:
        return [i for i, cond in enumerate(self._conds) if holds(cond, facts)]

    def close(self) -> None:
        pass
