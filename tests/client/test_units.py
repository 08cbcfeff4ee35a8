"""Pieces of the stub that need no service: conversions, declarations, policies, the CLI loader."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import grpc
import pytest
from google.protobuf import struct_pb2
from mcp import types
from taskservice_client import RemoteTaskContext, RetryPolicy, TaskServiceRejected, TLSConfig, Worker
from taskservice_client.__main__ import load_worker
from taskservice_client._channel import open_channel
from taskservice_client._convert import (
    MAX_DEPTH,
    call_tool_result,
    clip_utf8,
    dict_to_struct,
    struct_to_dict,
    task_from_proto,
    value_to_python,
)
from taskservice_client._errors import translate
from taskservice_client._proto.mcptasks.v1 import task_pb2, task_service_pb2
from taskservice_client._worker import _Running


def test_struct_round_trip_keeps_ints_ints() -> None:
    data: dict[str, Any] = {"n": 3, "x": 1.5, "s": "a", "b": True, "none": None, "list": [1, {"k": 2}]}
    assert struct_to_dict(dict_to_struct(data)) == data
    assert isinstance(struct_to_dict(dict_to_struct({"n": 3}))["n"], int)
    assert value_to_python(struct_pb2.Value(number_value=2.0)) == 2


def test_a_value_a_struct_would_change_is_refused_naming_its_path() -> None:
    exact = {"top": 2**53, "bottom": -(2**53)}
    assert struct_to_dict(dict_to_struct(exact)) == exact
    with pytest.raises(ValueError, match=r"^n is 9007199254740993, beyond ±2\^53"):
        dict_to_struct({"n": 2**53 + 1})
    with pytest.raises(ValueError, match=r"^result\.a\[1\]\.b is an integer of 1329 bits, beyond ±2\^53"):
        dict_to_struct({"a": [0, {"b": 10**400}]}, "result")
    with pytest.raises(ValueError, match=r"^result\.s holds a lone surrogate"):
        dict_to_struct({"s": "\ud800"}, "result")
    with pytest.raises(ValueError, match=r"^result\.\\udc00 holds a lone surrogate"):
        dict_to_struct({"\udc00": 1}, "result")
    with pytest.raises(ValueError, match=r"^result\.x\[0\] holds NaN or an infinity"):
        dict_to_struct({"x": [float("nan")]}, "result")
    deepest: Any = "end"
    for _ in range(MAX_DEPTH):
        deepest = {"a": deepest}
    assert struct_to_dict(dict_to_struct(deepest)) == deepest
    # One level more; and far past protobuf's and Python's recursion limits: refused all the same.
    for levels in (1, 5000):
        too_deep: Any = deepest
        for _ in range(levels):
            too_deep = {"a": too_deep}
        path = r"\.a" * MAX_DEPTH
        with pytest.raises(ValueError, match=rf"^result{path} nests deeper than {MAX_DEPTH} levels"):
            dict_to_struct(too_deep, "result")


def test_task_from_proto() -> None:
    message = task_pb2.Task(
        task_id="t1",
        status=task_pb2.TASK_STATUS_INPUT_REQUIRED,
        status_message="",
        ttl_ms=60_000,
        poll_interval_ms=1_000,
    )
    message.created_at.FromDatetime(datetime(2025, 1, 1, tzinfo=UTC))
    message.last_updated_at.FromDatetime(datetime(2025, 1, 2, tzinfo=UTC))
    task = task_from_proto(message)
    assert task == types.Task(
        taskId="t1",
        status="input_required",
        statusMessage=None,
        createdAt=datetime(2025, 1, 1, tzinfo=UTC),
        lastUpdatedAt=datetime(2025, 1, 2, tzinfo=UTC),
        ttl=60_000,
        pollInterval=1_000,
    )
    with pytest.raises(ValueError, match="no valid status"):
        task_from_proto(task_pb2.Task(task_id="t2"))


def test_tool_return_values_become_call_tool_results() -> None:
    given = types.CallToolResult(content=[types.TextContent(type="text", text="x")])
    assert call_tool_result(given) is given
    assert call_tool_result("hi").content == [types.TextContent(type="text", text="hi")]
    as_dict = call_tool_result({"a": 1}, structured=True)
    assert as_dict.structuredContent == {"a": 1}
    assert isinstance(as_dict.content[0], types.TextContent)
    assert as_dict.content[0].text == '{"a": 1}'
    assert call_tool_result({"a": 1}).structuredContent is None
    assert call_tool_result(None).content == []
    with pytest.raises(TypeError, match="must return"):
        call_tool_result(42)


def test_tool_declaration() -> None:
    worker = Worker("127.0.0.1:1")

    @worker.tool(
        description="Adds.", input_schema={"type": "object", "properties": {"a": {"type": "number"}}}
    )
    async def add(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> types.CallToolResult:
        raise NotImplementedError

    @worker.tool
    async def documented(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        """Its docstring is its description."""
        return "ok"

    @worker.tool("renamed", task_support="required", retry_safe=True)
    async def other(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
        return "ok"

    assert set(worker.tools) == {"add", "documented", "renamed"}
    assert worker.tools["documented"].description == "Its docstring is its description."
    definition = worker.tools["renamed"].definition()
    assert definition.task_support == task_pb2.TASK_SUPPORT_REQUIRED
    assert definition.retry_safe
    assert struct_to_dict(definition.input_schema) == {"type": "object"}
    assert struct_to_dict(worker.tools["add"].definition().input_schema)["properties"] == {
        "a": {"type": "number"}
    }

    with pytest.raises(ValueError, match="twice"):

        @worker.tool("add")
        async def again(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
            return ""

    with pytest.raises(TypeError, match="async"):
        worker.tool()(lambda ctx, arguments: None)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="object schema"):
        worker.tool(input_schema={"type": "string"})
    with pytest.raises(ValueError, match="task_support"):
        worker.tool(task_support="sometimes")  # type: ignore[call-overload]


def test_worker_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_concurrent_tasks"):
        Worker("127.0.0.1:1", max_concurrent_tasks=0)
    with pytest.raises(ValueError, match="client_cert"):
        TLSConfig(client_cert=b"x")


def test_retry_policy_backoff_grows_and_gives_up() -> None:
    backoff = RetryPolicy(initial_backoff=0.1, max_backoff=0.4, jitter=0).backoff()
    assert [backoff.next_delay() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    assert RetryPolicy(give_up_after=0).backoff().next_delay() is None
    with pytest.raises(ValueError, match="initial_backoff"):
        RetryPolicy(initial_backoff=0)


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:50051", "dns:///localhost:50051", "ipv4:127.0.0.1:1,127.0.0.1:2", "unix:/tmp/x.sock"],
)
async def test_every_grpc_target_form_opens_a_channel(target: str) -> None:
    channel = open_channel(target)
    await channel.close(None)
    secure = open_channel(target, tls=TLSConfig(domain="example.test"))
    await secure.close(None)


def test_rejections_are_value_errors() -> None:
    class FakeError(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.FAILED_PRECONDITION

        def details(self) -> str:
            return "task 't' is completed"

    error = translate(FakeError(), "/mcptasks.v1.TaskService/UpdateStatus")
    assert isinstance(error, TaskServiceRejected)
    assert isinstance(error, ValueError)
    assert "completed" in str(error)


def test_load_worker(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_worker_mod.py").write_text(
        "from taskservice_client import Worker\n"
        "worker = Worker('127.0.0.1:1')\n"
        "def make():\n    return Worker('127.0.0.1:2')\n"
        "other = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_worker("my_worker_mod").target == "127.0.0.1:1"
    assert load_worker("my_worker_mod:make").target == "127.0.0.1:2"
    with pytest.raises(TypeError, match=r"not a taskservice_client\.Worker"):
        load_worker("my_worker_mod:other")


async def test_a_finished_run_leaves_a_newer_run_of_the_same_task_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task offered again with a new lease while an older run still ends: the older run's end
    removes its own entry only, so the newer run still counts against max_concurrent_tasks and
    still gets its heartbeats and cancellation."""
    worker = Worker("127.0.0.1:1")
    worker._idle = anyio.Event()
    worker.tool()(_noop_tool)
    tool = worker.tools["_noop_tool"]
    task = task_pb2.Task(task_id="t1", status=task_pb2.TASK_STATUS_WORKING)
    old = _Running(task_service_pb2.Assignment(task=task, lease_id="lease-1"), tool)
    new = _Running(task_service_pb2.Assignment(task=task, lease_id="lease-2"), tool)
    worker._running["t1"] = new  # the new offer replaced the old run's entry

    async def run_entry(client: Any, worker_id: str, entry: Any) -> None:
        return None

    monkeypatch.setattr(worker, "_run_entry", run_entry)
    await worker._run_task(None, "w1", old)  # type: ignore[arg-type]
    assert worker._running == {"t1": new}
    assert not worker._idle.is_set()
    await worker._run_task(None, "w1", new)  # type: ignore[arg-type]
    assert worker._running == {}
    assert worker._idle.is_set()


