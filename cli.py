"""nlc-screen: the command line, a thin layer over the ``screening`` library.

Exit codes, the same for every command (``screening.errors``; README "Exit codes"): 0 all records
screened (audit: ran and matched); 1 the input or the rules could not be read, fully or in part, or
the input was empty (audit: a difference); 2 a usage error; 3 some records were ``error`` rows;
4 the output could not be written; 130 interrupted (SIGINT or SIGTERM); 141 the reader of the
output went away (SIGPIPE), quietly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

import screening
from screening import audit as audit_mod
from screening.batch import INPUT_FORMATS, MAX_WORKERS, screen_batch
from screening.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_UNREADABLE,
    OutputError,
)
from screening.i18n import DEFAULT_LANG, LANG_ENV, LANGUAGES
from screening.output import OUTPUT_FORMATS, RowWriter
from screening.protocol import DEFAULT_RULESET
from screening.sink import open_output
from screening.text import visible

T = TypeVar("T")

rules_option = click.option(
    "--rules", "rules_spec", default=DEFAULT_RULESET, show_default=True, metavar="NAME|PATH",
    help="Criteria set: a shipped set's name (`nlc-screen rules --list` shows them), NAME@VERSION, PACK/SET, a "
         "pack's name or folder (its default set), or a YAML file.")


lang_option = click.option(
    "--lang", type=click.Choice(LANGUAGES), default=DEFAULT_LANG, envvar=LANG_ENV, show_default=True,
    show_envvar=True,
    help="Language of the texts for people: titles, reasons, questions, warnings, box labels (zh: Simplified "
         "Chinese, a draft awaiting clinical review). Keys, statuses, field paths and record errors stay English.")


#: ``--log`` with no URL: the default screening log (a SQLite file in the data directory).
DEFAULT_LOG = "default"


def log_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--log", "log_url", is_flag=False, flag_value=DEFAULT_LOG, default=None, metavar="[URL]",
                        help=help_text + " With no URL, the default log: a SQLite file in $NLC_SCREEN_HOME (default: "
                        "the platform's user data directory); else sqlite:///FILE or postgresql://USER@HOST/DB.")


def _open_log(url: str) -> Any:
    from screening.log import ScreeningLog

    try:
        log = ScreeningLog(None if url == DEFAULT_LOG else url)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.get_current_context().call_on_close(log.close)  # its connections closed when the command ends
    return log


def _screener(name: str | None) -> str:
    if name:
        return name
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


class Failure(click.ClickException):
    """A ScreeningError at the command line's edge: ``Error: <message>``, exit 1."""

    exit_code = EXIT_UNREADABLE


class OutputFailure(Failure):
    """The output could not be written: exit 4."""

    exit_code = EXIT_OUTPUT


def _failure(exc: screening.ScreeningError) -> Failure:
    return (OutputFailure if isinstance(exc, OutputError) else Failure)(visible(str(exc)))


def _load(rules_spec: str, lang: str = DEFAULT_LANG) -> screening.Ruleset:
    try:
        ruleset = screening.load_ruleset(rules_spec)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    if not ruleset.speaks(lang):
        message = (f"criteria set {ruleset.name} {ruleset.version} is written in {', '.join(ruleset.languages)} "
                   f"only; --lang {lang} needs its translations")
        ctx = click.get_current_context(silent=True)
        source = ctx.get_parameter_source("lang") if ctx is not None else None
        if source is not click.core.ParameterSource.ENVIRONMENT:
            raise Failure(visible(message))
        click.echo(visible(f"Note: {message}; {LANG_ENV}={lang} is ignored for it (English)."), err=True)
    return ruleset


#: handled like SIGINT: the run stops, a -o file is left as it was, exit 130
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's last flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing to silence
        pass


class _Main(click.Group):
    """The command group: SIGTERM is handled like SIGINT (exit 130), a broken pipe ends quietly (141)."""

    def invoke(self, ctx: click.Context) -> Any:
        in_main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, _interrupt) for sig in _STOP_SIGNALS} if in_main else {}
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted; the output was not completed.", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nlc-screen")
def main() -> None:
    """Eligibility screening for clinical trials, from criteria written as data (trial packs in rules/).

    Every decision says eligible, excluded or undetermined, why (criterion by criterion), what to
    ask next, and in which CONSORT box the candidate lands.
    """


