"""Presets reproduce the paper's Table 1 and refuse inconsistent ranges."""

import pytest

from training.presets import PRESETS, Preset, get_preset


def test_table_1_ranges():
    # Boulle & Debelle 2023, Table 1.
    assert PRESETS["CNN1"].thickness_nm == (50.0, 1000.0)
    assert PRESETS["CNN1"].strain_max_percent == (0.2, 8.0)
    assert PRESETS["CNN1"].dw_min == (0.001, 1.0)
    assert PRESETS["CNN2"].thickness_nm == (100.0, 1000.0)
    assert PRESETS["CNN2"].strain_max_percent == (0.5, 8.0)
    assert PRESETS["CNN2"].dw_min == (0.05, 1.0)
    assert PRESETS["CNN3"].strain_max_percent == (0.5, 2.0)
    for preset in PRESETS.values():
        assert preset.resolution_fwhm_deg == (0.003, 0.1)
        assert preset.log10_background == (0.0, 2.0)
        assert preset.log10_scale == (3.0, 7.0)
        assert preset.dynamic_range == (3.0, 6.0)
        assert preset.step_deg == 0.005
        assert len(preset.label_names) == 14


def test_round_trip_through_dict():
    preset = get_preset("cnn2", strain_shapes=("asymmetric_gaussian", "flat"), background="sloped")
    assert Preset.from_dict(preset.to_dict()) == preset
    assert preset.name.startswith("CNN2+")


@pytest.mark.parametrize("change, message", [
    (dict(thickness_nm=(500.0, 100.0)), "not ordered"),
    (dict(dw_min=(0.0, 1.0)), "dw_min"),
    (dict(strain_shapes=("triangle",)), "unknown strain shapes"),
    (dict(noise="laplace"), "noise"),
])
def test_bad_options_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        get_preset("CNN2", **change)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="CNN1"):
        get_preset("CNN9")
