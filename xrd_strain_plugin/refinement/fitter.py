"""Fitter: bounded least squares with a batched finite-difference Jacobian.

:func:`fit_local` minimises the objective's weighted log residuals over the varying parameters with
scipy's trust-region-reflective ``least_squares`` (bounds honoured at every step). Its Jacobian is
computed as ONE batched call of the array-path simulator: the rows are the current parameters plus
each varying simulation parameter stepped forward, so a Jacobian of ``k`` columns costs one batch of
``k`` curves instead of ``k`` separate calls. The columns of the scale, background and slope are
analytic (they act after the simulation).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from xrd_strain_plugin.refinement.model import LINEAR_PARAMETERS, CurveModel, Parameter
from xrd_strain_plugin.refinement.objective import Objective

__all__ = ["LocalFit", "fit_local", "Budget"]

_LN10 = math.log(10.0)


class Budget:
    """Time budget shared by the stages of one refinement, in CPU seconds of the calling thread.

    CPU time, not wall time: on a machine shared with other work (a beamline computer running
    training or a live listener beside it) the same budget buys the same number of evaluations,
    so the answer does not degrade with the load. On an idle core the two are equal; the result
    reports both.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.t0 = time.thread_time()

    @property
    def elapsed(self) -> float:
        return time.thread_time() - self.t0

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed


