"""Light imports stay light: the physics core never pulls in ML or adapter stacks."""

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
    f"xrd_strain_plugin.physics.{path.stem}" for path in PHYSICS_DIR.glob("*.py")
    if path.stem != "__init__"
)
LIGHT_EDGE_MODULES = ["xrd_strain_plugin.io", "xrd_strain_plugin.cli"]

PROBE = """
import json, sys
{statement}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r})))
"""


def heavy_modules_loaded_by(statement):
    """Run ``statement`` in a fresh interpreter and list the heavy packages it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, statement=statement)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_physics_core_has_modules():
    # Guards the glob above: an empty list would make the next test vacuous.
    assert {"xrd_strain_plugin.physics.profiles", "xrd_strain_plugin.physics.qspace"} <= set(
        PHYSICS_MODULES
    )


@pytest.mark.parametrize("module", PHYSICS_MODULES + LIGHT_EDGE_MODULES)
def test_import_loads_no_ml_or_adapter_stack(module):
    assert heavy_modules_loaded_by(f"import {module}") == []


def test_cli_help_loads_no_ml_or_adapter_stack():
    """Building the parser imports every command module: they must import heavy stacks lazily."""
    statement = "from xrd_strain_plugin.cli import build_parser; build_parser()"
    assert heavy_modules_loaded_by(statement) == []
