#!/usr/bin/env python3
"""nlc-screen HTTP API benchmark: latency of POST /screen at a steady rate, and POST /screen/batch throughput.

    .venv/bin/python bench/service.py                      # 50 requests/s for 30 s, a 10,000-record batch
    .venv/bin/python bench/service.py --rate 20 --seconds 5 --batch 2000    # a smoke run

One run, in a temporary directory:

* generates candidate records with ``nlc-screen generate --n N --seed S`` (the default outcome mix): the
  warm-up and latency requests take the first ones, the batch the last ``--batch`` ones, so that every
  logged candidate is distinct and the log's audit can be checked against what was sent;
* starts ``nlc-screen serve --port <free port> --log sqlite:///<tmp>/log.sqlite3`` (``NLC_SCREEN_HOME``
  = the temporary directory, no tokens; its output goes to ``serve.out`` there) and waits for
  ``GET /rules``;
* **latency**: after ~50 warm-up requests (not measured), ``POST /screen`` with one record per request
  at a steady *open-loop* rate: request i is due at t0 + i/rate and its latency runs from that time
  to the response, so a request held up behind a slow one counts its wait. One keep-alive
  ``httpx.Client`` in one thread. Records of the ``error`` outcome answer 422 (not logged): counted as
  answered, and reported;
* **batch**: ``POST /screen/batch`` with ``--batch`` records as JSON Lines (``application/x-ndjson``),
  logged in one transaction: wall time of the request, records/s. Beside it, on the same file,
  ``nlc-screen screen FILE --workers 2 --format jsonl -o OUT`` (wall time of the whole process, start-up
  included) and, for information, the same with ``--log sqlite:///<another file>``;
* checks the log: ``nlc-screen audit --log … --format json`` assessed + errors equals the records
  logged (warm-up and latency requests answered 200, plus the batch).

Prints a Markdown table (machine, date, command, targets met or not) and writes it to ``--out``
(default ``bench/results/service-<date>.md``). Needs only the project's dependencies (httpx).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _machine import describe, summary

ROOT = Path(__file__).resolve().parent.parent
SEED = 20241028
WARMUP = 50
TARGETS = {"p99_ms": 20.0, "batch_vs_screen": 0.50}


# ---------------------------------------------------------------------------------------------
# Machine


def machine() -> dict[str, Any]:
    return describe("nlc-screen", "fastapi", "uvicorn", "httpx", "sqlalchemy") | {"code": code_version()}


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it (the service's code may)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "screening", "cli.py"], capture_output=True,
                               text=True, cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes to screening/ or cli.py" if dirty else head


# ---------------------------------------------------------------------------------------------
# Processes


def nlc() -> list[str]:
    """The ``nlc-screen`` command of the interpreter running this script."""
    script = Path(sys.executable).parent / "nlc-screen"
    return [str(script)] if script.exists() else [sys.executable, str(ROOT / "cli.py")]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NLC_SCREEN_TOKENS", "NLC_SCREEN_TOKENS_FILE")}
    env["NLC_SCREEN_HOME"] = str(home)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command to the end; its wall time and exit code."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT, check=False)
    return {"seconds": time.perf_counter() - started, "returncode": proc.returncode,
            "stderr": proc.stderr.decode(errors="replace")[-500:]}


class Server:
    """``nlc-screen serve`` on a free port, its output in a file; stopped on exit."""

    def __init__(self, work: Path, log_url: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.out_path = work / "serve.out"
        self.cmd = [*nlc(), "serve", "--port", str(self.port), "--log", log_url]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.out = open(self.out_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"nlc-screen serve exited ({self.proc.returncode}):\n{self.tail()}")
                try:
                    if client.get(self.base + "/rules").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"nlc-screen serve did not answer GET /rules within 60 s:\n{self.tail()}")
                time.sleep(0.1)

    def tail(self) -> str:
        self.out.flush()
        return self.out_path.read_text(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


# ---------------------------------------------------------------------------------------------
# Measurements


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of values sorted ascending."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(client: httpx.Client, records: list[bytes], *, rate: float, seconds: float,
            warmup: int) -> dict[str, Any]:
    """Open-loop POST /screen: request i due at t0 + i/rate; latency from that time to the response."""
    headers = {"Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    warm_ok = 0
    for i in range(warmup):
        r = client.post("/screen", content=records[i % len(records)], headers=headers)
        warm_ok += r.status_code == 200
    n = int(round(rate * seconds))
    lat: list[float] = []
    service: list[float] = []
    late = 0
    t0 = time.perf_counter() + 0.05
    for i in range(n):
        due = t0 + i / rate
        wait = due - time.perf_counter()
        if wait > 0.002:
            time.sleep(wait - 0.001)
        while time.perf_counter() < due:  # the last millisecond spun: sleep() overshoots
            pass
        sent = time.perf_counter()
        if sent - due > 0.001:
            late += 1
        r = client.post("/screen", content=records[(warmup + i) % len(records)], headers=headers)
        done = time.perf_counter()
        lat.append((done - due) * 1000)
        service.append((done - sent) * 1000)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    elapsed = time.perf_counter() - t0
    lat_sorted, service_sorted = sorted(lat), sorted(service)
    return {
        "rate": rate, "seconds": seconds, "requests": n, "elapsed_s": elapsed, "achieved_rate": n / elapsed,
        "warmup": warmup, "warmup_ok": warm_ok,
        "p50_ms": percentile(lat_sorted, 50), "p90_ms": percentile(lat_sorted, 90),
        "p99_ms": percentile(lat_sorted, 99), "max_ms": lat_sorted[-1],
        "service_p50_ms": percentile(service_sorted, 50), "service_p99_ms": percentile(service_sorted, 99),
        "late": late, "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "ok": statuses.get(200, 0), "unreadable_422": statuses.get(422, 0),
        "other": sum(v for k, v in statuses.items() if k not in (200, 422)),
    }


def batch(client: httpx.Client, body: bytes, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    r = client.post("/screen/batch", content=body, headers={"Content-Type": "application/x-ndjson"},
                    timeout=httpx.Timeout(600.0))
    wall = time.perf_counter() - started
    rows = r.json() if r.status_code == 200 else []
    return {"records": n, "status": r.status_code, "rows": len(rows),
            "error_rows": sum(1 for row in rows if row.get("decision") == "error"),
            "seconds": wall, "per_second": n / wall, "response_mb": len(r.content) / 1e6,
            "detail": "" if r.status_code == 200 else r.text[:300]}


def audit(log_url: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([*nlc(), "audit", "--log", log_url, "--format", "json"], capture_output=True,
                          env=env, cwd=ROOT, check=False)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"returncode": proc.returncode, "error": proc.stderr.decode(errors="replace")[-500:]}
    counts = data.get("counts", {})
    return {"returncode": proc.returncode, "assessed": counts.get("assessed"), "errors": counts.get("errors"),
            "rows_read": data.get("rows", {}).get("read"), "superseded": data.get("rows", {}).get("superseded")}


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="POST /screen requests a second (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send them (default 30)")
    parser.add_argument("--batch", type=int, default=10_000, help="records in the POST /screen/batch (default 10,000)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"nlc-screen generate --seed (default {SEED})")
    parser.add_argument("--out", default=None,
                        help="where to write the Markdown (default bench/results/service-<date>.md)")
    args = parser.parse_args()
    today = dt.date.today().isoformat()
    out_path = Path(args.out) if args.out else ROOT / "bench" / "results" / f"service-{today}.md"
    py = Path(sys.executable)
    shown_py = os.path.relpath(py, ROOT) if py.is_relative_to(ROOT) else "python"
    command = " ".join([shown_py, "bench/service.py", *sys.argv[1:]])
    n_single = WARMUP + int(round(args.rate * args.seconds))
    results: dict[str, Any] = {"command": command, "machine": machine(), "date": today, "seed": args.seed,
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    work = Path(tempfile.mkdtemp(prefix="nlc-bench-service-"))
    try:
        env = child_env(work)
        data = work / "candidates.jsonl"
        print(f"generating {n_single + args.batch:,} records …", file=sys.stderr)
        gen = subprocess.run([*nlc(), "generate", "--n", str(n_single + args.batch), "--seed", str(args.seed),
                              "-o", str(data)], env=env, cwd=ROOT, check=False, capture_output=True)
        if gen.returncode != 0:
            raise SystemExit(f"nlc-screen generate failed: {gen.stderr.decode(errors='replace')[-500:]}")
        lines = data.read_bytes().splitlines(keepends=True)
        singles = [line.strip() for line in lines[:n_single]]
        batch_file = work / f"batch-{args.batch}.jsonl"
        batch_body = b"".join(lines[n_single:])
        batch_file.write_bytes(batch_body)

        log_url = f"sqlite:///{work / 'log.sqlite3'}"
        with Server(work, log_url, env) as server:
            results["serve"] = " ".join(server.cmd[len(nlc()):]).replace(str(work), "<tmp>")
            with httpx.Client(base_url=server.base, timeout=httpx.Timeout(30.0)) as client:
                print(f"POST /screen at {args.rate:g}/s for {args.seconds:g} s (after {WARMUP} warm-up) …",
                      file=sys.stderr)
                results["latency"] = latency(client, singles, rate=args.rate, seconds=args.seconds, warmup=WARMUP)
                print(f"POST /screen/batch, {args.batch:,} records …", file=sys.stderr)
                results["batch"] = batch(client, batch_body, args.batch)
            serve_tail = server.tail()

        print(f"nlc-screen screen --workers 2, {args.batch:,} records …", file=sys.stderr)
        screen = timed([*nlc(), "screen", str(batch_file), "--workers", "2", "--format", "jsonl", "--no-progress",
                        "-o", str(work / "out.jsonl")], env)
        screen["per_second"] = args.batch / screen["seconds"]
        results["screen"] = screen
        print(f"nlc-screen screen --workers 2 --log, {args.batch:,} records …", file=sys.stderr)
        screen_log = timed([*nlc(), "screen", str(batch_file), "--workers", "2", "--format", "jsonl",
                            "--no-progress", "-o", str(work / "out-logged.jsonl"),
                            "--log", f"sqlite:///{work / 'screen-log.sqlite3'}"], env)
        screen_log["per_second"] = args.batch / screen_log["seconds"]
        results["screen_logged"] = screen_log

        lat = results["latency"]
        batch_rows = results["batch"]["rows"] if results["batch"]["status"] == 200 else 0
        sent_logged = lat["warmup_ok"] + lat["ok"] + batch_rows
        check = audit(log_url, env)
        check["expected"] = sent_logged
        check["matched"] = (check.get("assessed") is not None
                            and check["assessed"] + check["errors"] == sent_logged)
        results["audit"] = check
        if results["batch"]["status"] != 200:
            print(f"batch failed ({results['batch']['status']}): {results['batch']['detail']}\n{serve_tail}",
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results["ratio"] = results["batch"]["per_second"] / results["screen"]["per_second"]
    text = report(results)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    print(text)
    print(f"written: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0 if results["audit"]["matched"] else 1


def report(r: dict[str, Any]) -> str:
    m, lat, b, s, sl, a = r["machine"], r["latency"], r["batch"], r["screen"], r["screen_logged"], r["audit"]
    p99_met = lat["p99_ms"] <= TARGETS["p99_ms"] and lat["other"] == 0
    ratio_met = r["ratio"] >= TARGETS["batch_vs_screen"] and b["status"] == 200
    yes = {True: "met", False: "**not met**"}
    lines = [
        "# nlc-screen HTTP API benchmark", "",
        f"* command: `{r['command']}`",
        f"* date: {r['date']} (started {r['started']})",
        f"* machine: {m['uname']}; {summary(m)} (1-minute load average at the start)",
        f"* code: {m['code']}",
        "* " + ", ".join(f"{name} {v}" for name, v in m["versions"].items()),
        f"* server: `nlc-screen {r['serve']}` (NLC_SCREEN_HOME=<tmp>, no tokens); records: "
        f"`nlc-screen generate --seed {r['seed']}` (default mix)",
        "",
        "| measurement | measured | target | |",
        "|---|---:|---:|---|",
        f"| POST /screen at {lat['rate']:g}/s for {lat['seconds']:g} s, SQLite log: p50 / p99 | "
        f"{lat['p50_ms']:.1f} ms / {lat['p99_ms']:.1f} ms | p99 ≤ {TARGETS['p99_ms']:g} ms | {yes[p99_met]} |",
        f"| POST /screen/batch, {b['records']:,} records logged: records/s | {b['per_second']:,.0f} "
        f"({b['seconds']:.2f} s) | | |",
        f"| nlc-screen screen --workers 2, same records: records/s | {s['per_second']:,.0f} ({s['seconds']:.2f} s) "
        "| | |",
        f"| batch ÷ screen --workers 2 | {r['ratio']:.0%} | ≥ {TARGETS['batch_vs_screen']:.0%} | {yes[ratio_met]} |",
        "",
        "| detail | |",
        "|---|---:|",
        f"| POST /screen requests measured (after {lat['warmup']} warm-up) | {lat['requests']:,} in "
        f"{lat['elapsed_s']:.1f} s ({lat['achieved_rate']:.1f}/s) |",
        f"| latency from the scheduled send: p50 / p90 / p99 / max | {lat['p50_ms']:.1f} / {lat['p90_ms']:.1f} / "
        f"{lat['p99_ms']:.1f} / {lat['max_ms']:.1f} ms |",
        f"| time from the actual send (service time): p50 / p99 | {lat['service_p50_ms']:.1f} / "
        f"{lat['service_p99_ms']:.1f} ms |",
        f"| requests sent more than 1 ms late (behind a slow one) | {lat['late']:,} |",
        f"| answers: 200 / 422 (an `error` record of the mix) / other | {lat['ok']:,} / {lat['unreadable_422']:,} / "
        f"{lat['other']:,} |",
        f"| POST /screen/batch: status, rows (error rows), response size | {b['status']}, {b['rows']:,} "
        f"({b['error_rows']:,}), {b['response_mb']:.1f} MB |",
        f"| nlc-screen screen --workers 2 --log sqlite:///…, same records | {sl['per_second']:,.0f} records/s "
        f"({sl['seconds']:.2f} s) |",
        f"| exit codes: screen, screen --log (3: some records are `error` rows) | {s['returncode']}, "
        f"{sl['returncode']} |",
    ]
    if "assessed" in a:
        lines.append(f"| audit --log: assessed + errors = logged requests (200) + batch rows | "
                     f"{a['assessed']:,} + {a['errors']:,} = {a['assessed'] + a['errors']:,} vs {a['expected']:,}: "
                     f"{'matched' if a['matched'] else '**did not match**'} |")
    else:
        lines.append(f"| audit --log | failed (exit {a['returncode']}): {a.get('error', '')[:200]} |")
    lines += ["", "Latency runs from each request's scheduled time (open loop: request i due at t0 + i/rate), so "
              "a request queued behind a slow one counts its wait. The batch's records/s is its HTTP request's "
              "wall time (the server already running); `screen`'s is the whole process's, start-up included.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
