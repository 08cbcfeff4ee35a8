"""Who an MCP client is, for the bridge's HTTP transport: named principals and their tokens.

With a tokens file, every request to /mcp must carry `Authorization: Bearer <token>` of one
of its principals, and the tasks a client creates belong to that principal instead of to
its MCP session: the same client finds them again in a later session (after a restart or a
reconnect), and another principal's clients see "not found". An MCP session stays with the
principal that opened it. The file has one principal per line, `NAME TOKEN`; blank lines
and lines starting with `#` are skipped.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from taskservice.credentials import bearer_value, check_token, same_secret

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")

PRINCIPAL_KEY = "taskservice.principal"
"""Where the HTTP endpoint puts the caller's principal in the request's ASGI scope, for the bridge."""


@dataclasses.dataclass(frozen=True)
class ClientTokens:
    """Each principal's token."""

    tokens: dict[str, str]  # principal -> token

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("no principal: give at least one line NAME TOKEN")
        seen: dict[str, str] = {}
        for name, token in self.tokens.items():
            if not NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a principal name (letters, digits and ._@:- only)")
            check_token(token, f"the token of {name}")
            if token in seen:
                raise ValueError(f"{seen[token]} and {name} have the same token")
            seen[token] = name

    @classmethod
    def from_file(cls, path: str) -> ClientTokens:
        """Read a tokens file; ValueError naming the file and line for what is wrong."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"cannot read the MCP tokens file {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        tokens: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if len(words) != 2:
                raise ValueError(f"{path}:{number}: expected NAME TOKEN")
            name, token = words
            if name in tokens:
                raise ValueError(f"{path}:{number}: {name} is given twice")
            tokens[name] = token
        try:
            return cls(tokens)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def principal(self, authorization: str | bytes | None) -> str | None:
        """The principal whose token an `Authorization` header value carries, or None.

        Every token is compared, each in constant time, so the answer's time says nothing."""
        given = bearer_value(authorization)
        found: str | None = None
        for name, token in self.tokens.items():
            if given is not None and same_secret(given, token):
                found = name
        return found


def owner_of(principal: str) -> str:
    """The owner a principal's tasks are stored under (a session's are `session:...`)."""
    return f"principal:{principal}"


def plain_call_owner(owner: str) -> str:
    """The owner of the tasks a client's plain tools/call (one without `task`) runs as, the client
    being `owner`: the client never asked for a task, so its tasks/list, tasks/get and tasks/cancel
    do not see them. No principal name (NAME) and no session id holds a '/', so this is no
    client's owner ("alice:call" is a principal name, "principal:alice/call" nobody's)."""
    return f"{owner}/call"
