"""refine_new_results: real results in a real Tiled server, refined by the real engine, exactly
once each even when two flow runs overlap, beside the network's answer (never overwritten)."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from tests.live_support import API_KEY, CHEAP_REFINEMENT


@pytest.fixture(scope="module")
def stored_results(tiled_server):
    """Three network answers for simulated YSZ 400 curves, written as the live plugin writes them."""
    from xrd_strain_plugin.inference import Inverter
    from xrd_strain_plugin.inference.registry import shipped_bundle_path
    from xrd_strain_plugin.physics import instrument, profiles
    from xrd_strain_plugin.physics.materials import make_reflection
    from xrd_strain_plugin.tiled import TiledResultsWriter, record_from_result

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    inverter = Inverter(shipped_bundle_path())
    rng = np.random.default_rng(4)
    tb = refl.two_theta_bragg_deg
    two_theta = np.arange(tb - 2.0, tb + 0.4, 0.005)
    writer = TiledResultsWriter(tiled_server.client())
    uids = []
    for e_max, t_nm in ((0.01, 250.0), (0.02, 400.0), (0.015, 600.0)):
        strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 3) / 2.0) ** 2), e_max, 60)
        dw = profiles.dw_coupled(strain, e_max, 0.6)
        r = instrument.simulate_scan(two_theta, strain, dw, t_nm, refl, resolution_fwhm_deg=0.01)
        counts = np.asarray(instrument.apply_counts(r, scale=1e6, background=3.0, rng=rng))[0]
        uid = str(uuid.uuid4())
        writer.write(record_from_result(inverter.invert(two_theta, counts, refl), raw_uid=uid, sample=f"e{e_max}"))
        uids.append(uid)
    return uids


def test_two_overlapping_runs_refine_each_result_exactly_once(tiled_server, stored_results, monkeypatch):
    from xrd_strain_flows.refine import refine_new_results
    from xrd_strain_plugin.tiled import find_results, read_result
    from xrd_strain_plugin.tiled.refinement import find_unrefined, read_refinement

    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    client = tiled_server.client()
    before = {uid: read_result(next(iter(find_results(client, raw_uid=uid).values()))) for uid in stored_results}
    assert len(find_unrefined(client)) == 3

    outcomes, barrier = [], threading.Barrier(2)

    def run():
        barrier.wait()
        outcomes.append(refine_new_results(tiled_server.url, options=CHEAP_REFINEMENT))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(outcomes) == 2, "a flow run failed"
    refined = [r["path"] for out in outcomes for r in out["refined"]]
    assert sorted(refined) == sorted(stored_results)  # every result once, none twice
    contested = sum(len(out["claimed_elsewhere"]) for out in outcomes)
    assert contested == sum(out["found"] for out in outcomes) - 3

    for uid in stored_results:
        node = next(iter(find_results(client, raw_uid=uid).values()))
        md = dict(node.metadata)
        assert md["refinement"]["status"] == "done"
        assert md["refinement"]["worker"].startswith("refine_new_results:")
        # The engine's figures arrive (their quality is the engine's tests' business: with the
        # cheap options used here the answer can be worse than its start).
        assert np.isfinite(md["refinement"]["sigma_i"]) and np.isfinite(md["refinement"]["sigma_i_start"])
        got = read_refinement(node)
        assert got["arrays"]["strain_percent"].shape == got["arrays"]["depth_nm"].shape
        # The network's answer is untouched beside it.
        after = read_result(node)
        for name, values in before[uid]["arrays"].items():
            np.testing.assert_array_equal(after["arrays"][name], values)
        assert after["metadata"]["strain_max_percent"] == before[uid]["metadata"]["strain_max_percent"]

    # Idempotent: nothing is left to refine, a further run does nothing.
    again = refine_new_results(tiled_server.url, options=CHEAP_REFINEMENT)
    assert again == {"found": 0, "refined": [], "claimed_elsewhere": []}


def test_refinement_options_arrive_as_json_and_a_bad_one_fails_before_any_claim(tiled_server, monkeypatch):
    from xrd_strain_flows.refine import refine_new_results, refine_options
    from xrd_strain_plugin.refinement.search import SearchOptions

    got = refine_options({"n_rescan": 0, "search": {"widths": [[0.25, 0.12]], "n_thicknesses": 8}})
    assert got.n_rescan == 0 and got.search == SearchOptions(widths=((0.25, 0.12),), n_thicknesses=8)
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    state = refine_new_results(tiled_server.url, options={"no_such_option": 1}, return_state=True)
    assert state.is_failed()
    with pytest.raises(TypeError, match="no_such_option"):
        state.result()