async def _noop_tool(ctx: RemoteTaskContext, arguments: dict[str, Any]) -> str:
    return ""


async def test_an_answered_question_cancels_its_call_once_the_tool_went_on() -> None:
    """The answer is an `Elicit` stream's last event: the worker does not wait for the stream's
    end, and cancels the call (in case the service does not end it) on the loop's next turn,
    after the tool went on with the answer."""
    asked = task_pb2.Task(task_id="t1", status=task_pb2.TASK_STATUS_WORKING, ttl_ms=60_000)
    asked.created_at.FromDatetime(datetime(2025, 1, 1, tzinfo=UTC))
    asked.last_updated_at.FromDatetime(datetime(2025, 1, 2, tzinfo=UTC))
    answer = task_service_pb2.ElicitResponse(
        task=asked, result=dict_to_struct({"action": "accept", "content": {"go_on": True}})
    )

    class Call:
        def __init__(self) -> None:
            self.reads = 0
            self.cancels = 0

        async def read(self) -> Any:
            self.reads += 1
            return answer

        def cancel(self) -> bool:
            self.cancels += 1
            return True

    call = Call()

    class Client:
        retry = RetryPolicy()
        tasks = type("Stubs", (), {"Elicit": staticmethod(lambda *a, **k: None)})()

        def stream(self, rpc: Any, request: Any) -> Call:
            assert request.task_id == "t1"
            return call

    ctx = RemoteTaskContext(task=task_from_proto(asked), client=Client())  # type: ignore[arg-type]
    result = await ctx.elicit("Go on?", {"type": "object", "properties": {"go_on": {"type": "boolean"}}})
    assert result == types.ElicitResult(action="accept", content={"go_on": True})
    assert (call.reads, call.cancels) == (1, 0)  # the tool has its answer before the cancel
    await anyio.lowlevel.checkpoint()
    assert call.cancels == 1


def test_clip_utf8_replaces_a_lone_surrogate_and_cuts_at_a_character() -> None:
    """A failure message goes into a protobuf string (UTF-8): an OSError about a file name of
    undecodable bytes holds a lone surrogate, which would make the Fail itself raise."""
    assert clip_utf8("no such file: b\udcffd", 4096) == "no such file: b\\udcffd"
    assert clip_utf8("é" * 10, 9) == "é" * 3 + "..."
    assert clip_utf8("\udcff" * 2000, 100) == ("\\udcff" * 2000)[:97] + "..."
