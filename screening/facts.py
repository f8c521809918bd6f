"""Record -> flat derived facts, computed once, from the record's own dates.

What the facts are, and how each is computed, is the pack's ``facts.yaml``, compiled per criteria
set into :attr:`Ruleset.plan <screening.protocol.Ruleset>` (see :mod:`screening.derivations`).
There is no clock: every date comes from the record. Unknown stays unknown: a number fact is left
out, an enum fact says ``unknown``.

:func:`derive` returns :class:`Derived`: ``facts`` (small and flat, what the engine sees),
``context`` (display values that reasons quote) and ``warnings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import Ruleset


@dataclass
class Derived:
    facts: dict[str, Any]
    context: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def derive(record: Any, ruleset: Ruleset, *, position: str | None = None) -> Derived:
    """Compute the facts a ruleset's rules test, and the values its reasons quote.

    :raises CandidateRecordError: when the record's dates contradict the set (a date before the
        earliest the set allows, such as an enrollment before the end of the screening diary).
    """
    st = ruleset.plan.run(record, position=position)
    return Derived(st.facts, st.ctx, st.warnings)
