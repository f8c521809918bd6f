"""nlc-screen: the command line, a thin layer over the ``screening`` library.

Exit codes, the same for every command (``screening.errors``; README "Exit codes"): 0 all records
screened (audit: ran and matched); 1 the input or the rules could not be read, fully or in part, or
the input was empty (audit: a difference); 2 a usage error; 3 some records were ``error`` rows;
4 the output could not be written; 130 interrupted (SIGINT or SIGTERM); 141 the reader of the
output went away (SIGPIPE), quietly.
"""

from __future__ import annotations

import itertools
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
from screening.batch import MAX_WORKERS, screen_batch
from screening.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_UNREADABLE,
    OutputError,
)
from screening.i18n import DEFAULT_LANG, LANG_ENV, LANGUAGES
from screening.io import FORMATS
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
@click.option("--input-format", type=click.Choice(FORMATS), default=None,
              help="Input format; by default taken from the file name, else from the content.")
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
def screen(source: str, rules_spec: str, fmt: str, input_format: str | None, output: str,
           include_record: bool, compare_spec: str | None, check_duplicates: bool, workers: int,
           csv_formula_guard: bool, progress: bool | None, brief: bool, lang: str) -> None:
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
    other = _load(compare_spec) if compare_spec else None
    name = None if source == "-" else source
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with _open_input(source) as stream, _progress_bar(show) as bar, \
                open_output(output, input_path=source) as out:
            writer = RowWriter(out, fmt, ruleset, csv_formula_guard=csv_formula_guard, brief=brief, lang=lang)
            result = screen_batch(stream, writer, ruleset, input_format=input_format, name=name, workers=workers,
                                  include_record=include_record, compare_with=other,
                                  check_duplicates=check_duplicates, progress=bar, lang=lang)
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    message = result.summary()
    if message:
        click.echo(message, err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


@main.command()
@click.argument("decisions", metavar="DECISIONS|-")
@click.option("--rules", "rules_spec", default=None, metavar="NAME|PATH",
              help="Criteria set the decisions were made with (default: the one stamped on them).")
@click.option("--expect", default=None, metavar="NAME|PATH",
              help="Compare with an expected flow (figure1: the paper's Figure 1); exit 1 on any difference.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@lang_option
def audit(decisions: str, rules_spec: str | None, expect: str | None, fmt: str, lang: str) -> None:
    """Count decisions into the CONSORT enrollment boxes and check the arithmetic.

    Reads `nlc-screen screen` output (JSON Lines or a JSON array). Exits 1 when the arithmetic does
    not hold or, with --expect, when any count differs.

    Example:

        nlc-screen audit decisions.jsonl --expect figure1
    """
    try:
        with _open_input(decisions) as stream:
            rows = audit_mod.read_rows(stream, name="input" if decisions == "-" else decisions)
            first = next(rows, None)
            if rules_spec is None:  # the set stamped on the first row
                stamp = (first or {}).get("ruleset")
                rules_spec = f"{stamp['name']}@{stamp['version']}" if stamp else DEFAULT_RULESET
            ruleset = _load(rules_spec, lang if fmt == "text" else DEFAULT_LANG)
            lang = lang if ruleset.speaks(lang) else DEFAULT_LANG
            expected = audit_mod.load_expectation(expect, ruleset) if expect else None
            counts = audit_mod.count(itertools.chain([first] if first else [], rows), ruleset)
            diffs = audit_mod.compare(counts, expected) if expected else []
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    if fmt == "json":
        report = counts.to_dict()
        if expected is not None:
            report["expected"] = {"name": expected.get("name"), "differences": [
                {"box": b, "expected": w, "actual": h} for b, w, h in diffs]}
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(audit_mod.render(counts, expected, lang), nl=False)
    if diffs or counts.arithmetic():
        sys.exit(1)


def _list_packs(fmt: str) -> None:
    """``rules --list``: every shipped pack with its sets and their versions (oldest first)."""
    try:
        packs = [(pack, pack.versions()) for pack in screening.protocol.available_packs()]
    except screening.ScreeningError as exc:
        raise _failure(exc) from None
    if fmt == "json":
        click.echo(json.dumps({
            "packs": [{"name": pack.name, "title": pack.title, "registration": pack.registration,
                       "path": screening.protocol.display_path(pack.path), "default_set": pack.default_set,
                       "sets": [{"name": name, "versions": [v for v, _ in versions], "default": name == pack.default_set}
                                for name, versions in sets.items()]}
                      for pack, sets in packs],
            "sets": [{"pack": pack.name, "name": name, "version": version, "spec": f"{pack.name}/{name}@{version}"}
                     for pack, sets in packs for name, versions in sets.items() for version, _ in versions],
        }, indent=2, ensure_ascii=False))
        return
    for pack, sets in packs:
        registration = f", {pack.registration}" if pack.registration else ""
        click.echo(f"{pack.name}: {pack.title}{registration} ({screening.protocol.display_path(pack.path)})")
        for name, versions in sets.items():
            default = " (default)" if name == pack.default_set else ""
            click.echo(f"  {name}: {', '.join(v for v, _ in versions)}{default}")


@main.command()
@rules_option
@click.argument("target", required=False, metavar="[NAME|PATH]")
@click.option("--check", is_flag=True,
              help="Only load and validate the criteria set; given a pack (its name or folder), every set of it.")
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
        for path in paths:
            ruleset = _load(str(path))
            click.echo(f"{ruleset.path}: {ruleset.name} {ruleset.version} is valid ({len(ruleset.criteria)} "
                       f"criteria, {len(ruleset.flat_rules)} rules, sha256 {ruleset.sha256})")
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
