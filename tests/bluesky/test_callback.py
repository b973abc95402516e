"""The live callback with a real RunEngine, the simulated diffractometer, a real model and Tiled.

Every bad run must end as a record in Tiled that says why, and must leave the
RunEngine able to run the next scan.
"""

from __future__ import annotations

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky.plans import grid_scan, list_scan, scan
from ophyd import Kind
from ophyd.sim import SynAxis, SynSignal

from tests.live_support import API_KEY
from xrd_strain_plugin.bluesky import LiveInversion, RockingCurveConfig
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer, SimulatedSample
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.tiled import Spool, SpoolingPublisher, TiledResultsWriter, find_results, read_result

REFL = make_reflection("YSZ", (4, 0, 0), 1.5406)


def sample(name="S1", e_max=0.015, dw_min=0.5, thickness_nm=300.0):
    strain = profiles.strain_from_weights(np.exp(-0.5 * ((np.arange(10) - 3) / 2.0) ** 2), e_max, 60)[0]
    dw = np.atleast_2d(profiles.dw_coupled(strain, e_max, dw_min))[0]
    return SimulatedSample(name=name, strain=strain, debye_waller=dw, thickness_nm=thickness_nm)


@pytest.fixture(scope="module")
def diffractometer():
    return SimulatedDiffractometer(reflection=REFL, sample=sample(), rng=np.random.default_rng(7))


@pytest.fixture(scope="module")
def live(tiled_server, inverter, tmp_path_factory):
    publisher = SpoolingPublisher(
        lambda: TiledResultsWriter.from_uri(tiled_server.url, api_key=API_KEY), Spool(tmp_path_factory.mktemp("spool"))
    )
    live = LiveInversion(inverter, publisher)
    yield live
    live.close()


@pytest.fixture(scope="module")
def raw_writer(tiled_server):
    from xrd_strain_plugin.bluesky.raw import raw_run_writer

    writer = raw_run_writer(tiled_server.client())
    yield writer
    writer.close(30)


@pytest.fixture(scope="module")
def RE(live, raw_writer):
    RE = RunEngine({})
    RE.subscribe(raw_writer)  # raw runs -> raw/<uid>, as deployed
    RE.subscribe(live)
    return RE


def only_result(tiled_server, uid):
    hits = find_results(tiled_server.client(), raw_uid=uid)
    assert len(hits) == 1, hits
    return read_result(next(iter(hits.values())))


def counts_det(values, name="det"):
    """A hinted detector returning ``values`` one after the other (SynSignal reads once when built)."""
    it = iter([0.0, *values])
    return SynSignal(lambda: next(it, 0.0), name=name, kind=Kind.hinted)


def degrees_axis(name="omega"):
    return SynAxis(name=name, egu="deg", kind=Kind.hinted)


def test_a_rocking_curve_scan_becomes_a_profile_in_tiled_linked_to_its_run(
    RE, live, diffractometer, tiled_server, raw_writer
):
    lo, hi = diffractometer.scan_range()
    (uid,) = RE(scan([diffractometer.detector], diffractometer.motor, lo, hi, 161), sample="S1")
    assert live.wait(60)
    raw_writer.wait()

    got = only_result(tiled_server, uid)
    md, arrays = got["metadata"], got["arrays"]
    assert md["status"] == "ok" and md["sample"] == "S1" and md["raw_uid"] == uid
    # Linked to its run: the raw run the link names exists in Tiled and is this scan.
    raw = tiled_server.client()[md["raw_path"]]
    assert raw.metadata["start"]["uid"] == uid and raw.metadata["stop"]["exit_status"] == "success"
    assert raw.metadata["start"]["sample"] == "S1"
    assert md["model"]["version"] == "0.0.test" and len(md["model"]["sha256"]) == 64
    assert md["fields"] == {"motor": "omega", "detector": "det", "axis": "omega", "positions": {}}
    assert arrays["q_inv_angstrom"].shape == (161,)
    # omega scan: the curve's 2theta is twice the motor angle, so Q spans the Bragg peak
    assert arrays["q_inv_angstrom"].min() < REFL.q_bragg_inv_angstrom < arrays["q_inv_angstrom"].max()
    assert np.all(np.diff(arrays["depth_nm"]) > 0) and arrays["depth_nm"][0] == 0.0
    assert md["strain_max_percent"] == pytest.approx(arrays["strain_percent"].max())
    assert md["sigma_i"] > 0 and md["timings"]["invert_s"] > 0