class _OutOfTime(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class LocalFit:
    """Outcome of one local least-squares fit."""

    parameters: tuple[Parameter, ...]
    cost: float
    sigma_i: float
    intensity_model: np.ndarray
    reflectivity: np.ndarray
    jacobian: np.ndarray
    free_names: tuple[str, ...]
    n_evaluations: int
    n_curves: int
    converged: bool

    def value(self, name: str) -> float:
        for p in self.parameters:
            if p.name == name:
                return p.value
        raise KeyError(name)

    def uncertainties(self) -> dict[str, float]:
        """1-sigma from ``(J^T J)^-1`` scaled by the reduced chi-square; NaN for fixed parameters."""
        out = {p.name: float("nan") for p in self.parameters}
        j = self.jacobian
        if j.size == 0:
            return out
        n, k = j.shape
        dof = max(n - k, 1)
        chi2_red = 2 * self.cost / dof
        try:
            cov = np.linalg.pinv(j.T @ j) * max(chi2_red, 1e-12)
        except np.linalg.LinAlgError:
            return out
        for name, var in zip(self.free_names, np.diag(cov)):
            out[name] = float(math.sqrt(var)) if var >= 0 else float("nan")
        return out


def _smoothness_prior(model: CurveModel, values0, smoothness: float) -> np.ndarray:
    """Rows of the Tikhonov prior: second differences of the strain (and decoupled DW) weights,
    relative to the start's largest weight, times ``smoothness`` (shape (n_rows, n_params))."""
    c = model.config
    groups = [[model.index[f"w{k}"] for k in range(c.n_strain_weights)]]
    if c.dw_mode == "decoupled":
        groups.append([model.index[f"d{k}"] for k in range(c.n_dw_weights)])
    rows = []
    if smoothness > 0:
        for group in groups:
            scale = max(float(np.max(np.abs(values0[group]))), 0.05)
            for k in range(1, len(group) - 1):
                row = np.zeros(values0.size)
                row[group[k - 1]], row[group[k]], row[group[k + 1]] = 1.0, -2.0, 1.0
                rows.append(smoothness * row / scale)
    return np.array(rows).reshape(-1, values0.size)


def _jacobian_columns(model: CurveModel, params, v, refl, free, free_sim, dlog, scale, bg, *, fine_step_deg, pad_deg):
    """d residual / d free parameter at ``v``: the simulation parameters by forward differences in ONE
    batched simulator call, the scale, background and slope analytically. Returns (columns, curves)."""
    i_scale, i_bg, i_slope = (model.index[n] for n in ("log10_scale", "log10_background", "background_slope"))
    cols = np.zeros((refl.size, len(free)))
    n_curves = 0
    if free_sim:
        steps = []
        rows = np.repeat(v[None, :], len(free_sim), axis=0)
        for r, i in enumerate(free_sim):
            p = params[i]
            h = p.fd_step * max(1.0, abs(v[i])) if p.name == "thickness_nm" else p.fd_step
            if v[i] + h > p.upper:
                h = -h
            rows[r, i] += h
            steps.append(h)
        refl_h = model.reflectivity(rows, fine_step_deg=fine_step_deg, pad_deg=pad_deg)
        n_curves = rows.shape[0]
        d_refl = (refl_h - refl[None, :]) / np.asarray(steps)[:, None]
        for r, i in enumerate(free_sim):
            cols[:, free.index(i)] = dlog * scale * d_refl[r]
    x_deg = model.centred_two_theta_deg
    for name, i in (("log10_scale", i_scale), ("log10_background", i_bg), ("background_slope", i_slope)):
        if i in free:
            if name == "log10_scale":
                d = _LN10 * scale * refl
            elif name == "log10_background":
                d = _LN10 * bg
            else:
                d = 10.0 ** v[i_bg] * x_deg * (1.0 + v[i_slope] * x_deg > 1e-3)
            cols[:, free.index(i)] = dlog * d
    return cols, n_curves


def fit_local(
    model: CurveModel,
    objective: Objective,
    parameters,
    *,
    budget: Budget | None = None,
    max_nfev: int = 60,
    fine_step_deg: float | None = None,
    pad_deg: float | None = None,
    ftol: float = 1e-6,
    xtol: float = 1e-6,
    smoothness: float = 0.0,
) -> LocalFit:
    """Bounded least squares from ``parameters``.

    Parameters
    ----------
    model : CurveModel
    objective : Objective
    parameters : sequence of Parameter
        Start values, bounds and which vary (order of ``model.names``).
    budget : Budget, optional
        Stops early (keeping the best point so far) when the budget (thread CPU seconds) runs out.
    max_nfev : int
        Most residual evaluations.
    fine_step_deg, pad_deg : float, optional
        The simulator's grid for this fit (default: :meth:`CurveModel.grid_for` of the start).
    smoothness : float
        Weight ``lambda`` of a Tikhonov prior on the strain (and decoupled DW) weights: extra residuals
        ``lambda * (w[k-1] - 2 w[k] + w[k+1]) / s`` with ``s`` the start's largest |weight|. Small
        (~1-3): it costs a constrained feature less than one standard deviation of chi-square but
        picks the smooth profile among those the data cannot tell apart (a strain where DW is low
        scatters little and can ring freely otherwise).

    Returns
    -------
    LocalFit
    """
    from scipy.optimize import least_squares

    problem = _LocalProblem(model, objective, tuple(parameters), budget, fine_step_deg, pad_deg, smoothness)
    converged = False
    x_best = problem.x0
    try:
        fit = least_squares(
            problem.residuals,
            problem.x0,
            jac=problem.jacobian,
            bounds=(problem.lower, problem.upper),
            method="trf",
            x_scale="jac",
            max_nfev=max_nfev,
            ftol=ftol,
            xtol=xtol,
            gtol=1e-8,
        )
        x_best = fit.x if fit.cost <= problem.best["cost"] else problem.best["x"]
        converged = fit.status > 0
    except _OutOfTime:
        x_best = problem.best["x"]
    return problem.result(x_best, converged)


class _LocalProblem:
    """The residuals and Jacobian of one bounded fit, with the last curve cached (fit_local's state).

    Only the free parameters (``vary`` and a non-empty range) are seen by the optimiser; the last
    simulated curve is kept so that a Jacobian at the point just evaluated costs no new simulation;
    the best point seen is remembered so that a fit stopped by its budget keeps it.
    """

    def __init__(self, model, objective, params, budget, fine_step_deg, pad_deg, smoothness):
        self.model, self.objective, self.params, self.budget = model, objective, params, budget
        self.values0 = np.array([p.value for p in params])
        if fine_step_deg is None or pad_deg is None:
            fine_step_deg, pad_deg = model.grid_for(self.values0)
        self.grid = dict(fine_step_deg=fine_step_deg, pad_deg=pad_deg)
        self.free = [i for i, p in enumerate(params) if p.vary and p.upper > p.lower]
        self.free_sim = [i for i in self.free if params[i].name not in LINEAR_PARAMETERS]
        self.lower = np.array([params[i].lower for i in self.free])
        self.upper = np.array([params[i].upper for i in self.free])
        self.x0 = np.clip(self.values0[self.free], self.lower, self.upper)
        self.i_scale = model.index["log10_scale"]
        self.reg = _smoothness_prior(model, self.values0, smoothness)
        self.cache: dict = {}
        self.stats = {"nfev": 0, "curves": 0, "enforce": budget is not None}
        self.best = {"cost": np.inf, "x": self.x0}

    def full(self, x):
        v = self.values0.copy()
        v[self.free] = x
        return v

    def with_prior(self, res, v):
        return np.concatenate([res, self.reg @ v]) if self.reg.size else res

    def evaluate(self, x):
        key = x.tobytes()
        if key not in self.cache:
            if self.stats["enforce"] and self.budget.left <= 0 and self.best["cost"] < np.inf:
                raise _OutOfTime
            v = self.full(x)
            refl = self.model.reflectivity(v, **self.grid)[0]
            self.stats["curves"] += 1
            self.cache.clear()
            self.cache[key] = (v, refl)
        return self.cache[key]

    def residuals(self, x):
        v, refl = self.evaluate(x)
        self.stats["nfev"] += 1
        res = self.with_prior(self.objective.residuals(self.model.intensity(v, refl)[0]), v)
        cost = 0.5 * float(res @ res)
        if cost < self.best["cost"]:
            self.best.update(cost=cost, x=x.copy())
        return res

    def jacobian(self, x):
        v, refl = self.evaluate(x)
        bg = self.model.background(v)[0]
        scale = 10.0 ** v[self.i_scale]
        intensity = scale * refl + bg
        dlog = self.objective.weights / (_LN10 * np.maximum(intensity, 1e-300))  # d residual / d intensity
        if self.free_sim and self.stats["enforce"] and self.budget.left <= 0:
            raise _OutOfTime
        cols, n = _jacobian_columns(
            self.model, self.params, v, refl, self.free, self.free_sim, dlog, scale, bg, **self.grid
        )
        self.stats["curves"] += n
        return np.vstack([cols, self.reg[:, self.free]]) if self.reg.size else cols

    def result(self, x_best, converged: bool) -> LocalFit:
        """The fit at ``x_best``: parameters clipped into their bounds, cost, sigma_I, Jacobian."""
        self.stats["enforce"] = False
        params, free = self.params, self.free
        v = self.full(x_best)
        refl = self.model.reflectivity(v, **self.grid)[0]
        intensity = self.model.intensity(v, refl)[0]
        res = self.with_prior(self.objective.residuals(intensity), v)
        j = self.jacobian(x_best) if free else np.zeros((res.size, 0))
        return LocalFit(
            parameters=tuple(p if i not in free else p.clipped(v[i]) for i, p in enumerate(params)),
            cost=0.5 * float(res @ res),
            sigma_i=self.objective.sigma_i(intensity),
            intensity_model=intensity,
            reflectivity=refl,
            jacobian=j,
            free_names=tuple(params[i].name for i in free),
            n_evaluations=self.stats["nfev"],
            n_curves=self.stats["curves"],
            converged=converged,
        )
