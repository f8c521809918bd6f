"""The guided interview (``nlc-screen interview``): one question at a time, in the order of
:func:`screening.ask.question_order`, until the candidate is decided.

:func:`interview` holds the dialogue and nothing else: it reads answers through ``ask`` and writes
through ``say``, so the command line (typed or piped) and the tests drive the same code. An answer
is parsed by its field's type (:func:`parse_answer`) and then checked by the record model with the
rest of the record; a malformed one is asked again with the answer expected. An empty answer means
"not known": the field stays unknown and is not asked again in this interview.

The interview ends when nothing is left to ask (the candidate is excluded, or eligible with
consent given, or what is open waits for the investigator's review), when every open question was
skipped, or when the answers run out (``ask`` returns None: the end of piped input). The record so
far is in :attr:`Interview.record` whatever the end, so the caller can save it after Ctrl-C too.

What it never does:

* ask the same question round and round: a field answered in this interview is not asked again,
  except a list whose answer added to it (a medicine may still need its dates); an answer that
  changes nothing counts as "not known";
* lose a list: a question about a field that holds an answer shows it (``now: …``), and a list
  answer *adds* its entries — an entry with the same required field (a medicine's ``name``) as one
  already listed updates that one, keeping the fields the answer does not give;
* call an unreadable record decided: a resumed record the record model refuses asks the refused
  fields again (an empty answer removes an optional one); one it cannot ask about (a refused list
  entry, an unknown field) ends the interview with ``ended == "error"`` (the command line exits
  non-zero naming the file and the fields). An answer that is not UTF-8 text is asked again.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ask import QuestionOrder, get_path, set_path
from .fields import FieldSpec
from .i18n import DEFAULT_LANG, answer_words
from .i18n import message as msg
from .output import text_block
from .protocol import Ruleset

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadAnswer(ValueError):
    """An answer that is not what the field takes."""


def parse_answer(spec: FieldSpec, text: str) -> Any:
    """A typed answer as the field's JSON value.

    enum: one of its values (any case) or its number in the list; bool: yes / no (true / false, 是 / 否);
    int, number; date: YYYY-MM-DD; list: a JSON array (or one JSON object: one entry), ``none`` for an
    empty one, or — when its items have one required field — that field's values separated by commas
    (or spaces, unless that field is free text); text: as typed.

    :raises BadAnswer: the answer is not of the field's type (or not UTF-8 text)."""
    text = text.strip()
    kind = spec.type
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes read with surrogateescape
        raise BadAnswer(kind) from None
    if kind == "enum":
        lowered = text.lower()
        if lowered in spec.values:
            return lowered
        if text.isdigit() and 1 <= int(text) <= len(spec.values):
            return spec.values[int(text) - 1]
        raise BadAnswer(kind)
    if kind == "bool":
        if text.lower() in answer_words("yes"):
            return True
        if text.lower() in answer_words("no"):
            return False
        raise BadAnswer(kind)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise BadAnswer(kind) from None
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise BadAnswer(kind) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise BadAnswer(kind)
        return value
    if kind == "date":
        if not _DATE.match(text):
            raise BadAnswer(kind)
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            raise BadAnswer(kind) from None
    if kind in ("list", "object"):
        if kind == "list" and text.lower() in answer_words("none"):
            return []
        if text[:1] in "[{":
            try:
                value = json.loads(text)
            except ValueError:
                raise BadAnswer(kind) from None
            if isinstance(value, list if kind == "list" else dict):
                return value
            if kind == "list" and isinstance(value, dict) and spec.items is not None and spec.items.type == "object":
                return [value]  # one entry
            raise BadAnswer(kind)
        item = spec.items
        if kind == "list" and item is not None and item.type == "object":
            required = [name for name, f in item.fields.items() if f.required]
            if len(required) == 1:
                sub = item.fields[required[0]]
                # free text may hold spaces ("furosemide 40 mg"): then only commas and semicolons separate
                between = r"\s*[,，;；]\s*" if sub.type == "text" else r"[,，;；\s]+"
                return [{required[0]: parse_answer(sub, part)} for part in re.split(between, text) if part]
        raise BadAnswer(kind)
    return text


@dataclass
class Interview:
    """What an interview did: the record, the questions asked (field paths, in order), the decision."""

    record: dict[str, Any]
    asked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    row: dict[str, Any] | None = None
    #: why it ended: ``decided``, ``review`` (what is open waits for the investigator), ``skipped``
    #: (every open question was skipped), ``unknown`` (answered, and the answers leave it open),
    #: ``no_more_answers``, or ``error`` (a record that cannot be
    #: read, with fields that cannot be asked again)
    ended: str = ""
    #: fields answered in this interview, not asked again (a list is, while its answers add to it)
    settled: list[str] = field(default_factory=list)


