"""Issue 4, "Must show": the TypeScript SDK's client drives the main flow.

`taskservice serve` and a Python worker (`python -m taskservice_client run
ts_flow_worker:worker`) run as processes; `node tests/node/ts_sdk_flow.mjs`
is the client (`@modelcontextprotocol/sdk` 1.32, `client.experimental.tasks.callToolStream`,
installed from tests/node/package-lock.json): a task call with status
notifications, an elicitation its handler answers, sampling, the result, a
cancellation, which the worker sees, and a question the task stopped waiting for,
which the bridge calls off (the client's handler is aborted).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ..processes import LoggedProcess, clean_env
from .support import HERE, WAIT, node_or_skip, running, serve


def test_typescript_sdk_client_main_flow(tmp_path: Path) -> None:
    node = node_or_skip(HERE)
    with serve(tmp_path) as service:
        events = tmp_path / "events.jsonl"
        env = clean_env(TS_FLOW_EVENTS=str(events))
        command = [sys.executable, "-m", "taskservice_client", "run", "ts_flow_worker:worker"]
        worker = LoggedProcess(
            [*command, "--target", service.grpc_target], tmp_path / "worker.log", env=env, cwd=HERE
        )
        with running(worker):
            flow = subprocess.run(
                [node, str(HERE / "ts_sdk_flow.mjs"), service.mcp_url],
                cwd=HERE,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=WAIT * 3,
            )
            assert flow.returncode == 0, (
                f"ts_sdk_flow.mjs failed ({flow.returncode}):\n{flow.stdout}\n{flow.stderr}\n"
                f"---- serve\n{service.proc.output()}"
            )
            summary = json.loads(flow.stdout.strip().splitlines()[-1])
            assert summary["messageTypes"][0] == "taskCreated"
            assert summary["messageTypes"][-1] == "result"
            assert summary["elicitations"] == 1
            assert summary["samplings"] == 1
            # The question ask_until_gate stopped waiting for was called off: the handler aborted.
            assert summary["calledOff"] == [
                {"outcome": "aborted", "reason": "The task no longer waits for this request."}
            ]

            cancelled = summary["cancelledTaskId"]
            deadline = time.monotonic() + WAIT
            while True:
                lines = events.read_text().splitlines() if events.exists() else []
                seen = [json.loads(line) for line in lines]
                stops = [e for e in seen if e.get("taskId") == cancelled and e.get("event") == "cancelled"]
                if stops or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert stops == [
                {"tool": "wait_forever", "taskId": cancelled, "event": "cancelled", "isCancelled": True}
            ]
            (done,) = [e for e in seen if e.get("taskId") == summary["taskId"]]
            assert done["colour"] == "teal"
            assert done["model"] == "ts-fake-model"
