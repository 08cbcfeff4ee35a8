"""`memory://`: everything in dictionaries of this process. For tests and trials."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from taskservice.domain.errors import TaskNotFound
from taskservice.domain.model import Dispatch, TaskRecord, WorkerRecord
from taskservice.store.base import LocalChangeFeed, TaskChange, TaskCursor, task_key


class MemoryTaskStore:
    def __init__(self) -> None:
        self.changes = LocalChangeFeed()
        self._tasks: dict[str, TaskRecord] = {}
        self._by_owner: dict[str, list[tuple[int, str]]] = {}
        self._workers: dict[str, WorkerRecord] = {}

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def insert_task(self, task: TaskRecord) -> None:
        if task.task_id in self._tasks:
            raise ValueError(f"task {task.task_id!r} exists")
        self._tasks[task.task_id] = task
        bisect.insort(self._by_owner.setdefault(task.owner, []), (task.created_at, task.task_id))
        self.changes.publish_now((task_key(task.task_id),))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    async def update_task(self, task_id: str, change: TaskChange) -> TaskRecord:
        current = self._tasks.get(task_id)
        if current is None:
            raise TaskNotFound(task_id)
        updated = change(current)
        if updated is not current:
            self._tasks[task_id] = updated
            self.changes.publish_now((task_key(task_id),))
        return updated

    async def list_tasks(self, owner: str, after: TaskCursor | None, limit: int) -> list[TaskRecord]:
        index = self._by_owner.get(owner, [])
        start = 0 if after is None else bisect.bisect_right(index, (after.created_at, after.task_id))
        return [self._tasks[task_id] for _, task_id in index[start : start + limit]]

    def _remove(self, task: TaskRecord) -> None:
        del self._tasks[task.task_id]
        index = self._by_owner[task.owner]
        index.remove((task.created_at, task.task_id))
        if not index:
            del self._by_owner[task.owner]

    async def delete_task(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        if task is None:
            return False
        self._remove(task)
        self.changes.publish_now((task_key(task_id),))
        return True

    async def delete_expired_tasks(self, now_ms: int) -> list[str]:
        expired = [t for t in self._tasks.values() if t.expires_at <= now_ms]
        for task in expired:
            self._remove(task)
        if expired:
            self.changes.publish_now(task_key(t.task_id) for t in expired)
        return [t.task_id for t in expired]

    async def queued_tasks(self, tool_names: Iterable[str], limit: int) -> list[TaskRecord]:
        names = frozenset(tool_names)
        queued = [
            t for t in self._tasks.values() if t.dispatch is Dispatch.QUEUED and t.tool_name in names
        ]
        queued.sort(key=lambda t: (t.created_at, t.task_id))
        return queued[:limit]

    async def tasks_of_worker(self, worker_id: str) -> list[TaskRecord]:
        return [
            t
            for t in self._tasks.values()
            if t.worker_id == worker_id and t.dispatch in (Dispatch.OFFERED, Dispatch.RUNNING)
        ]

    async def stale_offers(self, now_ms: int) -> list[TaskRecord]:
        return [
            t
            for t in self._tasks.values()
            if t.dispatch is Dispatch.OFFERED and t.lease_expires_at <= now_ms
        ]

    async def put_worker(self, worker: WorkerRecord) -> None:
        self._workers[worker.worker_id] = worker

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        return self._workers.get(worker_id)

    async def delete_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerRecord]:
        return list(self._workers.values())
