"""Light imports stay light, and imports point inward: the rule each room follows (docs/architecture.md)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import xrd_strain_plugin

HEAVY = ("tensorflow", "keras", "bluesky", "tiled", "prefect", "ophyd", "torch", "jax")
PHYSICS_DIR = Path(xrd_strain_plugin.__file__).parent / "physics"
# Every module of the physics core, found on disk so that new ones are covered too.
PHYSICS_MODULES = ["xrd_strain_plugin.physics"] + sorted(
    f"xrd_strain_plugin.physics.{path.stem}" for path in PHYSICS_DIR.glob("*.py") if path.stem != "__init__"
)
LIGHT_EDGE_MODULES = ["xrd_strain_plugin.io", "xrd_strain_plugin.cli", "xrd_strain_plugin.reflection_cache"]

PROBE = """
import json, sys
{statement}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})))
"""


def heavy_modules_loaded_by(statement):
    """Run ``statement`` in a fresh interpreter and list the heavy packages it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, statement=statement)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_physics_core_has_modules():
    # Guards the glob above: an empty list would make the next test vacuous.
    assert {"xrd_strain_plugin.physics.profiles", "xrd_strain_plugin.physics.qspace"} <= set(PHYSICS_MODULES)


@pytest.mark.parametrize("module", PHYSICS_MODULES + LIGHT_EDGE_MODULES)
def test_import_loads_no_ml_or_adapter_stack(module):
    assert heavy_modules_loaded_by(f"import {module}") == []


def test_cli_help_loads_no_ml_or_adapter_stack():
    """Building the parser imports every command module: they must import heavy stacks lazily."""
    statement = "from xrd_strain_plugin.cli import build_parser; build_parser()"
    assert heavy_modules_loaded_by(statement) == []


# ---- the import rules, read from the source (lazy imports inside functions included) ---------------------
ROOT = Path(xrd_strain_plugin.__file__).resolve().parents[1]
FIRST_PARTY = ("xrd_strain_plugin", "xrd_strain_training", "xrd_strain_flows")
#: Installed package name -> its directory in the tree (pyproject.toml's package-dir).
PACKAGE_DIRS = {"xrd_strain_training": "training", "xrd_strain_flows": "flows"}
#: What each room may import from the project (besides itself, xrd_strain_plugin's __version__ and io) and which
#: third-party stacks it must never load. The arrows point inward: physics <- refinement, inference <- adapters.
RULES = {
    "xrd_strain_plugin.physics": (
        {"xrd_strain_plugin.physics"},
        ("tensorflow", "keras", "bluesky", "tiled", "prefect", "ophyd", "torch", "jax"),
    ),
    "xrd_strain_plugin.refinement": (
        {"xrd_strain_plugin.physics"},
        ("tensorflow", "keras", "bluesky", "tiled", "prefect"),
    ),
    # inference never imports refinement: both stand on physics (curve, misfit, profiles, bragg)
    "xrd_strain_plugin.inference": ({"xrd_strain_plugin.physics"}, ("bluesky", "tiled", "prefect")),
    # the edge that keeps the physics core's reflections on disk (the core itself writes no file)
    "xrd_strain_plugin.reflection_cache": (
        {"xrd_strain_plugin.physics"},
        ("tensorflow", "keras", "bluesky", "tiled", "prefect", "ophyd", "torch", "jax"),
    ),
    "xrd_strain_plugin.tiled": (
        {"xrd_strain_plugin.physics", "xrd_strain_plugin.refinement", "xrd_strain_plugin.reflection_cache"},
        ("bluesky", "tensorflow", "keras", "prefect"),
    ),
    "xrd_strain_plugin.bluesky": (
        {
            "xrd_strain_plugin.physics",
            "xrd_strain_plugin.inference",
            "xrd_strain_plugin.refinement",
            "xrd_strain_plugin.reflection_cache",
            "xrd_strain_plugin.tiled",
        },
        ("prefect",),
    ),
    # training builds the refinement's proposal library (training/library.py), so it may use refinement
    "xrd_strain_training": (
        {
            "xrd_strain_plugin.physics",
            "xrd_strain_plugin.inference",
            "xrd_strain_plugin.refinement",
            "xrd_strain_plugin.reflection_cache",
        },
        ("bluesky", "tiled", "prefect"),
    ),
    "xrd_strain_flows": (
        {
            "xrd_strain_plugin.physics",
            "xrd_strain_plugin.inference",
            "xrd_strain_plugin.refinement",
            "xrd_strain_plugin.reflection_cache",
            "xrd_strain_plugin.tiled",
            "xrd_strain_training",
        },
        ("bluesky", "ophyd"),
    ),
}
NEUTRAL = {
    "xrd_strain_plugin",
    "xrd_strain_plugin.io",
    "xrd_strain_plugin.results",
}  # __version__; files; result shapes
#: bluesky reaches tiled only through these modules and names, never through its internals: the collaborators
#: the live service builds in its from_uri conveniences (the result shapes are in the neutral
#: xrd_strain_plugin.results, which both adapters import). Anything else (another module, a private name) is sideways.
BLUESKY_MAY_USE_FROM_TILED = {
    "xrd_strain_plugin.tiled.records": {"record_from_result"},
    "xrd_strain_plugin.tiled.spool": {"Spool", "SpoolingPublisher"},
    "xrd_strain_plugin.tiled.writer": {"TiledResultsWriter", "check_credentials"},
    # the one claim -> refine -> write/fail step (shared with the flow), and the release of a cut claim
    "xrd_strain_plugin.tiled.refinement": {"claim_and_refine", "release_refinement"},
}


