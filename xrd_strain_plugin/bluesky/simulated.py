"""A simulated diffractometer (ophyd): an ω axis and a point detector reading the simulator.

The detector's reading at the current angle is the dynamical-theory intensity
of a configurable sample (strain and Debye-Waller profiles, thickness),
convolved with the instrument resolution, times a scale, plus background, with
Poisson counting noise: an ordinary ``bluesky.plans.scan`` (or ``rel_scan``
around the Bragg angle) records a realistic rocking curve.

The noise-free curve is computed once per sample on a fine 2θ grid over the
scannable window (one vectorised simulator call) and interpolated (in log
space) at each reading, so a 400-point scan costs milliseconds, not 400
simulations.

``ophyd.sim.SynGauss(noise="poisson")`` fails with numpy 2.4, hence a detector
built on :class:`ophyd.sim.SynSignal`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xrd_strain_plugin.physics import instrument


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatedSample:
    """A crystal with a damaged surface layer, as the simulated detector sees it.

    Parameters
    ----------
    name : str
        Sample name (goes into the start document as ``sample``).
    strain : numpy.ndarray, shape (n_slices,)
        Strain of each lamella (plain fraction), index 0 at the surface.
    debye_waller : numpy.ndarray, shape (n_slices,)
        Static Debye-Waller factor of each lamella, in (0, 1].
    thickness_nm : float
        Thickness of the strained layer (nm).
    resolution_fwhm_deg : float
        Instrument resolution, FWHM in degrees of 2θ.
    background_counts : float
        Flat background (counts per point).
    scale_counts : float
        Counts for a reflectivity of 1.
    """

    name: str
    strain: np.ndarray
    debye_waller: np.ndarray
    thickness_nm: float
    resolution_fwhm_deg: float = 0.01
    background_counts: float = 10.0
    scale_counts: float = 1e6

    def depth_nm(self) -> np.ndarray:
        """Depth of the lamella midpoints (nm), 0 at the surface."""
        n = len(self.strain)
        return (np.arange(n) + 0.5) * self.thickness_nm / n


class SimulatedDiffractometer:
    """An ω (or 2θ) axis and a point detector ``det`` reading the simulated sample.

    Parameters
    ----------
    reflection : xrd_strain_plugin.physics.materials.Reflection
        Substrate reflection (material, hkl, wavelength).
    sample : SimulatedSample
        The sample in the beam; change it with :meth:`load`.
    rng : numpy.random.Generator
        Source of the counting noise.
    axis : {"omega", "two_theta"}
        What the motor drives; ω scans are coupled (2θ = 2ω).
    window_deg : (float, float)
        2θ range, relative to the substrate Bragg angle, where the detector
        sees the simulated curve (computed once per sample); outside it reads
        background only.
    step_deg : float
        2θ step of the precomputed curve.
    motor_name, detector_name : str
        ophyd names (and so event field names).

    Attributes
    ----------
    motor : ophyd.sim.SynAxis
        In degrees (``egu="deg"``), hinted.
    detector : ophyd.sim.SynSignal
        Hinted counts.
    """

    def __init__(
        self,
        *,
        reflection,
        sample: SimulatedSample,
        rng: np.random.Generator,
        axis: str = "omega",
        window_deg: tuple[float, float] = (-3.0, 1.0),
        step_deg: float = 0.002,
        motor_name: str | None = None,
        detector_name: str = "det",
    ):
        from ophyd import Kind
        from ophyd.sim import SynAxis, SynSignal

        if axis not in ("omega", "two_theta"):
            raise ValueError(f"axis must be 'omega' or 'two_theta', got {axis!r}")
        self.reflection = reflection
        self.axis = axis
        self.rng = rng
        self.window_deg = tuple(window_deg)
        self.step_deg = float(step_deg)
        self._factor = 2.0 if axis == "omega" else 1.0
        start = reflection.two_theta_bragg_deg / self._factor
        self.motor = SynAxis(name=motor_name or axis, value=start, egu="deg", kind=Kind.hinted)
        self.detector = SynSignal(self._read, name=detector_name, kind=Kind.hinted)
        self.load(sample)

    def load(self, sample: SimulatedSample) -> None:
        """Put ``sample`` in the beam (precomputes its noise-free curve)."""
        lo, hi = self.window_deg
        tb = self.reflection.two_theta_bragg_deg
        grid = np.arange(tb + lo, tb + hi + self.step_deg / 2, self.step_deg)
        refl = instrument.simulate_scan(
            grid,
            np.asarray(sample.strain, dtype=float),
            np.asarray(sample.debye_waller, dtype=float),
            float(sample.thickness_nm),
            self.reflection,
            resolution_fwhm_deg=sample.resolution_fwhm_deg,
            check_layer_in_scan=False,
        )[0]
        self.sample = sample
        self._grid = grid
        self._log_refl = np.log(np.maximum(refl, 1e-300))

    def two_theta_deg(self) -> float:
        """2θ seen by the detector at the current motor position (degrees)."""
        return self._factor * float(self.motor.readback.get())

    def reflectivity(self, two_theta_deg) -> np.ndarray:
        """Noise-free convolved reflectivity at ``two_theta_deg`` (0 outside the window)."""
        x = np.asarray(two_theta_deg, dtype=float)
        inside = (x >= self._grid[0]) & (x <= self._grid[-1])
        return np.where(inside, np.exp(np.interp(x, self._grid, self._log_refl)), 0.0)

    def counts(self, two_theta_deg) -> np.ndarray:
        """Counts with background and Poisson noise at ``two_theta_deg``."""
        r = np.atleast_1d(self.reflectivity(two_theta_deg))
        return instrument.apply_counts(
            r, scale=self.sample.scale_counts, background=self.sample.background_counts, rng=self.rng
        ).reshape(np.shape(two_theta_deg))

    def _read(self):
        if not hasattr(self, "sample"):
            return 0.0
        return float(self.counts(self.two_theta_deg()))

    def scan_range(self, *, low_deg: float = -2.0, high_deg: float = 0.6) -> tuple[float, float]:
        """Motor start and stop (degrees) covering 2θ_B + [low_deg, high_deg] in 2θ."""
        tb = self.reflection.two_theta_bragg_deg
        return (tb + low_deg) / self._factor, (tb + high_deg) / self._factor
