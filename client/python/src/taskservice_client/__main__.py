"""`python -m taskservice_client run module:worker --target HOST:PORT`: run a worker module.

The module is imported (from the current directory too) and `worker` (or the
attribute after the colon) is a `Worker`, or a function that returns one.
Each flag has an environment variable twin. SIGTERM and SIGINT stop the
worker gracefully: it takes no new work, lets running tasks finish for up to
`--shutdown-timeout` seconds and hands the rest back; a second signal hands
them back at once.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from taskservice_client._channel import TLSConfig
from taskservice_client._worker import Worker


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskservice_client", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the Worker of a module until SIGTERM")
    run.add_argument("worker", metavar="MODULE[:ATTRIBUTE]", help="where the Worker is (attribute: worker)")
    run.add_argument(
        "--target",
        default=_env("TASKSERVICE_TARGET"),
        help="the service's gRPC target, any gRPC form (env TASKSERVICE_TARGET; default: the Worker's own)",
    )
    run.add_argument(
        "--token", default=_env("TASKSERVICE_TOKEN"), help="bearer token (env TASKSERVICE_TOKEN)"
    )
    run.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=_env("TASKSERVICE_TLS", "") in ("1", "true", "yes"),
        help="use TLS (env TASKSERVICE_TLS=1)",
    )
    run.add_argument("--tls-ca", default=_env("TASKSERVICE_TLS_CA"), help="PEM file of trusted roots")
    run.add_argument("--tls-cert", default=_env("TASKSERVICE_TLS_CERT"), help="PEM client certificate (mTLS)")
    run.add_argument("--tls-key", default=_env("TASKSERVICE_TLS_KEY"), help="PEM client key (mTLS)")
    run.add_argument("--tls-domain", default=_env("TASKSERVICE_TLS_DOMAIN"), help="server name to verify")
    run.add_argument(
        "--max-concurrent-tasks",
        type=int,
        default=_env("TASKSERVICE_MAX_CONCURRENT_TASKS"),
        help="tasks run at once (env TASKSERVICE_MAX_CONCURRENT_TASKS)",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        default=_env("TASKSERVICE_SHUTDOWN_TIMEOUT"),
        help="seconds running tasks may finish after SIGTERM before they are handed back",
    )
    run.add_argument(
        "--log-level", default=_env("TASKSERVICE_LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING, ERROR"
    )
    return parser


def load_worker(spec: str) -> Worker:
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ValueError(f"{spec!r}: expected MODULE[:ATTRIBUTE]")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    target: object = module
    for part in (attribute or "worker").split("."):
        target = getattr(target, part)
    if not isinstance(target, Worker) and callable(target):
        target = target()
    if not isinstance(target, Worker):
        raise TypeError(f"{spec!r} is a {type(target).__name__}, not a taskservice_client.Worker")
    return target


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def configure(worker: Worker, args: argparse.Namespace) -> None:
    if args.target:
        worker.target = args.target
    if args.token:
        worker.token = args.token
    if args.tls or args.tls_ca or args.tls_cert or args.tls_domain:
        worker.tls = TLSConfig(
            server_root_ca_cert=_read(args.tls_ca),
            client_cert=_read(args.tls_cert),
            client_private_key=_read(args.tls_key),
            domain=args.tls_domain,
        )
    if args.max_concurrent_tasks is not None:
        worker.max_concurrent_tasks = int(args.max_concurrent_tasks)
    if args.shutdown_timeout is not None:
        worker.shutdown_timeout = float(args.shutdown_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        worker = load_worker(args.worker)
        configure(worker, args)
    except (ImportError, AttributeError, TypeError, ValueError, OSError) as error:
        print(f"taskservice_client: cannot load {args.worker}: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(worker.run(handle_signals=True))
    except Exception as error:
        print(f"taskservice_client: the worker stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
