"""bench.ab: paired whole-task latency of several checkouts. The statistics on known samples,
the naming of checkouts, and one tiny run end to end (structure only, no figure is judged)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from bench import ab, procs

from ..readme.readme_blocks import fenced, section

pytestmark = pytest.mark.timeout(300)


def test_paired_difference_is_the_median_of_the_rounds_differences() -> None:
    base = [10.0, 20.0, 30.0, 40.0, 50.0]
    other = [11.0, 19.0, 33.0, 41.0, 52.0]  # differences +1, -1, +3, +1, +2
    median, low, high = ab.paired_difference(base, other, resamples=200)
    assert median == 1.0
    assert -1.0 <= low <= median <= high <= 3.0
    assert ab.paired_difference(base, other, resamples=200) == (median, low, high)  # seeded
    same, low, high = ab.paired_difference(base, base, resamples=50)
    assert (same, low, high) == (0.0, 0.0, 0.0)


def test_paired_difference_needs_matching_rounds() -> None:
    with pytest.raises(ValueError, match="same number of rounds"):
        ab.paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same number of rounds"):
        ab.paired_difference([], [])


def test_checkouts_are_named_and_checked(tmp_path: Path) -> None:
    root = procs.ROOT
    assert ab.named_roots([str(root), f"before={root}"]) == {root.name: root, "before": root}
    with pytest.raises(ValueError, match="is taken"):
        ab.named_roots([f"x={root}", f"x={root}"])
    with pytest.raises(ValueError, match="is taken"):
        ab.named_roots([f"sdk={root}"])
    with pytest.raises(ValueError, match="not a checkout"):
        ab.named_roots([str(tmp_path)])


def test_a_tiny_run_reports_every_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ab.json"
    options = ["--rounds", "2", "--warmup", "0", "--json", str(out), "--work", str(tmp_path / "work")]
    code = ab.main([f"a={procs.ROOT}", f"b={procs.ROOT}", *options])
    assert code == 0
    data = json.loads(out.read_text())
    assert {name: len(taken) for name, taken in data["times_ms"].items()} == {"sdk": 2, "a": 2, "b": 2}
    rows = {row["name"]: row for row in data["rows"]}
    assert "ratio_to_sdk" not in rows["sdk"]
    assert rows["a"]["ratio_to_sdk"] > 0
    assert "diff_ms" not in rows["a"]  # the reference
    assert len(rows["b"]["diff_ms"]) == 3
    assert "from a [" in capsys.readouterr().out


def test_the_readme_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README's Performance section: its `git worktree` and `bench.ab` lines, run as written but
    for the worktree's place, its commit (this one: a shallow clone has no other) and the number
    of rounds."""
    blocks = [b for b in fenced(section("Performance"), "sh") if "bench.ab" in b]
    assert len(blocks) == 1
    lines = [shlex.split(line, comments=True) for line in blocks[0].splitlines()]
    add, run = lines
    assert add[:3] == ["git", "worktree", "add"]
    before = tmp_path / "before"
    assert len(add) == 5
    subprocess.run([*add[:3], str(before), "HEAD"], cwd=procs.ROOT, check=True, capture_output=True)
    try:
        assert run[:3] == [".venv/bin/python", "-m", "bench.ab"]
        args = [a.replace(add[3], str(before)) if a.startswith("before=") else a for a in run[3:]]
        args = [str(procs.ROOT) if a == "." else a for a in args]
        rounds = args.index("--rounds")
        args[rounds + 1 : rounds + 2] = ["2", "--warmup", "0", "--work", str(tmp_path / "work")]
        assert ab.main(args) == 0
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(before)],
            cwd=procs.ROOT,
            check=True,
            capture_output=True,
        )
    assert "from before [" in capsys.readouterr().out
