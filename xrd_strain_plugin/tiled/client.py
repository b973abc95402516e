"""Tiled's client for a result node (spec ``xrd_strain_result``), registered as an entry point.

With the package installed, ``from_uri(url)["results"][uid]`` *is* a :class:`ResultNode`: a
Tiled ``Container`` (everything Tiled offers still works: ``node["profile"].read()``,
``node.metadata``, searching) with the result's own vocabulary on top. It reads every layout
version (1-3) with today's names and units.

Examples
--------
>>> from tiled.client import from_uri  # doctest: +SKIP
>>> node = from_uri("http://tiled-host:8000")["results"][uid]  # doctest: +SKIP
>>> node.profile()  # doctest: +SKIP
     depth_nm  strain_percent  debye_waller
0       1.25          1.9231        0.6213
...
>>> node.units["strain_percent"], node.figures["strain_max_percent"]  # doctest: +SKIP
('percent', 1.98)
"""

from __future__ import annotations

from tiled.client.container import Container

from xrd_strain_plugin.results import TABLES, UNITS


class ResultNode(Container):
    """One inverted curve: its status, figures, units, depth profile and curves."""

    @property
    def status(self) -> str:
        """``ok``, ``partial``, ``rejected``, ``aborted``, ``failed`` or ``error``."""
        return self.metadata["status"]

    @property
    def layout_version(self) -> str:
        return (self.metadata.get("layout") or {}).get("version")

    @property
    def units(self) -> dict[str, str]:
        """Units of the arrays and figures (layouts 1 and 2 stored none: today's apply)."""
        return dict(self.metadata.get("units") or UNITS)

    @property
    def figures(self) -> dict[str, float | None]:
        """The derived figures (e_max, depth of the maximum, thickness, DW_min, H, sigma_I...)."""
        keys = (
            "strain_max_percent",
            "depth_of_max_nm",
            "thickness_nm",
            "dw_min",
            "fwhm_deg",
            "dynamic_range",
            "sigma_i",
            "scale",
            "background",
        )
        return {k: self.metadata.get(k) for k in keys}

    def arrays(self) -> dict:
        """The six arrays as numpy arrays (empty for a result without a profile)."""
        from .queries import read_result

        return read_result(self)["arrays"]

    def _table(self, name: str):
        import pandas as pd

        if self.layout_version == "3" and name in self:  # the per-result table, as Tiled serves it
            return self[name].read()
        arrays = self.arrays()  # an older layout, or tables not written yet: from the arrays row
        return pd.DataFrame({c: arrays[c] for c in TABLES[name]} if arrays else {c: [] for c in TABLES[name]})

    def profile(self):
        """``pandas.DataFrame`` of ``depth_nm``, ``strain_percent``, ``debye_waller`` (depth 0 = surface)."""
        return self._table("profile")

    def curve(self):
        """``pandas.DataFrame`` of ``q_inv_angstrom``, ``intensity_measured``, ``intensity_model``."""
        return self._table("curve")

    def refinement(self) -> dict | None:
        """The refined profile beside the network's answer (:func:`~.refinement.read_refinement`)."""
        from .refinement import read_refinement

        return read_refinement(self)
