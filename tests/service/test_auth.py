"""Tokens per role and TLS on the gRPC service (taskservice.grpc_api.auth).

A worker's token opens the TaskService only, a bridge's the BridgeService only; a refused call
changes nothing; health and reflection stay open. Over TLS, the real Python worker stub (token
and TLSConfig) runs a task end to end; a plaintext client or, with mutual TLS, a client
without a certificate gets nowhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from mcp import types
from mcp.types import TaskMetadata
from taskservice_client import GrpcTaskStore, RemoteTaskContext, TaskServiceError, TLSConfig, Worker
from taskservice_client._client import Metadata, bearer_metadata
from taskservice_client._proto.mcptasks.v1 import bridge_service_pb2_grpc, task_pb2, task_service_pb2_grpc
from taskservice_client.testing import running_worker

from taskservice.grpc_api.auth import ServerTLS, Tokens, bearer
from taskservice.testing import RunningService, running_service

from ..certs import Certs, make_certs, secure_channel
from ..scaleout.support import BridgeCalls
from .support import OWNER, TOOL_RESULT, WAIT, bounded, bpb, pb, rich_error, to_struct, tool

WORKER_TOKEN = "w-0123456789abcdef"
BRIDGE_TOKEN = "b-fedcba9876543210"


def auth(token: str) -> Metadata:
    return bearer_metadata(token)


class Stubs:
    """Raw stubs on one channel; each call says which token it carries."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.tasks: Any = task_service_pb2_grpc.TaskServiceStub(channel)
        self.bridge: Any = bridge_service_pb2_grpc.BridgeServiceStub(channel)
        self.health: Any = health_pb2_grpc.HealthStub(channel)
        self.reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)


@pytest.fixture
async def guarded() -> AsyncIterator[RunningService]:
    async with running_service(tokens=Tokens(worker=WORKER_TOKEN, bridge=BRIDGE_TOKEN)) as svc:
        yield svc


@pytest.fixture
async def stubs(guarded: RunningService) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(guarded.target) as channel:
        yield Stubs(channel)


async def working_task(stubs: Stubs) -> str:
    """A task of OWNER, offered to a registered worker: everything with the right tokens."""
    await bounded(
        stubs.tasks.RegisterWorker(
            pb.RegisterWorkerRequest(name="w", tools=[tool()]), metadata=auth(WORKER_TOKEN)
        )
    )
    created = await bounded(
        stubs.bridge.CreateTask(
            bpb.CreateTaskRequest(owner=OWNER, tool_name="echo", arguments=to_struct({})),
            metadata=auth(BRIDGE_TOKEN),
        )
    )
    return cast("str", created.task.task_id)


# ------------------------------------------------------------------ refusals


