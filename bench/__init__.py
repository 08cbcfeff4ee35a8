"""Benchmarks: the cost of going remote, each figure a ratio against a baseline of the same run.

`python -m bench` (`--quick` for the short run) runs every benchmark, prints the table
and writes the figures as JSON (see "Performance" in the README). Each benchmark is a
function of `bench.suites` that takes a `Sizes` and returns `Figure`s; servers and
clients run in processes of their own (`bench.servers`, `bench.clients`).
"""
