"""Reading and writing the project's plain-text files (parsing stays at the edges).

- Measured curves: two numeric columns ``two_theta_deg intensity`` in ``.xy``,
  ``.dat``, ``.txt`` or ``.csv`` files, separated by whitespace, commas or
  semicolons (a semicolon file may use decimal commas), with optional header lines
  and ``#`` comments.  Extra columns (e.g. an error column) are ignored.
  Diffractometer files are read with xrayutilities: PANalytical ``.xrdml`` (the
  ``2Theta`` positions and the counts, as xrayutilities' counts per second times the counting time) and Rigaku
  ``.ras`` (the scanned 2-theta axis; counts times the attenuator factor).
- ``PROFILE.csv``: header ``depth_nm,strain_percent,debye_waller``.
- ``CURVE.csv``: header ``two_theta_deg,intensity``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CURVE_COLUMNS",
    "FileFormatError",
    "PROFILE_COLUMNS",
    "ProfileTable",
    "read_curve",
    "read_profile",
    "write_curve",
    "write_profile",
]

PROFILE_COLUMNS = ("depth_nm", "strain_percent", "debye_waller")
CURVE_COLUMNS = ("two_theta_deg", "intensity")
_SEPARATORS = re.compile(r"[\s,]+")


class FileFormatError(ValueError):
    """A file that exists but cannot be parsed; the message names the file and line."""


@dataclass(frozen=True, kw_only=True)
class ProfileTable:
    """A depth profile as the user wrote it (PROFILE.csv), rows from the surface down.

    Attributes
    ----------
    depth_nm : numpy.ndarray, shape (n_rows,)
        Depth from the surface in nm.
    strain_percent : numpy.ndarray, shape (n_rows,)
        Strain in percent.
    debye_waller : numpy.ndarray, shape (n_rows,)
        Static Debye-Waller factor in [0, 1].
    """

    depth_nm: np.ndarray
    strain_percent: np.ndarray
    debye_waller: np.ndarray


def read_curve(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column 2theta / intensity file.

    Lines before the first numeric row (headers) and ``#`` comments are skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The file (.xy, .dat, .txt, .csv or any text; .xrdml and .ras through xrayutilities).

    Returns
    -------
    two_theta_deg : numpy.ndarray, shape (n_points,)
    intensity : numpy.ndarray, shape (n_points,)
        In file order; check them with :meth:`xrd_strain_plugin.physics.curve.Curve.measured`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FileFormatError
        If it has no numeric rows, only one column, or a non-numeric line after the data began.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _INSTRUMENT_READERS:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return _INSTRUMENT_READERS[suffix](path)
    _, rows = _header_and_rows(path, columns_from_header=False)
    return rows[:, 0].copy(), rows[:, 1].copy()


def _read_xrdml(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """2-theta (deg) and counts of the first scan of a PANalytical XRDML file."""
    from xrayutilities.io.panalytical_xml import XRDMLFile

    try:
        scan = XRDMLFile(str(path)).scan
    except KeyError as exc:  # xrayutilities looks the 2Theta axis up itself
        raise FileFormatError(f"{path}: the XRDML scan has no {exc.args[0]} positions") from exc
    except Exception as exc:  # xml errors, missing elements: xrayutilities raises many types
        raise FileFormatError(f"{path}: not a readable XRDML file ({type(exc).__name__}: {exc})") from exc
    axes = [a for a in scan.ddict if a not in ("countTime", "detector", "counts", "beamAttenuationFactors", "hkl")]
    if "2Theta" not in scan.ddict:
        raise FileFormatError(f"{path}: the XRDML scan has no 2Theta positions (axes: {', '.join(axes)})")
    two_theta = np.asarray(scan["2Theta"], dtype=float).ravel()
    rate = np.asarray(scan["detector"], dtype=float).ravel()
    count_time = float(np.ravel(scan.ddict["countTime"])[0])
    if two_theta.size != rate.size:
        raise FileFormatError(f"{path}: {two_theta.size} 2Theta positions for {rate.size} intensities")
    return two_theta, rate * count_time


def _read_ras(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The scanned angle (2-theta, deg) and counts of the first scan of a Rigaku RAS file."""
    from xrayutilities.io.rigaku_ras import RASFile

    try:
        scans = RASFile(str(path)).scans
    except Exception as exc:
        raise FileFormatError(f"{path}: not a readable RAS file ({type(exc).__name__}: {exc})") from exc
    if not scans:
        raise FileFormatError(f"{path}: no scan (*RAS_DATA_START ... *RAS_DATA_END) in the file")
    scan = scans[0]
    axis = getattr(scan, "scan_axis", "")
    if axis not in ("TwoThetaOmega", "TwoTheta", "2-Theta/Omega", "2Theta", "TwoThetaTheta"):
        raise FileFormatError(f"{path}: the RAS scan axis is {axis!r}, not a 2-theta axis (TwoThetaOmega, TwoTheta)")
    data = scan.data
    return np.asarray(data[axis], dtype=float), np.asarray(data["int"], dtype=float) * np.asarray(data["att"], float)


