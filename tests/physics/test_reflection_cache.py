"""The on-disk cache of built-in reflections returns exactly the computed constants."""

import dataclasses

import pytest

from xrd_strain_plugin.physics import materials


def test_cached_reflection_equals_the_computed_one(tmp_path, monkeypatch):
    monkeypatch.setenv(materials.CACHE_ENV, str(tmp_path))
    fresh = materials._compute_reflection("YSZ", (4, 0, 0), 1.5406)
    materials.make_reflection.cache_clear()
    first = materials.make_reflection("YSZ", (4, 0, 0), 1.5406)  # computes, writes the entry
    files = list((tmp_path / "reflections").glob("YSZ-4_0_0-1.5406-*.json"))
    assert len(files) == 1
    materials.make_reflection.cache_clear()
    again = materials.make_reflection("YSZ", (4, 0, 0), 1.5406)  # read from disk
    assert dataclasses.asdict(again) == dataclasses.asdict(first) == dataclasses.asdict(fresh)
    # a corrupt entry is recomputed, not trusted
    files[0].write_text("{not json")
    materials.make_reflection.cache_clear()
    assert dataclasses.asdict(materials.make_reflection("YSZ", (4, 0, 0), 1.5406)) == dataclasses.asdict(fresh)
    materials.make_reflection.cache_clear()


def test_cache_off_and_cif_files_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(materials.CACHE_ENV, "off")
    assert materials._disk_cache_path("YSZ", (4, 0, 0), 1.5406) is None
    monkeypatch.setenv(materials.CACHE_ENV, str(tmp_path))
    assert materials._disk_cache_path(str(tmp_path / "x.cif"), (1, 1, 1), 1.5406) is None
    with pytest.raises(materials.MaterialError, match="hkl"):
        materials.make_reflection("YSZ", (0, 0, 0), 1.5406)
