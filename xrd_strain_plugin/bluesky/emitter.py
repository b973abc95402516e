"""The derived-documents emitter of the live service: results to subscribers as Bluesky runs.

Each result written or spooled (and each refinement finished) goes to every subscriber as the
documents of a derived run (composed in :mod:`.derived`). A subscriber that raises is logged and
counted, never allowed to stop the service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from xrd_strain_plugin.results import ResultRecord

log = logging.getLogger(__name__)

#: ``callback(name, doc)``, as a RunEngine subscriber.
DocumentCallback = Callable[[str, dict], None]


class DerivedEmitter:
    """Sends the derived runs of results and refinements to the subscribers.

    Parameters
    ----------
    counts : collections.Counter
        The service's counters (``result_callback_errors``).
    """

    def __init__(self, counts):
        self.counts = counts
        self._subscribers: list[DocumentCallback] = []

    def subscribe(self, callback: DocumentCallback) -> None:
        self._subscribers.append(callback)

    def result(self, record: ResultRecord) -> None:
        """The derived run of a result (network answer)."""
        if not self._subscribers:
            return
        from .derived import result_documents

        try:
            docs = result_documents(record)
        except Exception:
            log.exception("xrd-strain: could not compose the documents of result %s", "/".join(record.path))
            return
        self._send(docs)

    def refined(self, outcome: dict) -> None:
        """The derived run of a finished refinement (a refiner's outcome with its ``arrays``)."""
        if not self._subscribers or outcome.get("status") != "done" or not outcome.get("arrays"):
            return
        from .derived import refined_documents

        try:
            docs = refined_documents(outcome["path"], outcome, outcome.get("meta") or {})
        except Exception:
            log.exception("xrd-strain: could not compose the documents of refinement %s", outcome["path"])
            return
        self._send(docs)

    def _send(self, docs) -> None:
        for callback in self._subscribers:
            for name, doc in docs:
                try:
                    callback(name, doc)
                except Exception:
                    self.counts["result_callback_errors"] += 1
                    log.exception("xrd-strain: a result subscriber failed on a %s document", name)
                    break
