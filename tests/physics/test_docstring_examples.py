"""The runnable examples in the physics docstrings stay true."""

import doctest

import pytest

import xrd_strain_plugin.physics as physics
from xrd_strain_plugin.physics import bragg, curve, materials


@pytest.mark.parametrize("module", [physics, materials, bragg, curve])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
