"""The errors nlc-screen raises, in one place.

::

    ScreeningError                 root: anything nlc-screen itself reports
    ├── RuleDefinitionError        a criteria set or value set in rules/ is invalid (names file, criterion, field)
    ├── RulesetNotFound            --rules NAME|PATH names no criteria set
    ├── CandidateRecordError       one input record cannot be read (names its position and field path)
    ├── InputFormatError           a whole input cannot be read (unknown format, unreadable file)
    ├── EngineError                the rules engine failed (durable_rules' own errors are translated here)
    ├── IncomparableRulesets       two criteria sets whose CONSORT boxes differ (diff-rules: different packs)
    ├── LogError                   the screening log cannot be opened, read or written
    ├── OutputError                the output cannot be written (or would overwrite the input)
    ├── WorkerError                a worker process of ``--workers N`` died or failed; the batch stops
    ├── ResumeError                ``screen --resume`` cannot go on with the interrupted run it found
    └── ReportError                a diagram or report cannot be drawn or written (Graphviz missing, …)

The CLI (and any HTTP front end to come) translates these once, at its edge. A ``CandidateRecordError`` never
stops a batch: it becomes that record's ``error`` row.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ScreeningError(Exception):
    """Root of every error nlc-screen raises on purpose."""


class RuleDefinitionError(ScreeningError):
    """A rules file is invalid. The message names the file, the criterion and the field."""

    def __init__(self, message: str, *, file: str | None = None, criterion: str | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.criterion = criterion
        self.field = field
        where = ", ".join(
            part for part in (
                file and f"file {file}",
                criterion and f"criterion {criterion}",
                field and f"field {field!r}",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class RulesetNotFound(ScreeningError):
    """No criteria set matches the name or path given."""


class FieldProblem:
    """One problem with one field of a record: where (a field path) and what (never the value)."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def to_dict(self) -> dict[str, str]:
        return {"field": self.path, "message": self.message}


class CandidateRecordError(ScreeningError):
    """A record cannot be read. Carries its position, its id if readable, and the field problems."""

    def __init__(self, problems: list[FieldProblem], *, position: str | None = None,
                 candidate_id: str | None = None, site: str | None = None) -> None:
        self.problems = problems
        self.position = position
        self.candidate_id = candidate_id
        self.site = site
        super().__init__(self.describe())

    @property
    def fields(self) -> list[str]:
        return [p.path for p in self.problems]

    def describe(self) -> str:
        text = "; ".join(str(p) for p in self.problems)
        who = self.candidate_id and f"candidate {self.candidate_id}"
        where = ", ".join(x for x in (self.position, who) if x)
        return f"{where}: {text}" if where else text


class InputFormatError(ScreeningError):
    """A whole input (file or stream) cannot be read at all."""


class EngineError(ScreeningError):
    """The rules engine failed. Raised only by screening.engine, which translates durable_rules' errors."""


class IncomparableRulesets(ScreeningError):
    """Two criteria sets cannot be compared count for count: their CONSORT boxes differ (different packs)."""


class LogError(ScreeningError):
    """The screening log cannot be opened, read or written (the message names it, never a record's contents)."""


class WorkerError(ScreeningError):
    """A worker process died or failed while screening; the message names the records in flight."""


class ResumeError(ScreeningError):
    """``screen --resume`` found an interrupted run it cannot go on with (another input or other options,
    a journal it cannot read, a screening log that does not match); the message says what to do."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------------
# Exit codes: one table for every command (README "Exit codes").

#: every record screened (audit / diff-rules: the command ran and, with --expect, matched)
EXIT_OK = 0
#: the input or the rules could not be read, fully or in part (the message says how many records
#: were not read), the input was empty, or an audit did not match / was inconsistent
EXIT_UNREADABLE = 1
#: a usage error (click's own code)
EXIT_USAGE = 2
#: some records were ``error`` rows; the rest were screened
EXIT_RECORD_ERRORS = 3
#: the output could not be written (disk full, file-size limit, I/O error, the output is the input)
EXIT_OUTPUT = 4
#: interrupted by SIGINT or SIGTERM
EXIT_INTERRUPTED = 130
#: the reader of the output went away (SIGPIPE): end quietly
EXIT_BROKEN_PIPE = 141


class OutputError(ScreeningError):
    """The output cannot be written (or would overwrite the input). Exit code 4."""


class ReportError(ScreeningError):
    """A report or diagram cannot be made: an unknown format, Graphviz missing, a file not writable."""
