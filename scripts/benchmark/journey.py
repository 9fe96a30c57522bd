"""The whole journey: virtual users (threads of this process, one keep-alive connection each) that
each, again and again until the time is up: register, log in, read product 1, order it, poll until
the order is `processed`, pay it, poll until it is `paid`.

Journeys/s counts the journeys that completed successfully inside the window; every journey started
in the window is finished (each step is bounded) and its time counts in the percentiles.
"""
from __future__ import annotations

import statistics
import threading
import time
import uuid

from client import Client
from load import Plan, print_summary

POLL_INTERVAL = 0.05  # adds about half of it to each of the two waits
POLL_TIMEOUT = 15.0


class JourneyFailed(Exception):
    def __init__(self, step: str, detail: str):
        super().__init__(f"{step}: {detail}")
        self.step = step


def expect(step: str, answer: tuple, status: int):
    if answer[0] != status:
        raise JourneyFailed(step, f"{answer[0]} {str(answer[1])[:200]}")
    return answer[1]


def wait_status(client: Client, step: str, order_id: str, token: str, wanted: str) -> dict:
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        order = expect(step, client.request("GET", f"/orders/{order_id}", token=token), 200)["order"]
        if order["status"] == wanted:
            return order
        if time.monotonic() > deadline:
            raise JourneyFailed(step, f"still {order['status']} after {POLL_TIMEOUT:.0f} s")
        time.sleep(POLL_INTERVAL)


def one_journey(client: Client, name: str) -> dict[str, float]:
    """Runs one journey; the time of each step in ms."""
    steps: dict[str, float] = {}
    mark = time.monotonic()

    def done(step: str) -> None:
        nonlocal mark
        now = time.monotonic()
        steps[step] = (now - mark) * 1000
        mark = now

    email, password = f"{name}@example.com", "journey-password"
    expect("register", client.request("POST", "/users/register",
                                      {"username": name, "email": email, "password": password}), 201)
    done("register")
    token = expect("login", client.request("POST", "/users/login", {"email": email, "password": password}), 200)["token"]
    done("login")
    expect("product", client.request("GET", "/products/1"), 200)
    done("product")
    order_id = expect("order", client.request("POST", "/orders", {"productId": "1", "quantity": 1}, token,
                                              {"Idempotency-Key": f"journey-{name}"}), 201)["orderId"]
    done("order")
    order = wait_status(client, "processed", order_id, token, "processed")
    done("processed")
    expect("pay", client.request("POST", "/payments", {"orderId": order_id, "amount": order["total"]}, token,
                                 {"Idempotency-Key": f"journey-pay-{name}"}), 200)
    done("pay")
    wait_status(client, "paid", order_id, token, "paid")
    done("paid")
    return steps


def run_users(gateway: str, users: int, seconds: float) -> dict:
    """One run: `users` virtual users for `seconds`; raw journey times and errors."""
    run = uuid.uuid4().hex[:6]
    start = time.monotonic()
    deadline = start + seconds
    lock = threading.Lock()
    journeys: list[tuple[float, float, dict]] = []   # (end, total ms, steps)
    errors: dict[str, int] = {}

    def user(number: int) -> None:
        client = Client(gateway, timeout=30)
        count = 0
        while time.monotonic() < deadline:
            count += 1
            began = time.monotonic()
            try:
                steps = one_journey(client, f"j{run}-{number}-{count}")
                with lock:
                    journeys.append((time.monotonic(), (time.monotonic() - began) * 1000, steps))
            except JourneyFailed as failure:
                with lock:
                    errors[failure.step] = errors.get(failure.step, 0) + 1
            except OSError as error:
                client.close()
                with lock:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        client.close()

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"in_window": sum(1 for end, _, _ in journeys if end <= deadline), "seconds": seconds,
            "times_ms": [total for _, total, _ in journeys], "steps": [steps for _, _, steps in journeys],
            "errors": errors, "elapsed_s": time.monotonic() - start}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def journey_scenario(gateway: str, plan: Plan, users: int) -> dict:
    if plan.warmup:
        run_users(gateway, users, plan.warmup)
    runs = [run_users(gateway, users, plan.seconds) for _ in range(plan.runs)]
    per_run = [{"rps": r["in_window"] / r["seconds"], "p50": percentile(r["times_ms"], 0.50),
                "p99": percentile(r["times_ms"], 0.99), "p999": percentile(r["times_ms"], 0.999)} for r in runs]
    median = lambda key: statistics.median(v[key] for v in per_run if v[key] is not None) \
        if any(v[key] is not None for v in per_run) else None  # noqa: E731
    errors: dict[str, int] = {}
    for r in runs:
        for step, count in r["errors"].items():
            errors[step] = errors.get(step, 0) + count
    steps = [s for r in runs for s in r["steps"]]
    summary = {
        "scenario": "whole journey (gateway)", "unit": "journeys/s", "runs": len(runs), "virtual_users": users,
        "rps": median("rps"), "p50_ms": median("p50"), "p99_ms": median("p99"), "p999_ms": median("p999"),
        "errors": sum(errors.values()), "ok": sum(len(r["times_ms"]) for r in runs), "errors_by_step": errors,
        "step_p50_ms": {step: round(statistics.median(s[step] for s in steps), 1) for step in steps[0]} if steps else None,
        "max_drain_s": round(max(r["elapsed_s"] - r["seconds"] for r in runs), 1),
    }
    if summary["ok"]:
        print_summary(summary)
        late = " (none ended inside the window: journeys take longer than a run)" if not summary["rps"] else ""
        print(f"    {summary['ok']} journeys{late}, errors by step {errors or 'none'}; median step times (ms) "
              f"{summary['step_p50_ms']}", flush=True)
    else:
        print(f"  {summary['scenario']:<38} no journey completed; errors by step {errors}", flush=True)
    return summary