def test_a_scan_that_is_not_a_rocking_curve_is_ignored_quietly(RE, live, tiled_server):
    x = SynAxis(name="sample_x", egu="mm")
    before = sum(live.counts.values())
    (uid,) = RE(scan([counts_det(np.ones(20))], x, 0, 1, 20))
    assert live.wait(30)
    assert find_results(tiled_server.client(), raw_uid=uid) == {}
    assert sum(live.counts.values()) == before


@pytest.mark.parametrize(
    ("angles", "values", "reason"),
    [
        (np.linspace(36.0, 37.0, 30), np.r_[np.ones(10), np.nan, np.ones(19)] * 100, "NaN"),
        (np.linspace(36.0, 37.0, 30), np.r_[np.ones(10), -3.0, np.ones(19)] * 100, "negative"),
        (np.linspace(36.0, 37.0, 5), np.ones(5) * 100, "too few points"),
        (np.r_[np.linspace(36.0, 36.5, 15), np.linspace(36.2, 37.0, 15)], np.ones(30) * 100, "sorted"),
        (np.r_[np.linspace(36.0, 36.5, 15), np.linspace(36.5, 37.0, 15)], np.ones(30) * 100, "duplicate"),
    ],
    ids=["nan", "negative", "too-few", "unsorted", "repeated"],
)
def test_bad_data_is_rejected_with_a_clear_reason_and_the_runengine_carries_on(
    RE, live, tiled_server, angles, values, reason
):
    (uid,) = RE(list_scan([counts_det(values)], degrees_axis(), list(angles)))
    assert live.wait(30)
    md = only_result(tiled_server, uid)["metadata"]
    assert md["status"] == "rejected"
    assert reason in md["reason"]
    assert RE.state == "idle"


def test_missing_motor_or_detector_fields_are_named_in_the_record(RE, live, tiled_server):
    (uid,) = RE(
        scan([counts_det(np.ones(20))], degrees_axis(), 36, 37, 20), xrd_strain={"detector_field": "pilatus_sum"}
    )
    (uid2,) = RE(scan([counts_det(np.ones(20))], degrees_axis(), 36, 37, 20), xrd_strain={"motor_field": "two_theta"})
    assert live.wait(30)
    assert "detector field 'pilatus_sum' is missing" in only_result(tiled_server, uid)["metadata"]["reason"]
    assert "motor field 'two_theta' is missing" in only_result(tiled_server, uid2)["metadata"]["reason"]


def test_an_unreadable_start_document_is_recorded_not_raised(RE, live, tiled_server):
    (uid,) = RE(scan([counts_det(np.ones(20))], degrees_axis(), 36, 37, 20), xrd_strain={"hkl": "four"})
    assert live.wait(30)
    md = only_result(tiled_server, uid)["metadata"]
    assert md["status"] == "error" and "unreadable start document" in md["reason"]


def test_a_failed_run_leaves_a_record_saying_why_and_no_profile(RE, live, tiled_server):
    def broken():
        values = iter(np.ones(8) * 100)

        def read():
            try:
                return next(values)
            except StopIteration:
                raise RuntimeError("detector lost") from None

        return SynSignal(read, name="det", kind=Kind.hinted)

    uids = []
    RE.subscribe(lambda name, doc: uids.append(doc["uid"]) if name == "start" else None)
    with pytest.raises(RuntimeError, match="detector lost"):  # the plan's own failure, not ours
        RE(scan([broken()], degrees_axis(), 36, 37, 20))
    assert live.wait(30)
    got = only_result(tiled_server, uids[-1])
    assert got["metadata"]["status"] == "failed"
    assert "detector lost" in got["metadata"]["reason"]
    assert got["arrays"] == {}


def test_an_aborted_run_leaves_a_record_saying_why(live, tiled_server):
    from event_model import compose_run

    run = compose_run(metadata={"hints": {"dimensions": [[["omega"], "primary"]]}, "sample": "S9"})
    desc = run.compose_descriptor(
        name="primary",
        data_keys={
            "omega": {"dtype": "number", "shape": [], "source": "sim", "units": "deg"},
            "det": {"dtype": "number", "shape": [], "source": "sim"},
        },
        hints={"det": {"fields": ["det"]}, "omega": {"fields": ["omega"]}},
    )
    live("start", run.start_doc)
    live("descriptor", desc.descriptor_doc)
    for i in range(5):
        live(
            "event",
            desc.compose_event(data={"omega": 36.0 + i * 0.01, "det": 100.0}, timestamps={"omega": 0.0, "det": 0.0}),
        )
    live("stop", run.compose_stop(exit_status="abort", reason="operator pressed stop"))
    assert live.wait(30)
    md = only_result(tiled_server, run.start_doc["uid"])["metadata"]
    assert md["status"] == "aborted" and "operator pressed stop" in md["reason"] and md["sample"] == "S9"


