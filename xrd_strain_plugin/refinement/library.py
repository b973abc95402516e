"""A library of simulated curves whose nearest neighbours are proposals for the search (issue 13).

A model bundle may ship ``library.npz``: curves drawn with its training recipe, kept as a few
principal-component coordinates of their model input (the network's own preprocessing,
:func:`~xrd_strain_plugin.physics.qspace.curve_to_model_input`, smoothed and normalised so that the
fringes and the scale/background do not dominate the distance) and the physical labels of their
profiles. :meth:`ProposalLibrary.nearest` turns the ``k`` curves nearest to a measured one into
:class:`~xrd_strain_plugin.refinement.refine.StartProfile` proposals; the search screens them with
its own grid and keeps the ones that fit (a look-up is a proposal, never the answer: on held-out
curves of the paper's recipe the nearest neighbour has the right e_max for most, the right shape
for few).

The library is for one reflection and wavelength (those of its bundle); :meth:`matches` says
whether a curve's reflection is that one. Pure numpy: the physics core only.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrd_strain_plugin.physics import profiles
from xrd_strain_plugin.physics.curve import Curve
from xrd_strain_plugin.physics.qspace import ModelGrid, curve_to_model_input

__all__ = ["ProposalLibrary", "library_features", "bundle_library", "LIBRARY_FILE"]

#: File name of the library inside a model bundle.
LIBRARY_FILE = "library.npz"
#: Gaussian smoothing of the model input (grid points) before the distance: washes out the fringes.
SMOOTH_POINTS = 4.0
#: Points at the high-angle end of the grid whose median is the curve's background level.
BACKGROUND_POINTS = 50


def bundle_library(bundle_path) -> str | None:
    """The proposal library a model bundle ships beside its weights (:data:`LIBRARY_FILE`), or None."""
    path = Path(bundle_path) / LIBRARY_FILE
    return str(path) if path.is_file() else None


def library_features(x: np.ndarray) -> np.ndarray:
    """Model inputs, shape (n, n_grid) -> the vectors whose distance ranks neighbours.

    Smoothed over :data:`SMOOTH_POINTS`, the background level (median of the first
    :data:`BACKGROUND_POINTS`, the high-angle side of the substrate peak) subtracted, and normalised
    to unit length: the shape of the diffuse signal, not its scale or its fringes.
    """
    from scipy.ndimage import gaussian_filter1d

    f = gaussian_filter1d(np.asarray(x, dtype=np.float32), SMOOTH_POINTS, axis=1, mode="nearest")
    f = f - np.median(f[:, :BACKGROUND_POINTS], axis=1, keepdims=True)
    return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)


@dataclass(frozen=True, eq=False)
class ProposalLibrary:
    """Curves' coordinates and their profiles' labels, for one reflection.

    Attributes
    ----------
    grid : ModelGrid
        The model input grid the curves were put on.
    d_spacing_angstrom, wavelength_angstrom : float
        The reflection and wavelength the curves were simulated for.
    mean : numpy.ndarray, shape (n_grid,)
        Mean feature vector (:func:`library_features`).
    basis : numpy.ndarray, shape (n_grid, n_components)
        Principal directions of the features.
    coords : numpy.ndarray, shape (n_curves, n_components)
        Each curve's coordinates.
    labels : numpy.ndarray, shape (n_curves, n_weights + 4)
        Physical labels (weights in percent, DW_min, t in nm, H in deg, DR), as the training sets.
    n_weights : int
    """

    grid: ModelGrid
    d_spacing_angstrom: float
    wavelength_angstrom: float
    mean: np.ndarray
    basis: np.ndarray
    coords: np.ndarray
    labels: np.ndarray
    n_weights: int = 10

    @classmethod
    def build(cls, x, labels, *, grid: ModelGrid, d_spacing_angstrom, wavelength_angstrom, n_components=32):
        """A library from model inputs ``x`` (n, n_grid) and their physical labels (n, n_weights + 4)."""
        x, labels = np.asarray(x, dtype=np.float32), np.asarray(labels, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != grid.n_points or labels.shape[0] != x.shape[0]:
            raise ValueError(f"x must be (n, {grid.n_points}) with one label row per curve")
        features = library_features(x)
        mean = features.mean(axis=0)
        _, _, vt = np.linalg.svd(features[:: max(1, x.shape[0] // 5000)] - mean, full_matrices=False)
        basis = vt[:n_components].T.astype(np.float32)
        return cls(
            grid=grid,
            d_spacing_angstrom=float(d_spacing_angstrom),
            wavelength_angstrom=float(wavelength_angstrom),
            mean=mean,
            basis=basis,
            coords=((features - mean) @ basis).astype(np.float32),
            labels=labels,
            n_weights=labels.shape[1] - 4,
        )

    def save(self, path) -> Path:
        path = Path(path)
        np.savez_compressed(
            path,
            grid=np.array([self.grid.strain_min, self.grid.strain_max, self.grid.n_points], dtype=float),
            reflection=np.array([self.d_spacing_angstrom, self.wavelength_angstrom]),
            mean=self.mean,
            basis=self.basis,
            coords=self.coords,
            labels=self.labels,
        )
        return path

    @classmethod
    def load(cls, path) -> "ProposalLibrary":
        """Read a library file; a damaged or foreign file raises ``ValueError`` naming it."""
        try:
            with np.load(path) as f:
                g, r = f["grid"], f["reflection"]
                lib = cls(
                    grid=ModelGrid(strain_min=float(g[0]), strain_max=float(g[1]), n_points=int(g[2])),
                    d_spacing_angstrom=float(r[0]),
                    wavelength_angstrom=float(r[1]),
                    mean=f["mean"],
                    basis=f["basis"],
                    coords=f["coords"],
                    labels=f["labels"],
                    n_weights=int(f["labels"].shape[1] - 4),
                )
        except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a proposal library ({exc})") from exc
        if lib.basis.shape != (lib.grid.n_points, lib.coords.shape[1]) or lib.labels.shape[0] != lib.coords.shape[0]:
            raise ValueError(f"{path}: not a proposal library (inconsistent array shapes)")
        return lib

    @property
    def n_curves(self) -> int:
        return int(self.coords.shape[0])

    def matches(self, reflection, tolerance: float = 2e-3) -> bool:
        """Whether ``reflection`` is this library's (d-spacing and wavelength within ``tolerance``)."""
        return (
            abs(reflection.d_spacing_angstrom / self.d_spacing_angstrom - 1) <= tolerance
            and abs(reflection.wavelength_angstrom / self.wavelength_angstrom - 1) <= tolerance
        )

    def nearest_indices(self, x, k: int) -> np.ndarray:
        """Indices of the ``k`` library curves nearest to each model input row of ``x``, nearest first."""
        q = (library_features(np.atleast_2d(x)) - self.mean) @ self.basis
        d = (q**2).sum(1)[:, None] - 2.0 * q @ self.coords.T + (self.coords**2).sum(1)[None, :]
        k = min(int(k), self.n_curves)
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, axis=1).argsort(axis=1)
        return np.take_along_axis(part, order, axis=1)

    def nearest(self, curve: Curve, k: int = 12, *, n_slices: int = 200) -> list:
        """The profiles of the ``k`` curves nearest to ``curve`` (a Curve with its reflection)."""
        from xrd_strain_plugin.refinement.refine import StartProfile

        idx = self.nearest_indices(curve_to_model_input(curve, grid=self.grid), k)[0]
        return [
            StartProfile(
                depth_nm=depth,
                strain_percent=strain,
                debye_waller=dw,
                fwhm_deg=fwhm,
                source=f"library[{i}]",
            )
            for i, (depth, strain, dw, fwhm) in zip(idx, self.profiles(idx, n_slices=n_slices))
        ]

    def profiles(self, indices, *, n_slices: int = 200):
        """(depth_nm, strain_percent, debye_waller, fwhm_deg) of library rows ``indices``: each profile
        as a table of ``n_slices + 1`` depths from the surface to the interface, coupled DW, the
        strain scaled to the e_max of its slice midpoints (as the network's answers are decoded)."""
        n = self.n_weights
        basis = profiles.profile_basis(n, n_slices)
        for row in self.labels[np.asarray(indices)]:
            weights = row[:n].astype(float)
            e_max = float(np.max(np.abs(basis @ weights)))
            depth, strain, dw = profiles.depth_table(
                weights,
                thickness_nm=float(max(row[n + 1], 1.0)),
                dw_min=float(np.clip(row[n], 1e-3, 1.0)),
                n_depth=n_slices + 1,
                strain_max_percent=e_max,
            )
            yield depth, strain, dw, float(max(row[n + 2], 1e-4))
