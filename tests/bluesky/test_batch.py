"""Batched inference and batched writes: the same answers as one at a time, several curves per
network call and per write when they wait, and results as derived Bluesky documents."""

from __future__ import annotations

import numpy as np
import pytest
from event_model import compose_run

from tests.live_support import API_KEY
from xrd_strain_plugin.bluesky import LiveInversion
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.physics.qspace import CurveError
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter, find_results, read_result

REFL = make_reflection("YSZ", (4, 0, 0), 1.5406)


@pytest.fixture(scope="module")
def curves():
    out = []
    for k, e_max in enumerate((0.008, 0.015, 0.03)):
        strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 2 - k) / 2.0) ** 2), e_max, 60)[0]
        dw = np.atleast_2d(profiles.dw_coupled(strain, e_max, 0.5))[0]
        s = SimulatedSample(name=f"B{k}", strain=strain, debye_waller=dw, thickness_nm=200.0 + 50 * k)
        d = SimulatedDiffractometer(reflection=REFL, sample=s, rng=np.random.default_rng(k))
        for n in (131, 151):  # two lengths: two simulation groups
            tt = np.linspace(71.6, 74.2, n)
            out.append((tt, d.counts(tt)))
    return out


def test_invert_many_gives_each_curve_the_answer_of_invert_and_its_own_error(inverter, curves):
    bad = (np.linspace(72.0, 73.0, 5), np.ones(5))
    many = inverter.invert_many([*curves[:3], bad, *curves[3:]], REFL)
    assert isinstance(many[3], CurveError) and "too few points" in str(many[3])
    for (tt, counts), got in zip(curves, many[:3] + many[4:]):
        one = inverter.invert(tt, counts, REFL)
        # float32 network: batch and single calls agree to rounding
        np.testing.assert_allclose(got.strain_percent, one.strain_percent, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(got.intensity_model, one.intensity_model, rtol=2e-3)
        assert got.sigma_i == pytest.approx(one.sigma_i, abs=1e-4)
        assert got.timings["batch_size"] == len(curves)


def one_curve_run(two_theta, counts, sample):
    run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}, "sample": sample})
    desc = run.compose_descriptor(
        name="primary",
        data_keys={
            "tth": {"dtype": "number", "shape": [], "source": "sim"},
            "det": {"dtype": "number", "shape": [], "source": "sim"},
        },
        hints={"det": {"fields": ["det"]}},
    )
    n = two_theta.size
    return [
        ("start", run.start_doc),
        ("descriptor", desc.descriptor_doc),
        (
            "event_page",
            desc.compose_event_page(
                data={"tth": two_theta, "det": counts},
                timestamps={"tth": two_theta * 0, "det": counts * 0},
                seq_num=list(range(1, n + 1)),
                time=list(two_theta * 0),
            ),
        ),
        ("stop", run.compose_stop()),
    ]


def test_curves_that_wait_are_inverted_and_written_together_and_published_as_derived_runs(
    tmp_path, inverter, curves, tiled_server
):
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path / "spool")
    )
    live = LiveInversion(inverter, publisher)
    documents = []
    live.subscribe_results(lambda name, doc: documents.append((name, doc)))
    runs = [one_curve_run(tt, c, f"batch-{i}") for i, (tt, c) in enumerate(curves * 3)]
    runs.append(one_curve_run(np.linspace(72, 73, 5), np.ones(5), "batch-bad"))
    for docs in runs:
        for name, doc in docs:
            live(name, doc)
    assert live.wait(120)
    live.close()
    publisher.spool.close()
    uids = [docs[0][1]["uid"] for docs in runs]
    assert live.counts["written"] == len(runs) and live.counts["ok"] == len(runs) - 1
    assert max(o.batch_size for o in live.outcomes) > 1  # records that waited went up in one write
    client = tiled_server.client()
    batched = 0
    for i, uid in enumerate(uids[:-1]):
        hits = find_results(client, raw_uid=uid)
        assert list(hits) == [(uid,)]
        got = read_result(hits[(uid,)])
        tt, counts = (curves * 3)[i]
        np.testing.assert_allclose(got["arrays"]["intensity_measured"], counts)
        batched += got["metadata"]["timings"].get("batch_size", 1) > 1
    assert batched > 0  # curves that waited were inverted in one network call
    # Each result as a derived run linked to its raw run, arrays as stored; valid documents.
    import event_model

    for name, doc in documents:
        plain = {k: v for k, v in doc.items()}
        if name == "event":
            plain["data"] = {k: np.asarray(v).tolist() for k, v in doc["data"].items()}
        event_model.schema_validators[event_model.DocumentNames[name]].validate(plain)
    starts = [d for n, d in documents if n == "start"]
    assert sorted(s["xrd_strain"]["raw_uid"] for s in starts) == sorted(uids)
    by_run = {}
    for name, doc in documents:
        key = doc.get("run_start") or doc.get("uid")
        by_run.setdefault(key, []).append((name, doc))
    first = next(s for s in starts if s["xrd_strain"]["raw_uid"] == uids[0])
    names = [n for n, _ in by_run[first["uid"]]]
    assert names[0] == "start" and "stop" in names
    events = [
        d
        for n, d in documents
        if n == "event"
        and d["descriptor"]
        in {dd["uid"] for nn, dd in documents if nn == "descriptor" and dd["run_start"] == first["uid"]}
    ]
    stored = read_result(client["results"][uids[0]])["arrays"]
    np.testing.assert_allclose(events[0]["data"]["strain_percent"], stored["strain_percent"])
    bad = next(s for s in starts if s["xrd_strain"]["raw_uid"] == uids[-1])
    stop = [d for n, d in documents if n == "stop" and d["run_start"] == bad["uid"]][0]
    assert stop["exit_status"] == "fail" and "too few points" in stop["reason"]
