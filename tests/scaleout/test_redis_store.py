"""What only the Redis store does: its URL, its failures, Redis's own expiry, the feed's reconnect.

The contract every store keeps is tests/store (which runs on Redis too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from taskservice.domain.errors import StoreUnavailable
from taskservice.domain.model import Dispatch, TaskRecord, TaskStatus
from taskservice.redis_testing import RedisServer, free_port
from taskservice.store import open_store
from taskservice.store.base import task_key
from taskservice.store.redis import EXPIRY_GRACE_MS, RedisTaskStore

from .support import WAIT

RedisFactory = Callable[..., RedisServer]


def make_task(task_id: str, **changes: object) -> TaskRecord:
    now = time.time_ns() // 1_000_000
    task = TaskRecord(
        task_id=task_id,
        owner="alice",
        status=TaskStatus.WORKING,
        created_at=now,
        last_updated_at=now,
        ttl_ms=60_000,
        poll_interval_ms=1_000,
    )
    return dataclasses.replace(task, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisTaskStore]:
    opened = RedisTaskStore(redis_url)
    await opened.ping()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client of the same Redis, to look behind the store."""
    client = Redis.from_url(redis_url.split("?")[0], decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def test_open_store_takes_redis_urls_and_a_key_prefix(redis_url: str) -> None:
    store = open_store("redis://127.0.0.1:6390/2?prefix=app.tasks:")
    assert isinstance(store, RedisTaskStore)
    assert store.prefix == "app.tasks:"
    default = open_store("redis://localhost")
    assert isinstance(default, RedisTaskStore)
    assert default.prefix == "mcptasks:"
    with pytest.raises(ValueError, match="prefix"):
        open_store("redis://localhost/0?prefix=no spaces*")
    with pytest.raises(ValueError, match="bad Redis store URL"):
        open_store("redis://localhost:notaport/0")


def test_passwords_stay_out_of_messages() -> None:
    store = RedisTaskStore("redis://:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in store.where


async def test_an_unreachable_redis_answers_store_unavailable_at_once() -> None:
    store = RedisTaskStore(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    try:
        for call in (
            store.ping(),
            store.get_task("t"),
            store.insert_task(make_task("t")),
            store.update_task("t", lambda t: t),
            store.list_tasks("alice", None, 10),
            store.queued_tasks(["echo"], 10),
            store.list_workers(),
            store.changes.publish(["tools"]),
        ):
            with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
                await call
    finally:
        await store.close()
    assert time.monotonic() - started < WAIT / 4


async def test_task_keys_expire_in_redis_a_grace_after_their_ttl(store: RedisTaskStore, raw: Redis) -> None:
    await store.insert_task(make_task("t1", ttl_ms=10_000))
    left = await raw.pttl(store.prefix + "task:t1")
    assert 10_000 < left <= 10_000 + EXPIRY_GRACE_MS
    await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="kept"))
    assert 10_000 < await raw.pttl(store.prefix + "task:t1") <= left


async def test_records_that_redis_expired_leave_every_index(store: RedisTaskStore, raw: Redis) -> None:
    """As when Redis expired a task while no replica ran a sweeper."""
    lapsed = make_task("lapsed", tool_name="echo", dispatch=Dispatch.QUEUED, ttl_ms=1)
    offered = make_task(
        "offered", tool_name="echo", dispatch=Dispatch.OFFERED, worker_id="w1", lease_id="l", ttl_ms=1
    )
    kept = make_task("kept", tool_name="echo", dispatch=Dispatch.QUEUED)
    for task in (lapsed, offered, kept):
        await store.insert_task(task)
    await raw.delete(store.prefix + "task:lapsed", store.prefix + "task:offered")

    assert [t.task_id for t in await store.list_tasks("alice", None, 10)] == ["kept"]
    assert [t.task_id for t in await store.queued_tasks(["echo"], 1)] == ["kept"]
    assert await store.tasks_of_worker("w1") == []
    assert await store.stale_offers(offered.lease_expires_at + 1) == []
    with store.changes.subscribe([task_key("lapsed")]) as subscription:
        assert await store.delete_expired_tasks(time.time_ns() // 1_000_000 + 1_000) == []
        assert await subscription.wait(timeout=WAIT) is True  # its waiters learn it is gone
    assert await raw.zcard(store.prefix + "owner:alice") == 1
    assert await raw.zcard(store.prefix + "expiry") == 1
    assert await raw.exists(store.prefix + "offers", store.prefix + "worker-tasks:w1") == 0


async def test_a_change_through_one_store_wakes_a_waiter_on_another(redis_url: str) -> None:
    first, second = RedisTaskStore(redis_url), RedisTaskStore(redis_url)
    try:
        await first.ping()
        await first.insert_task(make_task("t1"))
        with first.changes.subscribe([task_key("t1")]) as subscription:
            await second.update_task("t1", lambda t: dataclasses.replace(t, status_message="from B"))
            assert await subscription.wait(timeout=WAIT) is True
        stored = await first.get_task("t1")
        assert stored is not None
        assert stored.status_message == "from B"
    finally:
        await first.close()
        await second.close()


async def test_waiters_re_check_when_the_feed_comes_back_after_redis_restarted(
    redis_factory: RedisFactory,
) -> None:
    """Messages published while the feed was away are lost: every waiter is woken to re-read."""
    server = redis_factory(appendonly=True)
    store = RedisTaskStore(server.url())
    other = RedisTaskStore(server.url())
    try:
        await store.ping()
        await store.insert_task(make_task("t1"))
        with store.changes.subscribe([task_key("t1")]) as subscription:
            server.kill()
            with pytest.raises(StoreUnavailable):
                await store.ping()
            server.start()
            assert await subscription.wait(timeout=WAIT) is True  # the reconnect, not a message
            await other.update_task("t1", lambda t: dataclasses.replace(t, status_message="after"))
            assert await subscription.wait(timeout=WAIT) is True  # messages flow again
        await store.ping()
    finally:
        await store.close()
        await other.close()


async def test_a_call_cancelled_at_any_moment_ends(store: RedisTaskStore) -> None:
    """A gRPC stream whose client went away cancels its handler wherever it is: inside a Redis call
    too. (redis-py with a socket timeout, on Python 3.11, swallows such a cancellation and hangs.)"""
    await store.insert_task(make_task("t1"))

    async def busy() -> None:
        with store.changes.subscribe([task_key("t1")]) as subscription:
            while True:
                await store.update_task("t1", lambda t: dataclasses.replace(t, attempts=t.attempts + 1))
                await store.queued_tasks(["echo"], 5)
                await subscription.wait()

    for _ in range(100):
        call = asyncio.create_task(busy())
        await asyncio.sleep(random.uniform(0, 0.003))
        call.cancel()
        done, _ = await asyncio.wait([call], timeout=WAIT)
        assert done, "a cancelled call never ended"


# ------------------------------------------------------ the compare-and-swap write


def bump(task: TaskRecord) -> TaskRecord:
    return dataclasses.replace(task, attempts=task.attempts + 1)


def break_first_write(store: RedisTaskStore, monkeypatch: pytest.MonkeyPatch, *, ran: bool) -> list[int]:
    """The store's first conditional write loses its connection: after running (`ran`) or before.
    Returns the list the calls are counted in."""
    real = store._swap_script  # pyright: ignore[reportPrivateUsage]
    calls: list[int] = []

    async def breaking(**kwargs: object) -> object:
        calls.append(1)
        if len(calls) > 1:
            return await real(**kwargs)  # type: ignore[arg-type]
        if ran:
            await real(**kwargs)  # type: ignore[arg-type]
        raise RedisConnectionError("connection lost")

    monkeypatch.setattr(store, "_swap_script", breaking)
    return calls


@pytest.mark.parametrize("ran", [True, False], ids=["reply-lost", "write-lost"])
async def test_a_write_whose_connection_broke_is_made_exactly_once(
    store: RedisTaskStore, monkeypatch: pytest.MonkeyPatch, ran: bool
) -> None:
    await store.insert_task(make_task("t1"))
    calls = break_first_write(store, monkeypatch, ran=ran)
    assert (await store.update_task("t1", bump)).attempts == 1
    stored = await store.get_task("t1")
    assert stored is not None
    assert stored.attempts == 1
    # Reply lost: the re-read finds the write made, nothing is sent again. Write lost: sent again.
    assert len(calls) == (1 if ran else 2)


async def test_a_change_of_ttl_moves_the_keys_redis_expiry_by_as_much(
    store: RedisTaskStore, raw: Redis
) -> None:
    await store.insert_task(make_task("t1", ttl_ms=10_000))
    before = await raw.pttl(store.prefix + "task:t1")
    await store.update_task("t1", lambda t: dataclasses.replace(t, ttl_ms=70_000))
    after = await raw.pttl(store.prefix + "task:t1")
    assert before + 60_000 - 1_000 < after <= before + 60_000
    score = await raw.zscore(store.prefix + "expiry", "t1")
    stored = await store.get_task("t1")
    assert stored is not None
    assert score == stored.expires_at


async def test_a_write_wakes_this_process_before_it_returns_and_once(store: RedisTaskStore) -> None:
    """Its own subscribers are woken by the write itself; the message Redis hands back is skipped
    (it may arrive after the write's reply, and would wake them a second time)."""
    await store.insert_task(make_task("t1"))
    with store.changes.subscribe([task_key("t1")]) as subscription:
        await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="mine"))
        assert await subscription.wait(timeout=0) is True
        assert await subscription.wait(timeout=0.3) is False


