"""The document side of the live service: documents to a collector per rocking-curve run.

An :class:`event_model.RunRouter` gives each run whose start document describes a rocking curve
(:func:`~.detection.plan_from_start`) its own :class:`~.collector.RunCollector`, which submits
the completed curves. Runs that are not ours are ignored; nothing raises into the RunEngine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import event_model

from xrd_strain_plugin.results import ResultRecord, base_metadata

from .collector import CurveJob, RunCollector
from .detection import RockingCurveConfig, plan_from_start

log = logging.getLogger(__name__)


class DocumentRouting:
    """Routes documents to per-run collectors; never raises.

    Parameters
    ----------
    config : RockingCurveConfig
        Run recognition and default reflection.
    submit : callable
        ``submit(CurveJob | ResultRecord)``: where completed curves (and the records of
        unreadable start documents) go.
    counts : collections.Counter
        The service's counters (``orphan_documents``, ``document_errors``).
    """

    def __init__(self, config: RockingCurveConfig, submit: Callable[[CurveJob | ResultRecord], None], counts):
        self.config = config
        self.counts = counts
        self._submit = submit
        self._orphans: set = set()
        self.router = event_model.RunRouter([self.factory])

    def __call__(self, name: str, doc: dict) -> None:
        try:
            self.router(name, doc)
        except KeyError as exc:
            # Documents of a run whose start we never saw (a listener started mid-run): ignore them,
            # with one warning per run rather than one per event.
            self.counts["orphan_documents"] += 1
            run = doc.get("run_start") or doc.get("descriptor") or doc.get("uid")
            if run not in self._orphans:
                if len(self._orphans) > 1000:
                    self._orphans.clear()
                self._orphans.add(run)
                log.warning("xrd-strain: ignoring %s document of a run whose start was not seen (%s)", name, exc)
        except Exception:
            self.counts["document_errors"] += 1
            log.exception("xrd-strain: could not route %s document", name)

    def factory(self, name: str, start: dict):
        """RunRouter factory: a :class:`RunCollector` for rocking-curve runs, nothing otherwise."""
        try:
            plan = plan_from_start(start, self.config)
        except Exception as exc:
            log.exception("xrd-strain: unreadable start document %s", start.get("uid"))
            md = base_metadata(
                status="error",
                raw_uid=start["uid"],
                curve_index=None,
                reason=f"unreadable start document: {type(exc).__name__}: {exc}",
                scan_id=start.get("scan_id"),
            )
            self._submit(ResultRecord(raw_uid=start["uid"], curve_index=None, metadata=md))
            return [], []
        if plan is None:
            return [], []
        return [RunCollector(plan, self._submit)], []
