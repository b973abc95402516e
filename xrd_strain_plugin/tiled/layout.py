"""The results layout in Tiled, version 2 (version 1 is still read).

One inverted curve is one node, a container whose metadata is the result::

    results/<raw run uid>                  single-curve run
    results/<raw run uid>/<curve index>    run that records several curves
    result_arrays/<batch id>               the arrays of the results written together

Version 2 (specs ``xrd_strain_result`` version ``"2"``): a result node holds all
the metadata listed below and points, with ``arrays`` = {``node``, ``row``}, to
its row of an *arrays table*: a table with one row per result of one write
batch, columns ``raw_uid``, ``curve_index`` (-1 for a one-curve run) and one
list column per array:

========================= ===========================================================
column                    content (1-D)
========================= ===========================================================
``depth_nm``              depth, nm (0 = surface)
``strain``                strain, percent (same length as ``depth_nm``)
``debye_waller``          1 = perfect crystal, 0 = amorphous (same length)
``q_inv_angstrom``        scattering vector of the measured points, 1/Å
``intensity_measured``    counts (same length as ``q_inv_angstrom``)
``intensity_model``       counts, the curve computed from the network's prediction
========================= ===========================================================

Why: every Tiled request costs ~15-40 ms of server time on the beamline
machine, and a node costs a request, so version 1 (a composite node with two
tables: 5 requests per result) capped the live rate at ~3 curves/s. In version
2 a result costs one request (its node, created with its full metadata) plus
its share of one table write for every result written together; the table
itself is created ahead of time. :func:`~xrd_strain_plugin.tiled.queries.read_result`
reads both versions. A result node may later get a child ``refinement``
(:mod:`xrd_strain_plugin.tiled.refinement`): the refined profile, beside the
network's answer, never over it.

A run that records several curves has a plain container at
``results/<raw uid>`` (spec ``xrd_strain_run``) holding one result node per
curve. A curve that could not be inverted (aborted run, rejected data, a
failure in the plugin) is a result node with ``status`` other than ``"ok"``,
a ``reason`` and no arrays; the one exception is ``partial``: the curve of a run
stopped before its planned number of points (start document ``num_points``),
inverted and stored with its arrays, and a ``reason`` saying how many points it has.

Metadata of a result node (JSON): ``layout`` {name, version}, ``status``
(``ok``, ``partial``, ``rejected``, ``aborted``, ``failed``, ``error``), ``reason``,
``raw_uid``, ``raw_path`` (``raw/<uid>``), ``scan_id``, ``curve_index``,
``sample``, ``material``, ``reflection`` {hkl}, ``wavelength_angstrom``,
``model`` {id, version, sha256}, the derived figures ``strain_max_percent``
(e_max), ``depth_of_max_nm``, ``thickness_nm``, ``dw_min``, ``fwhm_deg``
(H), ``dynamic_range`` (log10 Imax/Imin), ``sigma_i`` (rms of log10
differences between measured and model curves), ``scale`` and
``background`` (counts), ``timings`` (seconds), ``plugin`` {version},
``created`` (ISO 8601, UTC), ``arrays`` {node, row} and, for ``ok`` results,
``refinement`` {status: none | pending | done | failed, ...}.

Version 1 (still read): the result node is a composite container (specs
``xrd_strain_result`` version ``"1"`` and ``composite``) with two tables,
``profile`` (depth_nm, strain, debye_waller) and ``curve`` (q_inv_angstrom,
intensity_measured, intensity_model).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

LAYOUT_NAME = "xrd_strain_result"
LAYOUT_VERSION = "2"
READ_VERSIONS = ("1", "2")
RUN_SPEC_NAME = "xrd_strain_run"
RESULTS_KEY = "results"
RAW_KEY = "raw"
ARRAYS_KEY = "result_arrays"
ARRAYS_SPEC_NAME = "xrd_strain_arrays"

PROFILE_COLUMNS = ("depth_nm", "strain", "debye_waller")
CURVE_COLUMNS = ("q_inv_angstrom", "intensity_measured", "intensity_model")
ARRAY_NAMES = PROFILE_COLUMNS + CURVE_COLUMNS
TABLES = {"profile": PROFILE_COLUMNS, "curve": CURVE_COLUMNS}

STATUSES = ("ok", "partial", "rejected", "aborted", "failed", "error")


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
        "raw_path": f"{RAW_KEY}/{raw_uid}",
        "scan_id": scan_id,
        "curve_index": curve_index,
        "sample": sample,
        "plugin": {"version": __version__},
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


def arrays_schema():
    """Arrow schema of an arrays table (layout v2): one row per result, a list column per array."""
    import pyarrow as pa

    values = pa.list_(pa.float64())
    return pa.schema([("raw_uid", pa.string()), ("curve_index", pa.int64())] + [(n, values) for n in ARRAY_NAMES])


def arrays_ipc(records) -> bytes:
    """The arrays of ``records`` (each with arrays) as one Arrow IPC file, one row per record."""
    import pyarrow as pa

    columns = {
        "raw_uid": pa.array([r.raw_uid for r in records], pa.string()),
        "curve_index": pa.array([-1 if r.curve_index is None else int(r.curve_index) for r in records], pa.int64()),
    }
    for name in ARRAY_NAMES:
        columns[name] = pa.array([np.asarray(r.arrays[name], dtype=np.float64) for r in records], pa.list_(pa.float64()))
    table = pa.Table.from_pydict(columns, schema=arrays_schema())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrays_of_row(table, row: int, *, raw_uid: str, curve_index: int | None) -> dict[str, np.ndarray]:
    """The arrays of one result from an arrays table (``pyarrow.Table``), checked against its node."""
    expected = -1 if curve_index is None else int(curve_index)
    got_uid, got_index = table.column("raw_uid")[row].as_py(), table.column("curve_index")[row].as_py()
    if (got_uid, got_index) != (raw_uid, expected):
        raise ValueError(f"arrays row {row} belongs to {got_uid}/{got_index}, not to {raw_uid}/{expected}")
    return {name: table.column(name)[row].values.to_numpy(zero_copy_only=False).astype(float)
            for name in ARRAY_NAMES if name in table.column_names}
