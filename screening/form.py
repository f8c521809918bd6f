"""The web intake form (``GET /``) and its worklist page (``GET /ui/worklist``), served by the API's app.

The form is generated from the criteria set's pack: every field of its record (``fields.yaml``) with
its question, label and answer format in each language, and every criterion of the set. A field or
criterion added to a pack appears without a template edit; a pack with fewer fields gets a shorter
form. The pages are rendered on the server (Jinja2 templates in ``screening/templates``) and driven
by plain JavaScript and CSS shipped in ``screening/static`` (no CDN, no build step).

After each answer the page asks ``POST /form/plan`` (not logged) for the decision and the questions
of :func:`screening.ask.question_order`, best first; "Save" is ``POST /screen`` (logged). Opening a
candidate from the worklist page resumes its latest record through ``POST /form/resume``. The pages
put no candidate data in a URL: candidate ids and records travel in request bodies only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from .ask import QuestionOrder
from .fields import FieldSpec, field_answer
from .i18n import DEFAULT_LANG, DRAFT_NOTE, LANGUAGES, MESSAGES, status_word
from .log import ScreeningLog
from .protocol import Ruleset

#: The largest body the form's endpoints take (one record).
MAX_FORM_BYTES = 1 << 20


@dataclass
class FormField:
    """One field of the form, in every language the set speaks."""

    path: str
    name: str
    type: str
    required: bool
    label: dict[str, str]
    question: dict[str, str]
    answer: dict[str, str]
    help: str
    values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: an object's fields
    fields: list[FormField] = field(default_factory=list)
    #: a list's item fields (entries of objects), or one field for a list of values
    items: list[FormField] = field(default_factory=list)
    #: a list of values (not of objects): its one item field holds each entry
    scalar: bool = False

    @property
    def dom_id(self) -> str:
        return "f-" + self.path.replace(".", "-")


def form_fields(ruleset: Ruleset, langs: tuple[str, ...] | None = None) -> list[FormField]:
    """The record's fields as the form shows them, in the pack's order."""
    spoken = langs or tuple(lang for lang in LANGUAGES if ruleset.speaks(lang))

    def make(spec: FieldSpec) -> FormField:
        label = {lang: spec.labels.get(lang) or spec.label or spec.name for lang in spoken}
        question = {lang: spec.question.get(lang) or spec.question.get(DEFAULT_LANG) or label[lang] for lang in spoken}
        answer = {lang: field_answer(spec, lang) for lang in spoken}
        out = FormField(path=spec.path, name=spec.name, type=spec.type, required=spec.required, label=label,
                        question=question, answer=answer, help=spec.help, values=spec.values,
                        minimum=spec.minimum, maximum=spec.maximum)
        if spec.type == "object":
            out.fields = [make(child) for child in spec.fields.values()]
        elif spec.type == "list" and spec.items is not None:
            item = spec.items
            out.items = [make(child) for child in item.fields.values()] if item.type == "object" else [make(item)]
            out.scalar = item.type != "object"
        return out

    return [make(spec) for spec in ruleset.record.root.fields.values()]


def _words(keys: list[str], langs: tuple[str, ...]) -> dict[str, dict[str, str]]:
    return {key: {lang: MESSAGES[key].get(lang) or MESSAGES[key][DEFAULT_LANG] for lang in langs} for key in keys}


def _page_words() -> list[str]:
    """The tool's words the pages use: the form's own, and the three decisions."""
    return [key for key in MESSAGES if key.startswith("form_")] + ["eligible", "excluded", "undetermined"]


def page_data(ruleset: Ruleset, *, auth: bool) -> dict[str, Any]:
    """What the pages' script needs: the tool's words, box labels, criteria and status words, in every language."""
    langs = tuple(lang for lang in LANGUAGES if ruleset.speaks(lang))
    words = _words(_page_words(), langs)
    statuses = {status: {lang: status_word(status, lang) for lang in langs}
                for status in ("met", "not_met", "unknown", "review")}
    boxes = {box: {lang: ruleset.label(box, lang) for lang in langs} for box in _boxes(ruleset)}
    return {"languages": list(langs), "words": words, "statuses": statuses, "boxes": boxes, "auth": auth,
            "pending": sorted({ruleset.consort["undetermined"], ruleset.consort["eligible_pending"]}),
            "randomized": ruleset.consort["eligible"]}


def script_json(data: Any) -> str:
    """JSON to put inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u003c`` etc., so no
    text of a pack (``</script>``, ``<!--<script``) can end the element or change how it is parsed
    (U+2028 and U+2029 too, for older script parsers)."""
    text = json.dumps(data, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _boxes(ruleset: Ruleset) -> list[str]:
    consort = ruleset.consort
    boxes: list[str] = list(consort.get("categories", []))
    for subs in (consort.get("subcategories") or {}).values():
        boxes.extend(subs)
    return boxes


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("screening", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env


def mount_form(app: FastAPI, ruleset: Ruleset, log: ScreeningLog, *, auth: bool,
               screener_for: Callable[..., str], lang_of: Callable[..., str]) -> None:
    """Add the form's pages, static files and its two endpoints to the API's app."""
    from .service import JSON_TYPES, _body, _json, _problem

    env = _environment()
    langs = tuple(lang for lang in LANGUAGES if ruleset.speaks(lang))
    fields = form_fields(ruleset, langs)
    data = script_json(page_data(ruleset, auth=auth))
    criteria = [{"id": c.id, "kind": c.kind, "title": {lang: c.title_in(lang) for lang in langs}}
                for c in ruleset.ordered]
    words = _words(_page_words(), langs)
    common = {"langs": langs, "words": words, "data": data, "ruleset": ruleset, "auth": auth,
              "draft": {lang: ruleset.translations.get(lang) or DRAFT_NOTE.get(lang, "") for lang in langs
                        if lang != DEFAULT_LANG}}
    form_page = env.get_template("form.html").render(fields=fields, criteria=criteria, **common)
    worklist_page = env.get_template("worklist.html").render(**common)
    orders = {lang: QuestionOrder(ruleset, lang=lang) for lang in langs}
    app.mount("/ui/static", StaticFiles(packages=[("screening", "static")]), name="ui-static")

    @app.get("/", include_in_schema=False)
    def form() -> HTMLResponse:
        return HTMLResponse(form_page, headers=_NO_STORE)

    @app.get("/ui/worklist", include_in_schema=False)
    def worklist_ui() -> HTMLResponse:
        return HTMLResponse(worklist_page, headers=_NO_STORE)

    @app.post("/form/plan", summary="The decision for a partial record and the questions still open, most decisive "
                                    "first (not logged)")
    async def plan(request: Request, _who: str = Depends(screener_for), lang: str = Depends(lang_of)) -> Response:
        body = await _body(request, MAX_FORM_BYTES, JSON_TYPES)
        if isinstance(body, Response):
            return body
        try:
            record = json.loads(body)
        except (ValueError, RecursionError):
            return _problem(422, "the body is not JSON")
        if not isinstance(record, dict):
            return _problem(422, "the body is one record: a JSON object")
        try:
            result = await run_in_threadpool(orders[lang], record)
        except RecursionError:
            return _problem(422, "the record is nested too deeply")
        return _json(result.to_dict())

    @app.post("/form/resume", summary="A candidate's latest record in the screening log, to go on with in the form")
    async def resume(request: Request, _who: str = Depends(screener_for)) -> Response:
        body = await _body(request, 4096, JSON_TYPES)
        if isinstance(body, Response):
            return body
        try:
            asked = json.loads(body)
            candidate_id, site = asked["candidate_id"], asked.get("site")
        except (ValueError, KeyError, TypeError):
            return _problem(422, "the body is {\"candidate_id\": ..., \"site\": ...}")
        if not isinstance(candidate_id, str) or not (site is None or isinstance(site, str)):
            return _problem(422, "candidate_id and site are text")
        found = await run_in_threadpool(log.latest, candidate_id, site)
        if found is None:
            return _problem(404, "no decision for this candidate at this site in the screening log")
        row, text = found
        try:
            record = json.loads(text) if text else None
        except (ValueError, RecursionError):  # kept as read (not a JSON object): the form starts from the row
            record = None
        return JSONResponse({"record": record if isinstance(record, dict) else None, "decision": row})


#: The pages hold no candidate data, but a form's state should not be kept by shared caches either.
_NO_STORE = {"Cache-Control": "no-store"}
