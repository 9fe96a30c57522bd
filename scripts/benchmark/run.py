#!/usr/bin/env python3
"""The benchmark: load from separate processes (wrk, and Python threads for the whole journey) on
127.0.0.1, bounded in time.

    scripts/bench              build in release mode, start the local stack (scripts/stack), measure, stop it
    scripts/bench --attach     measure a stack that is already running on the default ports (gateway :3000)
    scripts/bench --mongo rust the same on the Rust build of SecantusDB (scripts/install-secantus-rs)
    scripts/bench --smoke      check that the benchmark works: the debug binaries already built, a stack
                               of its own on free ports, 8 connections, 1 s per scenario; fails when an
                               output or a field is missing or a scenario had not one successful request

Scenarios, through the gateway at 50 connections unless named otherwise: GET /products,
GET /products/1, the same product read straight to the product-service (the gateway's overhead as
a ratio), POST /users/login, POST /orders (unique idempotency keys), POST /payments (each request
pays its own processed order: payments.py), GET /products/1 while logins saturate argon2, the
whole journey (journey.py), and POST /orders once more at the end, after all that load (the write
rate after sustained load, next to the fresh one). For each: a warm-up, then several runs; the
medians of the rate and of p50/p99/p99.9 latency, and the error count. Also: Kafka events/s and
MongoDB commands per order and per payment (from the services' own metrics) during POST /orders,
POST /payments and the order pipeline (events.py), the order pipeline at a steady rate
(pipeline.py), how fast a backlog of orders left by a frozen broker drains (backlog.py), the CPU per request of every
service, engine, wrk and the whole machine during POST /orders and POST /payments, and the peak RSS of every service
and engine (procs.py). Results go to target/bench/ (a smoke run: target/bench/smoke/): results.json, results.md,
latency.svg and latency-distribution.svg.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from client import Endpoints, new_user, wait_ready  # noqa: E402
from events import EventMeter, describe, describe_commands  # noqa: E402
from journey import journey_scenario  # noqa: E402
from load import THREADS, Plan, scenario, summarize, wrk  # noqa: E402
from payments import payment_scenario  # noqa: E402
from backlog import backlog_drain, describe_backlog  # noqa: E402
from pipeline import order_pipeline  # noqa: E402
from procs import CpuMeter, describe_cpu, peak_rss  # noqa: E402
import report as output  # noqa: E402

from engines import MONGO_BUILDS, free_port  # noqa: E402

# The ports scripts/stack uses by default (its --ports keys).
DEFAULT_PORTS = {"gateway": 3000, "users": 3005, "products": 3002, "orders": 3003, "payments": 50051,
                 "payments-metrics": 9464}
FULL = Plan(runs=3, seconds=8, warmup=3, connections=50, smoke=False)
# Few connections: a smoke run checks that every scenario works, on debug builds that are slow.
SMOKE = Plan(runs=1, seconds=1, warmup=0, connections=8, smoke=True)


def start_stack(smoke: bool, mongo: str, out: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """The release stack on the default ports; for a smoke run the debug binaries on free ports. Always a
    fresh database: figures must not depend on what earlier runs or `scripts/stack` left in .local/."""
    command = [str(ROOT / "scripts" / "stack"), "--temp-data", "--mongo", mongo]
    ports = DEFAULT_PORTS
    if smoke:
        ports = {key: free_port() for key in DEFAULT_PORTS}
        command += ["--debug", "--logs", str(out / "stack-logs"),
                    "--ports", ",".join(f"{key}={port}" for key, port in ports.items())]
    # Every benchmark client is 127.0.0.1 and the login scenario logs one account in from 50 connections: the
    # per-address and per-account limits would stop the journey's registrations after a few dozen and refuse most
    # logins at once (a login in flight holds a place under them until it succeeds), so the load generator is
    # exempted here (and only here).
    unlimited = "100000000"
    env = {**os.environ, "REGISTRATION_MAX_PER_ADDRESS": unlimited, "LOGIN_MAX_FAILURES_PER_ADDRESS": unlimited,
           "LOGIN_MAX_FAILURES_PER_ACCOUNT": unlimited, "LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS": unlimited}
    return subprocess.Popen(command, start_new_session=True, env=env), ports


def stop_stack(stack: subprocess.Popen) -> None:
    """The stack stops its services and engines on SIGINT (as on Ctrl-C)."""
    if stack.poll() is None:
        os.killpg(stack.pid, signal.SIGINT)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()


def scenario_with_events(name: str, url: str, script: str, env: dict, plan: Plan, meter: EventMeter,
                         stack_pid: int | None) -> tuple[dict, dict]:
    """A wrk scenario with the Kafka events/s, engine commands and CPU per process of its measured runs (not of
    the warm-up)."""
    if plan.warmup:
        wrk(url, script, plan.warmup, env, plan.connections)
    cpu = CpuMeter(stack_pid)
    meter.start()
    cpu.start()
    summary = summarize(name, [wrk(url, script, plan.seconds, env, plan.connections) for _ in range(plan.runs)])
    cpu.stop()
    events = meter.stop()
    summary["engine_commands"] = events.get("commands")
    summary["cpu"] = cpu.figures(summary["ok"])
    print(f"    {describe(events)}\n    {describe_commands(events.get('commands'), 'order-service', 'order')}\n"
          f"    {describe_cpu(summary['cpu'])}", flush=True)
    return summary, events


def products_during_logins(endpoints: Endpoints, env: dict, plan: Plan) -> dict:
    """Product reads while logins saturate argon2: both loads at once, in each of the plan's runs (each
    run with a login load of its own that starts 1 s before the reads and ends after them)."""
    reads, logins = [], []
    for _ in range(plan.runs):
        login_result: dict = {}
        login_load = threading.Thread(target=lambda result=login_result: result.update(
            wrk(f"{endpoints.gateway}/users/login", "login.lua", plan.seconds + 2, env, plan.connections)))
        login_load.start()
        time.sleep(1)
        reads.append(wrk(f"{endpoints.gateway}/products/1", "report.lua", plan.seconds, env, plan.connections))
        login_load.join()
        logins.append(login_result)
    logins_per_s = statistics.median(r["rps"] for r in logins if r) if any(logins) else None
    return summarize("GET /products/1 during login load", reads,
                     logins_per_s=round(logins_per_s, 1) if logins_per_s is not None else None)


def measure(endpoints: Endpoints, plan: Plan, out: Path, stack_pid: int | None) -> dict:
    email, password, token = new_user(endpoints.gateway, "bench")
    env = {"BENCH_EMAIL": email, "BENCH_PASSWORD": password, "BENCH_TOKEN": token}
    meter = EventMeter({"order-service": f"{endpoints.orders}/metrics", "payment-service": endpoints.payment_metrics})
    gateway = endpoints.gateway
    warmup = f" after a {plan.warmup}s warm-up" if plan.warmup else ""
    print(f"bench: {plan.runs} run(s) of {plan.seconds}s per scenario{warmup}, {plan.connections} connections, wrk -t{THREADS}", flush=True)

    results = [
        scenario("GET /products (gateway)", f"{gateway}/products", "report.lua", env, plan),
        scenario("GET /products/1 (gateway)", f"{gateway}/products/1", "report.lua", env, plan),
        scenario("product(id) GraphQL (direct)", f"{endpoints.products}/graphql", "graphql_product.lua", env, plan),
        scenario("POST /users/login (gateway)", f"{gateway}/users/login", "login.lua", env, plan),
    ]
    orders, order_events = scenario_with_events(
        "POST /orders (gateway)", f"{gateway}/orders", "orders.lua", env, plan, meter, stack_pid)
    results.append(orders)
    results.append(payment_scenario(endpoints, plan, orders["rps"], out, meter, CpuMeter(stack_pid)))
    results.append(products_during_logins(endpoints, env, plan))
    results.append(journey_scenario(gateway, plan, users=plan.connections))

    rate, seconds = (5, 2) if plan.smoke else (20, 10)
    meter.start()
    pipeline = order_pipeline(gateway, token, rate, seconds, settle_timeout=15 if plan.smoke else 30)
    pipeline_events = meter.stop()
    print(f"  order pipeline at {rate}/s: {pipeline['orders']} orders; processed {pipeline['processed']} "
          f"(p50 {pipeline['processed_p50_ms']} ms, p99 {pipeline['processed_p99_ms']} ms), paid {pipeline['paid']} "
          f"(p50 {pipeline['paid_p50_ms']} ms, p99 {pipeline['paid_p99_ms']} ms)\n    {describe(pipeline_events)}", flush=True)

    backlog = backlog_drain(endpoints, token, 100 if plan.smoke else 5000, stack_pid, timeout=60 if plan.smoke else 300)
    print(f"  {describe_backlog(backlog)}", flush=True)

    # The same order load on the database the whole run has filled: an engine that slows down as it works
    # shows here (the Python SecantusDB did, until retryWrites=false).
    sustained, sustained_events = scenario_with_events(
        "POST /orders (gateway, after sustained load)", f"{gateway}/orders", "orders.lua", env, plan, meter, stack_pid)
    results.append(sustained)

    direct = next(r for r in results if "direct" in r["scenario"])["rps"]
    via_gateway = next(r for r in results if r["scenario"] == "GET /products/1 (gateway)")["rps"]
    return {"results": results, "gateway_to_direct_ratio": round(via_gateway / direct, 2) if direct else None,
            "order_pipeline": pipeline, "backlog_drain": backlog,
            "events": {"POST /orders": order_events, "order pipeline": pipeline_events,
                       "POST /orders after sustained load": sustained_events}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attach", action="store_true", help="use a stack already running on the default ports")
    parser.add_argument("--smoke", action="store_true", help="a quick run that only checks the benchmark works")
    parser.add_argument("--mongo", choices=MONGO_BUILDS, default="python",
                        help="the SecantusDB build of the stack it starts: python (what the tests use) or rust "
                             "(~10x faster on writes, so order creation measures the services rather than the engine)")
    args = parser.parse_args()
    if args.attach and args.smoke:
        parser.error("--smoke starts a stack of its own: it does not combine with --attach")
    if args.attach and args.mongo != "python":
        parser.error("--mongo chooses the engine of the stack it starts: it does not combine with --attach")
    plan = SMOKE if args.smoke else FULL
    out = ROOT / "target" / "bench" / ("smoke" if args.smoke else "")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    stack, ports = (None, DEFAULT_PORTS) if args.attach else start_stack(args.smoke, args.mongo, out)
    endpoints = Endpoints.from_ports(ports)
    try:
        wait_ready(endpoints.gateway, 1800, alive=lambda: stack is None or stack.poll() is None)
        report = measure(endpoints, plan, out, stack.pid if stack else None)
        report["peak_rss_mb"] = peak_rss(stack.pid if stack else None)
        print(f"  peak RSS (MB): {report['peak_rss_mb']}", flush=True)
    finally:
        if stack is not None:
            stop_stack(stack)
    report.update({"smoke": args.smoke, "build": "debug" if args.smoke else "release",
                   "mongodb_engine": "as running (attached)" if args.attach else f"SecantusDB, {args.mongo} build",
                   "plan": {"runs": plan.runs, "seconds": plan.seconds, "warmup": plan.warmup, "connections": plan.connections},
                   "machine": {"cpus": os.cpu_count()},
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    output.write(report, out)
    print(f"bench: results in {out}/results.json, results.md, latency.svg and latency-distribution.svg ({time.monotonic() - started:.0f} s)")
    problems = output.problems(report, out)
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
