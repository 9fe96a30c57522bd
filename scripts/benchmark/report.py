"""Writing the results (results.json, results.md, latency.svg) and the smoke run's completeness check."""
from __future__ import annotations

import json
import math
from pathlib import Path

from events import describe
from procs import ENGINES, SERVICES

SCENARIO_FIELDS = ["scenario", "runs", "rps", "p50_ms", "p99_ms", "p999_ms", "errors", "ok"]
PIPELINE_FIELDS = ["orders_sent", "orders", "processed", "paid", "processed_p50_ms", "processed_p99_ms", "paid_p50_ms", "paid_p99_ms"]


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    (out / "latency.svg").write_text(svg([r for r in report["results"] if r["p999_ms"] is not None]))


def markdown(report: dict) -> str:
    lines = ["| scenario | rate | p50 ms | p99 ms | p99.9 ms | errors |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        figures = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("p50_ms", "p99_ms", "p999_ms")]
        lines.append(f"| {r['scenario']} | {r['rps']:.1f} {r.get('unit', 'req/s')} | {' | '.join(figures)} | {r['errors']} |")
    payments = next((r for r in report["results"] if "paid" in r), None)
    journey = next((r for r in report["results"] if r.get("unit") == "journeys/s"), None)
    lines += ["", f"Gateway / direct product read throughput: {report['gateway_to_direct_ratio']}"]
    if payments:
        lines += ["", f"Payments: {payments['paid']} paid of {payments['orders_handed']} orders handed out, "
                      f"{payments['errors']} errors; wrk threads that ran out of orders: {payments['pool_exhausted_threads']}"]
    if journey:
        lines += ["", f"Whole journey: {journey['virtual_users']} virtual users, {journey['ok']} journeys, errors by step "
                      f"{journey['errors_by_step'] or 'none'}; median step times (ms): {journey['step_p50_ms']}"]
    p = report["order_pipeline"]
    lines += ["", f"Order pipeline at {p['rate_per_s']} orders/s: {p['orders']} orders of {p['orders_sent']} sent, {p['processed']} processed "
                  f"(p50 {p['processed_p50_ms']} ms, p99 {p['processed_p99_ms']} ms after the 201), {p['paid']} paid "
                  f"(p50 {p['paid_p50_ms']} ms, p99 {p['paid_p99_ms']} ms after the payment call)"]
    lines += ["", "| Kafka events during | seconds | produced/s | consumed/s | produced | consumed | per second by service and topic |",
              "|---|---|---|---|---|---|---|"]
    for stretch, f in report["events"].items():
        lines.append(f"| {stretch} | {f['window_s']} | {f['produced_per_s']} | {f['consumed_per_s']} | {f['produced']} | "
                     f"{f['consumed']} | {by_topic(f)} |")
    lines += ["", "| process | peak RSS MB |", "|---|---|"]
    lines += [f"| {name} | {mb} |" for name, mb in report["peak_rss_mb"].items()]
    return "\n".join(lines) + "\n"


def by_topic(figures: dict) -> str:
    """order-service produced new-order 37.6, order-processed 31.0; consumed new-order 31.0. payment-service ..."""
    parts = []
    for service, kinds in (figures.get("by_service") or {}).items():
        counts = [f"{kind} " + ", ".join(f"{topic} {rate}" for topic, rate in sorted(topics.items()))
                  for kind, topics in kinds.items() if topics]
        parts.append(f"{service} {'; '.join(counts) or 'none'}")
    return ". ".join(parts) or describe(figures)


def svg(results: list[dict]) -> str:
    """A bar chart of p50 / p99 / p99.9 per scenario, log scale."""
    width, row, left = 900, 34, 300
    height = 60 + row * len(results)
    top = max([r["p999_ms"] for r in results] + [1])
    scale = lambda ms: (math.log10(max(ms, 0.05)) + 1.4) / (math.log10(top) + 1.4) * (width - left - 40)  # noqa: E731
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
    return "\n".join(parts) + "\n"


def problems(report: dict, out: Path) -> list[str]:
    """What makes a run unusable: a missing output or field, a scenario without one successful request."""
    found = [f"{out / name} was not written" for name in ("results.json", "results.md", "latency.svg")
             if not (out / name).is_file() or (out / name).stat().st_size == 0]
    for r in report["results"]:
        found += [f"{r['scenario']}: no {key}" for key in SCENARIO_FIELDS if r.get(key) is None]
        if not r.get("ok"):
            found.append(f"{r['scenario']}: not one successful request")
    pipeline = report["order_pipeline"]
    found += [f"order pipeline: no {key}" for key in PIPELINE_FIELDS if pipeline.get(key) is None]
    if not pipeline.get("paid"):
        found.append("order pipeline: no order was paid")
    for stretch, figures in report["events"].items():
        if figures.get("produced_per_s") is None or figures.get("consumed_per_s") is None:
            found.append(f"events during {stretch}: {describe(figures)}")
    found += [f"peak RSS: {name} not found" for name in SERVICES + ENGINES if name not in report["peak_rss_mb"]]
    if report.get("gateway_to_direct_ratio") is None:
        found.append("no gateway / direct ratio")
    return found
