"""Automatic refinement of one measured curve: a screened search, local fits, rescans, a global stage.

:func:`refine_curve` is the one library entry point used by ``xrd-strain invert --refine``, the live
callback's background refiner and the scheduled Prefect flow. Its stages, each a function and each a
fixed amount of work (the CPU caps are a last resort, recorded in ``time_capped``):

1. **Starts** (:func:`_start_candidates`): the given start (the network's answer) and its variants
   (thickness and strain scaled, mirrored, peak shifted).
2. **Offset** (:func:`_offset_stage`): 2-theta zero offsets in one batched call.
3. **Proposals** (:func:`_proposal_stage`, :mod:`~xrd_strain_plugin.refinement.search`): a grid of
   shapes x thicknesses x strains x DW screened in batches, the best of each depth band kept.
4. **Short fits** with continuation (broadened curve first), then **final fits** to convergence.
5. **Thickness rescans** of the best finals (a fit one fringe period away stays there).
6. **Global stage** when the best fit stays above the noise floor: differential evolution for a fixed
   number of generations, polished by least squares.

:class:`~xrd_strain_plugin.refinement.result.RefinementResult` says which path won, lists every stage,
flags a poor fit, returns equally good distinct profiles as alternatives and says when no layer was
detected. Nothing falls back silently.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.curve import Curve, check_scan_covers_reflection
from xrd_strain_plugin.refinement.alternatives import ranked_distinct, variant_tables
from xrd_strain_plugin.refinement.fitter import Budget, LocalFit, fit_local
from xrd_strain_plugin.refinement.model import CurveModel, ModelConfig
from xrd_strain_plugin.refinement.objective import Objective, fit_scale_background
from xrd_strain_plugin.refinement.result import RefinementResult
from xrd_strain_plugin.refinement.search import (
    SearchOptions,
    broadened,
    distinct,
    screen_proposals,
    stratified,
    weights_for_shapes,
)

__all__ = ["RefineOptions", "StartProfile", "refine_curve", "prepare_curve", "check_scan_covers_reflection"]


@dataclass(frozen=True, kw_only=True)
class RefineOptions:
    """How hard and how long to refine.

    Parameters
    ----------
    budget_s : float
        Last-resort cap on the whole refinement, CPU seconds of the calling thread. The stages do a fixed
        amount of work (evaluations, proposals, generations), so a curve gets the same answer on an idle
        or a loaded machine; the cap only stops a pathological case, and the result says when it did
        (``time_capped``).
    global_budget_s : float
        Last-resort cap of the global stage, CPU seconds (0 disables the stage).
    global_generations : int
        Generations of the global stage's differential evolution (its real budget; 0 disables it).
    search : SearchOptions
        The proposal grid screened before the local fits (:mod:`~xrd_strain_plugin.refinement.search`).
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
        Distinct proposals given a short fit on the screening model (the given start always is one).
    n_final_fits : int
        Distinct short-fit results fitted to convergence on the full model.
    short_fit_nfev, final_fit_nfev : int
        Residual evaluations of a short fit and of each round of the final fit.
    smoothness : float
        Weight of the Tikhonov smoothness prior on the profile weights
        (:func:`~xrd_strain_plugin.refinement.fitter.fit_local`); 0 disables it.
    continuation : bool
        Short fits first against the broadened curve, then the measured one.
    n_rescan : int
        Thicknesses of a fit's fine thickness sweep fitted to convergence (0 disables the sweep).
    n_rescan_fits : int
        Best final fits given the thickness sweep.
    n_rescan_rounds : int
        Sweeps in all: while a sweep improves the best answer, its winner is swept again.
    n_deeper_rounds : int
        While the best fit is not at the noise floor (``floor_stop``), rounds that go deeper down the
        screened ranking: each short-fits the next ``n_short_fits`` distinct proposals and fits the best
        ``n_final_fits`` short fits not yet fitted to convergence (0: none). A fixed schedule, so the
        answer does not depend on the load; a curve at the floor costs nothing more.
    n_variant_fits : int
        Variants of the best fit (:func:`~xrd_strain_plugin.refinement.alternatives.variant_tables`)
        fitted to convergence: the mirrored profile always, then the best screened others (0: none).
    floor_stop : float
        A fit with sigma_I <= ``floor_stop`` x the noise floor is at the floor: the thickness rescans then
        skip finals worse than it by more than the chi^2 tolerance and stop sweeping again (0: never).
    max_alternatives : int
        Most alternatives returned (the distinct fits of all stages within one sd of chi^2, best first).
    poor_factor : float
        Flag the answer poor (and run the global stage) when sigma_I > ``poor_factor * floor`` (floor: the
        sigma_I counting noise alone would give; where counts are unknown ``0.09 * poor_factor + 0.02``).
    seed : int
        Seed of the global stage's random generator.
    library : str or None
        Path of a :class:`~xrd_strain_plugin.refinement.library.ProposalLibrary` file (a bundle's
        ``library.npz``): the profiles of its ``n_library`` curves nearest to the measured one are
        screened with the grid. Used only when the curve's reflection is the library's (recorded in
        the stage log either way).
    n_library : int
        Nearest library curves proposed.
    n_library_fits : int
        The library's proposals are screened apart from the grid's (they never take a grid proposal's
        place) and this many of the best distinct ones are fitted beside the grid's choices.
    """

    budget_s: float = 60.0
    global_budget_s: float = 30.0
    global_generations: int = 25
    search: SearchOptions = field(default_factory=SearchOptions)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: str = "auto"
    model_floor: float = 0.1
    fix: tuple[str, ...] = ()
    offset_search_deg: float = 0.05
    n_offsets: int = 21
    n_short_fits: int = 6
    n_final_fits: int = 3
    short_fit_nfev: int = 6
    final_fit_nfev: int = 30
    poor_factor: float = 1.2
    smoothness: float = 2.0
    continuation: bool = True
    n_rescan: int = 3
    n_rescan_fits: int = 3
    n_rescan_rounds: int = 3
    n_deeper_rounds: int = 3
    n_variant_fits: int = 3
    floor_stop: float = 1.05
    max_alternatives: int = 8
    seed: int = 0
    library: str | None = None
    n_library: int = 12
    n_library_fits: int = 2

    @classmethod
    def from_dict(cls, fields: dict | None = None) -> RefineOptions:
        """From JSON-able fields (a flow parameter, a deployment's YAML, a benchmark's ``--options``):
        ``search`` may be a dict of :class:`SearchOptions` fields, with lists for its tuples."""
        fields = dict(fields or {})
        if isinstance(fields.get("search"), dict):
            fields["search"] = SearchOptions(**{k: _tuples(v) for k, v in fields["search"].items()})
        return cls(**fields)

    def __post_init__(self):
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be positive, got {self.budget_s}")
        if self.global_budget_s < 0:
            raise ValueError(f"global_budget_s must be >= 0, got {self.global_budget_s}")
        if self.global_generations < 0:
            raise ValueError(f"global_generations must be >= 0, got {self.global_generations}")


def _tuples(value):
    # JSON has lists where the options' dataclasses have tuples
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


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
        return cls(
            depth_nm=np.asarray(result.depth_nm, float),
            strain_percent=np.asarray(result.strain_percent, float),
            debye_waller=np.asarray(result.debye_waller, float),
            fwhm_deg=float(result.fwhm_deg),
            source=f"network:{result.model_id}@{result.model_version}",
            transfer=dict(getattr(result, "transfer", {}) or {}),
        )


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
    params = model.default_parameters(
        strain_weights_percent=w,
        thickness_nm=start.thickness_nm,
        fwhm_deg=fwhm_deg or start.fwhm_deg,
        dw_min=float(dw.min()),
        dw_weights=d,
    )
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
    best = _with(
        params, model, {n: rows[k, model.index[n]] for n in ("zero_offset_deg", "log10_scale", "log10_background")}
    )
    return best, float(cost[k]), curves[k], len(offsets)


def _global_stage(
    model_full: CurveModel,
    objective,
    best: LocalFit,
    options: RefineOptions,
    budget: Budget,
    e_max: float,
    fwhm0: float,
):
    """Differential evolution over a reduced coupled-DW profile space; the population is one batch."""
    from scipy.optimize import differential_evolution

    space = _GlobalSpace(model_full, best, options, e_max, fwhm0)
    m, base, ix = space.model, space.base, space.ix
    step, pad = space.grid()
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
    result = differential_evolution(
        cost,
        space.bounds,
        vectorized=True,
        updating="deferred",
        popsize=10,
        maxiter=options.global_generations,
        tol=1e-6,
        polish=False,
        seed=rng,
        callback=stop,
    )
    return space.full_parameters(result.x, model_full, best), stats["curves"]


class _GlobalSpace:
    """The global stage's search space: a reduced model (at most 8 weights, coupled DW, 80 slices),
    the varied names and their bounds around the best local fit, the fixed values of the rest."""

    def __init__(self, model_full: CurveModel, best: LocalFit, options: RefineOptions, e_max: float, fwhm0: float):
        c = options.model
        self.n_g = n_g = min(c.n_strain_weights, 8)
        cfg = replace(c, n_strain_weights=n_g, dw_mode="coupled", n_slices=min(c.n_slices, 80))
        self.model = m = CurveModel(model_full.reflection, model_full.two_theta_deg, cfg)
        t_best = best.value("thickness_nm")
        off_best = best.value("zero_offset_deg")
        e_hi = max(1.6 * e_max, 1.2 * max(abs(best.value(f"w{k}")) for k in range(c.n_strain_weights)) / 100)
        names = [f"w{k}" for k in range(n_g)] + ["dw_min", "thickness_nm", "fwhm_deg", "eta", "zero_offset_deg"]
        lo_t, hi_t = cfg.thickness_bounds_nm
        self.bounds = bounds = [(0.0, 100 * e_hi)] * n_g + [
            (0.05, 1.0),
            (max(lo_t, 20.0), min(hi_t, max(3 * t_best, 1000.0))),
            (max(cfg.fwhm_bounds_deg[0], 0.5 * fwhm0), min(cfg.fwhm_bounds_deg[1], 2.0 * fwhm0)),
            (0.0, min(cfg.eta_bounds[1], 0.05)),
            (off_best - 0.02, off_best + 0.02),
        ]
        base_params = m.default_parameters(
            strain_weights_percent=np.zeros(n_g),
            thickness_nm=t_best,
            fwhm_deg=best.value("fwhm_deg"),
            eta=best.value("eta"),
        )
        self.base = np.array([p.value for p in base_params])
        for n in ("substrate_mismatch", "background_slope"):
            self.base[m.index[n]] = best.value(n)
        fixed_names = set(options.fix)
        for i, n in enumerate(names):  # a fixed parameter keeps its value in the search
            if n in fixed_names and n in {p.name for p in best.parameters}:
                v = best.value(n)
                bounds[i] = (v, v + 1e-12)
        self.ix = [m.index[n] for n in names]

    def grid(self):
        """One simulator grid for the whole population: fine enough for its narrowest resolution and
        its thickest layer."""
        m, n_g, bounds = self.model, self.n_g, self.bounds
        probe = self.base.copy()
        probe[m.index["thickness_nm"]] = bounds[n_g + 1][1] / 1.3
        probe[m.index["fwhm_deg"]] = bounds[n_g + 2][0] / 0.7
        step, _ = m.grid_for(probe)
        return step, 6 * bounds[n_g + 2][1]

    def full_parameters(self, x, model_full: CurveModel, best: LocalFit):
        """The point ``x`` back on the full parameterisation: the weights refitted on its basis."""
        m = self.model
        rows = self.base.copy()
        rows[self.ix] = x
        depth, strain_pct, dw = m.profile_table(rows)
        start = StartProfile(
            depth_nm=depth,
            strain_percent=strain_pct,
            debye_waller=dw,
            fwhm_deg=float(rows[m.index["fwhm_deg"]]),
            source="global",
        )
        return _with(
            _start_values(model_full, start),
            model_full,
            {
                "eta": rows[m.index["eta"]],
                "zero_offset_deg": rows[m.index["zero_offset_deg"]],
                "substrate_mismatch": best.value("substrate_mismatch"),
                "background_slope": best.value("background_slope"),
            },
        )


def refine_curve(
    two_theta_deg, intensity, reflection, *, start=None, options: RefineOptions | None = None, proposals=()
) -> RefinementResult:
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
        on when that differs). None: the proposal grid alone.
    options : RefineOptions, optional
    proposals : sequence of StartProfile, optional
        More starts to screen beside the grid and the start's variants, e.g. the profiles of a
        :class:`~xrd_strain_plugin.refinement.library.ProposalLibrary`'s nearest curves. Screened
        only: each is kept for a fit if it scores among the best of its depth band.

    Returns
    -------
    RefinementResult
        The best fit; with ``ambiguous`` set and the others in ``alternatives`` when distinct profiles
        fit equally well; ``layer_detected`` False (and the ``detection_limit``) when no layer improves
        on the bare substrate.

    Raises
    ------
    CurveError
        The curve is unusable, or the scan does not contain the reflection's Bragg peak, or is too
        short to hold a layer's signal (the message says which).
    """
    options = options or RefineOptions()
    run = _Run.begin(two_theta_deg, intensity, reflection, start, options)
    candidates = _start_candidates(run, start)
    proposals = list(proposals) + _library_proposals(run)
    candidates += [("library", _fix(_start_values(run.model, p), options.fix)) for p in proposals]
    offset, candidates = _offset_stage(run, candidates)
    proposals = _proposal_stage(run, candidates)
    fits = _short_fit_stage(run, proposals)
    finals = _final_fit_stage(run, fits)
    finals += _rescan_stages(run, finals)
    finals += _deeper_stages(run, fits, finals)
    if run.given is not None:
        run.as_given = _as_given(run)
        finals.append(("start", run.as_given))
    best_label, best = min(finals, key=lambda f: f[1].cost)
    if best.sigma_i > run.poor_threshold(best) and options.global_budget_s > 0 and options.global_generations > 0:
        g = _global_search_stage(run, best)
        finals.append(("global", g))
        best_label, best = min(finals, key=lambda f: f[1].cost)
    finals += _variant_stage(run, best)
    best_label, best = min(finals, key=lambda f: f[1].cost)
    return _assemble(run, finals, best_label, best)


