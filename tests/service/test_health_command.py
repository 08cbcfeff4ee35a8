"""`taskservice health`: the probe a sidecar deployment uses."""

from __future__ import annotations

import asyncio
import sys

from taskservice.testing import running_service


async def health(target: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskservice",
        "health",
        "--service",
        target,
        "--timeout-ms",
        "3000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode().strip()


async def test_health_exits_0_and_says_serving_for_a_running_service() -> None:
    async with running_service() as service:
        code, out = await health(service.target)
    assert code == 0
    assert out == f"{service.target}: SERVING"


async def test_health_exits_1_when_nothing_answers() -> None:
    async with running_service() as service:
        target = service.target
    code, out = await health(target)  # stopped: the port is closed now
    assert code == 1
    assert out.startswith(f"{target}: UNAVAILABLE")
