"""Per-run document handling: collect the curve(s) of one rocking-curve run.

:class:`RunCollector` is an :class:`event_model.DocumentRouter` built by the
factory for every run that :func:`~.detection.plan_from_start` recognises. It
only appends numbers while the run goes on (the RunEngine's thread must not
wait on us); each completed curve leaves as a :class:`CurveJob`, each curve
that cannot be inverted as a :class:`~xrd_strain_plugin.results.ResultRecord`
saying why, both through ``submit``. A curve completes when the run stops, or,
in a multi-curve run, when a position field (a sample stage, say) changes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import event_model
import numpy as np

from xrd_strain_plugin.results import ResultRecord, base_metadata

from .detection import CurveFields, DetectionError, RunPlan, fields_from_descriptor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CurveJob:
    """One completed curve, waiting for inversion.

    Parameters
    ----------
    raw_uid, curve_index, scan_id, sample
        Where the curve comes from (``curve_index`` None for one-curve runs).
    two_theta_deg : numpy.ndarray, shape (n_points,)
        Scattering angle 2θ in degrees, in acquisition order.
    intensity : numpy.ndarray, shape (n_points,)
        Detector reading (counts), in acquisition order.
    material, hkl, wavelength_angstrom
        The reflection measured.
    completed_at : float
        ``time.perf_counter()`` when the curve was complete (stop document or
        position change): the origin of the latency figures.
    fields : dict
        Motor and detector fields read, recorded with the result.
    planned_points : int, optional
        Points the run's plan meant to take (start document ``num_points``), all curves together.
    partial : str, optional
        Why the curve is incomplete (the run stopped before its planned points), else None.
    """

    raw_uid: str
    curve_index: int | None
    scan_id: int | None
    sample: str | None
    two_theta_deg: np.ndarray
    intensity: np.ndarray
    material: str
    hkl: tuple[int, int, int]
    wavelength_angstrom: float
    completed_at: float
    fields: dict
    planned_points: int | None = None
    partial: str | None = None


class RunCollector(event_model.DocumentRouter):
    """Collect one run's rocking curve(s) and hand each on when complete.

    Never raises: a failure while handling a document is logged and becomes
    the run's ``error`` record at stop.

    Parameters
    ----------
    plan : RunPlan
        What the start document said (see :func:`~.detection.plan_from_start`).
    submit : callable
        ``submit(item)`` with a :class:`CurveJob` or a ``ResultRecord``.
    """

    def __init__(self, plan: RunPlan, submit: Callable[[object], None]):
        super().__init__()
        self.plan = plan
        self._submit = submit
        self.uid: str | None = None
        self.fields: CurveFields | None = None
        self._descriptors: set[str] = set()
        self._problem: tuple[str, str] | None = ("rejected", plan.problem) if plan.problem else None
        self._angles: list[float] = []
        self._counts: list[float] = []
        self._position: tuple | None = None
        self._next_index = 0
        self._n_taken = 0  # points of every curve of the run, for the comparison with num_points
        self._multi = bool(plan.position_fields)

    def __call__(self, name, doc, validate=False):
        try:
            return super().__call__(name, doc, validate=validate)
        except Exception as exc:  # never into the RunEngine
            log.exception("xrd-strain: error handling %s document of run %s", name, self.uid)
            if self._problem is None or self._problem[0] != "error":
                self._problem = ("error", f"plugin error on {name} document: {type(exc).__name__}: {exc}")
            if name == "stop":
                self._emit_problem(*self._problem)
            return None

    def start(self, doc):
        self.uid = doc["uid"]
        return doc

    def descriptor(self, doc):
        if doc.get("name") != self.plan.stream_name or self._problem is not None:
            return doc
        try:
            fields = fields_from_descriptor(doc, self.plan)
        except DetectionError as exc:
            self._problem = ("rejected", str(exc))
            return doc
        if self.fields is not None and fields != self.fields:
            self._problem = ("rejected", f"stream {self.plan.stream_name!r} changed fields between descriptors")
            return doc
        self.fields = fields
        self._descriptors.add(doc["uid"])
        return doc

    def event_page(self, doc):
        if doc["descriptor"] not in self._descriptors or self._problem is not None:
            return doc
        data = doc["data"]
        f = self.fields
        try:
            angles = data[f.motor]
            counts = data[f.detector]
            positions = [data[p] for p in f.positions]
        except KeyError as exc:
            self._problem = ("rejected", f"event lacks field {exc.args[0]!r}")
            return doc
        for i in range(len(angles)):
            if positions:
                pos = tuple(p[i] for p in positions)
                if pos != self._position:
                    if self._angles:
                        self._finish_curve()
                    self._position = pos
            self._n_taken += 1
            self._angles.append(float(angles[i]))
            self._counts.append(float(counts[i]) if counts[i] is not None else np.nan)
        return doc

    def stop(self, doc):
        exit_status = doc.get("exit_status", "success")
        if self._problem is not None:
            self._emit_problem(*self._problem)
        elif exit_status != "success":
            status = "aborted" if exit_status == "abort" else "failed"
            why = doc.get("reason") or "no reason given"
            self._emit_problem(status, f"run {exit_status}ed before the curve was complete: {why}")
        elif not self._angles:
            if self.fields is None:
                self._emit_problem("rejected", f"no {self.plan.stream_name!r} stream in the run")
            elif self._next_index == 0:
                self._emit_problem("rejected", f"no events in stream {self.plan.stream_name!r}")
        else:
            planned = self.plan.num_points
            partial = None
            if planned is not None and self._n_taken < planned:
                # RE.stop() ends a run with exit status 'success': only the count tells.
                partial = f"run stopped after {self._n_taken} of {planned} planned points"
            self._finish_curve(partial=partial)
        return doc

    def _index(self) -> int | None:
        return self._next_index if self._multi else None

    def _finish_curve(self, partial: str | None = None):
        scale = 1.0 if self.plan.axis == "two_theta" else 2.0  # coupled ω-2θ: 2θ = 2ω
        job = CurveJob(
            raw_uid=self.uid,
            curve_index=self._index(),
            scan_id=self.plan.scan_id,
            sample=self.plan.sample_for(self._index()),
            two_theta_deg=scale * np.asarray(self._angles, dtype=float),
            intensity=np.asarray(self._counts, dtype=float),
            material=self.plan.material,
            hkl=self.plan.hkl,
            wavelength_angstrom=self.plan.wavelength_angstrom,
            completed_at=time.perf_counter(),
            fields={
                "motor": self.fields.motor,
                "detector": self.fields.detector,
                "axis": self.plan.axis,
                "positions": dict(zip(self.fields.positions, self._position or ())),
            },
            planned_points=self.plan.num_points,
            partial=partial,
        )
        self._angles, self._counts = [], []
        self._next_index += 1
        self._submit(job)

    def _emit_problem(self, status: str, reason: str):
        index = self._index()
        md = base_metadata(
            status=status,
            raw_uid=self.uid,
            curve_index=index,
            reason=reason,
            scan_id=self.plan.scan_id,
            sample=self.plan.sample_for(index),
            extra={
                "material": self.plan.material,
                "reflection": {"hkl": list(self.plan.hkl)},
                "wavelength_angstrom": self.plan.wavelength_angstrom,
                "n_points": len(self._angles),
            },
        )
        self._angles, self._counts = [], []
        self._next_index += 1
        log.warning("xrd-strain: run %s curve %s %s: %s", self.uid, index, status, reason)
        self._submit(ResultRecord(raw_uid=self.uid, curve_index=index, metadata=md))
