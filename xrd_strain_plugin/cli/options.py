"""Option groups that several commands share, declared once: reflection, refinement budgets, Tiled access.

Every command that names a crystal takes the same ``--material/--hkl/--wavelength-angstrom`` with the
same defaults (YSZ 400 at Cu K-alpha1, the shipped model's reflection) unless it requires them; every
command that writes to or reads from Tiled names the server ``--tiled-url`` (:data:`TILED_URL_OPTION`;
the older ``--tiled`` and ``--publish`` stay as hidden aliases) and takes the API key the same way
(``--api-key``, else the variable :data:`API_KEY_ENV`); the refinement budgets have one spelling and
one validation.
Nothing here imports more than the standard library, so that ``xrd-strain --help`` stays light.
"""

from __future__ import annotations

import argparse
import math
import os

from xrd_strain_plugin.cli import CommandError, option_errors
from xrd_strain_plugin.results import API_KEY_ENV

__all__ = [
    "API_KEY_ENV",
    "HIDDEN_ALIASES",
    "TILED_URL_OPTION",
    "DEFAULT_HKL",
    "DEFAULT_MATERIAL",
    "DEFAULT_WAVELENGTH_ANGSTROM",
    "add_api_key_option",
    "add_budget_options",
    "add_reflection_options",
    "add_tiled_options",
    "api_key",
    "budgets",
    "finite_float",
    "fraction",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "reflection_of",
    "tiled_option",
    "tiled_url",
]

#: The reflection of the shipped model: the default wherever a command does not require one.
DEFAULT_MATERIAL = "YSZ"
DEFAULT_HKL = (4, 0, 0)
DEFAULT_WAVELENGTH_ANGSTROM = 1.5406  # Cu K-alpha1


#: The one spelling of the option naming the Tiled server, for every command.
TILED_URL_OPTION = "--tiled-url"

#: Old spellings still accepted but not shown in --help: the option each stands for now.
HIDDEN_ALIASES = {"--tiled": TILED_URL_OPTION, "--publish": TILED_URL_OPTION}

MATERIAL_HELP = "built-in material name (YSZ, ZrO2, Si, Ge, GaN, MgO, GaAs, Al2O3, SiC-3C) or path to a CIF file"


# argparse ``type`` functions: a bad value is reported as ``argument --OPTION: <problem>``, exit status 2.


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie within [0, 1], got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_reflection_options(parser, *, required: bool = False, when: str = ""):
    """Add ``--material``, ``--hkl`` and ``--wavelength-angstrom`` to ``parser`` (a parser or a group).

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
    required : bool
        The command needs them stated (``invert``); otherwise they default to YSZ 400 at Cu K-alpha1.
    when : str
        Qualifies the help, e.g. ``"when the run does not say"``.

    Returns
    -------
    The ``parser`` given, for chaining.
    """
    suffix = f" {when}" if when else ""

    def default(text):
        return "" if required else f" (default: {text})"

    kwargs = {"required": True} if required else {}
    parser.add_argument(
        "--material",
        metavar="NAME_OR_CIF",
        default=None if required else DEFAULT_MATERIAL,
        help=f"{MATERIAL_HELP}{suffix}{default(DEFAULT_MATERIAL)}",
        **kwargs,
    )
    parser.add_argument(
        "--hkl",
        metavar=("H", "K", "L"),
        nargs=3,
        type=int,
        default=None if required else DEFAULT_HKL,
        help=f"Miller indices of the reflection, planes parallel to the surface{suffix}"
        f"{default(' '.join(map(str, DEFAULT_HKL)))}",
        **kwargs,
    )
    parser.add_argument(
        "--wavelength-angstrom",
        metavar="L",
        type=positive_float,
        default=None if required else DEFAULT_WAVELENGTH_ANGSTROM,
        help=f"X-ray wavelength in angstrom{suffix}{default(f'{DEFAULT_WAVELENGTH_ANGSTROM}, Cu K-alpha1')}",
        **kwargs,
    )
    return parser


def reflection_of(args):
    """The :class:`~xrd_strain_plugin.physics.materials.Reflection` the reflection options name.

    Raises
    ------
    CommandError
        Unknown material, forbidden reflection: the message names the option.
    """
    from xrd_strain_plugin.reflection_cache import cached_reflection

    with option_errors("--material/--hkl/--wavelength-angstrom"):
        return cached_reflection(args.material, tuple(args.hkl), args.wavelength_angstrom)


