"""Kafka events per second and MongoDB commands per operation, from the services' Prometheus counters
sampled before and after a stretch.

The order-service (GET /metrics on its port) and the payment-service (its metrics side port) count
kafka_messages_produced_total{topic} (acknowledged by the broker),
kafka_messages_consumed_total{topic} (consumed and handled) and
mongodb_commands_total{operation} (every command the service's driver sent). What they created in the
stretch comes from their request counters: POST /orders answered 201 (order-service), Pay answered OK
(payment-service, code "Ok"). Commands divided by what was created is the engine's cost of one order or payment,
everything that service did meanwhile included (its relay, its consumer).
"""
from __future__ import annotations

import re
import time
import urllib.request

COUNTERS = {"kafka_messages_produced_total": "produced", "kafka_messages_consumed_total": "consumed",
            "mongodb_commands_total": "commands"}
# Requests that created something, by the counter and the labels that say so.
CREATED = {"http_server_requests_total": {"method": "POST", "route": "/orders", "status": "201"},
           "grpc_server_requests_total": {"method": "Pay", "code": "Ok"}}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, str], float]:
    """(produced|consumed, topic), (commands, operation) and (created, "") -> value, from the Prometheus text
    format."""
    values: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        name, labels = match.group(1), dict(LABEL.findall(match.group(2) or ""))
        if name in COUNTERS:
            key = (COUNTERS[name], labels.get("operation" if name == "mongodb_commands_total" else "topic", ""))
        elif name in CREATED and all(labels.get(k) == v for k, v in CREATED[name].items()):
            key = ("created", "")
        else:
            continue
        values[key] = values.get(key, 0.0) + float(match.group(3))
    return values


def scrape(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=15) as response:
        return parse(response.read().decode())


class EventMeter:
    """meter = EventMeter({"order-service": url, ...}); meter.start(); ...; figures = meter.stop()."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources
        self.before: dict[str, dict] = {}
        self.started = 0.0

    def sample(self) -> tuple[dict[str, dict], dict[str, str]]:
        values, problems = {}, {}
        for service, url in self.sources.items():
            try:
                values[service] = scrape(url)
            except OSError as error:
                problems[service] = f"{url}: {error}"
        return values, problems

    def start(self) -> None:
        self.before, _ = self.sample()
        self.started = time.monotonic()

    def stop(self) -> dict:
        after, problems = self.sample()
        window = time.monotonic() - self.started
        figures: dict = {"window_s": round(window, 2), "produced_per_s": None, "consumed_per_s": None,
                         "produced": None, "consumed": None, "by_service": {}}
        totals = {"produced": 0.0, "consumed": 0.0}
        for service in self.sources:
            if service not in after or service not in self.before:
                problems.setdefault(service, "no sample before the stretch")
                continue
            rates: dict[str, dict[str, float]] = {"produced": {}, "consumed": {}}
            commands: dict[str, int] = {}
            created = 0
            for (kind, label), value in after[service].items():
                count = value - self.before[service].get((kind, label), 0.0)
                if kind == "commands":
                    if count:
                        commands[label] = int(count)
                elif kind == "created":
                    created = int(count)
                else:
                    rates[kind][label] = round(count / window, 1)
                    totals[kind] += count
            figures["by_service"][service] = rates
            figures.setdefault("commands", {})[service] = commands_figures(commands, created)
        if not problems:
            for kind, count in totals.items():
                figures[kind] = int(count)
                figures[f"{kind}_per_s"] = round(count / window, 1)
        else:
            figures["unavailable"] = problems
        return figures


def commands_figures(by_operation: dict[str, int], created: int) -> dict:
    total = sum(by_operation.values())
    return {"total": total, "by_operation": by_operation, "created": created,
            "per_created": round(total / created, 2) if created else None}


def combine_commands(stretches: list[dict]) -> dict:
    """The commands figures of several stretches (the runs of one scenario) added up, per service."""
    combined: dict[str, dict] = {}
    for figures in stretches:
        for service, c in (figures.get("commands") or {}).items():
            into = combined.setdefault(service, {"by_operation": {}, "created": 0})
            into["created"] += c["created"]
            for operation, count in c["by_operation"].items():
                into["by_operation"][operation] = into["by_operation"].get(operation, 0) + count
    return {service: commands_figures(c["by_operation"], c["created"]) for service, c in combined.items()}


def describe_commands(commands: dict, service: str, what: str) -> str:
    c = (commands or {}).get(service)
    if not c:
        return f"engine commands per {what}: unavailable"
    return (f"engine commands per {what} ({service}): {c['per_created']} ({c['total']} commands for {c['created']}; "
            f"{', '.join(f'{op} {n}' for op, n in sorted(c['by_operation'].items()))})")


def describe(figures: dict) -> str:
    if figures.get("unavailable"):
        return f"events/s unavailable: {figures['unavailable']}"
    return (f"Kafka events over {figures['window_s']} s: produced {figures['produced']} "
            f"({figures['produced_per_s']}/s), consumed {figures['consumed']} ({figures['consumed_per_s']}/s)")
