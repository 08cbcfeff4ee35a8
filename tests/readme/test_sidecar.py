"""README "Deploy as a sidecar": the manifest and the unit start what they say they start."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

import pytest
import yaml
from taskservice_client.__main__ import _parser as worker_parser

from taskservice.cli import build_parser, env_name

from .readme_blocks import fenced, section

TEXT = section("Deploy as a sidecar")


def parse(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Parse a taskservice command line as the container would run it, its environment applied."""
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("TASKSERVICE_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            return build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README command does not parse: {shlex.join(argv)} ({exc})")


def known_variables(command: str) -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {env_name(a.option_strings[0]) for a in commands.choices[command]._actions if a.option_strings}


def manifest() -> dict[str, Any]:
    (block,) = fenced(TEXT, "yaml")
    loaded: dict[str, Any] = yaml.safe_load(block)
    return loaded


def container(name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in manifest()["spec"]["containers"] if c["name"] == name)
    return found


def test_the_service_container_runs_serve_with_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    service = container("taskservice")
    assert service["command"][0] == "taskservice"
    env = {item["name"]: item["value"] for item in service["env"]}
    assert set(env) <= known_variables("serve"), "an environment variable the service does not read"
    args = parse([*service["command"][1:], *service["args"]], env, monkeypatch)
    assert args.command == "serve"
    assert args.grpc_listen == env["TASKSERVICE_GRPC_LISTEN"]
    assert args.lease_ttl_ms == int(env["TASKSERVICE_LEASE_TTL_MS"])
    assert args.mcp_listen.startswith("127.0.0.1:"), "a sidecar listens on loopback"
    mount = service["volumeMounts"][0]["mountPath"]
    assert args.store == f"sqlite:///{mount}/tasks.db", "the SQLite file lives on the volume"
    # Kubernetes sends SIGTERM and waits this long; the service needs its grace and a margin.
    assert manifest()["spec"]["terminationGracePeriodSeconds"] * 1000 > args.shutdown_grace_ms


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_the_probes_check_the_service_health(probe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = container("taskservice")
    env = {item["name"]: item["value"] for item in service["env"]}
    command = service[probe]["exec"]["command"]
    assert command[0] == "taskservice"
    args = parse(command[1:], {}, monkeypatch)
    assert args.command == "health"
    assert args.service == env["TASKSERVICE_GRPC_LISTEN"]


def test_the_worker_container_runs_a_worker_against_the_service() -> None:
    worker = container("worker")
    command = [*worker["command"], *worker["args"]]
    assert command[:3] == ["python", "-m", "taskservice_client"]
    args = worker_parser().parse_args(command[3:])
    assert args.command == "run"
    service_env = {item["name"]: item["value"] for item in container("taskservice")["env"]}
    assert args.target == service_env["TASKSERVICE_GRPC_LISTEN"]


def test_the_systemd_unit_starts_serve_with_known_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    (unit,) = fenced(TEXT, "ini")
    lines = [line for line in unit.splitlines() if "=" in line]
    exec_start = next(line.split("=", 1)[1] for line in lines if line.startswith("ExecStart="))
    env = dict(
        line.split("=", 1)[1].split("=", 1)
        for line in lines
        if line.startswith("Environment=")
    )
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/taskservice")
    assert set(env) <= known_variables("serve")
    args = parse(argv[1:], env, monkeypatch)
    assert args.command == "serve"
    assert args.grpc_listen == env["TASKSERVICE_GRPC_LISTEN"]
    assert args.mcp_listen == env["TASKSERVICE_MCP_LISTEN"]
    assert args.store.startswith("sqlite:////var/lib/taskservice/")
