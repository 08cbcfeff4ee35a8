"""The benchmark clients, each run in a process of its own: `python -m bench.clients KIND ...`.

The same client code drives ours and the baseline; each prints its figures as one
JSON line on stdout (`streams` prints one per phase and waits for a line on stdin
between phases, so that the runner can read the server's memory at each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2
from taskservice_client._client import Metadata, bearer_metadata
from taskservice_client._proto.mcptasks.v1 import (
    bridge_service_pb2,
    bridge_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)

if TYPE_CHECKING:
    from mcp import types
    from mcp.client.experimental.tasks import ExperimentalClientFeatures
    from mcp.client.session import ClientSession
    from mcp.shared.context import RequestContext

pb = task_service_pb2
OWNER = "bench:owner"
STATUS_MESSAGE = "step 2 of 3: reading the input"
ELICIT_MESSAGE = "Go on with the next step?"
ELICIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"go_on": {"type": "boolean"}},
    "required": ["go_on"],
}


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def channel(target: str, index: int = 0) -> grpc.aio.Channel:
    # A local subchannel pool: each channel gets its own connection (by default channels
    # with equal arguments share one).
    return grpc.aio.insecure_channel(
        target, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", index)]
    )


def task_stub(ch: grpc.aio.Channel) -> task_service_pb2_grpc.TaskServiceAsyncStub:
    return task_service_pb2_grpc.TaskServiceStub(ch)  # type: ignore[return-value]


def bridge_stub(ch: grpc.aio.Channel) -> bridge_service_pb2_grpc.BridgeServiceAsyncStub:
    return bridge_service_pb2_grpc.BridgeServiceStub(ch)  # type: ignore[return-value]


async def gather_limited(count: int, limit: int, make: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """make(0..count-1), at most `limit` at once, results in order."""
    results: list[Any] = [None] * count
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            results[index] = await make(index)

    await asyncio.gather(*(lane() for _ in range(min(limit, count))))
    return results


async def create_tasks(
    stub: task_service_pb2_grpc.TaskServiceAsyncStub, count: int, metadata: Metadata = None
) -> list[str]:
    async def create(_: int) -> str:
        response = await stub.CreateStoredTask(pb.CreateStoredTaskRequest(owner=OWNER), metadata=metadata)
        return response.task.task_id

    return await gather_limited(count, 32, create)


# ------------------------------------------------------------------------ unary


async def _window(
    stub: task_service_pb2_grpc.TaskServiceAsyncStub, task_ids: list[str], seconds: float, metadata: Metadata
) -> tuple[int, float, list[float]]:
    """UpdateStatus back to back on each task (one lane per task) for `seconds`: calls, time, latencies."""
    latencies: list[float] = []
    began = time.perf_counter()
    stop_at = began + seconds

    async def lane(task_id: str) -> None:
        request = pb.UpdateStatusRequest(task_id=task_id, status_message=STATUS_MESSAGE)
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            await stub.UpdateStatus(request, metadata=metadata)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(lane(t) for t in task_ids))
    return len(latencies), time.perf_counter() - began, latencies


async def unary(
    targets: dict[str, str],
    levels: list[int],
    window: float,
    windows: int,
    tokens: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """UpdateStatus calls/s on each target at each number of calls in flight; `tokens`: the
    worker token to send to the targets that want one, by name.

    The targets take turns, one short window each, `windows` times over (after one
    window each to warm up), so that other work on the machine hits every target
    alike; the median window counts. Each round takes them in a new random order: in a
    fixed one, a target's place told in its figure (of services of the same code taken
    after the echo, the first led at 16 in flight in six runs of six, by 0.003x to 0.075x).
    """
    order = random.Random("unary")
    channels = {name: channel(target) for name, target in targets.items()}
    try:
        stubs = {name: task_stub(ch) for name, ch in channels.items()}
        metadata = {name: bearer_metadata((tokens or {}).get(name)) for name in targets}
        task_ids = {
            name: await create_tasks(stub, max(levels), metadata[name]) for name, stub in stubs.items()
        }
        out: dict[str, dict[str, Any]] = {name: {} for name in targets}
        total = dict.fromkeys(targets, len(task_ids[next(iter(targets))]))  # the creations count too
        for inflight in levels:
            rates: dict[str, list[float]] = {name: [] for name in targets}
            latencies: dict[str, list[float]] = {name: [] for name in targets}
            for index in range(windows + 1):
                for name in order.sample(list(stubs), len(stubs)):
                    calls, elapsed, times = await _window(
                        stubs[name], task_ids[name][:inflight], window, metadata[name]
                    )
                    total[name] += calls
                    if index > 0:
                        rates[name].append(calls / elapsed)
                        latencies[name].extend(times)
            for name in targets:
                out[name][str(inflight)] = {
                    "calls_per_s": statistics.median(rates[name]),
                    "best_calls_per_s": max(rates[name]),
                    "windows": [round(r) for r in rates[name]],
                    "p50_us": statistics.median(latencies[name]) * 1e6,
                }
        for name in targets:
            out[name]["total_calls"] = total[name]
        return out
    finally:
        for ch in channels.values():
            await ch.close(None)


# ---------------------------------------------------------------------- streams


def _schema() -> struct_pb2.Struct:
    schema = struct_pb2.Struct()
    schema.update(ELICIT_SCHEMA)
    return schema


async def _open_streams(
    stubs: list[task_service_pb2_grpc.TaskServiceAsyncStub], task_ids: list[str]
) -> list[Any]:
    """One Elicit stream per task (spread over the channels), each read up to its pending request."""
    schema = _schema()

    async def open_one(index: int) -> Any:
        request = pb.ElicitRequest(task_id=task_ids[index], message=ELICIT_MESSAGE, requested_schema=schema)
        call = stubs[index % len(stubs)].Elicit(request)
        first = await call.read()
        if not isinstance(first, pb.ElicitResponse) or not first.HasField("pending"):
            raise RuntimeError(f"Elicit stream {index} did not report a pending request: {first}")
        return call

    return await gather_limited(len(task_ids), 64, open_one)


async def _next_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def streams(target: str, count: int, channels: int, warm: int, settle: float) -> None:
    """Phases, each ending with a JSON line, the next started by a line on stdin:
    warm (a few streams opened and closed), created (`count` tasks), waiting (one
    Elicit stream per task, held until stdin closes)."""
    chans = [channel(target, i) for i in range(channels)]
    try:
        stubs = [task_stub(ch) for ch in chans]
        warm_ids = await create_tasks(stubs[0], warm)
        for call in await _open_streams(stubs, warm_ids):
            call.cancel()
        await asyncio.sleep(settle)  # the server lets the closed streams go
        emit({"phase": "warm"})
        await _next_line()
        task_ids = await create_tasks(stubs[0], count)
        emit({"phase": "created", "tasks": len(task_ids)})
        await _next_line()
        began = time.perf_counter()
        calls = await _open_streams(stubs, task_ids)
        emit({"phase": "waiting", "streams": len(calls), "open_s": time.perf_counter() - began})
        await _next_line()  # EOF: the runner has read the memory
        for call in calls:
            call.cancel()
    finally:
        for ch in chans:
            await ch.close(None)


# ------------------------------------------------------------------------ scale


# How long a whole-benchmark task is kept after its creation. Short, so that neither server
# holds more than a few seconds of finished tasks: mcp 1.30's in-memory store scans every task
# it holds on each create and get (InMemoryTaskStore._cleanup_expired), so with a long TTL the
# baseline slowed down the longer a run went on (throughput windows falling from ~200 to ~100
# tasks/s in one run), and a figure depended on how many samples the run took.
WHOLE_TASK_TTL_MS = 5_000

SCALE_WARMUP = 20  # calls of each kind before the ones that count, in `scale`


def _samples(path: str) -> list[list[str]]:
    """[task id, page token after it] of stored tasks (bench.bulk)."""
    found: list[list[str]] = json.loads(Path(path).read_text())
    return found


async def scale(targets: dict[str, str], samples: dict[str, str], count: int) -> dict[str, dict[str, Any]]:
    """Median GetTask and ListTasks-page latency over random stored tasks, one call at a time,
    the targets taking turns call by call. Each call takes another sampled task (in a random
    order; a sample is used again only when there are fewer samples than calls): a task read
    once would be answered from the service's memory the next time, not from the store."""
    rng = random.Random(7)
    picks = {}
    for name, path in samples.items():
        found = _samples(path)
        picks[name] = rng.sample(found, len(found))
    channels = {name: channel(target) for name, target in targets.items()}
    try:
        stubs = {name: (task_stub(ch), bridge_stub(ch)) for name, ch in channels.items()}
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in targets}
        for i in range(count + SCALE_WARMUP):
            for name, (tasks, bridge) in stubs.items():
                task_id, token = picks[name][i % len(picks[name])]
                start = time.perf_counter()
                await tasks.GetTask(pb.GetTaskRequest(task_id=task_id))
                middle = time.perf_counter()
                await bridge.ListTasks(
                    bridge_service_pb2.ListTasksRequest(owner=OWNER, page_token=token, page_size=50)
                )
                end = time.perf_counter()
                if i >= SCALE_WARMUP:
                    times[name][0].append(middle - start)
                    times[name][1].append(end - middle)
        out: dict[str, dict[str, Any]] = {}
        for name, (_, bridge) in stubs.items():
            page = await bridge.ListTasks(
                bridge_service_pb2.ListTasksRequest(owner=OWNER, page_token=picks[name][0][1], page_size=50)
            )
            out[name] = {
                "get_task_us": statistics.median(times[name][0]) * 1e6,
                "list_page_us": statistics.median(times[name][1]) * 1e6,
                "page_len": len(page.tasks),
            }
        return out
    finally:
        for ch in channels.values():
            await ch.close(None)


