"""Fixtures shared by every test directory: real `redis-server` processes on free loopback ports.

`redis_server` (one per session, no persistence) serves every test that needs Redis; `redis_url`
gives each test a key prefix of its own, so tests share the server without seeing each other.
`redis_factory` starts servers a test owns (with AOF, to restart or kill). Servers are stopped by
their pid. A missing `redis-server` fails the tests that need it: it is never a reason to skip.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskservice.redis_testing import RedisServer, RedisServerError

_prefixes = itertools.count(1)

RedisFactory = Callable[..., RedisServer]


def _started(server: RedisServer) -> RedisServer:
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(f"the Redis tests need a redis-server: {exc}", pytrace=False)
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = _started(RedisServer(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis store URL with a key prefix no other test uses."""
    return redis_server.url(f"t{next(_prefixes)}:")


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """Start servers of this test's own: `redis_factory(appendonly=True)`; killed at its end."""
    servers: list[RedisServer] = []

    def start(*, appendonly: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendonly=appendonly)
        servers.append(server)
        return _started(server)

    try:
        yield start
    finally:
        for server in servers:
            server.kill()
