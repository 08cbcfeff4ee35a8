"""README "Tokens and TLS": the Node worker with the worker token and a client certificate.

`taskservice serve` runs with both tokens and mutual TLS; `node tests/node/node_tls_worker.mjs`
connects with `token` and `tls: { rootCerts, certChain, privateKey }`; a bridge's calls (the
bridge token, over TLS with a client certificate) create a task that the Node worker
completes.
"""

from __future__ import annotations

from pathlib import Path

from taskservice_client._proto.mcptasks.v1 import task_pb2

from ..certs import make_certs, secure_channel
from ..processes import LoggedProcess, clean_env
from ..scaleout.support import BridgeCalls
from .support import CLIENT_NODE, HERE, ROOT, WAIT, node_or_skip, running, serve

WORKER_TOKEN = "node-tls-worker-token"
BRIDGE_TOKEN = "node-tls-bridge-token"


async def test_the_node_worker_runs_a_task_over_mutual_tls_with_its_token(tmp_path: Path) -> None:
    node = node_or_skip(CLIENT_NODE)
    certs = make_certs(tmp_path / "certs")
    tls = ["--grpc-tls-cert", str(certs.server_cert), "--grpc-tls-key", str(certs.server_key)]
    tls += ["--grpc-tls-client-ca", str(certs.ca)]
    tokens = ["--worker-token", WORKER_TOKEN, "--bridge-token", BRIDGE_TOKEN]
    with serve(tmp_path, *tls, *tokens) as service:
        env = clean_env(
            TASKSERVICE_TARGET=f"localhost:{service.grpc_target.rpartition(':')[2]}",
            TASKSERVICE_TOKEN=WORKER_TOKEN,
            TLS_CA=str(certs.ca),
            TLS_CERT=str(certs.client_cert),
            TLS_KEY=str(certs.client_key),
        )
        command = [node, str(HERE / "node_tls_worker.mjs")]
        worker = LoggedProcess(command, tmp_path / "worker.log", env=env, cwd=ROOT)
        with running(worker):
            worker.wait_for(r"registered \S+", WAIT)
            async with secure_channel(service.grpc_target, certs, client=True) as channel:
                calls = BridgeCalls(service.grpc_target, channel=channel, token=BRIDGE_TOKEN)
                task, result = await calls.outcome(await calls.create("echo", {"text": "hi"}))
    assert task.status == task_pb2.TASK_STATUS_COMPLETED
    assert result is not None
    assert result["content"] == [{"type": "text", "text": "node over TLS: hi"}]
