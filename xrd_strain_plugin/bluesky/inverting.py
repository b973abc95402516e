"""The inversion stage of the live service: a batch of queued items to result records.

Every curve waiting is inverted in one network call per reflection
(:meth:`~xrd_strain_plugin.inference.invert.Inverter.invert_many`, the one ``Inverter`` path) and
described by :func:`~.records.record_from_job`; records already made pass through.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol, runtime_checkable

from xrd_strain_plugin.results import ResultRecord, base_metadata

from .collector import CurveJob
from .records import record_from_job, reflection_for


@runtime_checkable
class CurveInverter(Protocol):
    """What the service inverts with: an ``Inverter`` or a registry-following ``CurrentModel``."""

    @property
    def bundle(self) -> Any: ...

    def invert(self, two_theta_deg, intensity, reflection) -> Any: ...

    def invert_many(self, curves, reflection) -> list: ...


@runtime_checkable
class FollowsRegistry(Protocol):
    """An inverter that picks up a newly promoted model between runs (``CurrentModel``)."""

    def refresh(self, run=None) -> bool: ...


class Entry(NamedTuple):
    """One record on its way to the publisher, with what came with it."""

    record: ResultRecord
    completed_at: float | None  # when the curve was complete (perf_counter); None for a ready record
    start: Any  # the InversionResult (the refiner's start), or None


class BatchInverter:
    """Turns a batch of queued items into :class:`Entry` s, in order; never raises for one curve.

    Parameters
    ----------
    inverter : CurveInverter
        Has ``bundle``, ``invert`` and ``invert_many``; with ``refresh`` (:class:`FollowsRegistry`)
        it is asked, per run, whether a newly promoted model should answer.

    Raises
    ------
    TypeError
        If ``inverter`` does not have the :class:`CurveInverter` interface.
    """

    def __init__(self, inverter: CurveInverter):
        if not isinstance(inverter, CurveInverter):
            raise TypeError(f"{type(inverter).__name__} has no bundle, invert and invert_many: not an inverter")
        self.inverter = inverter
        self._follows = isinstance(inverter, FollowsRegistry)

    def entries(self, items) -> list[Entry]:
        """The entries of a batch (curves inverted together where they share a reflection)."""
        jobs = [item for item in items if isinstance(item, CurveJob)]
        if self._follows:
            # A newly promoted model answers from the next run on. Runs already waiting in this
            # batch when a promotion is noticed are answered by the new model too.
            for job in jobs:
                self.inverter.refresh(job.raw_uid)
        answers = self._invert_batch(jobs) if len(jobs) > 1 else {}
        out = []
        for item in items:
            if not isinstance(item, CurveJob):
                out.append(Entry(item, None, None))
                continue
            try:
                inverter = Answered(self.inverter, answers.get(id(item)))
                record = record_from_job(item, inverter)
                if id(item) in answers and isinstance(record.metadata.get("timings"), dict):
                    record.metadata["timings"]["invert_batch_s"] = answers["batch_s"]
                    record.metadata["timings"]["batch_size"] = len(jobs)
                out.append(Entry(record, item.completed_at, inverter.last))
            except Exception as exc:  # record_from_job records its own failures; this is a last resort
                md = base_metadata(
                    status="error",
                    raw_uid=item.raw_uid,
                    curve_index=item.curve_index,
                    reason=f"plugin error: {type(exc).__name__}: {exc}",
                    scan_id=item.scan_id,
                    sample=item.sample,
                )
                record = ResultRecord(raw_uid=item.raw_uid, curve_index=item.curve_index, metadata=md)
                out.append(Entry(record, item.completed_at, None))
        return out

    def _invert_batch(self, jobs) -> dict:
        """One ``invert_many`` call per reflection among ``jobs``: ``{id(job): result or exception}``."""
        answers: dict = {}
        t0 = time.perf_counter()
        groups: dict = {}
        for job in jobs:
            groups.setdefault((job.material, tuple(job.hkl), float(job.wavelength_angstrom)), []).append(job)
        for (material, hkl, wavelength), members in groups.items():
            try:
                refl = reflection_for(material, hkl, wavelength)
                results = self.inverter.invert_many([(j.two_theta_deg, j.intensity) for j in members], refl)
            except Exception:  # e.g. a reflection the model does not know: each curve says why, alone
                continue
            answers.update({id(j): r for j, r in zip(members, results)})
        answers["batch_s"] = time.perf_counter() - t0
        return answers


class Answered:
    """The inverter as ``record_from_job`` sees it: the answer already computed for this curve in a
    batch (a result or the exception it raised), else the real inverter's; keeps the answer
    (``last``) for the refiner."""

    def __init__(self, inverter: CurveInverter, answer=None):
        self._inverter = inverter
        self.bundle = inverter.bundle
        self._answer = answer
        self.last = None

    def invert(self, two_theta_deg, intensity, reflection):
        answer = self._answer
        if answer is None:
            answer = self._inverter.invert(two_theta_deg, intensity, reflection)
        if isinstance(answer, BaseException):
            raise answer
        self.last = answer
        return answer
