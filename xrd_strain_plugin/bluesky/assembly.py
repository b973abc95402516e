"""The collaborators :meth:`~.service.LiveInversion.from_uri` builds: inverter, publisher, refiner.

The only place the live service reaches into the Tiled adapter (its declared surface:
``tiled.spool.{Spool, SpoolingPublisher}``, ``tiled.writer.{TiledResultsWriter, check_credentials}``,
tests/test_imports.py) and into the model registry.
"""

from __future__ import annotations

from .detection import RockingCurveConfig
from .records import reflection_for, warm_up


def collaborators_from_uri(
    uri: str,
    *,
    spool_directory,
    api_key: str | None = None,
    bundle=None,
    config: RockingCurveConfig = RockingCurveConfig(),
    retry_interval_s: float = 2.0,
    refine: bool = False,
    refine_global_budget_s: float = 30.0,
    refine_processes: int = 1,
):
    """``(inverter, publisher, refiner or None)`` for ``LiveInversion.from_uri`` (same parameters).

    The credentials are checked first (a refused key is a configuration error, not an outage; an
    unreachable Tiled is fine: results wait in the spool), then the model is loaded and warmed up.
    """
    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import CurrentModel, ModelKey, ModelRegistry
    from xrd_strain_plugin.tiled.spool import Spool, SpoolingPublisher
    from xrd_strain_plugin.tiled.writer import TiledResultsWriter, check_credentials

    first = {"writer": check_credentials(uri, api_key=api_key, tables="deferred")}

    def warm(inverter):
        card = inverter.bundle.card
        warm_up(inverter, reflection_for(card.material, tuple(card.hkl), card.wavelength_angstrom))

    if bundle is None:  # the registry's current model, followed between runs (no restart)
        inverter = CurrentModel(
            ModelRegistry(),
            ModelKey(material=config.material, hkl=config.hkl, wavelength_angstrom=config.wavelength_angstrom),
            warm_up=warm,
        )
    else:  # a bundle directory or model_id[@version]
        inverter = Inverter(ModelRegistry().resolve(bundle).path)
        warm(inverter)

    def connect():
        writer = first.pop("writer", None)
        # Per-result tables when idle: a burst is written at the rate of nodes + arrays rows.
        return writer if writer is not None else TiledResultsWriter.from_uri(uri, api_key=api_key, tables="deferred")

    publisher = SpoolingPublisher(connect, Spool(spool_directory), retry_interval_s=retry_interval_s)
    refiner = None
    if refine:
        from xrd_strain_plugin.refinement.library import bundle_library

        from .refiner import RefinementWorker

        refiner = RefinementWorker(
            uri,
            api_key=api_key,
            global_budget_s=refine_global_budget_s,
            library=bundle_library(inverter.bundle.path),  # a CurrentModel: the registry's model at start
            processes=refine_processes,
        )
    return inverter, publisher, refiner
