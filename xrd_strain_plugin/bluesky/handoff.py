"""The refiner hand-off of the live service: each ``ok`` result written goes to the refiner.

The network's result never waits for it: the refiner
(:class:`~.refiner.RefinementWorker`, a separate process) refines beside the network's answer
in Tiled. Without a refiner every call here is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from xrd_strain_plugin.results import ResultRecord

from .publishing import Outcome

log = logging.getLogger(__name__)


class Refiner(Protocol):
    """What the service hands results to: a :class:`~.refiner.RefinementWorker`."""

    #: ``on_outcome(outcome)`` for each finished refinement, called from :meth:`poll`.
    on_outcome: Callable[[dict], None] | None

    def submit(self, record: ResultRecord, start: Any) -> bool: ...

    def poll(self) -> list: ...

    def close(self, timeout: float | None = None, *, drain: bool = True, grace_s: float = 20.0) -> None: ...


class RefinerHandoff:
    """Hands written ``ok`` results to ``refiner`` (or does nothing without one)."""

    def __init__(self, refiner: Refiner | None):
        self.refiner = refiner

    def offer(self, record: ResultRecord, outcome: Outcome, start: Any) -> None:
        """Submit ``record`` if it was written now with a profile (``start``: its InversionResult)."""
        if self.refiner is not None and outcome.written and record.status == "ok" and start is not None:
            self.refiner.submit(record, start)

    def follow(self, on_refined: Callable[[dict], None]) -> None:
        """Have finished refinements reported to ``on_refined`` (unless the refiner reports elsewhere)."""
        if self.refiner is not None and self.refiner.on_outcome is None:
            self.refiner.on_outcome = on_refined

    def poll(self) -> None:
        """Collect the refinements finished since the last call (reported to ``on_outcome``)."""
        if self.refiner is None:
            return
        try:
            self.refiner.poll()
        except Exception:
            log.exception("xrd-strain: could not read the refiner's outcomes")

    def close(self, timeout: float | None = None, *, drain: bool = True, grace_s: float = 20.0) -> None:
        """Stop the refiner (see :meth:`~.refiner.RefinementWorker.close`)."""
        if self.refiner is not None:
            self.refiner.close(timeout, drain=drain, grace_s=grace_s)
