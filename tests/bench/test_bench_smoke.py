"""The benchmarks still run: each benchmark function with the smallest sizes (bench.suites.SMOKE).

Only the structure is checked (every figure there, ratios positive, the table and the
JSON written); no figure is held to a target or a time: those are `python -m bench`'s.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from taskservice_client._client import Metadata

from bench import procs, report, suites

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> suites.Env:
    return suites.Env(suites.SMOKE, tmp_path_factory.mktemp("bench"))


def check(figures: list[report.Figure], benchmark: str, names: list[str]) -> None:
    assert [f.name for f in figures] == names
    for figure in figures:
        assert figure.benchmark == benchmark
        assert figure.value > 0, figure
        assert figure.baseline > 0, figure
        assert math.isfinite(figure.ratio), figure
        assert figure.ratio > 0, figure
        # A verdict exactly where there is a target (None only for an info figure).
        assert (figure.passed is None) == (figure.target.direction == "info"), figure
        assert json.loads(json.dumps(figure.to_json()))["passed"] == figure.passed


def test_unary(env: suites.Env) -> None:
    figures = suites.unary(env)
    check(
        figures,
        "unary",
        [
            "UpdateStatus sqlite, 1 in flight",
            "UpdateStatus sqlite, 4 in flight",
            "UpdateStatus sqlite, worker token, 1 in flight",
            "UpdateStatus sqlite, worker token, 4 in flight",
        ],
    )
    assert [f.target for f in figures] == [suites.UNARY_TARGET] * 2 + [report.INFO] * 2
    assert figures[0].detail["server_cpu_us_per_call"] > 0
    # Each server ran as two processes (SMOKE's unary_replicas), one window each, pooled.
    ours = figures[0].detail["ours"]
    assert [len(each) for each in ours["windows"]] == [1, 1]
    assert len(ours["p50_us"]) == 2
    assert ours["calls_per_s"] == pytest.approx(sum(w[0] for w in ours["windows"]) / 2)


def test_pooled_takes_the_median_of_every_process_window() -> None:
    def replica(windows: list[int], calls: int) -> dict[str, Any]:
        level = {"calls_per_s": 0.0, "best_calls_per_s": 0.0, "windows": windows, "p50_us": 100.0}
        return {"16": level, "total_calls": calls}

    pooled = suites._pooled(  # pyright: ignore[reportPrivateUsage]
        [replica([100, 400, 500], 1000), replica([200, 300], 3000)], [0.002, 0.006]
    )
    assert pooled["16"]["calls_per_s"] == 300  # of 100, 200, 300, 400, 500
    assert pooled["16"]["best_calls_per_s"] == 500
    assert pooled["16"]["windows"] == [[100, 400, 500], [200, 300]]
    assert pooled["cpu_us_per_call"] == pytest.approx(2.0)  # 8 ms over 4,000 calls
    assert pooled["total_calls"] == 4000


def test_waiting(env: suites.Env) -> None:
    figures = suites.waiting(env)
    check(figures, "waiting", ["memory per waiting task, sqlite (20 tasks)"])
    detail = figures[0].detail
    assert detail["ours"]["held_kib"] >= detail["ours"]["before_kib"] > 0


def test_whole(env: suites.Env) -> None:
    figures = suites.whole(env)
    check(
        figures,
        "whole",
        [
            "median latency, one-step task",
            "median latency, task with one elicitation",
            "median latency, task with one elicitation, same notifications",
            "throughput, 2 concurrent clients",
        ],
    )


def test_scale(env: suites.Env) -> None:
    figures = suites.scale(env)
    check(
        figures,
        "scale",
        ["GetTask sqlite, 300 vs 50 tasks", "tasks/list page (50) sqlite, 300 vs 50 tasks"],
    )
    assert figures[1].detail["large"]["page_len"] == 50


def test_table_and_json(tmp_path: Path) -> None:
    figures = [
        report.Figure("unary", "a", 900.0, 1000.0, "calls/s", suites.UNARY_TARGET, "echo"),
        report.Figure("waiting", "b", 30.0, 25.0, "KiB", suites.WAITING_TARGET, "bare"),
        report.Figure("waiting", "c", 45.0, 40.0, "KiB", suites.WAITING_TARGET, "bare"),
        report.Figure("unary", "d", 1.0, 2.0, "calls/s", report.INFO, "echo"),
    ]
    assert [f.passed for f in figures] == [True, True, False, None]
    lines = report.table(figures).splitlines()
    assert lines[0].split("|")[1].strip() == "figure"
    assert len(lines) == 2 + len(figures)
    assert "| 0.90x " in lines[2]
    assert lines[2].rstrip(" |").endswith("pass")
    assert lines[4].rstrip(" |").endswith("FAIL")
    assert lines[5].rstrip(" |").endswith("info")
    out = tmp_path / "r.json"
    report.write_json(out, figures, mode="quick", command="python -m bench --quick", seconds=1.0)
    data = json.loads(out.read_text())
    assert data["machine"]["nproc"] >= 1
    assert [f["figure"] for f in data["figures"]] == ["a", "b", "c", "d"]
    assert data["figures"][0]["ratio"] == pytest.approx(0.9)


def test_table_gives_more_decimals_where_two_would_cross_the_target() -> None:
    def ratio_cell(value: float, target: report.Target) -> str:
        figure = report.Figure("unary", "a", value, 1000.0, "calls/s", target, "echo")
        return report.table([figure]).splitlines()[2].split("|")[4].strip()

    assert ratio_cell(795.2, suites.UNARY_TARGET) == "0.795x"  # fails: not "0.80x"
    assert ratio_cell(799.9, suites.UNARY_TARGET) == "0.7999x"  # not "0.800x" either
    assert ratio_cell(800.0, suites.UNARY_TARGET) == "0.80x"
    assert ratio_cell(1204.0, report.Target("max", 1.2)) == "1.204x"
    assert ratio_cell(794.0, suites.UNARY_TARGET) == "0.79x"
    assert ratio_cell(795.2, report.INFO) == "0.80x"


def test_service_root_runs_the_other_checkouts_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--service-root DIR`: the service processes import DIR's `taskservice`, not this checkout's."""
    other = tmp_path / "other"
    shutil.copytree(procs.ROOT / "taskservice", other / "taskservice")
    (other / "taskservice" / "__main__.py").write_text(
        "import taskservice\nprint('listening from', taskservice.__file__, flush=True)\n"
    )
    monkeypatch.setattr(procs, "SERVICE_ROOT", other)
    proc = procs.spawn_service(tmp_path, "memory://")
    try:
        found = proc.wait_for(r"listening from (\S+)", timeout=60).group(1)
    finally:
        proc.stop()
    assert Path(found).resolve() == (other / "taskservice" / "__init__.py").resolve()


