"""Where decision rows go: a file that appears only when complete, or standard output cut at a row boundary.

:func:`open_output` is the one way nlc-screen opens its output::

    with open_output(path_or_dash, input_path=source) as out:
        writer = RowWriter(out, fmt, ruleset)
        ...
        writer.close()

* **A file** is written to a temporary file beside it (``.NAME.XXXXXXXX.part``, same directory, so the same
  file system) and renamed over it only when the block ends normally, after an ``fsync``. If writing fails
  (disk full, the file-size limit, an I/O error), or anything else ends the block (an error, Ctrl-C), the
  temporary file is removed and the target is left exactly as it was. The new file keeps the mode of the file
  it replaces (else ``0666`` less the umask). A symlink is written through (the file it points to is
  replaced), a directory or a read-only file is refused. Devices, FIFOs and ``/dev/…``, ``/proc/…`` paths
  (``/dev/null``, ``/dev/stdout``) are written directly, like standard output.
* **Standard output** (``-``) gets whole rows only: rows are buffered and written with ``os.write`` in whole
  rows; when a write fails (or Ctrl-C interrupts it) and standard output is a regular file, the file is cut
  back (``ftruncate``) to the end of the last complete write call, so it ends with a complete row. On a pipe
  or terminal a failed write cannot be undone; it stops there.
* Either way a write failure raises :class:`~screening.errors.OutputError` naming the output and the
  operating system's reason; no later write is attempted. A reader that went away (``EPIPE``) is *not* an
  OutputError: :class:`BrokenPipeError` propagates as it is (the CLI ends quietly with 141).
* An output that is the input file (same device and inode: the same path, a symlink or a hard link, or
  standard output redirected onto it with ``>>``) is refused with an OutputError before anything is
  written (:func:`check_not_input`).
* ``SIGXFSZ`` is ignored (Python already does so at start-up; an embedding program may not), so the file-size
  limit is a write error (``EFBIG``) rather than the kernel killing the process.

The stream yielded, :class:`OutputStream`, is a text stream with a ``buffer`` attribute that takes bytes,
like ``sys.stdout``: :class:`screening.output.RowWriter` writes JSON Lines blocks there without re-encoding.
Each ``write`` call (text or bytes) is taken to end on a row boundary, which RowWriter guarantees.
"""

from __future__ import annotations

import errno
import io
import os
import select
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO, cast

from .errors import OutputError

#: rows are collected until this many bytes are pending, then written with one system call (or a few)
FLUSH_BYTES = 1 << 16
STDOUT_NAME = "standard output"


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.EFBIG:
        text += " (the file-size limit, ulimit -f)"
    return text


class _Failed(Exception):
    """An OSError while writing, already explained; becomes an OutputError at the edge of the stream."""


class _ByteSide:
    """``OutputStream.buffer``: bytes written here go in order with the text written to the stream."""

    def __init__(self, owner: OutputStream) -> None:
        self._owner = owner

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._owner._append(bytes(data))
        return len(data)

    def flush(self) -> None:
        self._owner.flush()


