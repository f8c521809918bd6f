"""The HTTP API: ``nlc-screen serve``. A thin layer over the same library calls as the command line.

Endpoints (OpenAPI at ``/openapi.json``, docs at ``/docs``, served from the package: no CDN):

* ``POST /screen`` — one record (JSON) → its decision, appended to the screening log; a record that
  cannot be read → 422 naming its fields (never their values).
* ``POST /screen/batch`` — a JSON array, or JSON Lines as ``application/x-ndjson`` → one decision or
  ``error`` row per record, in order, logged in one transaction.
* ``GET /candidates/{candidate_id}?site=S`` — a candidate's decisions, oldest first.
* ``GET /worklist[?site=S]`` — every pending candidate (undetermined, or eligible awaiting consent),
  by site, oldest screening_start first, with the fields still open.
* ``GET /audit[?site=&since=&until=&expect=]`` — the CONSORT counts of the log's current decisions.
* ``GET /rules``, ``GET /schema`` — the criteria set and its record's JSON Schema (public).
* ``GET /`` and ``GET /ui/worklist`` — the web intake form and its worklist page (:mod:`screening.form`),
  with ``POST /form/plan`` (a partial record → its decision and the questions still open, not logged)
  and ``POST /form/resume`` (a candidate's latest record in the log).

Tokens (``NLC_SCREEN_TOKENS="token:screener,…"`` or ``NLC_SCREEN_TOKENS_FILE``, one ``token:screener``
a line): when set, every endpoint that screens, logs or returns candidate data needs
``Authorization: Bearer <token>`` (401 otherwise) and the log records the token's screener. Without
them (one desk on localhost) an ``X-Screener`` header may name the screener.

What a web page elsewhere cannot make a browser do (:class:`RequestGuard`):

* every ``POST`` body declares a JSON media type (``application/json``; ``application/x-ndjson`` for
  a batch; ``application/fhir+json`` for a bundle): anything else is 415, so a cross-site "simple"
  request (``text/plain``, a form post) is never screened or logged;
* a state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) whose ``Origin`` is not the
  service itself (the host and port of its ``Host``) is 403 — requests without an ``Origin``
  (command-line clients) are taken;
* without tokens, only a loopback ``Host`` (``localhost``, ``127.0.0.1``, ``[::1]``, any port) is
  answered (400 otherwise), so a rebound DNS name cannot read the worklist; more names can be
  allowed with ``NLC_SCREEN_ALLOWED_HOSTS`` (comma-separated). With tokens any ``Host`` is answered,
  unless ``NLC_SCREEN_ALLOWED_HOSTS`` is set, which then lists all of them. ``serve`` refuses to bind
  a non-loopback address without tokens (:func:`check_host`).

What the process prints (its own lines and the access log) holds ids, field paths and outcomes only:
never a record's contents.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .audit import audit_rows
from .describe import ruleset_json
from .errors import RuleDefinitionError, RulesetNotFound, ScreeningError
from .i18n import DEFAULT_LANG, LANGUAGES
from .io import Item, read_records
from .log import Entry, ScreeningLog
from .protocol import Ruleset, load_ruleset
from .record import record_json_schema
from .scale import WarmPool
from .screen import Screener, screen_items

#: The largest body ``POST /screen`` takes (one record), and ``POST /screen/batch``.
MAX_RECORD_BYTES = 1 << 20
MAX_BATCH_BYTES = 32 << 20
#: The largest FHIR bundle ``POST /screen`` takes (``application/fhir+json``: one patient's record).
MAX_BUNDLE_BYTES = 32 << 20
#: The media type of a FHIR bundle (FHIR R4 3.1.0.1.5).
FHIR_JSON = "application/fhir+json"
TOKENS_ENV = "NLC_SCREEN_TOKENS"
TOKENS_FILE_ENV = "NLC_SCREEN_TOKENS_FILE"
#: More ``Host`` names the service answers (comma-separated); see :class:`RequestGuard`.
ALLOWED_HOSTS_ENV = "NLC_SCREEN_ALLOWED_HOSTS"
#: The media types a request body may declare (a record, a batch as JSON Lines, a FHIR bundle).
JSON_TYPES = ("application/json",)
BATCH_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/jsonlines")
#: Hosts ``serve`` binds without tokens: this machine only.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: What ``GET /audit?expect=`` takes: the name of one of the pack's expected flows.
_EXPECTATION = re.compile(r"^[a-z0-9][a-z0-9_-]{0,60}$")
#: The request bodies and answers the OpenAPI document shows for the screening endpoints.
_RECORD_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "object",
                                    "description": "One candidate record (GET /schema has its JSON Schema)."}},
    FHIR_JSON: {"schema": {"type": "object", "description": "A FHIR R4 Bundle with exactly one Patient, imported as "
                           "`nlc-screen import fhir` does (query: screening_start, and optionally site, id_system)."}}}}
_FHIR_PARAMETERS = [
    {"name": "screening_start", "in": "query", "required": False, "schema": {"type": "string", "format": "date"},
     "description": "with a FHIR bundle (required then): D0, the date the record is imported as of"},
    {"name": "site", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "with a FHIR bundle: the screening site of the record"},
    {"name": "id_system", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "with a FHIR bundle: the candidate id is the Patient identifier of this system"}]
_BATCH_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"},
                                    "description": "Candidate records (GET /schema has a record's JSON Schema)."}},
    "application/x-ndjson": {"schema": {"type": "string", "description": "One candidate record a line."}}}}
_LANG_PARAMETER = {"name": "lang", "in": "query", "required": False, "schema": {"type": "string", "enum": ["en", "zh"]},
                   "description": "language of the reasons and warnings (keys and statuses stay English)"}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the Host is not one this service answers (without tokens: loopback names only)"},
    401: {"description": "tokens are set and the request has no valid Authorization: Bearer token"},
    403: {"description": "the request comes from a web page of another origin"},
    415: {"description": "the body's Content-Type is not a JSON media type this endpoint takes"},
    413: {"description": "the body is over the limit"},
    422: {"description": "the record (or the batch body) cannot be read: the fields, never their values"}}

logger = logging.getLogger("nlc_screen.service")


class ServiceError(ScreeningError):
    """The service cannot start (bad tokens, a public host without tokens)."""


def load_tokens(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Token → screener id, from ``NLC_SCREEN_TOKENS`` and ``NLC_SCREEN_TOKENS_FILE`` (empty: no tokens).

    :raises ServiceError: an entry is not ``token:screener``, or the file cannot be read."""
    env = os.environ if environ is None else environ
    entries: list[tuple[str, str]] = []
    text = env.get(TOKENS_ENV, "")
    entries += [(TOKENS_ENV, part) for part in text.split(",") if part.strip()]
    path = env.get(TOKENS_FILE_ENV)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ServiceError(f"cannot read {TOKENS_FILE_ENV} ({path}): {exc.strerror or exc}") from None
        entries += [(f"{TOKENS_FILE_ENV} line {i}", line) for i, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
    tokens: dict[str, str] = {}
    for where, entry in entries:
        token, sep, screener = entry.strip().partition(":")
        if not sep or not token.strip() or not screener.strip():
            raise ServiceError(f"{where}: each entry is token:screener-id")
        if len(token.strip()) < 16:
            raise ServiceError(f"{where}: a token is at least 16 characters")
        tokens[token.strip()] = screener.strip()
    return tokens


def check_host(host: str, tokens: Mapping[str, str]) -> None:
    """A host other than this machine is refused unless tokens are configured."""
    if host not in LOOPBACK and not tokens:
        raise ServiceError(f"--host {host} would let any machine screen and read candidate data: set "
                           f"{TOKENS_ENV} or {TOKENS_FILE_ENV} first (or keep the default, 127.0.0.1)")


def allowed_hosts(tokens: Mapping[str, str], environ: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """The ``Host`` names the service answers (lower case, no port): the loopback names without tokens,
    plus ``NLC_SCREEN_ALLOWED_HOSTS``; None (any) with tokens unless that variable is set."""
    env = os.environ if environ is None else environ
    extra = tuple(name.strip().lower().strip("[]") for name in env.get(ALLOWED_HOSTS_ENV, "").split(",") if name.strip())
    if tokens:
        return extra or None
    return LOOPBACK + extra


def _host_name(host: str) -> str:
    """The name part of a ``Host`` header (no port; an IPv6 address without its brackets), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class RequestGuard:
    """ASGI middleware: the ``Host`` check and the ``Origin`` check of the module's text (the media
    type is checked by each endpoint, after its token, with :func:`_media_type`)."""

    def __init__(self, app: Any, hosts: tuple[str, ...] | None) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        host = headers.get("host", "")
        refusal: tuple[int, str] | None = None
        if self.hosts is not None and _host_name(host) not in self.hosts:
            refusal = (400, f"this service answers only the host names {', '.join(self.hosts)} "
                            f"(more with {ALLOWED_HOSTS_ENV}, or set tokens)")
        elif scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and "origin" in headers:
            origin = headers["origin"].strip().lower()
            if origin.partition("://")[2] != host.strip().lower():  # the scheme may differ behind a proxy
                refusal = (403, "a request from another origin (a web page elsewhere) is refused")
        if refusal is None:
            await self.app(scope, receive, send)
            return
        logger.info("refused: %s %s (%d)", scope["method"], scope.get("path", ""), refusal[0])
        await _problem(*refusal)(scope, receive, send)


def _media_type(request: Request, accepted: tuple[str, ...]) -> Response | None:
    """A 415 response unless the request body declares one of ``accepted`` (a cross-site form or
    ``text/plain`` post cannot)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in accepted:
        return None
    return _problem(415, f"the body's Content-Type is one of {', '.join(accepted)}")


def _json(data: Any) -> Response:
    """A JSON response serialised with orjson (a 10,000-row batch answer: ~0.04 s instead of ~0.3 s)."""
    return Response(orjson.dumps(data), media_type="application/json")


def _problem(status: int, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if fields is not None:
        body["fields"] = fields
    return JSONResponse(body, status_code=status)


async def _body(request: Request, limit: int, accepted: tuple[str, ...] | None = None) -> bytes | Response:
    """The request body, or a 413 response when it is over ``limit`` bytes (a 415 one when ``accepted``
    is given and the body's Content-Type is not one of them: :func:`_media_type`)."""
    if accepted is not None:
        wrong = _media_type(request, accepted)
        if wrong is not None:
            return wrong
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _problem(413, f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _problem(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(*, rules: str | None = None, log_url: str | None = None,
               tokens: Mapping[str, str] | None = None, log: ScreeningLog | None = None, workers: int = 1,
               hosts: tuple[str, ...] | None = None) -> FastAPI:
    """The API over one criteria set (default: the default set) and one screening log (default: the
    default file). ``tokens``: token → screener (default: read from the environment). ``workers`` > 1:
    large batches are screened by that many warm worker processes (started with the app, stopped
    with it). ``hosts``: the ``Host`` names answered (default: :func:`allowed_hosts`)."""
    ruleset: Ruleset = load_ruleset(rules) if rules else load_ruleset()
    keys = dict(load_tokens() if tokens is None else tokens)
    screening_log = log or ScreeningLog(log_url)
    screeners: dict[str, Screener] = {lang: Screener(ruleset, lang=lang) for lang in ruleset.languages}
    pending = sorted({ruleset.consort["undetermined"], ruleset.consort["eligible_pending"]})

    pool = WarmPool(ruleset, workers) if workers > 1 else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if pool is not None:
            pool.close()

    app = FastAPI(title="nlc-screen", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Eligibility screening: every decision reasoned, logged, and counted into the "
                              "CONSORT boxes. See the project's README.")
    app.state.ruleset, app.state.log = ruleset, screening_log
    app.add_middleware(RequestGuard, hosts=hosts if hosts is not None else allowed_hosts(keys))

    def screener_for(request: Request) -> str:
        """The screener a request acts for: the token's, or (without tokens) the X-Screener header."""
        if not keys:
            return (request.headers.get("x-screener") or "http").strip()[:200] or "http"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            for known, who in keys.items():
                if hmac.compare_digest(known.encode(), token.strip().encode()):
                    return who
        raise StarletteHTTPException(401, "a valid 'Authorization: Bearer <token>' is needed",
                                     headers={"WWW-Authenticate": "Bearer"})

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang", DEFAULT_LANG)
        if lang not in LANGUAGES or not ruleset.speaks(lang):
            raise StarletteHTTPException(400, f"lang is one of {', '.join(ruleset.languages)}")
        return lang

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input ("input": ...): name the fields only
        fields = [{"field": ".".join(str(p) for p in err.get("loc", ())), "message": str(err.get("msg", ""))}
                  for err in exc.errors()]
        return _problem(422, "the request could not be read", fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ScreeningError)
    async def screening_error(_request: Request, exc: ScreeningError) -> JSONResponse:
        logger.error("request failed: %s", type(exc).__name__)
        return _problem(503, str(exc))

    @app.post("/screen", summary="Screen one record (or a FHIR bundle of one patient); the decision is appended "
                                 "to the screening log",
              openapi_extra={"requestBody": _RECORD_BODY, "parameters": [_LANG_PARAMETER, *_FHIR_PARAMETERS]},
              responses=_ANSWERS)
    async def screen(request: Request, who: str = Depends(screener_for), lang: str = Depends(lang_of)) -> Response:
        wrong = _media_type(request, (*JSON_TYPES, FHIR_JSON))
        if wrong is not None:
            return wrong
        fhir = request.headers.get("content-type", "").split(";")[0].strip().lower() == FHIR_JSON
        body = await _body(request, MAX_BUNDLE_BYTES if fhir else MAX_RECORD_BYTES)
        if isinstance(body, Response):
            return body
        if fhir:
            imported = await run_in_threadpool(_import_one, body, ruleset, request.query_params)
            if isinstance(imported, Response):
                return imported
            text = imported
        else:
            text = body.decode("utf-8", "replace")
        row = screeners[lang].item(Item("record 1", text))
        if row["decision"] == "error":
            logger.info("screen: record %s could not be read (%s)", row["candidate_id"], ", ".join(row["error_fields"]))
            return _problem(422, row["error"], [{"field": f} for f in row["error_fields"]])
        await run_in_threadpool(screening_log.append, [Entry(row, text, "record 1")], screener=who,
                                source="POST /screen", pack=ruleset.pack)
        logger.info("screen: %s (%s) %s %s", row["candidate_id"], row.get("site") or "-", row["decision"],
                    row["category"])
        return _json(row)

    @app.post("/screen/batch", summary="Screen a JSON array or JSON Lines; one row per record, logged together",
              openapi_extra={"requestBody": _BATCH_BODY, "parameters": [_LANG_PARAMETER]}, responses=_ANSWERS)
    async def screen_batch(request: Request, who: str = Depends(screener_for),
                           lang: str = Depends(lang_of)) -> Response:
        body = await _body(request, MAX_BATCH_BYTES, BATCH_TYPES)
        if isinstance(body, Response):
            return body
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = "jsonl" if kind in BATCH_TYPES[1:] else None
        try:
            rows = await run_in_threadpool(_screen_logged, body, fmt, ruleset, lang, screening_log, who, pool)
        except ScreeningError as exc:
            return _problem(422, str(exc))
        logger.info("screen/batch: %d record(s), %d error row(s)", len(rows),
                    sum(1 for row in rows if row["decision"] == "error"))
        return _json(rows)

    @app.get("/candidates/{candidate_id:path}", summary="A candidate's decisions in the screening log, oldest first")
    def candidate(candidate_id: str, site: str | None = None, _who: str = Depends(screener_for)) -> Response:
        history = screening_log.history(candidate_id, site)
        if not history:
            return _problem(404, "no decision for this candidate at this site in the screening log")
        return JSONResponse({"candidate_id": candidate_id, "site": site, "decisions": history})

    @app.get("/worklist", summary="Pending candidates by site, oldest screening_start first, with open fields")
    def worklist(site: str | None = None, _who: str = Depends(screener_for)) -> Response:
        return JSONResponse({"pending": screening_log.worklist(pending=pending, site=site)})

    @app.get("/audit", summary="CONSORT counts of the current decisions in the screening log")
    def audit(site: str | None = None, since: dt.date | None = None, until: dt.date | None = None,
              expect: str | None = None, _who: str = Depends(screener_for)) -> Response:
        if expect is not None and not _EXPECTATION.match(expect):  # a flow's name, never a path on the server
            return _problem(400, "expect names an expected flow of the pack, such as figure1")
        rows = screening_log.current_rows(site=site, since=since, until=until)
        try:
            result = audit_rows(rows, rules=f"{ruleset.pack}/{ruleset.name}@{ruleset.version}" if ruleset.pack
                                else ruleset.path, expect=expect)
        except (RuleDefinitionError, RulesetNotFound):
            return _problem(404, f"no expected flow named {expect} in pack {ruleset.pack or ruleset.name}")
        return JSONResponse(result.to_dict())

    @app.get("/rules", summary="The criteria set in use")
    def rules_(lang: str = Depends(lang_of)) -> Response:
        return JSONResponse(ruleset_json(ruleset, lang))

    @app.get("/schema", summary="JSON Schema of the candidate record")
    def schema() -> Response:
        return JSONResponse(record_json_schema(ruleset.record.model, ruleset.record.title))

    _docs(app)
    from .form import mount_form

    mount_form(app, ruleset, screening_log, auth=bool(keys), screener_for=screener_for, lang_of=lang_of)
    return app


class _Unread(ScreeningError):
    """A batch body whose end could not be told apart: nothing of it is screened or logged."""


#: A batch at least this large is screened by the warm pool's processes (when ``serve --workers`` > 1).
POOL_MIN = 500


def _import_one(body: bytes, ruleset: Ruleset, query: Mapping[str, str]) -> str | Response:
    """A FHIR bundle of one patient as the JSON text of its intake record, or a 422 saying why not."""
    from .fhir_import import FhirImport

    given = query.get("screening_start")
    if not given:
        return _problem(422, "a FHIR bundle needs the query parameter screening_start=YYYY-MM-DD (D0)",
                        [{"field": "screening_start"}])
    try:
        start = dt.date.fromisoformat(given)
        run = FhirImport(ruleset, screening_start=start, site=query.get("site") or None,
                         id_system=query.get("id_system") or None)
    except ValueError:
        return _problem(422, "screening_start is not a date YYYY-MM-DD", [{"field": "screening_start"}])
    lines = run.bundle(io.BytesIO(body), "the request body")
    if len(lines) != 1:
        return _problem(422, f"the bundle holds {len(lines)} patients; POST /screen takes exactly one (import "
                             f"several with nlc-screen import fhir, and POST them to /screen/batch)")
    if "error" in lines[0]:
        return _problem(422, f"the bundle cannot be imported: {lines[0]['error']}")
    return orjson.dumps(lines[0]).decode()


def _screen_logged(body: bytes, fmt: str | None, ruleset: Ruleset, lang: str, log: ScreeningLog,
                   screener: str, pool: WarmPool | None) -> list[dict[str, Any]]:
    """A batch body screened — by the warm pool's processes when it is large, else in this thread,
    the same rows either way — and logged in one transaction (rolled back, nothing logged, when part
    of the body could not be read)."""
    stream = read_records(io.BytesIO(body), fmt, name=None, kinds=ruleset.record.kinds)
    items = list(stream)
    if stream.unread:
        raise _Unread(f"{len(items)} record(s) read; {stream.unread}")
    screened = (pool.screen(items, lang) if pool is not None and len(items) >= POOL_MIN
                else screen_items(items, ruleset, lang=lang))
    rows: list[dict[str, Any]] = []
    with log.batch(screener=screener, source="POST /screen/batch", pack=ruleset.pack, commit_every=None) as batch:
        for row, item in zip(screened, items):  # logged while the rest is still being screened
            batch.add(row, item.text, item.position)
            rows.append(row)
    return rows


def _docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI served from the installed package, not a CDN."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="nlc-screen API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")


def _version() -> str:
    from .log import tool_version

    return tool_version()


def serve(*, host: str, port: int, rules: str | None, log_url: str | None, workers: int = 2) -> None:
    """Run the API with uvicorn until interrupted.

    :raises ServiceError: a public host without tokens, or tokens that cannot be read."""
    import uvicorn

    tokens = load_tokens()
    check_host(host, tokens)
    app = create_app(rules=rules, log_url=log_url, tokens=tokens, workers=workers)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    log = app.state.log
    logger.info("screening with %s %s; log %s; %s", app.state.ruleset.name, app.state.ruleset.version, log.shown,
                f"{len(tokens)} token(s)" if tokens else "no tokens (this machine only)")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
