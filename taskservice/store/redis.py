"""`redis://host:port/db`: one state shared by many service replicas.

Every key lives under a prefix (`mcptasks:` unless the URL says `?prefix=...`):

    task:<id>               the TaskRecord as JSON
    owner:<owner>           zset, every score 0, members "<created_at:020d>|<id>": list order
    queued:<tool>           zset like owner: the tasks waiting for a worker of the tool, oldest first
    worker-tasks:<worker>   set of the ids of tasks offered to or running on the worker
    offers                  zset of offered task ids, scored by lease expiry
    expiry                  zset of task ids, scored by created_at + ttl_ms
    workers                 hash: worker id -> WorkerRecord as JSON
    changes:<feed key>      the change feed's pub/sub channels (task:<id>, worker:<id>, tool:<name>, tools)

A change of a task is an optimistic compare-and-swap: run the change (Python) on the record, then one
script (`SWAP_SCRIPT`) that writes the record, its index entries and the PUBLISH of its feed key only if
the key still holds the record the change ran on. That record is the one this replica last read or
wrote of the task, when it still keeps it (`KNOWN_TASKS` of them): one round trip. Otherwise, or when
the script finds the key changed (another replica wrote it), the change GETs the key and runs again on
what it holds; a change that refused or changed nothing on the record kept runs again on the stored one
too. So two replicas cannot both complete a task, both take an answer or both lease a task.

Expiry is the sweeper's job (`delete_expired_tasks`, with the service's clock), which keeps the indexes
exact. Redis also expires each task key EXPIRY_GRACE_MS after its ttl, as a backstop for when no replica
runs; readers drop index entries whose record Redis expired. Workers carry no Redis expiry on purpose: a
worker that vanished must go through the sweeper, which re-queues or fails the tasks it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from taskservice.domain.errors import StoreUnavailable, TaskNotFound
from taskservice.domain.model import Dispatch, TaskRecord, WorkerRecord
from taskservice.store.base import (
    KNOWN_TASKS,
    ClosingSubscription,
    KnownRecords,
    LocalChangeFeed,
    LocalSubscription,
    TaskChange,
    TaskCursor,
    encode_json,
    redacted_url,
    task_key,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "mcptasks:"
_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Redis deletes a task key this long after the task's ttl ran out, when no sweeper did it first.
EXPIRY_GRACE_MS = 300_000
# How often a wait re-reads stored state even without a message: a lost message strands nobody.
RECHECK_INTERVAL = 5.0
# How long the change feed's connection may stay silent before a PING must answer.
FEED_PING_INTERVAL = 5.0
# Optimistic changes (compare-and-swap) that keep losing to other writers give up after this many attempts.
MAX_ATTEMPTS = 64

# A feed key no replica publishes: every subscription listens to it, to hear of a reconnect.
_RECONNECTED = "\x00reconnected"

_WORKER_DISPATCH = (Dispatch.OFFERED, Dispatch.RUNNING)


def _queued(task: TaskRecord) -> bool:
    return task.dispatch is Dispatch.QUEUED


def _text(value: object) -> str:
    """A reply of the client (decode_responses: already str; redis-py types it bytes | str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(values: Iterable[object]) -> list[str]:
    return [_text(v) for v in values]


def _maybe_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _task(raw: str) -> TaskRecord:
    return TaskRecord.from_json(json.loads(raw))


# KEYS[1]: the task's key. ARGV[1]: "1" when the key must hold ARGV[2], "0" when it must not exist.
# Then the writes, each as: its length, the command, the index in KEYS of its key (or channel), its
# other arguments.
# PEXPIREBY key delta moves the key's expiry by delta ms (when it has one). Returns 1, or 0 (changed).
SWAP_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local name = ARGV[i + 1]
  local key = KEYS[tonumber(ARGV[i + 2])]
  if name == 'PEXPIREBY' then
    local left = redis.call('PTTL', key)
    if left > 0 then redis.call('PEXPIRE', key, math.max(left + tonumber(ARGV[i + 3]), 1)) end
  else
    local command = {name, key}
    for j = 3, n do command[j] = ARGV[i + j] end
    redis.call(unpack(command))
  end
  i = i + n + 1
end
return 1
"""


class _LostReply(Exception):
    """A conditional write's connection broke: it may or may not have gone through."""


class _Writes:
    """The writes of one swap, as the arguments of SWAP_SCRIPT."""

    def __init__(self, task_key: str) -> None:
        self.keys = [task_key]
        self.args: list[str | int | float] = []
        self._index = {task_key: 1}

    def add(self, command: str, key: str, *args: str | int | float) -> None:
        index = self._index.get(key)
        if index is None:
            self.keys.append(key)
            index = self._index[key] = len(self.keys)
        self.args += [len(args) + 2, command, index, *args]


def _ordered(created_at: int, task_id: str) -> str:
    """A member whose byte order is (created_at, task_id) order (all scores equal: ZRANGE BYLEX)."""
    return f"{min(max(created_at, 0), 10**20 - 1):020d}|{task_id}"


def _task_id_of(member: str) -> str:
    return member[21:]


def parse_url(url: str) -> tuple[str, str]:
    """Split a store URL into the URL redis-py reads and the key prefix (`?prefix=`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis store URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not _PREFIX.match(prefix):
        raise ValueError(f"bad Redis key prefix {prefix!r}: 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisTaskStore:
    """The TaskStore protocol on Redis (redis-py asyncio); see the module's docstring for the layout."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 1.0,
        command_timeout: float = 2.0,
        recheck_interval: float | None = None,
    ) -> None:
        client_url, self.prefix = parse_url(url)
        self.where = redacted_url(url)
        self._timeout = command_timeout
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": connect_timeout,
            # No socket timeout: calls are bounded by asyncio.timeout (`_guard`). With one, redis-py
            # wraps each send in asyncio.wait_for, which on Python 3.11 can swallow a cancellation
            # that arrives as the send completes, and then the cancelled caller hangs for good.
            "socket_timeout": None,
        }
        try:
            # One quick retry on a fresh connection when a pooled one turns out dead (Redis restarted);
            # none after a timeout, which would only double the wait for an answer that is not coming.
            retry = Retry(ExponentialBackoff(cap=0.1, base=0.01), 1, supported_errors=(RedisConnectionError,))
            self._client = Redis.from_url(client_url, retry=retry, **options)
            # Conditional writes are never sent again by redis-py: a write whose reply was lost and
            # that went through would then find the key changed (by itself) and run again.
            writer = Redis.from_url(client_url, retry=Retry(NoBackoff(), 0), **options)
            # The feed sees every disconnect itself (no silent retry), to know what it may have missed.
            feed_client = Redis.from_url(client_url, retry=Retry(NoBackoff(), 0), **options)
        except ValueError as exc:
            raise ValueError(f"bad Redis store URL {self.where!r}: {exc}") from exc
        self.changes = RedisChangeFeed(
            feed_client,
            self._client,
            self.prefix + "changes:",
            recheck_interval=recheck_interval or RECHECK_INTERVAL,
            timeout=command_timeout,
        )
        self._writer = writer
        self._swap_script = writer.register_script(SWAP_SCRIPT)
        self._expiry = self.prefix + "expiry"
        self._offers = self.prefix + "offers"
        self._workers = self.prefix + "workers"
        # The record this replica last read or wrote of each recent task, and its JSON: a change
        # tries it first (the swap script checks it is still the stored one).
        self._seen: KnownRecords[tuple[str, TaskRecord]] = KnownRecords(KNOWN_TASKS)

    # ------------------------------------------------------------------ plumbing

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Bound a call by the command timeout; Redis failing or silent is StoreUnavailable."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError as exc:
            raise StoreUnavailable(f"Redis store {self.where}: no answer within {self._timeout} s") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis store {self.where}: {exc or type(exc).__name__}") from exc

    async def _compare_and_swap(self, attempt: Callable[[bool], Awaitable[T | None]]) -> T:
        """Run `attempt(unsure)` (a read, then a conditional write; None: another writer came between)
        until it goes through. `unsure`: the previous attempt's connection broke, so its write may
        have gone through without its reply reaching us."""
        unsure = False
        async with self._guard():
            for _ in range(MAX_ATTEMPTS):
                try:
                    result = await attempt(unsure)
                except _LostReply:
                    unsure = True
                    continue
                if result is not None:
                    return result
                unsure = False
                await asyncio.sleep(random.uniform(0, 0.002))
        raise StoreUnavailable(f"Redis store {self.where}: a change lost {MAX_ATTEMPTS} times to others")

    def _index(self, task: TaskRecord) -> dict[tuple[str, str], float | None]:
        """The index entries of a task: (key, member) -> zset score, or None for a set member."""
        ordered = _ordered(task.created_at, task.task_id)
        entries: dict[tuple[str, str], float | None] = {
            (self._key("owner", task.owner), ordered): 0.0,
            (self._expiry, task.task_id): float(task.expires_at),
        }
        if task.dispatch is Dispatch.QUEUED and task.tool_name:
            entries[(self._key("queued", task.tool_name), ordered)] = 0.0
        if task.worker_id and task.dispatch in _WORKER_DISPATCH:
            entries[(self._key("worker-tasks", task.worker_id), task.task_id)] = None
        if task.dispatch is Dispatch.OFFERED:
            entries[(self._offers, task.task_id)] = float(task.lease_expires_at)
        return entries

    def _reindex(self, writes: _Writes, old: TaskRecord | None, new: TaskRecord | None) -> None:
        before = self._index(old) if old is not None else {}
        after = self._index(new) if new is not None else {}
        for (key, member), score in before.items():
            if (key, member) not in after:
                writes.add("SREM" if score is None else "ZREM", key, member)
        for (key, member), score in after.items():
            if (key, member) in before and before[(key, member)] == score:
                continue
            if score is None:
                writes.add("SADD", key, member)
            else:
                writes.add("ZADD", key, score, member)

    async def _load(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        if not task_ids:
            return []
        raws = await self._client.mget([self._key("task", i) for i in task_ids])
        return [None if raw is None else _task(_text(raw)) for raw in raws]

    async def _ordered_range(
        self, key: str, after: str | None, limit: int, keep: Callable[[TaskRecord], bool] | None = None
    ) -> list[TaskRecord]:
        """Up to `limit` records of an ordered index, strictly after member `after`; with `keep`,
        only records it keeps count, and reading goes on past the others (the index and the
        records are read in two steps: a record may have changed in between)."""
        found: list[TaskRecord] = []
        start = "-" if after is None else "(" + after
        while len(found) < limit:
            wanted = limit - len(found)
            members = _texts(await self._client.zrangebylex(key, start, "+", start=0, num=wanted))
            if not members:
                break
            records = await self._load([_task_id_of(m) for m in members])
            found.extend(r for r in records if r is not None and (keep is None or keep(r)))
            missing = [m for m, r in zip(members, records, strict=True) if r is None]
            if missing:  # Redis expired these records while no replica swept
                await self._client.zrem(key, *missing)
            if len(members) < wanted:
                break
            start = "(" + members[-1]
        return found

    async def _members(self, key: str, task_ids: Sequence[str], *, zset: bool) -> list[TaskRecord]:
        """The records of an unordered index's members (a zset's or a set's), dropping members Redis
        expired."""
        records = await self._load(task_ids)
        missing = [i for i, r in zip(task_ids, records, strict=True) if r is None]
        if missing:
            if zset:
                await self._client.zrem(key, *missing)
            else:
                await self._client.srem(key, *missing)
        return [r for r in records if r is not None]

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        await self.changes.close()
        await self._writer.aclose()
        await self._client.aclose()

    async def ping(self) -> None:
        self.changes.start()
        async with self._guard():
            await self._client.ping()
        if not await self.changes.wait_live(self._timeout):
            raise StoreUnavailable(f"Redis store {self.where}: the change feed is not subscribed")

    # ---------------------------------------------------------------------- tasks

    async def _swap(
        self,
        task_id: str,
        decide: Callable[[TaskRecord | None], TaskRecord | None],
        *,
        absent: bool = False,
    ) -> tuple[TaskRecord | None, TaskRecord | None]:
        """Replace a task's record (None: there is none) by `decide(current)`, atomically, with its
        index entries and the publish of its feed key; returns (before, after). `decide` returning
        its argument writes nothing; what it raises aborts the change and propagates.

        The first try decides on the record this replica last read or wrote (`absent`: on no
        record, for a new task), with no GET: the script writes only if the key still holds that
        record. When it does not (another replica wrote it), or when the decision on that record
        was to raise or to change nothing, the change reads the key and decides again, at once."""
        key = self._key("task", task_id)
        feed = (task_key(task_id),)
        intended: tuple[TaskRecord | None, str | None] | None = None
        # What the first try takes the key to hold (its JSON, its record): None to read it first.
        guessed: tuple[str | None, TaskRecord | None] | None
        guessed = (None, None) if absent else self._seen.get(task_id)

        async def attempt(unsure: bool) -> tuple[TaskRecord | None, TaskRecord | None] | None:
            nonlocal intended, guessed
            guess, guessed = (None if unsure else guessed), None
            while True:
                if guess is None:
                    raw = _maybe_text(await self._client.get(key))
                    previous, intended = intended, None
                    current = None if raw is None else self._decoded(task_id, raw)
                    if unsure and previous is not None and raw == previous[1]:
                        # The last attempt's write went through; its reply was lost.
                        self.changes.published_here(feed)
                        return previous[0], current
                else:
                    raw, current = guess
                try:
                    updated = decide(current)
                except Exception:
                    if guess is None:
                        raise
                    guess = None  # perhaps only the record kept says no: ask the key
                    continue
                if updated is current:
                    if guess is None:
                        return current, current
                    guess = None
                    continue
                writes, body = self._writes(key, feed, current, updated)
                intended = (current, body)
                expected = ["0", ""] if raw is None else ["1", raw]
                try:
                    done = await self._swap_script(keys=writes.keys, args=[*expected, *writes.args])
                except TimeoutError:
                    self._seen.forget(task_id)
                    raise  # the whole change's time ran out (an OSError too, but no lost reply)
                except (RedisConnectionError, OSError) as exc:
                    self._seen.forget(task_id)
                    raise _LostReply from exc
                if done:
                    if updated is not None and body is not None:
                        self._seen.remember(task_id, body, (body, updated))
                    else:
                        self._seen.forget(task_id)
                    self.changes.published_here(feed)
                    return current, updated
                self._seen.forget(task_id)
                if guess is None:
                    return None  # another writer came between: _compare_and_swap tries again
                guess = None  # the record kept was not the stored one: read it, try at once

        return await self._compare_and_swap(attempt)

    def _writes(
        self, key: str, feed: tuple[str, ...], current: TaskRecord | None, updated: TaskRecord | None
    ) -> tuple[_Writes, str | None]:
        """SWAP_SCRIPT's writes from `current` to `updated` (None: no record), and the new JSON."""
        writes = _Writes(key)
        body: str | None = None
        if updated is None:
            writes.add("DEL", key)
        else:
            body = encode_json(updated.to_json())
            if current is None:
                writes.add("SET", key, body, "PX", updated.ttl_ms + EXPIRY_GRACE_MS)
            else:
                writes.add("SET", key, body, "XX", "KEEPTTL")
                moved = updated.expires_at - current.expires_at
                if moved:
                    writes.add("PEXPIREBY", key, moved)
        self._reindex(writes, current, updated)
        for channel in self.changes.channels(feed):
            writes.add("PUBLISH", channel, self.changes.origin)
        return writes, body

    def _decoded(self, task_id: str, raw: str) -> TaskRecord:
        """The record stored as `raw`, kept as the one this replica last saw."""
        seen = self._seen.get(task_id)
        if seen is not None and seen[0] == raw:
            return seen[1]
        record = _task(raw)
        self._seen.remember(task_id, raw, (raw, record))
        return record

    async def insert_task(self, task: TaskRecord) -> None:
        self.changes.start()

        def insert(current: TaskRecord | None) -> TaskRecord:
            if current is not None:
                raise ValueError(f"task {task.task_id!r} exists")
            return task

        await self._swap(task.task_id, insert, absent=True)

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self._guard():
            raw = _maybe_text(await self._client.get(self._key("task", task_id)))
        if raw is None:
            self._seen.forget(task_id)
            return None
        return self._decoded(task_id, raw)

    async def update_task(self, task_id: str, change: TaskChange) -> TaskRecord:
        def update(current: TaskRecord | None) -> TaskRecord:
            if current is None:
                raise TaskNotFound(task_id)
            return change(current)

        _, updated = await self._swap(task_id, update)
        assert updated is not None
        return updated

    async def list_tasks(self, owner: str, after: TaskCursor | None, limit: int) -> list[TaskRecord]:
        start = None if after is None else _ordered(after.created_at, after.task_id)
        async with self._guard():
            return await self._ordered_range(self._key("owner", owner), start, limit)

    async def delete_task(self, task_id: str) -> bool:
        before, _ = await self._swap(task_id, lambda current: None)
        return before is not None

    async def delete_expired_tasks(self, now_ms: int) -> list[str]:
        async with self._guard():
            due = _texts(await self._client.zrangebyscore(self._expiry, "-inf", now_ms))

        def expired(current: TaskRecord | None) -> TaskRecord | None:
            return None if current is not None and current.expires_at <= now_ms else current

        deleted: list[str] = []
        gone: list[str] = []
        for task_id in due:
            before, after = await self._swap(task_id, expired)
            if before is None:
                gone.append(task_id)  # Redis expired it first: drop its entry, wake its waiters
            elif after is None:
                deleted.append(task_id)
        if gone:
            async with self._guard():
                await self._client.zrem(self._expiry, *gone)
            await self.changes.publish(task_key(task_id) for task_id in gone)
        return deleted

    # ------------------------------------------------------------------- dispatch

    async def queued_tasks(self, tool_names: Iterable[str], limit: int) -> list[TaskRecord]:
        found: list[TaskRecord] = []
        async with self._guard():
            for name in sorted(set(tool_names)):
                found.extend(await self._ordered_range(self._key("queued", name), None, limit, _queued))
        found.sort(key=lambda t: (t.created_at, t.task_id))
        return found[:limit]

    async def tasks_of_worker(self, worker_id: str) -> list[TaskRecord]:
        key = self._key("worker-tasks", worker_id)
        async with self._guard():
            task_ids = sorted(_texts(await self._client.smembers(key)))
            records = await self._members(key, task_ids, zset=False)
        return [r for r in records if r.worker_id == worker_id and r.dispatch in _WORKER_DISPATCH]

    async def stale_offers(self, now_ms: int) -> list[TaskRecord]:
        async with self._guard():
            task_ids = _texts(await self._client.zrangebyscore(self._offers, "-inf", now_ms))
            records = await self._members(self._offers, task_ids, zset=True)
        return [t for t in records if t.dispatch is Dispatch.OFFERED and t.lease_expires_at <= now_ms]

    # -------------------------------------------------------------------- workers

    async def put_worker(self, worker: WorkerRecord) -> None:
        async with self._guard():
            await self._client.hset(self._workers, worker.worker_id, encode_json(worker.to_json()))

    async def get_worker(self, worker_id: str) -> WorkerRecord | None:
        async with self._guard():
            raw = _maybe_text(await self._client.hget(self._workers, worker_id))
        return None if raw is None else WorkerRecord.from_json(json.loads(raw))

    async def delete_worker(self, worker_id: str) -> None:
        async with self._guard():
            await self._client.hdel(self._workers, worker_id)

    async def list_workers(self) -> list[WorkerRecord]:
        async with self._guard():
            raws = {_text(k): _text(v) for k, v in (await self._client.hgetall(self._workers)).items()}
        return [WorkerRecord.from_json(json.loads(raws[worker_id])) for worker_id in sorted(raws)]


class RedisSubscription(ClosingSubscription):
    """Interest in some feed keys, woken through Redis pub/sub.

    A wake that a disconnect may have swallowed is made up for: a wait returns True (re-check) when the
    feed was not subscribed at the subscription's last wake, and at least every `recheck_interval`.
    """

    def __init__(self, feed: RedisChangeFeed, inner: LocalSubscription) -> None:
        self._feed = feed
        self._inner = inner
        self._epoch = feed.epoch

    async def wait(self, timeout: float | None = None) -> bool:
        interval = self._feed.recheck_interval * random.uniform(0.8, 1.2)
        limit = interval if timeout is None else min(timeout, interval)
        if self._epoch is None or self._epoch != self._feed.epoch:
            # Subscribed while the feed was down, or it reconnected since: changes may have been missed.
            woke = await self._feed.wait_live(limit)
            if woke:
                await self._inner.wait(0)  # this re-check covers any wake already pending
        else:
            woke = await self._inner.wait(limit)
        if woke or limit < (timeout if timeout is not None else float("inf")):
            self._epoch = self._feed.epoch
            return True
        return False

    def close(self) -> None:
        self._inner.close()


class RedisChangeFeed:
    """The change feed through Redis pub/sub: a publish on any replica wakes waiters on every replica.

    One connection per store (from `listener`), subscribed to the pattern `<prefix>changes:*`, hands
    each message to the local subscribers of its key. A publish goes through Redis (`publisher`, or
    inside the write of a change), so nothing is published for a change that was not stored; this
    process's own subscribers are woken by the publisher itself (`published_here`).
    """

    def __init__(
        self,
        listener: Redis,
        publisher: Redis,
        channel_prefix: str,
        *,
        recheck_interval: float,
        timeout: float,
    ) -> None:
        self._client = listener
        self._publisher = publisher
        self._timeout = timeout
        self._channel_prefix = channel_prefix
        self.recheck_interval = recheck_interval
        self._local = LocalChangeFeed()
        self._live = asyncio.Event()
        self._epochs = 0
        self._listener: asyncio.Task[None] | None = None
        self._closed = False
        # Every publish of this feed carries it: this process wakes its own subscribers at once
        # (`published_here`) and skips the message when Redis hands it back.
        self.origin = secrets.token_hex(8)

    @property
    def epoch(self) -> int | None:
        """Which subscription of the pattern is live now (None: none is)."""
        return self._epochs if self._live.is_set() else None

    def start(self) -> None:
        """Start listening, in the running event loop, unless already listening."""
        if self._listener is None and not self._closed:
            self._listener = asyncio.create_task(self._listen(), name="taskservice-redis-feed")

    async def wait_live(self, timeout: float) -> bool:
        if self._live.is_set():
            return True
        self.start()
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see LocalSubscription.wait
                await self._live.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait((self._listener,), timeout=1.0)
            self._listener = None
        await self._client.aclose()

    def subscribe(self, keys: Iterable[str], *, first: bool = False) -> RedisSubscription:
        self.start()
        return RedisSubscription(self, self._local.subscribe((*keys, _RECONNECTED), first=first))

    def channels(self, keys: Iterable[str]) -> list[str]:
        """The pub/sub channels of feed keys."""
        return [self._channel_prefix + key for key in keys]

    def published_here(self, keys: Iterable[str]) -> None:
        """Wake this process's subscribers of keys that a write of this store published (tagged
        with `origin`): without waiting for Redis to hand the message back, which may come after
        the write's reply."""
        self._local.publish_now(keys)

    async def publish(self, keys: Iterable[str]) -> None:
        keys = tuple(keys)
        try:
            async with asyncio.timeout(self._timeout), self._publisher.pipeline(transaction=False) as pipe:
                for channel in self.channels(keys):
                    pipe.publish(channel, self.origin)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            raise StoreUnavailable(f"Redis change feed: {exc or type(exc).__name__}") from exc
        self.published_here(keys)

    async def _listen(self) -> None:
        delay = 0.05
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._channel_prefix) + "*"
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                await self._until_subscribed(pubsub)
                self._epochs += 1
                self._live.set()
                if self._epochs > 1:
                    log.info("change feed subscribed to Redis again")
                # Waiters re-read stored state: a change made while we were away woke nobody.
                self._local.publish_now((_RECONNECTED,))
                delay = 0.05
                await self._pump(pubsub)
            except Exception as exc:  # whatever broke the connection, the feed must come back
                if self._live.is_set():
                    log.warning("change feed lost Redis (%s); reconnecting", exc or type(exc).__name__)
            finally:
                self._live.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # unannotated before redis-py 8.2
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _until_subscribed(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FEED_PING_INTERVAL
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=max(deadline - loop.time(), 0.0))
            if message is not None and message["type"] == "psubscribe":
                return
        raise TimeoutError("Redis did not confirm the subscription")

    async def _pump(self, pubsub: PubSub) -> None:
        unanswered = 0
        while True:
            message = await pubsub.get_message(timeout=FEED_PING_INTERVAL)
            if message is None:
                if unanswered:
                    raise TimeoutError("Redis did not answer PING on the change feed")
                unanswered += 1
                await pubsub.ping()
                continue
            unanswered = 0
            if message["type"] == "pmessage" and message["data"] != self.origin:
                self._local.publish_now((message["channel"][len(self._channel_prefix) :],))
