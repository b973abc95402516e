"""regenerate_dataset: a valid sharded dataset through a real flow run, the same shards through a
Dask LocalCluster, resumption, and a failing shard that is retried and then reported clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.flows.conftest import TINY


def test_local_run_writes_a_valid_sharded_dataset(tiny_data):
    from xrd_strain_training.dataset import load_dataset

    root, result = tiny_data
    train, test = Path(result["train"]["path"]), Path(result["test"]["path"])
    assert train.parent.name == "CNN2-ysz-400-1.5406A-seed11" and test.parent.name.startswith("heldout-")
    manifest = json.loads((train / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_curves"] == 24
    assert sorted(manifest["shards"]) == ["0", "1"] and manifest["seed"] == 11
    ds = load_dataset(train)
    assert ds.x.shape == (24, 1001) and np.isfinite(ds.x).all()
    assert ds.manifest["fingerprint"] == result["train"]["fingerprint"]
    assert load_dataset(test).n == 16 and result["test"]["complete"]
    # The same shard made directly by the library is byte-identical (the flow adds nothing).
    from xrd_strain_training.generate import DatasetSpec, make_shard
    from xrd_strain_training.presets import get_preset

    spec = DatasetSpec(preset=get_preset("CNN2", n_slices=60), seed=11, n_curves=24, shard_size=12)
    info = make_shard(spec, 1, Path(root) / "direct.h5")
    assert info["sha256"] == manifest["shards"]["1"]["sha256"]


def test_rerun_skips_finished_shards(tiny_data):
    from xrd_strain_flows.regenerate import regenerate

    root, result = tiny_data
    train = Path(result["train"]["path"])
    before = {p.name: p.stat().st_mtime_ns for p in train.glob("shard-*.h5")}
    again = regenerate(workers=1, data_root=str(root), **TINY)
    assert again["train"]["fingerprint"] == result["train"]["fingerprint"]
    assert {p.name: p.stat().st_mtime_ns for p in train.glob("shard-*.h5")} == before


def test_dask_local_cluster_gives_the_same_shards(tiny_data, tmp_path):
    from distributed import LocalCluster

    from xrd_strain_flows.regenerate import regenerate

    _, local = tiny_data
    # Workers as threads of this process keep the test short (no interpreter start per worker);
    # the shards still go through the scheduler, the workers and prefect-dask's task runner.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        result = regenerate(
            scheduler_address=cluster.scheduler_address, data_root=str(tmp_path), **{**TINY, "test_curves": 0}
        )
    assert "test" not in result
    assert result["train"]["fingerprint"] == local["train"]["fingerprint"]
    shards = lambda d: json.loads((Path(d) / "manifest.json").read_text())["shards"]  # noqa: E731
    assert {k: v["sha256"] for k, v in shards(result["train"]["path"]).items()} == {
        k: v["sha256"] for k, v in shards(local["train"]["path"]).items()
    }


def test_a_failing_shard_is_retried_then_reported(tmp_path):
    """A directory where shard 1's temporary file must go makes that shard fail for real: the task
    runs three times (two retries), the other shard is kept, and the flow fails naming shard 1."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    from xrd_strain_flows.regenerate import dataset_dir, regenerate

    train = (
        dataset_dir(tmp_path, preset="CNN2", material="YSZ", hkl=(4, 0, 0), wavelength_angstrom=1.5406, seed=11)
        / "train"
    )
    (train / "shard-00001.h5.tmp").mkdir(parents=True)
    state = regenerate(workers=1, data_root=str(tmp_path), return_state=True, **{**TINY, "test_curves": 0})
    assert state.is_failed()
    with pytest.raises(RuntimeError, match=r"1 of 2 shards .* failed after retries \(shard 1: "):
        state.result()
    manifest = json.loads((train / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == ["0"] and not manifest["complete"]

    with get_client(sync_client=True) as client:
        splits = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in splits])))
    by_name = {r.name: r for r in runs}
    assert by_name["shard-1"].run_count == 3 and by_name["shard-1"].state.is_failed()
    assert by_name["shard-0"].run_count == 1 and by_name["shard-0"].state.is_completed()
