"""Run recognition, the simulated detector, and import weight (no server needed)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from xrd_strain_plugin.bluesky.detection import (
    DetectionError,
    RockingCurveConfig,
    fields_from_descriptor,
    plan_from_start,
)
from xrd_strain_plugin.physics.materials import make_reflection


def start(dims, **md):
    return {"uid": "u", "scan_id": 4, "hints": {"dimensions": dims}, **md}


@pytest.mark.parametrize(
    ("dims", "motor", "axis", "positions"),
    [
        ([[["omega"], "primary"]], "omega", "omega", ()),
        ([[["diff-tth"], "primary"]], "diff-tth", "two_theta", ()),
        ([[["sample_x"], "primary"], [["th"], "primary"]], "th", "omega", ("sample_x",)),
        ([[["two_theta"], "primary"], [["omega"], "primary"]], "omega", "omega", ("two_theta",)),
    ],
)
def test_the_innermost_angle_dimension_is_the_rocking_axis(dims, motor, axis, positions):
    plan = plan_from_start(start(dims), RockingCurveConfig())
    assert (plan.motor_field, plan.axis, plan.position_fields) == (motor, axis, positions)


def test_runs_without_an_angle_axis_are_not_ours_unless_they_opt_in():
    assert plan_from_start(start([[["sample_x"], "primary"]]), RockingCurveConfig()) is None
    assert plan_from_start({"uid": "u"}, RockingCurveConfig()) is None
    plan = plan_from_start(start([[["x"], "primary"]], xrd_strain={}), RockingCurveConfig())
    assert "no scanned angle motor" in plan.problem


def test_start_metadata_overrides_configuration():
    plan = plan_from_start(
        start([[["omega"], "primary"]], sample={"name": "A"}, xrd_strain={"hkl": [2, 0, 0], "axis": "two_theta"}),
        RockingCurveConfig(hkl=(4, 0, 0), wavelength_angstrom=1.5406),
    )
    assert plan.hkl == (2, 0, 0) and plan.axis == "two_theta" and plan.sample == "A"
    assert plan.wavelength_angstrom == 1.5406


def descriptor(keys, hints):
    return {"name": "primary", "uid": "d", "data_keys": keys, "hints": hints}


NUM = {"dtype": "number", "shape": [], "source": "s"}


def test_detector_comes_from_hints_and_units_must_be_degrees():
    plan = plan_from_start(start([[["omega"], "primary"]]), RockingCurveConfig())
    keys = {"omega": NUM, "omega_setpoint": NUM, "det-intensity": NUM, "temp": NUM}
    fields = fields_from_descriptor(
        descriptor(keys, {"det": {"fields": ["det-intensity"]}, "omega": {"fields": ["omega"]}}), plan
    )
    assert fields.detector == "det-intensity"
    with pytest.raises(DetectionError, match="no detector field"):
        fields_from_descriptor(descriptor(keys, {"omega": {"fields": ["omega"]}}), plan)
    with pytest.raises(DetectionError, match="in 'mm'"):
        fields_from_descriptor(
            descriptor({**keys, "omega": {**NUM, "units": "mm"}}, {"det": {"fields": ["det-intensity"]}}), plan
        )


def test_simulated_detector_sees_the_substrate_peak_over_a_poisson_background():
    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    sample = SAMPLES[0].simulated()
    diff = SimulatedDiffractometer(reflection=refl, sample=sample, rng=np.random.default_rng(0))
    tb = refl.two_theta_bragg_deg
    # A perfect-crystal substrate reflects strongly at its Bragg angle, not 0.9 deg above it.
    assert diff.reflectivity(tb) > 1e3 * diff.reflectivity(tb + 0.9)
    # Counting statistics: mean = scale * R + background, and Poisson (variance = mean).
    far = diff.counts(np.full(4000, tb + 0.95))
    expected = sample.scale_counts * diff.reflectivity(tb + 0.95) + sample.background_counts
    assert far.mean() == pytest.approx(expected, rel=0.05)
    assert far.var() == pytest.approx(far.mean(), rel=0.15)
    assert np.all(far == np.round(far))
    # ophyd: moving the omega axis to theta_B puts the detector on the peak
    diff.motor.set(tb / 2).wait(5)
    diff.detector.trigger().wait(5)
    assert diff.detector.get() > 100 * sample.background_counts


def test_importing_the_adapters_loads_no_ml_ophyd_or_tiled_stack():
    probe = (
        "import json, sys; import xrd_strain_plugin.bluesky, xrd_strain_plugin.tiled, xrd_strain_plugin.cli.live;"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('tensorflow', 'keras', 'ophyd', 'tiled', 'bluesky', 'jax', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _stopped_run(n_planned, n_taken, *, exit_status="success"):
    """Documents of a one-curve 2theta run that planned ``n_planned`` points and took ``n_taken``."""
    from event_model import compose_run

    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.cli.demo import SAMPLES

    refl = make_reflection("YSZ", (4, 0, 0), 1.5406)
    diff = SimulatedDiffractometer(reflection=refl, sample=SAMPLES[1].simulated(), rng=np.random.default_rng(4))
    two_theta = np.linspace(71.6, 74.2, n_planned)[:n_taken]
    counts = diff.counts(two_theta)
    run = compose_run(metadata={"hints": {"dimensions": [[["tth"], "primary"]]}, "num_points": n_planned})
    desc = run.compose_descriptor(
        name="primary", data_keys={"tth": NUM, "det": NUM}, hints={"det": {"fields": ["det"]}}
    )
    docs = [("start", run.start_doc), ("descriptor", desc.descriptor_doc)]
    if n_taken:
        docs.append(
            (
                "event_page",
                desc.compose_event_page(
                    data={"tth": two_theta, "det": counts},
                    timestamps={"tth": two_theta * 0, "det": counts * 0},
                    seq_num=list(range(1, n_taken + 1)),
                    time=list(two_theta * 0),
                ),
            )
        )
    docs.append(("stop", run.compose_stop(exit_status=exit_status)))
    return docs


def _collect(docs):
    from xrd_strain_plugin.bluesky.collector import RunCollector

    out = []
    collector = RunCollector(plan_from_start(docs[0][1], RockingCurveConfig()), out.append)
    for name, doc in docs:
        collector(name, doc)
    return out


def test_a_run_stopped_before_its_planned_points_is_inverted_and_marked_partial(inverter):
    from xrd_strain_plugin.bluesky.records import record_from_job

    (full,) = _collect(_stopped_run(261, 261))
    assert full.partial is None and full.planned_points == 261
    assert record_from_job(full, inverter).status == "ok"

    (job,) = _collect(_stopped_run(261, 230))  # RE.stop() past the Bragg peak: exit status 'success'
    assert job.partial == "run stopped after 230 of 261 planned points"
    record = record_from_job(job, inverter)
    assert record.status == "partial" and record.metadata["reason"] == job.partial
    assert record.metadata["n_points"] == 230 and record.metadata["planned_points"] == 261
    assert record.arrays["intensity_measured"].shape == (230,)  # still inverted: the curve holds enough

    (short,) = _collect(_stopped_run(261, 120))  # stopped before the Bragg peak: rejected, saying both
    rejected = record_from_job(short, inverter)
    assert rejected.status == "rejected"
    assert rejected.metadata["reason"].startswith("run stopped after 120 of 261 planned points: the scan")
    assert "does not contain the Bragg peak" in rejected.metadata["reason"]

    (aborted,) = _collect(_stopped_run(261, 120, exit_status="abort"))  # an abort stays an abort
    assert aborted.status == "aborted"


def test_planned_points_come_from_the_start_document_only_when_it_says():
    assert plan_from_start(start([[["omega"], "primary"]], num_points=41), RockingCurveConfig()).num_points == 41
    for bad in (None, "41", 0, -3, True, float("nan")):
        assert plan_from_start(start([[["omega"], "primary"]], num_points=bad), RockingCurveConfig()).num_points is None