@contextmanager
def _open_input(path: str) -> Iterator[IO[bytes]]:
    """The input as a binary stream (``-``: standard input); a path that cannot be read is exit 1."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise Failure(visible(f"cannot read the input {path}: {exc.strerror or exc}")) from None
    with stream:
        yield stream


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int], object] | None]:
    """A progress bar on stderr counting records (its ``update``), or None."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(unit=" records", file=sys.stderr, mininterval=0.5, leave=False) as bar:
        yield bar.update


@main.command()
@click.argument("source", metavar="PATH|-")
@rules_option
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="text", show_default=True,
              help="text: an explanation for a screener; json / jsonl / csv: one row per record.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default=None,
              help="Input format; by default taken from the file name, else from the content. redcap: a data "
                   "export (raw or labels) of the instrument `nlc-screen redcap dictionary` makes.")
@click.option("-o", "--output", default="-", metavar="PATH|-",
              help="Where to write the decisions (default: standard output). A file appears only when complete; "
                   "the input file itself is refused.")
@click.option("--include-record", is_flag=True, help="Add the validated input record to every decision.")
@click.option("--compare-with", "compare_spec", default=None, metavar="NAME|PATH",
              help="Also screen under another criteria set; rows whose decision or category differ carry "
                   "criteria_set_check.")
@click.option("--check-duplicates/--no-check-duplicates", default=True, show_default=True,
              help="Warn on a second record for the same (site, candidate_id) in the batch, and on ids that differ "
                   "only in case or surrounding spaces. Keeps ~32 bytes per candidate; turn off for huge batches "
                   "whose ids are known to be unique.")
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=1, show_default=True,
              help=f"Processes to screen with (at most {MAX_WORKERS}, and never more than there are chunks of "
                   "work); the output is the same for any number.")
@click.option("--csv-formula-guard/--no-csv-formula-guard", default=True, show_default=True,
              help="CSV output: put a ' before cells starting with = + - @ (or tab, CR) so spreadsheets do not run "
                   "them as formulas. Turn off for machine readers that want the exact text.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--brief", is_flag=True,
              help="Text output: only what rules the candidate out, what is still open, what to ask and the "
                   "warnings — one screen for a desk.")
@lang_option
@log_option("Also append every decision (and its input record) to the screening log.")
@click.option("--screener", default=None, envvar="NLC_SCREEN_SCREENER", metavar="NAME",
              help="Who is screening, as the screening log keeps it (default: the login name).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="dask: SOURCE is a directory or glob of partitions (JSON Lines, Parquet, …) screened on a Dask "
                   "cluster, one decision file per partition in the -o directory (docs/cluster.md).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="With --engine dask: the cluster's scheduler (tcp://host:8786); default: a local cluster of "
                   "--workers processes.")
