"""README.md's "Connect an MCP client": its worker and client, run as written against the suite's service.

The blocks come after `<!-- mcp-example: NAME -->` lines. Only addresses change:
the README's 127.0.0.1:50051 and http://127.0.0.1:8000/mcp become the test
service's.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
import pytest

from ..processes import clean_env
from .conftest import WAIT, Stack
from .requirements import requirement

README = Path(__file__).resolve().parents[2] / "README.md"
README_SERVICE = "127.0.0.1:50051"
README_MCP_URL = "http://127.0.0.1:8000/mcp"

_MARKER = re.compile(r"^<!--\s*mcp-example:\s*([\w-]+)\s*-->\s*$")


def examples(markdown: str) -> dict[str, str]:
    """The fenced block right after each `<!-- mcp-example: NAME -->` line, by NAME."""
    lines = markdown.splitlines()
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        marker = _MARKER.match(line)
        if marker is None:
            continue
        fence = lines[index + 1] if index + 1 < len(lines) else ""
        assert fence.startswith("```"), f"README.md:{index + 2}: mcp-example needs a fenced block"
        end = lines.index("```", index + 2)
        found[marker.group(1)] = "".join(text + "\n" for text in lines[index + 2 : end])
    return found


@pytest.fixture(scope="module")
def readme_examples() -> dict[str, str]:
    blocks = examples(README.read_text(encoding="utf-8"))
    assert set(blocks) == {"worker", "client", "client-output"}
    return blocks


@requirement("readme:connect-an-mcp-client")
async def test_readme_client_calls_a_worker_tool_as_a_task(
    readme_examples: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    client = readme_examples["client"]
    assert README_SERVICE in client
    assert README_MCP_URL in client
    (tmp_path / "greeter.py").write_text(readme_examples["worker"])
    (tmp_path / "client.py").write_text(
        client.replace(README_MCP_URL, stack.mcp_url).replace(README_SERVICE, stack.grpc_target)
    )
    worker = stack.start_worker("greeter", "readme-greeter", cwd=tmp_path)
    try:
        await anyio.to_thread.run_sync(stack.wait_for_tools, {"greet"})
        # The venv's `taskservice` is what the --stdio variant starts.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        for variant in ([], ["--stdio"]):
            with anyio.fail_after(WAIT):
                ran = await anyio.run_process(
                    [sys.executable, "client.py", *variant],
                    cwd=tmp_path,
                    env=clean_env(PATH=path),
                    check=False,
                )
            output = ran.stdout.decode()
            assert ran.returncode == 0, f"client.py {variant}: {ran.stderr.decode()}"
            assert output == readme_examples["client-output"], f"client.py {variant}"
    finally:
        worker.stop()
