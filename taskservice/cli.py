"""The `taskservice` command.

Every flag has an environment variable twin (`TASKSERVICE_` + the flag in
upper case, dashes as underscores); a flag given on the command line wins. A
bad flag, an unusable store or an address that cannot be bound ends the
command with one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from taskservice import __version__
from taskservice.domain.service import ServiceLimits

if TYPE_CHECKING:
    from taskservice_client._channel import TLSConfig

    from taskservice.bridge import HttpBridgeServer, McpBridge
    from taskservice.bridge.auth import ClientTokens
    from taskservice.grpc_api.auth import ServerTLS, Tokens

# The service, stores and bridge are imported where they are used: a bad flag is
# reported without paying for gRPC, the MCP SDK and uvicorn to load.

log = logging.getLogger("taskservice")

ENV_PREFIX = "TASKSERVICE_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class UsageError(Exception):
    """A problem with how the command was called: reported as one line."""


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def default_state_dir() -> Path:
    if explicit := os.environ.get(ENV_PREFIX + "STATE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "taskservice"


def default_store_url() -> str:
    path = (default_state_dir() / "tasks.db").absolute()
    return f"sqlite:///{path}"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _env_bool(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer") from None


def listen_address(value: str) -> str:
    """HOST:PORT with a port gRPC and uvicorn both take as it is (gRPC would wrap 99999 to 34463)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a HOST:PORT address with a port from 0 to 65535")
    return value


def _add(
    parser: argparse.ArgumentParser,
    flag: str,
    help_text: str,
    default: str,
    kind: Callable[[str], str] = str,
) -> None:
    name = env_name(flag)
    parser.add_argument(
        flag,
        type=kind,
        default=os.environ.get(name, default),
        # No default to show for an optional flag, and a token's value is not printed.
        help=f"{help_text} (env {name})"
        if kind is secret or not default
        else f"{help_text} (env {name}; default %(default)s)",
    )


def _add_int(parser: argparse.ArgumentParser, flag: str, help_text: str, default: int) -> None:
    name = env_name(flag)
    parser.add_argument(
        flag,
        type=int,
        default=_env_int(name, default),
        metavar="N",
        help=f"{help_text} (env {name}; default %(default)s)",
    )


def secret(value: str) -> str:
    """A bearer token (its --help line does not show the value its environment twin gives)."""
    from taskservice.credentials import check_token

    try:
        return check_token(value, "a token") if value else value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_service_tls(parser: argparse.ArgumentParser) -> None:
    name = env_name("--service-tls")
    parser.add_argument(
        "--service-tls",
        action="store_true",
        default=_env_bool(name),
        help=f"connect to the service over TLS, checked against the system's roots (env {name}=1)",
    )
    _add(parser, "--service-tls-ca", "PEM roots to check the service's certificate against (implies TLS)", "")
    _add(parser, "--service-tls-cert", "PEM client certificate, for a service that asks for one (mTLS)", "")
    _add(parser, "--service-tls-key", "PEM private key of --service-tls-cert", "")


def service_tls(args: argparse.Namespace) -> TLSConfig | None:
    """The TLS of a connection to the service, from the --service-tls flags."""
    from taskservice_client._channel import TLSConfig

    from taskservice.grpc_api.auth import read_pem

    if not (args.service_tls or args.service_tls_ca or args.service_tls_cert or args.service_tls_key):
        return None
    if bool(args.service_tls_cert) != bool(args.service_tls_key):
        raise UsageError("--service-tls-cert and --service-tls-key go together")
    files: dict[str, bytes | None] = {}
    for flag, what in (("ca", "CA"), ("cert", "certificate"), ("key", "key")):
        path = getattr(args, f"service_tls_{flag}")
        try:
            files[flag] = read_pem(path, what) if path else None
        except OSError as exc:
            raise UsageError(f"--service-tls-{flag}: {exc}") from None
    return TLSConfig(
        server_root_ca_cert=files["ca"], client_cert=files["cert"], client_private_key=files["key"]
    )