def screen(source: str, rules_spec: str, fmt: str, input_format: str | None, output: str,
           include_record: bool, compare_spec: str | None, check_duplicates: bool, workers: int,
           csv_formula_guard: bool, progress: bool | None, brief: bool, lang: str, log_url: str | None,
           screener: str | None, engine: str, scheduler: str | None) -> None:
    """Screen candidate records: a JSON object, a JSON array, JSON Lines or CSV.

    Writes one decision per input record, in input order. A record that cannot be read becomes an
    `error` row naming its line (or index) and field; the others go on, and the exit code is 3.
    Exit 1 when part of the input could not be read at all (the message says how many records) or
    it holds no record; 4 when the output cannot be written.

    Example:

        nlc-screen screen fixtures/figure1/candidates.jsonl --format jsonl | nlc-screen audit - --expect figure1
    """
    if brief and fmt != "text":
        raise click.UsageError("--brief shapes the text output; it does not apply to --format " + fmt)
    ruleset = _load(rules_spec, lang)
    lang = lang if ruleset.speaks(lang) else DEFAULT_LANG
    if engine == "dask":
        given = click.get_current_context().get_parameter_source("workers") is not click.core.ParameterSource.DEFAULT
        _screen_on_dask(source, output, ruleset, scheduler=scheduler, workers=workers if given else None, lang=lang,
                        include_record=include_record, others={"--log": log_url, "--compare-with": compare_spec,
                                                               "--brief": brief or None, "--input-format": input_format})
        return
    if scheduler is not None:
        raise click.UsageError("--scheduler is for --engine dask")
    other = _load(compare_spec) if compare_spec else None
    name = None if source == "-" else source
    show = sys.stderr.isatty() if progress is None else progress
    log = _open_log(log_url) if log_url is not None else None
    batch = None
    try:
        with _open_input(source) as stream, _progress_bar(show) as bar, \
                open_output(output, input_path=source) as out, \
                (log.batch(screener=_screener(screener), source=source, pack=ruleset.pack) if log
                 else contextlib.nullcontext()) as batch:
            writer = RowWriter(out, fmt, ruleset, csv_formula_guard=csv_formula_guard, brief=brief, lang=lang)
            result = screen_batch(stream, writer, ruleset, input_format=input_format, name=name, workers=workers,
                                  include_record=include_record, compare_with=other,
                                  check_duplicates=check_duplicates, progress=bar, lang=lang, log=batch)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    except KeyboardInterrupt:  # say what the log kept: those decisions count from now on
        if batch is not None:
            click.echo(f"The screening log {log.shown if log else ''} kept the {batch.written} decision(s) written "
                       f"before the interruption (batch {batch.batch_id}).", err=True)
        raise
    if log is not None:
        assert batch is not None
        click.echo(f"{batch.written} decision(s) appended to the screening log {log.shown} "
                   f"(batch {batch.batch_id}).", err=True)
    message = result.summary()
    if message:
        click.echo(message, err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


def _screen_on_dask(source: str, output: str, ruleset: screening.Ruleset, *, scheduler: str | None,
                    workers: int | None, lang: str, include_record: bool, others: dict[str, Any]) -> None:
    """``screen --engine dask``: partitions in, one decision file per partition out, a summary on stderr."""
    given = [name for name, value in others.items() if value]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with --engine dask")
    if output == "-":
        raise click.UsageError("--engine dask writes one decision file per partition: name a directory with -o")
    from screening.cluster import screen_partitions

    try:
        result = screen_partitions(source, output, ruleset, scheduler=scheduler, workers=workers, lang=lang,
                                   include_record=include_record)  # workers None: one per core (or any that join)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(result.summary(), err=True)  # values from records are escaped in it
    if result.exit_code:
        sys.exit(result.exit_code)


@main.command()
@click.argument("decisions", metavar="DECISIONS|-", required=False)
@click.option("--rules", "rules_spec", default=None, metavar="NAME|PATH",
              help="Criteria set the decisions were made with (default: the one stamped on them).")
@click.option("--expect", default=None, metavar="NAME|PATH",
              help="Compare with an expected flow (figure1: the paper's Figure 1); exit 1 on any difference.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@lang_option
@log_option("Count the current decision of every candidate in the screening log instead of a file.")
@click.option("--site", default=None, help="With --log: only this site's candidates.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="With --log: only candidates whose screening_start is on or after this date.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="With --log: only candidates whose screening_start is on or before this date.")
@click.option("--by", "by", default=None, metavar="FIELD",
              help="Also break every box down by a decision-row field (site, primary_criterion, …); with ruleset, "
                   "rows made with several criteria sets are counted each with its own.")
@click.option("--pending", "show_pending", is_flag=True,
              help="Also list every pending candidate — eligible awaiting consent, and undetermined — by site, with "
                   "the questions that would settle each, and the questions most often open.")
@click.option("--diagram", "diagram", default=None, metavar="FILE.svg|.png|.dot|.mmd",
              help="Also draw the enrollment part of the CONSORT flow diagram (labels in --lang). SVG and PNG need "
                   "Graphviz's dot; DOT and Mermaid need nothing.")
def audit(decisions: str | None, rules_spec: str | None, expect: str | None, fmt: str, lang: str,
          log_url: str | None, site: str | None, since: dt.datetime | None, until: dt.datetime | None,
          by: str | None, show_pending: bool, diagram: str | None) -> None:
    """Count decisions into the CONSORT enrollment boxes and check the arithmetic.

    Reads `nlc-screen screen` output (JSON Lines or a JSON array), or with --log the screening log
    (each candidate by its latest decision). Exits 1 when the arithmetic does not hold or, with
    --expect, when any count differs.

    Examples:

        nlc-screen audit decisions.jsonl --expect figure1

        nlc-screen audit --log --site Chengdu-3 --since 2023-01-01
    """
    if (decisions is None) == (log_url is None):
        raise click.UsageError("give a DECISIONS file (or - for standard input), or --log, not both")
    if log_url is None and (site or since or until):
        raise click.UsageError("--site, --since and --until filter the screening log: use them with --log")
    chosen = lang if fmt == "text" else DEFAULT_LANG

    def load(spec: str) -> screening.Ruleset:
        return _load(spec, chosen)
    try:
        if log_url is not None:
            log = _open_log(log_url)
            rows: Any = log.current_rows(site=site, since=since.date() if since else None,
                                         until=until.date() if until else None)
            rows = list(rows) if by or show_pending else rows
            result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
        else:
            assert decisions is not None
            if decisions != "-" and os.path.isdir(decisions):  # the output directory of screen --engine dask
                from screening.cluster import read_output_dir

                rows = read_output_dir(decisions)
                rows = list(rows) if by or show_pending else rows
                result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
            else:
                with _open_input(decisions) as stream:
                    rows = audit_mod.read_rows(stream, name="input" if decisions == "-" else decisions)
                    rows = list(rows) if by or show_pending else rows
                    result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
        waiting = audit_mod.pending(rows, result.counts.ruleset) if show_pending else None
        groups = audit_mod.breakdown(rows, by, result.counts.ruleset, load) if by else None
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    ruleset = result.counts.ruleset
    shown_lang = lang if ruleset.speaks(lang) else DEFAULT_LANG
    if diagram is not None:
        from screening.diagram import write_diagram

        try:
            write_diagram(result.counts, diagram, shown_lang)
        except screening.ScreeningError as exc:
            raise _failure(exc) from None
    if fmt == "json":
        report = result.to_dict()
        if groups is not None:
            report["breakdown"] = groups.to_dict()
        if waiting is not None:
            report["pending"] = waiting.to_dict()
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        if groups is not None and by == "ruleset":  # each set counted apart: the breakdown is the report
            click.echo(groups.text(shown_lang), nl=False)
        else:
            click.echo(result.text(shown_lang), nl=False)
            if groups is not None:
                click.echo("\n" + groups.text(shown_lang), nl=False)
        if waiting is not None:
            click.echo("\n" + waiting.text(shown_lang), nl=False)
    if by == "ruleset" and groups is not None:
        sys.exit(1 if any(g.arithmetic() for g in groups.groups.values()) else 0)
    if result.exit_code:
        sys.exit(result.exit_code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Another machine's address needs tokens (NLC_SCREEN_TOKENS or "
                   "NLC_SCREEN_TOKENS_FILE); put a TLS-terminating reverse proxy in front (README).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@rules_option
@log_option("The screening log the API appends to and reads.")
@click.option("--workers", type=click.IntRange(min=1, max=MAX_WORKERS), default=2, show_default=True,
              help="Worker processes, started with the server, that screen large batches (1: screen every "
                   "request in the server's own process).")
def serve(host: str, port: int, rules_spec: str, log_url: str | None, workers: int) -> None:
    """Serve the HTTP API: POST /screen, POST /screen/batch, GET /candidates/ID, /worklist, /audit, /rules,
    /schema; OpenAPI at /openapi.json, docs at /docs.

    Every decision is appended to the screening log (the default file when --log names none).

    Example:

        nlc-screen serve --port 8000
    """
    from screening.service import serve as run

    try:
        run(host=host, port=port, rules=rules_spec, log_url=None if log_url in (None, DEFAULT_LOG) else log_url,
            workers=workers)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None


@main.group()
def redcap() -> None:
    """REDCap: the screening instrument as a data dictionary (screen its exports with --input-format redcap)."""


@redcap.command("dictionary")
@rules_option
@lang_option
@click.option("-o", "--output", default="-", metavar="FILE.csv|-", help="Where to write (default: standard output).")
def redcap_dictionary(rules_spec: str, lang: str, output: str) -> None:
    """Write the REDCap data dictionary of the set's pack's screening instrument (CSV, REDCap's 18 columns).

    Variable names, list slots, the repeating instrument, branching and choice labels come from the
    pack's redcap.yaml; types, validation, labels and questions from its fields.yaml.

    Example:

        nlc-screen redcap dictionary --lang zh -o screening-dictionary.csv
    """
    from screening.redcap import write_dictionary

    ruleset = _load(rules_spec, lang)
    try:
        with open_output(output) as out:
            written = write_dictionary(out, ruleset, lang if ruleset.speaks(lang) else DEFAULT_LANG)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(f"{written} variables written for pack {ruleset.pack}.", err=True)


@main.group("log")
def log_group() -> None:
    """Move a screening log between databases: export it to JSON Lines, import it into another.

    URL is sqlite:///FILE or postgresql://USER@HOST/DB; with none, the default log (a SQLite file in
    $NLC_SCREEN_HOME). Every entry keeps its id, so importing the same export twice adds nothing.
    """


@log_group.command("export")
@click.argument("url", required=False, metavar="[URL]")
@click.option("-o", "--output", default="-", metavar="FILE.jsonl|-", help="Where to write (default: standard output).")
def log_export(url: str | None, output: str) -> None:
    """Write every entry of the screening log as JSON Lines, oldest first, input records included."""
    log = _open_log(url or DEFAULT_LOG)
    try:
        with open_output(output) as out:
            written = log.export(out.write)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(f"{written} entr{'y' if written == 1 else 'ies'} exported from {log.shown}.", err=True)


@log_group.command("import")
@click.argument("source", metavar="FILE.jsonl|-")
@click.argument("url", required=False, metavar="[URL]")
def log_import(source: str, url: str | None) -> None:
    """Add the entries of an export to the screening log at URL (those already there are skipped)."""
    log = _open_log(url or DEFAULT_LOG)
    try:
        with _open_input(source) as stream:
            added, skipped = log.import_(stream, name="input" if source == "-" else source)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(f"{added} entr{'y' if added == 1 else 'ies'} imported into {log.shown}; {skipped} already there.",
               err=True)


def _list_packs(fmt: str) -> None:
    """``rules --list``: every shipped pack with its sets and their versions (oldest first)."""
    from screening.describe import packs_json, packs_text

    try:
        click.echo(json.dumps(packs_json(), indent=2, ensure_ascii=False) if fmt == "json" else packs_text(), nl=fmt == "json")
    except screening.ScreeningError as exc:
        raise _failure(exc) from None


@main.command()
@rules_option
@click.argument("target", required=False, metavar="[NAME|PATH]")
@click.option("--check", is_flag=True,
              help="Only load, validate and lint the criteria set (contradictory, unreachable or shadowed rules, "
                   "criteria no record can reach, empty boxes, malformed codes; exit 1 on any finding); given a "
                   "pack (its name or folder), every set of it.")
@click.option("--list", "list_sets", is_flag=True, help="List the shipped trial packs, their sets and versions.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="markdown: the set as a specification page (what docs/criteria/<set>.md holds).")
@lang_option
@click.pass_context
def rules(ctx: click.Context, rules_spec: str, target: str | None, check: bool, list_sets: bool, fmt: str,
          lang: str) -> None:
    """Print the criteria of a set as a readable table (or validate it with --check).

    The set is NAME|PATH or --rules, not both. Examples:

        nlc-screen rules --rules registry-2023 --check

        nlc-screen rules --check rules/nlc-k2
    """
    if target is not None:
        if ctx.get_parameter_source("rules_spec") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("give the criteria set either as NAME|PATH or with --rules, not both")
        rules_spec = target
    if list_sets:
        _list_packs(fmt)
        return
    if check:
        try:
            paths = screening.protocol.resolve_all(rules_spec)
        except screening.ScreeningError as exc:
            raise _failure(exc) from None
        from screening.lint import lint

        findings = 0
        for path in paths:
            ruleset = _load(str(path))
            found = lint(ruleset, path)
            findings += len(found)
            if not found:
                click.echo(f"{ruleset.path}: {ruleset.name} {ruleset.version} is valid ({len(ruleset.criteria)} "
                           f"criteria, {len(ruleset.flat_rules)} rules, sha256 {ruleset.sha256})")
                continue
            click.echo(f"{ruleset.path}: {ruleset.name} {ruleset.version} loads, but the lint finds {len(found)} "
                       f"problem{'' if len(found) == 1 else 's'}:")
            for finding in found:
                click.echo(f"  {visible(str(finding))}")
        if findings:
            raise Failure(f"{findings} lint finding{'' if findings == 1 else 's'} (see above)")
        return
    ruleset = _load(rules_spec, lang)
    lang = lang if ruleset.speaks(lang) else DEFAULT_LANG
    from screening.describe import ruleset_json, ruleset_markdown, ruleset_table

    if fmt == "markdown":
        click.echo(ruleset_markdown(ruleset, lang), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(ruleset_json(ruleset, lang), indent=2, ensure_ascii=False))
    else:
        click.echo(ruleset_table(ruleset, lang), nl=False)


@main.command()
@click.option("--decision", is_flag=True,
              help="Print the JSON Schema of the rows `screen` writes (decisions and error rows) for the criteria "
                   "set instead: its categories, subcategories and criterion ids.")
@rules_option
def schema(decision: bool, rules_spec: str) -> None:
    """Print the JSON Schema of the candidate record of the criteria set's pack (or, with --decision, of a
    decision row), with each field's title and description.

    Example:

        nlc-screen schema > intake-record.schema.json

        nlc-screen schema --decision --rules registry-2023 > decision.schema.json
    """
    if decision:
        from screening.decision_row import decision_json_schema

        click.echo(json.dumps(decision_json_schema(_load(rules_spec)), indent=2, ensure_ascii=False))
        return
    ruleset = _load(rules_spec)
    click.echo(json.dumps(screening.record_json_schema(ruleset.record.model, ruleset.record.title), indent=2,
                          ensure_ascii=False))


@main.command()
@click.option("--n", "count", type=click.IntRange(min=0), required=True, help="How many candidate records to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same records.")
@click.option("--mix", default=None, metavar="OUTCOME=WEIGHT,...",
              help="Share of each intended outcome: eligible, not_meeting_inclusion, meeting_exclusion, "
                   "withdrawal, undetermined, error (default eligible=0.58,not_meeting_inclusion=0.16,"
                   "meeting_exclusion=0.12,withdrawal=0.04,undetermined=0.09,error=0.01). Weights are normalised; "
                   "outcomes left out get none.")
@rules_option
@click.option("-o", "--output", default="-", metavar="PATH|-",
              help="Where to write the JSON Lines (default: standard output). A file appears only when complete.")
def generate(count: int, seed: int, mix: str | None, rules_spec: str, output: str) -> None:
    """Write synthetic candidate records (JSON Lines) with a controllable mix of outcomes.

    For tests and benchmarks; deterministic for a seed. The records are built around the criteria
    set's parameters and its pack's generator vocabulary; the outcome mix is the one the pack's
    default set decides (under another set, some intended exclusions may come out otherwise).

    Example:

        nlc-screen generate --n 10000 --seed 7 --mix eligible=0.5,undetermined=0.5 -o candidates.jsonl
    """
    from screening.generate import parse_mix, write_jsonl

    try:
        weights = parse_mix(mix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mix") from None
    ruleset = _load(rules_spec)
    try:
        with open_output(output) as out:
            write_jsonl(out, count, seed=seed, mix=weights, ruleset=ruleset)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None


if __name__ == "__main__":  # pragma: no cover
    main()
