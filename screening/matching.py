"""Matching recorded names and codes against a criteria set's value sets.

A medication belongs to a drug class by its ATC code, its RxCUI, or its name (word sequences, CJK
substrings, veto phrases); a free-text site matches a site list by its words. Everything here is
generic: the classes and lists are the value sets' (rules/<pack>/valuesets/).
"""

from __future__ import annotations

import re
from typing import Any

from .record import normalise_atc, normalise_rxnorm

_SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> tuple[str, ...]:
    """Words for matching names: runs of letters/digits, lower case ("vitamin K₂" -> vitamin, k2)."""
    return tuple(_WORD.findall(text.lower().translate(_SUBSCRIPTS)))


def _contains(seq: tuple[str, ...], term: tuple[str, ...]) -> bool:
    n = len(term)
    if n == 1:
        return term[0] in seq
    return any(seq[i:i + n] == term for i in range(len(seq) - n + 1))


def matches_terms(text: str, seq: tuple[str, ...], latin: tuple[tuple[str, ...], ...], cjk: tuple[str, ...]) -> bool:
    if any(_contains(seq, term) for term in latin):
        return True
    if cjk:
        low = text.lower()
        return any(term in low for term in cjk)
    return False


class DrugClassifier:
    """Which drug classes of a ruleset a medication entry belongs to.

    An entry belongs to a class when its ATC code starts with one of the class's ATC prefixes (and
    none of its excluded ones; compared in :func:`~screening.record.normalise_atc`'s form, which the
    record model already holds), its RxCUI (without surrounding whitespace) is one of the class's,
    or its name contains one of the class's terms as consecutive words (a CJK term as a substring)
    and none of its veto phrases.

    Memoised by (name, atc, rxnorm) — class membership depends on nothing else — with a bounded
    memo (cleared when full), so memory stays flat on any input. Name terms are indexed by their
    first word, so a miss costs one dict lookup per word of the name rather than a scan of every term.
    """

    _LIMIT = 1 << 16

    def __init__(self, classes: dict[str, Any]) -> None:
        self.names = tuple(classes)
        self._classes = tuple(classes.values())
        self._index: list[dict[str, list[tuple[str, ...]]]] = []
        for cls in self._classes:
            index: dict[str, list[tuple[str, ...]]] = {}
            for term in cls.names:
                index.setdefault(term[0], []).append(term)
            self._index.append(index)
        self._memo: dict[tuple[str, str | None, str | None], tuple[bool, ...]] = {}

    def __call__(self, med: Any) -> tuple[bool, ...]:
        key = (med.name, med.atc, med.rxnorm)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._classify(med)
            if len(self._memo) >= self._LIMIT:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def _classify(self, med: Any) -> tuple[bool, ...]:
        seq = words(med.name)
        code = normalise_atc(med.atc) if med.atc else None
        rxnorm = normalise_rxnorm(med.rxnorm) if med.rxnorm else None
        low = None
        out = []
        for cls, index in zip(self._classes, self._index):
            found = False
            if code is not None and any(code.startswith(p) for p in cls.atc) \
                    and not any(code.startswith(p) for p in cls.atc_exclude):
                found = True
            elif rxnorm and rxnorm in cls.rxnorm:
                found = True
            else:
                named = False
                for i, word in enumerate(seq):
                    for term in index.get(word, ()):
                        if seq[i:i + len(term)] == term:
                            named = True
                            break
                    if named:
                        break
                if not named and cls.cjk_names:
                    low = med.name.lower() if low is None else low
                    named = any(term in low for term in cls.cjk_names)
                if named:
                    found = not any(_contains(seq, veto) for veto in cls.names_exclude)
            out.append(found)
        return tuple(out)


_CLASSIFIERS: dict[str, DrugClassifier] = {}


def drug_classifier(key: str, classes: dict[str, Any]) -> DrugClassifier:
    """The process's classifier for a set of drug classes (``key``: the criteria set's sha256)."""
    found = _CLASSIFIERS.get(key)
    if found is None:
        found = _CLASSIFIERS[key] = DrugClassifier(classes)
    return found
