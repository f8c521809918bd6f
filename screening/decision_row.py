"""The decision row as a typed model, and its JSON Schema for one criteria set.

This is the published contract of what ``screen`` writes, one row per input record
(shared/intake-record.md, "Decision"): a :class:`DecisionRow` for a record that was screened, an
:class:`ErrorRow` for one that could not be read. It is a contract and a validator, not a step of
the pipeline: the hot path (:mod:`screening.decision`, :mod:`screening.screen`) keeps building plain
dicts that orjson writes, and the tests check that every row it writes validates here.

The models are generic: a category, subcategory or criterion id is any string. What a criteria set
can actually write comes from the set itself (its ``consort`` boxes, its criteria and their
precedence), so :func:`decision_json_schema` narrows the generic schema to one set: its categories,
subcategories and criterion ids, the combinations of decision, box and primary criterion it can
produce, its stamp and the parameters it stamps. ``nlc-screen schema --decision [--rules NAME]``
prints it.

Example::

    import jsonschema
    from screening import load_ruleset
    from screening.decision_row import decision_json_schema
    jsonschema.Draft202012Validator(decision_json_schema(load_ruleset())).validate(row)
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import SkipJsonSchema

if TYPE_CHECKING:
    from .protocol import Ruleset

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Status = Literal["met", "not_met", "unknown", "review"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionResult(_Strict):
    """How one criterion came out for the candidate, and why."""

    status: Status = Field(description=(
        "met | not_met | unknown | review. For an exclusion criterion `met` means the exclusion applies; "
        "`unknown`: the record lacks what the criterion needs; `review`: an investigator must decide."))
    reason: str = Field(min_length=1, description="A plain sentence quoting the values the status was decided on.")
    decide: str | None = Field(default=None, min_length=1, description=(
        "With status `review`: what the investigator must decide, and what to record in the candidate's record."))


class RulesetStamp(_Strict):
    """The criteria set that produced the row. A released version never changes, so any logged row can be
    re-derived from it."""

    name: str = Field(min_length=1, description="The criteria set's name.")
    version: str = Field(min_length=1, description="The criteria set's version.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description=(
        "SHA-256 of everything the set loads (criteria, parameters, value sets), lower-case hex."))


class Parameters(BaseModel):
    """The parameter values the decision was made with, as the criteria set stamps them."""

    model_config = ConfigDict(extra="allow")

    criteria_set: str = Field(min_length=1, description="The criteria set's name (as in `ruleset.name`).")


class CriteriaSetDifference(_Strict):
    """The other criteria set (``screen --compare-with``) decides this candidate differently."""

    set: str = Field(min_length=1, description="The other criteria set's name.")
    version: str = Field(min_length=1, description="The other criteria set's version.")
    decision: Literal["eligible", "excluded", "undetermined"] = Field(description="Its decision.")
    category: str = Field(min_length=1, description="Its CONSORT box (one of the other set's categories).")
    subcategory: str | None = Field(description="Its sub-box, or null.")
    primary_criterion: str = Field(min_length=1, description="The criterion that decided its category.")
    differs_on: list[str] = Field(description=(
        "The criteria (ids of this row's set) whose status differs under the other set, in precedence order."))


class CriteriaSetError(_Strict):
    """The other criteria set (``screen --compare-with``) could not screen the record."""

    set: str = Field(min_length=1, description="The other criteria set's name.")
    version: str = Field(min_length=1, description="The other criteria set's version.")
    decision: Literal["error"] = Field(description="Always `error`.")
    error: str = Field(min_length=1, description="Why, naming the record and field (never the value).")


_ROW_CANDIDATE = ("As given in the record; in an error row for a record whose id could not be read, its "
                  "position in the input (e.g. `line 17`).")
_ROW_WARNINGS = ("Plain sentences a screener must see that do not change the decision (e.g. a second record for "
                 "the same candidate in the batch). An empty list, or absent, when there are none.")


class DecisionRow(_Strict):
    """The reasoned decision for one candidate record that could be read."""

    candidate_id: str = Field(description=_ROW_CANDIDATE)
    site: str | None = Field(description="The screening centre, or null when the record names none.")
    decision: Literal["eligible", "excluded", "undetermined"] = Field(description=(
        "`excluded`: some criterion rules the candidate out (inclusion or procedural criterion not met, exclusion "
        "met); `undetermined`: nothing rules them out but a criterion is unknown or needs review; "
        "`eligible`: every eligibility criterion passes."))
    category: str = Field(description="The CONSORT box the candidate is counted in (one of the set's categories).")
    subcategory: str | None = Field(description=(
        "The sub-box of an exclusion box that has them (one of the set's subcategories), else null."))
    primary_criterion: str = Field(description=(
        "The criterion that decided the category, by the set's precedence: the first failing one, the first open "
        "one, or the procedural one for an eligible candidate."))
    criteria: dict[str, CriterionResult] = Field(description="Every criterion of the set, by id, in precedence order.")
    ask_next: list[str] = Field(default_factory=list, description=(
        "Record field paths whose answers could change the decision, most decisive first: filled for "
        "`undetermined`, and for `eligible` awaiting a procedural criterion. An empty list, or absent, otherwise."))
    warnings: list[str] = Field(default_factory=list, description=_ROW_WARNINGS)
    ruleset: RulesetStamp = Field(description="The criteria set that produced the row.")
    parameters: Parameters = Field(description="The parameter values the decision was made with.")
    criteria_set_check: CriteriaSetDifference | CriteriaSetError | SkipJsonSchema[None] = Field(
        default=None, description=(
            "Only with `screen --compare-with`, and only when the other set decides differently (decision, "
            "category or subcategory) or cannot screen the record."))
    record: dict[str, Any] | SkipJsonSchema[None] = Field(default=None, description=(
        "Only with `screen --include-record`: the validated intake record, so the decision can be re-derived "
        "under another criteria set."))


class ErrorRow(_Strict):
    """The one row of an input record that could not be read."""

    candidate_id: str = Field(description=_ROW_CANDIDATE)
    site: str | None = Field(description="The screening centre when it could be read, else null.")
    decision: Literal["error"] = Field(description="Always `error`.")
    category: Literal["error"] = Field(description="Always `error`: the record is not assessed.")
    error: str = Field(min_length=1, description=(
        "Where the record is (line, index, candidate) and which field was wrong and why; never the value."))
    error_fields: list[str] = Field(description=(
        "The field paths at fault; an empty string when it is the record as a whole."))
    warnings: list[str] = Field(default_factory=list, description=_ROW_WARNINGS)
    ruleset: RulesetStamp = Field(description="The criteria set the record was to be screened with.")


Row = Annotated[DecisionRow | ErrorRow, Field(discriminator="decision")]
ROW_ADAPTER: TypeAdapter[DecisionRow | ErrorRow] = TypeAdapter(Row)


def decision_json_schema(ruleset: Ruleset | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of every row ``screen`` writes.

    With a ``ruleset``, the schema is that set's: categories, subcategories and criterion ids are
    restricted to the set's, each row must be a combination of decision, box and primary criterion
    the set can produce, and the stamp and stamped parameters are the set's. Without one, the
    generic schema of any set's rows.
    """
    schema = ROW_ADAPTER.json_schema()
    schema = {"$schema": JSON_SCHEMA_DIALECT, **schema}
    if ruleset is None:
        schema["title"] = "nlc-screen decision row v1"
        schema["description"] = ("One row per input record: a decision, or an error row for a record that could "
                                 "not be read (shared/intake-record.md, \"Decision\").")
        return schema
    _narrow(schema, ruleset)
    return schema