def test_event_pages_give_the_same_curve_as_events(live, diffractometer, tiled_server):
    from event_model import compose_run

    two_theta = np.linspace(71.8, 74.0, 120)
    counts = diffractometer.counts(two_theta)
    uids = []
    for paged in (False, True):
        run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}})
        desc = run.compose_descriptor(
            name="primary",
            data_keys={
                "tth": {"dtype": "number", "shape": [], "source": "sim"},
                "det-intensity": {"dtype": "number", "shape": [], "source": "sim"},
            },
            hints={"det": {"fields": ["det-intensity"]}},
        )
        live("start", run.start_doc)
        live("descriptor", desc.descriptor_doc)
        if paged:
            live(
                "event_page",
                desc.compose_event_page(
                    data={"tth": two_theta, "det-intensity": counts},
                    timestamps={"tth": two_theta * 0, "det-intensity": counts * 0},
                    seq_num=list(range(1, 121)),
                    time=list(two_theta * 0),
                ),
            )
        else:
            for t, c in zip(two_theta, counts):
                live(
                    "event",
                    desc.compose_event(data={"tth": t, "det-intensity": c}, timestamps={"tth": 0, "det-intensity": 0}),
                )
        live("stop", run.compose_stop())
        uids.append(run.start_doc["uid"])
    assert live.wait(60)
    a, b = (only_result(tiled_server, u) for u in uids)
    assert a["metadata"]["fields"]["axis"] == "two_theta"
    np.testing.assert_allclose(a["arrays"]["intensity_measured"], counts)
    np.testing.assert_allclose(b["arrays"]["intensity_measured"], counts)
    np.testing.assert_allclose(a["arrays"]["strain_percent"], b["arrays"]["strain_percent"])


def test_a_run_with_one_curve_per_sample_position_gives_one_result_per_curve(RE, live, diffractometer, tiled_server):
    stage = SynAxis(name="sample_x", egu="mm")
    lo, hi = diffractometer.scan_range()
    (uid,) = RE(
        grid_scan([diffractometer.detector], stage, 0, 5, 2, diffractometer.motor, lo, hi, 81),
        samples=["left", "right"],
    )
    assert live.wait(60)
    hits = find_results(tiled_server.client(), raw_uid=uid)
    assert sorted(hits) == [(uid, "0"), (uid, "1")]
    assert [hits[(uid, i)].metadata["sample"] for i in ("0", "1")] == ["left", "right"]
    assert hits[(uid, "1")].metadata["fields"]["positions"] == {"sample_x": 5.0}


def test_field_overrides_win_over_hints(RE, live, tiled_server, inverter):
    # Two hinted detectors: ambiguous from hints, fine once configured.
    motor = degrees_axis("th")
    dets = [counts_det(np.ones(20) * 100, "mon"), counts_det(np.ones(20) * 50, "diode")]
    (uid,) = RE(scan(dets, motor, 36, 37, 20))
    assert live.wait(30)
    assert "several hinted detector fields" in only_result(tiled_server, uid)["metadata"]["reason"]

    configured = LiveInversion(inverter, live.publisher, config=RockingCurveConfig(detector_field="diode"))
    RE2 = RunEngine({})
    RE2.subscribe(configured)
    dets = [counts_det(np.ones(20) * 100, "mon"), counts_det(np.linspace(1, 2, 20) * 50, "diode")]
    (uid2,) = RE2(scan(dets, motor, 36, 37, 20))
    configured.close()
    np.testing.assert_allclose(
        only_result(tiled_server, uid2)["arrays"]["intensity_measured"], np.linspace(1, 2, 20) * 50
    )


def test_plugin_state_is_released_after_each_run(RE, live):
    RE(bps.null())  # no run at all is fine too
    assert live.routing.router._start_to_start_doc == {}


def test_documents_of_a_run_joined_midway_are_ignored_without_raising(live, tiled_server):
    from event_model import compose_run

    run = compose_run(metadata={"hints": {"dimensions": [[["omega"], "primary"]]}})
    desc = run.compose_descriptor(name="primary", data_keys={"omega": {"dtype": "number", "shape": [], "source": "s"}})
    before = live.counts["orphan_documents"]
    live("descriptor", desc.descriptor_doc)  # the start document was missed
    for i in range(3):
        live("event", desc.compose_event(data={"omega": 36.0 + i}, timestamps={"omega": 0.0}))
    live("stop", run.compose_stop())
    assert live.wait(10)
    assert live.counts["orphan_documents"] - before == 4  # descriptor and events (a stray stop is a no-op)
    assert find_results(tiled_server.client(), raw_uid=run.start_doc["uid"]) == {}
