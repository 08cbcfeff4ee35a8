"""Channels to the service: targets, TLS, bearer tokens and retries."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence

import grpc


@dataclasses.dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS for the connection to the service.

    With no field set the system's root certificates verify the server.
    `client_cert` and `client_private_key` (PEM) turn on mutual TLS;
    `domain` overrides the name the server's certificate is checked against.
    """

    server_root_ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_private_key: bytes | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_private_key is None):
            raise ValueError("client_cert and client_private_key go together")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.server_root_ca_cert,
            private_key=self.client_private_key,
            certificate_chain=self.client_cert,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How calls retry while the service is unreachable (UNAVAILABLE, a broken stream).

    Waits grow from `initial_backoff` by `multiplier` up to `max_backoff`
    seconds, each with up to `jitter` of itself added at random.
    `give_up_after` bounds the time spent retrying one call (None: retry
    until the call is cancelled, which is what a worker wants: a restart of
    the service must not lose its work).
    """

    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    give_up_after: float | None = None

    def __post_init__(self) -> None:
        if self.initial_backoff <= 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 < initial_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.give_up_after is not None and self.give_up_after < 0:
            raise ValueError("give_up_after must not be negative")

    def backoff(self) -> Backoff:
        return Backoff(self)


class Backoff:
    """The waits of one retried call."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._next = policy.initial_backoff
        self._started = time.monotonic()
        self.attempts = 0

    def reset(self) -> None:
        self._next = self._policy.initial_backoff
        self._started = time.monotonic()

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or None when the policy gives up."""
        self.attempts += 1
        limit = self._policy.give_up_after
        elapsed = time.monotonic() - self._started
        if limit is not None and elapsed >= limit:
            return None
        delay = self._next * (1 + random.uniform(0, self._policy.jitter))
        self._next = min(self._next * self._policy.multiplier, self._policy.max_backoff)
        if limit is not None:
            delay = min(delay, max(limit - elapsed, 0.0))
        return delay


ChannelOptions = Sequence[tuple[str, str | int]]

_DEFAULT_OPTIONS: dict[str, str | int] = {
    # Reconnect quickly after the service restarts (gRPC's own default grows to 120 s).
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2_000,
    # Notice a dead peer during long waits (an elicitation may wait for hours).
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.http2.max_pings_without_data": 0,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.enable_retries": 0,
}


def channel_options(extra: ChannelOptions | None = None) -> list[tuple[str, str | int]]:
    options = dict(_DEFAULT_OPTIONS)
    options.update(dict(extra or ()))
    return list(options.items())


def open_channel(
    target: str,
    *,
    tls: TLSConfig | bool = False,
    options: ChannelOptions | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel; `target` is any gRPC target (`host:port`, `dns:///`, `ipv4:a:1,b:2`, `unix:`)."""
    if not target:
        raise ValueError("target must not be empty")
    opts = channel_options(options)
    if tls is False:
        return grpc.aio.insecure_channel(target, options=opts)
    config = TLSConfig() if tls is True else tls
    if config.domain:
        opts.append(("grpc.ssl_target_name_override", config.domain))
    return grpc.aio.secure_channel(target, config.credentials(), options=opts)
