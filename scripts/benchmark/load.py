"""wrk runs: one process per run, loading 127.0.0.1 for a bounded time; medians over the runs."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent
THREADS = 2


@dataclass(frozen=True)
class Plan:
    runs: int          # measured runs per scenario
    seconds: float     # length of one run
    warmup: float      # warm-up before the runs (0: none)
    connections: int   # wrk connections, and virtual users of the whole journey
    smoke: bool


def wrk(url: str, script: str, seconds: float, env: dict, connections: int) -> dict:
    """One wrk run; the figures report.lua prints, plus rps and ok (requests answered 2xx/3xx)."""
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", str(LUA / script), url]
    # A fresh BENCH_RUN per run: idempotency keys made from it never repeat from one run to the next.
    env = {**os.environ, **env, "BENCH_LUA_DIR": str(LUA), "BENCH_WRK_THREADS": str(THREADS),
           "BENCH_RUN": uuid.uuid4().hex[:12]}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["ok"] = result["requests"] - result["status_errors"]
    return result


def summarize(name: str, results: list[dict], **extra) -> dict:
    """Medians of rate and latency over the runs; errors and successes summed."""
    summary = {
        "scenario": name,
        "runs": len(results),
        "rps": statistics.median(r["rps"] for r in results),
        "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000,
        "p999_ms": statistics.median(r["p999_us"] for r in results) / 1000,
        "errors": sum(r["errors"] for r in results),
        "ok": sum(r["ok"] for r in results),
        **extra,
    }
    # Per percentile, the median over the runs: the distribution the plot draws.
    distributions = [r["distribution_us"] for r in results if r.get("distribution_us")]
    if distributions:
        summary["distribution_ms"] = [
            [points[0], statistics.median(d[i][1] for d in distributions) / 1000]
            for i, points in enumerate(distributions[0])
        ]
    print_summary(summary)
    return summary


def print_summary(s: dict) -> None:
    unit = s.get("unit", "req/s")
    print(f"  {s['scenario']:<38} {s['rps']:>9.1f} {unit:<10} p50 {s['p50_ms']:7.2f} ms  "
          f"p99 {s['p99_ms']:8.2f} ms  p99.9 {s['p999_ms']:8.2f} ms  errors {s['errors']}", flush=True)


def scenario(name: str, url: str, script: str, env: dict, plan: Plan) -> dict:
    if plan.warmup:
        wrk(url, script, plan.warmup, env, plan.connections)
    return summarize(name, [wrk(url, script, plan.seconds, env, plan.connections) for _ in range(plan.runs)])
