"""nlc-screen: eligibility screening for the vitamin K2 nocturnal leg cramps trial (NCT05547750).

The public surface; the CLI and the HTTP API use only these names.
"""

from .errors import (
    CandidateRecordError,
    EngineError,
    InputFormatError,
    RuleDefinitionError,
    RulesetNotFound,
    ScreeningError,
)
from .protocol import Ruleset, available_rulesets, load_ruleset
from .record import CandidateRecord, parse_record, record_json_schema
from .screen import Screener, screen_items, screen_one

__all__ = [
    "CandidateRecord",
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
]
