"""From a completed curve to a result record: invert, describe.

The only inversion path is :class:`xrd_strain_plugin.inference.invert.Inverter`
(shared with ``xrd-strain invert``), which orders and validates the curve once
(:class:`xrd_strain_plugin.physics.curve.Curve`); this module adds what the live
side needs around it: the reason when a curve cannot be inverted, provenance and
timings in the layout's metadata.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np

from xrd_strain_plugin.results import ResultRecord, base_metadata
from xrd_strain_plugin.tiled.records import record_from_result

from .collector import CurveJob


@functools.lru_cache(maxsize=32)
def reflection_for(material: str, hkl: tuple[int, int, int], wavelength_angstrom: float):
    """The (cached) :class:`~xrd_strain_plugin.physics.materials.Reflection` of a run."""
    from xrd_strain_plugin.reflection_cache import cached_reflection

    return cached_reflection(material, tuple(hkl), wavelength_angstrom)


def record_from_job(job: CurveJob, inverter) -> ResultRecord:
    """Invert one curve and return its record (``ok``, ``partial``, ``rejected`` or ``error``); never raises.

    A curve of a run stopped before its planned number of points (``job.partial``) is still
    inverted when validation accepts it, and stored with status ``partial`` and the reason;
    if it is too short to invert, the ``rejected`` reason says that the run was stopped.

    Parameters
    ----------
    job : CurveJob
        The completed curve.
    inverter : Inverter
        ``invert(two_theta_deg, intensity, reflection) -> InversionResult``.
    """
    from xrd_strain_plugin.inference.bundle import BundleError
    from xrd_strain_plugin.physics.curve import CurveError
    from xrd_strain_plugin.physics.materials import MaterialError

    started = time.perf_counter()
    timings = {"queue_s": started - job.completed_at}
    common = dict(
        raw_uid=job.raw_uid,
        curve_index=job.curve_index,
        scan_id=job.scan_id,
        sample=job.sample,
    )
    extra = {
        "material": job.material,
        "reflection": {"hkl": list(job.hkl)},
        "wavelength_angstrom": job.wavelength_angstrom,
        "fields": job.fields,
        "n_points": int(job.intensity.size),
        "planned_points": job.planned_points,
        "model": _model_info(inverter),
    }
    try:
        refl = reflection_for(job.material, tuple(job.hkl), float(job.wavelength_angstrom))
        # the inverter orders (a scan run downwards is reversed) and validates the curve, once (physics.curve)
        result = inverter.invert(job.two_theta_deg, job.intensity, refl)
    except (CurveError, MaterialError, BundleError) as exc:
        timings["invert_s"] = time.perf_counter() - started
        reason = str(exc) if job.partial is None else f"{job.partial}: {exc}"
        md = base_metadata(status="rejected", reason=reason, extra=extra | {"timings": timings}, **common)
        return ResultRecord(raw_uid=job.raw_uid, curve_index=job.curve_index, metadata=md)
    except Exception as exc:  # a bug or a resource problem: recorded, not raised
        timings["invert_s"] = time.perf_counter() - started
        md = base_metadata(
            status="error",
            reason=f"inversion failed: {type(exc).__name__}: {exc}",
            extra=extra | {"timings": timings},
            **common,
        )
        return ResultRecord(raw_uid=job.raw_uid, curve_index=job.curve_index, metadata=md)
    timings["invert_s"] = time.perf_counter() - started
    record = record_from_result(
        result, extra={"fields": job.fields, "planned_points": job.planned_points}, timings=timings, **common
    )
    if job.partial is not None:
        record = dataclasses.replace(record, metadata={**record.metadata, "status": "partial", "reason": job.partial})
    return record


def _model_info(inverter) -> dict:
    card = inverter.bundle.card
    return {"id": card.model_id, "version": card.version, "sha256": card.weights_sha256}


def warm_up(inverter, reflection) -> None:
    """Run one synthetic curve through the whole path, so that graph tracing and JIT
    compilation happen at start (and a broken model fails there), not on the first scan."""
    tb = reflection.two_theta_bragg_deg
    two_theta = np.linspace(tb - 2.0, tb + 0.6, 521)
    substrate = np.exp(-0.5 * ((two_theta - tb) / 0.01) ** 2)
    layer = 1e-3 * np.exp(-0.5 * ((two_theta - tb + 0.8) / 0.2) ** 2)
    inverter.invert(two_theta, 1e5 * (substrate + layer) + 10.0, reflection)
