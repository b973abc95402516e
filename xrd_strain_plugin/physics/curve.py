"""The measured curve, validated and ordered once: what every path (live, ``invert``, refinement) takes.

A :class:`Curve` holds one scan's angles, counts and (optionally) the reflection it was measured
at. It can only be made valid: :meth:`Curve.measured` reverses a descending scan (the one place
that does) and the constructor refuses NaN/inf, negative or all-zero counts, too few points,
angles outside (0, 180) degrees, unsorted or duplicate angles and, with a reflection, a scan that
does not hold that reflection's Bragg peak or is too short for a layer's signal; each refusal is a
:class:`CurveError` naming the problem. Downstream code (:func:`~.qspace.curve_to_model_input`,
the inverter, the refinement) trusts a ``Curve`` and does not check it again.

:func:`validate_curve` is the batched check behind it, also used directly by the training
generator's ``(n_batch, n_points)`` path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .bragg import strain_at_two_theta_deg

if TYPE_CHECKING:
    from .materials import Reflection

__all__ = ["MIN_POINTS", "Curve", "CurveError", "check_scan_covers_reflection", "validate_curve"]

#: Fewest points a curve must have to be resampled meaningfully.
MIN_POINTS = 10


class CurveError(ValueError):
    """A curve that cannot be used; the message names the problem."""


@dataclass(frozen=True, kw_only=True, eq=False)  # arrays: compare the fields, not the objects
class Curve:
    """One measured scan, valid by construction (module docstring).

    Parameters
    ----------
    two_theta_deg : array_like, shape (n_points,)
        Scattering angles, degrees, strictly increasing (use :meth:`measured` for a scan in
        acquisition order).
    counts : array_like, shape (n_points,)
        Intensities, >= 0 and not all zero (counts or any scale).
    reflection : Reflection, optional
        Material, reflection and wavelength; when given the scan must hold its Bragg peak
        (:func:`check_scan_covers_reflection`).
    min_points : int
        Fewest points accepted.

    Attributes
    ----------
    two_theta_deg, counts : numpy.ndarray, shape (n_points,), float64, read-only

    Raises
    ------
    CurveError
        Naming the problem.
    """

    two_theta_deg: np.ndarray
    counts: np.ndarray
    reflection: Reflection | None = None
    min_points: int = MIN_POINTS

    def __post_init__(self):
        angles, counts = _one_curve(self.two_theta_deg, self.counts)
        angles, counts = validate_curve(angles, counts, min_points=self.min_points)
        if self.reflection is not None:
            check_scan_covers_reflection(angles, self.reflection)
        counts = counts[0]
        for array in (angles, counts):
            array.flags.writeable = False
        object.__setattr__(self, "two_theta_deg", angles)
        object.__setattr__(self, "counts", counts)

    @classmethod
    def measured(
        cls, two_theta_deg, counts, reflection: Reflection | None = None, *, min_points: int = MIN_POINTS
    ) -> Curve:
        """A curve in acquisition order: a scan run downwards (every step negative) is reversed.

        Anything else that is not increasing is left for the checks to name (unsorted, duplicates).

        Examples
        --------
        >>> curve = Curve.measured(np.linspace(74.0, 73.0, 11), np.arange(11.0) + 1)
        >>> float(curve.two_theta_deg[0]), float(curve.counts[0])
        (73.0, 11.0)
        """
        angles, values = _one_curve(two_theta_deg, counts)
        if angles.size >= 2 and np.all(np.diff(angles) < 0):
            angles, values = angles[::-1], values[::-1]
        return cls(two_theta_deg=angles, counts=values, reflection=reflection, min_points=min_points)

    @property
    def n_points(self) -> int:
        return int(self.two_theta_deg.size)

    @property
    def q_inv_angstrom(self) -> np.ndarray:
        """``4 pi sin(theta) / lambda`` of the angles, 1/angstrom (needs the reflection)."""
        from .bragg import two_theta_deg_to_q

        if self.reflection is None:
            raise ValueError("q_inv_angstrom needs the curve's reflection (its wavelength)")
        return two_theta_deg_to_q(self.two_theta_deg, self.reflection.wavelength_angstrom)


def _one_curve(two_theta_deg, counts):
    """Both as 1-D float arrays (copies), or a CurveError saying the input is not one curve."""
    angles = np.array(two_theta_deg, dtype=float)
    values = np.array(counts, dtype=float)
    if angles.ndim != 1 or values.ndim != 1:
        raise CurveError(f"one curve is 1-D; got two_theta_deg {angles.shape}, counts {values.shape}")
    return angles, values


def validate_curve(two_theta_deg, intensity, *, min_points: int = MIN_POINTS):
    """Check a curve (or batch) and return it as float arrays, batch-first.

    Parameters
    ----------
    two_theta_deg : array_like, shape (n_points,) or (n_batch, n_points)
        Scattering angles in degrees, strictly increasing along the last axis.
    intensity : array_like, shape (n_points,) or (n_batch, n_points)
        Intensity (counts or any non-negative scale).
    min_points : int
        Fewest points accepted.

    Returns
    -------
    two_theta_deg : numpy.ndarray, shape (n_points,) or (n_batch, n_points)
        As given (1-D stays 1-D: one axis shared by the batch).
    intensity : numpy.ndarray, shape (n_batch, n_points)

    Raises
    ------
    CurveError
        Naming the problem: length mismatch, too few points, NaN/inf, angles outside
        (0, 180) degrees, unsorted or duplicate angles, negative intensity, all-zero intensity.  For a batch the
        message gives the first bad curve's index.
    """
    angles = np.asarray(two_theta_deg, dtype=float)
    counts = np.asarray(intensity, dtype=float)
    if counts.ndim == 1:
        counts = counts[np.newaxis, :]
    if angles.ndim not in (1, 2) or counts.ndim != 2:
        raise CurveError(
            f"curves must be 1-D or (n_batch, n_points); got two_theta_deg {angles.shape}, "
            f"intensity {np.shape(intensity)}"
        )
    if angles.shape[-1] != counts.shape[-1] or (angles.ndim == 2 and angles.shape != counts.shape):
        raise CurveError(f"length mismatch: two_theta_deg has shape {angles.shape}, intensity {np.shape(intensity)}")
    if counts.shape[-1] < min_points:
        raise CurveError(f"too few points: {counts.shape[-1]} (need at least {min_points})")
    _check(~np.isfinite(angles), "two_theta_deg contains NaN or inf")
    _check(~np.isfinite(counts), "intensity contains NaN or inf")
    _check((angles <= 0) | (angles >= 180), "two_theta_deg outside (0, 180) degrees")
    steps = np.diff(angles, axis=-1)
    _check(steps == 0, "duplicate angles in two_theta_deg", offset=1)
    _check(steps < 0, "two_theta_deg is not sorted in increasing order", offset=1)
    _check(counts < 0, "negative intensity")
    all_zero = np.all(counts == 0, axis=-1)
    if np.any(all_zero):
        raise CurveError(f"intensity is zero everywhere (curve {int(np.argmax(all_zero))})")
    return angles, counts


def check_scan_covers_reflection(
    two_theta_deg, reflection, *, margin_deg: float = 0.3, min_strain_span: float = 0.001
) -> None:
    """Refuse a scan that cannot hold this reflection's substrate peak and a layer's signal.

    Raises
    ------
    CurveError
        If the reflection's Bragg angle lies more than ``margin_deg`` outside the scan (wrong
        reflection, wavelength or motor), or if the scan reaches less than ``min_strain_span``
        (0.1 % strain) on both sides of the Bragg angle (too short for a layer's signal).
    """
    tt = np.asarray(two_theta_deg, float)
    lo, hi = float(tt.min()), float(tt.max())
    bragg = reflection.two_theta_bragg_deg
    name = f"{reflection.material} {tuple(int(i) for i in reflection.hkl)} at {reflection.wavelength_angstrom:g} A"
    if bragg < lo - margin_deg or bragg > hi + margin_deg:
        raise CurveError(
            f"the scan [{lo:.3f}, {hi:.3f}] deg 2theta does not contain the Bragg peak of {name} "
            f"(2theta_B = {bragg:.3f} deg): check the reflection, the wavelength and the scanned motor"
        )
    # strain whose layer peak sits at each end of the scan (Bragg law, physics.bragg)
    span_low = max(float(strain_at_two_theta_deg(lo, reflection.theta_bragg)), 0.0)
    span_high = max(-float(strain_at_two_theta_deg(hi, reflection.theta_bragg)), 0.0)
    if max(span_low, span_high) < min_strain_span:
        raise CurveError(
            f"the scan [{lo:.3f}, {hi:.3f}] deg is too short to hold a layer's signal: it reaches "
            f"{100 * span_low:.3f} % strain below and {100 * span_high:.3f} % above the {name} peak "
            f"(need at least {100 * min_strain_span:.2g} % on one side)"
        )


def _check(bad: np.ndarray, message: str, offset: int = 0) -> None:
    """Raise ``CurveError(message)`` at the first bad point (``offset``: 1 for step arrays)."""
    if np.any(bad):
        where = np.argwhere(bad)[0]
        point = where[-1] + offset
        location = f"curve {where[0]}, point {point}" if bad.ndim == 2 else f"point {point}"
        raise CurveError(f"{message} (first at {location})")