def count_calls(store: RedisTaskStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the store's GETs of a key and its conditional writes (each a round trip) from now on."""
    counts = {"get": 0, "swap": 0}
    real_get = store._client.get  # pyright: ignore[reportPrivateUsage]
    real_swap = store._swap_script  # pyright: ignore[reportPrivateUsage]

    async def get(*args: object) -> object:
        counts["get"] += 1
        return await real_get(*args)  # type: ignore[arg-type]

    async def swap(**kwargs: object) -> object:
        counts["swap"] += 1
        return await real_swap(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store._client, "get", get)  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(store, "_swap_script", swap)
    return counts


async def test_a_change_of_a_task_this_store_knows_is_one_round_trip(
    store: RedisTaskStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = count_calls(store, monkeypatch)
    await store.insert_task(make_task("t1"))
    assert counts == {"get": 0, "swap": 1}  # a new task: written on the guess that there is none
    updated = await store.update_task("t1", lambda t: dataclasses.replace(t, status_message="one"))
    assert counts == {"get": 0, "swap": 2}  # the record it wrote: no GET before the write
    assert await store.get_task("t1") == updated
    # A store that has only read the task (another replica, say) changes it in one round trip too.
    other = RedisTaskStore(redis_url)
    try:
        other_counts = count_calls(other, monkeypatch)
        assert await other.get_task("t1") == updated
        changed = await other.update_task("t1", bump)
        assert other_counts == {"get": 1, "swap": 1}
        assert changed == dataclasses.replace(updated, attempts=1)
    finally:
        await other.close()


async def test_a_change_after_another_store_wrote_the_task_is_made_on_the_stored_record(
    store: RedisTaskStore, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.insert_task(make_task("t1"))
    other = RedisTaskStore(redis_url)
    try:
        await other.update_task("t1", lambda t: dataclasses.replace(bump(t), status_message="other's"))
    finally:
        await other.close()
    counts = count_calls(store, monkeypatch)
    changed = await store.update_task("t1", bump)  # its record of t1 is the one before the other's write
    assert changed.attempts == 2  # both changes, neither lost
    assert changed.status_message == "other's"
    assert await store.get_task("t1") == changed
    # The write on the record kept is refused by the script; the change reads the key and writes.
    assert counts == {"get": 2, "swap": 2}  # the change's GET, then get_task's


async def test_what_the_record_kept_decides_is_checked_against_the_stored_one(
    store: RedisTaskStore, redis_url: str
) -> None:
    """A refusal, or a decision to change nothing, made on the record this store last saw holds only
    if the stored record says the same: another replica may have changed the task since."""
    await store.insert_task(make_task("t1"))
    await store.insert_task(make_task("t2"))
    other = RedisTaskStore(redis_url)
    try:
        for task_id in ("t1", "t2"):
            await other.update_task(task_id, lambda t: dataclasses.replace(t, status_message="ready"))
    finally:
        await other.close()

    def only_when_ready(task: TaskRecord) -> TaskRecord:
        if task.status_message != "ready":
            raise ValueError("not ready")
        return bump(task)

    assert (await store.update_task("t1", only_when_ready)).attempts == 1

    def unless_ready(task: TaskRecord) -> TaskRecord:
        return task if task.status_message != "ready" else dataclasses.replace(task, status_message="done")

    assert (await store.update_task("t2", unless_ready)).status_message == "done"
    stored = await store.get_task("t2")
    assert stored is not None
    assert stored.status_message == "done"


async def test_the_records_a_redis_store_keeps_are_bounded(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskservice.store.redis.KNOWN_TASKS", 3)
    store = RedisTaskStore(redis_url)
    try:
        for index in range(10):
            await store.insert_task(make_task(f"t{index}"))
        assert len(store._seen) == 3  # pyright: ignore[reportPrivateUsage]
        assert await store.delete_task("t9")
        assert len(store._seen) == 2  # pyright: ignore[reportPrivateUsage]
        assert (await store.update_task("t0", bump)).attempts == 1  # one it no longer keeps: read first
    finally:
        await store.close()
