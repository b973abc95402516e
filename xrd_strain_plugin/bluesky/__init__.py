"""Bluesky adapter: the live inversion callback, run recognition, a simulated diffractometer.

Importing this package imports event-model (for the callback classes) but not ophyd,
Keras or the Tiled client; those load when a diffractometer, a model or a connection is made.
"""

from .collector import CurveJob, RunCollector
from .detection import CurveFields, DetectionError, RockingCurveConfig, RunPlan, plan_from_start
from .service import LiveInversion, Outcome

__all__ = [
    "CurveFields",
    "CurveJob",
    "DetectionError",
    "LiveInversion",
    "Outcome",
    "RockingCurveConfig",
    "RunCollector",
    "RunPlan",
    "plan_from_start",
]
