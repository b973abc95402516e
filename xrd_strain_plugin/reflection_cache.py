"""The on-disk cache of built-in reflections: an edge beside the pure physics core.

:func:`xrd_strain_plugin.physics.materials.make_reflection` computes a
:class:`~xrd_strain_plugin.physics.materials.Reflection` with xrayutilities, whose import costs
about 1.7 s, most of a CLI call's start-up. The command line, the live service and training call
:func:`cached_reflection` instead: a built-in material's constants are read from a JSON file
(:meth:`Reflection.to_dict`) when one was written before, and computed and written otherwise.
The physics core itself reads no environment variable and writes no file; this module does both.

Where the files go: ``$XRD_STRAIN_CACHE/reflections`` (``off`` disables the cache), else
``$XDG_CACHE_HOME/xrd-strain/reflections``, else ``~/.cache/xrd-strain/reflections``. A file's name
holds the xrayutilities version and the sha256 of ``physics/materials.py``: new constants or new
code never read an old entry. CIF files are not cached (their content may change under one name).

Examples
--------
>>> from xrd_strain_plugin.reflection_cache import cached_reflection
>>> r = cached_reflection("YSZ", (4, 0, 0), 1.5406)
>>> round(r.q_bragg_inv_angstrom, 3)
4.885
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import uuid
from functools import lru_cache
from pathlib import Path

from xrd_strain_plugin.physics import materials
from xrd_strain_plugin.physics.materials import BUILTIN_MATERIALS, Reflection, check_reflection_request

__all__ = ["CACHE_ENV", "cache_directory", "cache_path", "cached_reflection"]

#: Environment variable: directory of the on-disk reflection cache (``off`` disables it).
CACHE_ENV = "XRD_STRAIN_CACHE"

#: Stands for "the directory the environment names" (:func:`cache_directory`).
_FROM_ENVIRONMENT = object()


def cache_directory(environ=None) -> Path | None:
    """The cache's root directory as the environment sets it, or ``None`` when it is ``off``.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default: ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    root = environ.get(CACHE_ENV)
    if root == "off":
        return None
    if root:
        return Path(root)
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xrd-strain"


@lru_cache(maxsize=1)
def _code_key() -> str | None:
    """xrayutilities' version and the hash of the module that computes the constants (one read a process)."""
    try:
        xu_version = importlib.metadata.version("xrayutilities")
        code = hashlib.sha256(Path(materials.__file__).read_bytes()).hexdigest()[:16]
    except (importlib.metadata.PackageNotFoundError, OSError):
        return None
    return f"xu{xu_version}-{code}"


def cache_path(material: str, hkl, wavelength_angstrom: float, *, directory: Path | None) -> Path | None:
    """The file of one built-in reflection under ``directory``, or ``None`` when it is not cached.

    ``None`` for a CIF file, a disabled cache (``directory=None``) or when the code's key cannot be read.
    """
    if directory is None or material not in BUILTIN_MATERIALS:
        return None
    key = _code_key()
    if key is None:
        return None
    name = f"{material}-{'_'.join(map(str, hkl))}-{float(wavelength_angstrom)!r}-{key}.json"
    return Path(directory) / "reflections" / name


def _read(path: Path | None) -> Reflection | None:
    if path is None or not path.is_file():
        return None
    try:
        return Reflection.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # an unreadable entry is recomputed (and rewritten)


def _write(path: Path | None, reflection: Reflection) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(reflection.to_dict()))
        os.replace(tmp, path)  # atomic: concurrent writers leave one whole entry
    except OSError:
        pass  # a read-only home only costs the xrayutilities import next time


@lru_cache(maxsize=64)
def _cached(material: str, hkl: tuple, wavelength_angstrom: float, directory: Path | None) -> Reflection:
    path = cache_path(material, hkl, wavelength_angstrom, directory=directory)
    found = _read(path)
    if found is not None:
        return found
    computed = materials.make_reflection(material, hkl, wavelength_angstrom)
    _write(path, computed)
    return computed


def cached_reflection(
    material: str = "YSZ",
    hkl=(4, 0, 0),
    wavelength_angstrom: float = 1.5406,
    *,
    directory=_FROM_ENVIRONMENT,
) -> Reflection:
    """:func:`~xrd_strain_plugin.physics.materials.make_reflection`, read from disk when it can be.

    Parameters
    ----------
    material, hkl, wavelength_angstrom
        As for ``make_reflection``; the result is equal to its result.
    directory : path or None, optional
        Root of the cache (default: :func:`cache_directory`, read from the environment at each call);
        ``None`` computes without the disk.

    Raises
    ------
    MaterialError
        As ``make_reflection`` (a bad ``hkl`` or wavelength before any file is touched).
    """
    hkl, wavelength_angstrom = check_reflection_request(hkl, wavelength_angstrom)
    if directory is _FROM_ENVIRONMENT:
        directory = cache_directory()
    return _cached(str(material), hkl, wavelength_angstrom, None if directory is None else Path(directory))
