"""FHIR R4B out: decisions as ``ResearchSubject`` resources, a criteria set as ``EvidenceVariable`` s.

* :func:`research_subjects` turns decision rows into ResearchSubject resources: the status from the
  pack's ``fhir.yaml`` (``export.subject_status``: decision/category -> research-subject-status), the
  ``study`` and ``individual`` references, and the reasons in a note (R4B's ResearchSubject has no
  ``note`` element: an Annotation extension, and the narrative).
* :func:`criteria_bundle` writes a criteria set as a Bundle: the set as a ``ResearchStudy`` and one
  ``EvidenceVariable`` per criterion (its text, definition, sources, and characteristics with the
  codes of the set's value sets, ``exclude`` when meeting them rules the candidate out), linked both
  ways by ``relatedArtifact``.

Both validate against the ``fhir.resources`` R4B models (tests/test_fhir_export.py). The codes, the
statuses per box and the study's registry come from the pack, not from here.
"""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .describe import condition_text
from .errors import RuleDefinitionError
from .fhir_import import load_mapping
from .protocol import Condition, Criterion, Ruleset, load_pack, read_yaml_file

#: FHIR R4B research-subject-status and research-study-status (the code lists the exported
#: resources must use; FHIR's vocabulary, not a trial's).
SUBJECT_STATUSES = ("candidate", "eligible", "follow-up", "ineligible", "not-registered", "off-study", "on-study",
                    "on-study-intervention", "on-study-observation", "pending-on-study", "potential-candidate",
                    "screening", "withdrawn")
STUDY_STATUSES = ("active", "administratively-completed", "approved", "closed-to-accrual",
                  "closed-to-accrual-and-intervention", "completed", "disapproved", "in-review",
                  "temporarily-closed-to-accrual", "temporarily-closed-to-accrual-and-intervention", "withdrawn")
#: The extension that carries a decision's reasons on a ResearchSubject (R4B has no note there).
NOTE_EXTENSION = "urn:nlc-screen:extension:screening-note"
#: The identifier system of candidate ids when no other is given (site and candidate id together).
CANDIDATE_SYSTEM = "urn:nlc-screen:candidate"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_DECISIONS = ("eligible", "excluded", "undetermined")


@dataclass(frozen=True)
class ExportSpec:
    """The pack's ``export`` section of ``fhir.yaml``, checked against the set."""

    registry_system: str
    registration: str
    title: str
    study_status: str
    subject_status: dict[tuple[str, str], str]
    systems: dict[str, str]  # snomed | icd10 | rxnorm | atc -> the URI exported


def load_export(ruleset: Ruleset) -> ExportSpec:
    """:raises RuleDefinitionError: naming the key of ``fhir.yaml`` that is wrong."""
    mapping = load_mapping(ruleset)
    assert ruleset.pack_dir is not None  # load_mapping refuses a set of no pack
    shown = f"{ruleset.pack_dir.name}/fhir.yaml"
    raw = read_yaml_file(ruleset.pack_dir / "fhir.yaml", display=shown).get("export")

    def fail(message: str, key: str) -> RuleDefinitionError:
        return RuleDefinitionError(message, file=shown, field=key)
    if not isinstance(raw, dict):
        raise fail("must be a mapping (the pack's FHIR export)", "export")
    unknown = sorted(set(raw) - {"registry_system", "study_status", "subject_status"})
    if unknown:
        raise fail("unknown key", f"export.{unknown[0]}")
    if raw.get("study_status") not in STUDY_STATUSES:
        raise fail(f"one of {', '.join(STUDY_STATUSES)}", "export.study_status")
    system = raw.get("registry_system")
    if not isinstance(system, str) or ":" not in system:
        raise fail("a URI", "export.registry_system")
    statuses = raw.get("subject_status")
    if not isinstance(statuses, dict):
        raise fail("must map decision/category to a ResearchSubject status", "export.subject_status")
    categories = tuple(ruleset.consort.get("categories", ()))
    subject: dict[tuple[str, str], str] = {}
    for key, value in statuses.items():
        decision, _, category = str(key).partition("/")
        if decision not in _DECISIONS or category not in categories:
            raise fail(f"decision/category: a decision ({', '.join(_DECISIONS)}) and a category of the set "
                       f"({', '.join(categories)})", f"export.subject_status.{key}")
        if value not in SUBJECT_STATUSES:
            raise fail(f"one of {', '.join(SUBJECT_STATUSES)}", f"export.subject_status.{key}")
        subject[(decision, category)] = str(value)
    pack = load_pack(ruleset.pack_dir)
    systems: dict[str, str] = {}
    for uri, name in mapping.systems.items():
        systems.setdefault(name, uri)
    return ExportSpec(system, pack.registration, pack.title, raw["study_status"], subject, systems)


def study_id(ruleset: Ruleset, name: str | None = None) -> str:
    """The ResearchStudy's id for a criteria set of the pack (``nlc-k2-paper-2024``)."""
    return f"{ruleset.pack or 'set'}-{name or ruleset.name}"


def _full_url(text: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, text)}"


