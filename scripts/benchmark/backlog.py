"""A backlog left by a broker outage, and how fast the order pipeline drains it.

The Kafka-protocol broker is frozen (SIGSTOP: a broker that hangs; it loses nothing it holds) while orders are
created through the gateway: each is answered 201 once its order and `new-order` event are durable in MongoDB,
and nothing can be published. Then the broker is resumed (SIGCONT), and the payment-service's counters are read
every 0.25 s until it has consumed one `order-processed` event more per accepted order (each order's `new-order`
published, consumed, the order moved to `processed`, that event published and recorded by the payment-service: the
order is payable): drained orders/s = accepted orders / the time from the resume. (Not the order-service's counters:
its GET /metrics counts the outbox backlog, a read of every pending entry, which would slow the drain it measures.)
The order-service's engine commands per order during the drain come from its counters before and after.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

from client import Client, Endpoints
from events import EventMeter, scrape
from procs import BROKER, descendants, name_of

THREADS = 16
ORDER_PROCESSED = ("consumed", "order-processed")


def broker_pid(stack_pid: int | None) -> int | None:
    """The Tansu broker of the stack (attached: the one running on this machine), if there is exactly one."""
    pids = descendants(stack_pid) if stack_pid is not None else [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    brokers = [pid for pid in pids if name_of(pid) == BROKER]
    return brokers[0] if len(brokers) == 1 else None


def create_orders(gateway: str, token: str, count: int) -> tuple[int, int, float]:
    """count orders from THREADS keep-alive connections: (answered 201, other answers, seconds)."""
    lock, next_n, tally = threading.Lock(), [0], {"created": 0, "other": 0}
    run = uuid.uuid4().hex[:8]

    def worker() -> None:
        client = Client(gateway, timeout=30)
        while True:
            with lock:
                n = next_n[0]
                next_n[0] += 1
            if n >= count:
                return
            status, _ = client.request("POST", "/orders", {"productId": "2", "quantity": 1}, token,
                                       {"Idempotency-Key": f"backlog-{run}-{n}"})
            with lock:
                tally["created" if status == 201 else "other"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally["created"], tally["other"], time.monotonic() - started


def backlog_drain(endpoints: Endpoints, token: str, count: int, stack_pid: int | None, timeout: float) -> dict:
    result: dict = {"orders_sent": count, "orders": None, "refused": None, "created_s": None, "drain_s": None,
                    "drained": None, "drained_per_s": None, "engine_commands": None}
    broker = broker_pid(stack_pid)
    if broker is None:
        result["skipped"] = "no single Tansu broker process found to freeze"
        return result
    metrics = endpoints.payment_metrics
    before = scrape(metrics).get(ORDER_PROCESSED, 0.0)
    os.kill(broker, signal.SIGSTOP)
    try:
        created, refused, created_s = create_orders(endpoints.gateway, token, count)
    finally:
        os.kill(broker, signal.SIGCONT)
    meter = EventMeter({"order-service": f"{endpoints.orders}/metrics"})
    meter.start()
    resumed = time.monotonic()
    result.update(orders=created, refused=refused, created_s=round(created_s, 2))
    drained = 0
    while time.monotonic() - resumed < timeout:
        drained = int(scrape(metrics).get(ORDER_PROCESSED, 0.0) - before)
        if drained >= created:
            break
        time.sleep(0.25)
    drain_s = time.monotonic() - resumed
    commands = (meter.stop().get("commands") or {}).get("order-service")
    if commands:
        # Per order drained, not per order created (none is created during the drain).
        commands = {**commands, "created": drained,
                    "per_created": round(commands["total"] / drained, 2) if drained else None}
    result.update(drain_s=round(drain_s, 2), drained=drained,
                  drained_per_s=round(drained / drain_s, 1) if drain_s > 0 else None, engine_commands=commands)
    return result


def describe_backlog(result: dict) -> str:
    if result.get("skipped"):
        return f"backlog drain: skipped ({result['skipped']})"
    commands = result["engine_commands"] or {}
    return (f"backlog drain: {result['orders']} orders accepted while the broker was frozen ({result['refused']} refused, "
            f"{result['created_s']} s); {result['drained']} drained in {result['drain_s']} s after it resumed = "
            f"{result['drained_per_s']} orders/s; engine commands per order drained (order-service): "
            f"{commands.get('per_created')} ({', '.join(f'{op} {n}' for op, n in sorted(commands.get('by_operation', {}).items()))})")
