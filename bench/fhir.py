#!/usr/bin/env python3
"""FHIR import benchmark and the Synthea whole-sample run (issue 16).

    git clone https://github.com/smart-on-fhir/generated-sample-data /tmp/gsd   # or any copy of it
    .venv/bin/python bench/fhir.py --sample /tmp/gsd/R4/SYNTHEA                 # ~2 min

The sample is not in the repository (about 0.5 GB); fixtures/fhir/synthea holds six of its bundles.
One run, in a temporary directory:

* **whole sample**: ``nlc-screen import fhir SAMPLE --screening-start 2021-04-01`` (one record or error
  line per bundle is checked), then ``nlc-screen screen`` of the records; reports the decisions, the
  CONSORT boxes and, per criterion, how many candidates are met / not_met / unknown / review, and checks
  that no exclusion visible in Synthea's codes (E1, E4, E12, E13, E14) is ``not_met`` — an import never
  says "absent", so a criterion without a code stays unknown;
* **speed**: the import of the first 100 bundles (by file name), ``--rounds`` times, as its own process
  (start-up included): wall time, and bundles per second;
* **memory**: the peak resident set (``ru_maxrss`` of the child process) importing one bundle — the
  smallest, the largest, and the largest with every entry but its Patient repeated ``--blow-up`` times
  (a bundle ~10× the largest of the sample) — and the 100 bundles: flat memory means the peaks stay close
  whatever the bundle's size.

Writes the Markdown report to ``--out`` (default ``bench/results/fhir-<date>.md``) and the counts as JSON
beside it.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
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
D0 = "2021-04-01"
#: the exclusions Synthea's codes can show (criteria.md §8.3): never not_met for want of a code
VISIBLE = ("E1", "E4", "E12", "E13", "E14")


#: Runs the command line and, at exit, writes the process's own peak resident set (VmHWM of
#: /proc/self/status: its memory since exec, not the forked parent's, which ru_maxrss would count).
_WRAP = ("import atexit, sys\n"
         "def hwm():\n"
         "    for line in open('/proc/self/status'):\n"
         "        if line.startswith('VmHWM:'):\n"
         "            sys.stderr.write('\\nPEAK ' + line.split()[1] + '\\n')\n"
         "atexit.register(hwm)\n"
         "sys.argv = ['nlc-screen'] + sys.argv[1:]\n"
         "import cli\n"
         "cli.main()\n")


def nlc() -> list[str]:
    return [sys.executable, str(ROOT / "cli.py")]


def child(args: list[str], *, stdout: Any = subprocess.DEVNULL) -> tuple[float, int, int]:
    """Run ``nlc-screen ARGS…`` (``args`` after :func:`nlc`'s two); wall time (s), peak RSS (MiB), exit code."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *args[2:]], stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT,
                          check=False)
    wall = time.perf_counter() - start
    peak = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.startswith("PEAK ")]
    return wall, int(peak[-1].split()[1]) // 1024 if peak else -1, proc.returncode


def machine() -> str:
    return summary(describe("nlc-screen", "fhir.resources", "ijson"))


