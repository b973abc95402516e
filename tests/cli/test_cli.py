"""The ``xrd-strain`` skeleton: command registry, help for everything, entry point."""

import argparse
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from xrd_strain_plugin import cli
from xrd_strain_plugin.cli.options import HIDDEN_ALIASES

ROOT = Path(__file__).resolve().parents[2]


def subcommand_parsers():
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, subparsers


def test_every_registered_module_adds_a_command():
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    for module in cli.COMMANDS:
        before = set(subparsers.choices)
        importlib.import_module(module).register(subparsers)
        assert set(subparsers.choices) - before, f"{module}.register added no command"
    assert "simulate" in subparsers.choices


def test_every_command_and_option_is_explained():
    """--help must explain every command and every option."""
    parser, subparsers = subcommand_parsers()
    described = {choice.dest: choice.help for choice in subparsers._choices_actions}
    for name, sub in subparsers.choices.items():
        assert described.get(name), f"command {name!r} has no help line"
        assert sub.description, f"command {name!r} has no description"
        for action in sub._actions:
            if action.help == argparse.SUPPRESS and set(action.option_strings) <= set(HIDDEN_ALIASES):
                continue  # an old spelling kept working, explained under the canonical option
            assert action.help and action.help != argparse.SUPPRESS or action.dest == "help", (
                f"xrd-strain {name} {'/'.join(action.option_strings) or action.dest} has no help"
            )
        assert sub.get_default("func") is not None, f"command {name!r} sets no func"


def test_help_runs_in_a_subprocess_and_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "xrd_strain_plugin.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "simulate" in result.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([])
    assert stop.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_console_script_points_at_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["xrd-strain"] == "xrd_strain_plugin.cli:main"
