"""The on-disk cache of built-in reflections (xrd_strain_plugin.reflection_cache) returns exactly the
constants the pure physics core computes, and the core itself stays free of files and environment."""

import dataclasses

import pytest

from xrd_strain_plugin import reflection_cache
from xrd_strain_plugin.physics import materials


def test_a_reflection_round_trips_through_plain_data_exactly():
    # JSON keeps a float's 17 significant digits: the cache must not perturb the simulator's constants.
    import json

    fresh = materials.make_reflection("YSZ", (4, 0, 0), 1.5406)
    again = materials.Reflection.from_dict(json.loads(json.dumps(fresh.to_dict())))
    assert again == fresh
    assert dataclasses.asdict(again) == dataclasses.asdict(fresh)


def test_cached_reflection_equals_the_computed_one(tmp_path, monkeypatch):
    monkeypatch.setenv(reflection_cache.CACHE_ENV, str(tmp_path))
    reflection_cache._cached.cache_clear()
    fresh = materials._compute_reflection("YSZ", (4, 0, 0), 1.5406)
    first = reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406)  # computes, writes the entry
    files = list((tmp_path / "reflections").glob("YSZ-4_0_0-1.5406-*.json"))
    assert len(files) == 1
    reflection_cache._cached.cache_clear()
    again = reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406)  # read from disk
    assert dataclasses.asdict(again) == dataclasses.asdict(first) == dataclasses.asdict(fresh)
    # a corrupt entry is recomputed, not trusted
    files[0].write_text("{not json")
    reflection_cache._cached.cache_clear()
    assert dataclasses.asdict(reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406)) == dataclasses.asdict(fresh)
    reflection_cache._cached.cache_clear()


def test_an_entry_is_read_without_computing(tmp_path, monkeypatch):
    # The point of the cache: a warm entry needs no xrayutilities (about 1.7 s of a CLI call's start-up).
    fresh = materials.make_reflection("YSZ", (4, 0, 0), 1.5406)
    reflection_cache._cached.cache_clear()
    reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406, directory=tmp_path)
    reflection_cache._cached.cache_clear()

    def refuse(*args):
        raise AssertionError("computed although the entry was on disk")

    monkeypatch.setattr(materials, "make_reflection", refuse)
    assert reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406, directory=tmp_path) == fresh
    reflection_cache._cached.cache_clear()


def test_cache_off_and_cif_files_are_not_cached(tmp_path):
    assert reflection_cache.cache_directory({reflection_cache.CACHE_ENV: "off"}) is None
    assert reflection_cache.cache_directory({reflection_cache.CACHE_ENV: str(tmp_path)}) == tmp_path
    assert reflection_cache.cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "xrd-strain"
    assert reflection_cache.cache_path("YSZ", (4, 0, 0), 1.5406, directory=None) is None
    assert reflection_cache.cache_path(str(tmp_path / "x.cif"), (1, 1, 1), 1.5406, directory=tmp_path) is None
    with pytest.raises(materials.MaterialError, match="hkl"):
        reflection_cache.cached_reflection("YSZ", (0, 0, 0), 1.5406, directory=tmp_path)
    assert not (tmp_path / "reflections").exists()  # a refused request touches no file


def test_invert_on_a_warm_cache_never_imports_xrayutilities(tmp_path):
    # The reason the cache exists: `xrd-strain invert` starts without the ~1.7 s xrayutilities import,
    # both for the data's reflection (cli.options.reflection_of) and for the model's (Inverter(reflections=)).
    import subprocess
    import sys
    from pathlib import Path

    real = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ysz_400_irradiated.xy"
    assert real.is_file(), real  # shared/ sits beside the checkout, in CI too
    reflection_cache.cached_reflection("YSZ", (4, 0, 0), 1.5406, directory=tmp_path)  # warm
    probe = (
        "import sys; from xrd_strain_plugin.cli import main; "
        f"status = main(['invert', {str(real)!r}, '--material', 'YSZ', '--hkl', '4', '0', '0', "
        f"'--wavelength-angstrom', '1.5406', '--out', {str(tmp_path / 'out')!r}, '--no-plot']); "
        "print(status, 'xrayutilities' in sys.modules)"
    )
    env = {**__import__("os").environ, reflection_cache.CACHE_ENV: str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 False", proc.stdout + proc.stderr
