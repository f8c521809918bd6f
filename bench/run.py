#!/usr/bin/env python3
"""nlc-screen benchmark: the engine's own ceiling, plain Python, end to end, memory, cold start.

    .venv/bin/python bench/run.py            # full run (~5 min on 2 cores): 10k / 100k / 1M records
    .venv/bin/python bench/run.py --quick    # smoke run (~1 min): 10k / 20k records

One run, on the same generated records (``nlc-screen generate``, fixed seed) and the same compiled
criteria set, measures:

* the raw engine ceiling: prepared fact messages asserted, drained and retracted through
  durable_rules alone (``screening.engine.raw_engine_rate``; this script never imports durable);
* the same facts through the adapter with no memo, and through the plain-Python evaluator of the
  same rule data (``screening.conditions.PythonEvaluator``);
* the in-process Screener (validate, derive, engine, decide; no I/O), with and without the memo;
* end to end: ``nlc-screen screen FILE --format jsonl -o OUT`` (full reasons) as a subprocess at 1
  and 2 workers; records/s = records / wall time of the whole process, start-up included;
* peak memory at each size: the process tree's RSS (main process + workers, summed; shared
  copy-on-write pages counted in every process, so it over-states), sampled every 20 ms;
* cold start: one candidate, ``nlc-screen screen one.json``, against ``python -c "import screening"``.

Prints one table and writes bench/results/latest.json (``--quick``: bench/results/quick.json)
with the machine and the command. Standard library only; needs the project installed in the
interpreter that runs it (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _machine import describe, summary  # noqa: E402

import screening  # noqa: E402
from screening.conditions import PythonEvaluator  # noqa: E402
from screening.engine import DurableEvaluator, raw_engine_rate  # noqa: E402
from screening.facts import derive  # noqa: E402
from screening.generate import write_jsonl  # noqa: E402
from screening.io import Item  # noqa: E402
from screening.record import parse_record  # noqa: E402

SEED = 20241028
TARGETS = {
    "e2e_1_worker": 14_000, "e2e_2_workers": 24_000, "one_million_2_workers_s": 45.0, "peak_rss_mb": 300.0,
    "cold_ratio": 1.5, "scaling": 1.7,
}


# ---------------------------------------------------------------------------------------------
# Machine


def machine() -> dict[str, Any]:
    return describe("durable-rules", "pydantic")


# ---------------------------------------------------------------------------------------------
# Measuring a process tree


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except (OSError, ValueError):
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_measured(cmd: list[str], *, stdout: Any = subprocess.DEVNULL) -> dict[str, Any]:
    """Run a command; wall time, exit code, peak summed RSS of its process tree and the largest process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        pids = [proc.pid]
        i = 0
        while i < len(pids):
            pids.extend(_children(pids[i]))
            i += 1
        sizes = [_rss_kb(p) for p in pids]
        peak_sum = max(peak_sum, sum(sizes))
        peak_one = max(peak_one, max(sizes))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {"seconds": wall, "returncode": proc.returncode, "peak_rss_mb": peak_sum / 1024,
            "peak_rss_largest_process_mb": peak_one / 1024, "stderr": err[-500:]}


def nlc(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *args]


# ---------------------------------------------------------------------------------------------
# Measurements


def in_process(ruleset: screening.Ruleset, texts: list[str], seconds: float) -> dict[str, Any]:
    """Engine ceiling, adapter, plain Python, and the Screener on the same records and facts."""
    facts = []
    for text in texts:
        try:
            facts.append(derive(parse_record(text), ruleset).facts)
        except screening.CandidateRecordError:
            pass
    out: dict[str, Any] = {"records": len(texts), "facts": len(facts)}
    raw = raw_engine_rate(ruleset, facts, seconds=seconds)
    out["raw_engine"] = raw

    def rate(fn: Any, items: list[Any]) -> dict[str, float]:
        done, started = 0, time.perf_counter()
        while True:
            for x in items:
                fn(x)
            done += len(items)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return {"per_second": done / elapsed, "records": done, "seconds": elapsed}

    adapter = DurableEvaluator(ruleset, memo_size=0)
    python = PythonEvaluator(ruleset)
    mismatches = sum(adapter.fired(f) != python.fired(f) for f in facts)
    out["adapter_no_memo"] = rate(adapter.fired, facts)
    out["plain_python"] = rate(python.fired, facts)
    out["engine_vs_python_mismatches"] = mismatches
    items = [Item(f"line {i}", t) for i, t in enumerate(texts, 1)]
    for label, evaluator in (("screener_no_memo", adapter), ("screener_memo", DurableEvaluator(ruleset))):
        # one pass over distinct records: repeating them would let the memo hit on every record
        screener = screening.Screener(ruleset, evaluator=evaluator)
        started = time.perf_counter()
        for item in items:
            screener.item(item)
        elapsed = time.perf_counter() - started
        out[label] = {"per_second": len(items) / elapsed, "records": len(items), "seconds": elapsed}
        if label == "screener_memo":
            total = evaluator.hits + evaluator.misses
            out[label]["memo_hit_rate"] = evaluator.hits / total if total else 0.0
    return out


