#!/usr/bin/env python3
"""The benchmark: load from a separate process (wrk) on 127.0.0.1, bounded in time.

    scripts/bench              build in release mode, start the local stack (scripts/stack), measure, stop it
    scripts/bench --attach     measure a stack that is already running (gateway on :3000)
    scripts/bench --smoke      a few seconds per scenario, to check that the benchmark still works

For every scenario: a warm-up, then several runs; the medians of requests/s and p50/p99/p99.9
latency are reported with the error count. Also: peak RSS (VmHWM) of every service and engine,
the order pipeline (time from POST 201 to `processed`, from the payment call to `paid`), and the
product read while logins saturate argon2. Results go to target/bench/results.json, results.md and
latency.svg.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "scripts" / "benchmark"
GATEWAY = "http://127.0.0.1:3000"
PRODUCTS_DIRECT = "http://127.0.0.1:3002"
SERVICES = ["api-gateway", "user-service", "product-service", "order-service", "payment-service"]


def call(method: str, url: str, body: dict | None = None, token: str | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_ready(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call("GET", f"{GATEWAY}/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit("bench: the stack did not become ready")


def wrk(url: str, script: str, seconds: float, connections: int, env: dict) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", str(LUA / script), url]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("{"))
    result = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def scenario(name: str, url: str, script: str, env: dict, runs: int, seconds: float, warmup: float) -> dict:
    if warmup:
        wrk(url, script, warmup, 50, env)
    results = [wrk(url, script, seconds, 50, env) for _ in range(runs)]
    summary = {
        "scenario": name,
        "runs": runs,
        "rps": statistics.median(r["rps"] for r in results),
        "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000,
        "p999_ms": statistics.median(r["p999_us"] for r in results) / 1000,
        "errors": sum(r["errors"] for r in results),
    }
    print(f"  {name:<38} {summary['rps']:>9.0f} req/s  p50 {summary['p50_ms']:6.2f} ms  "
          f"p99 {summary['p99_ms']:7.2f} ms  p99.9 {summary['p999_ms']:7.2f} ms  errors {summary['errors']}", flush=True)
    return summary


def peak_rss() -> dict:
    """VmHWM (peak resident set) of each service binary and engine process."""
    peaks = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        argv0 = cmdline[0].decode(errors="replace") if cmdline else ""
        joined = b" ".join(cmdline).decode(errors="replace")
        name = None
        for service in SERVICES:
            if argv0.endswith(f"/release/{service}"):
                name = service
        if "secantusd" in joined:
            name = "secantus (MongoDB protocol)"
        elif "tansu" in argv0 and "broker" in joined:
            name = "tansu (Kafka protocol)"
        if name:
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[name] = max(peaks.get(name, 0), int(line.split()[1]) / 1024)
    return {name: round(mb, 1) for name, mb in sorted(peaks.items())}


def order_pipeline(token: str, rate: float, seconds: float) -> dict:
    """Orders at a steady rate; processed latency = the order's updatedAt - createdAt (server clock)."""
    ids: list[str] = []
    interval = 1 / rate
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        target = start + n * interval
        time.sleep(max(0.0, target - time.monotonic()))
        status, body = call("POST", f"{GATEWAY}/orders", {"productId": "4", "quantity": 1}, token)
        if status == 201:
            ids.append(body["orderId"])
        n += 1
    time.sleep(3)
    processed, paid = [], []
    pay_started: dict[str, float] = {}
    for order_id in ids:
        status, body = call("GET", f"{GATEWAY}/orders/{order_id}", token=token)
        order = body["order"]
        if order["status"] in ("processed", "paid"):
            processed.append(iso_ms(order["updatedAt"]) - iso_ms(order["createdAt"]))
    for order_id in ids[: min(len(ids), 100)]:
        pay_started[order_id] = time.time() * 1000
        call("POST", f"{GATEWAY}/payments", {"orderId": order_id, "amount": 149.99}, token)
    time.sleep(3)
    for order_id, started in pay_started.items():
        status, body = call("GET", f"{GATEWAY}/orders/{order_id}", token=token)
        if body["order"]["status"] == "paid":
            paid.append(iso_ms(body["order"]["updatedAt"]) - started)

    def pct(values: list[float], p: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return round(values[min(len(values) - 1, int(len(values) * p))], 1)

    result = {
        "orders": len(ids), "processed": len(processed), "paid": len(paid), "rate_per_s": rate,
        "processed_p50_ms": pct(processed, 0.50), "processed_p99_ms": pct(processed, 0.99),
        "paid_p50_ms": pct(paid, 0.50), "paid_p99_ms": pct(paid, 0.99),
    }
    print(f"  order pipeline at {rate}/s: {result}", flush=True)
    return result


def iso_ms(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def svg(results: list[dict], path: Path) -> None:
    """A bar chart of p50 / p99 / p99.9 per scenario, log scale."""
    import math
    width, row, left = 900, 34, 300
    height = 60 + row * len(results)
    top = max(max(r["p999_ms"] for r in results), 1)
    scale = lambda ms: (math.log10(max(ms, 0.05)) + 1.4) / (math.log10(top) + 1.4) * (width - left - 40)
    colours = {"p50_ms": "#4c78a8", "p99_ms": "#f58518", "p999_ms": "#e45756"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<text x="10" y="20" font-size="14">Latency per scenario (ms, log scale): p50, p99, p99.9</text>']
    for i, r in enumerate(results):
        y = 40 + i * row
        parts.append(f'<text x="10" y="{y + 14}">{r["scenario"]}</text>')
        for j, key in enumerate(("p50_ms", "p99_ms", "p999_ms")):
            w = scale(r[key])
            parts.append(f'<rect x="{left}" y="{y + j * 9}" width="{w:.1f}" height="8" fill="{colours[key]}"/>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + j * 9 + 8}" font-size="9">{r[key]:.2f}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attach", action="store_true", help="use a stack already running on :3000")
    parser.add_argument("--smoke", action="store_true", help="a quick run that only checks the benchmark works")
    args = parser.parse_args()
    runs, seconds, warmup = (1, 1, 0) if args.smoke else (3, 8, 3)

    stack = None
    if not args.attach:
        stack = subprocess.Popen([str(ROOT / "scripts" / "stack")], start_new_session=True)
    try:
        wait_ready(1800)
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        password = "bench-password"
        call("POST", f"{GATEWAY}/users/register", {"username": email.split("@")[0], "email": email, "password": password})
        token = call("POST", f"{GATEWAY}/users/login", {"email": email, "password": password})[1]["token"]
        env = {"BENCH_LUA_DIR": str(LUA), "BENCH_EMAIL": email, "BENCH_PASSWORD": password, "BENCH_TOKEN": token,
               "BENCH_RUN": uuid.uuid4().hex[:8]}

        print(f"bench: {runs} run(s) of {seconds}s per scenario after a {warmup}s warm-up, 50 connections, wrk -t2", flush=True)
        results = [
            scenario("GET /products (gateway)", f"{GATEWAY}/products", "report.lua", env, runs, seconds, warmup),
            scenario("GET /products/1 (gateway)", f"{GATEWAY}/products/1", "report.lua", env, runs, seconds, warmup),
            scenario("product(id) GraphQL (direct)", f"{PRODUCTS_DIRECT}/graphql", "graphql_product.lua", env, runs, seconds, warmup),
            scenario("POST /users/login (gateway)", f"{GATEWAY}/users/login", "login.lua", env, runs, seconds, warmup),
            scenario("POST /orders (gateway)", f"{GATEWAY}/orders", "orders.lua", env, runs, seconds, warmup),
        ]
        # Product reads while logins saturate argon2: both loads at once.
        login_load = threading.Thread(target=wrk, args=(f"{GATEWAY}/users/login", "login.lua", seconds + 2, 50, env))
        login_load.start()
        time.sleep(1)
        results.append(scenario("GET /products/1 during login load", f"{GATEWAY}/products/1", "report.lua", env, 1, seconds, 0))
        login_load.join()

        pipeline = order_pipeline(token, rate=5 if args.smoke else 20, seconds=3 if args.smoke else 10)
        rss = peak_rss()
        print(f"  peak RSS (MB): {rss}", flush=True)
        direct = next(r for r in results if "direct" in r["scenario"])["rps"]
        gateway = next(r for r in results if r["scenario"] == "GET /products/1 (gateway)")["rps"]
        report = {"results": results, "gateway_to_direct_ratio": round(gateway / direct, 2) if direct else None,
                  "order_pipeline": pipeline, "peak_rss_mb": rss, "smoke": args.smoke,
                  "machine": {"cpus": os.cpu_count()}, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        out = ROOT / "target" / "bench"
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=2))
        lines = ["| scenario | req/s | p50 ms | p99 ms | p99.9 ms | errors |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['scenario']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['errors']} |" for r in results]
        lines += ["", f"Gateway / direct product read throughput: {report['gateway_to_direct_ratio']}", "",
                  f"Order pipeline: {json.dumps(pipeline)}", "", "| process | peak RSS MB |", "|---|---|"]
        lines += [f"| {name} | {mb} |" for name, mb in rss.items()]
        (out / "results.md").write_text("\n".join(lines) + "\n")
        svg(results, out / "latency.svg")
        print(f"bench: results in {out}/results.json, results.md and latency.svg")
        return 0
    finally:
        if stack is not None and stack.poll() is None:
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(60)


if __name__ == "__main__":
    sys.exit(main())