class _TiledUrl(argparse.Action):
    """Store the URL in ``tiled_url`` and the spelling used in ``tiled_url_option`` (errors name what was typed)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, "tiled_url_option", option_string)


def add_tiled_options(
    parser,
    *,
    write: bool,
    required: bool = True,
    aliases: tuple[str, ...] = (),
    title: str = "Tiled",
    help: str = "Tiled server, e.g. http://tiled-host:8000 (the /api/v1 suffix is optional)",
    with_api_key: bool = True,
):
    """Add a "Tiled" group: ``--tiled-url URL`` (into ``args.tiled_url``) and ``--api-key``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    write : bool
        The command writes (the API key's help says it is needed).
    required : bool
        The command cannot run without a server.
    aliases : tuple of str
        Older spellings this command accepted (``--tiled``, ``--publish``): still accepted, not shown in
        ``--help`` (deploy units and scripts written before keep working). An error message names the
        spelling that was typed (:func:`tiled_option`).
    title, help : str
        The group's title and the option's help.
    with_api_key : bool
        Also add ``--api-key`` (the flows name a variable or a Prefect block instead).

    Returns
    -------
    The argument group, for the command's own Tiled options (a spool directory...).
    """
    group = parser.add_argument_group(title)
    urls = group.add_mutually_exclusive_group(required=required) if aliases else group
    common = {"dest": "tiled_url", "metavar": "URL", "action": _TiledUrl}
    urls.add_argument(
        TILED_URL_OPTION, help=help, default=None, **common, **({} if aliases else {"required": required})
    )
    for alias in aliases:
        if HIDDEN_ALIASES.get(alias) != TILED_URL_OPTION:
            raise ValueError(f"{alias} is not a declared alias of {TILED_URL_OPTION} (HIDDEN_ALIASES)")
        urls.add_argument(alias, help=argparse.SUPPRESS, **common)
    if with_api_key:
        add_api_key_option(group, write=write)
    return group


def tiled_url(args) -> str | None:
    """The Tiled server's URL the command was given (``--tiled-url`` or an alias), or ``None``."""
    return getattr(args, "tiled_url", None)


def tiled_option(args) -> str:
    """The spelling of the Tiled option as typed (``--tiled-url`` unless an alias was), for error messages."""
    return getattr(args, "tiled_url_option", None) or TILED_URL_OPTION


def add_api_key_option(parser, *, write: bool = True):
    """Add ``--api-key`` (default: ``$TILED_API_KEY``, else anonymous)."""
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=None,
        help=f"Tiled API key ({'needed to write; ' if write else ''}default: ${API_KEY_ENV}, "
        "else anonymous; prefer the variable: command lines are visible to other users)",
    )
    return parser


def api_key(args) -> str | None:
    """The API key of ``--api-key``, else of ``$TILED_API_KEY``, else ``None`` (anonymous)."""
    return getattr(args, "api_key", None) or os.environ.get(API_KEY_ENV) or None


def add_budget_options(
    parser,
    *,
    budget_option: str = "--refine-budget-s",
    budget_s: float | None = None,
    global_budget_s: float | None = None,
):
    """Add the refinement budgets: the local stages' and the global stage's, CPU seconds.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
    budget_option : str
        Spelling of the local budget (``--refine-budget-s`` where ``--refine`` is an option,
        ``--budget-s`` where refining is the command).
    budget_s, global_budget_s : float, optional
        Defaults; ``None`` leaves the refinement engine's own (``RefineOptions``).
    """

    def engine(value):
        return "the engine's" if value is None else f"{value:g}"

    parser.add_argument(
        budget_option,
        dest="budget_s",
        metavar="S",
        type=float,
        default=budget_s,
        help="last-resort CPU cap of one refinement, seconds: the stages do a fixed amount of work "
        "(the same answer on an idle or a loaded machine); the result says when the cap bit "
        f"(default: {engine(budget_s)})",
    )
    parser.add_argument(
        "--global-budget-s",
        metavar="S",
        type=float,
        default=global_budget_s,
        help="last-resort CPU cap of the global stage (differential evolution, a fixed number of "
        "generations), run only when the fits stay above the counting-noise floor; 0 disables "
        f"it (default: {engine(global_budget_s)})",
    )
    return parser


def budgets(args, *, budget_option: str = "--refine-budget-s") -> dict:
    """The budgets given, as ``RefineOptions`` keywords (absent ones keep the engine's defaults).

    Raises
    ------
    CommandError
        A budget that is not a positive number (the global one may be 0).
    """
    out = {}
    for name, option, smallest in (
        ("budget_s", budget_option, "> 0"),
        ("global_budget_s", "--global-budget-s", ">= 0"),
    ):
        value = getattr(args, name, None)
        if value is None:
            continue
        ok = math.isfinite(value) and (value > 0 if smallest == "> 0" else value >= 0)
        if not ok:
            raise CommandError(f"{option}: must be {smallest}, got {value}")
        out[name] = value
    return out