def cold_start(one: Path, runs: int) -> dict[str, Any]:
    def median_wall(cmd: list[str]) -> float:
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, check=False)
            walls.append(time.perf_counter() - started)
        return statistics.median(walls)

    median_wall([sys.executable, "-c", "import screening"])  # warm the file cache
    bare = median_wall([sys.executable, "-c", "import screening"])
    screen = median_wall(nlc("screen", str(one), "--format", "jsonl"))
    return {"bare_import_s": bare, "screen_one_s": screen, "ratio": screen / bare, "runs": runs}


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (10k, 20k): a smoke run")
    parser.add_argument("--sizes", default=None, help="comma-separated record counts for the memory runs")
    parser.add_argument("--e2e", type=int, default=None, help="records for the end-to-end throughput runs")
    parser.add_argument("--repeat", type=int, default=None, help="end-to-end runs per worker count (best kept)")
    parser.add_argument("--out", default=None, help="where to write the JSON results")
    parser.add_argument("--keep", default=None, help="directory to keep the generated inputs in (reused if present)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000, 20_000] if args.quick
                                                                         else [10_000, 100_000, 1_000_000])
    e2e_n = args.e2e or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    out_path = Path(args.out) if args.out else ROOT / "bench" / "results" / ("quick.json" if args.quick else "latest.json")
    command = "python bench/run.py" + " " + " ".join(sys.argv[1:])
    ruleset = screening.load_ruleset("paper-2024")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nlc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": command.strip(), "machine": machine(), "seed": SEED,
                               "ruleset": ruleset.stamp, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        inputs: dict[int, Path] = {}
        for n in sorted(set(sizes) | {e2e_n}):
            path = work / f"candidates-{n}-{SEED}.jsonl"
            if not path.exists():
                t0 = time.perf_counter()
                with open(path, "w", encoding="utf-8") as f:
                    write_jsonl(f, n, seed=SEED, ruleset=ruleset)
                print(f"generated {n:,} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            inputs[n] = path

        # 1. in process, on the first 20,000 (quick: 10,000) records of the end-to-end input
        sample = []
        with open(inputs[e2e_n], encoding="utf-8") as f:
            for line in f:
                sample.append(line.strip())
                if len(sample) >= (10_000 if args.quick else 20_000):
                    break
        print("in-process measurements …", file=sys.stderr)
        results["in_process"] = in_process(ruleset, sample, seconds=1.5 if args.quick else 3.0)

        # 2. end to end, 1 and 2 workers, JSON Lines in and out with full reasons
        e2e: dict[str, Any] = {"records": e2e_n}
        outputs = {}
        for workers in (1, 2):
            runs = []
            for k in range(repeat):
                target = work / f"out-{workers}.jsonl"
                print(f"end to end, {workers} worker(s), run {k + 1}/{repeat} …", file=sys.stderr)
                runs.append(run_measured(nlc("screen", str(inputs[e2e_n]), "--format", "jsonl", "--no-progress",
                                             "--workers", str(workers), "-o", str(target))))
            best = min(runs, key=lambda r: r["seconds"])
            e2e[f"workers_{workers}"] = {"per_second": e2e_n / best["seconds"], "best_seconds": best["seconds"],
                                         "all_seconds": [r["seconds"] for r in runs],
                                         "returncodes": sorted({r["returncode"] for r in runs})}
            outputs[workers] = (work / f"out-{workers}.jsonl").read_bytes()
        e2e["identical_output"] = outputs[1] == outputs[2]
        e2e["scaling"] = e2e["workers_2"]["per_second"] / e2e["workers_1"]["per_second"]
        del outputs
        results["end_to_end"] = e2e

        # 3. memory (and time) at each size, 1 and 2 workers
        memory: dict[str, Any] = {}
        for n in sizes:
            for workers in (1, 2):
                print(f"memory, {n:,} records, {workers} worker(s) …", file=sys.stderr)
                run = run_measured(nlc("screen", str(inputs[n]), "--format", "jsonl", "--no-progress",
                                       "--workers", str(workers), "-o", str(work / "out-mem.jsonl")))
                run["per_second"] = n / run["seconds"]
                memory[f"{n}/{workers}"] = run
        results["memory"] = memory
        (work / "out-mem.jsonl").unlink(missing_ok=True)

        # 4. cold start, one candidate
        one = work / "one.json"
        first = (ROOT / "fixtures" / "figure1" / "candidates.jsonl").read_text(encoding="utf-8").splitlines()[0]
        one.write_text(first + "\n", encoding="utf-8")
        print("cold start …", file=sys.stderr)
        results["cold_start"] = cold_start(one, runs=5 if args.quick else 11)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    results["targets"] = verdicts(results, sizes)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(results, sizes))
    print(f"\nwritten: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0


def verdicts(r: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    e2e, mem, cold = r["end_to_end"], r["memory"], r["cold_start"]
    peak = max(v["peak_rss_mb"] for v in mem.values())
    rows = [
        ("end to end, 1 worker (records/s)", e2e["workers_1"]["per_second"], ">=", TARGETS["e2e_1_worker"]),
        ("end to end, 2 workers (records/s)", e2e["workers_2"]["per_second"], ">=", TARGETS["e2e_2_workers"]),
        ("2 workers / 1 worker", e2e["scaling"], ">=", TARGETS["scaling"]),
        ("peak RSS, any size and workers (MB)", peak, "<=", TARGETS["peak_rss_mb"]),
        ("cold single candidate / bare import", cold["ratio"], "<=", TARGETS["cold_ratio"]),
    ]
    if 1_000_000 in sizes:
        rows.insert(2, ("1,000,000 records, 2 workers (s)", mem["1000000/2"]["seconds"], "<=",
                        TARGETS["one_million_2_workers_s"]))
    return [{"target": name, "measured": value, "goal": f"{op} {goal:g}",
             "met": value >= goal if op == ">=" else value <= goal} for name, value, op, goal in rows]


def table(r: dict[str, Any], sizes: list[int]) -> str:
    m, ip, e2e = r["machine"], r["in_process"], r["end_to_end"]
    lines = [f"nlc-screen benchmark — {r['command']}",
             f"machine: {summary(m)}; "
             f"durable-rules {m['versions']['durable-rules']}; ruleset {r['ruleset']['name']} {r['ruleset']['version']}", "",
             f"{'measurement':<62} {'records/s':>11} {'time s':>8} {'peak RSS MB':>12}",
             "-" * 96]

    def row(label: str, per_second: float | None, seconds: float | None = None, rss: float | None = None) -> None:
        lines.append(f"{label:<62} {'' if per_second is None else f'{per_second:,.0f}':>11} "
                     f"{'' if seconds is None else f'{seconds:.2f}':>8} {'' if rss is None else f'{rss:.0f}':>12}")

    raw = ip["raw_engine"]
    row(f"raw engine ceiling (durable alone, {raw['facts_per_message']:.0f} facts/msg, "
        f"{raw['firings_per_fact']:.2f} firings/fact)", raw["per_second"])
    row("engine through the adapter, no memo (facts → fired rules)", ip["adapter_no_memo"]["per_second"])
    row("plain Python evaluator, same rule data (facts → fired rules)", ip["plain_python"]["per_second"])
    row("Screener in process, no memo (validate+derive+engine+decide)", ip["screener_no_memo"]["per_second"])
    row(f"Screener in process, memo ({ip['screener_memo']['memo_hit_rate']:.0%} hits)",
        ip["screener_memo"]["per_second"])
    for w in (1, 2):
        v = e2e[f"workers_{w}"]
        row(f"nlc-screen screen, jsonl → jsonl, {e2e['records']:,} records, {w} worker{'s' if w > 1 else ''}",
            v["per_second"], v["best_seconds"])
    for n in sizes:
        for w in (1, 2):
            v = r["memory"][f"{n}/{w}"]
            row(f"nlc-screen screen, {n:,} records, {w} worker{'s' if w > 1 else ''}", v["per_second"], v["seconds"],
                v["peak_rss_mb"])
    c = r["cold_start"]
    lines.append(f"{'cold: nlc-screen screen one.json':<62} {'':>11} {c['screen_one_s']:>8.3f}")
    bare_label = 'cold: python -c "import screening"'
    lines.append(f"{bare_label:<62} {'':>11} {c['bare_import_s']:>8.3f}")
    lines += ["", f"output identical at 1 and 2 workers: {e2e['identical_output']}; "
                  f"engine and plain Python disagree on {ip['engine_vs_python_mismatches']} of {ip['facts']:,} facts", "",
              f"{'target':<45} {'measured':>12} {'goal':>10}  met"]
    for t in r["targets"]:
        value = t["measured"]
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        lines.append(f"{t['target']:<45} {shown:>12} {t['goal']:>10}  {'yes' if t['met'] else 'NO'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