class _Run:
    """What the stages of one refinement share: the data, models, options, counters and stage log."""

    @classmethod
    def begin(cls, two_theta_deg, intensity, reflection, start, options):
        self = cls()
        self.wall0 = time.perf_counter()
        self.options = options
        self.budget = Budget(options.budget_s)  # the last-resort cap, recorded when it bites
        self.angles, self.counts = prepare_curve(two_theta_deg, intensity)
        check_scan_covers_reflection(self.angles, reflection)
        self.reflection = reflection
        if start is not None and not isinstance(start, StartProfile):
            start = StartProfile.from_inversion(start)
        self.start = start
        self.objective = Objective.from_data(
            self.angles, self.counts, weighting=options.weighting, model_floor=options.model_floor
        )
        self.model = CurveModel(reflection, self.angles, options.model)
        unknown = set(options.fix) - set(self.model.names)
        if unknown:
            raise ValueError(f"cannot fix unknown parameter(s) {sorted(unknown)}; known: {', '.join(self.model.names)}")
        self.screen = CurveModel(
            reflection,
            self.angles,
            replace(options.model, n_slices=min(options.model.n_slices, options.search.n_slices)),
        )
        self.stages, self.n_curves, self.n_eval = [], 0, 0
        self.fitted, self.reserve = set(), []  # short fits fitted to convergence; proposals not yet tried
        self._cpu_logged = 0.0
        self.fwhm_peak = _peak_fwhm_deg(self.objective)
        self.e_extent = _strain_extent(self.objective, reflection, self.fwhm_peak)
        self.given = None  # the given start's parameters at its screened offset, scale and background
        self.as_given = None  # those parameters on the full model (the "start" answer)
        self.tolerance = math.sqrt(2 * self.angles.size) / 2  # one standard deviation of chi^2, in cost units
        return self

    def log(self, stage, t0, **figures):
        """Record a stage: its figures, wall seconds since ``t0`` and CPU seconds since the last log."""
        cpu = self.budget.elapsed
        self.stages.append(
            {"stage": stage, **figures, "seconds": time.perf_counter() - t0, "cpu_s": cpu - self._cpu_logged}
        )
        self._cpu_logged = cpu

    def fit(self, model, objective, params, **kwargs) -> LocalFit:
        """``fit_local`` under this run's budget and smoothness prior, its work counted."""
        fit = fit_local(model, objective, params, budget=self.budget, smoothness=self.options.smoothness, **kwargs)
        self.n_curves += fit.n_curves
        self.n_eval += fit.n_evaluations
        return fit

    def final_fit(self, params) -> LocalFit:
        """A fit to convergence on the full model (the finals, rescans and variants)."""
        return self.fit(self.model, self.objective, params, max_nfev=self.options.final_fit_nfev, ftol=1e-5, xtol=1e-5)

    def poor_threshold(self, fit) -> float:
        floor = self.objective.noise_floor(fit.intensity_model)
        return self.options.poor_factor * floor if floor is not None else 0.09 * self.options.poor_factor + 0.02

    def at_floor(self, fit) -> bool:
        """sigma_I within ``floor_stop`` x the counting-noise floor: searching further cannot improve it."""
        floor = self.objective.noise_floor(fit.intensity_model)
        return floor is not None and fit.sigma_i <= self.options.floor_stop * floor

    def params_from_row(self, template, row):
        return _fix(_with(template, self.model, dict(zip(self.model.names, row))), self.options.fix)


