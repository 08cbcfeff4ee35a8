"""Parameters the service cannot carry as they are: a -32602 error naming them, never a code-0
error and never a changed value. Arguments travel as protobuf Structs, whose numbers are doubles:
an integer beyond ±2^53 would reach the worker changed (2^53 + 1 as 2^53)."""

from __future__ import annotations

import pytest

from .conftest import Connector, json_of, raises_mcp_error
from .requirements import requirement

BEYOND = r"beyond ±2\^53: numbers travel as doubles"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(2**53 + 1, "9007199254740993", id="2^53+1"),
        pytest.param(-(2**53) - 1, "-9007199254740993", id="-2^53-1"),
        pytest.param(12345678901234567890, "12345678901234567890", id="20-digits"),
        pytest.param(10**400, "an integer of 1329 bits", id="beyond-doubles"),
    ],
)
@requirement("design:params-are-not-changed")
async def test_an_integer_argument_beyond_2_53_is_invalid_params(
    mcp: Connector, value: int, shown: str
) -> None:
    async with mcp.connect() as client:
        with raises_mcp_error(-32602, match=rf"^tools/call: arguments\.deep\[1\]\.n is {shown}, {BEYOND}"):
            await client.call_as_task("echo_arguments", {"deep": [0, {"n": value}]})
        with raises_mcp_error(-32602, match=rf"^tools/call: arguments\.n is {shown}, {BEYOND}"):
            await client.session.call_tool("echo_arguments", {"n": value})


@requirement("design:params-are-not-changed")
async def test_integer_arguments_within_2_53_reach_the_worker_exactly(mcp: Connector) -> None:
    arguments = {"top": 2**53, "bottom": -(2**53), "small": 7, "real": 0.1}
    async with mcp.connect() as client:
        task_id = (await client.call_as_task("echo_arguments", arguments)).task.taskId
        assert json_of(await client.result(task_id)) == {"arguments": arguments}


@requirement("design:params-are-not-changed")
async def test_a_ttl_beyond_64_bits_is_invalid_params(mcp: Connector) -> None:
    async with mcp.connect() as client:
        for ttl in (2**63, 10**30):
            with raises_mcp_error(-32602, match=r"^tools/call: task\.ttl: must be below 2\^63$"):
                await client.call_as_task("echo", {"text": "hi"}, ttl=ttl)