# -------------------------------------------------------------------------- mcp


async def _accept(
    context: RequestContext[ClientSession, Any], params: types.ElicitRequestParams
) -> types.ElicitResult:
    """The bench client's answer to every elicitation."""
    from mcp.types import ElicitResult

    return ElicitResult(action="accept", content={"go_on": True})


async def _session(stack: contextlib.AsyncExitStack, url: str) -> ExperimentalClientFeatures:
    """An initialized MCP session over streamable HTTP, closed with `stack`."""
    from mcp.client.experimental.tasks import ExperimentalClientFeatures
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    read, write, _ = await stack.enter_async_context(streamable_http_client(url))
    s = await stack.enter_async_context(ClientSession(read, write, elicitation_callback=_accept))
    await s.initialize()
    return ExperimentalClientFeatures(s)


async def _run_task(api: ExperimentalClientFeatures, tool: str) -> float:
    """Seconds from calling `tool` as a task to having its result."""
    from mcp.types import CallToolResult

    start = time.perf_counter()
    created = await api.call_tool_as_task(tool, {}, ttl=WHOLE_TASK_TTL_MS)
    result = await api.get_task_result(created.task.taskId, CallToolResult)
    if result.isError:
        raise RuntimeError(f"{tool} failed: {result}")
    return time.perf_counter() - start


