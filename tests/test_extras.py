"""The optional dependency groups of pyproject.toml install what each feature imports.

Each feature runs for real in a fresh interpreter that can import only the distributions its
extra (plus the core dependencies) installs, resolved through the installed packages' own
requirements: an import outside that set fails as it would in a venv made with only that extra.
The fast test checks the declarations themselves (no unused dependency, no cap of a transitive
dependency in the package's metadata, the Tiled range the code was tested with).
"""

from __future__ import annotations

import importlib.metadata as md
import pathlib
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DATA = REPO.parent / "shared" / "data" / "ysz_400_irradiated.xy"


def closure(extras: tuple[str, ...]) -> set[str]:
    """Canonical names of every distribution ``pip install xrd-strain[extras]`` installs."""

    def wanted(req: Requirement, parent_extras=()) -> bool:
        return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *parent_extras))

    todo = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        todo += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in todo if wanted(r)]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        name, req_extras = todo.pop()
        if name == "xrd-strain":
            for e in req_extras:
                todo += [
                    (canonicalize_name(r.name), frozenset(r.extras))
                    for r in map(Requirement, PROJECT["optional-dependencies"][e])
                    if wanted(r)
                ]
            continue
        if (name, req_extras) in seen:
            continue
        seen.add((name, req_extras))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # not for this platform
        todo += [
            (canonicalize_name(r.name), frozenset(r.extras))
            for r in map(Requirement, requires)
            if wanted(r, req_extras)
        ]
    return {name for name, _ in seen}


#: A fresh interpreter that can import only the allowed distributions' top-level modules.
GUARD = """
import importlib.metadata as md, sys, runpy
allowed = set(sys.argv[1].split(","))
for top, dists in md.packages_distributions().items():
    if top in sys.stdlib_module_names or top in ("xrd_strain_plugin", "training", "flows", "tests"):
        continue
    if not {d.lower().replace("_", "-").replace(".", "-") for d in dists} & allowed:
        sys.modules[top] = None  # as if not installed: import raises, importlib.util.find_spec says None
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def run_alone(extras, module, *args, timeout=600, tmp_path=None):
    allowed = closure(extras) | {"xrd-strain"}
    out = subprocess.run(
        [sys.executable, "-c", GUARD, ",".join(sorted(allowed)), module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path or REPO,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def test_the_declarations_name_no_unused_dependency_and_no_transitive_cap():
    opt = PROJECT["optional-dependencies"]
    every = [Requirement(r) for group in opt.values() for r in group] + [
        Requirement(r) for r in PROJECT["dependencies"]
    ]
    names = {canonicalize_name(r.name) for r in every}
    assert "databroker" not in names  # bluesky-tiled-plugins holds BlueskyRun itself
    assert "fastapi" not in names  # a cap for prefect's server lives in requirements.lock, not here
    (tiled,) = [r for r in every if canonicalize_name(r.name) == "tiled" and "all" in r.extras]
    assert tiled.specifier.contains(md.version("tiled")) and not tiled.specifier.contains("0.1.0b20")
    assert not tiled.specifier.contains("0.3.0")
    # Every flows import is installed by the flows extra (h5py and keras for retraining, tiled for refinement).
    assert {"h5py", "keras", "tiled", "prefect"} <= closure(("flows",))
    assert "prefect" not in closure(("live",)) and "bluesky" not in closure(("flows",))


@pytest.mark.slow
def test_the_core_alone_simulates_and_refines(tmp_path):
    out = tmp_path / "c.csv"
    run_alone(
        (),
        "xrd_strain_plugin.cli",
        "simulate",
        "--two-theta-deg",
        "72.6",
        "73.9",
        "0.01",
        "--profile",
        str(REPO / "docs/examples/profile_ysz_400.csv"),
        "--resolution-fwhm-deg",
        "0.01",
        "--out",
        str(out),
    )
    assert out.read_text().startswith("two_theta_deg,intensity")


@pytest.mark.slow
def test_the_ml_extra_alone_inverts_a_measured_curve(tmp_path):
    out = run_alone(
        ("ml",),
        "xrd_strain_plugin.cli",
        "invert",
        str(DATA),
        "--material",
        "YSZ",
        "--hkl",
        "4",
        "0",
        "0",
        "--wavelength-angstrom",
        "1.5406",
        "--out",
        str(tmp_path / "inv"),
    )
    assert any(tmp_path.glob("inv*")), out.stdout


@pytest.mark.slow
def test_the_live_extra_alone_runs_the_demo(tmp_path):
    run_alone(("live",), "xrd_strain_plugin.cli", "demo", "--out", str(tmp_path), "--samples", "1", "--no-refine")
    assert (tmp_path / "demo_live.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_flows_extra_alone_imports_every_flow_and_builds_the_deployments(tmp_path):
    script = tmp_path / "runpy_target.py"
    script.write_text(
        "import xrd_strain_flows.regenerate, xrd_strain_flows.retrain, xrd_strain_flows.refine, xrd_strain_training.train, xrd_strain_training.networks\n"
        "from xrd_strain_flows.deployments import FlowSettings, Schedules, build_deployments\n"
        "d = build_deployments(FlowSettings(data_root='/d', tiled_url='http://t/api/v1'), Schedules())\n"
        "assert len(d) == 3, d\n"
        "from xrd_strain_plugin.tiled.refinement import claim_refinement\n"
    )
    run_alone(("flows",), "runpy_target", tmp_path=tmp_path)


def test_the_guard_refuses_what_an_extra_does_not_install():
    out = subprocess.run(
        [sys.executable, "-c", GUARD, ",".join(sorted(closure(("live",)))), "prefect"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "No module named prefect" in out.stderr, out.stderr[-2000:]
