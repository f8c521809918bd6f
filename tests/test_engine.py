"""The durable_rules adapter: agreement with a plain-Python reading of the same rules, no leaks."""

from __future__ import annotations

import json
import random
import re
import threading
from multiprocessing import get_context
from typing import Any

import pytest

import screening
from screening.conditions import PythonEvaluator
from screening.decision import Decider
from screening.engine import DurableEvaluator, compile_ruleset, shared_evaluator
from screening.facts import Derived

from .conftest import ROOT, base_record, condition_keys


def random_facts(rs: screening.Ruleset, rng: random.Random) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, ftype in rs.fact_types().items():
        if ftype.kind == "int":
            if rng.random() < 0.8:
                facts[name] = rng.choice([0, 1, 2, 3, 13, 14, 40, 64, 65, 66, 90])
        else:
            facts[name] = rng.choice(ftype.values)
    return facts


@pytest.mark.parametrize("name", ["paper-2024", "registry-2023"])
def test_engine_agrees_with_plain_python_on_random_facts(name: str) -> None:
    rs = screening.load_ruleset(name)
    engine, python = DurableEvaluator(rs, memo_size=0), PythonEvaluator(rs)  # no memo: ask the engine each time
    rng = random.Random(20241028)
    for _ in range(3000):
        facts = random_facts(rs, rng)
        assert engine.fired(facts) == python.fired(facts), facts


@pytest.mark.parametrize("name", ["paper-2024", "registry-2023"])
def test_every_declared_outcome_is_reachable(name: str) -> None:
    """Each status a criterion declares comes out for some facts (no dead rules)."""
    rs = screening.load_ruleset(name)
    engine, decider = shared_evaluator(rs), Decider(rs)
    rng = random.Random(7)
    seen: dict[str, set[str]] = {c.id: set() for c in rs.ordered}
    for _ in range(4000):
        facts = random_facts(rs, rng)
        results, _ = decider.criteria_results(engine.fired(facts), Derived(facts, {}))
        for cid, result in results.items():
            seen[cid].add(result["status"])
    for crit in rs.ordered:
        declared = {crit.default.status} | {r.status for r in crit.rules}
        assert seen[crit.id] == declared, crit.id


def test_every_rule_is_guarded() -> None:
    compiled = compile_ruleset(screening.load_ruleset())
    for rule in compiled.values():
        assert rule["all"][0]["m"]["$and"][0] == {"nlc": 1}


def test_a_fact_that_fires_nothing_is_a_normal_outcome(paper: screening.Ruleset) -> None:
    evaluator = DurableEvaluator(paper, memo_size=0)
    clean = {"age_years": 70, "episodes_in_window": 3, "diary_nights": 14, "nlc_confirmed": "yes",
             "differentials_explaining": 0, "differentials_unassessed": 0, "differentials_coexisting": 0,
             "med_history": "taken", "consent": "signed"}
    for key in condition_keys():
        clean[f"cond_{key}"] = "absent"
    for cls in paper.drug_classes:
        clean[f"exp_{cls}"] = "none"
    clean["cirrhosis_ascites_paracentesis"] = "unknown"
    for _ in range(3):  # the same fact again: retracted each time, so never "already observed"
        assert evaluator.fired(clean) == []


def test_screening_twice_gives_the_same_row(paper: screening.Ruleset) -> None:
    screener = screening.Screener(paper, evaluator=DurableEvaluator(paper, memo_size=0))
    rec = screening.parse_record(json.dumps(base_record()))
    assert screener.record(rec) == screener.record(rec)


def test_threads_share_one_engine_safely(paper: screening.Ruleset) -> None:
    texts = [json.dumps(base_record(candidate_id=f"T{i}", birth_date=f"19{50 + i % 15}-01-01",
                                    consent=["signed", "pending", "declined"][i % 3])) for i in range(300)]
    engine = DurableEvaluator(paper, memo_size=0)  # every call reaches the engine, from every thread
    expected = [screening.screen_one(t, paper, evaluator=PythonEvaluator(paper)) for t in texts]
    results: dict[int, list[dict[str, Any]]] = {}

    def work(k: int) -> None:
        results[k] = [screening.screen_one(t, paper, evaluator=engine) for t in texts]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results[k] == expected for k in range(4))
    assert screening.Screener(paper).evaluator is shared_evaluator(paper)


def _child(text: str) -> str:
    rs = screening.load_ruleset()
    return json.dumps(screening.screen_one(text, rs))


def test_a_forked_process_builds_its_own_engine(paper: screening.Ruleset) -> None:
    text = json.dumps(base_record(birth_date="1960-01-01"))
    here = json.dumps(screening.screen_one(text, paper))  # engine built in this process first
    with get_context("fork").Pool(1) as pool:
        there = pool.apply_async(_child, (text,)).get(timeout=60)
    assert there == here


def test_only_the_engine_module_imports_durable() -> None:
    importers = []
    for path in list((ROOT / "screening").rglob("*.py")) + [ROOT / "cli.py"]:
        if re.search(r"^\s*(from|import)\s+durable", path.read_text(encoding="utf-8"), re.M):
            importers.append(path.name)
    assert importers == ["engine.py"]
