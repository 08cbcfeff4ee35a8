"""Who may call which service: bearer tokens per role, and the server's TLS.

The two services are two roles. Workers call the TaskService with a worker token; a bridge
calls the BridgeService with a bridge token. So a worker's credentials cannot list or read
other owners' tasks, create tasks or answer for a client, and a bridge's cannot complete a
task. Each role's token is optional: a service given no token for a role serves that role
to anyone who reaches it (the loopback sidecar). Health and reflection are always open, for
probes and grpcurl.

A call carries its token as `authorization: Bearer <token>` metadata (what the Python and
Node stubs send with `token=`, and grpcurl with `-H 'authorization: Bearer ...'`). A call
with no token or an unknown one ends with UNAUTHENTICATED, one with the other role's token
with PERMISSION_DENIED; either before its handler runs, so nothing is read or changed.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_status import rpc_status

from taskservice.credentials import bearer_value, check_token, same_secret
from taskservice.grpc_api.errors import transport_status

WORKER = "worker"
BRIDGE = "bridge"


@dataclasses.dataclass(frozen=True, slots=True)
class Tokens:
    """The bearer token each role must present; None leaves that role's service open."""

    worker: str | None = None
    bridge: str | None = None

    def __post_init__(self) -> None:
        for role, token in ((WORKER, self.worker), (BRIDGE, self.bridge)):
            if token is not None:
                check_token(token, f"the {role} token")

    @property
    def any(self) -> bool:
        return self.worker is not None or self.bridge is not None


@dataclasses.dataclass(frozen=True, slots=True)
class ServerTLS:
    """The listener's certificate and key (PEM); with `client_ca`, clients must present a
    certificate it signed (mutual TLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: str, key: str, client_ca: str | None = None) -> ServerTLS:
        """Read the PEM files and check that they make a TLS server (the key is the
        certificate's): OSError says which file is wrong. gRPC itself would only log
        "Invalid private key" and fail to bind."""
        tls = cls(read_pem(cert, "certificate"), read_pem(key, "key"), None)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            why = "the key is not the certificate's" if "KEY_VALUES_MISMATCH" in str(exc) else str(exc)
            raise OSError(f"the TLS certificate {cert} and key {key} do not go together: {why}") from None
        if client_ca:
            roots = read_pem(client_ca, "client CA")
            try:
                context.load_verify_locations(cadata=roots.decode("ascii", "replace"))
            except ssl.SSLError as exc:
                raise OSError(f"the TLS client CA {client_ca} holds no usable certificate: {exc}") from None
            tls = dataclasses.replace(tls, client_ca=roots)
        return tls

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def read_pem(path: str, what: str) -> bytes:
    """A PEM file's bytes; OSError, naming the file, when it cannot be read or is not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise OSError(f"the TLS {what} {path} is not a PEM file")
    return data


def bearer(metadata: Any) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, if the call has one."""
    for key, value in metadata or ():
        if key == "authorization":
            return bearer_value(value)
    return None


# grpc-stubs type the continuation's handler as never None; grpc gives None for an unknown method.
# grpc's classes are generic only in grpc-stubs, hence the strings and the base below.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]]
if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class TokenInterceptor(_Interceptor):
    """Checks each call to a service of a role against that role's token."""

    def __init__(self, tokens: Tokens, services: dict[str, str]) -> None:
        """`services`: the full name of each role's service (`mcptasks.v1.TaskService`: worker)."""
        self.tokens = tokens
        self.services = services

    def _refusal(self, method: str, metadata: Any) -> tuple[grpc.StatusCode, str, str] | None:
        service = method.lstrip("/").partition("/")[0]
        role = self.services.get(service)
        if role is None:
            return None  # health, reflection
        wanted = self.tokens.worker if role == WORKER else self.tokens.bridge
        if wanted is None:
            return None
        given = bearer(metadata)
        if given is not None and same_secret(given, wanted):
            return None
        name = service.rpartition(".")[2]
        other = self.tokens.bridge if role == WORKER else self.tokens.worker
        if given is not None and other is not None and same_secret(given, other):
            other_role = BRIDGE if role == WORKER else WORKER
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                "WRONG_ROLE",
                f"{name} takes the {role} token; this call carries the {other_role} token",
            )
        if given is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "TOKEN_MISSING",
                f"{name} needs the {role} token: send the metadata 'authorization: Bearer <token>'",
            )
        return grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", f"{name}: the token is not the {role} token"

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] | None = await continuation(handler_call_details)
        refusal = self._refusal(handler_call_details.method, handler_call_details.invocation_metadata)
        if handler is None or refusal is None:
            return handler  # type: ignore[return-value]  # None: gRPC answers UNIMPLEMENTED
        return _refused(handler, *refusal)


def _refused(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, reason: str, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as `handler` that ends the call with `code` at once."""
    status = rpc_status.to_status(transport_status(code, reason, message))

    async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(status.code, status.details, status.trailing_metadata)

    make: Callable[..., grpc.RpcMethodHandler[Any, Any]]
    if handler.request_streaming and handler.response_streaming:
        make = grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        make = grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        make = grpc.unary_stream_rpc_method_handler
    else:
        make = grpc.unary_unary_rpc_method_handler
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