def server_security(args: argparse.Namespace) -> tuple[Tokens, ServerTLS | None]:
    """The tokens and TLS `serve` was given, checked: one clear line for what does not fit."""
    from taskservice.grpc_api.auth import ServerTLS, Tokens

    tokens = Tokens(worker=args.worker_token or None, bridge=args.bridge_token or None)
    if not args.grpc_tls_cert and not args.grpc_tls_key:
        if args.grpc_tls_client_ca:
            raise UsageError("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key")
        return tokens, None
    if not args.grpc_tls_cert or not args.grpc_tls_key:
        raise UsageError("--grpc-tls-cert and --grpc-tls-key go together")
    try:
        tls = ServerTLS.from_files(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca or None)
    except OSError as exc:
        raise UsageError(str(exc)) from None
    return tokens, tls


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="taskservice", description="MCP task context as a gRPC service.")
    parser.add_argument("--version", action="version", version=f"taskservice {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve = commands.add_parser("serve", help="run the gRPC service (and the MCP bridge)")
    _add(serve, "--grpc-listen", "address of the gRPC service", "127.0.0.1:50051", listen_address)
    _add(
        serve,
        "--mcp-listen",
        "address of the MCP bridge (streamable HTTP at /mcp)",
        "127.0.0.1:8000",
        listen_address,
    )
    serve.add_argument(
        "--no-mcp",
        action="store_true",
        default=_env_bool(env_name("--no-mcp")),
        help=f"run the gRPC service alone, without the MCP bridge (env {env_name('--no-mcp')}=1)",
    )
    serve.add_argument(
        "--store",
        default=os.environ.get(env_name("--store"), ""),
        help="store URL: memory://, sqlite:///relative.db, sqlite:////absolute.db or redis://host:port/db"
        f" (env {env_name('--store')}; default: tasks.db in $TASKSERVICE_STATE_DIR,"
        " else $XDG_STATE_HOME/taskservice, else ~/.local/state/taskservice)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get(env_name("--log-level"), "info").lower(),
        help=f"log verbosity (env {env_name('--log-level')}; default %(default)s)",
    )
    _add(serve, "--mcp-tokens-file", "MCP clients' principals and bearer tokens, a NAME TOKEN per line", "")
    _add(serve, "--worker-token", "bearer token workers must send to the TaskService", "", secret)
    _add(serve, "--bridge-token", "bearer token bridges must send to the BridgeService", "", secret)
    _add(serve, "--grpc-tls-cert", "PEM certificate chain: serve gRPC over TLS", "")
    _add(serve, "--grpc-tls-key", "PEM private key of --grpc-tls-cert", "")
    _add(serve, "--grpc-tls-client-ca", "PEM roots that clients' certificates must chain to (mTLS)", "")
    health = commands.add_parser(
        "health", help="check a running service's gRPC health (exit 0 when SERVING): for probes"
    )
    _add(health, "--service", "address of the task service (any gRPC target)", "127.0.0.1:50051")
    _add_service_tls(health)
    _add_int(health, "--timeout-ms", "how long to wait for the answer", 2_000)
    health.add_argument("--log-level", choices=LOG_LEVELS, default="warning", help=argparse.SUPPRESS)
    bridge = commands.add_parser("bridge", help="run an MCP bridge alone, in front of a running service")
    _add(bridge, "--service", "address of the task service (any gRPC target)", "127.0.0.1:50051")
    _add(bridge, "--service-token", "the service's bridge token, sent with every call", "", secret)
    _add(bridge, "--mcp-tokens-file", "MCP clients' principals and bearer tokens, a NAME TOKEN per line", "")
    _add_service_tls(bridge)
    _add(
        bridge,
        "--mcp-listen",
        "address of the bridge (streamable HTTP at /mcp)",
        "127.0.0.1:8000",
        listen_address,
    )
    bridge.add_argument(
        "--stdio",
        action="store_true",
        default=_env_bool(env_name("--stdio")),
        help=f"speak MCP over stdin/stdout instead of HTTP (env {env_name('--stdio')}=1)",
    )
    bridge.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=os.environ.get(env_name("--log-level"), "info").lower(),
        help=f"log verbosity (env {env_name('--log-level')}; default %(default)s)",
    )
    defaults = ServiceLimits()
    _add_int(serve, "--default-ttl-ms", "task retention when the client asks none", defaults.default_ttl_ms)
    _add_int(serve, "--max-ttl-ms", "cap on the retention a client may ask", defaults.max_ttl_ms)
    _add_int(serve, "--poll-interval-ms", "polling interval suggested to clients", defaults.poll_interval_ms)
    _add_int(
        serve, "--lease-ttl-ms", "how long a worker's lease lasts without a heartbeat", defaults.lease_ttl_ms
    )
    _add_int(serve, "--max-payload-bytes", "largest JSON payload accepted", defaults.max_payload_bytes)
    _add_int(serve, "--shutdown-grace-ms", "how long a stop may take (MCP requests, unary calls)", 5_000)
    _add_int(bridge, "--shutdown-grace-ms", "how long a stop may take (MCP requests)", 5_000)
    return parser