def _start_candidates(run, start):
    """The given start and its variants (thickness and strain scaled, mirrored, peak shifted)."""
    model, options = run.model, run.options
    fwhm = start.fwhm_deg if start is not None else max(0.6 * run.fwhm_peak, 0.002)
    if start is None:  # a neutral template for the grid: nothing but the resolution
        template = model.default_parameters(
            strain_weights_percent=np.zeros(options.model.n_strain_weights), thickness_nm=300.0, fwhm_deg=fwhm
        )
        return [("template", _fix(template, options.fix))]
    p0 = _start_values(model, start)
    out = [("local", p0)]
    t0, w0 = start.thickness_nm, np.array([p.value for p in p0[: options.model.n_strain_weights]])
    for ft, fe in ((0.5, 1.0), (0.7, 1.0), (1.4, 1.0), (2.0, 1.0), (1.0, 0.8), (1.0, 1.25)):
        upd = {"thickness_nm": t0 * ft}
        upd.update({f"w{k}": w0[k] * fe for k in range(w0.size)})
        out.append(("multi-start", _with(p0, model, upd)))
    mirrored = StartProfile(
        depth_nm=start.depth_nm,
        strain_percent=start.strain_percent[::-1],
        debye_waller=start.debye_waller[::-1],
        fwhm_deg=start.fwhm_deg,
        source="mirror",
    )
    out.append(("multi-start", _start_values(model, mirrored)))
    for shift in (-0.2, 0.2):  # the same shape with its maximum moved by a fifth of the thickness
        z = np.asarray(start.depth_nm, float) / max(start.thickness_nm, 1e-9)
        shifted = StartProfile(
            depth_nm=start.depth_nm,
            strain_percent=np.interp(z - shift, z, start.strain_percent),
            debye_waller=np.interp(z - shift, z, start.debye_waller),
            fwhm_deg=start.fwhm_deg,
            source="shifted",
        )
        out.append(("multi-start", _start_values(model, shifted)))
    return [(label, _fix(params, options.fix)) for label, params in out]


