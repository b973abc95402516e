"""Model: parameters -> curve at the measured angles, through the physics core.

The profile is described by B-spline weights that carry their own units (percent of strain, or
``-ln DW`` for a decoupled disorder profile): ``strain(z) = B(z) @ w`` with the clamped cubic basis of
:func:`~xrd_strain_plugin.physics.profiles.profile_basis` (0 at the interface). Unlike the network's
labels, nothing is divided by ``max |S|``: the map from weights to profile is linear, so the curve is a
smooth function of every parameter and the weights are not scale-redundant.

Parameters (names as in :attr:`CurveModel.names`):

``w0 .. w{n-1}``      strain weights, percent (w0 sets the surface value)
``dw_min``            coupled DW: ``DW = dw_min ** ((e / e_max)^2)``, the paper's law (``dw_mode='coupled'``)
``d0 .. d{m-1}``      decoupled disorder weights, ``DW = exp(-B(z) @ d)`` (``dw_mode='decoupled'``)
``thickness_nm``      damaged-layer thickness
``fwhm_deg``          resolution FWHM, degrees of 2-theta
``eta``               Lorentzian fraction of the pseudo-Voigt resolution
``zero_offset_deg``   2-theta zero offset: the model is evaluated at ``2theta - offset``
``substrate_mismatch`` lattice mismatch of the substrate to the stated material (fraction): the model
                      is evaluated where ``sin theta (1 + mismatch)`` equals the stated crystal's
``log10_scale``       counts at reflectivity 1
``log10_background``  background counts (constant level)
``background_slope``  relative background slope, 1/deg of 2-theta (``background='sloped'``)

Every curve of a batch is computed in one call of :func:`~xrd_strain_plugin.physics.instrument.
simulate_scan` on its array path; the finite-difference Jacobian of the fitter is one such call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.bragg import fringe_period_two_theta_deg
from xrd_strain_plugin.physics.instrument import simulate_scan

__all__ = ["ModelConfig", "Parameter", "CurveModel", "LINEAR_PARAMETERS"]

#: Parameters that enter after the simulation (their Jacobian columns are analytic).
LINEAR_PARAMETERS = ("log10_scale", "log10_background", "background_slope")


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One model parameter: value, physical bounds, whether it varies, finite-difference step."""

    name: str
    value: float
    lower: float
    upper: float
    vary: bool = True
    fd_step: float = 1e-4

    def __post_init__(self):
        if not self.lower <= self.upper:
            raise ValueError(f"parameter {self.name}: lower bound {self.lower} above upper bound {self.upper}")

    def clipped(self, value: float) -> "Parameter":
        """This parameter at ``value`` moved inside its bounds."""
        return replace(self, value=float(min(max(value, self.lower), self.upper)))


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """How a profile is parameterised and how the instrument is modelled.

    Parameters
    ----------
    n_strain_weights : int
        B-spline weights of the strain profile (>= 3; the paper's network uses 10).
    dw_mode : {"coupled", "decoupled"}
        DW tied to the strain through ``dw_min`` (the paper), or its own ``n_dw_weights`` weights.
    n_dw_weights : int
        Weights of a decoupled DW profile.
    n_slices : int
        Lamellae of the simulated layer (the simulator converges as 1/N^2; 120 keeps the model
        within ~2e-3 rms log10 of the converged curve at usual resolutions).
    background : {"constant", "sloped"}
        Background model.
    strain_bounds_percent : tuple of float
        Bounds of every strain weight, percent.
    thickness_bounds_nm : tuple of float
        Bounds of the layer thickness.
    fwhm_bounds_deg : tuple of float
        Bounds of the resolution FWHM, degrees of 2-theta.
    eta_bounds : tuple of float
        Bounds of the pseudo-Voigt Lorentzian fraction.
    zero_offset_bounds_deg : tuple of float
        Bounds of the 2-theta zero offset.
    mismatch_bounds : tuple of float
        Bounds of the substrate mismatch (fraction).
    vary_mismatch : bool
        Whether the substrate mismatch is refined (off by default: it is nearly degenerate with the
        zero offset over a short scan).
    vary_eta : bool
        Whether eta is refined.
    """

    n_strain_weights: int = 10
    dw_mode: str = "coupled"
    n_dw_weights: int = 6
    n_slices: int = 120
    background: str = "constant"
    strain_bounds_percent: tuple[float, float] = (-3.0, 12.0)
    thickness_bounds_nm: tuple[float, float] = (5.0, 5000.0)
    fwhm_bounds_deg: tuple[float, float] = (0.001, 0.3)
    eta_bounds: tuple[float, float] = (0.0, 0.5)
    zero_offset_bounds_deg: tuple[float, float] = (-0.3, 0.3)
    mismatch_bounds: tuple[float, float] = (-0.01, 0.01)
    vary_mismatch: bool = False
    vary_eta: bool = True

    def __post_init__(self):
        if self.n_strain_weights < 3:
            raise ValueError(f"n_strain_weights must be >= 3, got {self.n_strain_weights}")
        if self.dw_mode not in ("coupled", "decoupled"):
            raise ValueError(f"dw_mode must be 'coupled' or 'decoupled', got {self.dw_mode!r}")
        if self.dw_mode == "decoupled" and self.n_dw_weights < 3:
            raise ValueError(f"n_dw_weights must be >= 3, got {self.n_dw_weights}")
        if self.background not in ("constant", "sloped"):
            raise ValueError(f"background must be 'constant' or 'sloped', got {self.background!r}")
        if self.n_slices < 10:
            raise ValueError(f"n_slices must be >= 10, got {self.n_slices}")


