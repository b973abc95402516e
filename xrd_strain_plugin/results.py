"""The shape of one inverted curve's result, shared by every adapter (neutral: no bluesky, no tiled).

The live callback (``bluesky``) builds :class:`ResultRecord` objects, the Tiled adapter stores them
(``tiled``: layout, writer, spool), the derived documents and the plots read them. This module holds
what they all need, and nothing that needs a server: the record, its metadata with provenance and
units, the array names and the statuses.

Arrays (1-D; numpy float)
    ``depth_nm`` depth below the surface, nm (0 = surface); ``strain_percent`` strain in percent
    (same length); ``debye_waller`` 1 = perfect crystal, 0 = amorphous (same length);
    ``q_inv_angstrom`` scattering vector of the measured points, 1/Å; ``intensity_measured`` and
    ``intensity_model`` counts (same length as ``q_inv_angstrom``). A record made with the old
    name ``strain`` (percent: spool files of older plugins) is read as ``strain_percent``.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: The environment variable holding a Tiled API key: the listener, the flows, the readers and every
#: command read it (one name for the deployment; deploy/ sets it).
API_KEY_ENV = "TILED_API_KEY"

LAYOUT_NAME = "xrd_strain_result"
#: Version 3: arrays named with units (``strain_percent``), ``units`` in the metadata, and per-result
#: ``profile`` and ``curve`` tables (docs/live.md). Versions 1 and 2 are still read.
LAYOUT_VERSION = "3"
READ_VERSIONS = ("1", "2", "3")

PROFILE_COLUMNS = ("depth_nm", "strain_percent", "debye_waller")
CURVE_COLUMNS = ("q_inv_angstrom", "intensity_measured", "intensity_model")
ARRAY_NAMES = PROFILE_COLUMNS + CURVE_COLUMNS
TABLES = {"profile": PROFILE_COLUMNS, "curve": CURVE_COLUMNS}
#: Names of layouts 1 and 2 -> today's.
LEGACY_ARRAY_NAMES = {"strain": "strain_percent"}

#: Units of the arrays and of the figures in a result's metadata ("1": dimensionless).
UNITS = {
    "depth_nm": "nm",
    "strain_percent": "percent",
    "debye_waller": "1",
    "q_inv_angstrom": "1/angstrom",
    "intensity_measured": "counts",
    "intensity_model": "counts",
    "strain_max_percent": "percent",
    "depth_of_max_nm": "nm",
    "thickness_nm": "nm",
    "dw_min": "1",
    "fwhm_deg": "deg",
    "dynamic_range": "log10",
    "sigma_i": "log10 rms",
    "scale": "counts per unit reflectivity",
    "background": "counts",
    "wavelength_angstrom": "angstrom",
}

STATUSES = ("ok", "partial", "rejected", "aborted", "failed", "error")


def with_current_names(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """``arrays`` with the names of layouts 1 and 2 (``strain``) renamed to today's."""
    return {LEGACY_ARRAY_NAMES.get(k, k): v for k, v in arrays.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """One curve's result, ready to be written to Tiled or spooled to disk.

    Parameters
    ----------
    raw_uid : str
        uid of the raw bluesky run the curve comes from.
    curve_index : int or None
        Index of the curve within a multi-curve run; None for a run that
        records one curve (the node is then ``results/<raw_uid>``).
    metadata : Mapping
        JSON-serialisable metadata (see the module docstring). Must contain
        ``status``.
    arrays : Mapping[str, numpy.ndarray]
        The six arrays named in :data:`ARRAY_NAMES`, 1-D, or empty for a
        record without a profile (any status other than ``"ok"``).
    """

    raw_uid: str
    curve_index: int | None
    metadata: Mapping[str, Any]
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if any(k in LEGACY_ARRAY_NAMES for k in self.arrays):
            object.__setattr__(self, "arrays", with_current_names(self.arrays))
        if self.metadata.get("status") not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.metadata.get('status')!r}")
        if self.arrays:
            missing = set(ARRAY_NAMES) - set(self.arrays)
            if missing:
                raise ValueError(f"result arrays missing: {sorted(missing)}")
            for table, columns in TABLES.items():
                lengths = {np.shape(self.arrays[c]) for c in columns}
                if len(lengths) != 1 or len(next(iter(lengths))) != 1:
                    raise ValueError(f"columns of table {table!r} must be 1-D of equal length, got shapes {lengths}")

    @property
    def status(self) -> str:
        """``"ok"`` or the reason class of a record without a profile."""
        return self.metadata["status"]

    @property
    def path(self) -> tuple[str, ...]:
        """Node path below the results container."""
        if self.curve_index is None:
            return (self.raw_uid,)
        return (self.raw_uid, str(self.curve_index))

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        """The arrays grouped into the layout's tables (empty when no profile)."""
        if not self.arrays:
            return {}
        return {t: {c: np.asarray(self.arrays[c], dtype=float) for c in cols} for t, cols in TABLES.items()}


def base_metadata(
    *,
    status: str,
    raw_uid: str,
    curve_index: int | None,
    reason: str | None = None,
    scan_id: int | None = None,
    sample: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata common to every result node, with the layout and provenance.

    Parameters
    ----------
    status : str
        One of :data:`STATUSES`.
    raw_uid, curve_index, scan_id, sample
        Identify the raw data (see :class:`ResultRecord`).
    reason : str, optional
        Why no profile was produced (required in practice for status != ok).
    extra : Mapping, optional
        Further keys merged last (material, reflection, model, figures...).
    """
    from xrd_strain_plugin import __version__

    md: dict[str, Any] = {
        "layout": {"name": LAYOUT_NAME, "version": LAYOUT_VERSION},
        "status": status,
        "reason": reason,
        "raw_uid": raw_uid,
        "raw_path": f"raw/{raw_uid}",
        "scan_id": scan_id,
        "curve_index": curve_index,
        "sample": sample,
        "plugin": {"version": __version__},
        "units": dict(UNITS),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    if extra:
        md.update(extra)
    return jsonable(md)


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats to plain JSON.

    Non-finite floats become None: Tiled stores metadata as JSON, which has no
    NaN, and a query on ``e_max`` must not trip over one.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
