"""Prefect flows: scheduled dataset regeneration, retraining behind a promotion gate, and the
least-squares refinement of new results (issue 8).

The flows are thin wrappers over library functions (:mod:`training`,
:mod:`xrd_strain_plugin.inference.registry`, :mod:`xrd_strain_plugin.refinement`,
:mod:`xrd_strain_plugin.tiled`); whatever a flow does can be called from Python without Prefect.
Per-curve live inference stays out of Prefect (the live callback answers in milliseconds; a flow
run costs about a second).

- :func:`xrd_strain_flows.regenerate.regenerate_dataset` -- shards as parallel tasks (local or Dask)
- :func:`xrd_strain_flows.retrain.retrain` -- candidate, Table-2 evaluation, gate, registry, artifact
- :func:`xrd_strain_flows.refine.refine_new_results` -- results without a refinement, exactly once each
- :mod:`xrd_strain_flows.deployments` -- the schedules, served by ``xrd-strain flows serve``
"""