def limits_from(args: argparse.Namespace) -> ServiceLimits:
    try:
        return ServiceLimits(
            default_ttl_ms=args.default_ttl_ms,
            max_ttl_ms=args.max_ttl_ms,
            poll_interval_ms=args.poll_interval_ms,
            lease_ttl_ms=args.lease_ttl_ms,
            max_payload_bytes=args.max_payload_bytes,
            sweep_interval_ms=max(min(1_000, args.lease_ttl_ms // 4), 10),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


async def serve(args: argparse.Namespace) -> None:
    from taskservice.bridge import McpBridge
    from taskservice.domain.errors import StoreUnavailable
    from taskservice.domain.service import TaskManager
    from taskservice.grpc_api.server import TaskServiceServer
    from taskservice.store import open_store
    from taskservice.store.base import redacted_url

    limits = limits_from(args)
    grace = shutdown_grace(args)
    tokens, tls = server_security(args)
    if args.no_mcp and args.mcp_tokens_file:
        raise UsageError("--mcp-tokens-file is for the bridge, which --no-mcp leaves out")
    client_tokens = mcp_tokens(args)
    store_url = args.store or default_store_url()
    try:
        store = open_store(store_url)
        await store.ping()
    except (ValueError, StoreUnavailable) as exc:
        raise UsageError(str(exc)) from None
    manager = TaskManager(store, limits)
    server = TaskServiceServer(manager, args.grpc_listen, tokens=tokens, tls=tls)
    try:
        await server.start()
    except OSError as exc:
        await store.close()
        raise UsageError(str(exc)) from None
    log.info("store: %s", redacted_url(store_url))
    http: HttpBridgeServer | None = None
    bridge: McpBridge | None = None
    signalled: float | None = None
    try:
        if not args.no_mcp:
            bridge = McpBridge(server.local_bridge())
            http = open_http(bridge, args.mcp_listen, client_tokens)
            await bridge.start()
        signalled = await run_until_signal(http, grace, on_signal=server.stopping)
    finally:
        # NOT_SERVING since the signal, and the HTTP side has stopped: it answered the MCP
        # requests that waited (call again) and ended its sessions. The bridge in this process
        # lets go of the service next, then the service ends its streams (other workers and
        # bridges re-attach, here after a restart or to another replica) and stops, in what
        # is left of the grace.
        if bridge is not None:
            await bridge.close()
        left = grace if signalled is None else grace - (asyncio.get_running_loop().time() - signalled)
        await server.stop(max(left, 0.0))
        await store.close()


def mcp_tokens(args: argparse.Namespace) -> ClientTokens | None:
    """The principals of --mcp-tokens-file, checked; None without it."""
    from taskservice.bridge.auth import ClientTokens

    if not args.mcp_tokens_file:
        return None
    try:
        return ClientTokens.from_file(args.mcp_tokens_file)
    except ValueError as exc:
        raise UsageError(f"--mcp-tokens-file: {exc}") from None


def open_http(bridge: McpBridge, address: str, tokens: ClientTokens | None = None) -> HttpBridgeServer:
    from taskservice.bridge import HttpBridgeServer
    from taskservice.bridge.transports import MCP_PATH

    try:
        http = HttpBridgeServer(bridge, address, tokens=tokens)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot listen on {address} for MCP: {exc}") from None
    log.info(
        "MCP bridge listening on http://%s:%d%s%s",
        address.rpartition(":")[0],
        http.port,
        MCP_PATH,
        f" ({len(tokens.tokens)} principals, bearer tokens required)" if tokens is not None else "",
    )
    return http


def freeze_startup_heap() -> None:
    """Move what start-up made (modules, the SDK's models, the servers) out of the GC's reach.

    `taskservice serve` starts with about 86,000 such objects, which every full collection
    walked again while the event loop waited: 47 ms to 51 ms a collection here, 5 ms once
    they are frozen. Objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()
    log.debug("start-up heap frozen: %d objects", gc.get_freeze_count())


def shutdown_grace(args: argparse.Namespace) -> float:
    """--shutdown-grace-ms, in seconds."""
    if args.shutdown_grace_ms < 0:
        raise UsageError(f"--shutdown-grace-ms must not be negative, got {args.shutdown_grace_ms}")
    return float(args.shutdown_grace_ms) / 1000


async def run_until_signal(
    http: HttpBridgeServer | None,
    grace: float,
    *,
    on_signal: Callable[[], Awaitable[None]] | None = None,
) -> float:
    """Serve until SIGTERM or SIGINT, once start-up's heap is frozen; then run `on_signal` and
    stop the HTTP bridge, within `grace` seconds. Returns the loop's time of the signal."""
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = None if http is None else asyncio.create_task(http.serve())
    await stop.wait()
    signalled = loop.time()
    log.info("shutting down")
    if on_signal is not None:
        await on_signal()
    if http is not None and serving is not None:
        http.stop(grace)
        await serving
    return signalled


async def run_bridge(args: argparse.Namespace) -> None:
    from taskservice.bridge import McpBridge, serve_stdio
    from taskservice.bridge.server import ServiceRefused

    if args.stdio and args.mcp_tokens_file:
        raise UsageError(
            "--mcp-tokens-file is for HTTP: over stdio the client is the process that started the bridge"
        )
    client_tokens = mcp_tokens(args)
    grace = shutdown_grace(args)
    bridge = McpBridge(args.service, token=args.service_token or None, tls=service_tls(args))
    try:
        try:
            await bridge.check_access()
        except ServiceRefused as exc:
            raise UsageError(str(exc)) from None
        await bridge.start()
        if args.stdio:
            freeze_startup_heap()
            await serve_stdio(bridge)
        else:
            await run_until_signal(open_http(bridge, args.mcp_listen, client_tokens), grace)
    finally:
        await bridge.close()


async def check_health(args: argparse.Namespace) -> int:
    """Print the service's overall health status; 0 when SERVING, 1 otherwise."""
    import grpc
    import grpc.aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from taskservice_client._channel import open_channel

    async with open_channel(args.service, tls=service_tls(args) or False) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=args.timeout_ms / 1000)
        except grpc.aio.AioRpcError as exc:
            print(f"{args.service}: {exc.code().name}: {exc.details()}")
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.service}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


SDK_LOGGER = "mcp"
"""The MCP SDK's loggers: at INFO they log a line per request handled ("Processing request of
type ..."), which is a debugging aid, not a service event."""


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; the MCP SDK's per-request lines only at `debug` (uvicorn, see
    HttpBridgeServer, logs warnings and errors only)."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    logging.getLogger(SDK_LOGGER).setLevel(
        numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"taskservice: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    try:
        if args.command == "serve":
            asyncio.run(serve(args))
        elif args.command == "bridge":
            asyncio.run(run_bridge(args))
        elif args.command == "health":
            return asyncio.run(check_health(args))
    except UsageError as exc:
        print(f"taskservice: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
