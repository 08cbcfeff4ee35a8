"""The store seam: one small async protocol that every backend implements.

A task is one atomic unit (its requests and answers live inside its record), so
every change is a single `update_task` whose function runs on the current
record and whose result is stored before the call returns. Backends publish the
key `task:<id>` on the change feed after each stored change, so waiters wake on
events and then re-read stored state.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson

from taskservice.domain.model import TaskRecord, WorkerRecord

TaskChange = Callable[[TaskRecord], TaskRecord]

_slow_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

# orjson would write dataclasses, datetimes and subclasses of str, int, dict and list its own
# way; json refuses or writes them as their base type. Passed through, they go to json as well.
_STRICT = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def encode_json(data: object) -> str:
    """A stored body: compact JSON text of the value `json.dumps(data, separators=(",", ":"),
    ensure_ascii=False)` writes, made by orjson (a task record: 4.9 -> 1.3 us; every change
    writes one). Where orjson would write something json does not (an integer beyond 64 bits,
    a key that is not a str, a dataclass, a datetime, a str or int subclass), json writes it, or
    refuses it as it always did. The text can differ in the spelling of a float (orjson writes
    1e-05 as 0.00001), never in the value read back. Payloads with NaN or infinity, which are
    not JSON, are refused where they come in (the servicers' PayloadReader)."""
    try:
        return orjson.dumps(data, option=_STRICT).decode()
    except TypeError:
        return _slow_encode(data)


def redacted_url(url: str) -> str:
    """A store URL fit for logs: its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def task_key(task_id: str) -> str:
    return f"task:{task_id}"


def worker_key(worker_id: str) -> str:
    return f"worker:{worker_id}"


def room_key(worker_id: str) -> str:
    """Published when one of the worker's tasks ends or is handed back: room for another. Only a
    full worker's assignment stream listens to it (see TaskManager.assignments)."""
    return f"room:{worker_id}"


def tool_key(tool_name: str) -> str:
    return f"tool:{tool_name}"


TOOLS_KEY = "tools"


class Subscription(Protocol):
    """Interest in some keys; `wait` returns once any of them was published since the last wait."""

    async def wait(self, timeout: float | None = None) -> bool:
        """True when woken by a publish, False on timeout."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class ChangeFeed(Protocol):
    """Wakes waiters when stored state they care about changed. Carries no state itself."""

    def subscribe(self, keys: Iterable[str], *, first: bool = False) -> Subscription:
        """`first`: a publish wakes this subscription before the others of this process (a waiter
        that a task's progress waits on, before those that only watch it)."""
        ...

    async def publish(self, keys: Iterable[str]) -> None: ...


class TaskStore(Protocol):
    """Durable state of tasks and workers. Every method is atomic on its own."""

    @property
    def changes(self) -> ChangeFeed: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be used."""
        ...

    # Tasks.
    async def insert_task(self, task: TaskRecord) -> None: ...

    async def get_task(self, task_id: str) -> TaskRecord | None: ...

    async def update_task(self, task_id: str, change: TaskChange) -> TaskRecord:
        """Apply `change` to the stored record atomically and store its result.

        Raises TaskNotFound; whatever `change` raises aborts the update and
        propagates. When `change` returns the record unchanged nothing is written.
        """
        ...

    async def list_tasks(self, owner: str, after: TaskCursor | None, limit: int) -> list[TaskRecord]:
        """The owner's tasks ordered by (created_at, task_id), strictly after the cursor."""
        ...

    async def delete_task(self, task_id: str) -> bool:
        """Delete a task and everything stored in it; False when there was none."""
        ...

    async def delete_expired_tasks(self, now_ms: int) -> list[str]:
        """Delete tasks whose ttl ran out; return their ids."""
        ...

    async def queued_tasks(self, tool_names: Iterable[str], limit: int) -> list[TaskRecord]:
        """Up to `limit` tasks waiting for a worker for one of these tools, oldest first; fewer
        only when no more are waiting (dispatch takes a short answer for the whole queue)."""
        ...

    async def tasks_of_worker(self, worker_id: str) -> list[TaskRecord]:
        """Tasks offered to or running on this worker."""
        ...

    async def stale_offers(self, now_ms: int) -> list[TaskRecord]:
        """Offered tasks whose worker did not acknowledge them in time."""
        ...

    # Workers.
    async def put_worker(self, worker: WorkerRecord) -> None: ...

    async def get_worker(self, worker_id: str) -> WorkerRecord | None: ...

    async def delete_worker(self, worker_id: str) -> None: ...

    async def list_workers(self) -> list[WorkerRecord]: ...


MAX_CURSOR_TIME = 2**63 - 1
"""The latest `created_at` a page token can hold: what every store can compare (SQLite's INTEGER)."""


class TaskCursor:
    """Position in an owner's task list: (created_at, task_id) of the last task seen.

    Encoded as opaque URL-safe text; a token that does not decode is refused
    with ValueError, so a caller gets a clear error instead of a wrong page.
    """

    __slots__ = ("created_at", "task_id")

    def __init__(self, created_at: int, task_id: str) -> None:
        self.created_at = created_at
        self.task_id = task_id

    def encode(self) -> str:
        raw = json.dumps([self.created_at, self.task_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> TaskCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            created_at, task_id = json.loads(raw)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a page token of this service: {token!r}") from exc
        # A time of a task: an int of 64 bits (an SQLite INTEGER), not a bool, and not negative.
        if (
            not isinstance(created_at, int)
            or isinstance(created_at, bool)
            or not 0 <= created_at <= MAX_CURSOR_TIME
            or not isinstance(task_id, str)
        ):
            raise ValueError(f"not a page token of this service: {token!r}")
        return cls(created_at, task_id)

    @classmethod
    def after_task(cls, task: TaskRecord) -> TaskCursor:
        return cls(task.created_at, task.task_id)


class ClosingSubscription:
    """What every Subscription shares: `with` closes it on the way out."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalSubscription(ClosingSubscription):
    """A subscription of LocalChangeFeed: one event registered under several keys."""

    __slots__ = ("_event", "_feed", "_keys", "first")

    def __init__(self, feed: LocalChangeFeed, keys: tuple[str, ...], first: bool = False) -> None:
        self._feed = feed
        self._keys = keys
        self._event = asyncio.Event()
        self.first = first

    def _wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        # A wake that already arrived is reported at once: a timeout of 0 would cancel
        # event.wait() before it runs and report a timeout.
        if self._event.is_set():
            self._event.clear()
            return True
        try:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that arrives as the event is set, and the waiter then never ends.
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._feed._remove(self)  # pyright: ignore[reportPrivateUsage]


class LocalChangeFeed:
    """In-process change feed: wakes every subscriber of a key, on one event loop."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[LocalSubscription]] = {}

    def subscribe(self, keys: Iterable[str], *, first: bool = False) -> LocalSubscription:
        key_tuple = tuple(keys)
        subscription = LocalSubscription(self, key_tuple, first)
        for key in key_tuple:
            self._subscribers.setdefault(key, set()).add(subscription)
        return subscription

    def _remove(self, subscription: LocalSubscription) -> None:
        for key in subscription._keys:  # pyright: ignore[reportPrivateUsage]
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[key]

    def publish_now(self, keys: Iterable[str]) -> None:
        # A woken waiter runs in the order it was woken: the `first` subscriptions go ahead.
        later: list[LocalSubscription] = []
        for key in keys:
            for subscription in tuple(self._subscribers.get(key, ())):
                if subscription.first:
                    subscription._wake()  # pyright: ignore[reportPrivateUsage]
                else:
                    later.append(subscription)
        for subscription in later:
            subscription._wake()  # pyright: ignore[reportPrivateUsage]

    async def publish(self, keys: Iterable[str]) -> None:
        self.publish_now(keys)


# How many tasks (and workers) a store keeps the records of, and the largest body it keeps one for.
KNOWN_TASKS = 1024
KNOWN_BODY_MAX = 32_768

R = TypeVar("R")


class KnownRecords(Generic[R]):
    """The records of the tasks (or workers) a store most recently read or wrote, by id, at most
    `limit` of them (the least recently stored leaves first; a record handed out from here does
    not move) and none whose body is over KNOWN_BODY_MAX. Records are immutable, so the one kept
    is the one handed out. What a kept record is worth depends on the store: for the only writer
    of a file it is the stored record; for one of many writers, a first guess to check."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: dict[str, R] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: str) -> R | None:
        return self._kept.get(key)

    def remember(self, key: str, body: str, record: R) -> None:
        kept = self._kept
        kept.pop(key, None)
        if len(body) <= KNOWN_BODY_MAX:
            kept[key] = record
            if len(kept) > self._limit:
                del kept[next(iter(kept))]  # the least recently stored

    def forget(self, key: str) -> None:
        self._kept.pop(key, None)

    def clear(self) -> None:
        self._kept.clear()
