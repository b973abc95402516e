"""The results layout in Tiled, version 3 (versions 1 and 2 are still read).

One inverted curve is one node, a container whose metadata is the result::

    results/<raw run uid>                  single-curve run
    results/<raw run uid>/<curve index>    run that records several curves
    results/.../profile                    table: depth_nm, strain_percent, debye_waller
    results/.../curve                      table: q_inv_angstrom, intensity_measured, intensity_model
    result_arrays/<batch id>               the arrays of the results written together

What a person (or Tiled's UI) reads: ``client["results"][uid]["profile"].read()`` is a table of
the depth profile, ``["curve"]`` of the measured and model curves, each table's metadata holds
its ``units``; :class:`~xrd_strain_plugin.tiled.client.ResultNode` (Tiled's client for the spec
``xrd_strain_result``, registered as an entry point) adds ``profile()``, ``curve()``, ``arrays()``.

What the live path writes first (specs ``xrd_strain_result`` version ``"3"``): the node with all
its metadata, pointing with ``arrays`` = {``node``, ``row``} at its row of an *arrays table*: one
row per result of one write batch, columns ``raw_uid``, ``curve_index`` (-1 for a one-curve run)
and one list column per array (:data:`~xrd_strain_plugin.results.ARRAY_NAMES`). That costs one
request per result plus one per batch, so it is what makes a result queryable and readable at
once; the two per-result tables (four requests) are written after, when the writer is idle
(:meth:`~.writer.TiledResultsWriter.prepare`), so a burst is not slowed by them. A result whose
tables are not written yet (or never: the writer process died first) reads the same through
:func:`~.queries.read_result` and ``ResultNode``, from its arrays row.

Version 3 against 2: ``strain`` is named ``strain_percent`` (a bare name is a fraction, the
project's rule), ``units`` in the metadata, and the per-result tables. Version 2: the same node
and arrays table, column ``strain`` in percent, no tables. Version 1: a composite container with
the two tables ``profile`` (depth_nm, strain, debye_waller) and ``curve``. All three are found by
:func:`~.queries.find_results` and read by :func:`~.queries.read_result` with today's names.

A result node may later get a child ``refinement`` (:mod:`xrd_strain_plugin.tiled.refinement`):
the refined profile, beside the network's answer, never over it. A run that records several
curves has a plain container at ``results/<raw uid>`` (spec ``xrd_strain_run``) holding one
result node per curve. A curve that could not be inverted (aborted run, rejected data, a failure
in the plugin) is a result node with ``status`` other than ``"ok"``, a ``reason`` and no arrays;
the one exception is ``partial``: the curve of a run stopped before its planned number of points
(start document ``num_points``), inverted and stored with its arrays, and a ``reason``.

Metadata of a result node (JSON): ``layout`` {name, version}, ``status``
(``ok``, ``partial``, ``rejected``, ``aborted``, ``failed``, ``error``), ``reason``,
``raw_uid``, ``raw_path`` (``raw/<uid>``), ``scan_id``, ``curve_index``,
``sample``, ``material``, ``reflection`` {hkl}, ``wavelength_angstrom``,
``model`` {id, version, sha256}, the derived figures ``strain_max_percent``
(e_max), ``depth_of_max_nm``, ``thickness_nm``, ``dw_min``, ``fwhm_deg``
(H), ``dynamic_range`` (log10 Imax/Imin), ``sigma_i`` (rms of log10
differences between measured and model curves), ``scale`` and
``background`` (counts), ``units`` {name: unit} of the arrays and figures, ``timings``
(seconds), ``plugin`` {version}, ``created`` (ISO 8601, UTC), ``arrays`` {node, row} and, for
``ok`` results, ``refinement`` {status: none | pending | done | failed, ...}.
"""

from __future__ import annotations

import numpy as np

# The result shapes live in the neutral module; re-exported here for older imports.
from xrd_strain_plugin.results import (  # noqa: F401
    ARRAY_NAMES,
    CURVE_COLUMNS,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    LEGACY_ARRAY_NAMES,
    PROFILE_COLUMNS,
    READ_VERSIONS,
    STATUSES,
    TABLES,
    UNITS,
    ResultRecord,
    base_metadata,
    jsonable,
    with_current_names,
)

RUN_SPEC_NAME = "xrd_strain_run"
RESULTS_KEY = "results"
RAW_KEY = "raw"
ARRAYS_KEY = "result_arrays"
ARRAYS_SPEC_NAME = "xrd_strain_arrays"
TABLE_SPEC_NAME = "xrd_strain_result_table"


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
        columns[name] = pa.array(
            [np.asarray(r.arrays[name], dtype=np.float64) for r in records], pa.list_(pa.float64())
        )
    table = pa.Table.from_pydict(columns, schema=arrays_schema())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def arrays_of_row(table, row: int, *, raw_uid: str, curve_index: int | None) -> dict[str, np.ndarray]:
    """The arrays of one result from an arrays table (``pyarrow.Table``), checked against its node,
    with today's names (a layout-2 table's ``strain`` column is ``strain_percent``)."""
    expected = -1 if curve_index is None else int(curve_index)
    got_uid, got_index = table.column("raw_uid")[row].as_py(), table.column("curve_index")[row].as_py()
    if (got_uid, got_index) != (raw_uid, expected):
        raise ValueError(f"arrays row {row} belongs to {got_uid}/{got_index}, not to {raw_uid}/{expected}")
    import pyarrow as pa

    lists = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)]
    return with_current_names(
        {name: table.column(name)[row].values.to_numpy(zero_copy_only=False).astype(float) for name in lists}
    )


def table_schema(table: str):
    """Arrow schema of a per-result table (``profile`` or ``curve``): one float column per array."""
    import pyarrow as pa

    return pa.schema([(name, pa.float64()) for name in TABLES[table]])


def table_ipc(record, table: str) -> bytes:
    """One per-result table of ``record`` as an Arrow IPC file."""
    import pyarrow as pa

    columns = {name: pa.array(np.asarray(record.arrays[name], dtype=np.float64)) for name in TABLES[table]}
    data = pa.Table.from_pydict(columns, schema=table_schema(table))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, data.schema) as writer:
        writer.write_table(data)
    return sink.getvalue().to_pybytes()
