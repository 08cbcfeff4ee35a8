"""What the client declared it can take decides what a worker may ask it.

The service checks the capabilities the client gave at initialize before it
queues a worker's request, with the SDK's own checks and errors; a client
that runs elicitation and sampling as tasks of its own (mcp 1.30's
ExperimentalTaskHandlers) gets task-augmented requests, which the bridge
follows to their result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcp import types
from mcp.client.experimental.task_handlers import ExperimentalTaskHandlers
from mcp.client.session import ClientSession
from mcp.shared.context import RequestContext

from .conftest import Connector, json_of, new_client_task
from .requirements import TASKS, requirement

Context = RequestContext[ClientSession, Any]


async def answer_text(
    context: Context, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Ada."), model="test-model"
    )


@requirement("spec:2025-11-25/client/elicitation#capabilities")
async def test_no_requests_for_a_client_without_the_capabilities(mcp: Connector) -> None:
    async with mcp.connect(own=True) as client:
        task_id = (await client.call_as_task("interview")).task.taskId
        result = await client.result(task_id)
        assert json_of(result) == {
            "seen": [
                {
                    "error": {
                        "code": types.INVALID_REQUEST,
                        "message": "Client does not support elicitation capability",
                    }
                },
                {
                    "error": {
                        "code": types.INVALID_REQUEST,
                        "message": "Client does not support elicitation capability",
                    }
                },
                {
                    "error": {
                        "code": types.INVALID_REQUEST,
                        "message": "Client does not support sampling capability",
                    }
                },
            ]
        }
        # Nothing was queued: the task never waited for the client.
        await client.wait_for_status(task_id, "completed")
        assert "input_required" not in [n.status for n in client.status_notifications(task_id)]


@requirement("spec:2025-11-25/client/sampling#capabilities")
async def test_sampling_with_tools_needs_the_tools_capability(mcp: Connector) -> None:
    async with mcp.connect(sampling=answer_text) as client:
        task_id = (await client.call_as_task("sample_with_tools")).task.taskId
        assert json_of(await client.result(task_id)) == {
            "error": {
                "code": types.INVALID_PARAMS,
                "message": "Client does not support sampling tools capability",
            }
        }


@requirement("spec:2025-11-25/client/sampling#capabilities")
async def test_sampling_with_tools_reaches_a_client_that_takes_tools(mcp: Connector) -> None:
    offered: list[types.CreateMessageRequestParams] = []

    async def sample(context: Context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        offered.append(params)
        return await answer_text(context, params)

    async with mcp.connect(sampling=sample, sampling_tools=True) as client:
        task_id = (await client.call_as_task("sample_with_tools")).task.taskId
        assert json_of(await client.result(task_id)) == {"model": "test-model", "stopReason": None}
    assert [tool.name for tool in offered[0].tools or []] == ["lookup"]
    assert offered[0].toolChoice is not None
    assert offered[0].toolChoice.mode == "auto"


class TasksOfTheClient:
    """A client that runs task-augmented elicitation and sampling as tasks of its own (in memory).

    The user answers right after the server's first poll, so the server sees the
    task working, then completed.
    """

    def __init__(self) -> None:
        self.tasks: dict[str, types.Task] = {}
        self.results: dict[str, types.Result] = {}
        self.asked: list[str] = []

    def handlers(self) -> ExperimentalTaskHandlers:
        return ExperimentalTaskHandlers(
            get_task=self.get_task,
            get_task_result=self.get_task_result,
            augmented_elicitation=self.elicit,
            augmented_sampling=self.sample,
        )

    def _create(self, metadata: types.TaskMetadata, result: types.Result) -> types.CreateTaskResult:
        task = new_client_task(metadata)
        self.tasks[task.taskId] = task
        self.results[task.taskId] = result
        return types.CreateTaskResult(task=task)

    async def elicit(
        self, context: Context, params: types.ElicitRequestParams, task_metadata: types.TaskMetadata
    ) -> types.CreateTaskResult:
        self.asked.append(f"elicitation: {params.message}")
        return self._create(task_metadata, types.ElicitResult(action="accept", content={"colour": "teal"}))

    async def sample(
        self, context: Context, params: types.CreateMessageRequestParams, task_metadata: types.TaskMetadata
    ) -> types.CreateTaskResult:
        self.asked.append("sampling")
        return self._create(task_metadata, await answer_text(context, params))

    async def get_task(self, context: Context, params: types.GetTaskRequestParams) -> types.GetTaskResult:
        task = self.tasks[params.taskId]
        if task.status == "working":
            self.tasks[params.taskId] = task.model_copy(
                update={"status": "completed", "lastUpdatedAt": datetime.now(UTC)}
            )
        return types.GetTaskResult.model_validate(task.model_dump())

    async def get_task_result(
        self, context: Context, params: types.GetTaskPayloadRequestParams
    ) -> types.GetTaskPayloadResult:
        result = self.results[params.taskId]
        return types.GetTaskPayloadResult.model_validate(result.model_dump(by_alias=True, exclude_none=True))


@requirement(f"{TASKS}#task-augmented-sampling-request")
async def test_elicitation_and_sampling_as_tasks_of_the_client(mcp: Connector) -> None:
    client_tasks = TasksOfTheClient()
    async with mcp.connect(task_handlers=client_tasks.handlers()) as client:
        elicited = (await client.call_as_task("ask_as_task")).task.taskId
        assert json_of(await client.result(elicited)) == {"action": "accept", "content": {"colour": "teal"}}
        sampled = (await client.call_as_task("sample_as_task")).task.taskId
        assert json_of(await client.result(sampled)) == {"model": "test-model", "text": "Ada."}
    assert client_tasks.asked == ["elicitation: Pick a colour", "sampling"]
    assert all(task.status == "completed" for task in client_tasks.tasks.values())


@requirement(f"{TASKS}#client-capabilities")
async def test_requests_as_tasks_need_the_client_tasks_capability(mcp: Connector) -> None:
    async def never(context: Context, params: types.ElicitRequestParams) -> types.ElicitResult:
        raise AssertionError("the client must not be asked")

    # The client takes plain elicitation and sampling, but runs no tasks of its own.
    async with mcp.connect(elicitation=never, sampling=answer_text) as client:
        elicited = (await client.call_as_task("ask_as_task")).task.taskId
        assert json_of(await client.result(elicited)) == {
            "error": {
                "code": types.INVALID_REQUEST,
                "message": "Client does not support task-augmented elicitation",
            }
        }
        sampled = (await client.call_as_task("sample_as_task")).task.taskId
        assert json_of(await client.result(sampled)) == {
            "error": {
                "code": types.INVALID_REQUEST,
                "message": "Client does not support task-augmented sampling",
            }
        }
