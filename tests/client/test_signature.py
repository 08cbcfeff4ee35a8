"""RemoteTaskContext has exactly the public surface of the SDK's ServerTaskContext.

Held against both the installed SDK class (`inspect.signature`) and the seeds'
reference, member by member and parameter by parameter: names, kinds,
defaults and type annotations.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import pytest
from mcp.server.experimental.task_context import ServerTaskContext
from taskservice_client import RemoteTaskContext

from .seed_reference import SeedServerTaskContext

# The one spelling in which the installed SDK (mcp 1.30) differs from its documented
# (seed) signature; the stub follows the seeds and the design.
SDK_RENAMES = {"requestedSchema": "requested_schema"}


def public_members(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def describe(cls: type, name: str, renames: dict[str, str] | None = None) -> dict[str, Any]:
    """What a caller can rely on: member kind, sync/async, each parameter, annotations."""
    renames = renames or {}
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        assert raw.fget is not None
        hints = typing.get_type_hints(raw.fget)
        return {"kind": "property", "settable": raw.fset is not None, "type": hints.get("return")}
    function: Callable[..., Any] = getattr(cls, name)
    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    return {
        "kind": "method",
        "async": inspect.iscoroutinefunction(function),
        "parameters": [
            (renames.get(p.name, p.name), p.kind, p.default, hints.get(p.name))
            for p in signature.parameters.values()
        ],
        "returns": hints.get("return"),
    }


def test_same_public_members_as_the_sdk_and_the_seeds() -> None:
    sdk = public_members(ServerTaskContext)
    assert public_members(RemoteTaskContext) == sdk
    assert public_members(SeedServerTaskContext) == sdk
    assert sdk >= {
        "task_id",
        "task",
        "is_cancelled",
        "request_cancellation",
        "update_status",
        "complete",
        "fail",
        "elicit",
        "elicit_url",
        "create_message",
        "elicit_as_task",
        "create_message_as_task",
    }


@pytest.mark.parametrize("name", sorted(public_members(ServerTaskContext)))
def test_member_matches_the_installed_sdk(name: str) -> None:
    assert describe(RemoteTaskContext, name) == describe(ServerTaskContext, name, SDK_RENAMES)


@pytest.mark.parametrize("name", sorted(public_members(SeedServerTaskContext)))
def test_member_matches_the_seed_reference(name: str) -> None:
    assert describe(RemoteTaskContext, name) == describe(SeedServerTaskContext, name)


def test_the_sdk_differs_from_its_seed_only_by_the_known_rename() -> None:
    """Guards SDK_RENAMES: if a future SDK spells `requested_schema`, this mapping goes away."""
    for name in public_members(ServerTaskContext):
        assert describe(ServerTaskContext, name, SDK_RENAMES) == describe(SeedServerTaskContext, name)
