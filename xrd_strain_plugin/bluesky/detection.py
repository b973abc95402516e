"""Recognise rocking-curve runs from their documents.

A run is a rocking curve when its start document's ``hints['dimensions']``
name an angle motor (θ, ω or 2θ by name; the innermost such dimension wins),
or when configuration or the start metadata (``xrd_strain`` dict) names the
motor. Anything else is not ours and is ignored without a word. Once a run is
ours, every problem (motor missing from the stream, a detector that cannot be
identified, an axis not in degrees) becomes a clear ``rejected`` reason.

The detector field is the one hinted numeric scalar of the stream's
descriptor that is not a motor (``det`` for ophyd's ``SynSignal``,
``det-intensity`` for an ophyd-async device), unless configured.

Start-document metadata understood (all optional, top level or inside an
``xrd_strain`` dict, the latter winning): ``motor_field``, ``detector_field``,
``axis`` (``two_theta``, ``omega``, ``theta``), ``material``, ``hkl``,
``wavelength_angstrom``, ``sample`` (str or dict with ``name``), ``samples``
(list of names, one per curve of a multi-curve run). ``num_points`` (set by
bluesky's plans) is the number of points planned: a run that stops with fewer
(``RE.stop()`` ends it with exit status ``success``) is marked ``partial``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

ANGLE_NAME = re.compile(
    r"(?:^|[_\-.:])(omega|om|theta|th|two_?theta|tth|2theta|2th|ttheta|ttth)(?:$|[_\-.:])", re.IGNORECASE
)
_TWO_THETA_NAME = re.compile(r"two_?theta|tth|2th|ttheta", re.IGNORECASE)
DEGREE_UNITS = {"", "deg", "degree", "degrees", "°"}
AXES = ("auto", "two_theta", "omega", "theta")


class DetectionError(ValueError):
    """The run is a rocking curve, but its documents do not let us read it."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class RockingCurveConfig:
    """How to recognise and read rocking curves; None means "from the documents".

    Parameters
    ----------
    motor_field : str, optional
        Event field of the scanned angle (overrides the start hints).
    detector_field : str, optional
        Event field of the point-detector intensity (overrides descriptor hints).
    axis : {"auto", "two_theta", "omega", "theta"}
        What the motor angle is. ``auto`` reads 2θ from names such as
        ``two_theta``/``tth`` and ω (= θ) otherwise. For ω or θ the curve's
        2θ is twice the motor angle (a coupled ω-2θ scan of a symmetric
        reflection).
    stream_name : str
        Event stream holding the curve when the hints do not say.
    position_fields : tuple of str, optional
        Fields whose change starts a new curve within a run. By default the
        run's other scan dimensions (e.g. a sample stage in a grid scan).
    material : str
        Material name or CIF path when the start document gives none.
    hkl : tuple of int
        Reflection when the start document gives none.
    wavelength_angstrom : float
        X-ray wavelength (Å) when the start document gives none.
    """

    motor_field: str | None = None
    detector_field: str | None = None
    axis: str = "auto"
    stream_name: str = "primary"
    position_fields: tuple[str, ...] | None = None
    material: str = "YSZ"
    hkl: tuple[int, int, int] = (4, 0, 0)
    wavelength_angstrom: float = 1.5406

    def __post_init__(self):
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What a start document told us about a rocking-curve run."""

    motor_field: str | None
    detector_field: str | None
    axis: str
    stream_name: str
    position_fields: tuple[str, ...]
    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float
    scan_id: int | None
    sample: str | None
    samples: tuple[str, ...] | None
    problem: str | None = None
    num_points: int | None = None

    def sample_for(self, curve_index: int | None) -> str | None:
        """Sample name of a curve (per-curve names win over the run's)."""
        if self.samples and curve_index is not None and curve_index < len(self.samples):
            return self.samples[curve_index]
        return self.sample


@dataclasses.dataclass(frozen=True, kw_only=True)
class CurveFields:
    """Fields of the stream that make up the curve."""

    motor: str
    detector: str
    positions: tuple[str, ...]


def _merged(start: Mapping[str, Any]) -> dict[str, Any]:
    md = dict(start)
    own = start.get("xrd_strain")
    if isinstance(own, Mapping):
        md.update(own)
    return md


def _dimensions(start) -> list[tuple[str, str]]:
    dims = (start.get("hints") or {}).get("dimensions") or []
    out = []
    for entry in dims:
        try:
            fields, stream = entry
        except (TypeError, ValueError):
            continue
        out.extend((str(f), str(stream)) for f in fields)
    return out


def plan_from_start(start: Mapping[str, Any], config: RockingCurveConfig) -> RunPlan | None:
    """Decide from a start document whether the run is a rocking curve.

    Returns
    -------
    RunPlan or None
        None when the run is not a rocking curve (ignore it). A plan whose
        ``problem`` is set when the run asked for inversion (``xrd_strain``
        metadata) but names no usable motor.
    """
    md = _merged(start)
    opted_in = isinstance(start.get("xrd_strain"), Mapping)
    dims = _dimensions(start)
    motor = md.get("motor_field") or config.motor_field
    stream = config.stream_name
    if motor is None:
        angles = [(f, s) for f, s in dims if ANGLE_NAME.search(f)]
        if angles:
            motor, stream = angles[-1]  # innermost angle dimension
    else:
        stream = next((s for f, s in dims if f == motor), stream)
    if motor is None and not opted_in:
        return None
    axis = md.get("axis") or config.axis
    if axis == "auto" and motor is not None:
        axis = "two_theta" if _TWO_THETA_NAME.search(motor) else "omega"
    if md.get("position_fields") is not None:
        positions = tuple(md["position_fields"])
    elif config.position_fields is not None:
        positions = tuple(config.position_fields)
    else:
        positions = tuple(f for f, s in dims if f != motor and s == stream)
    sample = md.get("sample")
    if isinstance(sample, Mapping):
        sample = sample.get("name")
    samples = md.get("samples")
    problem = None
    if motor is None:
        problem = (
            "no scanned angle motor: start hints['dimensions'] name no theta/omega/2theta field "
            f"({[f for f, _ in dims]}); set motor_field"
        )
    elif axis not in AXES[1:]:
        problem = f"unknown axis {axis!r}; expected one of {AXES[1:]}"
    return RunPlan(
        motor_field=motor,
        detector_field=md.get("detector_field") or config.detector_field,
        axis=axis,
        stream_name=stream,
        position_fields=positions,
        material=str(md.get("material") or config.material),
        hkl=tuple(int(h) for h in (md.get("hkl") or config.hkl)),
        wavelength_angstrom=float(md.get("wavelength_angstrom") or config.wavelength_angstrom),
        scan_id=start.get("scan_id"),
        sample=None if sample is None else str(sample),
        samples=None if samples is None else tuple(str(s) for s in samples),
        problem=problem,
        num_points=_planned_points(start),
    )


def _planned_points(start: Mapping[str, Any]) -> int | None:
    """Points the plan meant to take (bluesky's ``num_points``), or None when the start does not say."""
    n = start.get("num_points")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != n or n < 1:
        return None
    return int(n)


def _is_scalar_number(key: Mapping[str, Any]) -> bool:
    return key.get("dtype") in ("number", "integer") and not key.get("shape")


def fields_from_descriptor(descriptor: Mapping[str, Any], plan: RunPlan) -> CurveFields:
    """Find the motor, detector and position fields in a descriptor.

    Raises
    ------
    DetectionError
        With a message naming what is missing or ambiguous.
    """
    keys = descriptor.get("data_keys") or {}
    stream = descriptor.get("name", "primary")
    if plan.motor_field not in keys:
        raise DetectionError(
            f"motor field {plan.motor_field!r} is missing from stream {stream!r} (fields: {sorted(keys)})"
        )
    units = str(keys[plan.motor_field].get("units") or "").strip().lower()
    if units not in DEGREE_UNITS:
        raise DetectionError(f"motor field {plan.motor_field!r} is in {units!r}; rocking curves must be in degrees")
    missing = [f for f in plan.position_fields if f not in keys]
    if missing:
        raise DetectionError(f"position field(s) {missing} missing from stream {stream!r}")
    not_detector = {plan.motor_field, *plan.position_fields}
    if plan.detector_field is not None:
        if plan.detector_field not in keys:
            raise DetectionError(
                f"detector field {plan.detector_field!r} is missing from stream {stream!r} (fields: {sorted(keys)})"
            )
        detector = plan.detector_field
    else:
        hinted = [f for obj in (descriptor.get("hints") or {}).values() for f in (obj or {}).get("fields", [])]
        candidates = [f for f in hinted if f in keys and f not in not_detector and _is_scalar_number(keys[f])]
        if not candidates:
            raise DetectionError(
                f"no detector field: stream {stream!r} hints no numeric scalar besides the motor "
                f"(hinted: {hinted}); set detector_field"
            )
        if len(candidates) > 1:
            named = [f for f in candidates if "intensity" in f.lower()]
            if len(named) != 1:
                raise DetectionError(f"several hinted detector fields {candidates}; set detector_field")
            candidates = named
        detector = candidates[0]
    if not _is_scalar_number(keys[detector]):
        raise DetectionError(f"detector field {detector!r} is not a numeric scalar ({keys[detector].get('dtype')})")
    return CurveFields(motor=plan.motor_field, detector=detector, positions=plan.position_fields)
