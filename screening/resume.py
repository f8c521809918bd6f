"""Resumable batches: ``nlc-screen screen IN -o OUT --resume``.

A run that may be killed at any moment (SIGKILL, a power cut, a full disk) and run again with the
same command line goes on where it stopped, so that every input record ends up exactly once in OUT
(and, with ``--log``, exactly once in the screening log). Two files stand beside OUT while it runs:

``OUT.partial``
    The rows so far, exactly as OUT will begin (its CSV header, its JSON ``[``). Rows are written
    whole, and the file is ``fsync``'d at each commit.
``OUT.partial.journal``
    JSON Lines. The first line says what the run is: the input (its size and SHA-256), every option
    that shapes a row (format, criteria set and its SHA-256, language, …) and, with ``--log``, the log
    and the batch id the run appends to. Each further line is a **commit**, appended and ``fsync``'d
    after the rows it counts: ``{"rows": N, "errors": E, "bytes": B, "keys": …}`` — N input records
    done, E of them error rows, the first B bytes of ``OUT.partial`` are theirs, and ``keys`` the
    duplicate check's 16 bytes for each of the rows since the last commit (base64).

A commit is made every :data:`COMMIT_ROWS` rows or :data:`COMMIT_SECONDS` seconds, whichever comes
first. On ``--resume`` the journal is read (a torn last line, written when the run was killed, is
ignored), ``OUT.partial`` is cut back to the last commit whose bytes it holds, the first N input
records are skipped — their duplicate-check keys replayed, so that a second record for a candidate
is still warned about across the interruption — and the rest are screened and appended. The
screening log keeps the same batch id; the entries it already holds for that batch (a log commits
in input order, so they are its first L records; the last one's position is checked against the
input) are not added again, and records between the two (L < N, or N < L) are screened again for
whichever of the two lacks them. The resumed output is byte for byte the output of a run that was
never interrupted.

Only when the run completes is ``OUT.partial`` renamed to OUT (after an ``fsync``, then the
directory's), and the journal removed: OUT never exists unless complete. So ``--resume`` with an OUT
that exists and no journal is refused: that run completed (a run killed after the rename is taken
as complete), and screening it again would log every record twice. A journal for another
input or other options (the nlc-screen version and, with ``--log``, the screener included) is
refused (:class:`~screening.errors.ResumeError`), never overwritten; so is a journal whose OUT was
written after its run began (the header keeps what OUT was then: a plain ``-o`` run completed it
meanwhile, and resuming would screen and log the rest of the old run a second time).
``--workers`` may differ between the runs: the output does not depend on it.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import os
import stat
import time
import uuid
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import OutputError, ResumeError
from .sink import OutputStream, _ignore_sigxfsz, _reason, check_not_input

#: What this module writes as the journal's first line says, so that a future layout is not misread.
JOURNAL_VERSION = 1
#: A commit at least every so many rows …
COMMIT_ROWS = 500
#: … and at least every so many seconds.
COMMIT_SECONDS = 1.0
PARTIAL_SUFFIX = ".partial"
JOURNAL_SUFFIX = ".partial.journal"


def partial_paths(target: str) -> tuple[str, str]:
    """The partial output file and the journal of a resumable run writing ``target``."""
    return target + PARTIAL_SUFFIX, target + JOURNAL_SUFFIX


def input_fingerprint(path: str) -> dict[str, Any]:
    """The input's size and SHA-256: a resumed run must read the same bytes.

    :raises ResumeError: the input is not a regular file that can be read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ResumeError(f"--resume needs an input file it can read again; {path} is not a regular file")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ResumeError(f"cannot read the input {path}: {exc.strerror or exc}") from None
    return {"size": st.st_size, "sha256": digest.hexdigest()}


