"""`python -m bench.ab [--tool ask_once] [--rounds 400] [NAME=]DIR [[NAME=]DIR ...]`.

Whole-task latency of several checkouts side by side, paired round by round: for a change
too small for the whole-task figures of `python -m bench`, whose run-to-run spread is a few
percent. Each DIR is a checkout (`git worktree add /tmp/before HEAD~1`, and `.` for this
one); each gets its own `taskservice serve` (SQLite) and a worker on its own worker library.
The SDK's in-process server takes its turns too. One client process takes every server once
per round, in a new random order each round, each task right after the one before.

For each checkout it prints the median latency, its ratio to the SDK's, and the difference
from the first checkout: the median of the per-round differences, with a bootstrap 95%
interval. An interval that holds 0 says the change is within the noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.suites import _wait_for_tools

BASELINE = "sdk"
RESAMPLES = 1000


def paired_difference(
    base: Sequence[float], other: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """The median of the per-round differences `other - base`, and its bootstrap 95% interval."""
    if len(base) != len(other) or not base:
        raise ValueError("paired samples need the same number of rounds, at least one")
    diffs = [b - a for a, b in zip(base, other, strict=True)]
    draw = random.Random(seed)
    medians = sorted(statistics.median(draw.choices(diffs, k=len(diffs))) for _ in range(resamples))
    return statistics.median(diffs), medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def named_roots(items: Sequence[str]) -> dict[str, Path]:
    """NAME=DIR or DIR (named after the directory) for each item, in order; names must differ."""
    roots: dict[str, Path] = {}
    for item in items:
        name, sep, where = item.partition("=")
        root = Path(where if sep else item).resolve()
        if not sep:
            name = root.name or "root"
        if name == BASELINE or name in roots:
            raise ValueError(f"name {name!r} is taken: give it another as NAME=DIR")
        if not (root / "taskservice" / "__init__.py").is_file():
            raise ValueError(f"{root} is not a checkout of this project (no taskservice/)")
        roots[name] = root
    return roots


def report(times: dict[str, list[float]], first: str) -> list[dict[str, Any]]:
    """One row per server: median latency, ratio to the SDK's, paired difference from `first`."""
    base = statistics.median(times[BASELINE])
    rows: list[dict[str, Any]] = []
    for name, taken in times.items():
        row: dict[str, Any] = {"name": name, "median_ms": statistics.median(taken), "tasks": len(taken)}
        if name != BASELINE:
            row["ratio_to_sdk"] = row["median_ms"] / base
        if name not in (BASELINE, first):
            row["diff_ms"] = paired_difference(times[first], taken)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument(
        "roots", nargs="+", metavar="[NAME=]DIR", help="checkouts to compare; the first is the reference"
    )
    parser.add_argument("--tool", choices=("ask_once", "one_step"), default="ask_once")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the rows and every latency here")
    parser.add_argument("--work", type=Path, help="directory for stores and logs (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup not negative")
    try:
        roots = named_roots(args.roots)
    except ValueError as exc:
        parser.error(str(exc))
    work = args.work or Path(tempfile.mkdtemp(prefix="taskservice-ab-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    with contextlib.ExitStack() as stack:
        sdk = procs.spawn_bench_server(logs, "sdk")
        stack.callback(sdk.stop)
        urls = {BASELINE: procs.bench_server_address(sdk)}
        for name, root in roots.items():
            store = work / f"{name}.db"
            serve = procs.spawn_service(logs, f"sqlite:///{store}", mcp=True, name=f"serve-{name}", root=root)
            stack.callback(serve.stop)
            target, urls[name] = procs.service_address(serve, mcp=True)
            stack.enter_context(procs.worker(logs, target, root=root, name=f"worker-{name}"))
            _wait_for_tools(target, {"one_step", "ask_once"})
        client = ["paired", "--tool", args.tool, "--rounds", str(args.rounds), "--warmup", str(args.warmup)]
        client += [f"--url={name}={url}" for name, url in urls.items()]
        budget = (args.rounds + args.warmup) * len(urls) * 0.5
        times: dict[str, list[float]] = procs.run_client(client, timeout=120 + budget, logs=logs)

    first = next(iter(roots))
    rows = report(times, first)
    print(f"{args.tool}, {args.rounds} rounds (logs in {logs})")
    for row in rows:
        line = f"{row['name']:>12}  median {row['median_ms']:7.2f} ms"
        if "ratio_to_sdk" in row:
            line += f"  {row['ratio_to_sdk']:.3f}x the SDK's"
        if "diff_ms" in row:
            median, low, high = row["diff_ms"]
            line += f"  {median:+.2f} ms from {first} [{low:+.2f}, {high:+.2f}]"
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps({"tool": args.tool, "rows": rows, "times_ms": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
