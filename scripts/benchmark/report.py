"""Writing the results (results.json, results.md, latency.svg) and the smoke run's completeness check."""
from __future__ import annotations

import json
import math
from pathlib import Path

from backlog import describe_backlog
from events import describe
from procs import ENGINES, SERVICES

SCENARIO_FIELDS = ["scenario", "runs", "rps", "p50_ms", "p99_ms", "p999_ms", "errors", "ok"]
BACKLOG_FIELDS = ["orders", "drain_s", "drained", "drained_per_s", "engine_commands"]
PIPELINE_FIELDS = ["orders_sent", "orders", "processed", "paid", "processed_p50_ms", "processed_p99_ms", "paid_p50_ms", "paid_p99_ms"]


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(markdown(report))
    (out / "latency.svg").write_text(svg([r for r in report["results"] if r["p999_ms"] is not None]))
    (out / "latency-distribution.svg").write_text(distribution_svg([r for r in report["results"] if r.get("distribution_ms")]))


def markdown(report: dict) -> str:
    lines = [f"{report['build'].capitalize()} build; MongoDB protocol: {report['mongodb_engine']}.", "",
             "| scenario | rate | p50 ms | p99 ms | p99.9 ms | errors |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        figures = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("p50_ms", "p99_ms", "p999_ms")]
        lines.append(f"| {r['scenario']} | {r['rps']:.1f} {r.get('unit', 'req/s')} | {' | '.join(figures)} | {r['errors']} |")
    payments = next((r for r in report["results"] if "paid" in r), None)
    journey = next((r for r in report["results"] if r.get("unit") == "journeys/s"), None)
    lines += ["", f"Gateway / direct product read throughput: {report['gateway_to_direct_ratio']}"]
    during = next((r for r in report["results"] if "logins_per_s" in r), None)
    if during:
        lines += ["", f"Logins meanwhile (the second wrk's rate, median): {during['logins_per_s']} req/s"]
    if payments:
        lines += ["", f"Payments: {payments['paid']} paid of {payments['orders_handed']} orders handed out, "
                      f"{payments['errors']} errors; wrk threads that ran out of orders: {payments['pool_exhausted_threads']}"]
    lines += ["", "| engine commands during | service | per order or payment created | commands | created | by operation |",
              "|---|---|---|---|---|---|"]
    for r in report["results"]:
        for service, c in (r.get("engine_commands") or {}).items():
            ops = ", ".join(f"{op} {n}" for op, n in sorted(c["by_operation"].items()))
            lines.append(f"| {r['scenario']} | {service} | {c['per_created']} | {c['total']} | {c['created']} | {ops} |")
    metered = [r for r in report["results"] if r.get("cpu", {}).get("requests")]
    if metered:
        lines += ["", "| CPU during | process | % of one core | CPU ms per request |", "|---|---|---|---|"]
        for r in metered:
            for name, f in r["cpu"]["by_process"].items():
                lines.append(f"| {r['scenario']} | {name} | {f['core_pct']} | {f['ms_per_request']} |")
            c = r["cpu"]
            lines.append(f"| {r['scenario']} | **whole machine** (busy {c['machine_busy_pct']}% of {c['cores']} cores; "
                         f"~{c['rate_at_full_machine']} req/s with every core busy at this cost) | "
                         f"{c['machine']['core_pct']} | {c['machine']['ms_per_request']} |")
    fresh = next((r for r in report["results"] if r["scenario"] == "POST /orders (gateway)"), None)
    later = next((r for r in report["results"] if r["scenario"] == "POST /orders (gateway, after sustained load)"), None)
    if fresh and later:
        lines += ["", f"POST /orders on a fresh database {fresh['rps']:.1f} req/s (p99 {fresh['p99_ms']:.1f} ms), after "
                      f"the whole run's load {later['rps']:.1f} req/s (p99 {later['p99_ms']:.1f} ms)"]
    if journey:
        lines += ["", f"Whole journey: {journey['virtual_users']} virtual users, {journey['ok']} journeys, errors by step "
                      f"{journey['errors_by_step'] or 'none'}; median step times (ms): {journey['step_p50_ms']}"]
    p = report["order_pipeline"]
    lines += ["", f"Order pipeline at {p['rate_per_s']} orders/s: {p['orders']} orders of {p['orders_sent']} sent, {p['processed']} processed "
                  f"(p50 {p['processed_p50_ms']} ms, p99 {p['processed_p99_ms']} ms after the 201), {p['paid']} paid "
                  f"(p50 {p['paid_p50_ms']} ms, p99 {p['paid_p99_ms']} ms after the payment call)"]
    lines += ["", describe_backlog(report["backlog_drain"])]
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


def distribution_svg(results: list[dict]) -> str:
    """Latency by percentile, one curve per wrk scenario: x in "nines" (50, 90, 99, 99.9, 99.99, max),
    y in ms on a log scale. Where a curve turns up steeply is where its tail begins."""
    width, height, left, top, right, bottom = 900, 520, 70, 40, 250, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    nines = lambda p: min(-math.log10(max(1 - p / 100, 1e-5)), 5.0)  # noqa: E731
    values = [ms for r in results for _, ms in r["distribution_ms"] if ms > 0] or [1]
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    high = max(high, low + 1)
    x = lambda p: left + nines(p) / 5.0 * plot_w  # noqa: E731
    y = lambda ms: top + plot_h - (math.log10(max(ms, 10 ** low)) - low) / (high - low) * plot_h  # noqa: E731
    palette = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="22" font-size="14">Latency distribution per scenario (median of the runs): ms by percentile, log scales</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>']
    for label, p in (("0", 0), ("50", 50), ("90", 90), ("99", 99), ("99.9", 99.9), ("99.99", 99.99), ("max", 100)):
        parts.append(f'<line x1="{x(p):.1f}" y1="{top}" x2="{x(p):.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{x(p):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{label}</text>')
    for exponent in range(low, high + 1):
        ms = 10 ** exponent
        parts.append(f'<line x1="{left}" y1="{y(ms):.1f}" x2="{left + plot_w}" y2="{y(ms):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">percentile</text>')
    for i, r in enumerate(results):
        colour = palette[i % len(palette)]
        points = " ".join(f"{x(p):.1f},{y(ms):.1f}" for p, ms in r["distribution_ms"])
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<rect x="{width - right + 15}" y="{top + i * 20}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 32}" y="{top + i * 20 + 11}">{r["scenario"]}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def problems(report: dict, out: Path) -> list[str]:
    """What makes a run unusable: a missing output or field, a scenario without one successful request."""
    found = [f"{out / name} was not written" for name in ("results.json", "results.md", "latency.svg", "latency-distribution.svg")
             if not (out / name).is_file() or (out / name).stat().st_size == 0]
    for r in report["results"]:
        found += [f"{r['scenario']}: no {key}" for key in SCENARIO_FIELDS if r.get(key) is None]
        if not r.get("ok"):
            found.append(f"{r['scenario']}: not one successful request")
    pipeline = report["order_pipeline"]
    found += [f"order pipeline: no {key}" for key in PIPELINE_FIELDS if pipeline.get(key) is None]
    if not pipeline.get("paid"):
        found.append("order pipeline: no order was paid")
    backlog = report["backlog_drain"]
    if not backlog.get("skipped"):
        found += [f"backlog drain: no {key}" for key in BACKLOG_FIELDS if backlog.get(key) is None]
        if backlog.get("orders") and backlog.get("drained", 0) < backlog["orders"]:
            found.append(f"backlog drain: {backlog['drained']} of {backlog['orders']} orders drained in {backlog['drain_s']} s")
    for stretch, figures in report["events"].items():
        if figures.get("produced_per_s") is None or figures.get("consumed_per_s") is None:
            found.append(f"events during {stretch}: {describe(figures)}")
    for r in report["results"]:
        if r["scenario"].startswith(("POST /orders", "POST /payments")):
            cpu = r.get("cpu") or {}
            found += [f"{r['scenario']}: no CPU of {name}" for name in SERVICES + ENGINES
                      if name not in cpu.get("by_process", {})]
            if cpu.get("rate_at_full_machine") is None:
                found.append(f"{r['scenario']}: no CPU of the whole machine")
    found += [f"peak RSS: {name} not found" for name in SERVICES + ENGINES if name not in report["peak_rss_mb"]]
    if report.get("gateway_to_direct_ratio") is None:
        found.append("no gateway / direct ratio")
    return found
