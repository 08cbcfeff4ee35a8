"""`python -m bench.trace [--tool ask_once] [--rounds 300]`: where a whole task's time goes.

The SDK's in-process server and `taskservice serve` (SQLite) with its worker, taken in turns
by one MCP client as bench.ab takes them (a new random order each round). Every process marks
the stages of each task with a timestamp (bench/_tracehook/sitecustomize.py: functions wrapped
as they are imported, no product code changed); the marks of one task, across the client, the
servers and the worker, merge into one timeline. For each server this prints each stage's
median time from the task's start, and the median step from the stage before it, so that a
stage that costs more here than in the SDK's server stands out. The marks cost a few
microseconds each: the totals run a little above bench.ab's.

`--loop-steps` also times every step of each process's event loop (wall and thread CPU) and
prints, for each process, where its loop's CPU goes per task: the kinds of step that cost the
most, and how much of the steps' wall time was CPU (the rest: waiting for a core, or a
blocking call). It costs a few microseconds a step more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bench import procs
from bench.suites import _wait_for_tools

HOOK = Path(__file__).resolve().parent / "_tracehook"
START, END = "c.start", "c.end"

Event = tuple[float, str, str | None]
"""(time in seconds, stage, the server whose process marked it, or None: the client's)."""


def read_marks(directory: Path, owners: Mapping[int, str]) -> list[Event]:
    """Every process's marks in one timeline; `owners` names the server of each server pid."""
    events: list[Event] = []
    for path in directory.glob("*.txt"):
        owner = owners.get(int(path.stem))
        for line in path.read_text().splitlines():
            stamp, _, stage = line.partition(" ")
            if stage:
                events.append((float(stamp), stage, owner))
    events.sort()
    return events


def split_tasks(events: Iterable[Event]) -> dict[str, list[list[tuple[float, str]]]]:
    """The marks of each task, from START to END, grouped by the one server that served it
    (tasks whose window holds marks of two servers, or of none, are left out)."""
    tasks: dict[str, list[list[tuple[float, str]]]] = defaultdict(list)
    current: list[tuple[float, str]] | None = None
    servers: set[str] = set()
    for stamp, stage, owner in events:
        if stage == START:
            current, servers = [(stamp, stage)], set()
            continue
        if current is None:
            continue
        current.append((stamp, stage))
        if owner is not None:
            servers.add(owner)
        if stage == END:
            if len(servers) == 1:
                tasks[servers.pop()].append(current)
            current = None
    return dict(tasks)


def stage_table(tasks: list[list[tuple[float, str]]]) -> list[dict[str, Any]]:
    """Each stage's median time after START (its first mark in a task), in ms, in that order,
    with the median step from the stage before it and how many tasks marked it."""
    offsets: dict[str, list[float]] = defaultdict(list)
    for marks in tasks:
        began = marks[0][0]
        seen: set[str] = set()
        for stamp, stage in marks:
            if stage not in seen:
                seen.add(stage)
                offsets[stage].append((stamp - began) * 1e3)
    medians = sorted((statistics.median(at), stage) for stage, at in offsets.items())
    rows: list[dict[str, Any]] = []
    before = 0.0
    for at_ms, stage in medians:
        rows.append({"stage": stage, "at_ms": at_ms, "step_ms": at_ms - before, "tasks": len(offsets[stage])})
        before = at_ms
    return rows


Step = tuple[float, float, float, str]
"""(start in seconds, wall µs, thread CPU µs, what ran) of one step of an event loop."""


def read_steps(path: Path) -> list[Step]:
    steps: list[Step] = []
    for line in path.read_text().splitlines():
        fields = line.split(" ", 3)
        if len(fields) == 4:
            steps.append((float(fields[0]), float(fields[1]), float(fields[2]), fields[3]))
    return steps


def step_summary(steps: Iterable[Step], tasks: int, window: tuple[float, float], top: int) -> dict[str, Any]:
    """Per task, the loop CPU of the steps that started within `window`, by kind of step (the
    `top` most costly), and the share of the steps' wall time that was CPU."""
    began, ended = window
    wall: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for start, wall_us, cpu_us, name in steps:
        if began <= start <= ended:
            wall[name] += wall_us
            cpu[name] += cpu_us
            count[name] += 1
    per = max(tasks, 1) * 1e3
    kinds = sorted(cpu, key=lambda name: -cpu[name])[:top]
    total_wall = sum(wall.values())
    return {
        "tasks": tasks,
        "steps_per_task": sum(count.values()) / max(tasks, 1),
        "cpu_ms_per_task": sum(cpu.values()) / per,
        "cpu_share": sum(cpu.values()) / total_wall if total_wall else 0.0,
        "kinds": [
            {
                "step": name,
                "cpu_ms_per_task": cpu[name] / per,
                "steps_per_task": count[name] / max(tasks, 1),
                "cpu_share": cpu[name] / wall[name] if wall[name] else 0.0,
            }
            for name in kinds
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__.split("\n")[0])
    parser.add_argument("--tool", choices=("ask_once", "one_step"), default="ask_once")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--min-tasks", type=float, default=0.5, help="hide stages marked in fewer (share)")
    parser.add_argument("--json", type=Path, help="also write the tables here")
    parser.add_argument("--work", type=Path, help="directory for stores, logs and marks (default: temporary)")
    parser.add_argument("--loop-steps", action="store_true", help="also time every step of each event loop")
    parser.add_argument("--top", type=int, default=12, help="kinds of loop step shown per process")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup not negative")
    work = args.work or Path(tempfile.mkdtemp(prefix="taskservice-trace-"))
    logs, marks = work / "logs", work / "marks"
    logs.mkdir(parents=True, exist_ok=True)
    marks.mkdir(parents=True, exist_ok=True)
    for old in (*marks.glob("*.txt"), *marks.glob("*.loop")):
        old.unlink()

    # Children inherit these (procs.clean_env keeps PYTHONPATH, adding the repository).
    saved = {name: os.environ.get(name) for name in ("BENCH_TRACE_DIR", "BENCH_TRACE_LOOP", "PYTHONPATH")}
    os.environ["BENCH_TRACE_DIR"] = str(marks)
    if args.loop_steps:
        os.environ["BENCH_TRACE_LOOP"] = "1"
    else:
        os.environ.pop("BENCH_TRACE_LOOP", None)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK), saved["PYTHONPATH"]) if p)
    try:
        with contextlib.ExitStack() as stack:
            sdk = procs.spawn_bench_server(logs, "sdk")
            stack.callback(sdk.stop)
            serve = procs.spawn_service(logs, f"sqlite:///{work / 'trace.db'}", mcp=True)
            stack.callback(serve.stop)
            target, url = procs.service_address(serve, mcp=True)
            worker = stack.enter_context(procs.worker(logs, target))
            _wait_for_tools(target, {"one_step", "ask_once"})
            urls = {"ours": url, "sdk": procs.bench_server_address(sdk)}
            owners = {serve.pid: "ours", worker.pid: "ours", sdk.pid: "sdk"}
            processes = {serve.pid: "ours: service", worker.pid: "ours: worker", sdk.pid: "sdk: server"}
            client = [
                "paired",
                "--tool",
                args.tool,
                "--rounds",
                str(args.rounds),
                "--warmup",
                str(args.warmup),
            ]
            client += [f"--url={name}={address}" for name, address in urls.items()]
            budget = (args.rounds + args.warmup) * len(urls) * 0.5
            procs.run_client(client, timeout=120 + budget, logs=logs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    events = read_marks(marks, owners)
    split = split_tasks(events)
    tables = {name: stage_table(tasks) for name, tasks in sorted(split.items())}
    loops: dict[str, dict[str, Any]] = {}
    if args.loop_steps:
        starts = [stamp for stamp, stage, _ in events if stage == START]
        ends = [stamp for stamp, stage, _ in events if stage == END]
        window = (min(starts, default=0.0), max(ends, default=0.0))
        for pid, name in processes.items():
            path = marks / f"{pid}.loop"
            tasks = len(split.get(name.split(":")[0], []))
            if path.exists():
                loops[name] = step_summary(read_steps(path), tasks, window, args.top)
    print(f"{args.tool}, {args.rounds} rounds (marks in {marks})")
    for name, rows in tables.items():
        total = max((row["tasks"] for row in rows), default=0)
        print(f"\n{name}: {total} tasks; median ms after the call, and the step from the stage before")
        for row in rows:
            if row["tasks"] >= args.min_tasks * total:
                print(f"  {row['at_ms']:7.2f}  {row['step_ms']:+6.2f}  {row['stage']}")
    for name, summary in loops.items():
        print(
            f"\n{name} loop: {summary['cpu_ms_per_task']:.2f} ms CPU a task in"
            f" {summary['steps_per_task']:.0f} steps, {100 * summary['cpu_share']:.0f}% of their wall time;"
            " per task, by kind of step (CPU ms, steps, CPU share):"
        )
        for kind in summary["kinds"]:
            print(
                f"  {kind['cpu_ms_per_task']:6.2f}  {kind['steps_per_task']:5.1f}"
                f"  {100 * kind['cpu_share']:3.0f}%  {kind['step'][:110]}"
            )
    if args.json is not None:
        data: dict[str, Any] = {"tool": args.tool, "rounds": args.rounds, "stages": tables}
        if loops:
            data["loops"] = loops
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
