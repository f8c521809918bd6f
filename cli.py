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
import orjson

import screening
from screening import audit as audit_mod
from screening.attrition import attrition_report
from screening.batch import INPUT_FORMATS, MAX_WORKERS, screen_batch
from screening.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_RECORD_ERRORS,
    EXIT_UNREADABLE,
    OutputError,
)
from screening.i18n import DEFAULT_LANG, LANG_ENV, LANGUAGES
from screening.io import FORMATS as RECORD_FORMATS
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


def fhir_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a FHIR import (``import fhir``, ``screen --input-format fhir``)."""
    for option in reversed((
        click.option("--screening-start", type=click.DateTime(["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
                     help="FHIR: D0, the date every record is as of (required unless --screening-start-file "
                          "gives every candidate's)."),
        click.option("--screening-start-file", default=None, metavar="CSV",
                     help="FHIR: a CSV with the columns candidate_id and screening_start (D0 per candidate; "
                          "--screening-start for the others)."),
        click.option("--site", default=None, help="FHIR: the screening site every imported record gets."),
        click.option("--id-system", default=None, metavar="URI",
                     help="FHIR: take candidate_id from the Patient identifier of this system (default: Patient.id)."),
    )):
        command = option(command)
    return command


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
@click.option("--resume", is_flag=True,
              help="A run that survives being killed: rows go to OUT.partial, made durable every 500 rows or second "
                   "(journal OUT.partial.journal); the same command run again goes on where it stopped, every record "
                   "once in OUT and in the --log. OUT appears only when complete. Needs -o FILE and an input file.")
@fhir_options
def screen(source: str, rules_spec: str, fmt: str, input_format: str | None, output: str,
           include_record: bool, compare_spec: str | None, check_duplicates: bool, workers: int,
           csv_formula_guard: bool, progress: bool | None, brief: bool, lang: str, log_url: str | None,
           screener: str | None, engine: str, scheduler: str | None, resume: bool, screening_start: dt.datetime | None,
           screening_start_file: str | None, site: str | None, id_system: str | None) -> None:
    """Screen candidate records: a JSON object, a JSON array, JSON Lines or CSV (or FHIR bundles).

    Writes one decision per input record, in input order. With --input-format fhir, PATH is a FHIR
    bundle or a directory of them, imported as `nlc-screen import fhir` does (docs/fhir.md). A record that cannot be read becomes an
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
                                                               "--brief": brief or None, "--input-format": input_format,
                                                               "--resume": resume or None})
        return
    if scheduler is not None:
        raise click.UsageError("--scheduler is for --engine dask")
    fhir = _fhir_import(ruleset, input_format, screening_start, screening_start_file, site, id_system)
    other = _load(compare_spec) if compare_spec else None
    show = sys.stderr.isatty() if progress is None else progress
    if resume:
        if fhir is not None:
            raise click.UsageError("--resume goes on through a file of records: import the bundles with "
                                   "`nlc-screen import fhir` first, then screen that file with --resume")
        if output == "-":
            raise click.UsageError("--resume writes OUT.partial beside the output file: name one with -o FILE")
        if source == "-":
            raise click.UsageError("--resume reads the input again to go on: give an input file, not -")
    log = _open_log(log_url) if log_url is not None else None
    if resume:
        writer_options = {"csv_formula_guard": csv_formula_guard, "brief": brief, "lang": lang}
        from screening.log import tool_version

        # the nlc-screen version shapes the rows; the screener is kept on every log entry of the batch
        settings = {"format": fmt, "rules": ruleset.stamp, "pack": ruleset.pack, "include_record": include_record,
                    "compare_with": other.stamp if other else None, "check_duplicates": check_duplicates,
                    "input_format": input_format, "log": log.shown if log else None,
                    "screener": _screener(screener) if log else None, "nlc_screen_version": tool_version(),
                    **writer_options}
        result = _screen_resumable(source, output, ruleset, fmt, settings, log=log, screener=screener, show=show,
                                   workers=workers, include_record=include_record, compare_with=other,
                                   check_duplicates=check_duplicates, input_format=input_format,
                                   writer_options=writer_options)
        if result is None:
            return
    else:
        result = _screen_once(source, output, ruleset, fmt, log=log, screener=screener, show=show, workers=workers,
                              include_record=include_record, compare_with=other, check_duplicates=check_duplicates,
                              input_format=input_format, csv_formula_guard=csv_formula_guard, brief=brief, lang=lang,
                              fhir=fhir)
    message = result.summary()
    if message:
        click.echo(message, err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


def _screen_once(source: str, output: str, ruleset: screening.Ruleset, fmt: str, *, log: Any, screener: str | None,
                 show: bool, workers: int, include_record: bool, compare_with: screening.Ruleset | None,
                 check_duplicates: bool, input_format: str | None, csv_formula_guard: bool, brief: bool,
                 lang: str, fhir: Any = None) -> Any:
    """``screen`` without --resume: the output appears when complete, or not at all. ``fhir``: the
    importer of --input-format fhir, whose patients are the records."""
    name = None if source == "-" else source
    other = compare_with
    batch = None
    try:
        with (_open_input(source) if fhir is None else contextlib.nullcontext(sys.stdin.buffer)) as stream, \
                _progress_bar(show) as bar, \
                open_output(output, input_path=source) as out, \
                (log.batch(screener=_screener(screener), source=source, pack=ruleset.pack) if log
                 else contextlib.nullcontext()) as batch:
            writer = RowWriter(out, fmt, ruleset, csv_formula_guard=csv_formula_guard, brief=brief, lang=lang)
            result = screen_batch(stream, writer, ruleset, input_format=input_format, name=name, workers=workers,
                                  include_record=include_record, compare_with=other,
                                  check_duplicates=check_duplicates, progress=bar, lang=lang, log=batch,
                                  items=None if fhir is None else fhir.items([source], sys.stdin.buffer))
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    except KeyboardInterrupt:  # say what the log kept: those decisions count from now on
        if batch is not None:
            click.echo(f"The screening log {log.shown if log else ''} kept the {batch.written} decision(s) written "
                       f"before the interruption (batch {batch.batch_id}).", err=True)
        raise
    if fhir is not None:
        click.echo(fhir.stats.summary(), err=True)
    if log is not None:
        assert batch is not None
        click.echo(f"{batch.written} decision(s) appended to the screening log {log.shown} "
                   f"(batch {batch.batch_id}).", err=True)
    return result


def _screen_resumable(source: str, output: str, ruleset: screening.Ruleset, fmt: str, settings: dict[str, Any], *,
                      log: Any, screener: str | None, show: bool, workers: int, include_record: bool,
                      compare_with: screening.Ruleset | None, check_duplicates: bool, input_format: str | None,
                      writer_options: dict[str, Any]) -> Any:
    """``screen --resume``: begin or continue a run that survives being killed (screening.resume);
    None when an earlier run had completed the output already."""
    from screening.errors import ResumeError
    from screening.resume import interrupted_note, open_resumable, resumed_note

    batch = None
    run_started = False
    try:
        with open_resumable(output, input_path=source, settings=settings, with_log=log is not None) as run:
            if run is None:
                click.echo(f"{output} was completed by an earlier run; nothing left to do.", err=True)
                return None
            run_started = True
            if run.resumed:
                click.echo(visible(resumed_note(run)), err=True)
            if log is not None:
                assert run.batch_id is not None
                run.logged, run.logged_last = log.batch_progress(run.batch_id)
            with _open_input(source) as stream, _progress_bar(show) as bar, \
                    (log.batch(screener=_screener(screener), source=source, pack=ruleset.pack, batch_id=run.batch_id)
                     if log else contextlib.nullcontext()) as batch:
                writer = RowWriter(run.stream, fmt, ruleset, already=run.done.rows, **writer_options)
                result = screen_batch(stream, writer, ruleset, input_format=input_format, name=source,
                                      workers=workers, include_record=include_record, compare_with=compare_with,
                                      check_duplicates=check_duplicates, progress=bar, lang=writer_options["lang"],
                                      log=batch, resume=run)
    except ResumeError as exc:  # refused before anything was written
        raise _failure(exc) from None
    except screening.ScreeningError as exc:
        if run_started:
            click.echo(visible(interrupted_note(output)), err=True)
        raise _failure(exc) from None
    except KeyboardInterrupt:
        click.echo(visible(interrupted_note(output)), err=True)
        if batch is not None:
            click.echo(f"The screening log {log.shown if log else ''} kept the decisions written before the "
                       f"interruption (batch {batch.batch_id}); the next run adds only the others.", err=True)
        raise
    if log is not None:
        assert batch is not None
        click.echo(f"{batch.written} decision(s) appended to the screening log {log.shown} "
                   f"(batch {batch.batch_id}).", err=True)
    return result


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
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True,
              help="csv: the --attrition table alone, one row per group and step.")
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
@click.option("--report", "report", default=None, metavar="FILE.html",
              help="Also write the coordinator's report: one self-contained, printable page with the diagram, "
                   "the counts, the breakdown by --by (default: site), the attrition and the pending candidates "
                   "(needs Graphviz's dot).")
