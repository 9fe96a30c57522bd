"""The order pipeline at a steady rate: orders, then payments, one every 1/rate seconds.

Time to `processed` = the order's updatedAt - createdAt (both from the order-service's clock);
time to `paid` = the order's updatedAt once paid - the moment the payment call was sent (same machine).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable

from client import Client
from journey import percentile

WORKERS = 32  # enough for the rate x the slowest answer


def iso_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def paced(items: list, rate: float, action: Callable) -> None:
    """Starts action(item) for each item, one every 1/rate seconds whatever the answers' latency
    (an open loop: worker threads send), and waits until all are done."""
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for n, item in enumerate(items):
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
            pool.submit(action, item)


class PerThread:
    """One keep-alive connection to the gateway per calling thread."""

    def __init__(self, gateway: str):
        self.gateway, self.local = gateway, threading.local()

    def get(self) -> Client:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.gateway)
        return self.local.client


def wait_all(client: Client, token: str, ids: list[str], done: Callable[[dict], bool], timeout: float) -> dict[str, dict]:
    """Polls the orders until done(order) holds for all of them or the time is up; the last reads."""
    deadline = time.monotonic() + timeout
    orders: dict[str, dict] = {}
    waiting = list(ids)
    while waiting and time.monotonic() < deadline:
        for order_id in waiting:
            status, body = client.request("GET", f"/orders/{order_id}", token=token)
            if status == 200:
                orders[order_id] = body["order"]
        waiting = [i for i in waiting if i not in orders or not done(orders[i])]
        if waiting:
            time.sleep(0.1)
    return orders


def order_pipeline(gateway: str, token: str, rate: float, seconds: float, settle_timeout: float) -> dict:
    clients = PerThread(gateway)
    ids: list[str] = []
    pay_started: dict[str, float] = {}

    def order(_n: int) -> None:
        status, body = clients.get().request("POST", "/orders", {"productId": "4", "quantity": 1}, token)
        if status == 201:
            ids.append(body["orderId"])

    def pay(o: dict) -> None:
        pay_started[o["id"]] = time.time() * 1000
        clients.get().request("POST", "/payments", {"orderId": o["id"], "amount": o["total"]}, token,
                              {"Idempotency-Key": f"pipeline-{o['id']}"})

    sent = max(1, round(rate * seconds))
    paced(list(range(sent)), rate, order)
    orders = wait_all(clients.get(), token, ids, lambda o: o["status"] != "pending", settle_timeout)
    processed = [o for o in orders.values() if o["status"] == "processed"]
    processed_ms = [iso_ms(o["updatedAt"]) - iso_ms(o["createdAt"]) for o in processed]

    paced(processed, rate, pay)
    paid_orders = wait_all(clients.get(), token, list(pay_started), lambda o: o["status"] == "paid", settle_timeout)
    paid_ms = [iso_ms(o["updatedAt"]) - pay_started[i] for i, o in paid_orders.items() if o["status"] == "paid"]

    rounded = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {
        "rate_per_s": rate, "orders_sent": sent, "orders": len(ids), "processed": len(processed_ms), "paid": len(paid_ms),
        "processed_p50_ms": rounded(percentile(processed_ms, 0.50)), "processed_p99_ms": rounded(percentile(processed_ms, 0.99)),
        "paid_p50_ms": rounded(percentile(paid_ms, 0.50)), "paid_p99_ms": rounded(percentile(paid_ms, 0.99)),
    }
