"""The records' own behaviour: `TaskRecord.replace` is `dataclasses.replace`."""

from __future__ import annotations

import dataclasses

import pytest

from taskservice.domain.model import (
    ClientRequest,
    Dispatch,
    RequestState,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
    replacer,
)

TASK = TaskRecord(
    task_id="t1",
    owner="alice",
    status=TaskStatus.WORKING,
    created_at=1_000,
    last_updated_at=1_000,
    ttl_ms=60_000,
    poll_interval_ms=500,
)

# A new value for every field of a TaskRecord.
NEW_VALUES: dict[str, object] = {
    "task_id": "t2",
    "owner": "bob",
    "status": TaskStatus.INPUT_REQUIRED,
    "created_at": 2_000,
    "last_updated_at": 3_000,
    "ttl_ms": 1_000,
    "poll_interval_ms": 50,
    "status_message": "asking",
    "tool_name": "echo",
    "arguments": {"x": 1},
    "meta": {"progressToken": 1},
    "result": {"content": []},
    "requests": (ClientRequest("r1", "elicitation/create", {}, 1, 2_000, RequestState.PENDING),),
    "notify": False,
    "dispatch": Dispatch.RUNNING,
    "worker_id": "w1",
    "lease_id": "l1",
    "lease_expires_at": 9_000,
    "retry_safe": True,
    "attempts": 2,
    "client_capabilities": {"elicitation": {}},
}


def test_new_values_name_every_field() -> None:
    assert set(NEW_VALUES) == {field.name for field in dataclasses.fields(TaskRecord)}


@pytest.mark.parametrize("name", sorted(NEW_VALUES))
def test_replace_changes_one_field_like_dataclasses_replace(name: str) -> None:
    changed = TASK.replace(**{name: NEW_VALUES[name]})
    assert changed == dataclasses.replace(TASK, **{name: NEW_VALUES[name]})  # type: ignore[arg-type]
    assert getattr(changed, name) == NEW_VALUES[name]
    assert TASK.task_id == "t1"  # the original is untouched
    assert TASK.status is TaskStatus.WORKING


def test_replace_changes_every_field_at_once_and_nothing_with_no_changes() -> None:
    assert TASK.replace(**NEW_VALUES) == TaskRecord(**NEW_VALUES)  # type: ignore[arg-type]
    copy = TASK.replace()
    assert copy == TASK
    assert copy is not TASK


def test_replace_refuses_a_name_that_is_not_a_field() -> None:
    with pytest.raises(TypeError, match=r"TaskRecord has no field\(s\) bogus"):
        TASK.replace(bogus=1)


def test_a_replaced_record_is_still_frozen_and_hashable_as_before() -> None:
    changed = TASK.replace(status_message="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.status_message = "y"  # type: ignore[misc]
    assert repr(changed) == repr(dataclasses.replace(TASK, status_message="x"))


def test_a_replacer_works_for_any_frozen_slotted_dataclass() -> None:
    worker = WorkerRecord("w1", "one", (), max_concurrent_tasks=1, lease_expires_at=5)
    replace_worker = replacer(WorkerRecord)
    assert replace_worker(worker, {"lease_expires_at": 9}) == dataclasses.replace(worker, lease_expires_at=9)


def test_a_replacer_refuses_a_class_whose_init_does_more_than_set_fields() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        value: int
        twice: int = dataclasses.field(init=False, default=0)

    for cls in (Checked, Derived):
        with pytest.raises(TypeError, match="does more than set its fields"):
            replacer(cls)


def test_the_view_that_answered_is_kept_in_json_and_a_request_without_one_keeps_its_old_json() -> None:
    asked = ClientRequest("r1", "elicitation/create", {"message": "?"}, 1, 2_000)
    answered = dataclasses.replace(
        asked, state=RequestState.ANSWERED, result={"action": "accept"}, answered_by="view-a"
    )
    assert ClientRequest.from_json(answered.to_json()) == answered
    assert "answered_by" not in asked.to_json()  # bodies stored before the field read the same
    assert ClientRequest.from_json(asked.to_json()) == asked