_INSTRUMENT_READERS = {".xrdml": _read_xrdml, ".ras": _read_ras}


def write_curve(path, two_theta_deg, intensity) -> Path:
    """Write CURVE.csv: header ``two_theta_deg,intensity`` then one row per point.

    Parameters
    ----------
    path : str or os.PathLike
    two_theta_deg, intensity : array_like, shape (n_points,)

    Returns
    -------
    pathlib.Path
        The written file.
    """
    return _write_columns(Path(path), CURVE_COLUMNS, (two_theta_deg, intensity))


def read_profile(path) -> ProfileTable:
    """Read PROFILE.csv (header ``depth_nm,strain_percent,debye_waller``, any column order).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FileFormatError
        If the header lacks a column, or a row is not numeric or has too few values.
    """
    path = Path(path)
    header, rows = _header_and_rows(path, columns_from_header=True)
    missing = [name for name in PROFILE_COLUMNS if name not in header]
    if missing:
        raise FileFormatError(
            f"{path}: header must name the columns {','.join(PROFILE_COLUMNS)}; "
            f"missing {', '.join(missing)} (found: {','.join(header) or 'no header'})"
        )
    return ProfileTable(**{name: rows[:, header.index(name)].copy() for name in PROFILE_COLUMNS})


def write_profile(path, depth_nm, strain_percent, debye_waller) -> Path:
    """Write PROFILE.csv with header ``depth_nm,strain_percent,debye_waller``.

    Parameters
    ----------
    path : str or os.PathLike
    depth_nm, strain_percent, debye_waller : array_like, shape (n_rows,)

    Returns
    -------
    pathlib.Path
    """
    return _write_columns(Path(path), PROFILE_COLUMNS, (depth_nm, strain_percent, debye_waller))


def _write_columns(path: Path, names, columns) -> Path:
    arrays = [np.asarray(column, dtype=float).reshape(-1) for column in columns]
    if len({array.size for array in arrays}) != 1:
        sizes = ", ".join(f"{name}={array.size}" for name, array in zip(names, arrays))
        raise ValueError(f"columns must have equal lengths, got {sizes}")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack(arrays), delimiter=",", fmt="%.10g", header=",".join(names), comments="")
    return path


def _split(line: str) -> list[str]:
    line = line.split("#", 1)[0].strip()
    if ";" in line:  # semicolon files may use decimal commas
        return [field.strip().replace(",", ".") for field in line.split(";") if field.strip()]
    return [field for field in _SEPARATORS.split(line) if field]


def _as_floats(fields: list[str]) -> list[float] | None:
    try:
        return [float(field) for field in fields]
    except ValueError:
        return None


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, expected a text file")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise FileFormatError(f"{path}: not a text file ({error.reason})") from None


def _header_and_rows(path: Path, *, columns_from_header: bool):
    """The last non-numeric line before the data (split into names) and the numeric rows.

    Curves need two columns (extra ones are dropped); a profile needs as many as its
    header names.
    """
    header: list[str] = []
    rows: list[list[float]] = []
    width = None
    for number, line in enumerate(_read_lines(path), start=1):
        fields = _split(line)
        if not fields:
            continue
        values = _as_floats(fields)
        if values is None:
            if rows:
                raise FileFormatError(f"{path}, line {number}: not numeric: {line.strip()!r}")
            header = fields
            continue
        if width is None:
            width = len(header) if columns_from_header else 2
        if len(values) < width:
            expected = ",".join(header) if columns_from_header else "two_theta_deg and intensity"
            raise FileFormatError(f"{path}, line {number}: found {len(values)} column(s), need {width} ({expected})")
        rows.append(values[:width])
    if not rows:
        raise FileFormatError(f"{path}: no numeric rows found")
    return header, np.array(rows, dtype=float)
