"""`python -m bench.trace [--tool ask_once] [--rounds 300]`: where a whole task's time goes.

The SDK's in-process server and `taskservice serve` (SQLite) with its worker, taken in turns
by one MCP client as bench.ab takes them (a new random order each round). Every process marks
the stages of each task with a timestamp (bench/_tracehook/sitecustomize.py: functions wrapped
as they are imported, no product code changed); the marks of one task, across the client, the
servers and the worker, merge into one timeline. For each server this prints each stage's
median time from the task's start, and the median step from the stage before it, so that a
stage that costs more here than in the SDK's server stands out. The marks cost a few
microseconds each: the totals run a little above bench.ab's.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__.split("\n")[0])
    parser.add_argument("--tool", choices=("ask_once", "one_step"), default="ask_once")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--min-tasks", type=float, default=0.5, help="hide stages marked in fewer (share)")
    parser.add_argument("--json", type=Path, help="also write the tables here")
    parser.add_argument("--work", type=Path, help="directory for stores, logs and marks (default: temporary)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup not negative")
    work = args.work or Path(tempfile.mkdtemp(prefix="taskservice-trace-"))
    logs, marks = work / "logs", work / "marks"
    logs.mkdir(parents=True, exist_ok=True)
    marks.mkdir(parents=True, exist_ok=True)
    for old in marks.glob("*.txt"):
        old.unlink()

    # Children inherit these (procs.clean_env keeps PYTHONPATH, adding the repository).
    saved = {name: os.environ.get(name) for name in ("BENCH_TRACE_DIR", "PYTHONPATH")}
    os.environ["BENCH_TRACE_DIR"] = str(marks)
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

    tables = {
        name: stage_table(tasks) for name, tasks in sorted(split_tasks(read_marks(marks, owners)).items())
    }
    print(f"{args.tool}, {args.rounds} rounds (marks in {marks})")
    for name, rows in tables.items():
        total = max((row["tasks"] for row in rows), default=0)
        print(f"\n{name}: {total} tasks; median ms after the call, and the step from the stage before")
        for row in rows:
            if row["tasks"] >= args.min_tasks * total:
                print(f"  {row['at_ms']:7.2f}  {row['step_ms']:+6.2f}  {row['stage']}")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"tool": args.tool, "rounds": args.rounds, "stages": tables}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