def blow_up(source: Path, target: Path, times: int) -> int:
    """The bundle with every entry but the Patient repeated ``times`` times; its size in bytes."""
    bundle = json.loads(source.read_bytes())
    others = [e for e in bundle["entry"] if e.get("resource", {}).get("resourceType") != "Patient"]
    bundle["entry"] += others * (times - 1)
    target.write_text(json.dumps(bundle), encoding="utf-8")
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=Path, required=True, help="the R4/SYNTHEA folder of generated-sample-data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blow-up", type=int, default=10)
    parser.add_argument("--note", default="", help="a sentence on the sample for the report (e.g. what is missing)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"fhir-{dt.date.today()}.md")
    opts = parser.parse_args()
    bundles = sorted(p for p in opts.sample.iterdir() if p.suffix == ".json")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        records = work / "records.jsonl"
        decisions = work / "decisions.jsonl"
        # -- whole sample --------------------------------------------------------------------------
        with open(records, "wb") as out:
            wall_all, rss_all, code = child([*nlc(), "import", "fhir", str(opts.sample), "--screening-start", D0,
                                             "--site", "Synthea"], stdout=out)
        lines = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
        errors = [line for line in lines if "error" in line]
        assert len(lines) == len(bundles), "one record or error line per bundle"
        subprocess.run([*nlc(), "screen", str(records), "--format", "jsonl", "-o", str(decisions)], cwd=ROOT,
                       check=False, capture_output=True)
        rows = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == len(lines)
        per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        order: list[str] = []
        for row in rows:
            for cid, result in row.get("criteria", {}).items():
                if cid not in order:
                    order.append(cid)
                per[cid][result["status"]] += 1
        boxes = collections.Counter((r["decision"], r["category"], r.get("subcategory")) for r in rows)
        primary = collections.Counter(r.get("primary_criterion") for r in rows if r["decision"] == "excluded")
        wrong = {cid: per[cid]["not_met"] for cid in VISIBLE if per[cid]["not_met"]}
        imported = [line for line in lines if "error" not in line]
        facts = {
            "deceased": sum("deceased_date" in r for r in imported),
            "with a medicine of a class": sum(bool(r.get("medications")) for r in imported),
            "aged >= 65 on D0": per["I1"]["met"],
        }
        # -- speed: 100 bundles ----------------------------------------------------------------------
        hundred = work / "hundred"
        hundred.mkdir()
        for path in bundles[:100]:
            (hundred / path.name).symlink_to(path.resolve())
        size_100 = sum(p.stat().st_size for p in bundles[:100])
        speed = [child([*nlc(), "import", "fhir", str(hundred), "--screening-start", D0]) for _ in range(opts.rounds)]
        baseline = [child([*nlc(), "rules", "--check"]) for _ in range(opts.rounds)]
        # -- memory by bundle size -------------------------------------------------------------------
        by_size = sorted(bundles, key=lambda p: p.stat().st_size)
        big = work / "blown-up.json"
        big_size = blow_up(by_size[-1], big, opts.blow_up)
        memory = []
        for label, path, size in (("smallest bundle", by_size[0], by_size[0].stat().st_size),
                                  ("largest bundle", by_size[-1], by_size[-1].stat().st_size),
                                  (f"largest, its entries ×{opts.blow_up}", big, big_size)):
            runs = [child([*nlc(), "import", "fhir", str(path), "--screening-start", D0]) for _ in range(opts.rounds)]
            memory.append((label, size, statistics.median(r[0] for r in runs), max(r[1] for r in runs)))
        memory.append(("100 bundles (a directory)", size_100, statistics.median(r[0] for r in speed),
                       max(r[1] for r in speed)))
    today = dt.date.today()
    md = [f"# FHIR import: the Synthea R4 sample, speed and memory ({today})", "",
          f"Machine: {machine()}. Command: `python bench/fhir.py --sample …/R4/SYNTHEA` "
          f"(screening date {D0}, after the sample's last prescription; `--rounds {opts.rounds}`).", "",
          "## Whole sample", "", *([opts.note, ""] if opts.note else []),
          f"{len(bundles)} bundles ({sum(p.stat().st_size for p in bundles) / 2**20:.0f} MiB) → {len(imported)} "
          f"records and {len(errors)} error lines in {wall_all:.1f} s (peak RSS {rss_all} MiB). "
          f"{facts['deceased']} deceased before D0 (kept, with a warning), {facts['with a medicine of a class']} with "
          f"a medicine of a drug class, {facts['aged >= 65 on D0']} aged ≥ 65 on D0.", "",
          "Decisions (decision / category / subcategory):", ""]
    md += [f"- {d} / {c}{' / ' + s if s else ''}: {n}" for (d, c, s), n in sorted(boxes.items(), key=lambda x: -x[1])]
    md += ["", "Excluded, by primary criterion: " + ", ".join(f"{k} {v}" for k, v in primary.most_common()), "",
           "| criterion | met | not_met | unknown | review |", "|---|---:|---:|---:|---:|"]
    md += [f"| {cid} | {per[cid]['met']} | {per[cid]['not_met']} | {per[cid]['unknown']} | {per[cid]['review']} |"
           for cid in order]
    md += ["", f"Exclusions visible in Synthea's codes ({', '.join(VISIBLE)}) that came out not_met: "
           f"{wrong or 'none'}.", "",
           "## Speed: 100 bundles", "",
           f"`nlc-screen import fhir DIR` of the first 100 bundles by name ({size_100 / 2**20:.0f} MiB), as its own "
           f"process: median {statistics.median(r[0] for r in speed):.2f} s over {opts.rounds} rounds "
           f"({100 / statistics.median(r[0] for r in speed):.0f} bundles/s, start-up included; `nlc-screen rules "
           f"--check` alone, the start-up and the loading of the rules, takes "
           f"{statistics.median(r[0] for r in baseline):.2f} s).", "",
           "## Memory by bundle size", "",
           "| input | size | wall (median) | peak RSS |", "|---|---:|---:|---:|"]
    md += [f"| {label} | {size / 2**20:.1f} MiB | {wall:.2f} s | {rss} MiB |" for label, size, wall, rss in memory]
    md += ["", f"`nlc-screen rules --check` (the process with the rules loaded, nothing imported): peak RSS "
           f"{max(r[1] for r in baseline)} MiB.", ""]
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(md), encoding="utf-8")
    opts.out.with_suffix(".json").write_text(json.dumps({
        "date": str(today), "bundles": len(bundles), "records": len(imported), "errors": len(errors),
        "per_criterion": {cid: dict(per[cid]) for cid in order}, "facts": facts,
        "import_100_seconds": [r[0] for r in speed], "memory": [list(m) for m in memory],
        "visible_not_met": wrong}, indent=2) + "\n", encoding="utf-8")
    print("\n".join(md))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