@click.option("--attrition", "show_attrition", is_flag=True,
              help="Add the attrition: candidates remaining after each criterion in precedence order, those "
                   "excluded by that criterion only, and by it among others (with --by, per group too).")
def audit(decisions: str | None, rules_spec: str | None, expect: str | None, fmt: str, lang: str,
          log_url: str | None, site: str | None, since: dt.datetime | None, until: dt.datetime | None,
          by: str | None, show_pending: bool, diagram: str | None, report: str | None, show_attrition: bool) -> None:
    """Count decisions into the CONSORT enrollment boxes and check the arithmetic.

    Reads `nlc-screen screen` output (JSON Lines or a JSON array), or with --log the screening log
    (each candidate by its latest decision). Exits 1 when the arithmetic does not hold or, with
    --expect, when any count differs.

    Examples:

        nlc-screen audit decisions.jsonl --expect figure1

        nlc-screen audit --log --site Chengdu-3 --since 2023-01-01

        nlc-screen audit decisions.jsonl --attrition --by site --format csv > attrition.csv

        nlc-screen audit decisions.jsonl --expect figure1 --report figure1.html --lang zh
    """
    if fmt == "csv" and not show_attrition:
        raise click.UsageError("--format csv writes the attrition table: use it with --attrition")
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
            rows = list(rows) if by or show_pending or report else rows
            result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
        else:
            assert decisions is not None
            if decisions != "-" and os.path.isdir(decisions):  # the output directory of screen --engine dask
                from screening.cluster import read_output_dir

                rows = read_output_dir(decisions)
                rows = list(rows) if by or show_pending or report else rows
                result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
            else:
                with _open_input(decisions) as stream:
                    rows = audit_mod.read_rows(stream, name="input" if decisions == "-" else decisions)
                    rows = list(rows) if by or show_pending or report else rows
                    result = audit_mod.audit_rows(rows, rules=rules_spec, expect=expect, load=load)
        waiting = audit_mod.pending(rows, result.counts.ruleset) if show_pending or report else None
        groups = audit_mod.breakdown(rows, by, result.counts.ruleset, load) if by else None
        page_groups = groups if groups is not None or not report else \
            audit_mod.breakdown(rows, "site", result.counts.ruleset, load)
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
    losses = attrition_report(result.counts, groups) if show_attrition else None
    if report is not None:
        from screening.report import html_report, write_report

        assert waiting is not None and page_groups is not None
        try:
            write_report(report, html_report(result, groups=page_groups, waiting=waiting, lang=shown_lang,
                                             losses=attrition_report(result.counts, page_groups),
                                             source=_source_name(decisions, log_url)))
        except screening.ScreeningError as exc:
            raise _failure(exc) from None
        if not show_pending:
            waiting = None
    if fmt == "csv":
        assert losses is not None
        click.echo(losses.csv(), nl=False)
    elif fmt == "json":
        summary = result.to_dict()
        if groups is not None:
            summary["breakdown"] = groups.to_dict()
        if waiting is not None:
            summary["pending"] = waiting.to_dict()
        if losses is not None:
            summary["attrition"] = losses.to_dict()
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        if groups is not None and by == "ruleset":  # each set counted apart: the breakdown is the report
            click.echo(groups.text(shown_lang), nl=False)
        else:
            click.echo(result.text(shown_lang), nl=False)
            if groups is not None:
                click.echo("\n" + groups.text(shown_lang), nl=False)
        if waiting is not None:
            click.echo("\n" + waiting.text(shown_lang), nl=False)
        if losses is not None:
            click.echo("\n" + losses.text(shown_lang), nl=False)
    if by == "ruleset" and groups is not None:
        sys.exit(1 if any(g.arithmetic() for g in groups.groups.values()) else 0)
    if result.exit_code:
        sys.exit(result.exit_code)


