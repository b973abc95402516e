"""One measured curve -> strain and Debye-Waller profiles, and the curve computed from them.

:class:`Inverter` is the single inversion path: ``xrd-strain invert`` and the live Bluesky
callback both call :meth:`Inverter.invert`, so offline and live answers cannot drift apart.
Steps: make the curve a :class:`~xrd_strain_plugin.physics.curve.Curve` (validated once; a
descending scan is reversed; a scan that does not contain the stated reflection's Bragg peak is
refused), put it on the model grid (:func:`~xrd_strain_plugin.physics.qspace.curve_to_model_input`,
the steps training used), run the network, decode its labels into profiles, simulate the curve of
that profile at the measured angles, fit the scale and the background the network does not predict
(:func:`~xrd_strain_plugin.physics.misfit.fit_scale_background`), and measure the misfit
``sigma_i`` (:mod:`~xrd_strain_plugin.physics.misfit`, shared with the refinement; inference never
imports refinement).

Any crystal: the network sees a curve on its strain axis (``Delta Q / Q_B = -e``), which does not
depend on the crystal. With ``transfer=True`` a curve of another crystal, reflection or wavelength
than the model's is inverted on that axis and the answer mapped onto the data's crystal: strain and
DW carry over as they are, the thickness scales with ``Q_B(model) / Q_B(data)`` (the fringe period
is ``2 pi / t`` in Q, i.e. ``2 pi / (t Q_B)`` in strain) and the resolution FWHM with
``tan theta_B(data) / tan theta_B(model)``; the curve is then simulated with the data crystal's own
physics. Such an answer is a start for refinement (``InversionResult.transfer`` says how it was
mapped), not an answer to trust alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from xrd_strain_plugin.inference.labels import decode_labels
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.bragg import bragg_angle, q_bragg_inv_angstrom
from xrd_strain_plugin.physics.curve import Curve
from xrd_strain_plugin.physics.misfit import fit_scale_background, sigma_i
from xrd_strain_plugin.physics.qspace import curve_to_model_input, two_theta_deg_to_q

__all__ = ["InversionResult", "Inverter", "sigma_i"]


@dataclass(frozen=True, kw_only=True)
class InversionResult:
    """The network's answer for one curve, with the curve computed from it.

    Attributes
    ----------
    depth_nm : numpy.ndarray, shape (n_depth,)
        Depth from the surface, nm, from 0 to ``thickness_nm`` (the last row touches the
        substrate, where the strain is 0 and DW is 1).
    strain_percent : numpy.ndarray, shape (n_depth,)
        Strain along the surface normal, percent.
    debye_waller : numpy.ndarray, shape (n_depth,)
        Static Debye-Waller factor (1 = perfect crystal).
    strain_max_percent : float
        Largest strain, percent.
    depth_of_max_nm : float
        Depth of the largest strain, nm.
    thickness_nm : float
        Thickness of the damaged layer, nm.
    dw_min : float
        Smallest Debye-Waller factor.
    fwhm_deg : float
        Instrumental resolution FWHM the network inferred, degrees of 2-theta.
    dynamic_range : float
        log10(I_max / I_min) the network inferred.
    two_theta_deg, intensity_measured, intensity_model : numpy.ndarray, shape (n_points,)
        Measured angles (degrees) and intensities, and the curve computed from the profile
        (scale and background fitted) at those angles.
    q_inv_angstrom : numpy.ndarray, shape (n_points,)
        ``4 pi sin(theta) / lambda`` of the measured angles, 1/angstrom.
    sigma_i : float
        Rms of ``log10(I_measured) - log10(I_model)`` over the points with counts.
    scale, background : float
        Fitted counts at reflectivity 1 and constant background counts.
    material, hkl, wavelength_angstrom :
        The reflection the data were inverted for.
    model_id, model_version, model_sha256 : str
        Which bundle answered.
    elapsed_s : float
        Wall time of :meth:`Inverter.invert`, seconds.
    timings : dict
        Seconds per step (``preprocess``, ``network``, ``simulate``, ``fit``).
    refined : bool
        False: the network's answer, not refined by least squares.
    transfer : dict
        Empty when the model was trained for this crystal, reflection and wavelength; otherwise how
        the answer was mapped from the model's crystal (``from``, ``thickness_factor``,
        ``fwhm_factor``): a start for refinement.
    clipped : tuple of str
        Labels the network answered outside the range it was trained on, each clipped back into it
        (a curve unlike the training set, e.g. a pristine crystal): the answer is then only a start.
    """

    depth_nm: np.ndarray
    strain_percent: np.ndarray
    debye_waller: np.ndarray
    strain_max_percent: float
    depth_of_max_nm: float
    thickness_nm: float
    dw_min: float
    fwhm_deg: float
    dynamic_range: float
    two_theta_deg: np.ndarray
    intensity_measured: np.ndarray
    intensity_model: np.ndarray
    q_inv_angstrom: np.ndarray
    sigma_i: float
    scale: float
    background: float
    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float
    model_id: str
    model_version: str
    model_sha256: str
    elapsed_s: float
    timings: dict = field(default_factory=dict)
    refined: bool = False
    transfer: dict = field(default_factory=dict)
    clipped: tuple = ()

    @property
    def model(self) -> dict:
        """``{"id", "version", "sha256"}`` of the bundle that answered."""
        return {"id": self.model_id, "version": self.model_version, "sha256": self.model_sha256}

    def summary(self) -> dict:
        """JSON-able scalars and provenance (no arrays)."""
        out = {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}
        out["hkl"] = list(self.hkl)
        out["model"] = self.model
        return out


class Inverter:
    """Invert measured curves with one model bundle.

    Parameters
    ----------
    bundle : ModelBundle or str or Path
        A loaded bundle or its directory (loaded and checked here).
    n_slices : int, optional
        Lamellae of the profile table and of the simulated model curve (default: the card's
        ``n_slices``, those the model was trained with).
    reflections : callable, optional
        ``reflections(material, hkl, wavelength_angstrom) -> Reflection``, how the model's own
        reflection is built (default: ``physics.materials.make_reflection``); the command line passes
        ``reflection_cache.cached_reflection``, which spares it the xrayutilities import.

    Examples
    --------
    >>> from xrd_strain_plugin.inference import Inverter, default_bundle_path
    >>> from xrd_strain_plugin.io import read_curve
    >>> from xrd_strain_plugin.physics.materials import make_reflection
    >>> inverter = Inverter(default_bundle_path())                    # doctest: +SKIP
    >>> two_theta, counts = read_curve("ysz_400_irradiated.xy")         # doctest: +SKIP
    >>> result = inverter.invert(two_theta, counts, make_reflection("YSZ", (4, 0, 0), 1.5406))  # doctest: +SKIP
    >>> result.strain_max_percent, result.sigma_i                       # doctest: +SKIP
    """

    def __init__(self, bundle, *, n_slices: int | None = None, reflections=None):
        from xrd_strain_plugin.inference.bundle import load_bundle
        from xrd_strain_plugin.inference.predictor import Predictor

        if isinstance(bundle, (str, Path)):
            bundle = load_bundle(bundle)
        self.bundle = bundle
        self.reflections = reflections
        self.n_slices = int(bundle.card.n_slices if n_slices is None else n_slices)
        self.predictor = Predictor(bundle)

    @property
    def card(self):
        return self.bundle.card

    def same_reflection(self, reflection) -> bool:
        """Whether the data's reflection is the model's: same wavelength, d-spacing and |chi_h|.

        Equivalent reflections (400 and 004 of a cubic crystal) are one reflection: the literal
        indices do not matter, the physics does.
        """
        card = self.card
        if not math.isclose(reflection.wavelength_angstrom, card.wavelength_angstrom, rel_tol=2e-3):
            return False
        if not math.isclose(reflection.d_spacing_angstrom, card.d_spacing_angstrom, rel_tol=2e-3):
            return False
        model_refl = self._model_reflection()
        return model_refl is None or math.isclose(abs(reflection.chih), abs(model_refl.chih), rel_tol=0.02)

    def _model_reflection(self):
        if not hasattr(self, "_model_refl"):
            from xrd_strain_plugin.physics.materials import MaterialError, make_reflection

            make = self.reflections or make_reflection
            card = self.card
            try:
                self._model_refl = make(card.material, tuple(card.hkl), card.wavelength_angstrom)
            except (MaterialError, OSError):
                self._model_refl = None  # the card's material is a CIF that is not here: d and lambda decide
        return self._model_refl

    def invert(self, two_theta_deg, intensity, reflection, *, transfer: bool = False) -> InversionResult:
        """Invert one measured curve.

        Parameters
        ----------
        two_theta_deg : array_like, shape (n_points,)
            Scattering angles, degrees, increasing or decreasing (a descending scan is reversed).
        intensity : array_like, shape (n_points,)
            Non-negative intensities (any scale).
        reflection : Reflection
            Material, reflection and wavelength of the measurement.
        transfer : bool
            Allow a crystal, reflection or wavelength other than the model's: the answer is mapped
            onto the data's crystal (module docstring) and marked in ``InversionResult.transfer``.
            Without it such data are refused.

        Returns
        -------
        InversionResult

        Raises
        ------
        xrd_strain_plugin.physics.curve.CurveError
            If the curve is unusable (the message names the problem).
        BundleMismatchError
            If the model was trained for another reflection or wavelength and ``transfer`` is False.
        """
        t0 = time.perf_counter()
        card = self.card
        native = self.same_reflection(reflection)
        if not native and not transfer:
            from xrd_strain_plugin.inference.bundle import BundleMismatchError

            differ = [
                name
                for name, same in (
                    (
                        "wavelength",
                        math.isclose(reflection.wavelength_angstrom, card.wavelength_angstrom, rel_tol=2e-3),
                    ),
                    ("d-spacing", math.isclose(reflection.d_spacing_angstrom, card.d_spacing_angstrom, rel_tol=2e-3)),
                )
                if not same
            ] or ["structure factor"]
            raise BundleMismatchError(
                f"{' and '.join(differ)} differ: "
                f"model {card.model_id} was trained for {card.material} {tuple(card.hkl)} at "
                f"{card.wavelength_angstrom:g} A (d = {card.d_spacing_angstrom:.5f} A); the data are "
                f"{reflection.material} {tuple(int(i) for i in reflection.hkl)} at "
                f"{reflection.wavelength_angstrom:g} A (d = {reflection.d_spacing_angstrom:.5f} A). Its answer "
                "can only start a refinement with the data's own physics (xrd-strain invert --refine)"
            )
        if np.ndim(two_theta_deg) != 1 or np.ndim(intensity) != 1:
            raise ValueError("invert takes one curve; call it once per curve")
        curve = Curve.measured(two_theta_deg, intensity, reflection)  # validated and ordered, once
        angles, counts = curve.two_theta_deg, curve.counts
        x = curve_to_model_input(curve, grid=card.grid)
        t1 = time.perf_counter()
        labels, clipped = within_training_range(self.predictor.predict_labels(x), card.labels)
        t2 = time.perf_counter()
        decoded = decode_labels(labels, n_weights=card.n_weights, n_slices=self.n_slices, dw_mode=card.dw_mode)
        mapping = {}
        if not native:
            decoded, mapping = self._transfer(decoded, reflection)
        model_refl = self._simulate(angles, decoded, reflection)
        t3 = time.perf_counter()
        result = self._result_of(
            angles,
            counts,
            labels[0],
            decoded,
            model_refl,
            reflection,
            elapsed_s=t3 - t0,
            timings={"preprocess": t1 - t0, "network": t2 - t1, "simulate": t3 - t2},
            transfer=mapping,
        )
        return replace(result, clipped=clipped[0]) if clipped[0] else result

    def propose(self, two_theta_deg, intensity, reflection) -> tuple[list, np.ndarray]:
        """Every hypothesis of the network for one curve, each as a full answer to screen.

        A multi-hypothesis bundle (card ``head.n_hypotheses`` K > 1) answers K alternative
        profiles per curve; each is decoded, simulated at the measured angles and scale/background
        fitted exactly as :meth:`invert` does (its ``sigma_i`` lets the refinement keep the best
        starts). A one-answer bundle gives one proposal, :meth:`invert`'s answer.

        Returns
        -------
        results : list of InversionResult
            K answers in the predictor's order: most probable first for one bundle, member by
            member for an :class:`~xrd_strain_plugin.inference.predictor.EnsemblePredictor`
            (set as ``inverter.predictor``); the first is :meth:`invert`'s.
        probability : numpy.ndarray, shape (K,)
            The head's own probability of each.
        """
        t0 = time.perf_counter()
        card = self.card
        if not self.same_reflection(reflection):
            self.invert(two_theta_deg, intensity, reflection)  # raises the one clear mismatch error
        curve = Curve.measured(two_theta_deg, intensity, reflection)
        angles, counts = curve.two_theta_deg, curve.counts
        hyp, prob = self.predictor.predict_proposals(curve_to_model_input(curve, grid=card.grid))
        labels = hyp[0]
        decoded = decode_labels(labels, n_weights=card.n_weights, n_slices=self.n_slices, dw_mode=card.dw_mode)
        results = []
        for j in range(labels.shape[0]):
            row = _rows(decoded, [j])
            results.append(
                self._result_of(
                    angles,
                    counts,
                    labels[j],
                    row,
                    self._simulate(angles, row, reflection),
                    reflection,
                    elapsed_s=time.perf_counter() - t0,
                    timings={"proposal": j, "n_proposals": labels.shape[0]},
                )
            )
        return results, prob[0]

    def invert_many(self, curves, reflection) -> list:
        """Invert several curves of one reflection at once: one network call for the batch and one
        simulation per group of curves with the same number of points (the array path of
        ``simulate_scan``). Each curve's answer is :meth:`invert`'s (same steps, same functions).

        Parameters
        ----------
        curves : sequence of (two_theta_deg, intensity)
            Each as for :meth:`invert` (1-D; a descending scan is reversed).
        reflection : Reflection
            Shared by every curve; must be the model's (no transfer).

        Returns
        -------
        list
            One entry per curve, in order: its :class:`InversionResult`, or the exception that
            curve alone raised (``CurveError`` for an unusable curve...), so that one bad curve
            does not fail the others.

        Raises
        ------
        BundleMismatchError
            If the data's reflection is not the model's (then every curve would fail).
        """
        t0 = time.perf_counter()
        card = self.card
        if not self.same_reflection(reflection):
            self.invert(*curves[0], reflection) if curves else None  # raises the one clear mismatch error
        out: list = [None] * len(curves)
        ready = _model_inputs(curves, reflection, card.grid, out)  # (index, angles, counts, model input)
        if not ready:
            return out
        t1 = time.perf_counter()
        labels, clipped = within_training_range(
            self.predictor.predict_labels(np.concatenate([np.atleast_2d(r[3]) for r in ready])), card.labels
        )
        t2 = time.perf_counter()
        decoded = decode_labels(labels, n_weights=card.n_weights, n_slices=self.n_slices, dw_mode=card.dw_mode)
        model_refl = self._simulate_groups(ready, decoded, reflection, out)
        t3 = time.perf_counter()
        n = len(ready)
        shared = {"preprocess": (t1 - t0) / n, "network": (t2 - t1) / n, "simulate": (t3 - t2) / n, "batch_size": n}
        for j, (i, angles, counts, _) in enumerate(ready):
            if j in model_refl:
                try:
                    out[i] = self._result_of(
                        angles,
                        counts,
                        labels[j],
                        _rows(decoded, [j]),
                        model_refl[j],
                        reflection,
                        elapsed_s=(time.perf_counter() - t0) / n,
                        timings=shared,
                    )
                    if clipped[j]:
                        out[i] = replace(out[i], clipped=clipped[j])
                except Exception as exc:
                    out[i] = exc
        return out

    def _simulate_groups(self, ready, decoded, reflection, out) -> dict:
        """The answers' curves, ``{j: intensity}`` for ``ready[j]``: one ``simulate_scan`` call per group of
        curves with the same number of points; a group that fails is simulated curve by curve, and a
        curve that fails alone gets its exception in ``out``."""
        from xrd_strain_plugin.physics.instrument import simulate_scan

        model_refl: dict[int, np.ndarray] = {}
        groups: dict[int, list[int]] = {}
        for j, r in enumerate(ready):
            groups.setdefault(r[1].size, []).append(j)
        for members in groups.values():
            try:
                sub = _rows(decoded, members)
                batch = np.asarray(
                    simulate_scan(
                        np.stack([ready[j][1] for j in members]),
                        sub.strain,
                        sub.debye_waller,
                        sub.thickness_nm,
                        reflection,
                        resolution_fwhm_deg=sub.resolution_fwhm_deg,
                        check_layer_in_scan=False,
                    )
                )
                model_refl.update({j: batch[k] for k, j in enumerate(members)})
            except Exception:  # one curve must not sink its group: simulate those one by one
                for j in members:
                    try:
                        model_refl[j] = self._simulate(ready[j][1], _rows(decoded, [j]), reflection)
                    except Exception as exc:
                        out[ready[j][0]] = exc
        return model_refl

    def _result_of(
        self, angles, counts, labels_row, decoded, model_refl, reflection, *, elapsed_s, timings, transfer=None
    ):
        """One curve's :class:`InversionResult` from its decoded labels (batch of one) and model
        reflectivity, as :meth:`invert` assembles it."""
        card = self.card
        t3 = time.perf_counter()
        log_scale, log_bg = fit_scale_background(counts, model_refl)
        scale, background = 10.0 ** float(log_scale[0]), 10.0 ** float(log_bg[0])
        intensity_model = scale * model_refl + background
        t4 = time.perf_counter()
        depth, strain_pct, dw = self._table(labels_row[: card.n_weights], decoded)
        i_max = int(np.argmax(strain_pct))
        return InversionResult(
            depth_nm=depth,
            strain_percent=strain_pct,
            debye_waller=dw,
            strain_max_percent=float(strain_pct[i_max]),
            depth_of_max_nm=float(depth[i_max]),
            thickness_nm=float(decoded.thickness_nm[0]),
            dw_min=float(decoded.dw_min[0]),
            fwhm_deg=float(decoded.resolution_fwhm_deg[0]),
            dynamic_range=float(decoded.dynamic_range[0]),
            two_theta_deg=angles,
            intensity_measured=counts,
            intensity_model=intensity_model,
            q_inv_angstrom=two_theta_deg_to_q(angles, reflection.wavelength_angstrom),
            sigma_i=sigma_i(counts, intensity_model),
            scale=float(scale),
            background=float(background),
            material=str(reflection.material),
            hkl=tuple(int(i) for i in reflection.hkl),
            wavelength_angstrom=float(reflection.wavelength_angstrom),
            model_id=card.model_id,
            model_version=card.version,
            model_sha256=card.weights_sha256,
            elapsed_s=elapsed_s + (t4 - t3),
            timings={**timings, "fit": t4 - t3},
            transfer=dict(transfer or {}),
        )

    def _transfer(self, decoded, reflection):
        """Map a decoded answer from the model's crystal onto the data's (module docstring)."""
        from dataclasses import replace as _replace

        card = self.card
        q_model = q_bragg_inv_angstrom(card.d_spacing_angstrom)
        theta_model = bragg_angle(card.d_spacing_angstrom, card.wavelength_angstrom)
        t_factor = q_model / reflection.q_bragg_inv_angstrom
        f_factor = math.tan(reflection.theta_bragg) / math.tan(theta_model)
        mapped = _replace(
            decoded,
            thickness_nm=decoded.thickness_nm * t_factor,
            resolution_fwhm_deg=decoded.resolution_fwhm_deg * f_factor,
        )
        info = {
            "from": f"{card.material} {tuple(card.hkl)} at {card.wavelength_angstrom:g} A",
            "to": f"{reflection.material} {tuple(int(i) for i in reflection.hkl)} at "
            f"{reflection.wavelength_angstrom:g} A",
            "thickness_factor": t_factor,
            "fwhm_factor": f_factor,
        }
        return mapped, info

    def _simulate(self, angles, decoded, reflection) -> np.ndarray:
        from xrd_strain_plugin.physics.instrument import simulate_scan

        return np.asarray(
            simulate_scan(
                angles,
                decoded.strain,
                decoded.debye_waller,
                decoded.thickness_nm,
                reflection,
                resolution_fwhm_deg=decoded.resolution_fwhm_deg,
                check_layer_in_scan=False,
            )
        )[0]

    def _table(self, weights_percent, decoded):
        """Profile at depths 0 .. t (n_slices + 1 rows, interface included)."""
        # Same normalisation as decode_labels: the slice maximum is e_max.
        return profiles.depth_table(
            weights_percent,
            thickness_nm=float(decoded.thickness_nm[0]),
            dw_min=float(decoded.dw_min[0]),
            n_depth=self.n_slices + 1,
            strain_max_percent=float(np.abs(decoded.strain[0]).max() * 100.0),
        )


def _model_inputs(curves, reflection, grid, out) -> list:
    """``(index, angles, counts, model input)`` of every usable curve, validated once as a ``Curve``
    (a descending scan reversed); an unusable curve's exception goes into ``out[index]``."""
    ready = []
    for i, (two_theta_deg, intensity) in enumerate(curves):
        try:
            if np.ndim(two_theta_deg) != 1 or np.ndim(intensity) != 1:
                raise ValueError("invert_many takes 1-D curves")
            curve = Curve.measured(two_theta_deg, intensity, reflection)
            ready.append((i, curve.two_theta_deg, curve.counts, curve_to_model_input(curve, grid=grid)))
        except Exception as exc:
            out[i] = exc
    return ready


def _rows(decoded, rows):
    """The decoded labels of some rows of a batch (still batch-first)."""
    import dataclasses

    return dataclasses.replace(
        decoded, **{f.name: np.asarray(getattr(decoded, f.name))[rows] for f in dataclasses.fields(decoded)}
    )


def within_training_range(labels, scaling) -> tuple[np.ndarray, list]:
    """Physical labels clipped into the range the network was trained on (the card's min-max
    scaling), and per curve the names of the labels that were outside it.

    A network answers anything for a curve unlike its training set (a pristine crystal, another
    scan type); outside the trained range its labels mean nothing and can be unphysical (a strain
    weight below -100 %), so they are clipped and the clipping is reported, never passed on unchecked.
    """
    labels = np.array(labels, dtype=float)
    lo, hi = np.asarray(scaling.minimum, float), np.asarray(scaling.maximum, float)
    if labels.ndim != 2 or labels.shape[1] != lo.size:
        return labels, [() for _ in range(len(labels))]
    span = np.maximum(hi - lo, 1e-12)
    outside = (labels < lo - 1e-6 * span) | (labels > hi + 1e-6 * span)
    names = [tuple(n for n, o in zip(scaling.names, row) if o) for row in outside]
    return np.clip(labels, lo, hi), names
