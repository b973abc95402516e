"""From a completed curve to a result record: validate, invert, describe.

The only inversion path is :class:`xrd_strain_plugin.inference.invert.Inverter`
(shared with ``xrd-strain invert``); this module adds what the live side
needs around it: acquisition-order handling, the reason when a curve cannot
be inverted, provenance and timings in the layout's metadata.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from xrd_strain_plugin.tiled.layout import ResultRecord, base_metadata

from .collector import CurveJob


@functools.lru_cache(maxsize=32)
def reflection_for(material: str, hkl: tuple[int, int, int], wavelength_angstrom: float):
    """The (cached) :class:`~xrd_strain_plugin.physics.materials.Reflection` of a run."""
    from xrd_strain_plugin.physics.materials import reflection

    return reflection(material, tuple(hkl), wavelength_angstrom)


def _acquisition_to_increasing(two_theta_deg: np.ndarray, intensity: np.ndarray):
    """A scan run downwards is reversed; anything else non-increasing is left for validation to name."""
    if two_theta_deg.size > 1 and np.all(np.diff(two_theta_deg) < 0):
        return two_theta_deg[::-1], intensity[::-1]
    return two_theta_deg, intensity


def record_from_job(job: CurveJob, inverter) -> ResultRecord:
    """Invert one curve and return its record (``ok``, ``rejected`` or ``error``); never raises.

    Parameters
    ----------
    job : CurveJob
        The completed curve.
    inverter : Inverter
        ``invert(two_theta_deg, intensity, reflection) -> InversionResult``.
    """
    from xrd_strain_plugin.inference.bundle import BundleError
    from xrd_strain_plugin.physics.materials import MaterialError
    from xrd_strain_plugin.physics.qspace import CurveError, validate_curve

    started = time.perf_counter()
    timings = {"queue_s": started - job.completed_at}
    common = dict(
        raw_uid=job.raw_uid, curve_index=job.curve_index, scan_id=job.scan_id, sample=job.sample,
    )
    extra = {
        "material": job.material,
        "reflection": {"hkl": list(job.hkl)},
        "wavelength_angstrom": job.wavelength_angstrom,
        "fields": job.fields,
        "n_points": int(job.intensity.size),
        "model": _model_info(inverter),
    }
    try:
        two_theta, counts = _acquisition_to_increasing(job.two_theta_deg, job.intensity)
        validate_curve(two_theta, counts)
        refl = reflection_for(job.material, tuple(job.hkl), float(job.wavelength_angstrom))
        result = inverter.invert(two_theta, counts, refl)
    except (CurveError, MaterialError, BundleError) as exc:
        timings["invert_s"] = time.perf_counter() - started
        md = base_metadata(status="rejected", reason=str(exc), extra=extra | {"timings": timings}, **common)
        return ResultRecord(raw_uid=job.raw_uid, curve_index=job.curve_index, metadata=md)
    except Exception as exc:  # a bug or a resource problem: recorded, not raised
        timings["invert_s"] = time.perf_counter() - started
        md = base_metadata(status="error", reason=f"inversion failed: {type(exc).__name__}: {exc}",
                           extra=extra | {"timings": timings}, **common)
        return ResultRecord(raw_uid=job.raw_uid, curve_index=job.curve_index, metadata=md)
    timings["invert_s"] = time.perf_counter() - started
    arrays, figures, inner_timings = _describe(result, refl)
    timings.update({f"inverter_{k}": v for k, v in inner_timings.items()})
    extra["model"] = result.model
    md = base_metadata(status="ok", extra=extra | figures | {"timings": timings}, **common)
    return ResultRecord(raw_uid=job.raw_uid, curve_index=job.curve_index, metadata=md, arrays=arrays)


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


def _describe(result, refl):
    """Arrays (layout names), derived figures and inner timings of an InversionResult."""
    arrays = {
        "depth_nm": result.depth_nm,
        "strain": result.strain_percent,
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
    }
    timings = dict(getattr(result, "timings", {}) or {})
    return arrays, {k: float(v) for k, v in figures.items()}, timings
