"""Peak resident set (VmHWM) of the services and engines of the stack under test."""
from __future__ import annotations

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


def peak_rss(stack_pid: int | None) -> dict[str, float]:
    """MB per process name: the stack's own descendants, or (attached) every release binary running here."""
    if stack_pid is not None:
        pids = descendants(stack_pid)
    else:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    peaks: dict[str, float] = {}
    for pid in pids:
        name = name_of(pid)
        if name in SERVICES and stack_pid is None:
            try:
                if "/release/" not in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace"):
                    continue
            except OSError:
                continue
        mb = vm_hwm_mb(pid) if name else None
        if mb is not None:
            peaks[name] = max(peaks.get(name, 0.0), mb)
    return {name: round(mb, 1) for name, mb in sorted(peaks.items())}