def _narrow(schema: dict[str, Any], ruleset: Ruleset) -> None:
    from .decision import describe_parameters
    from .record import record_json_schema

    defs: dict[str, Any] = schema["$defs"]
    consort = ruleset.consort
    ids = list(ruleset.precedence)
    categories = list(consort["categories"])
    subcategories = [s for box in consort["subcategories"].values() for s in box]
    labels: dict[str, str] = consort.get("labels") or {}
    schema["title"] = f"nlc-screen decision row v1 — criteria set {ruleset.name} {ruleset.version}"
    schema["description"] = (f"One row per input record screened with {ruleset.name} {ruleset.version} "
                             f"(sha256 {ruleset.sha256}): a decision, or an error row for a record that could not "
                             f"be read (shared/intake-record.md, \"Decision\").")

    row = defs["DecisionRow"]
    props = row["properties"]
    props["category"] = {**_doc(props["category"]), "enum": categories}
    props["subcategory"] = {**_doc(props["subcategory"]), "anyOf": [{"enum": subcategories}, {"type": "null"}]}
    props["primary_criterion"] = {**_doc(props["primary_criterion"]), "enum": ids}
    props["criteria"] = {
        **_doc(props["criteria"]),
        "type": "object",
        "properties": {c.id: {"$ref": "#/$defs/CriterionResult", "description": f"{c.id} ({c.kind}): {c.title}"}
                       for c in ruleset.ordered},
        "required": ids,
        "additionalProperties": False,
    }
    props["ask_next"]["items"] = {"enum": list(ruleset.record.paths)}
    row["anyOf"] = _outcomes(ruleset, labels)

    stamp = defs["RulesetStamp"]["properties"]
    for key, value in ruleset.stamp.items():
        stamp[key]["const"] = value
    defs["Parameters"]["properties"] = {
        key: {"const": value, **({"description": "The criteria set's name."} if key == "criteria_set" else {})}
        for key, value in describe_parameters(ruleset).items()}
    defs["Parameters"]["required"] = list(defs["Parameters"]["properties"])
    defs["Parameters"]["additionalProperties"] = False
    defs["CriteriaSetDifference"]["properties"]["differs_on"]["items"] = {"enum": ids}

    record = copy.deepcopy(record_json_schema(ruleset.record.model, ruleset.record.title))
    record.pop("$schema", None)
    record_defs = record.pop("$defs", {})
    prefix = "CandidateRecord."
    for name, sub in record_defs.items():
        defs[prefix + name] = _rebase(sub, prefix)
    defs["CandidateRecord"] = _rebase(record, prefix)
    props["record"] = {**_doc(props["record"]), "$ref": "#/$defs/CandidateRecord"}