async def _latencies(
    apis: dict[str, ExperimentalClientFeatures],
    tool: str,
    rounds: int,
    warmup: int,
    shuffle: random.Random | None = None,
) -> dict[str, list[float]]:
    """Latency of `tool` on each server, in ms, after `warmup` rounds: each round takes every
    server once, each task right after the one before, in the same order every round or, with
    `shuffle`, in a new order drawn from it."""
    times: dict[str, list[float]] = {name: [] for name in apis}
    for index in range(warmup + rounds):
        names = shuffle.sample(list(apis), len(apis)) if shuffle is not None else list(apis)
        for name in names:
            took = await _run_task(apis[name], tool)
            if index >= warmup:
                times[name].append(took * 1e3)
    return times


async def mcp(
    urls: dict[str, str],
    latency_n: int,
    clients: int,
    window: float,
    windows: int,
    warmup: int,
    latency_only: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Whole tasks through MCP on each server: median latency of each tool alone (the servers
    taking turns task by task), then tasks/s with `clients` sessions per server calling one_step
    back to back (the servers taking turns window by window; the median window counts). The
    servers of `latency_only` take their turns in the latency part only."""
    every = {**urls, **(latency_only or {})}
    out: dict[str, dict[str, Any]] = {name: {} for name in every}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with contextlib.AsyncExitStack() as stack:
            apis = {name: await _session(stack, url) for name, url in every.items()}
            for tool in ("one_step", "ask_once"):
                times = await _latencies(apis, tool, latency_n, warmup)
                for name in every:
                    out[name][f"{tool}_median_ms"] = statistics.median(times[name])

        async with contextlib.AsyncExitStack() as stack:
            pools = {name: [await _session(stack, url) for _ in range(clients)] for name, url in urls.items()}
            rates: dict[str, list[float]] = {name: [] for name in urls}
            for index in range(windows + 1):  # the first window of each warms up
                for name, pool in pools.items():
                    done = 0
                    stop_at = time.perf_counter() + window

                    async def loop(api: ExperimentalClientFeatures) -> None:
                        nonlocal done
                        while time.perf_counter() < stop_at:  # noqa: B023 (this window's)
                            await _run_task(api, "one_step")
                            done += 1

                    began = time.perf_counter()
                    await asyncio.gather(*(loop(api) for api in pool))
                    if index > 0:
                        rates[name].append(done / (time.perf_counter() - began))
            for name in urls:
                out[name]["tasks_per_s"] = statistics.median(rates[name])
                out[name]["best_tasks_per_s"] = max(rates[name])
                out[name]["windows"] = [round(r, 1) for r in rates[name]]
    return out


async def paired(urls: dict[str, str], tool: str, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Latency of `tool` on each server, in ms, round by round (bench.ab): each round takes every
    server once, in a new random order, each task right after the one before. Index i of every
    server's list is the same round, so that differences can be paired."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with contextlib.AsyncExitStack() as stack:
            apis = {name: await _session(stack, url) for name, url in urls.items()}
            return await _latencies(apis, tool, rounds, warmup, random.Random(f"paired-{tool}"))


def _named(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE arguments as a dict, in order."""
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients")
    kinds = parser.add_subparsers(dest="kind", required=True)
    p = kinds.add_parser("unary")
    p.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT, repeated")
    p.add_argument("--token", action="append", default=[], help="NAME=TOKEN: the worker token NAME wants")
    p.add_argument("--levels", default="1,16,64")
    p.add_argument("--window", type=float, default=0.5)
    p.add_argument("--windows", type=int, default=8)
    p = kinds.add_parser("streams")
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--warm", type=int, default=64)
    p.add_argument("--settle", type=float, default=0.5)
    p = kinds.add_parser("scale")
    p.add_argument("--target", action="append", required=True, help="NAME=HOST:PORT, repeated")
    p.add_argument("--samples", action="append", required=True, help="NAME=FILE, repeated")
    p.add_argument("--count", type=int, default=500)
    p = kinds.add_parser("mcp")
    p.add_argument("--url", action="append", required=True, help="NAME=URL, repeated")
    p.add_argument(
        "--latency-url", action="append", default=[], help="NAME=URL of a server timed for latency only"
    )
    p.add_argument("--latency-n", type=int, default=50)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p = kinds.add_parser("paired")
    p.add_argument("--url", action="append", required=True, help="NAME=URL, repeated")
    p.add_argument("--tool", default="ask_once")
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    if args.kind == "unary":
        levels = [int(x) for x in args.levels.split(",")]
        emit(asyncio.run(unary(_named(args.target), levels, args.window, args.windows, _named(args.token))))
    elif args.kind == "streams":
        asyncio.run(streams(args.target, args.count, args.channels, args.warm, args.settle))
    elif args.kind == "paired":
        emit(asyncio.run(paired(_named(args.url), args.tool, args.rounds, args.warmup)))
    elif args.kind == "scale":
        emit(asyncio.run(scale(_named(args.target), _named(args.samples), args.count)))
    else:
        emit(
            asyncio.run(
                mcp(
                    _named(args.url),
                    args.latency_n,
                    args.clients,
                    args.window,
                    args.windows,
                    args.warmup,
                    _named(args.latency_url),
                )
            )
        )


if __name__ == "__main__":
    main()