class OutputStream(io.TextIOBase, TextIO):
    """A UTF-8 text stream over a file descriptor (or, without one, over another stream) that never leaves a
    partial row behind it. Built by :func:`open_output`; see the module docstring."""

    encoding = "utf-8"

    def __init__(self, name: str, *, fd: int | None = None, stream: Any = None,
                 failure_note: str | None = None) -> None:
        super().__init__()
        self._name = name
        self._fd = fd
        self._stream = stream
        self._failure_note = failure_note
        self._pending = bytearray()
        self._ends: list[int] = []          # where, in _pending, each write call ended: the row boundaries
        self._dead: str | None = None       # the OutputError message once a write failed
        self._broken = False                # the reader went away
        self._closed = False
        self._regular = False
        if fd is not None:
            try:
                self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                pass
        self._buffer = _ByteSide(self)

    # -- the text stream API ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> str:
        return "w"

    @property
    def buffer(self) -> BinaryIO:
        """Bytes written here go out in order with the text (UTF-8 JSON Lines, as RowWriter.write_block)."""
        return cast(BinaryIO, self._buffer)

    @property
    def line_buffering(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        # backslashreplace: a lone surrogate in a value must not end the run halfway
        self._append(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        self._check()
        if self._pending:
            self._drain()

    def close(self) -> None:
        """Mark the stream closed without writing (the owner flushes; see :func:`open_output`)."""
        self._closed = True

    # -- internals -------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._broken:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        if self._dead is not None:
            raise OutputError(self._dead)
        if self._closed:
            raise ValueError("I/O operation on closed file")

    def _append(self, data: bytes) -> None:
        self._check()
        if not data:
            return
        if not self._pending and len(data) >= FLUSH_BYTES:  # a big block alone: write it without copying
            self._drain(data, [len(data)])
            return
        self._pending += data
        self._ends.append(len(self._pending))
        if len(self._pending) >= FLUSH_BYTES:
            self._drain()

    def _put(self, view: memoryview) -> int:
        """Write some of ``view``; return how many bytes were taken."""
        if self._fd is None:
            target = self._stream
            if hasattr(target, "buffer"):
                target.buffer.write(view)
            else:
                target.write(bytes(view).decode("utf-8", "backslashreplace"))
            target.flush()
            return len(view)
        while True:
            try:
                return os.write(self._fd, view)
            except BlockingIOError:  # a non-blocking descriptor shared with someone else: wait, then retry
                select.select([], [self._fd], [])

    def _drain(self, data: bytes | bytearray | None = None, ends: list[int] | None = None) -> None:
        """Write ``data`` (default: what is pending) whose write calls ended at ``ends``."""
        if data is None or ends is None:
            data, ends = self._pending, self._ends
            self._pending, self._ends = bytearray(), []
        start = None
        if self._regular and self._fd is not None and self._failure_note is None:
            try:
                start = os.lseek(self._fd, 0, os.SEEK_CUR)
            except OSError:
                start = None
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += self._put(view[done:])
        except BrokenPipeError:
            self._broken = True
            raise
        except OSError as exc:
            self._dead = self._explain(exc, start, done, ends)
            raise OutputError(self._dead) from None
        except BaseException:  # Ctrl-C (or SIGTERM) in the middle of a write: no partial row either
            self._dead = "the output was interrupted"
            self._cut_back(start, done, ends)
            raise

    def _cut_back(self, start: int | None, done: int, ends: list[int]) -> str:
        """After ``done`` bytes of a write that ended rows at ``ends``: make the output end with a complete
        row if it can; say how it ends."""
        keep = max((end for end in ends if end <= done), default=0)
        if keep == done:
            return "the output ends with a complete row"
        if self._regular and start is not None and self._fd is not None:
            try:  # cut back only what this stream wrote: nobody else appended meanwhile
                if os.fstat(self._fd).st_size == start + done:
                    os.ftruncate(self._fd, start + keep)
                    os.lseek(self._fd, start + keep, os.SEEK_SET)
                    return "the output was cut back to end with a complete row"
            except OSError:
                pass
        return "the last row written may be incomplete"

    def _explain(self, exc: OSError, start: int | None, done: int, ends: list[int]) -> str:
        if self._failure_note is not None:
            return f"cannot write {self._name}: {_reason(exc)}; {self._failure_note}"
        return f"cannot write to {self._name}: {_reason(exc)}; {self._cut_back(start, done, ends)}"


def _ignore_sigxfsz() -> None:
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except (OSError, ValueError):  # pragma: no cover - not the main interpreter
            pass


def _fileno(stream: Any) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _identity(path: str, std: Any) -> os.stat_result | None:
    """The file behind ``path`` (``-``: behind the standard stream ``std``), or None when there is none."""
    try:
        if path == "-":
            fd = _fileno(std)
            return None if fd is None else os.fstat(fd)
        return os.stat(path)
    except (OSError, ValueError):
        return None


def check_not_input(target: str, input_path: str | None) -> None:
    """Refuse an output that is the input file: the same device and inode, whatever the path (a symlink, a
    hard link, ``-`` for standard output redirected onto it). An output that does not exist yet is fine.

    :raises OutputError: naming both.
    """
    if input_path is None:
        return
    out = _identity(target, sys.stdout)
    if out is None or not stat.S_ISREG(out.st_mode):
        return
    inp = _identity(input_path, sys.stdin)
    if inp is None or (out.st_dev, out.st_ino) != (inp.st_dev, inp.st_ino):
        return
    source = "standard input" if input_path == "-" else input_path
    if target == "-":
        raise OutputError(f"standard output is the input file ({source}): writing would destroy the input; "
                          "write the decisions to another file (and note that `> FILE` empties FILE before "
                          "nlc-screen starts)")
    raise OutputError(f"the output {target} is the input file ({source}, the same file): writing it would destroy "
                      "the input; choose another output file")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _direct(path: str) -> bool:
    """Written directly, not through a temporary file: devices, FIFOs, sockets, and /dev, /proc paths."""
    absolute = os.path.abspath(path)
    return absolute.startswith(("/dev/", "/proc/"))


@contextmanager
def _stream_to(stream: OutputStream, fd_to_close: int | None) -> Iterator[OutputStream]:
    """Standard output or a device: flush what is pending at the end (also after an error in the block:
    those are complete rows); close ``fd_to_close``."""
    try:
        try:
            yield stream
        except BaseException:
            try:
                stream.flush()
            except (OutputError, OSError):
                pass  # the error that ended the block is the one to report
            raise
        stream.flush()
    finally:
        stream.close()
        if fd_to_close is not None:
            try:
                os.close(fd_to_close)
            except OSError:
                pass


@contextmanager
def open_output(target: str, *, input_path: str | None = None, durable: bool = True) -> Iterator[OutputStream]:
    """Open ``target`` (a path, or ``-`` for standard output) for decision rows; see the module docstring.

    ``input_path`` (a path, or ``-`` for standard input) is checked first: an output that is the input is
    refused. ``durable``: ``fsync`` the file before it replaces the target (so a write error the disk reports
    late is still caught, and a crash cannot leave an empty target).

    :raises OutputError: the output is the input, cannot be created, or a write to it failed.
    """
    check_not_input(target, input_path)
    _ignore_sigxfsz()
    if target == "-":
        fd = _fileno(sys.stdout)
        sys.stdout.flush()
        stream = OutputStream(STDOUT_NAME, fd=fd, stream=None if fd is not None else sys.stdout)
        with _stream_to(stream, None) as out:
            yield out
        return
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"cannot write the output file {target}: {_reason(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the output {target} is a directory; name a file")
    if (st is not None and not stat.S_ISREG(st.st_mode)) or _direct(target):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write the output file {target}: {_reason(exc)}") from None
        with _stream_to(OutputStream(target, fd=fd), fd) as out:
            yield out
        return
    if st is not None and not os.access(target, os.W_OK):
        raise OutputError(f"cannot write the output file {target}: {os.strerror(errno.EACCES)}")
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    dest = os.path.realpath(target)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".part",
                                    dir=os.path.dirname(dest))
    except OSError as exc:
        raise OutputError(f"cannot write the output file {target}: {_reason(exc)} (creating a temporary file "
                          f"beside it)") from None
    untouched = "it was left as it was" if st is not None else "it was not created"
    stream = OutputStream(f"the output file {target}", fd=fd, failure_note=untouched)
    done = False
    try:
        yield stream  # an exception from the block (a failed write, an input error, Ctrl-C) discards the file
        try:
            stream.flush()
            if durable:
                os.fsync(fd)
            os.fchmod(fd, mode)
            os.close(fd)
            fd = -1
            os.replace(temp, dest)
            done = True
        except OSError as exc:
            raise OutputError(f"cannot write the output file {target}: {_reason(exc)}; {untouched}") from None
    finally:
        stream.close()
        if not done:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.unlink(temp)
            except OSError:
                pass
