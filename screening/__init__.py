"""nlc-screen: eligibility screening for clinical trials, from criteria written as data (trial packs).

The public surface: the names a program embedding nlc-screen needs. The modules behind them
(``screening.io``, ``output``, ``audit``, ``scale``, ``generate``) are importable for the CLI and
for callers who want a single step.
"""

from .errors import (
    CandidateRecordError,
    EngineError,
    InputFormatError,
    RuleDefinitionError,
    RulesetNotFound,
    ScreeningError,
    WorkerError,
)
from .protocol import Ruleset, available_rulesets, load_ruleset
from .record import parse_record, record_json_schema
from .screen import Screener, screen_items, screen_one


def __getattr__(name: str) -> object:
    """``screening.CandidateRecord``: the default criteria set's record model (built from its pack)."""
    if name == "CandidateRecord":
        from . import record
        return record.CandidateRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CandidateRecordError",
    "EngineError",
    "InputFormatError",
    "RuleDefinitionError",
    "Ruleset",
    "RulesetNotFound",
    "Screener",
    "ScreeningError",
    "available_rulesets",
    "load_ruleset",
    "parse_record",
    "record_json_schema",
    "screen_items",
    "screen_one",
    "WorkerError",
]
