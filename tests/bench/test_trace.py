"""bench.trace: the stage table from merged marks, and one tiny traced run end to end (every
stage it names is marked in the process it belongs to; no duration is judged)."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from bench import trace

from ..readme.readme_blocks import fenced, section

pytestmark = pytest.mark.timeout(300)


def _hook() -> ModuleType:
    """The hook module itself, loaded under another name: without BENCH_TRACE_DIR it only defines."""
    spec = importlib.util.spec_from_file_location("bench_tracehook", trace.HOOK / "sitecustomize.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_marks_split_into_tasks_of_one_server_each(tmp_path: Path) -> None:
    (tmp_path / "10.txt").write_text("1.000 c.start\n1.004 c.end\n2.000 c.start\n2.010 c.end\n3.0 c.start\n")
    (tmp_path / "20.txt").write_text("1.001 s.recv:tools/call\n")
    (tmp_path / "30.txt").write_text("2.002 s.recv:tools/call\n2.003 w.answer\n")
    (tmp_path / "40.txt").write_text("2.004 s.recv:tools/call\n")  # a second server in task 2
    events = trace.read_marks(tmp_path, {20: "sdk", 30: "ours", 40: "sdk"})
    assert [stage for _, stage, _ in events][:3] == ["c.start", "s.recv:tools/call", "c.end"]
    tasks = trace.split_tasks(events)
    assert list(tasks) == ["sdk"]  # task 2 mixes servers, task 3 never ended
    assert [stage for _, stage in tasks["sdk"][0]] == ["c.start", "s.recv:tools/call", "c.end"]


def test_stage_table_takes_medians_of_first_marks_in_order() -> None:
    tasks = [
        [(0.0, "c.start"), (0.001, "s.a"), (0.003, "s.b"), (0.004, "s.a"), (0.005, "c.end")],
        [(1.0, "c.start"), (1.002, "s.a"), (1.004, "s.b"), (1.006, "c.end")],
        [(2.0, "c.start"), (2.003, "s.a"), (2.008, "c.end")],
    ]
    rows = trace.stage_table(tasks)
    assert [row["stage"] for row in rows] == ["c.start", "s.a", "s.b", "c.end"]
    at = {row["stage"]: row for row in rows}
    assert at["s.a"]["at_ms"] == pytest.approx(2.0)  # 1, 2, 3 ms: the second s.a of task 1 not counted
    assert at["s.b"]["at_ms"] == pytest.approx(3.5)
    assert at["s.b"]["tasks"] == 2
    assert at["s.b"]["step_ms"] == pytest.approx(1.5)
    assert at["c.end"]["at_ms"] == pytest.approx(6.0)


def test_loop_steps_sum_per_task_by_kind_within_the_window(tmp_path: Path) -> None:
    path = tmp_path / "10.loop"
    path.write_text(
        "0.5 900 900 task:startup\n"  # before the first task: not counted
        "1.0 100 50 task:A>x.py:f:1\n"
        "1.1 300 300 partial\n"
        "1.2 200 150 task:A>x.py:f:1\n"
        "broken line\n"
    )
    steps = trace.read_steps(path)
    assert len(steps) == 4
    summary = trace.step_summary(steps, tasks=2, window=(1.0, 2.0), top=1)
    assert summary["steps_per_task"] == pytest.approx(1.5)
    assert summary["cpu_ms_per_task"] == pytest.approx(0.25)
    assert summary["cpu_share"] == pytest.approx(500 / 600)
    assert summary["kinds"] == [
        {"step": "partial", "cpu_ms_per_task": pytest.approx(0.15), "steps_per_task": 0.5, "cpu_share": 1.0}
    ]


async def test_a_loop_step_is_named_by_its_task_and_where_it_waited() -> None:
    import asyncio

    name = _hook()._step_name

    async def inner() -> None:
        await asyncio.sleep(10)

    async def outer() -> None:
        await inner()

    task = asyncio.ensure_future(outer())
    await asyncio.sleep(0)
    step = name(task.cancel)  # a callback bound to the task, as its wake-ups are
    assert step.startswith("task:test_a_loop_step_is_named_by_its_task_and_where_it_waited.<locals>.outer>")
    assert ">tasks.py:sleep:" in step  # the innermost coroutine awaited, asyncio's own
    task.cancel()
    assert name(len) == "len"


def test_sent_chunks_are_told_apart() -> None:
    stage = _hook()._http_body_stage
    notify = b'data: {"method":"notifications/tasks/status","params":{"status":"working"}}'
    assert stage(notify) == "notify:working"
    assert stage(b'data: {"method":"elicitation/create","params":{}}') == "ask"
    assert stage(b'{"result":{"content":[]}}') == "result"
    assert stage(b'{"result":{"task":{"taskId":"t"}}}') == "created"
    assert stage(b"") is None


def test_a_tiny_traced_run_marks_every_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trace.json"
    work = tmp_path / "w"
    args = ["--rounds", "3", "--warmup", "1", "--json", str(out), "--work", str(work), "--loop-steps"]
    code = trace.main(args)
    assert code == 0
    data = json.loads(out.read_text())
    stages = data["stages"]
    # --loop-steps: every process timed its loop's steps, the three servers' summed per task.
    assert len(list((work / "marks").glob("*.loop"))) == 4  # and the client's
    assert set(data["loops"]) == {"ours: service", "ours: worker", "sdk: server"}
    for summary in data["loops"].values():
        assert summary["tasks"] == 4
        assert summary["steps_per_task"] > 0
        assert 0 < summary["cpu_share"] <= 1.01  # thread CPU within the step's wall time
        assert summary["kinds"]
    assert set(stages) == {"ours", "sdk"}
    ours = [row["stage"] for row in stages["ours"]]
    sdk = [row["stage"] for row in stages["sdk"]]
    assert ours[0] == sdk[0] == "c.start"
    assert ours[-1] == sdk[-1] == "c.end"
    # The client, the bridge and its service, and the worker: each process's marks arrived.
    marked_by_ours = ("c.ask", "s.recv:tools/call", "s.send:ask", "s.answer", "s.complete", "w.answer")
    for stage in (*marked_by_ours, "w.complete"):
        assert stage in ours, stage
    for stage in ("c.ask", "s.recv:tasks/result", "s.send:result"):
        assert stage in sdk, stage
    # The status notifications, from the session's send to their SSE event: the bridge's three
    # (its follower's stream too), the SDK server's terminal one.
    for status in ("input_required", "working", "completed"):
        for stage in (f"s.notify:{status}.start", f"s.notify:{status}.queued", f"s.sse:notify:{status}"):
            assert stage in ours, stage
    assert {"s.follow.start", "s.follow.yield", "s.sse:ask", "s.sse:result"} <= set(ours)
    # Each leg of the worker's: the answer handled and down the Elicit stream (its second item),
    # the outcome written up ReportOutcomes and read off it.
    assert {"s.answer.done", "s.elicit.yield2", "w.report", "s.report"} <= set(ours)
    assert {"s.notify:completed.start", "s.sse:notify:completed", "s.sse:result"} <= set(sdk)
    assert "s.notify:working.start" not in sdk
    assert not {"s.answer", "w.answer"} & set(sdk)
    assert all(row["tasks"] >= 1 for rows in stages.values() for row in rows)
    printed = capsys.readouterr().out
    assert "ours: " in printed
    assert "sdk: " in printed


def test_the_readme_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README's Performance section: its `bench.trace` line, run as written but for the rounds."""
    blocks = [b for b in fenced(section("Performance"), "sh") if "bench.trace" in b]
    assert len(blocks) == 1
    (line,) = [shlex.split(line, comments=True) for line in blocks[0].splitlines()]
    assert line[:3] == [".venv/bin/python", "-m", "bench.trace"]
    args = line[3:]
    rounds = args.index("--rounds")
    args[rounds + 1 : rounds + 2] = ["2", "--warmup", "0", "--work", str(tmp_path / "work")]
    assert trace.main(args) == 0
    printed = capsys.readouterr().out
    assert "ours: " in printed
    assert "s.complete" in printed
