"""The payment scenario: POST /payments through the gateway at 50 connections, every request paying
its own `processed` order of the paying user, with the amount = the order's total.

Before each wrk run the pool is topped up: threads of this process post the missing orders for the
paying user (a fixed number, within a time limit), then the user's orders are listed straight from
the order-service (GET /orders, pages of 100) until none is pending. The run gets a file of fresh
orders: one per connection plus 1.5x what it can pay in its time at the best rate seen so far. An
order handed to a run is never handed out again. A wrk thread whose orders run out stops
(payments.lua) instead of paying an order twice, and the scenario reports it.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from pathlib import Path

from client import Client, Endpoints, call, new_user
from events import combine_commands, describe_commands
from load import Plan, summarize, wrk
from procs import describe_cpu

MARGIN = 1.5
CREATORS = 16  # threads posting the pool's orders


class OrderPool:
    def __init__(self, endpoints: Endpoints, token: str):
        self.endpoints, self.token = endpoints, token
        self.used: set[str] = set()
        self.ready: list[tuple[str, float]] = []
        self.created = 0
        # The newest order of the last settled listing: every order up to it is in `ready` or used already.
        # Order ids are UUIDv7, so they sort by creation time, and GET /orders lists newest first.
        self.settled_up_to: str | None = None

    def top_up(self, wanted: int, timeout: float) -> None:
        """Create orders until at least `wanted` unused processed ones exist (or the time is up)."""
        deficit = wanted - len(self.ready)
        if deficit <= 0:
            return
        deadline = time.monotonic() + timeout
        remaining = iter(range(deficit))
        lock = threading.Lock()

        def creator() -> None:
            client = Client(self.endpoints.gateway)
            while time.monotonic() < deadline:
                with lock:
                    if next(remaining, None) is None:
                        break
                status, _ = client.request("POST", "/orders", {"productId": "1", "quantity": 1}, self.token,
                                           {"Idempotency-Key": f"pool-{uuid.uuid4().hex}"})
                with lock:
                    self.created += status == 201
            client.close()

        threads = [threading.Thread(target=creator, daemon=True) for _ in range(CREATORS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.settle(max(5.0, deadline - time.monotonic()))

    def settle(self, timeout: float) -> None:
        """Wait until none of the user's orders created since the last settling is pending; keep the processed
        ones. (Only the new orders are listed: listing them all again made the pool's cost grow with its size.)"""
        deadline = time.monotonic() + timeout
        while True:
            orders = self.list_orders(newer_than=self.settled_up_to)
            pending = sum(1 for order in orders if order["status"] == "pending")
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        known = self.used | {order_id for order_id, _ in self.ready}
        self.ready += [(o["id"], o["total"]) for o in orders if o["status"] == "processed" and o["id"] not in known]
        # Up to the newest order older than every one still pending (after a timeout): those are listed again.
        oldest_pending = min((o["id"] for o in orders if o["status"] == "pending"), default=None)
        settled = [o["id"] for o in orders if oldest_pending is None or o["id"] < oldest_pending]
        if settled:
            self.settled_up_to = max(settled)

    def list_orders(self, newer_than: str | None) -> list[dict]:
        """The user's orders newer than the order `newer_than` (all, for None), newest first."""
        orders, cursor = [], None
        while True:
            query = "limit=100" + (f"&before={cursor}" if cursor else "")
            status, body = call("GET", f"{self.endpoints.orders}/orders?{query}", token=self.token, timeout=30)
            if status != 200:
                raise SystemExit(f"bench: GET /orders answered {status}: {body}")
            page = body["orders"]
            newer = [order for order in page if newer_than is None or order["id"] > newer_than]
            orders += newer
            cursor = body.get("nextCursor")
            if not cursor or len(newer) < len(page):
                return orders

    def hand_out(self, count: int, directory: Path) -> Path:
        """Write `count` orders (or all there are) to a new file for payments.lua; they are used from now on."""
        taken, self.ready = self.ready[:count], self.ready[count:]
        self.used.update(order_id for order_id, _ in taken)
        path = directory / f"payment-orders-{uuid.uuid4().hex[:8]}.txt"
        path.write_text("".join(f"{order_id} {total}\n" for order_id, total in taken))
        return path


def payment_scenario(endpoints: Endpoints, plan: Plan, order_rate: float, workdir: Path, meter=None,
                     cpu=None) -> dict:
    """`order_rate`: the POST /orders rate just measured, the first guess of how fast payments go. `meter` (an
    EventMeter) counts the engine commands of the measured runs only, not of making the pool; `cpu` (a CpuMeter)
    the CPU time of the same runs."""
    _, _, token = new_user(endpoints.gateway, "bench-pay")
    pool = OrderPool(endpoints, token)
    time_limit = 30.0 if plan.smoke else 120.0
    estimate = max(order_rate, 1.0)  # payments/s, first guessed from the orders/s just measured
    rates: list[float] = []
    runs, exhausted = [], 0
    setup_seconds = 0.0
    stretches: list[dict] = []
    plan_stretches = ([(plan.warmup, False)] if plan.warmup else []) + [(plan.seconds, True)] * plan.runs
    for seconds, measured in plan_stretches:
        wanted = plan.connections + math.ceil(estimate * max(1, round(seconds)) * MARGIN)
        started = time.monotonic()
        pool.top_up(wanted, time_limit)
        setup_seconds += time.monotonic() - started
        ids = pool.hand_out(wanted, workdir)
        if measured and meter is not None:
            meter.start()
        if measured and cpu is not None:
            cpu.start()
        result = wrk(f"{endpoints.gateway}/payments", "payments.lua", seconds,
                     {"BENCH_TOKEN": token, "BENCH_PAY_IDS": str(ids)}, plan.connections)
        if measured and cpu is not None:
            cpu.stop()
        if measured and meter is not None:
            stretches.append(meter.stop())
        ids.unlink()
        # Then the best rate measured; a run that ran out of orders could have paid faster: double it.
        rates.append(result["rps"] * (2 if result["exhausted_threads"] else 1))
        estimate = max(max(rates), 1.0)
        if measured:
            runs.append(result)
            exhausted += result["exhausted_threads"]
    summary = summarize(
        "POST /payments (gateway)", runs,
        paid=sum(r["paid"] for r in runs), orders_handed=sum(r["orders_handed"] for r in runs),
        pool_exhausted_threads=exhausted, pool_orders_created=pool.created,
        pool_setup_s=round(setup_seconds, 1), engine_commands=combine_commands(stretches))
    if cpu is not None:
        summary["cpu"] = cpu.figures(summary["ok"])
    print(f"    paid {summary['paid']} of {summary['orders_handed']} orders handed out, errors {summary['errors']}; "
          f"pool: {pool.created} orders created in {summary['pool_setup_s']} s", flush=True)
    print(f"    {describe_commands(summary['engine_commands'], 'payment-service', 'payment')}", flush=True)
    if cpu is not None:
        print(f"    {describe_cpu(summary['cpu'])}", flush=True)
    if exhausted:
        print(f"    WARNING: {exhausted} wrk thread(s) ran out of orders and stopped early: req/s understates "
              "the payment rate", flush=True)
    return summary