def _canonical(ruleset: Ruleset, cid: str) -> str:
    return f"urn:nlc-screen:{ruleset.pack or 'set'}:{ruleset.name}:{cid}"


# ---------------------------------------------------------------------------------------------
# Decisions -> ResearchSubject


@dataclass
class ExportStats:
    written: int = 0
    errors: int = 0      # error rows: no candidate to export
    other: int = 0       # a decision/category the pack maps to no status


def research_subjects(rows: Iterable[dict[str, Any]], ruleset: Ruleset, *, id_system: str | None = None,
                      stats: ExportStats | None = None) -> Iterator[dict[str, Any]]:
    """One ResearchSubject per decision row (error rows and boxes without a status are counted in
    ``stats`` and skipped)."""
    spec = load_export(ruleset)
    stats = stats if stats is not None else ExportStats()
    for row in rows:
        if row.get("decision") == "error":
            stats.errors += 1
            continue
        status = spec.subject_status.get((str(row.get("decision")), str(row.get("category"))))
        if status is None:
            stats.other += 1
            continue
        stats.written += 1
        yield _subject(row, status, spec, ruleset, id_system)


def bundle_entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as an entry of a Bundle, its fullUrl a stable ``urn:uuid`` of its type and id."""
    return {"fullUrl": _full_url(f"urn:nlc-screen:{resource['resourceType']}/{resource['id']}"), "resource": resource}


def _subject(row: dict[str, Any], status: str, spec: ExportSpec, ruleset: Ruleset, id_system: str | None) -> dict[str, Any]:
    cid, site = str(row["candidate_id"]), row.get("site")
    stamp = row.get("ruleset") or ruleset.stamp
    key = hashlib.sha256(f"{stamp.get('name')}|{site or ''}|{cid}".encode()).hexdigest()[:32]
    if id_system is not None:
        individual: dict[str, Any] = {"identifier": {"system": id_system, "value": cid}}
    elif _FHIR_ID.match(cid):
        individual = {"reference": f"Patient/{cid}"}
    else:
        individual = {"identifier": {"system": CANDIDATE_SYSTEM, "value": cid}}
    if site:
        individual["display"] = f"candidate {cid} at {site}"
    study: dict[str, Any] = {"reference": f"ResearchStudy/{study_id(ruleset, stamp.get('name'))}",
                             "display": f"{stamp.get('name')} {stamp.get('version')}"}
    if spec.registration:
        study["identifier"] = {"system": spec.registry_system, "value": spec.registration}
    note = _note(row, ruleset)
    return {
        "resourceType": "ResearchSubject", "id": f"rs-{key}",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
                 + "</p><p>".join(html.escape(line) for line in note.splitlines()) + "</p></div>"},
        "extension": [{"url": NOTE_EXTENSION, "valueAnnotation": {"text": note}}],
        "identifier": [{"system": CANDIDATE_SYSTEM, "value": f"{site}/{cid}" if site else cid}],
        "status": status, "study": study, "individual": individual,
    }


def _note(row: dict[str, Any], ruleset: Ruleset) -> str:
    """The decision in words: the box, the deciding criterion, and every criterion that rules the
    candidate out, is unknown or needs review (its status and reason); what to ask; the warnings."""
    box = " / ".join(str(p) for p in (row.get("category"), row.get("subcategory")) if p)
    stamp = row.get("ruleset") or {}
    lines = [f"{row.get('decision')} ({box}); decided by {row.get('primary_criterion')}; "
             f"criteria set {stamp.get('name')} {stamp.get('version')}"]
    for cid, result in (row.get("criteria") or {}).items():
        status = result.get("status")
        criterion = ruleset.criteria.get(cid)
        if cid == row.get("primary_criterion") or status in ("unknown", "review") or \
                (criterion is not None and criterion.fails(str(status))):
            lines.append(f"{cid} {status}: {result.get('reason', '')}")
    if row.get("ask_next"):
        lines.append("ask next: " + ", ".join(map(str, row["ask_next"])))
    lines += [f"warning: {w}" for w in row.get("warnings") or []]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# A criteria set -> ResearchStudy + EvidenceVariables


def _facts(cond: Condition) -> list[str]:
    if cond[0] in ("all", "any"):
        return [f for c in cond[1] for f in _facts(c)]
    return [str(cond[1])]


def _code_characteristics(ruleset: Ruleset, spec: ExportSpec, facts: list[str], exclude: bool,
                          seen: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    catalogue = ruleset.catalogue.facts
    for fact in facts:
        kind = catalogue.get(fact)
        if kind is None:
            continue
        for key, entry in ruleset.condition_codes.items():
            target = entry["record_field"]
            if not any(target == read or target.startswith(read + ".") for read in kind.reads) or key in seen:
                continue
            seen.add(key)
            codings = [{"system": spec.systems[group], "code": code["code"], "display": code.get("display", "")}
                       for group in ("snomed", "icd10") if group in spec.systems
                       for code in entry.get(group) or [] if code.get("maps_to") != "screener"]
            codings += [{"system": spec.systems[code["system"]], "code": code["code"],
                         "display": code.get("display", "")}
                        for code in entry.get("procedures") or []
                        if code["system"] in spec.systems and code.get("maps_to") != "screener"]
            if not codings:
                continue
            out.append({
                "description": f"{target} — codes of the value set {key} (ICD-10 codes stand for their "
                               f"descendants where the value set says prefix; codes that only suggest it are "
                               f"shown to the screener, not listed)" + (f": {entry['note'].strip()}" if entry.get("note")
                                                                         else ""),
                "definitionCodeableConcept": {"coding": codings, "text": key.replace("_", " ")},
                "exclude": exclude})
        for name in kind.classes:
            cls = ruleset.drug_classes.get(name)
            if cls is None or name in seen:
                continue
            seen.add(name)
            codings = [{"system": spec.systems["atc"], "code": code} for code in cls.atc if "atc" in spec.systems]
            codings += [{"system": spec.systems["rxnorm"], "code": code} for code in sorted(cls.rxnorm, key=int)
                        if "rxnorm" in spec.systems]
            words = [" ".join(term) for term in cls.names] + list(cls.cjk_names)
            out.append({
                "description": f"drug class {name}: {cls.title} (ATC codes stand for their descendants; also matched "
                               f"by ingredient or brand word: {', '.join(words)})",
                "definitionCodeableConcept": {"coding": codings, "text": cls.title},
                "exclude": exclude})
    return out


def _evidence_variable(ruleset: Ruleset, spec: ExportSpec, criterion: Criterion, study_url: str) -> dict[str, Any]:
    characteristics: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rule in criterion.rules:
        if rule.status not in ("met", "not_met"):
            continue
        exclude = criterion.fails(rule.status)
        coded = _code_characteristics(ruleset, spec, _facts(rule.when), exclude, seen)
        characteristics += coded
        if not coded and not any(k in seen for k in _facts(rule.when)):
            characteristics.append({
                "description": f"{criterion.id} is {rule.status} when {condition_text(rule.when)}",
                "definitionExpression": {"language": "text/x-nlc-screen-condition",
                                         "expression": condition_text(rule.when),
                                         "description": "a condition on the facts the pack derives (rules/README.md)"},
                "exclude": exclude})
    if not characteristics:
        characteristics.append({"description": f"{criterion.default.status} unless a rule says otherwise",
                                "definitionCodeableConcept": {"text": criterion.title}, "exclude": False})
    rules = "; ".join(f"{r.status} when {condition_text(r.when)}" for r in criterion.rules)
    notes = [f"{criterion.kind} criterion {criterion.id}; CONSORT box {criterion.category}"
             + (f" / {criterion.subcategory}" if criterion.subcategory else "")
             + f"; specification {criterion.spec}",
             f"Definition (criteria set {ruleset.name} {ruleset.version}): {rules}; otherwise "
             f"{criterion.default.status}. Missing data is unknown, never not_met."]
    related = [{"type": "derived-from", "display": f"ResearchStudy {spec.registration or ruleset.name}",
                "url": study_url}]
    related += [{"type": "citation", "label": tag, "citation": ruleset.sources[tag]} for tag in criterion.sources
                if tag in ruleset.sources]
    return {
        "resourceType": "EvidenceVariable", "id": f"{ruleset.name}-{criterion.id.lower()}",
        "url": _canonical(ruleset, criterion.id), "version": ruleset.version, "name": criterion.id,
        "title": criterion.title, "status": "active", "description": criterion.protocol_text,
        "note": [{"text": text} for text in notes], "relatedArtifact": related,
        "characteristic": characteristics,
    }


def criteria_bundle(ruleset: Ruleset) -> dict[str, Any]:
    """The criteria set as a FHIR R4B Bundle (type collection): its ResearchStudy first, then one
    EvidenceVariable per criterion in precedence order."""
    spec = load_export(ruleset)
    sid = study_id(ruleset)
    study_url = _full_url(f"{_canonical(ruleset, 'ResearchStudy')}|{ruleset.version}")
    variables = [_evidence_variable(ruleset, spec, c, study_url) for c in ruleset.ordered]
    study: dict[str, Any] = {
        "resourceType": "ResearchStudy", "id": sid, "title": spec.title, "status": spec.study_status,
        "description": ruleset.description or ruleset.title,
        "note": [{"text": f"Eligibility criteria: set {ruleset.name} {ruleset.version} (sha256 {ruleset.sha256}), "
                          f"one EvidenceVariable per criterion, in precedence order"}],
        "relatedArtifact": [{"type": "composed-of", "label": v["name"], "display": v["title"],
                             "resource": f"{v['url']}|{ruleset.version}"} for v in variables],
    }
    if spec.registration:
        study["identifier"] = [{"system": spec.registry_system, "value": spec.registration}]
    entries = [{"fullUrl": study_url, "resource": study}]
    entries += [{"fullUrl": _full_url(f"{v['url']}|{ruleset.version}"), "resource": v} for v in variables]
    return {"resourceType": "Bundle", "id": f"{sid}-{ruleset.version}".replace("_", "-")[:64],
            "type": "collection", "entry": entries}
