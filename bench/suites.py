"""The four benchmarks. Each takes the run's `Env` and returns its `Figure`s.

Every figure is ours against a baseline measured in the same run, in the same
process layout: a server process (ours or the baseline's) and a client process
(the same client code for both), started by the runner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2, bridge_service_pb2_grpc

from bench import bulk, clients, procs
from bench.report import INFO, Figure, Target

UNARY_TARGET = Target("min", 0.8)
WAITING_TARGET = Target("max", 1.5, value_max=40.0)
LATENCY_TARGET = Target("max", 1.2)
THROUGHPUT_TARGET = Target("min", 0.9)
FLAT_TARGET = Target("max", 1.25)


@dataclasses.dataclass(frozen=True)
class Sizes:
    unary_levels: tuple[int, ...] = (1, 16, 64)
    unary_window: float = 0.5  # seconds of each turn
    unary_windows: int = 4  # turns of each server process at each level, after one to warm up
    # Processes of each server, their windows pooled: two processes of the same code differ
    # by about 5% in calls/s, which one process per server put whole into the ratio.
    unary_replicas: int = 3
    # "sqlite+token": SQLite, the service wanting a worker token and every call carrying it.
    unary_stores: tuple[str, ...] = ("memory", "sqlite", "sqlite+token", "redis")
    waiting_count: int = 10_000
    waiting_channels: int = 10
    waiting_warm: int = 64  # streams opened and closed before the first reading
    waiting_settle: float = 0.3  # seconds between a phase's end and the reading of memory
    waiting_stores: tuple[str, ...] = ("sqlite", "memory")
    # Whole tasks: a ratio here moved by ±0.05x from run to run with 60 tasks and 6 windows.
    whole_latency_n: int = 200
    whole_warmup: int = 5
    whole_clients: int = 8
    whole_window: float = 3.0
    whole_windows: int = 10
    scale_small: int = 1_000
    scale_large: int = 1_000_000
    scale_calls: int = 400
    scale_stores: tuple[str, ...] = ("sqlite", "redis")


FULL = Sizes()
QUICK = Sizes(
    unary_window=0.25,
    unary_windows=3,
    unary_replicas=2,
    waiting_count=2_000,
    waiting_channels=4,
    waiting_stores=("sqlite",),
    whole_latency_n=20,
    whole_warmup=3,
    whole_window=1.5,
    whole_windows=3,
    scale_large=100_000,
    scale_calls=150,
)
# For the smoke test: every code path, tiny sizes, no figure means anything.
SMOKE = Sizes(
    unary_levels=(1, 4),
    unary_window=0.05,
    unary_windows=1,
    unary_replicas=2,
    unary_stores=("sqlite", "sqlite+token"),
    waiting_count=20,
    waiting_channels=2,
    waiting_warm=2,
    waiting_settle=0.0,
    waiting_stores=("sqlite",),
    whole_latency_n=1,
    whole_warmup=0,
    whole_clients=2,
    whole_window=0.3,
    whole_windows=1,
    scale_small=50,
    scale_large=300,
    scale_calls=5,
    scale_stores=("sqlite",),
)


@dataclasses.dataclass
class Env:
    """What one run shares: its sizes, a work directory for logs and stores, and Redis if there is one."""

    sizes: Sizes
    work: Path
    redis: Any = None  # a taskservice.redis_testing.RedisServer, started, or None
    _prefixes: int = 0

    @property
    def logs(self) -> Path:
        path = self.work / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def store_url(self, kind: str, name: str) -> str:
        if kind == "memory":
            return "memory://"
        if kind == "sqlite":
            path = self.work / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        if kind == "redis" and self.redis is not None:
            self._prefixes += 1
            return str(self.redis.url(f"b{self._prefixes}:"))
        raise ValueError(f"no {kind} store in this run")

    def stores(self, *kinds: str) -> list[str]:
        return [k for k in kinds if k != "redis" or self.redis is not None]


# ------------------------------------------------------------------------ unary


UNARY_TOKEN = "bench-worker-token-0123456789"
UNARY_LABELS = {"sqlite+token": "sqlite, worker token"}


def unary(env: Env) -> list[Figure]:
    """UpdateStatus calls/s through the service against the bare echo server, at each number in flight.

    Every server runs at once, idle but for the one under load; one client process takes
    them in turns, a short window each, many times over (see bench.clients.unary). Each
    server runs as `unary_replicas` processes, whose windows are pooled (`_pooled`).
    """
    s = env.sizes
    kinds = env.stores(*s.unary_stores)
    replicas = range(s.unary_replicas)
    with contextlib.ExitStack() as stack:
        # Started together, then waited for: each takes a while to import.
        procs_by_name: dict[str, procs.Process] = {}
        for i in replicas:
            procs_by_name[f"echo#{i}"] = procs.spawn_bench_server(env.logs, "echo", name=f"baseline-echo-{i}")
            stack.callback(procs_by_name[f"echo#{i}"].stop)
        tokens: dict[str, str] = {}
        for kind in kinds:
            store, _, option = kind.partition("+")
            extra = ["--worker-token", UNARY_TOKEN] if option == "token" else []
            for i in replicas:
                url = env.store_url(store, f"unary-{kind}-{i}")
                name = f"{kind}#{i}"
                procs_by_name[name] = procs.spawn_service(
                    env.logs, url, name=f"serve-{kind.replace('+', '-')}-{i}", extra=extra
                )
                stack.callback(procs_by_name[name].stop)
                if extra:
                    tokens[name] = UNARY_TOKEN
        targets = {
            name: procs.bench_server_address(proc)
            if name.startswith("echo#")
            else procs.service_address(proc)[0]
            for name, proc in procs_by_name.items()
        }
        cpu = {name: procs.cpu_seconds(proc.pid) for name, proc in procs_by_name.items()}
        args = ["unary", "--levels", ",".join(str(n) for n in s.unary_levels)]
        args += ["--window", str(s.unary_window), "--windows", str(s.unary_windows)]
        args += [f"--target={name}={target}" for name, target in targets.items()]
        args += [f"--token={name}={token}" for name, token in tokens.items()]
        budget = len(targets) * len(s.unary_levels) * (s.unary_windows + 1) * (s.unary_window + 0.2)
        result: dict[str, dict[str, Any]] = procs.run_client(args, timeout=120 + 2 * budget, logs=env.logs)
        # The server's CPU per call, all levels together: what the machine's other work does not change.
        used = {name: procs.cpu_seconds(proc.pid) - cpu[name] for name, proc in procs_by_name.items()}
    pooled = {
        kind: _pooled([result[f"{kind}#{i}"] for i in replicas], [used[f"{kind}#{i}"] for i in replicas])
        for kind in ("echo", *kinds)
    }
    figures: list[Figure] = []
    for kind in kinds:
        for level in s.unary_levels:
            mine, base = pooled[kind][str(level)], pooled["echo"][str(level)]
            figures.append(
                Figure(
                    "unary",
                    f"UpdateStatus {UNARY_LABELS.get(kind, kind)}, {level} in flight",
                    mine["calls_per_s"],
                    base["calls_per_s"],
                    "calls/s",
                    UNARY_TARGET if kind == "sqlite" else INFO,
                    "grpc.aio echo",
                    {
                        "ours": mine,
                        "baseline": base,
                        "server_cpu_us_per_call": pooled[kind]["cpu_us_per_call"],
                        "baseline_server_cpu_us_per_call": pooled["echo"]["cpu_us_per_call"],
                    },
                )
            )
    return figures


def _pooled(replicas: list[dict[str, Any]], cpu_seconds: list[float]) -> dict[str, Any]:
    """One server's figures from its processes' (bench.clients.unary's output for each): at each
    level the median of all their windows, the best window, each process's windows and median
    latency; the CPU per call over all of them."""
    out: dict[str, Any] = {
        "cpu_us_per_call": sum(cpu_seconds) / sum(r["total_calls"] for r in replicas) * 1e6,
        "total_calls": sum(r["total_calls"] for r in replicas),
    }
    for level in (key for key in replicas[0] if key != "total_calls"):
        windows = [list(r[level]["windows"]) for r in replicas]
        rates = [rate for each in windows for rate in each]
        out[level] = {
            "calls_per_s": statistics.median(rates),
            "best_calls_per_s": max(rates),
            "windows": windows,  # one list per process
            "p50_us": [r[level]["p50_us"] for r in replicas],  # each process's median latency
        }
    return out


# ---------------------------------------------------------------------- waiting


def _hold_streams(env: Env, pid: int, target: str) -> dict[str, float]:
    """Open the streams from a client process; the server's RSS at each phase (KiB)."""
    s = env.sizes
    args = ["streams", "--target", target, "--count", str(s.waiting_count)]
    args += ["--channels", str(s.waiting_channels), "--warm", str(s.waiting_warm)]
    args += ["--settle", str(s.waiting_settle)]
    client = procs.InteractiveClient(args)
    timeout = 60 + s.waiting_count / 100
    try:
        client.read(timeout)  # warm
        time.sleep(s.waiting_settle)
        before = procs.rss_kib(pid)
        client.send("go")
        client.read(timeout)  # created
        time.sleep(s.waiting_settle)
        created = procs.rss_kib(pid)
        client.send("go")
        waiting = client.read(timeout)
        held = 0
        for _ in range(4):  # the largest of a few readings: the last allocations may still land
            time.sleep(s.waiting_settle / 2)
            held = max(held, procs.rss_kib(pid))
    finally:
        client.close()
    return {
        "before_kib": before,
        "created_kib": created,
        "held_kib": held,
        "per_task_kib": (held - before) / s.waiting_count,
        "streams_only_kib": (held - created) / s.waiting_count,
        "open_s": waiting["open_s"],
    }


def waiting(env: Env) -> list[Figure]:
    """Resident memory per task waiting in an Elicit stream, against an idle grpc.aio stream."""
    with procs.bench_server(env.logs, "echo") as (proc, target):
        bare = _hold_streams(env, proc.pid, target)
    figures: list[Figure] = []
    for kind in env.stores(*env.sizes.waiting_stores):
        with procs.service(env.logs, env.store_url(kind, "waiting")) as (proc, target, _):
            ours = _hold_streams(env, proc.pid, target)
        figures.append(
            Figure(
                "waiting",
                f"memory per waiting task, {kind} ({env.sizes.waiting_count:,} tasks)",
                ours["per_task_kib"],
                bare["per_task_kib"],
                "KiB",
                WAITING_TARGET if kind == "sqlite" else INFO,
                "idle grpc.aio stream",
                {"ours": ours, "baseline": bare},
            )
        )
    return figures


# ------------------------------------------------------------------------ whole


def _wait_for_tools(target: str, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = bridge_service_pb2_grpc.BridgeServiceStub(channel)
        while True:
            listed = stub.ListTools(bridge_service_pb2.ListToolsRequest(), timeout=timeout)
            if names <= {t.name for t in listed.tools}:
                return
            if time.monotonic() > deadline:
                raise procs.ProcessFailed(f"the worker's tools {sorted(names)} were not served in {timeout}s")
            time.sleep(0.05)


def whole(env: Env) -> list[Figure]:
    """Whole tasks over MCP: `taskservice serve` + a remote worker against the SDK's in-process server.

    Both run at once; one client process takes them in turns (see bench.clients.mcp).
    """
    s = env.sizes
    args = ["mcp", "--latency-n", str(s.whole_latency_n), "--clients", str(s.whole_clients)]
    args += [
        "--window",
        str(s.whole_window),
        "--windows",
        str(s.whole_windows),
        "--warmup",
        str(s.whole_warmup),
    ]
    budget = (s.whole_latency_n + s.whole_warmup) * 3 * 0.2 + (s.whole_windows + 1) * 2 * s.whole_window
    with contextlib.ExitStack() as stack:
        sdk = procs.spawn_bench_server(env.logs, "sdk")
        stack.callback(sdk.stop)
        notifying = procs.spawn_bench_server(
            env.logs, "sdk", "--notify-every-status", name="baseline-sdk-notifying"
        )
        stack.callback(notifying.stop)
        serve = procs.spawn_service(env.logs, env.store_url("sqlite", "whole"), mcp=True)
        stack.callback(serve.stop)
        target, our_url = procs.service_address(serve, mcp=True)
        stack.enter_context(procs.worker(env.logs, target))
        sdk_url = procs.bench_server_address(sdk)
        notifying_url = procs.bench_server_address(notifying)
        _wait_for_tools(target, {"one_step", "ask_once"})
        args += [f"--url=sdk={sdk_url}", f"--url=ours={our_url}", f"--latency-url=notifying={notifying_url}"]
        result: dict[str, dict[str, Any]] = procs.run_client(args, timeout=120 + 3 * budget, logs=env.logs)
    ours, base, notifying_base = result["ours"], result["sdk"], result["notifying"]
    layout = {
        "layout": "taskservice serve (SQLite) + worker process",
        "ours": ours,
        "baseline": base,
        "baseline_notifying_every_status": notifying_base,
    }
    return [
        Figure(
            "whole",
            "median latency, one-step task",
            ours["one_step_median_ms"],
            base["one_step_median_ms"],
            "ms",
            LATENCY_TARGET,
            "SDK in-process",
            layout,
        ),
        Figure(
            "whole",
            "median latency, task with one elicitation",
            ours["ask_once_median_ms"],
            base["ask_once_median_ms"],
            "ms",
            LATENCY_TARGET,
            "SDK in-process",
            layout,
        ),
        # The same task against an SDK server that sends the status notifications the bridge
        # sends (input_required and working too; the SDK's elicit sends none): what going
        # remote costs, without the cost of the two notifications issue 4 asks for.
        Figure(
            "whole",
            "median latency, task with one elicitation, same notifications",
            ours["ask_once_median_ms"],
            notifying_base["ask_once_median_ms"],
            "ms",
            INFO,
            "SDK in-process, notifying",
            layout,
        ),
        Figure(
            "whole",
            f"throughput, {s.whole_clients} concurrent clients",
            ours["tasks_per_s"],
            base["tasks_per_s"],
            "tasks/s",
            THROUGHPUT_TARGET,
            "SDK in-process",
            layout,
        ),
    ]


# ------------------------------------------------------------------------ scale


@contextlib.contextmanager
def _filled(env: Env, kind: str, count: int) -> Iterator[tuple[str, Path, float]]:
    """A store of `kind` holding `count` tasks: (URL, samples file, seconds the fill took)."""
    began = time.monotonic()
    url = env.store_url(kind, f"scale-{count}")
    # One stored task per call (warm-up included, see bench.clients.scale): no GetTask reads a
    # task an earlier call read, which the service would answer from memory.
    wanted = min(max(env.sizes.scale_calls + clients.SCALE_WARMUP, 50), count)
    if kind == "sqlite":
        found = bulk.fill_sqlite(Path(url[len("sqlite:///") :]), count, wanted)
    else:
        found = bulk.fill_redis(url, count, wanted)
    samples = env.work / f"samples-{kind}-{count}.json"
    samples.write_text(json.dumps(found))
    try:
        yield url, samples, time.monotonic() - began
    finally:
        if kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{url[len('sqlite:///') :]}{suffix}").unlink(missing_ok=True)
        else:
            bulk.clear_redis(url)


def scale(env: Env) -> list[Figure]:
    """GetTask and a tasks/list page (BridgeService.ListTasks) with many stored tasks against few.

    Both services run at once; one client process takes them in turns, call by call.
    """
    s = env.sizes
    figures: list[Figure] = []
    for kind in env.stores(*s.scale_stores):
        names = {s.scale_small: "small", s.scale_large: "large"}
        args = ["scale", "--count", str(s.scale_calls)]
        fill_s: dict[str, float] = {}
        with contextlib.ExitStack() as stack:
            started: dict[str, procs.Process] = {}
            for count, name in names.items():
                url, samples, fill_s[name] = stack.enter_context(_filled(env, kind, count))
                started[name] = procs.spawn_service(env.logs, url, name=f"serve-{kind}-{name}")
                stack.callback(started[name].stop)
                args += [f"--samples={name}={samples}"]
            for name, server in started.items():
                args += [f"--target={name}={procs.service_address(server)[0]}"]
            result: dict[str, dict[str, Any]] = procs.run_client(
                args, timeout=120 + s.scale_calls, logs=env.logs
            )
        large, small = result["large"], result["small"]
        versus = f"{s.scale_large:,} vs {s.scale_small:,} tasks"
        for key, what in (("get_task_us", "GetTask"), ("list_page_us", "tasks/list page (50)")):
            figures.append(
                Figure(
                    "scale",
                    f"{what} {kind}, {versus}",
                    large[key],
                    small[key],
                    "us",
                    FLAT_TARGET,
                    f"{s.scale_small:,} tasks",
                    {"large": large, "small": small, "fill_s": fill_s},
                )
            )
    return figures


BENCHMARKS = {"unary": unary, "waiting": waiting, "whole": whole, "scale": scale}