def _source_name(decisions: str | None, log_url: str | None) -> str:
    """What a report says its rows came from: the file, standard input, or the log (no password shown)."""
    if log_url is not None:
        from screening.log import shown_url

        return shown_url(log_url)
    return "standard input" if decisions in (None, "-") else str(decisions)


@main.command()
@click.argument("decisions", metavar="DECISIONS|-", required=False)
@log_option("Re-screen every entry of the screening log (instead of a DECISIONS file).")
@click.option("--rules-dir", "rules_dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Find the stamped criteria sets in this folder of trial packs (or this pack folder) instead of "
                   "the shipped packs; may be given more than once.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(decisions: str | None, log_url: str | None, rules_dirs: tuple[str, ...], fmt: str) -> None:
    """Re-screen logged inputs under the criteria set stamped on each decision, and report every difference.

    Each decision is screened again under its pack and set version (from the pack's archive when it is
    not the current one); the set file's SHA-256 must match the stamp. DECISIONS is `nlc-screen screen`
    output made with --include-record. Compared: decision, category, subcategory, primary criterion and
    every criterion's status. Erased entries are counted as erased. Exit 0 when every decision is
    re-derived, 1 on any difference, a set changed without a new version, or a set not found.

    Examples:

        nlc-screen verify --log

        nlc-screen verify decisions.jsonl
    """
    from pathlib import Path

    from screening.verify import SetFinder, verify_log, verify_rows

    if (decisions is None) == (log_url is None):
        raise click.UsageError("give a DECISIONS file (or - for standard input), or --log, not both")
    finder = SetFinder([Path(d) for d in rules_dirs] if rules_dirs else None)
    try:
        if log_url is not None:
            result = verify_log(_open_log(log_url), finder)
        else:
            assert decisions is not None
            with _open_input(decisions) as stream:
                result = verify_rows(stream, name="input" if decisions == "-" else decisions, finder=finder)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in result.text().splitlines():  # values from records (ids, sites) escaped, line by line
            click.echo(visible(line))
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


@main.command()
@rules_option
@lang_option
@click.option("--resume", "resume", default=None, metavar="RECORD.json",
              help="Go on from a record saved earlier (by an interview, or any JSON record).")
@click.option("-o", "--output", default=None, metavar="RECORD.json",
              help="Where to save the record (default: the --resume file, else interview-<candidate_id>.json here).")
@log_option("Also append the decision (and the record) to the screening log.")
@click.option("--screener", default=None, envvar="NLC_SCREEN_SCREENER", metavar="NAME",
              help="Who is screening, as the screening log keeps it (default: the login name).")
def interview(rules_spec: str, lang: str, resume: str | None, output: str | None, log_url: str | None,
              screener: str | None) -> None:
    """Ask one question at a time, the one that can settle the decision soonest first, until the
    candidate is decided; print the reasoned decision and save the record.

    An empty answer means "not known" (not asked again); a malformed one is asked again with the
    answer expected. Answers may be piped, one a line. Ctrl-C saves what was answered (exit 130).

    Example:

        nlc-screen interview --lang zh -o NC-0007.json --log
    """
    from screening.i18n import message
    from screening.interview import Interview, closing
    from screening.interview import interview as run

    ruleset = _load(rules_spec, lang)
    lang = lang if ruleset.speaks(lang) else DEFAULT_LANG
    record: dict[str, Any] = {}
    if resume is not None:
        try:
            with open(resume, encoding="utf-8") as stream:
                record = json.load(stream)
        except (OSError, ValueError) as exc:
            raise Failure(f"cannot read the record {resume}: {getattr(exc, 'strerror', None) or exc}") from None
        if not isinstance(record, dict):
            raise Failure(f"{resume}: a JSON object (one record), not {type(record).__name__}")
    log = _open_log(log_url) if log_url is not None else None
    state = Interview(record=record)

    typed = sys.stdin.isatty()
    if typed:  # line editing for typed answers
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401

    def ask(prompt: str) -> str | None:
        try:
            answer = input(prompt)
        except EOFError:
            click.echo()
            return None
        if not typed:  # piped answers: show each after its prompt, so the transcript reads as a dialogue
            click.echo(answer)
        return answer

    try:
        run(ruleset, ask=ask, say=click.echo, record=record, lang=lang, state=state)
    except KeyboardInterrupt:
        click.echo()
        click.echo(message("interview_interrupted", lang), err=True)
        _save_record(state.record, output or resume, lang)
        raise
    assert state.row is not None
    asked = len(state.asked)
    if state.row["decision"] == "error":  # a record that cannot be read: never "decided", never exit 0
        _save_record(state.record, output or resume, lang)
        fields = ", ".join(f or "(the record's text)" for f in state.row.get("error_fields", [])) or "?"
        raise Failure(message("interview_unreadable", lang, file=resume or "the record", fields=fields))
    click.echo(message({"decided": "interview_decided", "skipped": "interview_skipped",
                        "review": "interview_review", "unknown": "interview_unknown"}.get(state.ended, "interview_no_more"), lang, n=asked))
    click.echo(closing(state, ruleset, lang), nl=False)
    _save_record(state.record, output or resume, lang)
    if log is not None and state.row["decision"] != "error":
        from screening.log import Entry

        text = json.dumps(state.record, ensure_ascii=False)
        log.append([Entry(state.row, text, "record 1")], screener=_screener(screener), source="interview",
                   pack=ruleset.pack)
        click.echo(message("interview_logged", lang, log=log.shown), err=True)


def _save_record(record: dict[str, Any], path: str | None, lang: str) -> None:
    """The interview's record as JSON: to ``path``, or interview-<candidate_id>.json here."""
    import re

    from screening.i18n import message

    if not record:
        return
    if path is None:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(record.get("candidate_id") or "record")).strip("._") or "record"
        path = f"interview-{safe}.json"
    try:
        with open_output(path) as out:
            out.write(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(message("interview_saved", lang, path=path), err=True)


def _fhir_import(ruleset: screening.Ruleset, input_format: str | None, screening_start: dt.datetime | None,
                 screening_start_file: str | None, site: str | None, id_system: str | None) -> Any:
    """A FHIR import for ``--input-format fhir`` (None for any other format, which takes no FHIR option)."""
    given = [name for name, value in (("--screening-start", screening_start), ("--screening-start-file",
             screening_start_file), ("--site", site), ("--id-system", id_system)) if value is not None]
    if input_format != "fhir":
        if given:
            raise click.UsageError(f"{', '.join(given)} are for --input-format fhir")
        return None
    from screening.fhir_import import FhirImport

    try:
        return FhirImport(ruleset, screening_start=screening_start.date() if screening_start else None,
                          screening_start_file=screening_start_file, site=site, id_system=id_system)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None


@main.group("import")
def import_group() -> None:
    """Import candidates from other systems' records (FHIR R4 bundles) as intake records (JSON Lines)."""


@import_group.command("fhir")
@click.argument("sources", nargs=-1, required=True, metavar="BUNDLE_OR_DIR...")
@rules_option
@fhir_options
@click.option("-o", "--output", default="-", metavar="FILE.jsonl|-", help="Where to write (default: standard output).")
def import_fhir(sources: tuple[str, ...], rules_spec: str, screening_start: dt.datetime | None,
                screening_start_file: str | None, site: str | None, id_system: str | None, output: str) -> None:
    """Write one intake record per Patient of FHIR R4 bundles, as JSON Lines (criteria.md §8.3).

    A directory's *.json files are read in name order. A bundle that cannot be read becomes one
    {"error": …, "source": FILE} line and the run goes on; `screen` turns it into an error row. A
    summary on stderr counts patients and errors, and names the fields no bundle provided.
    Exit 3 when some bundle was an error line. See docs/fhir.md.

    Example:

        nlc-screen import fhir fixtures/fhir/synthea --screening-start 2021-04-01 --site Synthea | nlc-screen screen -
    """
    ruleset = _load(rules_spec)
    run = _fhir_import(ruleset, "fhir", screening_start, screening_start_file, site, id_system)
    try:
        with open_output(output) as out:
            for line in run.lines(sources, sys.stdin.buffer):
                out.write(orjson.dumps(line).decode() + "\n")
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(run.stats.summary(), err=True)
    if run.stats.errors:
        sys.exit(EXIT_RECORD_ERRORS)
    if run.stats.records == 0:
        sys.exit(EXIT_UNREADABLE)


@main.group("export")
def export_group() -> None:
    """Export decisions to other systems' formats (FHIR R4B ResearchSubject resources)."""


@export_group.command("fhir")
@click.argument("decisions", metavar="DECISIONS|-")
@rules_option
@click.option("--format", "fmt", type=click.Choice(["ndjson", "bundle"]), default="ndjson", show_default=True,
              help="ndjson: one ResearchSubject a line (FHIR bulk data); bundle: one Bundle of type collection.")
@click.option("--id-system", default=None, metavar="URI",
              help="Refer to each candidate by an identifier of this system (default: Patient/<candidate_id>).")
@click.option("-o", "--output", default="-", metavar="FILE|-", help="Where to write (default: standard output).")
def export_fhir(decisions: str, rules_spec: str, fmt: str, id_system: str | None, output: str) -> None:
    """Write a ResearchSubject for every decision of `screen` output (JSON Lines or an array).

    Its status comes from the decision and CONSORT box (the pack's fhir.yaml), `study` is the set's
    ResearchStudy (`nlc-screen rules --format fhir`), `individual` the candidate, and the reasons are
    in a note. Error rows are counted on stderr, not exported.

    Example:

        nlc-screen screen examples/one.json --format jsonl | nlc-screen export fhir -
    """
    from screening.audit import read_rows
    from screening.fhir_export import ExportStats, bundle_entry, research_subjects

    ruleset = _load(rules_spec)
    stats = ExportStats()
    try:
        with _open_input(decisions) as stream, open_output(output, input_path=decisions) as out:
            subjects = research_subjects(read_rows(stream, name="input" if decisions == "-" else decisions),
                                         ruleset, id_system=id_system, stats=stats)
            if fmt == "bundle":
                out.write('{"resourceType":"Bundle","type":"collection","entry":[')
            for n, subject in enumerate(subjects):
                if fmt == "bundle":
                    out.write(("," if n else "") + orjson.dumps(bundle_entry(subject)).decode())
                else:
                    out.write(orjson.dumps(subject).decode() + "\n")
            if fmt == "bundle":
                out.write("]}\n")
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    click.echo(f"{stats.written} ResearchSubject(s) written; {stats.errors} error row(s) and {stats.other} row(s) "
               f"of a box without a status not exported.", err=True)
    if stats.written == 0:
        sys.exit(EXIT_UNREADABLE)


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
    """Move a screening log between databases (export it to JSON Lines, import it into another), and
    erase a candidate's records from it.

    URL is sqlite:///FILE or postgresql://USER@HOST/DB; with none, the default log (a SQLite file in
    $NLC_SCREEN_HOME). Every entry keeps its id, so importing the same export twice adds nothing.
    What the log keeps, for how long, backing it up and erasure: docs/log.md.
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


@log_group.command("erase")
@click.option("--site", default=None, metavar="SITE",
              help="The candidate's site, exactly as screened (leave out for a candidate logged without one).")
@click.option("--candidate", "candidate_id", required=True, metavar="ID", help="The candidate_id, exactly as screened.")
@click.option("--reason", required=True, metavar="TEXT",
              help="Why (a withdrawal of consent, a request under the data protection law, a record screened by "
                   "mistake); kept with the tombstone.")
@log_option("The screening log to erase from.")
@click.option("--screener", default=None, envvar="NLC_SCREEN_SCREENER", metavar="NAME",
              help="Who erases, as the tombstone keeps it (default: the login name).")
def log_erase(site: str | None, candidate_id: str, reason: str, log_url: str | None, screener: str | None) -> None:
    """Erase one candidate's input records from the screening log, keeping the counts.

    Every entry of the candidate keeps its decision, category, criteria statuses and stamps; its input
    record, the reasons and warnings that quote it, and an included record are cleared. A tombstone
    keeps when, who (--screener, NLC_SCREEN_SCREENER or the login name) and why; `log export` shows
    it and `verify` counts the entries as erased. Audits give the same counts as before.

    Example:

        nlc-screen log erase --site "Third People's Hospital of Chengdu" --candidate CD-0048 --reason "consent withdrawn"
    """
    log = _open_log(log_url or DEFAULT_LOG)
    try:
        erasure = log.erase(site=site, candidate_id=candidate_id, reason=reason, erased_by=_screener(screener))
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    who = f"{candidate_id} ({site})" if site else candidate_id
    if not erasure.records:
        click.echo(visible(f"Candidate {who}: the records of its {erasure.entries} entr"
                           f"{'y' if erasure.entries == 1 else 'ies'} were erased already; this request is kept as "
                           f"erasure {erasure.erasure_id} too."), err=True)
    else:
        click.echo(visible(f"Erased candidate {who}: {erasure.records} input record(s) cleared from "
                           f"{erasure.entries} entr{'y' if erasure.entries == 1 else 'ies'} of {log.shown}; decisions "
                           f"and counts kept (erasure {erasure.erasure_id}, by {erasure.erased_by})."), err=True)
    if not erasure.purged:
        _purge_failed(log)


def _purge_failed(log: Any) -> None:
    """Say that the cleared values are still in the SQLite log's files, and exit 1."""
    raise Failure(visible(
        f"NOT PURGED: another process is reading the screening log {log.shown}, so SQLite could not write its "
        "WAL back into the file: the cleared values are still in the log's files (FILE and FILE-wal) until it can. "
        "Close every other process that has the log open (nlc-screen serve, sqlite3, a backup) and run "
        f"`nlc-screen log purge --log {log.shown}`."))


@log_group.command("purge")
@log_option("The screening log to purge.")
def log_purge(log_url: str | None) -> None:
    """Finish an erasure's purge: write a SQLite log's WAL back into its file and empty it, so that no
    value an erasure cleared remains in the log's files (`log erase` does it at its end; it cannot while
    another process reads the log). Exit 1 when it still cannot. PostgreSQL: see docs/log.md (VACUUM).
    """
    log = _open_log(log_url or DEFAULT_LOG)
    try:
        done = log.purge()
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    if not done:
        _purge_failed(log)
    if log.backend == "sqlite":
        click.echo(visible(f"Purged {log.shown}: no value an erasure cleared remains in its files."), err=True)
    else:
        click.echo(visible(f"{log.shown} is PostgreSQL: old row versions go with VACUUM (`VACUUM FULL entries, "
                           "records;` at once; docs/log.md)."), err=True)


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
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "fhir"]), default="text",
              show_default=True,
              help="markdown: the set as a specification page (what docs/criteria/<set>.md holds); fhir: a FHIR R4B "
                   "Bundle, the set as a ResearchStudy and one EvidenceVariable per criterion (docs/fhir.md).")
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
    elif fmt == "fhir":
        from screening.fhir_export import criteria_bundle

        try:
            click.echo(json.dumps(criteria_bundle(ruleset), indent=2, ensure_ascii=False))
        except screening.ScreeningError as exc:
            raise _failure(exc) from None
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


