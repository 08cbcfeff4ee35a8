"""`python -m bench [--quick] [--only unary,waiting,whole,scale] [--json PATH]`.

Runs the benchmarks (each server and client in a process of its own), prints a
table of figures (ours, the baseline of the same run, the ratio, the target and
whether it is met) and writes them to a JSON file. Exits 1 when a benchmark
could not run; a figure that misses its target is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import Figure, machine, table, write_json
from bench.suites import BENCHMARKS, FULL, QUICK, Env


def start_redis(work: Path) -> Any:
    """A redis-server of this run on a free loopback port, if there is one and the Redis store works."""
    from taskservice.domain.model import TaskRecord, TaskStatus
    from taskservice.redis_testing import RedisServer, RedisServerError
    from taskservice.store import open_store

    if shutil.which("redis-server") is None:
        print("bench: no redis-server on PATH: the Redis figures are left out", file=sys.stderr)
        return None
    server = RedisServer(work / "redis")
    try:
        server.start()
    except RedisServerError as exc:
        print(f"bench: redis-server did not start ({exc}): the Redis figures are left out", file=sys.stderr)
        return None

    async def check() -> None:
        store = open_store(server.url("check:"))
        try:
            await store.ping()
            record = TaskRecord("t", "o", TaskStatus.WORKING, 1, 1, 86_400_000, 1000)
            await store.insert_task(record)
            if await store.get_task("t") != record:
                raise RuntimeError("a stored task did not read back")
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except Exception as exc:
        print(
            f"bench: the Redis store does not work ({exc!r}): the Redis figures are left out", file=sys.stderr
        )
        server.stop()
        return None
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes: the whole run in under 2 minutes"
    )
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), help="where the figures go")
    parser.add_argument("--no-redis", action="store_true", help="leave the Redis store out")
    parser.add_argument("--work", type=Path, help="directory for stores and logs (default: a temporary one)")
    parser.add_argument(
        "--service-root",
        type=Path,
        help="run the service of this checkout instead (a git worktree of the commit before a change)",
    )
    args = parser.parse_args(argv)
    procs.SERVICE_ROOT = args.service_root.resolve() if args.service_root else None
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    work = args.work or Path(tempfile.mkdtemp(prefix="taskservice-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    mode = "quick" if args.quick else "full"
    print(f"bench: {mode} run on {info['nproc']} x {info['cpu']}, Python {info['python']}; work in {work}")
    began = time.monotonic()
    redis = None if args.no_redis else start_redis(work)
    env = Env(QUICK if args.quick else FULL, work, redis)
    figures: list[Figure] = []
    failed: list[str] = []
    try:
        for name in chosen:
            started = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            try:
                found = BENCHMARKS[name](env)
            except Exception:
                failed.append(name)
                print(f"bench: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            figures.extend(found)
            print(f"bench: {name} done in {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if redis is not None:
            redis.stop()
    seconds = time.monotonic() - began
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.json, figures, mode=mode, command=command, seconds=seconds)
    print()
    print(table(figures))
    print()
    print(
        f"bench: {len(figures)} figures in {seconds:.0f} s, written to {args.json}; logs in {work / 'logs'}"
    )
    if failed:
        print(f"bench: could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
