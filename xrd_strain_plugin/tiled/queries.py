"""Search and read results stored with :mod:`xrd_strain_plugin.tiled.layout`.

Results of single-curve runs sit one level below ``results/``, those of
multi-curve runs two levels; the search is a server-side deep search
restricted to result nodes (metadata ``layout.name``), so both are found by
one query.

Examples
--------
>>> from tiled.client import from_uri  # doctest: +SKIP
>>> hits = find_results(from_uri(url), sample="YSZ-A", strain_max_percent=(0.5, 2.0))  # doctest: +SKIP
>>> arrays = read_result(next(iter(hits.values())))["arrays"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .layout import ARRAY_NAMES, LAYOUT_NAME, RESULTS_KEY, TABLES, arrays_of_row, with_current_names


def find_results(
    client,
    *,
    sample: str | None = None,
    raw_uid: str | None = None,
    strain_max_percent: tuple[float | None, float | None] | None = None,
    model_version: str | None = None,
    status: str | None = None,
    refinement_status: str | None = None,
    layout_version: str | None = None,
    results_key: str = RESULTS_KEY,
) -> dict[tuple[str, ...], Any]:
    """Result nodes matching every given criterion.

    Parameters
    ----------
    client : tiled.client.container.Container
        Server root (or any node holding ``results_key``).
    sample : str, optional
        Exact sample name.
    raw_uid : str, optional
        uid of the raw run.
    strain_max_percent : (float or None, float or None), optional
        Inclusive range of e_max in percent; None leaves that side open.
    model_version : str, optional
        ``model.version`` of the bundle that answered.
    status : str, optional
        ``"ok"``, ``"rejected"``, ``"aborted"``, ``"failed"`` or ``"error"``.
    refinement_status : str, optional
        ``"none"``, ``"pending"``, ``"done"`` or ``"failed"`` (layout v2; see
        :mod:`xrd_strain_plugin.tiled.refinement`).
    layout_version : str or tuple of str, optional
        ``"1"``, ``"2"``, ``"3"`` or several; all are found by default.

    Returns
    -------
    dict
        Node path below ``results`` (tuple of keys) -> Tiled node client, in
        the server's order (creation order).
    """
    from tiled.queries import In, Key

    queries = [Key("layout.name") == LAYOUT_NAME]
    if sample is not None:
        queries.append(Key("sample") == sample)
    if raw_uid is not None:
        queries.append(Key("raw_uid") == raw_uid)
    if model_version is not None:
        queries.append(Key("model.version") == model_version)
    if status is not None:
        queries.append(Key("status") == status)
    if refinement_status is not None:
        queries.append(Key("refinement.status") == refinement_status)
    if isinstance(layout_version, str):
        queries.append(Key("layout.version") == layout_version)
    elif layout_version is not None:
        queries.append(In("layout.version", list(layout_version)))
    if strain_max_percent is not None:
        lo, hi = strain_max_percent
        if lo is not None:
            queries.append(Key("strain_max_percent") >= float(lo))
        if hi is not None:
            queries.append(Key("strain_max_percent") <= float(hi))
    if results_key not in client:
        return {}
    return dict(client[results_key].search_deep(*queries, max_depth=2).items())


def read_result(node) -> dict[str, Any]:
    """Metadata and arrays of one result node (layout version 1, 2 or 3), arrays with today's names
    (``strain_percent``; :data:`~xrd_strain_plugin.results.ARRAY_NAMES`).

    Returns
    -------
    dict
        ``{"metadata": dict, "arrays": {name: numpy.ndarray}}``; ``arrays`` is
        empty for a result without a profile (status other than ``"ok"``).

    Raises
    ------
    ValueError
        If a v2 node points at an arrays row that belongs to another result.
    """
    metadata = _plain(dict(node.metadata))
    version = (metadata.get("layout") or {}).get("version")
    arrays: dict[str, np.ndarray] = {}
    if version == "1":
        base = getattr(node, "base", node)  # the tables behind the composite view: one read per table
        for table in set(base) & set(TABLES):
            frame = base[table].read()
            arrays.update(with_current_names({c: np.asarray(frame[c], dtype=float) for c in frame.columns}))
    elif metadata.get("arrays"):
        pointer = metadata["arrays"]
        table = read_arrow_table(node.context, pointer["node"])
        arrays = arrays_of_row(
            table, int(pointer["row"]), raw_uid=metadata["raw_uid"], curve_index=metadata.get("curve_index")
        )
    return {"metadata": metadata, "arrays": {k: arrays[k] for k in ARRAY_NAMES if k in arrays}}


def read_arrow_table(context, path: str):
    """A whole table node at ``path`` (below the server root) as a ``pyarrow.Table``, in one request."""
    import pyarrow as pa

    from .writer import ARROW_FILE, check_response

    url = f"{str(context.api_uri).rstrip('/')}/table/full/{path}"
    response = check_response(context.http_client.get(url, params={"format": ARROW_FILE}))
    return pa.ipc.open_file(pa.py_buffer(response.content)).read_all()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One line of a results table (the figures a beamline scientist scans)."""

    path: str
    sample: str | None
    scan_id: int | None
    status: str
    strain_max_percent: float | None
    depth_of_max_nm: float | None
    thickness_nm: float | None
    dw_min: float | None
    sigma_i: float | None
    model_version: str | None
    reason: str | None

    @classmethod
    def from_node(cls, path: tuple[str, ...], node) -> "ResultRow":
        md = node.metadata
        return cls(
            path="/".join(path),
            sample=md.get("sample"),
            scan_id=md.get("scan_id"),
            status=md.get("status"),
            strain_max_percent=md.get("strain_max_percent"),
            depth_of_max_nm=md.get("depth_of_max_nm"),
            thickness_nm=md.get("thickness_nm"),
            dw_min=md.get("dw_min"),
            sigma_i=md.get("sigma_i"),
            model_version=(md.get("model") or {}).get("version"),
            reason=md.get("reason"),
        )


def format_table(rows: list[ResultRow], *, uid_chars: int = 8) -> str:
    """Fixed-width text table of results (for terminals and logs)."""
    head = f"{'result':<13} {'sample':<12} {'scan':>4} {'status':<8} {'e_max %':>7} {'z_max nm':>8} {'t nm':>6} {'DW_min':>6} {'sigma_I':>7}  reason"
    lines = [head, "-" * len(head)]

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(len(format(0.0, fmt)))

    for r in rows:
        parts = r.path.split("/")
        short = parts[0][:uid_chars] + ("/" + parts[1] if len(parts) > 1 else "")
        lines.append(
            f"{short:<13} {str(r.sample or '-')[:12]:<12} {str(r.scan_id if r.scan_id is not None else '-'):>4} "
            f"{r.status:<8} {num(r.strain_max_percent, '7.3f')} {num(r.depth_of_max_nm, '8.1f')} "
            f"{num(r.thickness_nm, '6.1f')} {num(r.dw_min, '6.3f')} {num(r.sigma_i, '7.3f')}  {r.reason or ''}"
        )
    return "\n".join(lines)


def _plain(value):
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