class CurveModel:
    """Curves of one reflection at the measured angles, for a batch of parameter vectors.

    Parameters
    ----------
    reflection : Reflection
        The stated crystal and reflection.
    two_theta_deg : numpy.ndarray, shape (n_points,)
        Measured angles, increasing, degrees.
    config : ModelConfig
    """

    def __init__(self, reflection, two_theta_deg, config: ModelConfig = ModelConfig()):
        self.reflection = reflection
        self.two_theta_deg = np.asarray(two_theta_deg, float)
        self.config = config
        c = config
        names = [f"w{k}" for k in range(c.n_strain_weights)]
        names += ["dw_min"] if c.dw_mode == "coupled" else [f"d{k}" for k in range(c.n_dw_weights)]
        names += [
            "thickness_nm",
            "fwhm_deg",
            "eta",
            "zero_offset_deg",
            "substrate_mismatch",
            "log10_scale",
            "log10_background",
            "background_slope",
        ]
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self._basis_strain = profiles.profile_basis(c.n_strain_weights, c.n_slices)
        self._basis_dw = profiles.profile_basis(c.n_dw_weights, c.n_slices) if c.dw_mode == "decoupled" else None
        self._x_deg = self.two_theta_deg - 0.5 * (self.two_theta_deg[0] + self.two_theta_deg[-1])

    @property
    def centred_two_theta_deg(self) -> np.ndarray:
        """The measured angles minus the centre of the scan, degrees (the sloped background's axis)."""
        return self._x_deg

    # ---- parameters -------------------------------------------------------------------------------
    def default_parameters(
        self,
        *,
        strain_weights_percent,
        thickness_nm,
        fwhm_deg,
        dw_min=0.5,
        dw_weights=None,
        eta=0.01,
        zero_offset_deg=0.0,
        substrate_mismatch=0.0,
        log10_scale=5.0,
        log10_background=0.0,
        background_slope=0.0,
    ):
        """Parameters with physical bounds, clipped into them.

        Returns
        -------
        tuple of Parameter
            In the order of :attr:`names`.
        """
        c = self.config
        w = np.asarray(strain_weights_percent, float)
        if w.shape != (c.n_strain_weights,):
            raise ValueError(f"need {c.n_strain_weights} strain weights, got shape {w.shape}")
        lo_s, hi_s = c.strain_bounds_percent
        out = [
            Parameter(name=f"w{k}", value=v, lower=lo_s, upper=hi_s, fd_step=1e-3).clipped(v) for k, v in enumerate(w)
        ]
        if c.dw_mode == "coupled":
            out.append(Parameter(name="dw_min", value=dw_min, lower=0.02, upper=1.0, fd_step=1e-3).clipped(dw_min))
        else:
            d = np.zeros(c.n_dw_weights) if dw_weights is None else np.asarray(dw_weights, float)
            out += [
                Parameter(name=f"d{k}", value=v, lower=0.0, upper=5.0, fd_step=1e-3).clipped(v) for k, v in enumerate(d)
            ]
        out += [
            Parameter(
                name="thickness_nm",
                value=thickness_nm,
                lower=c.thickness_bounds_nm[0],
                upper=c.thickness_bounds_nm[1],
                fd_step=0.02,
            ).clipped(thickness_nm),
            Parameter(
                name="fwhm_deg", value=fwhm_deg, lower=c.fwhm_bounds_deg[0], upper=c.fwhm_bounds_deg[1], fd_step=2e-5
            ).clipped(fwhm_deg),
            Parameter(
                name="eta", value=eta, lower=c.eta_bounds[0], upper=c.eta_bounds[1], vary=c.vary_eta, fd_step=1e-4
            ).clipped(eta),
            Parameter(
                name="zero_offset_deg",
                value=zero_offset_deg,
                lower=c.zero_offset_bounds_deg[0],
                upper=c.zero_offset_bounds_deg[1],
                fd_step=1e-5,
            ).clipped(zero_offset_deg),
            Parameter(
                name="substrate_mismatch",
                value=substrate_mismatch,
                lower=c.mismatch_bounds[0],
                upper=c.mismatch_bounds[1],
                vary=c.vary_mismatch,
                fd_step=1e-6,
            ).clipped(substrate_mismatch),
            Parameter(name="log10_scale", value=log10_scale, lower=-30.0, upper=30.0, fd_step=0.0),
            Parameter(name="log10_background", value=log10_background, lower=-30.0, upper=30.0, fd_step=0.0),
            Parameter(
                name="background_slope",
                value=background_slope,
                lower=-1e3,
                upper=1e3,
                vary=c.background == "sloped",
                fd_step=0.0,
            ),
        ]
        return tuple(out)

    # ---- profiles ---------------------------------------------------------------------------------
    def profiles(self, values):
        """Lamella strain (fraction), DW and thickness of a batch of parameter vectors.

        Parameters
        ----------
        values : array_like, shape (n_batch, n_params) or (n_params,)

        Returns
        -------
        strain, debye_waller : numpy.ndarray, shape (n_batch, n_slices)
        thickness_nm : numpy.ndarray, shape (n_batch,)
        """
        v = np.atleast_2d(np.asarray(values, float))
        c = self.config
        w = v[:, : c.n_strain_weights]
        strain = (w @ self._basis_strain.T) / 100.0
        if c.dw_mode == "coupled":
            dw_min = np.clip(v[:, self.index["dw_min"]], 1e-6, 1.0)
            dw = profiles.dw_coupled(strain, np.max(np.abs(strain), axis=1), dw_min)
        else:
            i0 = self.index["d0"]
            d = v[:, i0 : i0 + c.n_dw_weights]
            dw = np.exp(-np.maximum(d @ self._basis_dw.T, 0.0))
        return strain, np.clip(dw, 0.0, 1.0), v[:, self.index["thickness_nm"]]

    def profile_table(self, values, *, n_depth: int = 201):
        """Strain (percent) and DW at ``n_depth`` depths from the surface to the interface.

        Returns
        -------
        depth_nm, strain_percent, debye_waller : numpy.ndarray, shape (n_depth,)
        """
        v = np.asarray(values, float).reshape(-1)
        c = self.config
        if c.dw_mode == "coupled":
            return profiles.depth_table(
                v[: c.n_strain_weights],
                thickness_nm=v[self.index["thickness_nm"]],
                dw_min=v[self.index["dw_min"]],
                n_depth=n_depth,
            )
        z = np.linspace(0.0, 1.0, n_depth)
        strain_pct = profiles.weights_basis(c.n_strain_weights, z) @ v[: c.n_strain_weights]
        i0 = self.index["d0"]
        dw = np.exp(-np.maximum(profiles.weights_basis(c.n_dw_weights, z) @ v[i0 : i0 + c.n_dw_weights], 0.0))
        return z * v[self.index["thickness_nm"]], strain_pct, dw

    # ---- curves -----------------------------------------------------------------------------------
    def effective_two_theta_deg(self, values) -> np.ndarray:
        """Angles at which the stated crystal's model is evaluated, shape (n_batch, n_points)."""
        v = np.atleast_2d(np.asarray(values, float))
        tt = self.two_theta_deg[None, :] - v[:, self.index["zero_offset_deg"], None]
        mismatch = v[:, self.index["substrate_mismatch"], None]
        if np.any(mismatch != 0):
            s = np.sin(np.radians(tt / 2)) * (1 + mismatch)
            tt = np.where(mismatch != 0, 2 * np.degrees(np.arcsin(np.clip(s, -1, 1))), tt)
        return tt

    def reflectivity(self, values, *, fine_step_deg: float, pad_deg: float) -> np.ndarray:
        """Convolved reflectivity (no scale, no background), shape (n_batch, n_points).

        ``fine_step_deg`` and ``pad_deg`` fix the simulator's internal grid for a whole fit, so the
        curve is a smooth function of the parameters (see :func:`simulate_scan`).
        """
        v = np.atleast_2d(np.asarray(values, float))
        strain, dw, t_nm = self.profiles(v)
        return np.asarray(
            simulate_scan(
                self.effective_two_theta_deg(v),
                strain,
                dw,
                t_nm,
                self.reflection,
                resolution_fwhm_deg=v[:, self.index["fwhm_deg"]],
                shape="pseudo-voigt",
                eta=np.clip(v[:, self.index["eta"]], 0.0, 1.0),
                check_layer_in_scan=False,
                fine_step_deg=fine_step_deg,
                pad_deg=pad_deg,
            )
        )

    def background(self, values) -> np.ndarray:
        """Background counts, shape (n_batch, n_points)."""
        v = np.atleast_2d(np.asarray(values, float))
        level = 10.0 ** v[:, self.index["log10_background"], None]
        slope = v[:, self.index["background_slope"], None]
        return level * np.maximum(1.0 + slope * self._x_deg[None, :], 1e-3)

    def intensity(self, values, reflectivity) -> np.ndarray:
        """Counts from a reflectivity: ``scale * R + background``, shape (n_batch, n_points)."""
        v = np.atleast_2d(np.asarray(values, float))
        return 10.0 ** v[:, self.index["log10_scale"], None] * reflectivity + self.background(v)

    def grid_for(self, values, *, scan_step_deg: float | None = None):
        """Fine-grid step and padding (degrees) that resolve the curves of ``values`` and their neighbours.

        ``values`` may be one parameter vector or a batch (the grid then serves the whole batch). The
        step gives 6 points per FWHM at 0.75x the narrowest resolution, but no more than 8 per thickness
        fringe, and at least 4 per fringe at 1.3x the thickest layer (so the grid stays valid while a fit
        moves them; measured: within ~1e-3 rms log10 of a grid 4x finer) and divides the scan step; the
        padding beyond the scan covers 4 FWHM at 1.3x the widest resolution.
        """
        v = np.atleast_2d(np.asarray(values, float))
        fwhm_lo = float(np.min(v[:, self.index["fwhm_deg"]]))
        fwhm_hi = float(np.max(v[:, self.index["fwhm_deg"]]))
        t_nm = float(np.max(v[:, self.index["thickness_nm"]]))
        refl = self.reflection
        fringe_deg = fringe_period_two_theta_deg(1.3 * t_nm, refl.wavelength_angstrom, refl.theta_bragg)
        # a resolution much narrower than the fringes needs no finer grid than an eighth of a fringe
        # (measured on paper-recipe curves at FWHM 0.004 deg: <= 1.3e-3 rms log10 from a 40x finer grid,
        # 2-5x fewer points than 6 per FWHM)
        need = min(fringe_deg / 4, max(0.75 * fwhm_lo / 6, fringe_deg / 8))
        if scan_step_deg is None:
            scan_step_deg = float(np.min(np.diff(self.two_theta_deg)))
        step = scan_step_deg / max(1, math.ceil(scan_step_deg / need - 1e-9))
        return step, 4 * 1.3 * fwhm_hi
