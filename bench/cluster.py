#!/usr/bin/env python3
"""Scale-out benchmark: a partitioned input on a Dask cluster beside ``nlc-screen screen --workers 2``.

    .venv/bin/python bench/cluster.py                       # 1,000,000 records, 16 partitions, 3 rounds (~10 min)
    .venv/bin/python bench/cluster.py --n 100000 --rounds 1 # a smoke run (~1 min)

One run, in a temporary directory (``--keep DIR`` keeps and reuses the inputs):

* generates ``--n`` records with ``nlc-screen generate --seed 20241028`` (the default outcome mix) into
  ``all.jsonl``, and writes the same lines cut into ``--parts`` partition files (``parts/part-0000.jsonl`` …,
  62,500 records each at 1M and 16);
* runs, alternately and paired (``--rounds`` pairs; the order swapped every round, so that drift of the
  machine falls on both):

  - **workers**: ``nlc-screen screen all.jsonl --workers 2 --format jsonl -o OUT``;
  - **dask**: the partitions on a ``distributed.LocalCluster`` of ``--workers`` worker processes
    (``screening.cluster.screen_partitions``: cluster start, screening, the cross-partition duplicate pass
    and cluster shutdown), as its own process: ``nlc-screen screen --engine dask --workers 2 parts/ -o OUT``
    when the CLI has ``--engine``, else ``python bench/cluster.py --dask-child parts/ OUT 2`` (the same call);

  each timed as the wall time of the whole process, start-up included, with its CPU time and the CPU the rest
  of the machine used meanwhile (``--via api`` also reports the Dask run's phases);
* checks that both wrote ``--n`` rows with the same decisions in the same order (the rows differ only in
  the line numbers of error rows: a partition numbers its own lines);
* reports the medians and the ratio dask / workers against the target (the Dask run within 20 % of
  ``--workers 2``), with the machine, the load average before each run and the command, and writes the
  Markdown to ``--out`` (default ``bench/results/cluster-<date>.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from _machine import describe, summary

ROOT = Path(__file__).resolve().parent.parent
SEED = 20241028
TARGET = 1.20  # the Dask run's wall time at most 1.2 × that of --workers 2


def nlc() -> list[str]:
    return [sys.executable, str(ROOT / "cli.py")]


def machine() -> dict[str, Any]:
    return describe("durable-rules", "dask", "distributed", "pyarrow")


def prepare(folder: Path, n: int, parts: int) -> tuple[Path, Path]:
    """``all.jsonl`` with n generated records and ``parts/`` with the same lines in ``parts`` files."""
    whole, part_dir = folder / "all.jsonl", folder / "parts"
    stamp = folder / f"inputs-{n}-{parts}-{SEED}.done"
    if stamp.exists():
        return whole, part_dir
    folder.mkdir(parents=True, exist_ok=True)
    print(f"generating {n:,} records …", flush=True)
    subprocess.run([*nlc(), "generate", "--n", str(n), "--seed", str(SEED), "-o", str(whole)], check=True, cwd=ROOT)
    shutil.rmtree(part_dir, ignore_errors=True)
    part_dir.mkdir()
    size = -(-n // parts)
    with whole.open("rb") as source:
        for i in range(parts):
            with (part_dir / f"part-{i:04d}.jsonl").open("wb") as out:
                for _ in range(size):
                    line = source.readline()
                    if not line:
                        break
                    out.write(line)
    stamp.write_text("")
    return whole, part_dir


def cli_has_engine() -> bool:
    help_text = subprocess.run([*nlc(), "screen", "--help"], capture_output=True, text=True, cwd=ROOT).stdout
    return "--engine" in help_text


def dask_command(parts: Path, out: Path, workers: int, via_cli: bool) -> list[str]:
    if via_cli:
        return [*nlc(), "screen", "--engine", "dask", "--workers", str(workers), str(parts), "-o", str(out)]
    return [sys.executable, str(Path(__file__).resolve()), "--dask-child", str(parts), str(out), str(workers)]


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                pids.extend(int(c) for c in Path(f"/proc/{pids[i]}/task/{task}/children").read_text().split())
        except (OSError, ValueError):
            pass
        i += 1
    return pids


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores; /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str]) -> dict[str, Any]:
    """Run a command: wall time, CPU time of its process tree (user + sys, from the reaped children), the CPU
    the *rest* of the machine used meanwhile (in cores: a busy shared machine shows here), the load average
    before, peak RSS of its process tree (summed) and of its largest process, sampled every 50 ms."""
    import resource

    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = _busy_seconds()
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT)
        peak_sum = peak_one = 0.0
        while proc.poll() is None:
            sizes = [_rss_mb(p) for p in _tree(proc.pid)]
            peak_sum, peak_one = max(peak_sum, sum(sizes)), max(peak_one, max(sizes))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        busy = _busy_seconds() - busy
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in (0, 3):  # 3: the generator's ~1 % of unreadable records
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-2000:]}")
    result: dict[str, Any] = {"seconds": seconds, "cpu_seconds": cpu, "others_cores": max(busy - cpu, 0.0) / seconds,
                              "load_before": load, "returncode": proc.returncode,
                              "peak_rss_mb": peak_sum, "peak_rss_largest_mb": peak_one}
    for line in stdout.splitlines():
        if line.startswith("{"):
            result["child"] = json.loads(line)
    return result


def decisions(paths: list[Path]) -> tuple[int, int]:
    """(rows, a hash of their (candidate id, decision, category, subcategory) in order), error rows whose id is
    their line number counted by decision only."""
    import hashlib

    import orjson

    digest = hashlib.blake2b(digest_size=16)
    rows = 0
    for path in paths:
        with path.open("rb") as f:
            for line in f:
                row = orjson.loads(line)
                rows += 1
                cid = row["candidate_id"] if not row["candidate_id"].startswith("line ") else "-"
                digest.update(f"{cid}\0{row['decision']}\0{row['category']}\0{row.get('subcategory')}\n".encode())
    return rows, int.from_bytes(digest.digest()[:8], "big")


def dask_child(parts: str, out: str, workers: int) -> int:
    """The Dask run as its own process (what `nlc-screen screen --engine dask` does, without the CLI)."""
    sys.path.insert(0, str(ROOT))
    from screening import load_ruleset
    from screening.cluster import screen_partitions

    result = screen_partitions(parts, Path(out), load_ruleset(), workers=workers)
    print(json.dumps({"rows": result.rows, "errors": result.errors, "workers": result.workers,
                      "duplicates": len(result.duplicates), "timings": result.timings,
                      "partition_seconds": [p.seconds for p in result.partitions]}))
    return result.exit_code


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    rounds = report["rounds"]
    lines = [
        f"# Scale-out: Dask ({report['date']})",
        "",
        f"Machine: `{m['uname']}`; {summary(m)}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Input: {report['n']:,} generated records (seed {SEED}), as one file (`--workers 2`) and as "
        f"{report['parts']} partitions of {-(-report['n'] // report['parts']):,} (`--engine dask`, "
        f"{report['workers']} worker processes on a LocalCluster, one thread each). Dask run: "
        f"{report['dask_via']}. Wall time of the whole process, start-up included; rounds alternate the order.",
        "",
        "| round | order | `--workers 2` s | Dask s | Dask / workers | CPU s (w; d) | other processes' load, cores (w; d) | Dask phases: start / screen / duplicates / close s |",
        "|---:|---|---:|---:|---:|---|---|---|",
    ]
    for r in rounds:
        t = r["dask"].get("child", {}).get("timings", {})
        phases = " / ".join(f"{t[k]:.1f}" for k in ("start", "screen", "duplicates", "close") if k in t) or "—"
        lines.append(f"| {r['round']} | {r['order']} | {r['workers']['seconds']:.1f} | {r['dask']['seconds']:.1f} | "
                     f"{r['dask']['seconds'] / r['workers']['seconds']:.2f} | {r['workers']['cpu_seconds']:.0f}; "
                     f"{r['dask']['cpu_seconds']:.0f} | {r['workers']['others_cores']:.2f}; "
                     f"{r['dask']['others_cores']:.2f} | {phases} |")
    s = report["summary"]
    lines += [
        f"| **median** | | **{s['workers_median']:.1f}** | **{s['dask_median']:.1f}** | **{s['ratio_median']:.2f}** | "
        f"{statistics.median(r['workers']['cpu_seconds'] for r in rounds):.0f}; "
        f"{statistics.median(r['dask']['cpu_seconds'] for r in rounds):.0f} | | |",
        "",
        f"Records/s (median): `--workers 2` {report['n'] / s['workers_median']:,.0f}, Dask "
        f"{report['n'] / s['dask_median']:,.0f}. Ratio of the medians {s['ratio_of_medians']:.2f}; per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in s['ratios'])}.",
        "",
        f"Target: Dask within 20 % of `--workers 2` (ratio ≤ {TARGET:.2f}): "
        f"**{'met' if s['met'] else 'not met'}** (median paired ratio {s['ratio_median']:.2f}).",
        "",
        "CPU s: user + system time of the command's whole process tree. Other processes' load: the CPU the rest of "
        "the machine used during the run, in cores (this is a shared 2-core machine: above ~0.1, the run competed "
        "for its cores and its wall time says more about the neighbours than about nlc-screen).",
        "",
        f"Same decisions, in the same order: {'yes' if report.get('same_decisions') else 'no'} "
        f"({report.get('rows_checked', 0):,} rows each).",
        "",
        "Peak memory (RSS of the process tree summed, max over rounds; the largest single process): `--workers 2` "
        f"{max(r['workers']['peak_rss_mb'] for r in rounds):.0f} MB "
        f"({max(r['workers']['peak_rss_largest_mb'] for r in rounds):.0f} MB); Dask "
        f"{max(r['dask']['peak_rss_mb'] for r in rounds):.0f} MB "
        f"({max(r['dask']['peak_rss_largest_mb'] for r in rounds):.0f} MB; client, scheduler, nannies and "
        f"workers).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated inputs here")
    parser.add_argument("--out", type=Path, help="the Markdown report (default bench/results/cluster-<date>.md)")
    parser.add_argument("--via", choices=("auto", "cli", "api"), default="auto",
                        help="the Dask run through `nlc-screen screen --engine dask` (cli), or screen_partitions in its "
                             "own process, which also reports the time of each phase (api); auto: cli when it has "
                             "--engine")
    parser.add_argument("--no-check", action="store_true", help="skip reading both outputs back to compare them")
    parser.add_argument("--dask-child", nargs=3, metavar=("PARTS", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dask_child:
        parts, out, workers = args.dask_child
        return dask_child(parts, out, int(workers))

    date = dt.date.today().isoformat()
    temp = None
    folder = args.keep
    if folder is None:
        temp = tempfile.mkdtemp(prefix="nlc-cluster-bench-")
        folder = Path(temp)
    try:
        whole, parts = prepare(folder, args.n, args.parts)
        via_cli = cli_has_engine() if args.via == "auto" else args.via == "cli"
        out_w, out_d = folder / "out-workers.jsonl", folder / "out-dask"
        commands = {
            "workers": [*nlc(), "screen", str(whole), "--workers", str(args.workers), "--format", "jsonl",
                        "-o", str(out_w)],
            "dask": dask_command(parts, out_d, args.workers, via_cli),
        }
        rounds = []
        for r in range(1, args.rounds + 1):
            order = ("workers", "dask") if r % 2 else ("dask", "workers")
            measured: dict[str, Any] = {"round": r, "order": " then ".join(order)}
            for kind in order:
                print(f"round {r}: {kind} …", flush=True)
                measured[kind] = timed(commands[kind])
                print(f"  {measured[kind]['seconds']:.1f} s", flush=True)
            rounds.append(measured)
        workers_s = [r["workers"]["seconds"] for r in rounds]
        dask_s = [r["dask"]["seconds"] for r in rounds]
        ratios = [d / w for d, w in zip(dask_s, workers_s)]
        summary = {"workers_median": statistics.median(workers_s), "dask_median": statistics.median(dask_s),
                   "ratios": ratios, "ratio_median": statistics.median(ratios),
                   "ratio_of_medians": statistics.median(dask_s) / statistics.median(workers_s)}
        summary["met"] = summary["ratio_median"] <= TARGET
        report: dict[str, Any] = {
            "date": date, "n": args.n, "parts": args.parts, "workers": args.workers, "machine": machine(),
            "command": "python bench/cluster.py " + " ".join(sys.argv[1:]),
            "commands": {k: " ".join(v) for k, v in commands.items()},
            "dask_via": "`nlc-screen screen --engine dask`" if via_cli else
                        "`screening.cluster.screen_partitions` in its own process (`bench/cluster.py --dask-child`)",
            "rounds": rounds, "summary": summary,
        }
        if not args.no_check:
            print("comparing the outputs …", flush=True)
            rows_w, hash_w = decisions([out_w])
            rows_d, hash_d = decisions(sorted(out_d.glob("*.decisions.jsonl")))
            report["same_decisions"] = rows_w == rows_d == args.n and hash_w == hash_d
            report["rows_checked"] = rows_w
        text = table(report)
        text += "\n<details><summary>raw</summary>\n\n```json\n" + json.dumps(report, indent=1) + "\n```\n</details>\n"
        out = args.out or ROOT / "bench" / "results" / f"cluster-{date}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(table(report))
        print(f"written to {out}")
        return 0
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
