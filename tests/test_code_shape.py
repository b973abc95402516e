"""The shape the redesign left (issue 17): no function in package code over 100 lines, docstring included."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("xrd_strain_plugin", "training", "flows")
LIMIT = 100


def test_no_function_in_package_code_is_over_100_lines():
    long = []
    for top in PACKAGE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > LIMIT:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_the_scan_sees_functions():
    # guards the walk above: an empty tree would make the first test vacuous
    found = {
        node.name
        for node in ast.walk(ast.parse((ROOT / "xrd_strain_plugin/refinement/refine.py").read_text()))
        if isinstance(node, ast.FunctionDef)
    }
    assert "refine_curve" in found
