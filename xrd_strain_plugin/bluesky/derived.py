"""Results as Bluesky documents: a derived run per result, linked to the raw run by uid.

Other callbacks (live plots, agents deciding the next measurement) can subscribe to the
plugin's results the way they subscribe to a RunEngine: ``live.subscribe_results(callback)``
hands them, for each result written, the documents of a small run

- start: ``xrd_strain`` {``raw_uid``, ``curve_index``, ``result_path``, ``status``}, ``sample``,
  ``scan_id`` of the raw run, and the layout's figures (``strain_max_percent``...);
- descriptor of the stream ``result``: the six arrays (depth profile and curves), with shapes;
- one event with the arrays;
- stop (``success``; ``fail`` with the reason for a result without a profile).

They are a live feed, not storage: Tiled keeps the results in the results layout (one request
per result, plus a share of an arrays table), because writing each derived run with bluesky's
``TiledWriter`` costs a node per run, per stream and per table: 26 requests per result, counted
in the server's log (docs/bench_live.md).
"""

from __future__ import annotations

import numpy as np

from xrd_strain_plugin.results import ARRAY_NAMES, UNITS

FIGURES = ("strain_max_percent", "depth_of_max_nm", "thickness_nm", "dw_min", "fwhm_deg", "dynamic_range",
           "sigma_i")


def result_documents(record, *, results_key: str = "results") -> list[tuple[str, dict]]:
    """The documents of the derived run of one :class:`~xrd_strain_plugin.results.ResultRecord`."""
    from event_model import compose_run

    md = record.metadata
    link = {"raw_uid": record.raw_uid, "curve_index": record.curve_index, "status": record.status,
            "result_path": "/".join((results_key, *record.path)), "model": md.get("model")}
    start_md = {"xrd_strain": link, "sample": md.get("sample"), "raw_scan_id": md.get("scan_id"),
                "purpose": "xrd-strain result", **{k: md.get(k) for k in FIGURES if md.get(k) is not None}}
    run = compose_run(metadata=start_md, validate=False)
    docs = [("start", run.start_doc)]
    if not record.arrays:
        docs.append(("stop", run.compose_stop(exit_status="fail", reason=str(md.get("reason") or record.status),
                                              validate=False)))
        return docs
    arrays = {name: np.asarray(record.arrays[name], dtype=float) for name in ARRAY_NAMES}
    data_keys = {name: {"dtype": "array", "shape": list(a.shape), "source": "xrd-strain",
                        "units": UNITS.get(name, "")} for name, a in arrays.items()}
    desc = run.compose_descriptor(name="result", data_keys=data_keys, validate=False)
    docs.append(("descriptor", desc.descriptor_doc))
    # Not schema-validated (none of the four documents): they are built here from a checked record,
    # and jsonschema validation cost ~50 ms per result at load 9.5 (measured), ~12 ms without the
    # event's; the test validates them once with event_model.
    docs.append(("event", desc.compose_event(data=arrays, timestamps=dict.fromkeys(arrays, run.start_doc["time"]),
                                             validate=False)))
    docs.append(("stop", run.compose_stop(validate=False)))
    return docs


