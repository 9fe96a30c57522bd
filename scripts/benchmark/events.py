"""Kafka events per second, from the services' Prometheus counters sampled before and after a stretch.

The order-service (GET /metrics on its port) and the payment-service (its metrics side port) count
kafka_messages_produced_total{topic} (acknowledged by the broker) and
kafka_messages_consumed_total{topic} (consumed and handled).
"""
from __future__ import annotations

import re
import time
import urllib.request

COUNTERS = {"kafka_messages_produced_total": "produced", "kafka_messages_consumed_total": "consumed"}
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, str], float]:
    """(produced|consumed, topic) -> value, from the Prometheus text format."""
    values: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match or match.group(1) not in COUNTERS:
            continue
        labels = dict(LABEL.findall(match.group(2) or ""))
        key = (COUNTERS[match.group(1)], labels.get("topic", ""))
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
            for (kind, topic), value in after[service].items():
                count = value - self.before[service].get((kind, topic), 0.0)
                rates[kind][topic] = round(count / window, 1)
                totals[kind] += count
            figures["by_service"][service] = rates
        if not problems:
            for kind, count in totals.items():
                figures[kind] = int(count)
                figures[f"{kind}_per_s"] = round(count / window, 1)
        else:
            figures["unavailable"] = problems
        return figures


def describe(figures: dict) -> str:
    if figures.get("unavailable"):
        return f"events/s unavailable: {figures['unavailable']}"
    return (f"Kafka events over {figures['window_s']} s: produced {figures['produced']} "
            f"({figures['produced_per_s']}/s), consumed {figures['consumed']} ({figures['consumed_per_s']}/s)")
