"""README "Configuration": the table says what the CLI really does, flag by flag."""

from __future__ import annotations

import argparse
import os

import pytest

from taskservice.cli import build_parser, env_name
from taskservice.store.sqlite import PENDING_BYTES, PENDING_CHANGES, UPDATES_SUFFIX

from .readme_blocks import code, section, table_rows

NO_DEFAULT_SHOWN = {"--store"}  # its default is a path under the state directory, described below the table


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser reads TASKSERVICE_* variables as defaults; the table documents the built-in ones."""
    for name in [n for n in os.environ if n.startswith("TASKSERVICE_")]:
        monkeypatch.delenv(name)


def subcommand_options() -> dict[str, dict[str, argparse.Action]]:
    """Every documented option of every subcommand: {flag: {command: action}}."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options: dict[str, dict[str, argparse.Action]] = {}
    for command, sub in commands.choices.items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings or "-h" in action.option_strings:
                continue
            options.setdefault(action.option_strings[0], {})[command] = action
    return options


def documented() -> dict[str, tuple[str, str, str]]:
    rows = table_rows(section("Configuration"))
    return {code(flag): (env, default, meaning) for flag, env, default, meaning in rows}


def test_every_flag_of_every_command_is_in_the_table_and_nothing_else() -> None:
    assert sorted(documented()) == sorted(subcommand_options())


@pytest.mark.parametrize("flag", sorted(subcommand_options()))
def test_the_row_gives_the_flag_its_variable_default_and_commands(flag: str) -> None:
    env, default, meaning = documented()[flag]
    assert code(env).split("=")[0] == env_name(flag)
    for command, action in subcommand_options()[flag].items():
        assert f"`{command}`" in meaning, f"{flag}: the row does not name `{command}`"
        if flag in NO_DEFAULT_SHOWN:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            assert default == "off"
        elif action.default == "":
            assert default == "none", f"{flag} of {command}"
        else:
            assert code(default) == str(action.default), f"{flag} of {command}"


def test_the_commands_table_names_every_command() -> None:
    listed = {code(row[0]).split()[1] for row in table_rows(section("Usage"))}
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert listed == set(commands.choices)


def test_the_sqlite_updates_log_is_described_as_the_store_keeps_it() -> None:
    text = " ".join(section("Configuration").split())
    assert f"`tasks.db{UPDATES_SUFFIX}`" in text
    assert f"every {PENDING_CHANGES} changes or {PENDING_BYTES >> 20} MiB" in text