@dataclass
class Done:
    """What a run had committed: input records done, error rows among them, bytes of the partial file,
    and the duplicate check's (key, tag) pairs of those rows, flattened."""

    rows: int = 0
    errors: int = 0
    bytes: int = 0
    keys: array[int] = field(default_factory=lambda: array("Q"))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_journal(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The journal's header and its complete commit lines, in order.

    :raises ResumeError: its first line is not a header this module wrote."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete, torn = lines[:-1], lines[-1]  # a last line without its newline was being written when killed
    del torn
    try:
        header = orjson.loads(complete[0]) if complete else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("nlc_screen_resume") != JOURNAL_VERSION:
        raise ResumeError(f"{path} is not the journal of an nlc-screen run this version can resume; delete it "
                          f"and {path.removesuffix(JOURNAL_SUFFIX) + PARTIAL_SUFFIX} to start again")
    commits = []
    for line in complete[1:]:
        try:
            commit = orjson.loads(line)
        except orjson.JSONDecodeError:
            break
        if not isinstance(commit, dict) or not {"rows", "errors", "bytes", "keys"} <= set(commit):
            break
        commits.append(commit)
    return header, commits


class ResumableOutput:
    """The partial output of a resumable run (see the module docstring): ``stream`` takes the rows;
    :meth:`commit` makes them durable; the context of :func:`open_resumable` renames the file when the
    run completes."""

    def __init__(self, target: str, header: dict[str, Any], done: Done, fd: int, *, resumed: bool) -> None:
        self.target = target
        self.partial, self.journal = partial_paths(target)
        self.header = header
        #: what earlier runs committed (all zero for a new run)
        self.done = done
        #: whether an interrupted run is being continued
        self.resumed = resumed
        self.batch_id: str | None = header.get("batch_id")
        self.fd = fd
        self.stream = OutputStream(f"the partial output {self.partial}", fd=fd,
                                   failure_note="it keeps the rows committed before; run again with --resume")
        #: the screening log's progress for this batch (set by the caller: entries kept, last position)
        self.logged: int = 0
        self.logged_last: str | None = None
        self._since = time.monotonic()
        self._uncommitted = 0

    def due(self, rows: int) -> bool:
        """Whether to commit, ``rows`` rows having been written since the last :meth:`commit`."""
        return rows >= COMMIT_ROWS or (rows > 0 and time.monotonic() - self._since >= COMMIT_SECONDS)

    def commit(self, writer: Any, *, rows: int, errors: int, keys: array[int]) -> None:
        """Make the rows written so far durable: flush ``writer`` and the stream, ``fsync`` the partial
        file, then append and ``fsync`` a commit line (``rows``, ``errors``: totals; ``keys``: the
        duplicate check's pairs of the rows since the last commit)."""
        writer.flush()
        self.stream.flush()
        try:
            os.fsync(self.fd)
            size = os.lseek(self.fd, 0, os.SEEK_CUR)
        except OSError as exc:
            raise OutputError(f"cannot write the partial output {self.partial}: {_reason(exc)}; it keeps the rows "
                              "committed before; run again with --resume") from None
        line = {"rows": rows, "errors": errors, "bytes": size,
                "keys": base64.b64encode(keys.tobytes()).decode("ascii")}
        _append_line(self.journal, line)
        self.done = Done(rows, errors, size)
        self._since = time.monotonic()


def _append_line(path: str, item: dict[str, Any]) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            data = orjson.dumps(item) + b"\n"
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write the journal {path}: {_reason(exc)}; run again with --resume") from None


def _signature(path: str) -> list[int] | None:
    """What tells one version of a file from another (device, inode, size, mtime), or None when absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _completed_since(dest: str, journal: str, header: dict[str, Any]) -> str | None:
    """Why ``dest`` was written after the run of ``journal`` began (None when it was not): it is not
    the file that was there when the run began (a plain ``-o`` run completed it meanwhile). A journal
    written before this check: ``dest`` newer than the journal's last commit."""
    now = _signature(dest)
    if "output_before" in header:
        before = header["output_before"]
        if now is None or now == before:
            return None
        return "it did not exist then" if before is None else "it is not the file that was there then"
    if now is None:
        return None
    try:
        last = os.stat(journal).st_mtime_ns
    except OSError:
        return None
    return "it is newer than the journal's last commit" if now[3] > last else None


def _differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return sorted(key for key in set(found) | set(wanted) if found.get(key) != wanted.get(key))


@contextmanager
def open_resumable(target: str, *, input_path: str, settings: dict[str, Any],
                   with_log: bool) -> Iterator[ResumableOutput | None]:
    """Begin or continue the resumable run writing ``target`` from ``input_path`` with ``settings``
    (every option that shapes a row, and the log's URL without its password); yields None when an
    earlier run had already completed it (and only its journal was left).

    When the block ends normally the partial file is renamed to ``target``; when it ends with an
    exception (or the process is killed), the partial file and the journal stay for the next run.

    :raises ResumeError: the journal is for another input or other settings, or cannot be read.
    :raises OutputError: the output is the input, is a directory, or cannot be written.
    """
    check_not_input(target, input_path)
    _ignore_sigxfsz()
    if os.path.isdir(target):
        raise OutputError(f"the output {target} is a directory; name a file")
    dest = os.path.realpath(target)  # a symlink is written through: the partial file beside the file it names
    partial, journal = partial_paths(dest)
    header = {"nlc_screen_resume": JOURNAL_VERSION, "output": os.path.basename(dest),
              "input": input_fingerprint(input_path), "settings": settings, "output_before": _signature(dest)}

    def matching() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The journal of this run (None when there is none). :raises ResumeError: another run's."""
        if not os.path.exists(journal):
            return None
        found = _read_journal(journal)
        differ = _differences(found[0].get("settings", {}), settings)
        if found[0].get("input") != header["input"]:
            differ.insert(0, "the input file's contents")
        if differ:
            raise ResumeError(f"cannot resume {target}: {journal} was written by a run with another "
                              f"{', '.join(differ)}; run that command again, or delete {partial} and {journal} to "
                              "start over")
        return found

    done = Done()
    fd = -1
    try:
        found = matching()
        if os.path.exists(dest) and not os.path.exists(partial):
            if found is None:
                raise ResumeError(f"{target} exists and no interrupted run of it was found ({journal}): it is "
                                  "complete. --resume only finishes an interrupted run; delete it, or run without "
                                  "--resume, to screen again")
            os.unlink(journal)  # renamed, then killed before the journal was removed: complete
            _fsync_dir(journal)
            yield None
            return
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel however the process ends
        except BlockingIOError:
            os.close(fd)
            raise ResumeError(f"another nlc-screen run is writing {partial} now; wait for it to end") from None
        try:
            same = os.stat(partial).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # another run held the lock and renamed the file meanwhile
            os.close(fd)
            raise ResumeError(f"another nlc-screen run finished {target} meanwhile; nothing to resume")
        found = matching()  # again, under the lock
        if found is not None:
            stale = _completed_since(dest, journal, found[0])
            if stale:
                os.close(fd)
                raise ResumeError(f"cannot resume {target}: it was written after the run of {journal} was "
                                  f"interrupted ({stale}), so another run completed it; resuming would screen "
                                  f"the rest of that run again (and log it twice). Keep {target}: delete {partial} "
                                  f"and {journal}; or delete {target} to finish the interrupted run")
            header, commits = found
            size = os.fstat(fd).st_size
            keys = array("Q")
            for commit in commits:
                if commit["bytes"] > size:  # the file lost what this commit counted: go on from the one before
                    break
                done = Done(int(commit["rows"]), int(commit["errors"]), int(commit["bytes"]))
                keys.frombytes(base64.b64decode(commit["keys"]))
            done.keys = keys
        else:
            if with_log:
                header["batch_id"] = str(uuid.uuid4())
            temp = journal + ".new"
            with open(temp, "wb") as f:
                f.write(orjson.dumps(header) + b"\n")
                f.flush()
                os.fsync(f.fileno())
        os.ftruncate(fd, done.bytes)
        os.lseek(fd, done.bytes, os.SEEK_SET)
        os.fsync(fd)
        if found is None:  # the journal appears only once its partial file is empty and durable
            os.replace(journal + ".new", journal)
            _fsync_dir(journal)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise OutputError(f"cannot write the partial output {partial}: {_reason(exc)}") from None
    resumed = found is not None
    run = ResumableOutput(target, header, done, fd, resumed=resumed)
    finished = False
    try:
        yield run
        try:
            run.stream.flush()
            os.fsync(fd)
            if os.path.exists(dest):
                os.fchmod(fd, stat.S_IMODE(os.stat(dest).st_mode))
            os.replace(partial, dest)  # still holding the lock: a run waiting for it finds the file gone
            _fsync_dir(dest)
            os.unlink(journal)
            _fsync_dir(journal)
            os.close(fd)
            fd = -1
            finished = True
        except OSError as exc:
            raise OutputError(f"cannot write the output file {target}: {_reason(exc)}; the rows are kept in "
                              f"{partial}: run again with --resume") from None
    finally:
        run.stream.close()
        if not finished and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def resumed_note(run: ResumableOutput) -> str:
    """What to tell the user when a run goes on."""
    batch = f" (screening log batch {run.batch_id})" if run.batch_id else ""
    return (f"Resuming {run.target}: {run.done.rows} record(s) were done{batch}; going on from record "
            f"{run.done.rows + 1}.")


def interrupted_note(target: str) -> str:
    partial, _ = partial_paths(target)
    return f"The rows committed so far are kept in {partial}: run the same command again to go on."