@functools.lru_cache(maxsize=4)
def _load_library(path: str):
    from xrd_strain_plugin.refinement.library import ProposalLibrary

    return ProposalLibrary.load(path)


def _library_proposals(run) -> list:
    """The options' library's nearest profiles, if the library is for this reflection (logged)."""
    o = run.options
    if not o.library or o.n_library <= 0:
        return []
    t0 = time.perf_counter()
    library = _load_library(str(o.library))
    if not library.matches(run.reflection):
        run.log("library", t0, proposals=0, reason="another reflection or wavelength than the library's")
        return []
    found = library.nearest(Curve.measured(run.angles, run.counts, run.reflection), o.n_library)
    run.log("library", t0, proposals=len(found))
    return found


def _offset_stage(run, candidates):
    """2-theta zero offset from the first candidate (the substrate peak fixes it for all)."""
    t0 = time.perf_counter()
    first = candidates[0][1]
    options = run.options
    if "zero_offset_deg" not in options.fix:
        lo_o, hi_o = options.model.zero_offset_bounds_deg
        offsets = np.clip(
            np.linspace(-options.offset_search_deg, options.offset_search_deg, options.n_offsets), lo_o, hi_o
        )
        v_first = np.array([p.value for p in first])
        step, pad = run.screen.grid_for(v_first)
        first, _, _, n = _offset_search(run.screen, run.objective, first, offsets, step, pad)
        run.n_curves += n
    offset = first[run.model.index["zero_offset_deg"]].value
    out = [(label, _with(params, run.model, {"zero_offset_deg": offset})) for label, params in candidates]
    run.log("offset", t0, zero_offset_deg=float(offset))
    return offset, out