def question_text(ruleset: Ruleset, path: str, lang: str) -> str:
    """The question for a field: the pack's, or (a field without one) its label with a question mark."""
    spec = ruleset.record.get(path)
    question = ruleset.record.question(path, lang) or ruleset.record.question(path)
    if question:
        return question
    label = (spec.labels.get(lang) or spec.label) if spec is not None else ""
    return msg("interview_field", lang, label=label or path)


def interview(ruleset: Ruleset, *, ask: Callable[[str], str | None], say: Callable[[str], None],
              record: dict[str, Any] | None = None, lang: str = DEFAULT_LANG,
              state: Interview | None = None) -> Interview:
    """Ask until the candidate is decided; see the module's text.

    :param ask: shows a prompt and returns the answer typed, or None when there are no more answers.
    :param say: writes a block of text (a question, a note, the decision).
    :param state: an :class:`Interview` to fill in as it goes (the caller keeps it for Ctrl-C)."""
    order = QuestionOrder(ruleset, lang=lang)
    done = state or Interview(record=dict(record or {}))
    if record is not None and state is not None:
        done.record = dict(record)
    while True:
        plan = order(done.record, skip=[*done.skipped, *done.settled])
        question = plan.next
        if question is None:
            done.row = plan.row
            open_fields = plan.row.get("ask_next") or []
            done.ended = ("error" if plan.row["decision"] == "error" else "decided" if not open_fields
                          else "skipped" if set(open_fields) & set(done.skipped)
                          else "unknown" if set(open_fields) & set(done.settled) else "review")
            break
        path = question.path
        spec = ruleset.record.get(path)
        assert spec is not None
        answer_format = ruleset.record.answer_format(path, lang) or ""
        number = len(done.asked) + 1
        key = _entry_key(spec)
        adds = spec.type == "list" and bool(get_path(done.record, path))
        say(msg("interview_question", lang, n=number, question=question_text(ruleset, path, lang), path=path,
                format=answer_format) + ("" if question.required and not question.refused
                                         else msg("interview_skip", lang))
            + (msg("interview_list_adds", lang, fields=", ".join(key) or "value") if adds else ""))
        current = get_path(done.record, path)
        if question.refused:
            say(msg("interview_fix", lang, reason=_field_part(str(plan.row.get("error", "")), path)))
        elif current is not None:
            say(msg("interview_current", lang, value=json.dumps(current, ensure_ascii=False)))
        done.asked.append(path)
        while True:
            text = ask("> ")
            if text is None:
                done.row = plan.row
                done.ended = "no_more_answers"
                return done
            if not text.strip():
                if question.required and (not question.refused or spec.required):
                    say(msg("interview_required", lang, format=answer_format))
                    continue
                if question.refused:  # not known: the refused answer goes
                    set_path(done.record, path, None)
                done.skipped.append(path)
                break
            try:
                value = parse_answer(spec, text)
            except BadAnswer:
                say(msg("interview_again", lang, format=answer_format))
                continue
            previous = copy.deepcopy(get_path(done.record, path))
            if spec.type == "list" and isinstance(previous, list) and isinstance(value, list):
                value = _add_entries(previous, value, key)
            if value == previous:  # nothing new: as "not known"
                done.skipped.append(path)
                break
            set_path(done.record, path, value)
            check = order.screen(done.record)
            problem = [f for f in check.get("error_fields", []) if f == path or f.startswith(path + ".")
                       or f.startswith(path + "[")]
            if check["decision"] == "error" and problem:
                set_path(done.record, path, previous)
                reason = str(check.get("error", ""))
                say(msg("interview_refused", lang, reason=_field_part(reason, path), format=answer_format))
                continue
            if spec.type != "list":
                done.settled.append(path)
            break
    return done


def _entry_key(spec: FieldSpec) -> list[str]:
    """The required fields of a list's object entries (what tells an entry apart), else none."""
    item = spec.items
    if spec.type != "list" or item is None or item.type != "object":
        return []
    return [name for name, f in item.fields.items() if f.required]


def _add_entries(listed: list[Any], given: list[Any], key: list[str]) -> list[Any]:
    """``listed`` with ``given`` added: an object entry with the same ``key`` fields as a listed one
    updates it (its other fields kept), a value already listed is not repeated."""
    out = copy.deepcopy(listed)
    for entry in given:
        if isinstance(entry, dict) and key:
            same = next((old for old in out if isinstance(old, dict)
                         and all(old.get(k) == entry.get(k) for k in key)), None)
            if same is not None:
                same.update(entry)
                continue
        if entry not in out:
            out.append(entry)
    return out


def _field_part(error: str, path: str) -> str:
    """The part of a record error about ``path`` (the message names fields, never values)."""
    for part in error.split("; "):
        head = part.split(": ", 1)
        for piece in head:
            if piece.startswith(path):
                return part[part.index(piece):]
    return error


def closing(done: Interview, ruleset: Ruleset, lang: str) -> str:
    """The reasoned decision the interview ends with."""
    assert done.row is not None
    return text_block(done.row, ruleset, lang=lang)
