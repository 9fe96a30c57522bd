"""Peak resident set (VmHWM) and CPU time of the services and engines of the stack under test."""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from engines import DATABASE_OWNERS  # scripts/stack starts a SecantusDB for each

SERVICES = ["api-gateway", "user-service", "product-service", "order-service", "payment-service"]
BROKER = "tansu (Kafka protocol)"


def secantus(owner: str) -> str:
    """The name the report gives the MongoDB-protocol server of `owner` ("shared": one serving several)."""
    return f"secantus (MongoDB protocol, {owner})"


ENGINES = [secantus(owner) for owner in DATABASE_OWNERS] + [BROKER]


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                # The field after the parenthesised command name is the state, then the parent's pid.
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(proc.name))
    return tree


def descendants(root: int) -> list[int]:
    tree, found, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def name_of(pid: int) -> str | None:
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    argv0 = argv[0].decode(errors="replace") if argv else ""
    joined = b" ".join(argv).decode(errors="replace")
    if "secantusd" in joined:
        # Which service's: the last part of its storage path names the owner (.local/databases/<service>, or a
        # temporary directory secantus-<service>-*).
        args = [arg.decode(errors="replace") for arg in argv]
        storage = Path(args[args.index("--storage-path") + 1]).name if "--storage-path" in args[:-1] else ""
        owner = next((owner for owner in DATABASE_OWNERS
                      if storage == owner or storage.startswith(f"secantus-{owner}-")), "shared")
        return secantus(owner)
    if "tansu" in Path(argv0).name and "broker" in joined:
        return BROKER
    return Path(argv0).name if Path(argv0).name in SERVICES else None


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def stack_processes(stack_pid: int | None) -> list[tuple[int, str]]:
    """(pid, name) of the stack's services and engines: its own descendants, or (attached) every release binary
    and engine running here."""
    if stack_pid is not None:
        pids = descendants(stack_pid)
    else:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    found = []
    for pid in pids:
        name = name_of(pid)
        if name in SERVICES and stack_pid is None:
            try:
                if "/release/" not in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace"):
                    continue
            except OSError:
                continue
        if name:
            found.append((pid, name))
    return found


def peak_rss(stack_pid: int | None) -> dict[str, float]:
    """MB per process name (see stack_processes)."""
    peaks: dict[str, float] = {}
    for pid, name in stack_processes(stack_pid):
        mb = vm_hwm_mb(pid)
        if mb is not None:
            peaks[name] = max(peaks.get(name, 0.0), mb)
    return {name: round(mb, 1) for name, mb in sorted(peaks.items())}


LOAD_GENERATOR = "wrk (load generator)"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far (all its threads)."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the state (fields[0]): utime and stime are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # guest time is counted in user already
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class CpuMeter:
    """CPU time per process of the stack, of the load generator (wrk: this process's finished children) and of the
    whole machine, over one or more stretches: meter.start(); ...; meter.stop(); ...; meter.figures(requests).

    Divided by the requests answered, it is what one request costs each process; the whole machine's busy time per
    request bounds the rate this machine can reach (every process of the machine is in it, the load included)."""

    def __init__(self, stack_pid: int | None):
        self.stack_pid = stack_pid
        self.by_process: dict[str, float] = {}
        self.machine_busy = self.window = 0.0
        self.before: dict[int, tuple[str, float]] = {}
        self.started = (0.0, 0.0, 0.0)

    def start(self) -> None:
        self.before = {}
        for pid, name in stack_processes(self.stack_pid):
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self.before[pid] = (name, seconds)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.started = (time.monotonic(), machine_seconds()[0], children.ru_utime + children.ru_stime)

    def stop(self) -> None:
        began, busy, load = self.started
        for pid, (name, seconds) in self.before.items():
            after = cpu_seconds(pid)
            if after is not None:
                self.by_process[name] = self.by_process.get(name, 0.0) + after - seconds
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.by_process[LOAD_GENERATOR] = (self.by_process.get(LOAD_GENERATOR, 0.0)
                                           + children.ru_utime + children.ru_stime - load)
        self.machine_busy += machine_seconds()[0] - busy
        self.window += time.monotonic() - began

    def figures(self, requests: int) -> dict:
        """Per process: its share of one core and its CPU milliseconds per request; the same for the whole machine,
        and the rate at which it would be busy on every core."""
        def per(seconds: float) -> dict:
            return {"core_pct": round(100 * seconds / self.window, 1) if self.window else None,
                    "ms_per_request": round(1000 * seconds / requests, 3) if requests else None}
        machine_ms = 1000 * self.machine_busy / requests if requests else None
        cores = os.cpu_count() or 1
        return {"window_s": round(self.window, 1), "requests": requests, "cores": cores,
                "by_process": {name: per(seconds) for name, seconds in
                               sorted(self.by_process.items(), key=lambda item: -item[1])},
                "machine": per(self.machine_busy),
                "machine_busy_pct": round(100 * self.machine_busy / (self.window * cores), 1) if self.window else None,
                "rate_at_full_machine": round(cores * 1000 / machine_ms, 1) if machine_ms else None}


def describe_cpu(figures: dict) -> str:
    if not figures.get("requests"):
        return "CPU per request: nothing answered"
    top = ", ".join(f"{name} {f['ms_per_request']} ms ({f['core_pct']}%)"
                    for name, f in figures["by_process"].items())
    return (f"CPU per request: {top}; the whole machine {figures['machine']['ms_per_request']} ms, busy "
            f"{figures['machine_busy_pct']}% of {figures['cores']} cores (at most ~{figures['rate_at_full_machine']}/s "
            "at this cost)")
