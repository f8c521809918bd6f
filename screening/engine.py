"""The only module that talks to durable_rules.

It compiles a validated :class:`~screening.protocol.Ruleset` into durable_rules' JSON ruleset
format and evaluates flat fact dicts against it through the engine's C API, returning plain rule
numbers (indices into ``ruleset.flat_rules``). Nothing else in nlc-screen imports ``durable``.

How the engine is used, and why (shared/durable-rules.md):

* **Facts, not events**: ``assert_fact`` fires every rule whose condition holds.
* **One kept state per process**: every fact goes into one fixed session; after reading which
  rules fired, the *same* JSON text is retracted in a ``finally``. ``delete_state`` is never called
  (it can crash the process on a state in which no action started).
* **A guard on every rule** (``nlc == 1``) that only our facts carry, so no rule can match the
  engine's own state fact and loop forever (a rule made only of an absence test would).
* **No Host, no timer threads, no Python actions**: rules fire into the C core and we drain the
  pending actions directly, so an exception can't be swallowed inside an action.
* **Built lazily, once per process** (after fork), with a lock around each evaluation: the C calls
  hold the GIL, so threads share one engine safely but add no speed.
* The engine's errors are translated into :class:`~screening.errors.EngineError` here.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import durable_rules_engine as _dre

from .errors import EngineError
from .protocol import Condition, Ruleset

_SID = "nlc-screen"
_GUARD = "nlc"
_RESERVED = {"sid", "id", _GUARD}
_MAX_PROPERTIES = 250  # the engine rejects messages with more than ~253 top-level properties
_counter = itertools.count()
#: Entries in each evaluator's memo of fired rules by fact values (cleared when full).
MEMO_SIZE = 1 << 16

# durable_rules_engine result codes for assert/retract (libpy/durable/engine.py, Ruleset._handle_result)
_OK, _NOT_HANDLED, _OBSERVED, _QUEUED = 0, 1, 2, 3


def _test(name: str, op: str, value: Any) -> dict[str, Any]:
    if op == "eq":
        return {name: value}
    if op == "known":
        return {"$ex" if value else "$nex": {name: 1}}
    if op in ("in", "not_in"):
        parts = [_test(name, "eq" if op == "in" else "ne", v) for v in value]
        return parts[0] if len(parts) == 1 else {("$or" if op == "in" else "$and"): parts}
    return {{"ne": "$neq", "lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}[op]: {name: value}}


def compile_condition(cond: Condition) -> dict[str, Any]:
    """A condition tree as a durable_rules JSON expression."""
    if cond[0] in ("all", "any"):
        return {"$and" if cond[0] == "all" else "$or": [compile_condition(c) for c in cond[1]]}
    _, name, op, value = cond
    return _test(name, op, value)


def compile_ruleset(ruleset: Ruleset) -> dict[str, Any]:
    """The durable_rules ruleset definition: one rule per non-default outcome, named by number.

    Criteria whose default outcome is the passing one fire nothing for a typical eligible
    candidate; every rule carries the guard ``nlc == 1``.
    """
    names = set(ruleset.fact_types())
    clash = names & _RESERVED
    if clash:
        raise EngineError(f"fact names {sorted(clash)} are reserved by the engine adapter")
    if len(names) + len(_RESERVED) > _MAX_PROPERTIES:
        raise EngineError(f"{len(names)} facts: the engine takes at most {_MAX_PROPERTIES} per message")
    return {
        f"r{index}": {"all": [{"m": {"$and": [{_GUARD: 1}, compile_condition(rule.when)]}}]}
        for index, (_, rule) in enumerate(ruleset.flat_rules)
    }


class DurableEvaluator:
    """Which rules of a ruleset apply to a fact dict, decided by durable_rules.

    One instance per ruleset is enough for a whole process (and its threads); in a new process
    (after ``fork``) the engine is rebuilt on first use. ``fired`` returns rule numbers in order.
    """

    def __init__(self, ruleset: Ruleset, *, memo_size: int | None = None) -> None:
        self._definition = json.dumps(compile_ruleset(ruleset), ensure_ascii=False)
        self._label = f"{ruleset.name}-{ruleset.version}"
        self._handle: int | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._nrules = len(ruleset.flat_rules)
        # Only the facts some rule tests go to the engine: a fact no condition names cannot change
        # which rules fire, and a smaller message is cheaper to build, assert and retract.
        self.fields: tuple[str, ...] = tuple(sorted(tested_facts(ruleset)))
        if memo_size is None:
            memo_size = _memo_size_from_env()
        self._memo_size = memo_size
        self._memo: dict[tuple[Any, ...], tuple[int, ...]] = {}
        self.hits = self.misses = 0

    def _engine(self) -> int:
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = _dre.create_ruleset(f"{self._label}-{pid}-{next(_counter)}", self._definition)
            except (_dre.error, MemoryError) as exc:
                raise EngineError(f"the engine rejected the compiled ruleset {self._label}: {exc}") from exc
            self._pid = pid
        return self._handle

    def fired(self, facts: Mapping[str, Any]) -> list[int]:
        """The rules that apply to a fact dict, in order.

        Memoised by the values of the tested facts (a bounded table, cleared when full, so memory
        stays flat): the engine is deterministic, so a hit gives what the engine would. Set
        ``memo_size=0`` (or ``NLC_SCREEN_ENGINE_MEMO=0``) to ask the engine every time.
        """
        if not self._memo_size:
            return self.ask_engine(facts)
        get = facts.get
        key = tuple([get(name) for name in self.fields])
        hit = self._memo.get(key)
        if hit is not None:
            self.hits += 1
            return list(hit)
        self.misses += 1
        fired = self.ask_engine(facts)
        if len(self._memo) >= self._memo_size:
            self._memo.clear()
        self._memo[key] = tuple(fired)
        return fired

    def ask_engine(self, facts: Mapping[str, Any]) -> list[int]:
        """Assert one fact, collect the rules that fired, retract it. Engine state never outlives the call."""
        get = facts.get
        message = {name: value for name in self.fields if (value := get(name)) is not None}
        message["sid"] = _SID
        message["id"] = "f"
        message[_GUARD] = 1
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        fired: list[int] = []
        with self._lock:
            handle = self._engine()
            try:
                code, state = _dre.assert_fact(handle, text)
            except (_dre.error, MemoryError) as exc:
                raise EngineError(f"the engine failed on assert: {exc}") from exc
            try:
                if code == _OBSERVED:
                    raise EngineError("the engine already held an identical fact: engine state leaked between records")
                if code == _OK:
                    result = _dre.start_action_for_state(handle, state)
                    if result:
                        fired.extend(int(name[1:]) for name in json.loads(result[1]))
                        while True:
                            more = _dre.complete_and_start_action(handle, state)
                            if not more:
                                break
                            fired.extend(int(name[1:]) for name in json.loads(more))
                # _NOT_HANDLED: no rule matched, a normal outcome (every criterion at its default)
            except _dre.error as exc:
                raise EngineError(f"the engine failed while collecting fired rules: {exc}") from exc
            finally:
                try:
                    _dre.retract_fact(handle, text)
                except _dre.error as exc:  # pragma: no cover - would mean the state is corrupt
                    self._handle = None
                    raise EngineError(f"the engine failed to retract a fact: {exc}") from exc
        return sorted(set(fired))

    def close(self) -> None:
        """Forget the engine; the next call builds a new one (the old one's memory is not reclaimed)."""
        with self._lock:
            self._handle = None


def _memo_size_from_env() -> int:
    raw = os.environ.get("NLC_SCREEN_ENGINE_MEMO", "")
    if not raw:
        return MEMO_SIZE
    try:
        return max(0, int(raw))
    except ValueError:
        raise EngineError(f"NLC_SCREEN_ENGINE_MEMO must be a whole number (0 turns the memo off), not {raw!r}") from None


def tested_facts(ruleset: Ruleset) -> set[str]:
    """The facts some rule condition of the ruleset tests."""
    names: set[str] = set()

    def walk(cond: Condition) -> None:
        if cond[0] in ("all", "any"):
            for part in cond[1]:
                walk(part)
        else:
            names.add(cond[1])

    for _, rule in ruleset.flat_rules:
        walk(rule.when)
    return names


def raw_engine_rate(ruleset: Ruleset, facts: list[Mapping[str, Any]], *, seconds: float = 2.0) -> dict[str, Any]:
    """The engine's own ceiling: prepared facts asserted and retracted through durable_rules alone.

    The fact messages (JSON text, tested facts only) are built before the clock starts; the loop
    is what :meth:`DurableEvaluator.ask_engine` does — assert, drain the fired rules, retract —
    with nothing else. Runs over ``facts`` repeatedly for about ``seconds``. For the benchmark,
    which must not import durable itself.
    """
    import time

    evaluator = DurableEvaluator(ruleset, memo_size=0)
    handle = evaluator._engine()
    texts = []
    for f in facts:
        message = {name: f[name] for name in evaluator.fields if f.get(name) is not None}
        message.update(sid=_SID, id="f", **{_GUARD: 1})
        texts.append(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
    assert_fact, retract_fact = _dre.assert_fact, _dre.retract_fact
    start_action, complete_and_start = _dre.start_action_for_state, _dre.complete_and_start_action
    done = firings = 0
    started = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for text in texts:
            code, state = assert_fact(handle, text)
            if code == _OK:
                result = start_action(handle, state)
                if result:
                    firings += len(json.loads(result[1]))
                    while more := complete_and_start(handle, state):
                        firings += len(json.loads(more))
            retract_fact(handle, text)
        done += len(texts)
        elapsed = time.perf_counter() - started
    return {"records": done, "seconds": elapsed, "per_second": done / elapsed, "firings_per_fact": firings / done,
            "facts_per_message": sum(t.count(":") for t in texts) / len(texts) - 3}  # less sid, id, guard


_SHARED: dict[str, DurableEvaluator] = {}
_SHARED_LOCK = threading.Lock()


def shared_evaluator(ruleset: Ruleset) -> DurableEvaluator:
    """The process's one evaluator for a ruleset (built once: creating rulesets repeatedly leaks)."""
    with _SHARED_LOCK:
        evaluator = _SHARED.get(ruleset.sha256)
        if evaluator is None:
            evaluator = _SHARED[ruleset.sha256] = DurableEvaluator(ruleset)
        return evaluator
