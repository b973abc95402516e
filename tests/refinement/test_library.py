"""The proposal library: nearest curves by an independent brute-force ranking, profiles decoded as the
network's answers are, a file that round-trips or names its damage, and proposals the search uses."""

import math

import numpy as np
import pytest

from xrd_strain_plugin.inference.labels import decode_labels, strain_max_percent
from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.curve import Curve
from xrd_strain_plugin.physics.instrument import apply_counts, simulate_scan
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.physics.qspace import ModelGrid, to_model_input
from xrd_strain_plugin.refinement import RefineOptions, refine_curve
from xrd_strain_plugin.refinement.library import ProposalLibrary, library_features

GRID = ModelGrid(strain_min=-0.01, strain_max=0.03, n_points=401)


@pytest.fixture(scope="module")
def ysz():
    return make_reflection("YSZ", (4, 0, 0), 1.5406)


@pytest.fixture(scope="module")
def scan(ysz):
    return np.arange(ysz.two_theta_bragg_deg - 2.2, ysz.two_theta_bragg_deg + 0.4, 0.005)


def _labels(rng, n):
    """Paper-style labels: 10 smooth non-negative weights (percent), DW_min, t, H, DR."""
    z = (np.arange(10) + 0.5) / 10
    rows = []
    for _ in range(n):
        centre, width, e_max = rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3), rng.uniform(0.5, 2.0)
        w = e_max * np.exp(-0.5 * ((z - centre) / width) ** 2)
        rows.append([*w, rng.uniform(0.3, 1.0), rng.uniform(150, 700), 0.01, 4.0])
    return np.array(rows)


def _curves(labels, ysz, scan):
    strain = profiles.strain_from_weights(labels[:, :10], strain_max_percent(labels[:, :10], 200) / 100, 200)
    dw = profiles.dw_coupled(strain, strain.max(axis=1), labels[:, 10])
    return simulate_scan(scan, strain, dw, labels[:, 11], ysz, resolution_fwhm_deg=0.01)


@pytest.fixture(scope="module")
def library(ysz, scan):
    labels = _labels(np.random.default_rng(0), 24)
    x = to_model_input(
        scan,
        _curves(labels, ysz, scan),
        wavelength_angstrom=1.5406,
        q_bragg_inv_angstrom=ysz.q_bragg_inv_angstrom,
        grid=GRID,
    )
    lib = ProposalLibrary.build(
        x, labels, grid=GRID, d_spacing_angstrom=ysz.d_spacing_angstrom, wavelength_angstrom=1.5406, n_components=24
    )
    return lib, x, labels


def test_the_ranking_is_the_brute_force_one(library, ysz, scan):
    # With every principal component kept, the projection drops only a component orthogonal to all
    # library curves: distances to them shift by one constant, so the order is that of the full features.
    lib, x, _ = library
    queries = to_model_input(
        scan,
        _curves(_labels(np.random.default_rng(1), 5), ysz, scan),
        wavelength_angstrom=1.5406,
        q_bragg_inv_angstrom=ysz.q_bragg_inv_angstrom,
        grid=GRID,
    )
    brute = np.linalg.norm(library_features(queries)[:, None, :] - library_features(x)[None], axis=2)
    np.testing.assert_array_equal(lib.nearest_indices(queries, 6), np.argsort(brute, axis=1)[:, :6])


def test_a_library_curve_with_noise_finds_its_own_profile(library, ysz, scan):
    lib, _, labels = library
    j = 7
    counts = apply_counts(
        _curves(labels[j : j + 1], ysz, scan), scale=1e5, background=2.0, rng=np.random.default_rng(3)
    )[0]
    proposals = lib.nearest(Curve.measured(scan, counts, ysz), k=3)
    assert proposals[0].source == f"library[{j}]"
    # decoded as the network's labels are (inference.labels.decode_labels: an independent path)
    ref = decode_labels(labels[j : j + 1], n_weights=10, n_slices=200)
    assert proposals[0].thickness_nm == pytest.approx(labels[j, 11])
    assert proposals[0].strain_percent.max() == pytest.approx(
        float(ref.strain_max_percent[0]), rel=1e-6
    )  # float32 labels
    assert proposals[0].debye_waller.min() == pytest.approx(labels[j, 10], rel=1e-3)
    assert proposals[0].strain_percent[-1] == pytest.approx(0.0, abs=1e-3 * labels[j, :10].max())


def test_the_file_round_trips_and_a_damaged_one_is_named(library, tmp_path, ysz):
    lib = library[0]
    path = lib.save(tmp_path / "library.npz")
    again = ProposalLibrary.load(path)
    np.testing.assert_array_equal(again.coords, lib.coords)
    np.testing.assert_array_equal(again.labels, lib.labels)
    assert again.grid == GRID and again.matches(ysz)
    assert not again.matches(make_reflection("YSZ", (4, 0, 0), 1.5498))  # another wavelength
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="bad.npz: not a proposal library"):
        ProposalLibrary.load(bad)


@pytest.mark.slow  # one full search (~15 CPU s)
def test_the_search_screens_the_library_proposals(library, ysz):
    # A buried peak, with the true profile among the library's proposals: the search screens it
    # (the stage log counts it) and answers the truth, or reports ambiguity with the truth among
    # the alternatives (the accuracy criteria: depth of the maximum within 0.1 t, e_max and t 10 %).
    from tests.refinement.test_search import _as_answer, _close

    lib, _, _ = library
    truth = np.array([[0.0, 0.02, 0.1, 0.3, 0.7, 1.1, 1.3, 1.1, 0.5, 0.1, 0.5, 420.0, 0.01, 4.0]])
    tt = np.arange(ysz.two_theta_bragg_deg - 1.6, ysz.two_theta_bragg_deg + 0.3, 0.004)
    counts = apply_counts(_curves(truth, ysz, tt), scale=3e5, background=2.0, rng=np.random.default_rng(5))[0]
    proposals = list(lib.nearest(Curve.measured(tt, counts, ysz), k=4)) + list(_true_start(truth))
    alone = refine_curve(tt, counts, ysz, start=None, options=RefineOptions())
    result = refine_curve(tt, counts, ysz, start=None, proposals=proposals, options=RefineOptions())
    screened = {s["stage"]: s for s in result.stages}["proposals"]["proposals"]
    assert screened > {s["stage"]: s for s in alone.stages}["proposals"]["proposals"]
    dec = decode_labels(truth, n_weights=10, n_slices=200)
    t_true = float(truth[0, 11])
    want = (t_true, float(np.argmax(dec.strain[0]) + 0.5) / 200 * t_true, float(dec.strain_max_percent[0]))
    answers = [_as_answer(result)] + list(result.alternatives)
    assert _close(answers[0], *want) or (result.ambiguous and any(_close(a, *want) for a in answers[1:])), answers
    assert math.isfinite(result.sigma_i)


def _true_start(truth):
    from xrd_strain_plugin.refinement import StartProfile

    depth, strain, dw = profiles.depth_table(
        truth[0, :10], thickness_nm=float(truth[0, 11]), dw_min=float(truth[0, 10]), n_depth=201
    )
    yield StartProfile(depth_nm=depth, strain_percent=strain, debye_waller=dw, fwhm_deg=0.01, source="truth")