def _proposal_stage(run, candidates):
    """Screen the proposal grid and the start's candidates in batches; distinct proposals, best first."""
    t0 = time.perf_counter()
    model = run.model
    template = candidates[0][1]
    base = np.array([p.value for p in template])
    extra = [(label, np.array([p.value for p in params])) for label, params in candidates if label != "template"]
    library = [e for e in extra if e[0] == "library"]
    extra = [e for e in extra if e[0] != "library"]
    found, n = screen_proposals(
        run.screen, run.objective, base, e_extent=run.e_extent, options=run.options.search, extra=extra
    )
    run.n_curves += n
    run.template = template
    given = next((p for p in found if p.label == "local"), None)
    if given is not None:
        run.given = run.params_from_row(template, given.row)
    chosen = stratified(found, run.options.n_short_fits)
    chosen += _library_choices(run, base, library, chosen)
    depth = run.options.n_deeper_rounds * run.options.n_short_fits
    run.reserve = [p for p in distinct(found, depth + len(chosen)) if all(p is not q for q in chosen)][:depth]
    if given is not None and all(p is not given for p in chosen):
        chosen.append(given)
    curve = None
    if found:
        step, pad = run.screen.grid_for(found[0].row)
        curve = model.intensity(found[0].row, run.screen.reflectivity(found[0].row, fine_step_deg=step, pad_deg=pad))[0]
    run.log(
        "proposals",
        t0,
        proposals=len(found),
        kept=len(chosen),
        sigma_i=run.objective.sigma_i(curve) if curve is not None else float("nan"),
    )
    return _as_starts(run, chosen)


def _as_starts(run, chosen):
    return [(_label_of(p.label), run.params_from_row(run.template, p.row)) for p in chosen]


def _library_choices(run, base, library, chosen) -> list:
    """The library's proposals, screened on their own (steps 2-3 of the screen on them alone) so they
    never take the grid's places: the best ``n_library_fits`` distinct ones not already chosen."""
    if not library or run.options.n_library_fits <= 0:
        return []
    search = replace(run.options.search, strain_factors=(), n_refine=4, n_sweep=2)
    found, n = screen_proposals(run.screen, run.objective, base, e_extent=run.e_extent, options=search, extra=library)
    run.n_curves += n
    return [p for p in distinct(found, run.options.n_library_fits) if all(p.row is not q.row for q in chosen)]


def _label_of(tag: str) -> str:
    return tag if tag in ("local", "multi-start") else "proposal"


def _short_fit_stage(run, proposals):
    """A short least-squares fit of every kept proposal on the screening model (fixed evaluations):
    first against the broadened curve (the fringes washed out, a smoother landscape in thickness and
    shape), then against the measured one (continuation)."""
    t0 = time.perf_counter()
    o = run.options
    blurred, widen = broadened(run.screen, run.objective, o.search)
    i_f = run.model.index["fwhm_deg"]
    fits = []
    for label, params in proposals:
        if o.continuation:
            wide = _with(params, run.model, {"fwhm_deg": float(np.hypot(params[i_f].value, widen.b_deg))})
            wide = _fix(wide, ("fwhm_deg",))
            coarse = run.fit(run.screen, blurred, wide, max_nfev=o.short_fit_nfev, ftol=1e-3, xtol=1e-4)
            values = {p.name: p.value for p in coarse.parameters if p.name != "fwhm_deg"}
            params = _with(params, run.model, values)
        fit = run.fit(run.screen, run.objective, params, max_nfev=o.short_fit_nfev, ftol=1e-3, xtol=1e-4)
        fits.append((fit.cost, label, fit))
    fits.sort(key=lambda f: f[0])
    run.log("short-fits", t0, fits=len(fits), sigma_i=fits[0][2].sigma_i if fits else float("nan"))
    return fits


def _final_fit_stage(run, fits, *, bands=((0.0, 0.15), (0.15, 0.5), (0.5, 1.01)), stage="local"):
    """The best distinct short fits to convergence on the full model (fixed evaluations per round)."""
    t0 = time.perf_counter()
    o = run.options
    fits = [f for f in fits if id(f[2]) not in run.fitted]
    # the best short fits, with at least one per band of depth of the maximum when the bands have one
    # (a short fit only ranks basins roughly)
    chosen = []
    for lo, hi in bands:
        for cost, label, fit in fits:
            d, _, _, i = _shape_of(run.model, fit)
            if lo <= d[i] / max(d[-1], 1e-9) < hi:
                chosen.append((label, fit))
                break
    for cost, label, fit in fits:
        if len(chosen) >= max(o.n_final_fits, len(chosen)):
            break
        if all(fit is not f for _, f in chosen) and _is_distinct(run.model, fit, [f for _, f in chosen]):
            chosen.append((label, fit))
    finals = []
    for label, short in chosen:
        run.fitted.add(id(short))
        best, params = None, short.parameters
        for _ in range(3):  # refit until converged, the grid re-derived for the current resolution
            fit = run.final_fit(params)
            improved = best is None or fit.cost < best.cost * (1 - 1e-4)
            if best is None or fit.cost <= best.cost:
                best = fit
            params = best.parameters
            if fit.converged or not improved:
                break
        finals.append((label, best))
    run.log(stage, t0, fits=len(finals), sigma_i=min(f.sigma_i for _, f in finals) if finals else float("nan"))
    return finals