def test_a_service_root_without_the_service_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procs, "SERVICE_ROOT", tmp_path)
    with pytest.raises(procs.ProcessFailed, match="would import"):
        procs.spawn_service(tmp_path, "memory://")


def test_unary_takes_the_targets_in_a_new_order_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed rotation showed in the figures (each target's window follows the same one):
    every round is drawn anew, and every target still gets one window a round."""
    from bench import clients

    class Channel:
        def __init__(self, target: str) -> None:
            self.target = target

        async def close(self, grace: float | None) -> None:
            return None

    served: list[str] = []

    async def create_tasks(stub: Channel, count: int, metadata: Metadata) -> list[str]:
        return [f"{stub.target}-{i}" for i in range(count)]

    async def window(
        stub: Channel, task_ids: list[str], seconds: float, metadata: Metadata
    ) -> tuple[int, float, list[float]]:
        served.append(stub.target)
        return 10, 1.0, [0.001] * 10

    monkeypatch.setattr(clients, "channel", Channel)
    monkeypatch.setattr(clients, "task_stub", lambda ch: ch)
    monkeypatch.setattr(clients, "create_tasks", create_tasks)
    monkeypatch.setattr(clients, "_window", window)
    targets = {name: name for name in ("echo", "memory", "sqlite", "redis")}
    out = asyncio.run(clients.unary(targets, [1, 16], 0.1, 9))
    rounds = [tuple(served[i : i + 4]) for i in range(0, len(served), 4)]
    assert len(rounds) == 2 * 10
    assert all(sorted(r) == sorted(targets) for r in rounds)
    assert len(set(rounds)) > 5  # 20 draws of 24 orders
    assert out["sqlite"]["16"]["calls_per_s"] == 10.0
    assert out["sqlite"]["total_calls"] == 16 + 2 * 10 * 10
