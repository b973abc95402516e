"""Results as a NeXus/HDF5 file (``xrd-strain results export --nexus``).

One ``NXentry`` per result, named after its Tiled path (``results_<uid>[_<curve>]``)::

    /results_<uid>                 NXentry   title, start_time, definition-free; attrs from the result
        sample                     NXsample  name, material
        instrument/beam            NXbeam    incident_wavelength (angstrom)
        profile                    NXdata    signal strain_percent, axes depth_nm; debye_waller
        curve                      NXdata    signal intensity_measured, axes q_inv_angstrom; intensity_model
        refinement                 NXdata    (when refined) the refined profile, same layout as profile
        process                    NXprocess program xrd-strain, version, model, date
        metadata                   NXnote    the whole result metadata, JSON

Every dataset carries its ``units`` attribute (NeXus units: nm, percent, counts, 1/angstrom,
dimensionless). The file is written to a temporary name and renamed, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

from xrd_strain_plugin.results import CURVE_COLUMNS, PROFILE_COLUMNS, UNITS

_NX_UNITS = {"1": "dimensionless", "percent": "percent", "nm": "nm", "counts": "counts", "1/angstrom": "1/angstrom"}


def _dataset(group, name, values, unit):
    ds = group.create_dataset(name, data=np.asarray(values, dtype=float))
    ds.attrs["units"] = _NX_UNITS.get(unit, unit)
    return ds


def _nxdata(parent, name, arrays, *, signal, axis, auxiliary):
    group = parent.create_group(name)
    group.attrs.update(NX_class="NXdata", signal=signal, axes=[axis], auxiliary_signals=list(auxiliary))
    group.attrs[f"{axis}_indices"] = 0
    for column in (axis, signal, *auxiliary):
        if column in arrays:
            _dataset(group, column, arrays[column], UNITS.get(column, ""))
    return group


def write_nexus(path, results) -> int:
    """Write results to a NeXus file; return how many entries were written.

    Parameters
    ----------
    path : path
        The ``.nxs`` file (replaced if it exists).
    results : iterable of (str, dict, dict or None)
        ``(tiled path, read_result(node), read_refinement(node))`` of each result.

    Raises
    ------
    ValueError
        If there is nothing to write (no result has a profile).
    """
    import h5py

    from xrd_strain_plugin import __version__

    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with h5py.File(tmp, "w") as f:
        f.attrs.update(NX_class="NXroot", creator=f"xrd-strain {__version__}", HDF5_Version=h5py.version.hdf5_version)
        for tiled_path, result, refinement in results:
            arrays, md = result["arrays"], result["metadata"]
            if not arrays:
                continue
            entry = f.create_group(tiled_path.replace("/", "_"))
            entry.attrs.update(NX_class="NXentry", default="profile")
            entry["title"] = f"xrd-strain result {tiled_path}"
            entry["start_time"] = str(md.get("created") or "")
            sample = entry.create_group("sample")
            sample.attrs["NX_class"] = "NXsample"
            sample["name"] = str(md.get("sample") or "")
            sample["chemical_formula"] = str(md.get("material") or "")
            beam = entry.create_group("instrument").create_group("beam")
            entry["instrument"].attrs["NX_class"] = "NXinstrument"
            beam.attrs["NX_class"] = "NXbeam"
            if md.get("wavelength_angstrom") is not None:
                _dataset(beam, "incident_wavelength", md["wavelength_angstrom"], "angstrom")
            _nxdata(entry, "profile", arrays, signal="strain_percent", axis="depth_nm", auxiliary=("debye_waller",))
            _nxdata(
                entry,
                "curve",
                arrays,
                signal="intensity_measured",
                axis="q_inv_angstrom",
                auxiliary=("intensity_model",),
            )
            if refinement and refinement.get("arrays"):
                _nxdata(
                    entry,
                    "refinement",
                    refinement["arrays"],
                    signal="strain_percent",
                    axis="depth_nm",
                    auxiliary=("debye_waller",),
                )
            process = entry.create_group("process")
            process.attrs["NX_class"] = "NXprocess"
            process["program"] = "xrd-strain"
            process["version"] = str((md.get("plugin") or {}).get("version") or __version__)
            model = md.get("model") or {}
            process["model"] = f"{model.get('id')}@{model.get('version')}"
            note = entry.create_group("metadata")
            note.attrs["NX_class"] = "NXnote"
            note["type"] = "application/json"
            note["data"] = json.dumps(md, default=str)
            for key in ("strain_max_percent", "depth_of_max_nm", "thickness_nm", "dw_min", "sigma_i"):
                if md.get(key) is not None:
                    _dataset(entry, key, md[key], UNITS.get(key, ""))
            n += 1
    if n == 0:
        tmp.unlink()
        raise ValueError("no result with a profile to export")
    os.replace(tmp, path)
    return n


#: The column groups, for readers of the file.
GROUPS = {"profile": PROFILE_COLUMNS, "curve": CURVE_COLUMNS}