def _deeper_stages(run, fits, finals):
    """While the best fit is above the noise floor: the next proposals of the screened ranking, short
    fits of them, and the best short fits not yet fitted to convergence (``n_deeper_rounds`` rounds at
    most); a round's winner that becomes the best answer gets its thickness rescan."""
    o = run.options
    out = []
    fits = list(fits)
    for _ in range(o.n_deeper_rounds):
        best = min(finals + out, key=lambda f: f[1].cost)[1]
        if run.at_floor(best) or run.budget.left <= 0:
            break
        batch, run.reserve = run.reserve[: o.n_short_fits], run.reserve[o.n_short_fits :]
        if batch:
            fits = sorted(fits + _short_fit_stage(run, _as_starts(run, batch)), key=lambda f: f[0])
        new = _final_fit_stage(run, fits, bands=(), stage="deeper")
        if not new:
            break
        out += new
        label, winner = min(new, key=lambda f: f[1].cost)
        if winner.cost < best.cost:
            out += _rescan_stages(run, [(label, winner)])
    return out


def _thickness_rescan_stage(run, best):
    """The best fit's reduced profile over a fine sweep of thicknesses at the full model: the fringes
    have one minimum per period, and a fit started a period away stays there. The best distinct
    thicknesses of the sweep are fitted to convergence."""
    t0 = time.perf_counter()
    o = run.options
    model = run.model
    if "thickness_nm" in o.fix or o.n_rescan == 0:
        return []
    v = np.array([p.value for p in best.parameters])
    i_t = model.index["thickness_nm"]
    n_w = o.model.n_strain_weights
    factors = np.geomspace(0.65, 1.5, 41)
    # two ways to change the thickness: the reduced profile stretched, or the profile kept at its
    # absolute depths and its deep tail cut or extended with zero strain (the low-strain tail next to the
    # interface is what the data see least)
    stretched = np.repeat(v[None, :], factors.size, axis=0)
    stretched[:, i_t] = np.clip(v[i_t] * factors, *o.model.thickness_bounds_nm)
    depth, strain_pct, _, _ = _shape_of(model, best)
    kept = stretched.copy()
    z = profiles.slice_midpoints(200)
    for k, t_new in enumerate(stretched[:, i_t]):
        table = np.interp(z * t_new, depth, strain_pct, right=0.0)
        kept[k, :n_w] = _weights_from_table(z, table, n_w)
    rows = np.concatenate([stretched, kept])
    step, pad = model.grid_for(rows)
    rows, costs, _ = _score_rows(model, run.objective, rows, step, pad)
    run.n_curves += len(rows)
    picked, chosen = [], []
    for k in np.argsort(costs):
        t = rows[k, i_t]
        if abs(t / v[i_t] - 1) < 0.04 or any(max(t, q) / min(t, q) < 1.05 for q in picked):
            continue
        picked.append(t)
        chosen.append(rows[k])
        if len(picked) >= o.n_rescan:
            break
    out = []
    for row in chosen:
        params = _fix(_with(best.parameters, model, dict(zip(model.names, row))), o.fix)
        fit = run.final_fit(params)
        out.append(("rescan", fit))
    run.log("thickness-rescan", t0, fits=len(out), sigma_i=min((f.sigma_i for _, f in out), default=float("nan")))
    return out


#: Parameters a variant of a fit keeps from the fit itself (the profile is what changes).
_CARRIED = ("dw_min", "fwhm_deg", "eta", "zero_offset_deg", "substrate_mismatch", "background_slope")


def _variant_stage(run, best):
    """The best fit's variants (mirrored, maximum shifted, tail cut or extended), screened in one batch
    on the full model; the mirror and the best screened others fitted to convergence."""
    t0 = time.perf_counter()
    o = run.options
    model = run.model
    if o.n_variant_fits == 0:
        return []
    depth, strain_pct, dw, _ = _shape_of(model, best)
    carried = {n: best.value(n) for n in _CARRIED if n in model.index}
    labels, params = [], []
    for label, d, s, w in variant_tables(depth, strain_pct, dw):
        start = StartProfile(depth_nm=d, strain_percent=s, debye_waller=w, fwhm_deg=carried["fwhm_deg"])
        labels.append(label)
        params.append(_fix(_with(_start_values(model, start), model, carried), o.fix))
    rows = np.array([[p.value for p in ps] for ps in params])
    step, pad = model.grid_for(rows)
    rows, costs, _ = _score_rows(model, run.objective, rows, step, pad)
    run.n_curves += len(rows)
    order = [0] + [int(k) for k in np.argsort(costs) if k != 0]  # the mirror always
    out = []
    for k in order[: o.n_variant_fits]:
        start = run.params_from_row(params[k], rows[k])
        fit = run.final_fit(start)
        out.append(("variant", fit))
    run.log("variants", t0, fits=len(out), sigma_i=min((f.sigma_i for _, f in out), default=float("nan")))
    return out


def _rescan_stages(run, finals):
    """Thickness rescans of the best finals, and of a sweep's winner again while it moves the answer.

    Stops early at the noise floor: once the best fit is there (``RefineOptions.floor_stop``), a final
    worse than it by more than the chi^2 tolerance is not swept, and the winner is not swept again.
    """
    o = run.options
    out = []
    for _, fit in sorted(finals, key=lambda f: f[1].cost)[: o.n_rescan_fits]:
        best = min(finals + out, key=lambda f: f[1].cost)[1]
        if fit is not best and run.at_floor(best) and fit.cost > best.cost + run.tolerance:
            continue
        out += _thickness_rescan_stage(run, fit)
    for _ in range(o.n_rescan_rounds - 1):  # a sweep that moved the answer is swept again
        label, fit = min(finals + out, key=lambda f: f[1].cost)
        if label != "rescan" or getattr(fit, "_swept", False) or run.at_floor(fit):
            break
        object.__setattr__(fit, "_swept", True)
        out += _thickness_rescan_stage(run, fit)
    return out


