"""The requirement mapping of the conformance suite, checked both ways."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path

from .requirements import REQUIREMENTS, requirements_of

HERE = Path(__file__).resolve().parent

ID = re.compile(
    r"^(spec:\d{4}-\d{2}-\d{2}/[a-z]+(/[a-z_-]+)*#[a-z0-9-]+(/[a-z0-9-]+)?"
    r"|design:[a-z0-9-]+"
    r"|readme:[a-z0-9-]+)$"
)
# Requirements whose tests need not run over both transports (a stdio bridge stops with its client).
ONE_TRANSPORT = {
    "readme:connect-an-mcp-client",
    "spec:2025-11-25/basic/transports#streamable-http",
    "design:stop-answers-waiting-requests",
}


def suite_tests() -> dict[str, Callable[..., object]]:
    """Every test function of the suite (but this module's, which check the suite), by `file::name`."""
    tests: dict[str, Callable[..., object]] = {}
    for path in sorted(HERE.glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        module = importlib.import_module(f"{__package__}.{path.stem}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test") and function.__module__ == module.__name__:
                tests[f"{path.name}::{name}"] = function
    return tests


def test_requirement_ids_are_well_formed() -> None:
    assert REQUIREMENTS
    for rid, description in REQUIREMENTS.items():
        assert ID.match(rid), f"malformed requirement id {rid!r}"
        assert description.strip(), f"{rid} has no description"


def test_every_case_names_known_requirements_and_every_requirement_is_covered() -> None:
    tests = suite_tests()
    assert len(tests) > 20
    unnamed = [test for test, function in tests.items() if not requirements_of(function)]
    unknown = {
        test: [rid for rid in requirements_of(function) if rid not in REQUIREMENTS]
        for test, function in tests.items()
    }
    covered = {rid for function in tests.values() for rid in requirements_of(function)}
    over_both = {
        rid
        for function in tests.values()
        # the fixtures parametrized by transport
        if {"mcp", "transport"} & set(inspect.signature(function).parameters)
        for rid in requirements_of(function)
    }
    assert unnamed == [], "test cases that name no requirement"
    assert {test: ids for test, ids in unknown.items() if ids} == {}, "requirements missing from REQUIREMENTS"
    assert sorted(set(REQUIREMENTS) - covered) == [], "requirements no test covers"
    assert sorted(set(REQUIREMENTS) - over_both - ONE_TRANSPORT) == [], (
        "requirements tested over one transport"
    )


def test_requirements_of_reads_the_marks() -> None:
    from .requirements import requirement

    @requirement("design:a", "design:b")
    def case() -> None: ...

    assert requirements_of(case) == ["design:a", "design:b"]
