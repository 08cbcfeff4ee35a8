"""Bearer tokens, as both doors of the service read them: the gRPC services' `authorization`
metadata (taskservice.grpc_api.auth) and the MCP bridge's `Authorization` header
(taskservice.bridge.auth)."""

from __future__ import annotations

import hmac


def bearer_value(value: str | bytes | None) -> str | None:
    """The token of an `authorization: Bearer <token>` value, or None (absent, another scheme, empty)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(given: str, known: str) -> bool:
    """Compared in constant time, so that the time an answer takes tells nothing of the token."""
    return hmac.compare_digest(given.encode(), known.encode())


def check_token(token: str, what: str) -> str:
    """`token` when it can travel in a header as it is; ValueError naming `what` otherwise."""
    if not token or token != token.strip() or any(c in token for c in "\r\n\0") or " " in token:
        raise ValueError(f"{what} must be non-empty, without spaces or line breaks")
    return token