def _room(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "xrd_strain_plugin" else parts[0]


def imports_of(room: str):
    """(importing module, imported module, names) for every import statement under a room, relative ones resolved."""
    top, *rest = room.split(".")
    directory = ROOT.joinpath(PACKAGE_DIRS.get(top, top), *rest)
    paths = sorted(directory.rglob("*.py")) if directory.is_dir() else [directory.with_suffix(".py")]
    for path in paths:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        parts[0] = {v: k for k, v in PACKAGE_DIRS.items()}.get(parts[0], parts[0])
        package = parts[:-1]  # the package a relative import starts from (for __init__ too)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name, ()
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                yield module, target, tuple(alias.name for alias in node.names)


@pytest.mark.parametrize("module", sorted(NEUTRAL - {"xrd_strain_plugin"}))
def test_the_neutral_modules_stand_on_nothing_of_the_project(module):
    # io (plain-text files) and results (the result shapes both adapters share) sit below every room:
    # they may take the package's __version__, nothing else of the project, and no adapter or ML stack.
    wrong = [
        f"{target}"
        for _, target, _ in imports_of(module)
        if (target.split(".")[0] in FIRST_PARTY and target != "xrd_strain_plugin") or target.split(".")[0] in HEAVY
    ]
    assert wrong == []


def test_the_rule_scanner_sees_lazy_and_relative_imports():
    found = {(target, names) for _, target, names in imports_of("xrd_strain_plugin.physics")}
    assert ("xrd_strain_plugin.physics.bragg", ("fringe_period_two_theta_deg", "layer_peak_two_theta_deg")) in found
    assert any(target == "xrd_strain_plugin.bluesky.simulated" for _, target, _ in imports_of("xrd_strain_plugin.cli"))


@pytest.mark.parametrize("room", sorted(RULES))
def test_imports_point_inward(room):
    allowed, forbidden_stacks = RULES[room]
    wrong = []
    for module, target, _ in imports_of(room):
        top = target.split(".")[0]
        if top in forbidden_stacks:
            wrong.append(f"{module} imports {target}")
        elif top in FIRST_PARTY and _room(target) not in allowed | {room} | NEUTRAL:
            wrong.append(f"{module} imports {target}")
    assert wrong == []


#: What reading the environment or writing a file looks like in source: the physics core does neither
#: (xrd_strain_plugin.reflection_cache keeps reflections on disk at the edge). Names of the os module, methods
#: that only write (Path.write_text ...), and the builtin open; str.replace or dataclasses.replace stay allowed.
IMPURE_OS = {"environ", "environb", "getenv", "putenv", "unsetenv", "replace", "rename", "makedirs", "mkdir", "remove"}
IMPURE_METHODS = {"write_text", "write_bytes", "mkdir", "touch", "unlink", "tofile"}


def _impure(node) -> str | None:
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "os" and node.attr in IMPURE_OS:
            return f"os.{node.attr}"
        if node.attr in IMPURE_METHODS:
            return f".{node.attr}"
    if isinstance(node, ast.ImportFrom) and node.module == "os":
        hits = [alias.name for alias in node.names if alias.name in IMPURE_OS]
        return f"from os import {', '.join(hits)}" if hits else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
        return "open()"
    return None


def test_the_physics_core_reads_no_environment_and_writes_no_file():
    impure = []
    for path in sorted(PHYSICS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            what = _impure(node)
            if what is not None:
                impure.append(f"{path.name}:{node.lineno} {what}")
    assert impure == []


def test_the_purity_check_sees_environment_reads_and_writes():
    # Guards the check above: the code the reflection cache used to hold in materials.py is caught.
    source = "import os\nroot = os.environ.get('X')\npath.parent.mkdir()\nos.replace(tmp, path)\nopen(p, 'w')\n"
    found = sorted(_impure(n) for n in ast.walk(ast.parse(source)) if _impure(n))
    assert found == [".mkdir", "open()", "os.environ", "os.replace"]


def test_inference_never_imports_refinement_even_at_run_time():
    statement = (
        "import xrd_strain_plugin.inference, xrd_strain_plugin.inference.invert, xrd_strain_plugin.inference.registry"
    )
    probe = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('xrd_strain_plugin.refinement')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bluesky_reaches_tiled_only_through_its_declared_surface():
    sideways = []
    for module, target, names in imports_of("xrd_strain_plugin.bluesky"):
        if _room(target) != "xrd_strain_plugin.tiled":
            continue
        may = BLUESKY_MAY_USE_FROM_TILED.get(target)
        if may is None or not set(names) <= may or any(name.startswith("_") for name in names):
            sideways.append(f"{module}: from {target} import {', '.join(names) or '*'}")
    assert sideways == []


def test_every_package_in_the_tree_is_installed_under_a_name_that_cannot_collide():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == PACKAGE_DIRS
    on_disk = set()
    for init in ROOT.glob("*/**/__init__.py"):
        parts = list(init.parent.relative_to(ROOT).parts)
        if parts[0] in ("tests", "benchmarks", "docs", "deploy") or parts[0].startswith("."):
            continue
        parts[0] = {v: k for k, v in PACKAGE_DIRS.items()}.get(parts[0], parts[0])
        on_disk.add(".".join(parts))
    assert on_disk == set(config["packages"])
    assert all(name.startswith("xrd_strain_") for name in on_disk)