def _doc(prop: dict[str, Any]) -> dict[str, Any]:
    """A property's title and description, without its generic type."""
    return {k: prop[k] for k in ("title", "description") if k in prop}


def _rebase(node: Any, prefix: str) -> Any:
    """``node`` with every ``#/$defs/NAME`` reference renamed ``#/$defs/<prefix>NAME``."""
    if isinstance(node, dict):
        return {k: (f"#/$defs/{prefix}{v[len('#/$defs/'):]}" if k == "$ref" and isinstance(v, str)
                    and v.startswith("#/$defs/") else _rebase(v, prefix)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, prefix) for v in node]
    return node


def _outcomes(ruleset: Ruleset, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The combinations of decision, category, subcategory and primary criterion the set can produce
    (see :class:`screening.decision.Decider`), one schema branch each."""
    consort = ruleset.consort
    groups: dict[tuple[str, str, str | None], list[str]] = {}
    for crit in ruleset.ordered:  # the first failing criterion decides the box
        groups.setdefault(("excluded", crit.category, crit.subcategory), []).append(crit.id)
    open_ = [c.id for c in ruleset.ordered if c.kind != "procedural"]
    if open_:  # the first open eligibility criterion is primary
        groups[("undetermined", consort["undetermined"], None)] = open_
    procedural = [c for c in ruleset.ordered if c.kind == "procedural"]
    primary = procedural[0].id if procedural else ruleset.ordered[-1].id
    groups.setdefault(("eligible", consort["eligible"], None), []).append(primary)
    if procedural:  # a procedural criterion still open: eligible, pending
        pending = groups.setdefault(("eligible", consort["eligible_pending"], None), [])
        if primary not in pending:
            pending.append(primary)
    branches = []
    for (decision, category, subcategory), primaries in groups.items():
        label = labels.get(subcategory or category)
        branch: dict[str, Any] = {
            "properties": {"decision": {"const": decision}, "category": {"const": category},
                           "subcategory": {"const": subcategory}, "primary_criterion": {"enum": primaries}}}
        if label:
            branch["description"] = f"{decision}: {label}"
        branches.append(branch)
    return branches
