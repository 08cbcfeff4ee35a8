"""Listen addresses are checked when the command starts, not wrapped or guessed by gRPC."""

from __future__ import annotations

import pytest

from taskservice.cli import main


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--grpc-listen", "127.0.0.1:99999"],  # gRPC alone would listen on 34463
        ["serve", "--grpc-listen", "127.0.0.1"],
        ["serve", "--mcp-listen", ":8000"],
        ["serve", "--mcp-listen", "127.0.0.1:http"],
        ["bridge", "--mcp-listen", "localhost:-1"],
    ],
)
def test_a_bad_listen_address_ends_the_command_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not a HOST:PORT address" in err
    assert "Traceback" not in err


def test_a_bad_listen_address_from_the_environment_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKSERVICE_GRPC_LISTEN", "127.0.0.1:70000")
    with pytest.raises(SystemExit) as ended:
        main(["serve"])
    assert ended.value.code == 2
    assert "'127.0.0.1:70000' is not a HOST:PORT address" in capsys.readouterr().err