async def test_a_worker_call_without_its_token_is_refused_and_changes_nothing(stubs: Stubs) -> None:
    task_id = await working_task(stubs)
    update = pb.UpdateStatusRequest(task_id=task_id, status_message="half way")
    complete = pb.CompleteRequest(task_id=task_id, result=to_struct(TOOL_RESULT))

    missing = await rich_error(stubs.tasks.UpdateStatus(update))
    assert missing.code is grpc.StatusCode.UNAUTHENTICATED
    assert missing.reason == "TOKEN_MISSING"
    assert "TaskService needs the worker token" in missing.message
    assert "authorization: Bearer" in missing.message

    wrong = await rich_error(stubs.tasks.Complete(complete, metadata=auth("not-the-token")))
    assert (wrong.code, wrong.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")

    other_role = await rich_error(stubs.tasks.Complete(complete, metadata=auth(BRIDGE_TOKEN)))
    assert (other_role.code, other_role.reason) == (grpc.StatusCode.PERMISSION_DENIED, "WRONG_ROLE")
    assert "takes the worker token" in other_role.message

    task = (
        await bounded(stubs.tasks.GetTask(pb.GetTaskRequest(task_id=task_id), metadata=auth(WORKER_TOKEN)))
    ).task
    assert task.status == task_pb2.TASK_STATUS_WORKING
    assert task.status_message == ""


async def test_a_worker_token_cannot_read_or_answer_for_a_client(stubs: Stubs) -> None:
    task_id = await working_task(stubs)
    listing = await rich_error(
        stubs.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER), metadata=auth(WORKER_TOKEN))
    )
    assert (listing.code, listing.reason) == (grpc.StatusCode.PERMISSION_DENIED, "WRONG_ROLE")
    assert "BridgeService takes the bridge token" in listing.message
    answer = bpb.AnswerRequestRequest(owner=OWNER, task_id=task_id, request_id="r1")
    answer.result.CopyFrom(to_struct({"action": "decline"}))
    refused = await rich_error(stubs.bridge.AnswerRequest(answer, metadata=auth(WORKER_TOKEN)))
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED
    missing = await rich_error(stubs.bridge.LookupTask(bpb.LookupTaskRequest(owner=OWNER, task_id=task_id)))
    assert (missing.code, missing.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    found = await bounded(
        stubs.bridge.LookupTask(
            bpb.LookupTaskRequest(owner=OWNER, task_id=task_id), metadata=auth(BRIDGE_TOKEN)
        )
    )
    assert found.task.task_id == task_id


async def test_streams_of_every_kind_are_refused_before_their_handler(stubs: Stubs) -> None:
    task_id = await working_task(stubs)
    elicit = pb.ElicitRequest(task_id=task_id, message="?", requested_schema=to_struct({"type": "object"}))
    server_stream = await rich_error(_first(stubs.tasks.Elicit(elicit)))
    assert server_stream.code is grpc.StatusCode.UNAUTHENTICATED

    async def outcomes() -> AsyncIterator[pb.ReportOutcomesRequest]:
        yield pb.ReportOutcomesRequest(
            report_id="1", complete=pb.CompleteRequest(task_id=task_id, result=to_struct(TOOL_RESULT))
        )

    both_ways = await rich_error(_first(stubs.tasks.ReportOutcomes(outcomes(), metadata=auth(BRIDGE_TOKEN))))
    assert both_ways.code is grpc.StatusCode.PERMISSION_DENIED
    bridge_stream = await rich_error(_first(stubs.bridge.WatchTools(bpb.WatchToolsRequest())))
    assert bridge_stream.code is grpc.StatusCode.UNAUTHENTICATED
    # Neither the question nor the outcome got in.
    task = (
        await bounded(stubs.tasks.GetTask(pb.GetTaskRequest(task_id=task_id), metadata=auth(WORKER_TOKEN)))
    ).task
    assert task.status == task_pb2.TASK_STATUS_WORKING


async def _first(call: Any) -> Any:
    async for message in call:
        return message
    return None


async def test_health_and_reflection_need_no_token(stubs: Stubs) -> None:
    checked = await bounded(stubs.health.Check(health_pb2.HealthCheckRequest()))
    assert checked.status == health_pb2.HealthCheckResponse.SERVING

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    answer = await bounded(_first(stubs.reflection.ServerReflectionInfo(ask())))
    names = {s.name for s in answer.list_services_response.service}
    assert {"mcptasks.v1.TaskService", "mcptasks.v1.BridgeService"} <= names


async def test_a_role_without_a_token_stays_open() -> None:
    async with (
        running_service(tokens=Tokens(worker=WORKER_TOKEN)) as svc,
        grpc.aio.insecure_channel(svc.target) as channel,
    ):
        stubs = Stubs(channel)
        listed = await bounded(stubs.bridge.ListTasks(bpb.ListTasksRequest(owner=OWNER)))
        assert list(listed.tasks) == []
        refused = await rich_error(stubs.tasks.GetTask(pb.GetTaskRequest(task_id="x")))
        assert refused.code is grpc.StatusCode.UNAUTHENTICATED


def test_tokens_are_checked_when_made() -> None:
    for bad in ("", " padded ", "two\nlines"):
        with pytest.raises(ValueError, match="worker token"):
            Tokens(worker=bad)
    assert not Tokens().any
    assert Tokens(bridge="b").any


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer abc"),), "abc"),
        ((("authorization", "bearer abc "),), "abc"),
        ((("authorization", b"Bearer abc"),), "abc"),
        ((("authorization", "Basic abc"),), None),
        ((("authorization", "Bearer "),), None),
        ((("x-other", "Bearer abc"),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_reads_the_authorization_entry(metadata: Any, token: str | None) -> None:
    assert bearer(metadata) == token


# ------------------------------------------------------------------ the real stub, over TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _worker(target: str, **options: Any) -> Worker:
    worker = Worker(target, name="tls-worker", **options)

    @worker.tool(description="Says done.")
    async def echo(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(type="text", text="done over TLS")])

    return worker


async def _run_one_task(
    target: str, channel: grpc.aio.Channel
) -> tuple[task_pb2.Task, dict[str, Any] | None]:
    """Create an `echo` task as a bridge would (bridge token, over `channel`); its outcome."""
    calls = BridgeCalls(target, channel=channel, token=BRIDGE_TOKEN)
    return await calls.outcome(await calls.create("echo"))


async def test_the_python_worker_runs_a_task_over_tls_with_its_token(certs: Certs) -> None:
    tls = ServerTLS.from_files(str(certs.server_cert), str(certs.server_key))
    tokens = Tokens(worker=WORKER_TOKEN, bridge=BRIDGE_TOKEN)
    async with running_service(tokens=tokens, tls=tls) as svc:
        worker = _worker(svc.target, token=WORKER_TOKEN, tls=TLSConfig(server_root_ca_cert=certs.read("ca")))
        async with running_worker(worker), secure_channel(svc.target, certs) as channel:
            task, result = await _run_one_task(svc.target, channel)
        assert task.status == task_pb2.TASK_STATUS_COMPLETED
        assert result is not None
        assert result["content"][0]["text"] == "done over TLS"


async def test_a_plaintext_client_gets_nowhere_on_a_tls_service(certs: Certs) -> None:
    tls = ServerTLS.from_files(str(certs.server_cert), str(certs.server_key))
    async with running_service(tls=tls) as svc, grpc.aio.insecure_channel(svc.target) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_takes_only_clients_with_a_certificate_of_its_ca(certs: Certs) -> None:
    tls = ServerTLS.from_files(str(certs.server_cert), str(certs.server_key), str(certs.ca))
    async with running_service(tls=tls) as svc:
        async with secure_channel(svc.target, certs) as anonymous:
            health: Any = health_pb2_grpc.HealthStub(anonymous)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        worker = _worker(
            svc.target,
            tls=TLSConfig(
                server_root_ca_cert=certs.read("ca"),
                client_cert=certs.read("client_cert"),
                client_private_key=certs.read("client_key"),
            ),
        )
        async with running_worker(worker), secure_channel(svc.target, certs, client=True) as channel:
            task, _ = await _run_one_task(svc.target, channel)
        assert task.status == task_pb2.TASK_STATUS_COMPLETED


def test_server_tls_files_are_checked_when_read(tmp_path: Path, certs: Certs) -> None:
    (tmp_path / "plain.txt").write_text("not a certificate")
    with pytest.raises(OSError, match="is not a PEM file"):
        ServerTLS.from_files(str(tmp_path / "plain.txt"), str(certs.server_key))
    with pytest.raises(OSError, match="cannot read the TLS key"):
        ServerTLS.from_files(str(certs.server_cert), str(tmp_path / "missing.pem"))


# ------------------------------------------------------------------ the SDK's TaskStore


async def test_grpc_task_store_plays_both_roles_with_both_tokens(guarded: RunningService) -> None:
    """GrpcTaskStore updates tasks as a worker does and lists and cancels them as a bridge does."""
    async with GrpcTaskStore(guarded.target, token=WORKER_TOKEN, bridge_token=BRIDGE_TOKEN) as store:
        done = await store.create_task(TaskMetadata(ttl=60_000))
        await store.update_task(done.taskId, status_message="half way")
        await store.store_result(done.taskId, types.CallToolResult(content=[]))
        await store.update_task(done.taskId, status="completed")
        assert isinstance(await store.get_result(done.taskId), types.CallToolResult)  # BridgeService
        other = await store.create_task(TaskMetadata(ttl=60_000))
        await store.update_task(other.taskId, status="cancelled")  # BridgeService's CancelTask
        tasks, _ = await store.list_tasks()  # BridgeService
        assert {t.taskId: t.status for t in tasks} == {done.taskId: "completed", other.taskId: "cancelled"}
    async with GrpcTaskStore(guarded.target, token=WORKER_TOKEN) as worker_only:
        with pytest.raises(TaskServiceError) as caught:
            await worker_only.list_tasks()
        assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
