"""InversionResult -> ResultRecord: the one conversion, for live and offline inversions.

The live callback (:mod:`xrd_strain_plugin.bluesky.records`) and ``xrd-strain invert
--publish`` both build their records here, so a result looks the same in Tiled whichever
way it was made.
"""

from __future__ import annotations

import hashlib
import pathlib
import uuid
from typing import Any

import numpy as np

from xrd_strain_plugin.results import ResultRecord, base_metadata

#: Namespace of the uids given to offline inversions (one uid per file content).
OFFLINE_NAMESPACE = uuid.UUID("6c1f3b0e-6f0a-4f55-9d8e-3b7c1b2f7a10")


def record_from_result(
    result,
    *,
    raw_uid: str,
    curve_index: int | None = None,
    scan_id: int | None = None,
    sample: str | None = None,
    extra: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> ResultRecord:
    """The ``ok`` record of an :class:`~xrd_strain_plugin.inference.invert.InversionResult`.

    Parameters
    ----------
    result : InversionResult
        The network's answer (profile, figures, model curve, provenance).
    raw_uid, curve_index, scan_id, sample
        Identify the measurement (see :class:`~.layout.ResultRecord`).
    extra : dict, optional
        More metadata (fields read, source file...).
    timings : dict, optional
        Seconds spent outside the inverter (queue...); the inverter's own steps are added.
    """
    arrays = {
        "depth_nm": result.depth_nm,
        "strain_percent": result.strain_percent,
        "debye_waller": result.debye_waller,
        "q_inv_angstrom": result.q_inv_angstrom,
        "intensity_measured": result.intensity_measured,
        "intensity_model": result.intensity_model,
    }
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in arrays.items()}
    figures = {
        "strain_max_percent": result.strain_max_percent,
        "depth_of_max_nm": result.depth_of_max_nm,
        "thickness_nm": result.thickness_nm,
        "dw_min": result.dw_min,
        "fwhm_deg": result.fwhm_deg,
        "dynamic_range": result.dynamic_range,
        "sigma_i": result.sigma_i,
        "scale": result.scale,
        "background": result.background,
    }
    all_timings = dict(timings or {})
    all_timings["inverter_total_s"] = float(result.elapsed_s)
    all_timings.update({f"inverter_{k}": float(v) for k, v in (result.timings or {}).items()})
    md = base_metadata(
        status="ok",
        raw_uid=raw_uid,
        curve_index=curve_index,
        scan_id=scan_id,
        sample=sample,
        extra={
            "material": result.material,
            "reflection": {"hkl": list(result.hkl)},
            "wavelength_angstrom": result.wavelength_angstrom,
            "model": result.model,
            "n_points": int(arrays["q_inv_angstrom"].size),
            "refined": bool(result.refined),
            **{k: float(v) for k, v in figures.items()},
            **(extra or {}),
            "timings": all_timings,
        },
    )
    return ResultRecord(raw_uid=raw_uid, curve_index=curve_index, metadata=md, arrays=arrays)


def offline_uid(path) -> str:
    """A stable uid for a measured file: the same content always maps to the same result node."""
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    return str(uuid.uuid5(OFFLINE_NAMESPACE, digest))


def offline_record(result, path, *, sample: str | None = None) -> ResultRecord:
    """Record of an offline inversion of ``path`` (``xrd-strain invert --publish``).

    Stored at ``results/<offline uid>`` with ``raw_uid`` the file's content uid, ``raw_path``
    None (there is no raw run in Tiled) and ``source`` {``file``, ``sha256``}; publishing the
    same file twice gives one node.
    """
    path = pathlib.Path(path)
    uid = offline_uid(path)
    record = record_from_result(
        result,
        raw_uid=uid,
        sample=sample or path.stem,
        extra={
            "source": {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
            "raw_path": None,
        },
    )
    return record


def publish_offline(items, url: str, *, api_key: str | None, spool_directory) -> dict[str, int]:
    """Publish offline inversions to Tiled (spooled if it is away), in order.

    Parameters
    ----------
    items : iterable of (InversionResult, path)
        Results and the files they came from.
    url : str
        Tiled server.
    api_key : str, optional
        Key allowed to write.
    spool_directory : path
        Where results wait if Tiled is unreachable (replayed by the next publish or listener
        using the same directory).

    Returns
    -------
    dict
        ``{"written": n, "spooled": m}``.
    """
    from .spool import Spool, SpoolingPublisher
    from .writer import TiledResultsWriter

    spool = Spool(spool_directory)
    publisher = SpoolingPublisher(lambda: TiledResultsWriter.from_uri(url, api_key=api_key), spool)
    counts = {"written": 0, "spooled": 0}
    try:
        for result, path in items:
            counts["written" if publisher.publish(offline_record(result, path)) else "spooled"] += 1
    finally:
        spool.close()
    return counts
