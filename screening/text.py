"""Text from outside that is shown on one line: which characters are unsafe, and how to show them.

A record, a rules file or a decisions file may hold characters that forge a line or drive a
terminal: C0 and C1 controls, DEL, the invisible bidirectional controls (ALM, LRM, RLM, LRE … RLO,
LRI … PDI) and the line and paragraph separators. Writers show them escaped (:func:`visible`);
the rules loader refuses them (:data:`UNSAFE`).
"""

from __future__ import annotations

import re
import unicodedata

#: The character class of :data:`UNSAFE`, for patterns that allow some of it (e.g. a line break).
UNSAFE_CLASS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[{UNSAFE_CLASS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: str) -> str:
    """``text`` with control characters and bidi controls escaped visibly (``\\n``, ``\\x1b``, ``\\u202e``), so
    that it stays on one line and cannot drive a terminal. Other text (any script, symbols) is left alone."""
    return UNSAFE.sub(_escape, text) if UNSAFE.search(text) else text


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    """``text`` followed by spaces to fill ``columns`` terminal columns (as ``f"{text:<columns}"`` does
    for Latin text, but counting a Chinese character as two)."""
    return text + " " * max(0, columns - width(text))


def clip(text: str, columns: int) -> str:
    """``text`` cut to at most ``columns`` terminal columns, with an ellipsis when cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > columns - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"