@main.command("diff-rules")
@click.argument("old_spec", metavar="OLD")
@click.argument("new_spec", metavar="NEW")
@click.argument("source", metavar="[INPUT|-]", required=False)
@click.option("--input-format", type=click.Choice(RECORD_FORMATS), default=None,
              help="Force the input format (default: from the file name, else the content).")
@log_option("Screen again the current input record of every candidate in the screening log instead of INPUT.")
@click.option("--site", default=None, help="With --log: only this site's candidates.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True,
              help="text for a coordinator; json (the whole report); csv (one row per candidate decided differently).")
@lang_option
@click.option("-o", "--output", default="-", metavar="PATH|-",
              help="Where to write (default: standard output). A file appears only when complete.")
def diff_rules(old_spec: str, new_spec: str, source: str | None, input_format: str | None, log_url: str | None,
               site: str | None, fmt: str, lang: str, output: str) -> None:
    """Amendment impact: screen the same candidates under two criteria sets of one pack and compare.

    OLD and NEW are criteria sets as --rules takes them. INPUT holds candidate records (JSON, JSON
    Lines, CSV; - for standard input) or decision rows made with `screen --include-record`; or
    --log screens the current input record of every candidate in the screening log. Lists each
    candidate whose decision, category or subcategory changes, with the criteria whose status
    differs (marking those that decided the old and the new box), the moves between boxes, and
    every CONSORT count under both sets with its change, checked to add up. Exit 0 when it ran
    (differences are findings); 1 when the input could not be read or the counts do not add up.

    Examples:

    \b
        nlc-screen diff-rules registry-2023 paper-2024 fixtures/figure1/candidates.jsonl
        nlc-screen diff-rules paper-2024 rules/amended.yaml --log --format csv -o changes.csv
    """
    from screening import amendment

    if (source is None) == (log_url is None):
        raise click.UsageError("give an INPUT file (or - for standard input), or --log, not both")
    if log_url is None and site is not None:
        raise click.UsageError("--site filters the screening log: use it with --log")
    if log_url is not None and input_format is not None:
        raise click.UsageError("--input-format is for an INPUT file, not --log")
    old, new = _load(old_spec, lang), _load(new_spec, lang)
    lang = lang if old.speaks(lang) and new.speaks(lang) else DEFAULT_LANG
    try:
        amendment.check_comparable(old, new)
    except screening.ScreeningError as exc:
        raise click.UsageError(visible(str(exc))) from None
    try:
        if log_url is not None:
            log = _open_log(log_url)
            impact = amendment.compare(amendment.log_items(log, site=site), old, new, lang=lang, source=log.shown)
        else:
            assert source is not None
            with _open_input(source) as stream:
                items = amendment.record_items(stream, old, input_format=input_format,
                                               name=None if source == "-" else source)
                impact = amendment.compare(items, old, new, lang=lang, source=source)
        if fmt == "json":
            report = json.dumps(impact.to_dict(), indent=2, ensure_ascii=False) + "\n"
        else:
            report = impact.csv() if fmt == "csv" else impact.text(lang)
        with open_output(output, input_path=source) as out:
            out.write(report)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    summary = impact.summary()
    if summary and (fmt != "text" or output != "-" or impact.exit_code):  # a text report on screen says it all
        click.echo(visible(summary), err=True)
    if impact.exit_code:
        sys.exit(impact.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
