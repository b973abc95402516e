"""A refinement beside the network's answer, in the same result node (layout v2).

The state lives in the result's metadata, ``refinement.status``, so queries see it:
``none`` (an ``ok`` result nobody has refined), ``pending`` (claimed), ``done``, ``failed``.
A refiner *claims* a result by creating its child container ``refinement`` (a fixed key):
Tiled creates a key once and answers 409 to every later attempt, so of several concurrent
refiners (the live callback's worker, the Prefect flow ``refine_new_results``, a person)
exactly one gets the result. The refined arrays go into that child as one table
(``arrays``: one row, a list column per array) and the summary into its metadata and,
shortened, into the result's ``refinement`` metadata. The network's answer is never touched.

:func:`claim_and_refine` is the one claim -> refine -> write (or fail) step: the live refiner
(:mod:`xrd_strain_plugin.bluesky.refiner`) and the flow ``refine_new_results`` both call it.

Examples
--------
>>> for path, node in find_unrefined(client, limit=50).items():  # doctest: +SKIP
...     outcome = claim_and_refine(node, worker="refine_new_results")
...     print(path, outcome.status, outcome.reason)
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from .layout import RESULTS_KEY, jsonable
from .queries import find_results, read_arrow_table, read_result

REFINEMENT_KEY = "refinement"
ARRAYS_TABLE = "arrays"
#: Scalars of a refinement copied into the result's own ``refinement`` metadata (what queries need).
SUMMARY_KEYS = (
    "sigma_i",
    "sigma_i_start",
    "strain_max_percent",
    "depth_of_max_nm",
    "thickness_nm",
    "dw_min",
    "path",
    "poor_fit",
    "elapsed_s",
    "n_evaluations",
)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _merge(node, refinement: dict) -> None:
    node.patch_metadata(
        metadata_patch={REFINEMENT_KEY: jsonable(refinement)},
        content_type="application/merge-patch+json",
        drop_revision=True,
    )


def find_unrefined(client, *, limit: int | None = None, results_key: str = RESULTS_KEY) -> dict[tuple[str, ...], Any]:
    """``ok`` results of layout v2 or v3 that nobody has refined (``refinement.status == "none"``), oldest first.

    Parameters
    ----------
    client : tiled.client.container.Container
        Server root (or any node holding ``results_key``).
    limit : int, optional
        At most this many (the oldest).
    """
    hits = find_results(
        client, status="ok", layout_version=("2", "3"), refinement_status="none", results_key=results_key
    )
    items = sorted(hits.items(), key=lambda kv: str(kv[1].metadata.get("created") or ""))
    return dict(items[:limit] if limit is not None else items)


def claim_refinement(node, *, worker: str | None = None) -> bool:
    """Claim ``node`` for refinement, atomically. Return False if another refiner has it.

    Creates the child container ``refinement`` (fixed key) with ``status: pending``; Tiled
    refuses a second creation with 409, which is the lock. Then marks the result
    ``refinement.status = "pending"`` for queries.

    Raises
    ------
    httpx.HTTPStatusError, OSError
        Any failure other than "already claimed" (an outage is not a refusal).
    """
    claim = {"status": "pending", "worker": worker or f"{socket.gethostname()}", "claimed_at": _now()}
    try:
        node.create_container(REFINEMENT_KEY, metadata=claim)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == httpx.codes.CONFLICT:
            return False
        raise
    _merge(node, claim)
    return True


def release_refinement(node) -> None:
    """Delete a claim (a refiner that died leaves ``pending``): the result is offered again."""
    if REFINEMENT_KEY in node:
        node[REFINEMENT_KEY].delete(recursive=True, external_only=False)
    _merge(node, {"status": "none", "worker": None, "claimed_at": None, "reason": None})


def refinement_inputs(node):
    """What :func:`xrd_strain_plugin.refinement.refine_curve` needs, from a stored result.

    Returns
    -------
    two_theta_deg : numpy.ndarray, shape (n_points,)
        Measured angles, ascending, degrees of 2-theta.
    counts : numpy.ndarray, shape (n_points,)
        Measured intensities.
    reflection : Reflection
        Material, reflection and wavelength of the result.
    start : StartProfile
        The network's profile and resolution, as the refinement's start.
    """
    from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg
    from xrd_strain_plugin.refinement import StartProfile
    from xrd_strain_plugin.reflection_cache import cached_reflection as make_reflection

    got = read_result(node)
    md, arrays = got["metadata"], got["arrays"]
    if md.get("status") != "ok" or not arrays:
        raise ValueError(f"result {md.get('raw_uid')} has no profile to refine (status {md.get('status')!r})")
    wavelength = float(md["wavelength_angstrom"])
    refl = make_reflection(md["material"], tuple(md["reflection"]["hkl"]), wavelength)
    two_theta = np.asarray(q_to_two_theta_deg(arrays["q_inv_angstrom"], wavelength), dtype=float)
    model = md.get("model") or {}
    start = StartProfile(
        depth_nm=arrays["depth_nm"],
        strain_percent=arrays["strain_percent"],
        debye_waller=arrays["debye_waller"],
        fwhm_deg=float(md["fwhm_deg"]),
        source=f"network:{model.get('id')}@{model.get('version')}",
    )
    return two_theta, np.asarray(arrays["intensity_measured"], dtype=float), refl, start


def write_refinement(node, result) -> None:
    """Store a :class:`~xrd_strain_plugin.refinement.RefinementResult` in the claimed ``node``.

    The arrays go into ``refinement/arrays`` (one row, a list column per array), the whole
    summary into the metadata of ``refinement``, the scalars queries need into the result's
    ``refinement`` metadata with ``status: done``.

    Raises
    ------
    KeyError
        If ``node`` was not claimed (no ``refinement`` child).
    """
    child = node[REFINEMENT_KEY]
    _write_one_row_table(child, ARRAYS_TABLE, result.arrays())
    summary = jsonable(result.summary())
    done = {"status": "done", "finished_at": _now()}
    child.replace_metadata(metadata={**dict(child.metadata), **summary, **done}, drop_revision=True)
    _merge(node, {**{k: summary.get(k) for k in SUMMARY_KEYS}, **done, "reason": None})


def fail_refinement(node, *, reason: str) -> None:
    """Mark a claimed refinement failed with ``reason`` (the network's answer stands)."""
    failed = {"status": "failed", "reason": str(reason)[:2000], "finished_at": _now()}
    if REFINEMENT_KEY in node:
        child = node[REFINEMENT_KEY]
        child.replace_metadata(metadata={**dict(child.metadata), **failed}, drop_revision=True)
    _merge(node, failed)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RefinementOutcome:
    """What :func:`claim_and_refine` did with one result.

    ``status`` is ``done`` (``result`` written beside the network's answer), ``claimed_elsewhere``
    (another refiner has it; nothing done) or ``failed`` (marked ``failed`` in Tiled with
    ``reason``; ``error`` is the exception, for a caller that re-raises it).
    """

    status: str
    result: Any = None
    reason: str | None = None
    error: BaseException | None = None


def claim_and_refine(
    node,
    *,
    worker: str,
    options=None,
    inputs: Callable[[], tuple] | None = None,
    on_claimed: Callable[[], None] | None = None,
) -> RefinementOutcome:
    """Claim ``node``, refine it and write the refinement; mark it failed if anything goes wrong.

    The one claim -> refine -> write/fail step of every refiner (the live worker, the flow).

    Parameters
    ----------
    node : tiled.client.container.Container
        The result node.
    worker : str
        Who claims (stored with the claim).
    options : RefineOptions, optional
        Budgets of :func:`~xrd_strain_plugin.refinement.refine_curve` (default: the engine's).
    inputs : callable, optional
        ``inputs() -> (two_theta_deg, counts, reflection, start)``, called once claimed (the live
        worker has them in memory); default: read from the node (:func:`refinement_inputs`).
    on_claimed : callable, optional
        Called once the claim is held, before refining.

    Returns
    -------
    RefinementOutcome

    Raises
    ------
    httpx.HTTPStatusError, OSError
        If the claim itself fails for another reason than "already claimed" (Tiled away): nothing
        was claimed, the result stays ``none``.
    """
    from xrd_strain_plugin.refinement import RefineOptions, refine_curve

    if not claim_refinement(node, worker=worker):
        return RefinementOutcome(status="claimed_elsewhere")
    if on_claimed is not None:
        on_claimed()
    try:
        two_theta_deg, counts, reflection, start = inputs() if inputs is not None else refinement_inputs(node)
        result = refine_curve(two_theta_deg, counts, reflection, start=start, options=options or RefineOptions())
        write_refinement(node, result)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        try:
            fail_refinement(node, reason=reason)
        except Exception:  # Tiled away: the claim stays pending (find_results(refinement_status="pending"))
            pass
        return RefinementOutcome(status="failed", reason=reason, error=exc)
    return RefinementOutcome(status="done", result=result)


def read_refinement(node) -> dict[str, Any] | None:
    """``{"metadata": dict, "arrays": {name: ndarray}}`` of a result's refinement, or None.

    ``arrays`` is empty until the refinement is done.
    """
    if REFINEMENT_KEY not in node:
        return None
    child = node[REFINEMENT_KEY]
    arrays = {}
    if ARRAYS_TABLE in child:
        import pyarrow as pa

        table = read_arrow_table(child.context, "/".join((*child.path_parts, ARRAYS_TABLE)))
        arrays = {
            field.name: table.column(field.name)[0].values.to_numpy(zero_copy_only=False).astype(float)
            for field in table.schema
            if pa.types.is_list(field.type)
        }  # not the server's index column
    return {"metadata": dict(child.metadata), "arrays": arrays}


def _write_one_row_table(parent, key: str, arrays: dict) -> None:
    """A table of one row with a list column per array (arrays of different lengths), two requests."""
    import dataclasses

    import pyarrow as pa
    from tiled.structures.data_source import DataSource
    from tiled.structures.table import TableStructure

    from .writer import ARROW_FILE, check_response

    table = pa.table(
        {name: pa.array([np.asarray(v, dtype=np.float64)], pa.list_(pa.float64())) for name, v in arrays.items()}
    )
    source = DataSource(structure=TableStructure.from_schema(table.schema), structure_family="table")
    base = str(parent.context.api_uri).rstrip("/")
    path = "/".join(parent.path_parts)
    http = parent.context.http_client
    check_response(
        http.post(
            f"{base}/metadata/{path}",
            json={
                "id": key,
                "structure_family": "table",
                "metadata": {},
                "specs": [],
                "data_sources": [dataclasses.asdict(source)],
            },
            headers={"Accept": "application/json"},
        )
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    check_response(
        http.put(
            f"{base}/table/full/{path}/{key}",
            content=sink.getvalue().to_pybytes(),
            headers={"Content-Type": ARROW_FILE},
        )
    )
