"""The names rules may use: derived facts (asserted into the engine) and reason context.

Rules in ``rules/`` test *facts* in their conditions and quote facts, context values and parameters
in their reasons. This module lists them, with their types, so that a rules file naming a fact that
does not exist fails when it is loaded ("did you mean …"), not silently at the 400th record.
``screening.facts`` computes exactly these names: ``tests/test_catalogue.py`` checks that the two
agree (every derived fact is listed here with a value of its kind, every fact listed here is derived
for a full record, and every name a reason may quote is set).

A fact whose value is unknown is *absent* from the engine's fact; enum facts use the explicit word
``unknown`` where the record says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .record import CONDITION_KEYS, DIFFERENTIAL_KEYS


@dataclass(frozen=True)
class FactType:
    kind: str  # "int" or "enum"
    values: tuple[str, ...] = ()
    doc: str = ""


CONDITION_VALUES = ("active", "history", "absent", "unknown")
EXPOSURE_VALUES = ("inside", "unknown", "outside", "none")
YES_NO_UNKNOWN = ("yes", "no", "unknown")
SITE_VALUES = ("listed", "other", "unknown")


def fact_types(drug_classes: tuple[str, ...], site_lists: tuple[str, ...]) -> dict[str, FactType]:
    """Every engine fact, for a ruleset whose value sets define these drug classes and site lists."""
    facts: dict[str, FactType] = {
        "age_years": FactType("int", doc="completed years on the age reference date; absent if birth_date is unknown"),
        "age_years_at_enrollment": FactType("int", doc="completed years on enrollment_date; absent if birth_date is unknown"),
        "episodes_in_window": FactType("int", doc="diary episodes with night_of in D0 … D0+13"),
        "episodes_outside_window": FactType("int", doc="diary episodes outside the window (ignored)"),
        "diary_nights": FactType("int", doc="diary.nights_recorded; absent if unknown"),
        "nlc_confirmed": FactType("enum", YES_NO_UNKNOWN, "nlc_assessment.confirmed"),
        "differentials_explaining": FactType("int", doc="differentials recorded as explains_symptoms"),
        "differentials_unassessed": FactType("int", doc="differentials missing or not_assessed"),
        "differentials_coexisting": FactType("int", doc="differentials recorded as coexisting"),
        "med_history": FactType("enum", ("taken", "not_taken"), "medication_history_taken is true, or not"),
        "consent": FactType("enum", ("pending", "signed", "declined", "withdrawn"), "consent (default pending)"),
        "cirrhosis_ascites_paracentesis": FactType("enum", YES_NO_UNKNOWN,
                                                   "conditions.liver_cirrhosis_ascites_paracentesis"),
    }
    for key in CONDITION_KEYS:
        facts[f"cond_{key}"] = FactType("enum", CONDITION_VALUES, f"conditions.{key}")
    for name in drug_classes:
        facts[f"exp_{name}"] = FactType("enum", EXPOSURE_VALUES, f"exposure to drug class {name} in the look-back")
    for name in site_lists:
        facts[f"tumor_site_{name}"] = FactType("enum", SITE_VALUES,
                                               f"conditions.malignant_tumor_site against site list {name}")
    return facts


def context_names(drug_classes: tuple[str, ...], site_lists: tuple[str, ...]) -> set[str]:
    """Names a reason may quote besides facts and parameters (display values, notes)."""
    names = {
        "candidate_id", "birth_date", "screening_start", "window_end", "enrollment_date", "enrollment_note",
        "age_reference_date", "min_age_birthday", "lookback_start", "episodes_outside_note", "diary_state",
        "differentials_explaining_names", "differentials_unassessed_names", "differentials_coexisting_names",
        "malignant_tumor_site",
    }
    for name in drug_classes:
        names |= {f"exp_{name}_drug", f"exp_{name}_when", f"exp_{name}_clear"}
    return names


def list_context_names() -> set[str]:
    """Context names that hold lists of record field paths, usable in ``ask`` as ``@name``."""
    return {"differentials_open_fields", "differentials_unassessed_fields", "differentials_coexisting_fields"}


DIFFERENTIAL_FIELDS = tuple(f"nlc_assessment.differentials.{k}" for k in DIFFERENTIAL_KEYS)
