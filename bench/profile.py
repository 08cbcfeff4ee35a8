"""Profile the service's hot paths under a benchmark's load, with py-spy (`pip install -e .[bench]`).

    python -m bench.profile unary --store sqlite:///tmp/p.db --inflight 64
    python -m bench.profile whole

`unary` loads `taskservice serve --no-mcp` with UpdateStatus calls; `whole` loads
`taskservice serve` (bridge included) and a worker with MCP clients. py-spy samples
the server process (and for `whole` the worker too) and this prints the functions
with the most samples, inclusive and exclusive; `--out` keeps the raw stacks
(flamegraph.pl / speedscope read them).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import procs
from bench.suites import _wait_for_tools

NATIVE: list[str] = []
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    command += ["--format", "raw", "--output", str(out), "--nonblocking", *NATIVE]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarize(raw: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            exclusive[frames[-1]] += count
    lines = [f"{raw.name}: {total} samples"]
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        lines.append(f"-- top {top} {title}")
        for frame, count in counter.most_common(top):
            lines.append(f"{100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("load", choices=("unary", "whole"))
    parser.add_argument("--store", default="")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, help="directory for the raw stacks")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="taskservice-profile-"))
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    store = args.store or f"sqlite:///{work / 'profile.db'}"
    if args.load == "unary":
        with procs.service(work, store) as (proc, target, _):
            spy = record(proc.pid, args.seconds, out / "service.txt")
            time.sleep(0.5)
            client = ["unary", f"--target=service={target}", "--levels", str(args.inflight)]
            result = procs.run_client([*client, "--window", str(args.seconds), "--windows", "1"], timeout=300)
            spy.wait(timeout=60)
        print(f"load: {result}")
        print(summarize(out / "service.txt", args.top))
        return
    with (
        procs.service(work, store, mcp=True) as (proc, target, url),
        procs.worker(work, target) as worker,
    ):
        _wait_for_tools(target, {"one_step", "ask_once"})
        spies = [
            record(proc.pid, args.seconds, out / "service.txt"),
            record(worker.pid, args.seconds, out / "worker.txt"),
        ]
        time.sleep(0.5)
        client = ["mcp", f"--url=ours={url}", "--latency-n", str(int(args.seconds * 10)), "--warmup", "1"]
        client += ["--window", str(args.seconds / 2), "--windows", "1"]
        result = procs.run_client(client, timeout=300)
        for spy in spies:
            spy.wait(timeout=60)
    print(f"load: {result}")
    print(summarize(out / "service.txt", args.top))
    print(summarize(out / "worker.txt", args.top))


if __name__ == "__main__":
    main()
