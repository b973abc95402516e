"""Automatic refinement of one measured curve: starts, 2-theta offset search, local fits, global stage.

:func:`refine_curve` is the one library entry point used by ``xrd-strain invert --refine``, the live
callback's background refiner and the scheduled Prefect flow. Its stages, each on a shared wall-clock
budget:

1. **Starts.** The given start (the network's answer, possibly transferred from another crystal) is
   turned into model parameters; variants with the thickness and the strain scaled by +-15 % and a few
   generic low-strain profiles (their strain range read off the curve's low-angle extent) join it.
2. **Offset search.** Every start is evaluated on a grid of 2-theta zero offsets in one batched call
   (the reflectometry codes' trick of predicting on shifted copies), scale and background fitted for
   each, and keeps its best offset.
3. **Local fits.** Short bounded least-squares fits from the best few starts, then the winner is fitted
   to convergence (:func:`~xrd_strain_plugin.refinement.fitter.fit_local`).
4. **Global stage.** If the misfit is still well above what counting noise allows, differential
   evolution (its whole population simulated in one batched call per generation) searches a reduced
   profile space under its own time budget, and the best member is polished by least squares.

Nothing falls back silently: :class:`~xrd_strain_plugin.refinement.result.RefinementResult` says
which path won, lists every stage with its misfit and time, and flags a fit that stayed poor.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.curve import Curve, check_scan_covers_reflection
from xrd_strain_plugin.refinement.fitter import Budget, LocalFit, fit_local
from xrd_strain_plugin.refinement.model import CurveModel, ModelConfig
from xrd_strain_plugin.refinement.objective import Objective, fit_scale_background
from xrd_strain_plugin.refinement.result import RefinementResult

__all__ = ["RefineOptions", "StartProfile", "refine_curve", "prepare_curve", "check_scan_covers_reflection"]


@dataclass(frozen=True, kw_only=True)
class RefineOptions:
    """How hard and how long to refine.

    Parameters
    ----------
    budget_s : float
        Cap on the starts, offset search and local fits, CPU seconds of the calling thread (see
        :class:`~xrd_strain_plugin.refinement.fitter.Budget`; equal to wall seconds on an idle core).
        The stages do a fixed amount of work (so a curve always gets the same answer); the cap only
        stops a pathological case (typical: 1.5-3 s).
    global_budget_s : float
        Extra budget of the global stage (0 disables it), CPU seconds.
    model : ModelConfig
        Profile parameterisation and instrument model.
    weighting : {"auto", "counts", "none"}
        Weights of the log residuals (see :class:`~xrd_strain_plugin.refinement.objective.Objective`).
    model_floor : float
        Floor of every point's log10 uncertainty with counting weights, decades: what the model
        cannot describe. Measured on the real YSZ curve: pure counting weights (0) leave sigma_I at
        0.117, a floor of 0.03 at 0.104, 0.1 at 0.0995, equal weights at 0.0965 (same start).
    fix : tuple of str
        Parameters held at their start values (names of :class:`CurveModel`).
    offset_search_deg : float
        Half range of the 2-theta zero-offset search, degrees.
    n_offsets : int
        Offsets tried per start.
    n_short_fits : int
        Starts given a short fit on the screening model (the given start always is one).
    n_final_fits : int
        Short-fit results fitted to convergence on the full model (the chosen one and runners-up).
    short_fit_nfev, final_fit_nfev : int
        Residual evaluations of a short fit and of each round of the final fit.
    smoothness : float
        Weight of the Tikhonov smoothness prior on the profile weights
        (:func:`~xrd_strain_plugin.refinement.fitter.fit_local`); 0 disables it.
    generic_starts : bool
        Also try the generic low-strain starts (:data:`GENERIC_SHAPES` x :data:`GENERIC_THICKNESSES_NM`).
        Always on when no start is given.
    poor_factor : float
        Flag the answer poor (and run the global stage) when sigma_I > ``poor_factor * floor + 0.02``
        (floor: the sigma_I counting noise alone would give, or 0.09 where counts are unknown).
    seed : int
        Seed of the global stage's random generator.
    """

    budget_s: float = 6.0
    global_budget_s: float = 12.0
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: str = "auto"
    model_floor: float = 0.1
    fix: tuple[str, ...] = ()
    offset_search_deg: float = 0.05
    n_offsets: int = 21
    n_short_fits: int = 4
    n_final_fits: int = 3
    short_fit_nfev: int = 6
    final_fit_nfev: int = 30
    poor_factor: float = 1.35
    smoothness: float = 2.0
    generic_starts: bool = True
    seed: int = 0

    def __post_init__(self):
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be positive, got {self.budget_s}")
        if self.global_budget_s < 0:
            raise ValueError(f"global_budget_s must be >= 0, got {self.global_budget_s}")


@dataclass(frozen=True, kw_only=True)
class StartProfile:
    """A start for refinement: a tabulated profile and instrument width.

    Parameters
    ----------
    depth_nm, strain_percent, debye_waller : numpy.ndarray, shape (n_depth,)
        Profile from the surface to the interface (the last depth is the thickness).
    fwhm_deg : float
        Resolution FWHM, degrees of 2-theta.
    source : str
        Where it came from (e.g. the network's model id), for provenance.
    transfer : dict
        How it was mapped from another crystal, if it was (empty otherwise).
    """

    depth_nm: np.ndarray
    strain_percent: np.ndarray
    debye_waller: np.ndarray
    fwhm_deg: float
    source: str = "user"
    transfer: dict = field(default_factory=dict)

    @property
    def thickness_nm(self) -> float:
        return float(self.depth_nm[-1])

    @classmethod
    def from_inversion(cls, result) -> "StartProfile":
        """Start from an :class:`~xrd_strain_plugin.inference.invert.InversionResult`."""
        return cls(depth_nm=np.asarray(result.depth_nm, float), strain_percent=np.asarray(result.strain_percent, float),
                   debye_waller=np.asarray(result.debye_waller, float), fwhm_deg=float(result.fwhm_deg),
                   source=f"network:{result.model_id}@{result.model_version}",
                   transfer=dict(getattr(result, "transfer", {}) or {}))


# ---- input checks -------------------------------------------------------------------------------------
def prepare_curve(two_theta_deg, intensity):
    """Validate one measured curve and return it in increasing angle order.

    A descending scan is valid input: it is reversed. Everything else
    :class:`~xrd_strain_plugin.physics.curve.Curve` refuses (NaN, negative counts, duplicates,
    unsorted angles, too few points) raises ``CurveError``.
    """
    curve = Curve.measured(np.asarray(two_theta_deg, float).reshape(-1), np.asarray(intensity, float).reshape(-1))
    return curve.two_theta_deg, curve.counts


# ---- starts --------------------------------------------------------------------------------------------
def _weights_from_table(z, values, n_weights):
    return profiles.fit_weights_at(z, values, n_weights)


def _start_values(model: CurveModel, start: StartProfile, *, fwhm_deg=None):
    c = model.config
    z = np.asarray(start.depth_nm, float) / max(start.thickness_nm, 1e-9)
    w = _weights_from_table(z, start.strain_percent, c.n_strain_weights)
    dw = np.clip(np.asarray(start.debye_waller, float), 1e-4, 1.0)
    d = None
    if c.dw_mode == "decoupled":
        d = np.clip(_weights_from_table(z, -np.log(dw), c.n_dw_weights), 0.0, 5.0)
    params = model.default_parameters(strain_weights_percent=w, thickness_nm=start.thickness_nm,
                                      fwhm_deg=fwhm_deg or start.fwhm_deg, dw_min=float(dw.min()),
                                      dw_weights=d)
    return params


def _strain_extent(objective: Objective, reflection, fwhm_deg: float) -> float:
    """Largest |strain| where the curve still rises clearly above its background (a start's e_max)."""
    tt, y = objective.two_theta_deg, objective.intensity
    positive = y[y > 0]
    bg = float(np.percentile(positive, 10))
    bragg = reflection.two_theta_bragg_deg
    i_peak = int(np.argmax(y))
    peak_tt = tt[i_peak] if abs(tt[i_peak] - bragg) < 0.5 else bragg
    smooth = np.convolve(y, np.ones(5) / 5, mode="same")
    away = np.abs(tt - peak_tt) > 4 * fwhm_deg
    signal = away & (smooth > 4 * bg)
    if not np.any(signal):
        return 0.003
    far = float(np.max(np.abs(tt[signal] - peak_tt)))
    return max(0.001, math.radians(far / 2) / math.tan(reflection.theta_bragg))


def _peak_fwhm_deg(objective: Objective) -> float:
    tt, y = objective.two_theta_deg, objective.intensity
    i = int(np.argmax(y))
    half = y[i] / 2
    lo = i
    while lo > 0 and y[lo] > half:
        lo -= 1
    hi = i
    while hi < y.size - 1 and y[hi] > half:
        hi += 1
    return float(max(tt[hi] - tt[lo], 2 * np.min(np.diff(tt))))


#: Generic strain shapes of the low-strain starts, on the reduced depth z (0 surface, 1 interface).
GENERIC_SHAPES = {
    "ramp": lambda z: np.clip(1.2 * (1 - z), 0, 1),
    "surface": lambda z: np.exp(-0.5 * (z / 0.4) ** 2),
    "plateau": lambda z: np.where(z < 0.6, 1.0, np.clip((1 - z) / 0.4, 0, 1)),
    "buried": lambda z: np.exp(-0.5 * ((z - 0.6) / 0.2) ** 2),
}
#: Thicknesses of the low-strain starts, nm.
GENERIC_THICKNESSES_NM = (80.0, 150.0, 250.0, 400.0, 650.0, 1000.0)


def _low_strain_starts(model: CurveModel, fwhm_deg: float, e_max: float):
    """Generic starts: each shape of :data:`GENERIC_SHAPES` at the curve's strain extent, each thickness."""
    z = profiles.slice_midpoints(200)
    out = []
    lo_t, hi_t = model.config.thickness_bounds_nm
    for t_nm in GENERIC_THICKNESSES_NM:
        if not lo_t <= t_nm <= hi_t:
            continue
        for shape in GENERIC_SHAPES.values():
            profile = shape(z)
            start = StartProfile(depth_nm=z * t_nm, strain_percent=100 * e_max * profile,
                                 debye_waller=np.exp(np.log(0.5) * profile**2), fwhm_deg=fwhm_deg,
                                 source="low-strain")
            out.append(("low-strain", _start_values(model, start)))
    return out


class _Slice(Budget):
    """An equal share of what is left of a budget, for one of ``n_left`` remaining tasks."""

    def __init__(self, parent: Budget, n_left: int):
        super().__init__(max(parent.left, 0.0) / max(n_left, 1))


# ---- stages ------------------------------------------------------------------------------------------
def _with(params, model, updates):
    out = list(params)
    for name, value in updates.items():
        i = model.index[name]
        out[i] = out[i].clipped(value)
    return tuple(out)


def _fix(params, names):
    return tuple(replace(p, vary=False) if p.name in names else p for p in params)


def _score_rows(model, objective, rows, step, pad):
    """Curves of a batch of parameter rows in one call, scale and background fitted for each.

    Returns the rows with the fitted scale/background, their costs and curves (counts).
    """
    rows = np.array(rows, dtype=float)
    refl = model.reflectivity(rows, fine_step_deg=step, pad_deg=pad)
    ls, lb = fit_scale_background(objective.intensity, refl, weights=objective.weights)
    rows[:, model.index["log10_scale"]] = ls
    rows[:, model.index["log10_background"]] = lb
    curves = model.intensity(rows, refl)
    res = objective.residuals(curves)
    return rows, 0.5 * np.sum(res * res, axis=1), curves


def _offset_search(model, objective, params, offsets, step, pad):
    """Best 2-theta offset of one start: one batched call over the offsets, scale/background fitted."""
    v = np.array([p.value for p in params])
    rows = np.repeat(v[None, :], len(offsets), axis=0)
    rows[:, model.index["zero_offset_deg"]] = offsets
    rows, cost, curves = _score_rows(model, objective, rows, step, pad)
    k = int(np.argmin(cost))
    best = _with(params, model, {n: rows[k, model.index[n]] for n in
                                 ("zero_offset_deg", "log10_scale", "log10_background")})
    return best, float(cost[k]), curves[k], len(offsets)


def _global_stage(model_full: CurveModel, objective, best: LocalFit, options: RefineOptions, budget: Budget,
                  e_max: float, fwhm0: float):
    """Differential evolution over a reduced coupled-DW profile space; the population is one batch."""
    from scipy.optimize import differential_evolution

    c = options.model
    n_g = min(c.n_strain_weights, 8)
    cfg = replace(c, n_strain_weights=n_g, dw_mode="coupled", n_slices=min(c.n_slices, 80))
    m = CurveModel(model_full.reflection, model_full.two_theta_deg, cfg)
    t_best = best.value("thickness_nm")
    off_best = best.value("zero_offset_deg")
    e_hi = max(1.6 * e_max, 1.2 * max(abs(best.value(f"w{k}")) for k in range(c.n_strain_weights)) / 100)
    names = [f"w{k}" for k in range(n_g)] + ["dw_min", "thickness_nm", "fwhm_deg", "eta", "zero_offset_deg"]
    lo_t, hi_t = cfg.thickness_bounds_nm
    bounds = ([(0.0, 100 * e_hi)] * n_g
              + [(0.05, 1.0), (max(lo_t, 20.0), min(hi_t, max(3 * t_best, 1000.0))),
                 (max(cfg.fwhm_bounds_deg[0], 0.5 * fwhm0), min(cfg.fwhm_bounds_deg[1], 2.0 * fwhm0)),
                 (0.0, min(cfg.eta_bounds[1], 0.05)), (off_best - 0.02, off_best + 0.02)])
    fixed_names = set(options.fix)
    base_params = m.default_parameters(strain_weights_percent=np.zeros(n_g), thickness_nm=t_best,
                                       fwhm_deg=best.value("fwhm_deg"), eta=best.value("eta"))
    base = np.array([p.value for p in base_params])
    for n in ("substrate_mismatch", "background_slope"):
        base[m.index[n]] = best.value(n)
    for i, n in enumerate(names):  # a fixed parameter keeps its value in the search
        if n in fixed_names and n in {p.name for p in best.parameters}:
            v = best.value(n)
            bounds[i] = (v, v + 1e-12)
    ix = [m.index[n] for n in names]
    # one grid for the whole population: fine enough for its narrowest resolution and thickest layer
    probe = base.copy()
    probe[m.index["thickness_nm"]] = bounds[n_g + 1][1] / 1.3
    probe[m.index["fwhm_deg"]] = bounds[n_g + 2][0] / 0.7
    step, _ = m.grid_for(probe)
    pad = 6 * bounds[n_g + 2][1]
    stats = {"curves": 0}

    def cost(x):
        x = np.atleast_2d(x.T if x.ndim == 2 else x[None, :])
        rows = np.repeat(base[None, :], x.shape[0], axis=0)
        rows[:, ix] = x
        refl = m.reflectivity(rows, fine_step_deg=step, pad_deg=pad)
        stats["curves"] += x.shape[0]
        ls, lb = fit_scale_background(objective.intensity, refl, weights=objective.weights, n_iter=8)
        rows[:, m.index["log10_scale"]] = ls
        rows[:, m.index["log10_background"]] = lb
        res = objective.residuals(m.intensity(rows, refl))
        return 0.5 * np.sum(res * res, axis=1)

    def stop(*_args, **_kwargs):
        return budget.left <= 0

    rng = np.random.default_rng(options.seed)
    result = differential_evolution(cost, bounds, vectorized=True, updating="deferred", popsize=10,
                                    maxiter=1000, tol=1e-6, polish=False, seed=rng, callback=stop)
    x = result.x
    # back to the full parameterisation: refit the weights on the configured basis
    rows = base.copy()
    rows[ix] = x
    depth, strain_pct, dw = m.profile_table(rows)
    start = StartProfile(depth_nm=depth, strain_percent=strain_pct, debye_waller=dw,
                         fwhm_deg=float(rows[m.index["fwhm_deg"]]), source="global")
    params = _start_values(model_full, start)
    params = _with(params, model_full, {"eta": rows[m.index["eta"]],
                                        "zero_offset_deg": rows[m.index["zero_offset_deg"]],
                                        "substrate_mismatch": best.value("substrate_mismatch"),
                                        "background_slope": best.value("background_slope")})
    return params, stats["curves"]


def refine_curve(two_theta_deg, intensity, reflection, *, start=None,
                 options: RefineOptions | None = None) -> RefinementResult:
    """Refine a strain/DW profile against one measured curve.

    Parameters
    ----------
    two_theta_deg : array_like, shape (n_points,)
        Scan angles, degrees of 2-theta, ascending or descending.
    intensity : array_like, shape (n_points,)
        Measured intensities (counts, possibly scaled, or any non-negative scale).
    reflection : Reflection
        Crystal, reflection and wavelength of the measurement (its own physics is fitted).
    start : StartProfile or InversionResult, optional
        The start, usually the network's answer (transferred from the crystal the network was trained
        on when that differs). None: generic low-strain starts only (and the global stage if they stay
        poor).
    options : RefineOptions, optional

    Returns
    -------
    RefinementResult

    Raises
    ------
    CurveError
        The curve is unusable, or the scan does not contain the reflection's Bragg peak, or is too
        short to hold a layer's signal (the message says which).
    """
    options = options or RefineOptions()
    wall0 = time.perf_counter()
    budget = Budget(options.budget_s)
    angles, counts = prepare_curve(two_theta_deg, intensity)
    check_scan_covers_reflection(angles, reflection)
    if start is not None and not isinstance(start, StartProfile):
        start = StartProfile.from_inversion(start)
    objective = Objective.from_data(angles, counts, weighting=options.weighting, model_floor=options.model_floor)
    model = CurveModel(reflection, angles, options.model)
    unknown = set(options.fix) - set(model.names)
    if unknown:
        raise ValueError(f"cannot fix unknown parameter(s) {sorted(unknown)}; known: {', '.join(model.names)}")
    stages = []
    n_curves = 0
    n_eval = 0

    fwhm_peak = _peak_fwhm_deg(objective)
    e_max = _strain_extent(objective, reflection, fwhm_peak)
    fwhm_start = start.fwhm_deg if start is not None else max(0.6 * fwhm_peak, 0.002)
    screen = CurveModel(reflection, angles, replace(options.model, n_slices=min(options.model.n_slices, 60)))
    candidates = []
    if start is not None:
        p0 = _start_values(model, start)
        candidates.append(("local", p0))
        t0, w0 = start.thickness_nm, np.array([p.value for p in p0[: options.model.n_strain_weights]])
        for ft, fe in ((0.7, 1.0), (1.4, 1.0), (1.0, 0.8), (1.0, 1.25)):
            upd = {"thickness_nm": t0 * ft}
            upd.update({f"w{k}": w0[k] * fe for k in range(w0.size)})
            candidates.append(("multi-start", _with(p0, model, upd)))
    if options.generic_starts or start is None:
        candidates += _low_strain_starts(model, fwhm_start, e_max)
    candidates = [(label, _fix(params, options.fix)) for label, params in candidates]

    # 2-theta offset search on the first start (the substrate peak fixes it for all), then every start
    # scored at that offset in one batch, scale and background fitted for each
    t_stage = time.perf_counter()
    first = candidates[0][1]
    v_first = np.array([p.value for p in first])
    if "zero_offset_deg" not in options.fix:
        lo_o, hi_o = options.model.zero_offset_bounds_deg
        offsets = np.clip(np.linspace(-options.offset_search_deg, options.offset_search_deg, options.n_offsets),
                          lo_o, hi_o)
        step, pad = screen.grid_for(v_first)
        first, _, _, n = _offset_search(screen, objective, first, offsets, step, pad)
        n_curves += n
    offset = first[model.index["zero_offset_deg"]].value
    candidates = [(label, _with(params, model, {"zero_offset_deg": offset})) for label, params in candidates]
    rows = np.array([[p.value for p in params] for _, params in candidates])
    step, pad = screen.grid_for(rows)
    rows, costs, curves = _score_rows(screen, objective, rows, step, pad)
    n_curves += len(rows)
    i_s, i_b = model.index["log10_scale"], model.index["log10_background"]
    scored = sorted(((float(costs[k]), label, _with(params, model, {"log10_scale": rows[k, i_s],
                                                                    "log10_background": rows[k, i_b]}),
                      curves[k]) for k, (label, params) in enumerate(candidates)), key=lambda item: item[0])
    i_given = next((k for k, item in enumerate(scored) if item[1] == "local"), None)
    intensity_start = scored[i_given if i_given is not None else 0][3]
    sigma_start = objective.sigma_i(intensity_start)
    stages.append({"stage": "starts", "starts": len(candidates), "zero_offset_deg": float(offset),
                   "sigma_i": objective.sigma_i(scored[0][3]), "seconds": time.perf_counter() - t_stage})

    # short fits of the best few starts on the screening model (the given start always among them),
    # then the winner to convergence on the full model
    t_stage = time.perf_counter()
    shortlist = scored[: options.n_short_fits]
    if i_given is not None and i_given >= options.n_short_fits:
        shortlist.append(scored[i_given])
    fits = []
    share = Budget(0.5 * max(budget.left, 0.0))
    for _, label, params, _ in shortlist:
        fit = fit_local(screen, objective, params, budget=_Slice(share, len(shortlist) - len(fits)),
                        max_nfev=options.short_fit_nfev, ftol=1e-3, xtol=1e-4,
                        smoothness=options.smoothness)
        n_curves += fit.n_curves
        n_eval += fit.n_evaluations
        fits.append((fit.cost, label, fit))
    fits.sort(key=lambda f: f[0])
    # Curves of different profiles can match within counting noise. Among fits whose chi-square differs by
    # less than its own standard deviation (sqrt(2 n)), keep the one closest to the given start: the start
    # (the network's answer) carries the prior the data cannot decide.
    tolerance = math.sqrt(2 * angles.size) / 2  # in cost = chi^2 / 2
    rank = {"local": 0, "multi-start": 1, "low-strain": 2, "global": 3}

    def choose(items):
        equivalent = [f for f in items if f[0] <= min(f[0] for f in items) + tolerance]
        return min(equivalent, key=lambda f: (rank.get(f[1], 4), f[0]))

    _, path, best_short = choose(fits)
    stages.append({"stage": "short-fits", "fits": len(fits), "path": path, "sigma_i": best_short.sigma_i,
                   "seconds": time.perf_counter() - t_stage})

    # the chosen start to convergence on the full model, and the best runner-up (the short fits rank them
    # only roughly); a fixed amount of work, so the same curve always gets the same answer, the budget
    # being only a cap
    t_stage = time.perf_counter()
    queue = [(path, best_short)] + [(label, fit) for _, label, fit in fits if fit is not best_short]
    finals = []
    for label, short in queue[: options.n_final_fits]:
        if finals and budget.left <= 0:
            break
        best = None
        params = short.parameters
        for _ in range(3):  # refit until converged, the grid re-derived for the current resolution
            fit = fit_local(model, objective, params, budget=budget, max_nfev=options.final_fit_nfev,
                            ftol=1e-5, xtol=1e-5, smoothness=options.smoothness)
            n_curves += fit.n_curves
            n_eval += fit.n_evaluations
            improved = best is None or fit.cost < best.cost * (1 - 1e-4)
            if best is None or fit.cost <= best.cost:
                best = fit
            params = best.parameters
            if fit.converged or not improved or budget.left <= 0:
                break
        finals.append((best.cost, label, best))
    _, path, best = choose(finals)
    if i_given is not None:
        # never answer worse than the given start (a budget cut short, a pathological curve): the start
        # itself, at its best offset, scale and background, on the full model
        as_given = fit_local(model, objective, scored[i_given][2], max_nfev=1, smoothness=options.smoothness)
        n_curves += as_given.n_curves
        if as_given.cost < best.cost:
            best, path = as_given, "start"
    stages.append({"stage": "local", "path": path, "sigma_i": best.sigma_i,
                   "seconds": time.perf_counter() - t_stage})

    floor = objective.noise_floor(best.intensity_model)
    floor_ref = floor if floor is not None else 0.09
    poor_threshold = options.poor_factor * floor_ref + 0.02
    if best.sigma_i > poor_threshold and options.global_budget_s > 0:
        t_stage = time.perf_counter()
        g_budget = Budget(options.global_budget_s)
        params, n = _global_stage(model, objective, best, options, g_budget, e_max, best.value("fwhm_deg"))
        n_curves += n
        params = _fix(params, options.fix)
        v = np.array([p.value for p in params])
        step, pad = model.grid_for(v)
        params, _, _, n = _offset_search(model, objective, params, np.array([v[model.index["zero_offset_deg"]]]),
                                         step, pad)
        n_curves += n
        polish = Budget(max(options.budget_s, 1.0))
        fit = fit_local(model, objective, params, budget=polish, max_nfev=60, smoothness=options.smoothness)
        n_curves += fit.n_curves
        n_eval += fit.n_evaluations
        stages.append({"stage": "global", "sigma_i": fit.sigma_i, "seconds": time.perf_counter() - t_stage})
        if fit.cost < best.cost:
            best, path = fit, "global"
        floor = objective.noise_floor(best.intensity_model)
        floor_ref = floor if floor is not None else 0.09
        poor_threshold = options.poor_factor * floor_ref + 0.02

    values = {p.name: float(p.value) for p in best.parameters}
    depth, strain_pct, dw = model.profile_table([p.value for p in best.parameters])
    i_max = int(np.argmax(np.abs(strain_pct)))
    return RefinementResult(
        depth_nm=depth, strain_percent=strain_pct, debye_waller=dw, two_theta_deg=angles,
        intensity_measured=counts, intensity_model=best.intensity_model, intensity_start=intensity_start,
        thickness_nm=values["thickness_nm"], strain_max_percent=float(strain_pct[i_max]),
        depth_of_max_nm=float(depth[i_max]), dw_min=float(np.min(dw)), sigma_i=best.sigma_i,
        sigma_i_start=float(sigma_start), noise_floor_sigma_i=floor, path=path,
        poor_fit=bool(best.sigma_i > poor_threshold), poor_threshold=float(poor_threshold),
        values=values, uncertainties=best.uncertainties(),
        fixed=tuple(p.name for p in best.parameters if not p.vary), n_evaluations=n_eval, n_curves=n_curves,
        elapsed_s=time.perf_counter() - wall0, cpu_s=budget.elapsed, stages=tuple(stages),
        start_source=start.source if start is not None else "low-strain",
        start_transfer=dict(start.transfer) if start is not None else {},
        model_config=asdict(options.model), material=str(reflection.material),
        hkl=tuple(int(i) for i in reflection.hkl), wavelength_angstrom=float(reflection.wavelength_angstrom))