def _as_given(run):
    """The given start itself at its best offset, scale and background, on the full model."""
    fit = fit_local(run.model, run.objective, run.given, max_nfev=1, smoothness=run.options.smoothness)
    run.n_curves += fit.n_curves
    return fit


def _global_search_stage(run, best):
    """Differential evolution (fixed generations) from the best so far, polished by least squares."""
    t0 = time.perf_counter()
    o = run.options
    model = run.model
    params, n = _global_stage(
        model, run.objective, best, o, Budget(o.global_budget_s), run.e_extent, best.value("fwhm_deg")
    )
    run.n_curves += n
    params = _fix(params, o.fix)
    v = np.array([p.value for p in params])
    step, pad = model.grid_for(v)
    params, _, _, n = _offset_search(
        model, run.objective, params, np.array([v[model.index["zero_offset_deg"]]]), step, pad
    )
    run.n_curves += n
    fit = run.fit(model, run.objective, params, max_nfev=60)
    run.log("global", t0, sigma_i=fit.sigma_i)
    return fit


def _shape_of(model, fit):
    depth, strain_pct, dw = model.profile_table([p.value for p in fit.parameters])
    i_max = int(np.argmax(np.abs(strain_pct)))
    return depth, strain_pct, dw, i_max


def _is_distinct(model, fit, others, *, depth_sep: float = 0.1, thickness_ratio: float = 1.1) -> bool:
    """True when ``fit``'s profile differs from each of ``others`` in depth of maximum or thickness."""
    d, _, _, i = _shape_of(model, fit)
    t = fit.value("thickness_nm")
    for o in others:
        d2, _, _, i2 = _shape_of(model, o)
        t2 = o.value("thickness_nm")
        if abs(d[i] / t - d2[i2] / t2) <= depth_sep and max(t, t2) / min(t, t2) <= thickness_ratio:
            return False
    return True


def _layer_check(run, best):
    """Is there a strained layer? Returns (detected, detection limit).

    A layer counts when it fits better than the bare substrate by 2 standard deviations of chi^2 (in
    units of the misfit left, and explaining half of the bare misfit when the fit stays poor) and its
    strain maximum exceeds the strain this curve would have shown at its thickness (the detection
    limit: a surface-peaked, undisordered layer whose curve differs from the bare substrate's by those
    2 standard deviations).
    """
    model, objective = run.model, run.objective
    v = np.array([p.value for p in best.parameters])
    bare = v.copy()
    bare[: run.options.model.n_strain_weights] = 0.0
    step, pad = model.grid_for(bare)
    rows, costs, curves = _score_rows(model, objective, bare[None, :], step, pad)
    run.n_curves += 1
    # chi^2 differences are judged in units of the misfit actually left: where the model cannot describe
    # the curve (reduced chi^2 > 1, e.g. a peak that is no crystal's), a layer must earn its place by more
    misfit = max(1.0, 2 * best.cost / max(run.angles.size, 1))
    explained = (costs[0] - best.cost) / max(costs[0], 1e-300)  # share of the bare misfit the layer explains
    needed = 0.5 if best.sigma_i > run.poor_threshold(best) else 4 * run.tolerance / run.angles.size
    better = best.cost < costs[0] - 2 * run.tolerance * misfit and explained > needed
    limit = _detection_limit(run, rows, curves, 2 * run.tolerance * misfit)
    t_best = best.value("thickness_nm")
    known = [(float(t), e) for t, e in limit["strain_max_percent_at_thickness_nm"].items() if e is not None]
    e_limit = float(np.interp(t_best, [t for t, _ in known], [e for _, e in known])) if known else 0.0
    _, strain_pct, _, i = _shape_of(model, best)
    detected = bool(better and abs(strain_pct[i]) > e_limit)
    return detected, limit


def _detection_limit(run, bare_rows, bare_curves, threshold):
    """Smallest strain maximum (percent) per thickness whose curve this scan would tell from the bare
    substrate's (chi^2 / 2 differing by more than ``threshold``), and the smallest strain x thickness."""
    model, objective = run.model, run.objective
    ref = objective.residuals(bare_curves)[0]
    thicknesses = np.array([50.0, 100.0, 200.0, 400.0, 800.0])
    strains = np.geomspace(1e-6, 0.03, 31)
    shape = np.exp(-0.5 * (profiles.slice_midpoints(200) / 0.4) ** 2)
    w1 = weights_for_shapes(shape, run.options.model.n_strain_weights, 1.0)[0]
    trial = np.repeat(bare_rows, thicknesses.size * strains.size, axis=0)
    trial[:, : w1.size] = np.outer(np.tile(100 * strains, thicknesses.size), w1)
    trial[:, model.index["thickness_nm"]] = np.repeat(thicknesses, strains.size)
    if "dw_min" in model.index:  # a strained, undisordered layer: the limit is on strain, not disorder
        trial[:, model.index["dw_min"]] = 1.0
    step, pad = model.grid_for(trial)
    curves = model.intensity(trial, model.reflectivity(trial, fine_step_deg=step, pad_deg=pad))
    run.n_curves += len(trial)
    delta = 0.5 * np.sum((objective.residuals(curves) - ref) ** 2, axis=1).reshape(thicknesses.size, strains.size)
    per_t = {}
    for k, t_nm in enumerate(thicknesses):
        j = np.flatnonzero(delta[k] > threshold)
        per_t[f"{t_nm:.0f}"] = float(100 * strains[j[0]]) if j.size else None
    products = [float(t) * e for t, e in zip(thicknesses, per_t.values()) if e is not None]
    return {
        "strain_max_percent_at_thickness_nm": per_t,
        "strain_percent_x_thickness_nm": min(products) if products else None,
        "criterion": "a surface-peaked undisordered layer whose curve differs from the bare substrate's "
        "by > 2 sd of chi^2",
    }


