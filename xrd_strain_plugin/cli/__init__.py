"""The ``xrd-strain`` command line.

One module per command family, listed in :data:`COMMANDS`; the option groups several commands
share (reflection, refinement budgets, Tiled access) are declared once in :mod:`.options`.  A
command module exposes ``register(subparsers)``, which adds its parser (with help
for every option) and sets ``func`` to a ``run(args) -> int`` function returning
the exit status.  Command modules import heavy dependencies (xrayutilities, Keras,
bluesky ...) inside ``run``, never at module level, so that ``xrd-strain --help``
stays fast and light.

Bad input is reported as ``xrd-strain <command>: error: <parameter>: <problem>`` on
stderr with exit status 2 and no traceback (``--debug`` shows the traceback).
Commands raise :class:`CommandError`, most simply through :func:`option_errors`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from xrd_strain_plugin import __version__

__all__ = ["COMMANDS", "CommandError", "build_parser", "main", "option_errors"]

#: Subcommand modules, in the order ``--help`` lists them.  Add one line per command.
COMMANDS = (
    "xrd_strain_plugin.cli.simulate",
    "xrd_strain_plugin.cli.invert",
    "xrd_strain_plugin.cli.train",
    "xrd_strain_plugin.cli.live",
    "xrd_strain_plugin.cli.flows",
    "xrd_strain_plugin.cli.demo",
)

#: Exit status for bad input (the argparse convention).
EXIT_USAGE = 2


class CommandError(Exception):
    """Bad input to a command; the message names the parameter."""


@contextlib.contextmanager
def option_errors(option: str):
    """Turn ``ValueError`` and ``OSError`` raised inside into a :class:`CommandError`.

    Parameters
    ----------
    option : str
        The parameter the input came from, e.g. ``"--profile"``; it prefixes the message.

    Examples
    --------
    >>> with option_errors("--profile"):
    ...     table = read_profile(args.profile)  # doctest: +SKIP
    """
    try:
        yield
    except CommandError:
        raise
    except (ValueError, OSError) as error:
        raise CommandError(f"{option}: {_describe(error)}") from error


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one subparser per module in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="xrd-strain",
        description=(
            "Depth-resolved strain and disorder profiles of ion-irradiated crystals from XRD "
            "curves: dynamical-theory simulation, CNN inversion, live Bluesky/Tiled plugin. "
            "Run 'xrd-strain COMMAND --help' for the options of a command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error instead of a one-line message"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run ``xrd-strain`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        if args.debug:
            raise
        print(f"xrd-strain {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"xrd-strain {args.command}: interrupted", file=sys.stderr)
        return 130


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)
