"""Results as Bluesky documents: a derived run per result, linked to the raw run by uid.

Other callbacks (live plots, agents deciding the next measurement) can subscribe to the
plugin's results the way they subscribe to a RunEngine: ``live.subscribe_results(callback)``
hands them, for each result written (and for each refinement finished, with ``refine``), the
documents of a small run

- start: ``xrd_strain`` {``raw_uid``, ``curve_index``, ``result_path``, ``status``, ``kind``
  (``network`` or ``refined``), ``model``}, ``sample``, ``raw_scan_id`` of the raw run, the
  figures (``strain_max_percent``...), and ``hints`` {``dimensions``: depth for the stream
  ``result``} so that generic callbacks know what to plot against what;
- descriptor of the stream ``result``: the arrays (depth profile and curves), with shapes and
  units, and ``hints`` naming the fields worth plotting (``strain_percent``, ``debye_waller``);
- one event with the arrays;
- stop (``success``; ``fail`` with the reason for a result without a profile).

``xrd-strain listen --results-zmq HOST:PORT`` publishes them to a bluesky 0MQ proxy (prefix
``xrd-strain``), so a plot in another process or on another host
(:class:`~.plot.LiveProfilePlot`) gets them as a ``RemoteDispatcher`` subscriber.

They are a live feed, not storage: Tiled keeps the results in the results layout (one request
per result, plus a share of an arrays table), because writing each derived run with bluesky's
``TiledWriter`` costs a node per run, per stream and per table: 26 requests per result, counted
in the server's log (docs/bench_live.md).
"""

from __future__ import annotations

import numpy as np

from xrd_strain_plugin.results import ARRAY_NAMES, UNITS

FIGURES = ("strain_max_percent", "depth_of_max_nm", "thickness_nm", "dw_min", "fwhm_deg", "dynamic_range", "sigma_i")
STREAM = "result"
#: What a generic plot should show: the profile against depth.
START_HINTS = {"dimensions": [[["depth_nm"], STREAM]]}
DESCRIPTOR_HINTS = {"xrd_strain": {"fields": ["strain_percent", "debye_waller"]}}


def result_documents(record, *, results_key: str = "results") -> list[tuple[str, dict]]:
    """The documents of the derived run of one :class:`~xrd_strain_plugin.results.ResultRecord`."""
    md = record.metadata
    link = {
        "raw_uid": record.raw_uid,
        "curve_index": record.curve_index,
        "status": record.status,
        "result_path": "/".join((results_key, *record.path)),
        "model": md.get("model"),
        "kind": "network",
    }
    figures = {k: md.get(k) for k in FIGURES if md.get(k) is not None}
    arrays = {name: np.asarray(record.arrays[name], dtype=float) for name in ARRAY_NAMES} if record.arrays else {}
    return _documents(link, md, figures, arrays, reason=str(md.get("reason") or record.status))


def refined_documents(path: str, outcome: dict, metadata: dict) -> list[tuple[str, dict]]:
    """The derived run of a finished refinement (``outcome`` from the refiner, with its ``arrays``).

    ``metadata`` is the network result's (sample, raw uid, wavelength). The refined curve comes
    on 2-theta; it is given on ``q_inv_angstrom`` as the network's is.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in (outcome.get("arrays") or {}).items()}
    wavelength = metadata.get("wavelength_angstrom")
    if "two_theta_deg" in arrays and wavelength:
        arrays["q_inv_angstrom"] = 4 * np.pi * np.sin(np.radians(arrays.pop("two_theta_deg")) / 2) / float(wavelength)
    link = {
        "raw_uid": metadata.get("raw_uid"),
        "curve_index": metadata.get("curve_index"),
        "status": outcome.get("status"),
        "result_path": path,
        "model": metadata.get("model"),
        "kind": "refined",
    }
    figures = {k: outcome.get(k) for k in ("sigma_i", "sigma_i_start") if outcome.get(k) is not None}
    return _documents(link, metadata, figures, arrays, reason=str(outcome.get("reason") or outcome.get("status")))


def _documents(link, md, figures, arrays, *, reason) -> list[tuple[str, dict]]:
    from event_model import compose_run

    start_md = {
        "xrd_strain": link,
        "sample": md.get("sample"),
        "raw_scan_id": md.get("scan_id"),
        "purpose": f"xrd-strain {link['kind']} result",
        "hints": START_HINTS,
        **figures,
    }
    run = compose_run(metadata=start_md, validate=False)
    docs = [("start", run.start_doc)]
    if not arrays:
        docs.append(("stop", run.compose_stop(exit_status="fail", reason=reason, validate=False)))
        return docs
    data_keys = {
        name: {
            "dtype": "array",
            "shape": list(a.shape),
            "source": "xrd-strain",
            "units": UNITS.get(name, ""),
            "object_name": "xrd_strain",
        }
        for name, a in arrays.items()
    }
    desc = run.compose_descriptor(
        name=STREAM,
        data_keys=data_keys,
        hints=DESCRIPTOR_HINTS,
        object_keys={"xrd_strain": list(data_keys)},
        validate=False,
    )
    docs.append(("descriptor", desc.descriptor_doc))
    # Not schema-validated (none of the four documents): they are built here from a checked record,
    # and jsonschema validation cost ~50 ms per result at load 9.5 (measured), ~12 ms without the
    # event's; the test validates them once with event_model.
    docs.append(
        (
            "event",
            desc.compose_event(data=arrays, timestamps=dict.fromkeys(arrays, run.start_doc["time"]), validate=False),
        )
    )
    docs.append(("stop", run.compose_stop(validate=False)))
    return docs
