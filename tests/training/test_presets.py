"""Presets reproduce the paper's Table 1 and refuse inconsistent ranges."""

import pytest

from xrd_strain_training.presets import PRESETS, Preset, get_preset


def test_table_1_ranges():
    # Boulle & Debelle 2023, Table 1.
    assert PRESETS["CNN1"].thickness_nm == (50.0, 1000.0)
    assert PRESETS["CNN1"].strain_max_percent == (0.2, 8.0)
    assert PRESETS["CNN1"].dw_min == (0.001, 1.0)
    assert PRESETS["CNN2"].thickness_nm == (100.0, 1000.0)
    assert PRESETS["CNN2"].strain_max_percent == (0.5, 8.0)
    assert PRESETS["CNN2"].dw_min == (0.05, 1.0)
    assert PRESETS["CNN3"].strain_max_percent == (0.5, 2.0)
    for name in ("CNN1", "CNN2", "CNN3"):
        preset = PRESETS[name]
        assert preset.resolution_fwhm_deg == (0.003, 0.1)
        assert preset.log10_background == (0.0, 2.0)
        assert preset.log10_scale == (3.0, 7.0)
        assert preset.dynamic_range == (3.0, 6.0)
        assert preset.step_deg == 0.005
        assert len(preset.label_names) == 14


def test_published_recipe_presets():
    # The published generator (issue 9): background 10**U(0, 1.7), pseudo-Voigt eta 0.001.
    for name, table in (("CNN2-PAPER", "CNN2"), ("CNN3-PAPER", "CNN3")):
        preset = PRESETS[name]
        assert preset.paper_fraction == 1.0 and preset.log10_background == (0.0, 1.7)
        assert preset.resolution_shape == "pseudo-voigt" and preset.resolution_eta == 0.001
        assert preset.thickness_nm == PRESETS[table].thickness_nm
        assert preset.strain_max_percent == PRESETS[table].strain_max_percent
        assert preset.resolution_fwhm_deg == (0.003, 0.1) and preset.log10_scale == (3.0, 7.0)
    superset = PRESETS["CNN2-SUPERSET"]
    assert 0 < superset.paper_fraction < 1 and len(superset.strain_shapes) == 3
    # v1 fields only at their defaults: the dict (manifests, cards) is the v1 one
    assert "paper_fraction" not in PRESETS["CNN2"].to_dict()
    assert Preset.from_dict(superset.to_dict()) == superset


def test_round_trip_through_dict():
    preset = get_preset("cnn2", strain_shapes=("asymmetric_gaussian", "flat"), background="sloped")
    assert Preset.from_dict(preset.to_dict()) == preset
    assert preset.name.startswith("CNN2+")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(thickness_nm=(500.0, 100.0)), "not ordered"),
        (dict(dw_min=(0.0, 1.0)), "dw_min"),
        (dict(strain_shapes=("triangle",)), "unknown strain shapes"),
        (dict(noise="laplace"), "noise"),
        (dict(paper_fraction=1.5), "paper_fraction"),
        (dict(resolution_shape="lorentz"), "resolution_shape"),
    ],
)
def test_bad_options_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        get_preset("CNN2", **change)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="CNN1"):
        get_preset("CNN9")