def _uncertainty_band(run, best, equivalent):
    """strain(z) +- 1 sigma: the covariance of the weights propagated through the basis, widened to the
    envelope of the equivalent fits."""
    model = run.model
    c = run.options.model
    depth, strain_pct, _, _ = _shape_of(model, best)
    z = depth / max(depth[-1], 1e-9)
    basis = profiles.weights_basis(c.n_strain_weights, z)
    sigma = np.zeros_like(strain_pct)
    j = best.jacobian
    names = list(best.free_names)
    cols = [names.index(f"w{k}") for k in range(c.n_strain_weights) if f"w{k}" in names]
    if j.size and cols:
        dof = max(j.shape[0] - j.shape[1], 1)
        cov = np.linalg.pinv(j.T @ j) * max(2 * best.cost / dof, 1e-12)
        sub = cov[np.ix_(cols, cols)]
        b = basis[:, [k for k in range(c.n_strain_weights) if f"w{k}" in names]]
        sigma = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", b, sub, b), 0.0))
    lo, hi = strain_pct - sigma, strain_pct + sigma
    for fit in equivalent:
        d2, s2, _, _ = _shape_of(model, fit)
        on = np.interp(z, d2 / max(d2[-1], 1e-9), s2)
        lo, hi = np.minimum(lo, on), np.maximum(hi, on)
    return lo, hi


def _summary(run, label, fit):
    depth, strain_pct, dw, i = _shape_of(run.model, fit)
    return {
        "path": label,
        "sigma_i": float(fit.sigma_i),
        "cost": float(fit.cost),
        "thickness_nm": float(fit.value("thickness_nm")),
        "strain_max_percent": float(strain_pct[i]),
        "depth_of_max_nm": float(depth[i]),
        "dw_min": float(np.min(dw)),
        "depth_nm": depth.tolist(),
        "strain_percent": strain_pct.tolist(),
        "debye_waller": dw.tolist(),
    }


def _assemble(run, finals, best_label, best):
    model, options = run.model, run.options
    # every fit of every stage whose chi^2 is within one standard deviation of the best and whose profile
    # differs from each better one (by the accuracy criteria) is an equally good answer
    pool = [dict(_summary(run, label, fit), fit=fit) for label, fit in finals if fit is not best]
    kept = ranked_distinct(_summary(run, best_label, best), pool, tolerance=run.tolerance)
    kept = kept[: options.max_alternatives]
    equivalent = [e.pop("fit") for e in kept]
    alternatives = kept
    detected, limit = _layer_check(run, best)
    threshold = run.poor_threshold(best)
    floor = run.objective.noise_floor(best.intensity_model)
    band_lo, band_hi = _uncertainty_band(run, best, equivalent)
    values = {p.name: float(p.value) for p in best.parameters}
    depth, strain_pct, dw, i_max = _shape_of(model, best)
    start = run.start
    start_curve = run.as_given.intensity_model if run.given is not None else None
    capped = run.budget.left <= 0
    if capped:
        run.stages.append(
            {
                "stage": "time-cap",
                "budget_s": options.budget_s,
                "note": "the last-resort CPU cap stopped a stage: the answer may depend on the load",
            }
        )
    return RefinementResult(
        depth_nm=depth,
        strain_percent=strain_pct,
        debye_waller=dw,
        two_theta_deg=run.angles,
        intensity_measured=run.counts,
        intensity_model=best.intensity_model,
        intensity_start=start_curve if start_curve is not None else best.intensity_model,
        thickness_nm=values["thickness_nm"],
        strain_max_percent=float(strain_pct[i_max]),
        depth_of_max_nm=float(depth[i_max]),
        dw_min=float(np.min(dw)),
        sigma_i=best.sigma_i,
        sigma_i_start=float(run.objective.sigma_i(start_curve)) if start_curve is not None else float("nan"),
        noise_floor_sigma_i=floor,
        path=best_label if best_label != "proposal" else "search",
        poor_fit=bool(best.sigma_i > threshold),
        poor_threshold=float(threshold),
        values=values,
        uncertainties=best.uncertainties(),
        fixed=tuple(p.name for p in best.parameters if not p.vary),
        n_evaluations=run.n_eval,
        n_curves=run.n_curves,
        elapsed_s=time.perf_counter() - run.wall0,
        cpu_s=run.budget.elapsed,
        stages=tuple(run.stages),
        start_source=start.source if start is not None else "search",
        start_transfer=dict(start.transfer) if start is not None else {},
        model_config=asdict(options.model),
        material=str(run.reflection.material),
        hkl=tuple(int(i) for i in run.reflection.hkl),
        wavelength_angstrom=float(run.reflection.wavelength_angstrom),
        ambiguous=bool(alternatives) and detected,
        alternatives=tuple(alternatives) if detected else (),
        strain_band_percent=(band_lo.tolist(), band_hi.tolist()),
        layer_detected=detected,
        detection_limit=limit,
        time_capped=capped,
    )
