"""The live demo: simulated diffractometer -> RunEngine -> live inversion -> Tiled -> table and figure.

``make demo`` (``xrd-strain demo``) starts an embedded Tiled server (SQLite catalog and
files in a data directory), a RunEngine with the simulated diffractometer, scans three
samples with different known strain/disorder profiles, inverts each curve live as its run
stops, refines each network answer by least squares in a background process (written beside
it in the same result node), prints a results table from a Tiled query and writes
``demo_live.png``: true, network and refined profiles and the measured curve with the network's
and the refined model curves, one row per sample.

bluesky, tiled and the model are imported when the demo runs, not with this module, so that
``xrd-strain --help`` stays light.
"""

from __future__ import annotations

# TensorFlow bundles its own SQLite without FTS5; if it is loaded first, the embedded Tiled
# catalog cannot index metadata. Importing the system sqlite3 first keeps the right one.
import sqlite3  # noqa: F401  isort: skip

import dataclasses
import json
import logging
import pathlib
import shutil
import time
from typing import TYPE_CHECKING

import numpy as np

from xrd_strain_plugin.cli import option_errors
from xrd_strain_plugin.physics import profiles

if TYPE_CHECKING:
    from xrd_strain_plugin.bluesky.simulated import SimulatedSample

log = logging.getLogger(__name__)

N_SLICES = 100
N_WEIGHTS = 10
RESOLUTION_FWHM_DEG = 0.01
STEP_TWO_THETA_DEG = 0.01


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoSample:
    """A known damage profile: an asymmetric Gaussian strain that vanishes at the interface.

    Parameters
    ----------
    name : str
    strain_max_percent : float
        e_max, percent.
    thickness_nm : float
        Damaged-layer thickness, nm.
    dw_min : float
        Smallest Debye-Waller factor (DW coupled to the strain, as in the training set).
    peak_depth : float
        Depth of the strain maximum as a fraction of the thickness.
    sigma_left, sigma_right : float
        Widths of the Gaussian above and below the peak, fractions of the thickness.
    """

    name: str
    strain_max_percent: float
    thickness_nm: float
    dw_min: float
    peak_depth: float
    sigma_left: float
    sigma_right: float

    def simulated(self) -> SimulatedSample:
        """The sample as the simulated diffractometer sees it (spline-smoothed like the training set)."""
        from xrd_strain_plugin.bluesky.simulated import SimulatedSample

        z = profiles.slice_midpoints(N_SLICES)
        sigma = np.where(z < self.peak_depth, self.sigma_left, self.sigma_right)
        shape = np.exp(-0.5 * ((z - self.peak_depth) / sigma) ** 2)
        weights = np.maximum(profiles.fit_weights(shape, N_WEIGHTS), 0.0)
        e_max = self.strain_max_percent / 100.0
        strain = np.atleast_2d(profiles.strain_from_weights(weights, e_max, N_SLICES))[0]
        dw = np.atleast_2d(profiles.dw_coupled(strain, e_max, self.dw_min))[0]
        return SimulatedSample(
            name=self.name,
            strain=strain,
            debye_waller=dw,
            thickness_nm=self.thickness_nm,
            resolution_fwhm_deg=RESOLUTION_FWHM_DEG,
            background_counts=10.0,
            scale_counts=1e6,
        )


SAMPLES = (
    DemoSample(
        name="YSZ-low-dose",
        strain_max_percent=0.9,
        thickness_nm=220.0,
        dw_min=0.75,
        peak_depth=0.55,
        sigma_left=0.25,
        sigma_right=0.14,
    ),
    DemoSample(
        name="YSZ-mid-dose",
        strain_max_percent=2.0,
        thickness_nm=350.0,
        dw_min=0.4,
        peak_depth=0.45,
        sigma_left=0.3,
        sigma_right=0.16,
    ),
    DemoSample(
        name="YSZ-high-dose",
        strain_max_percent=3.5,
        thickness_nm=480.0,
        dw_min=0.15,
        peak_depth=0.35,
        sigma_left=0.35,
        sigma_right=0.2,
    ),
)


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="the live demo: simulated diffractometer -> RunEngine -> live inversion -> Tiled -> table and PNG",
        description="Start an embedded Tiled server (SQLite catalog and files in --data-dir), scan three simulated "
        "samples with known profiles, invert them live, refine each answer in the background (written beside "
        "it in Tiled), print the results table from a Tiled query and write OUT/demo_live.png (true, "
        "network and refined profiles; measured, network and refined curves).",
    )
    p.add_argument("--out", default="out", help="output directory (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="Tiled data directory (default: OUT/tiled, wiped first)")
    p.add_argument("--model", metavar="BUNDLE", default=None, help="model bundle (default: the shipped model)")
    p.add_argument("--seed", type=int, default=1, help="seed of the counting noise (default: %(default)s)")
    p.add_argument("--zmq", action="store_true", help="route documents through a local 0MQ proxy and listener")
    p.add_argument(
        "--samples",
        type=int,
        choices=(1, 2, 3),
        default=3,
        help="scan the first N of the three samples (default: %(default)s; 1 for a quick check)",
    )
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="show the network's answers only (no background least-squares refinement)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the demo the options describe; 0 when every sample was inverted."""
    with option_errors("--model"):
        return run_demo(
            out=args.out,
            data_dir=args.data_dir,
            bundle=args.model,
            seed=args.seed,
            via_zmq=args.zmq,
            n_samples=args.samples,
            refine=not args.no_refine,
        )


def scan_limits_two_theta_deg(reflection, strain_max_percent: float) -> tuple[float, float]:
    """2θ range from 0.5 % strain below the substrate peak to 0.5 % beyond 1.1 e_max (as in training)."""
    from xrd_strain_plugin.physics.bragg import layer_peak_two_theta_deg

    low_strain, high_strain = -0.005, 1.1 * strain_max_percent / 100.0 + 0.005
    # larger strain -> larger d -> smaller Q -> smaller 2θ
    lo = float(layer_peak_two_theta_deg(high_strain, reflection.theta_bragg))
    hi = float(layer_peak_two_theta_deg(low_strain, reflection.theta_bragg))
    return lo, hi


def run_demo(
    *,
    out="out",
    data_dir=None,
    bundle=None,
    seed: int = 1,
    via_zmq: bool = False,
    n_samples: int = len(SAMPLES),
    refine: bool = True,
) -> int:
    """Run the live demo; return the exit status (0 when every sample was inverted).

    Parameters
    ----------
    out : path
        Output directory (``demo_live.png``, ``demo_live.json``, spool, Tiled data).
    data_dir : path, optional
        Tiled data directory (default ``OUT/tiled``); wiped first.
    bundle : path, optional
        Model bundle (default: the shipped model).
    seed : int
        Seed of the counting noise.
    via_zmq : bool
        Send documents through a local 0MQ proxy to a listener thread (the out-of-process path).
    n_samples : int
        Scan the first ``n_samples`` of :data:`SAMPLES` (1 to 3; fewer for a quick check).
    refine : bool
        Refine every network answer in the live callback's background refiner and show it.
    """
    if not 1 <= n_samples <= len(SAMPLES):
        raise ValueError(f"n_samples must be 1 to {len(SAMPLES)}, got {n_samples}")
    chosen = SAMPLES[:n_samples]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    step = _Steps(time.perf_counter())
    out = pathlib.Path(out)
    data_dir = pathlib.Path(data_dir) if data_dir else out / "tiled"
    for d in (data_dir, out / "spool"):
        shutil.rmtree(d, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    stack = _Stack.start(out=out, data_dir=data_dir, bundle=bundle, refine=refine, step=step, n_refiners=len(chosen))
    try:
        samples = [s.simulated() for s in chosen]
        uids = _scan_samples(stack, chosen, samples, seed=seed, via_zmq=via_zmq, step=step)
        results = _read_back(stack, uids, refine=refine, step=step)
        _report(out, stack, chosen, samples, results, uids)
    finally:
        stack.close()
    step.done("done")
    ok = len(results) == len(chosen) and all(r["metadata"]["status"] == "ok" for r in results)
    return 0 if ok else 1


@dataclasses.dataclass(kw_only=True, eq=False)
class _Stack:
    """What the demo runs on: an embedded Tiled server and its client, the live callback, the raw writer."""

    server: object
    client: object
    live: object
    raw: object
    stop_listener: object = None

    @classmethod
    def start(cls, *, out, data_dir, bundle, refine, step, n_refiners: int = 1) -> _Stack:
        from tiled.client import from_uri
        from tiled.server import SimpleTiledServer

        from xrd_strain_plugin.bluesky import LiveInversion
        from xrd_strain_plugin.bluesky.raw import raw_run_writer

        server = SimpleTiledServer(data_dir)
        url = server.uri.split("?")[0]
        client = from_uri(url, api_key=server.api_key)
        step.done(f"Tiled server at {url} (data in {data_dir})")
        # the refinement as every user gets it: default search, global stage on; one refining process per
        # sample, so each starts when its scan ends (measured on 2 idle cores: 65 s for the demo against
        # 74 s with one per core, where the last sample waited for a free process)
        live = LiveInversion.from_uri(
            url,
            api_key=server.api_key,
            spool_directory=out / "spool",
            bundle=bundle,
            refine=refine,
            refine_processes=max(1, n_refiners),
        )
        card = live.inverter.bundle.card
        step.done(f"model {card.model_id} {card.version} loaded and warmed up")
        return cls(server=server, client=client, live=live, raw=raw_run_writer(client))

    @property
    def card(self):
        return self.live.inverter.bundle.card

    def close(self) -> None:
        if self.stop_listener is not None:
            self.stop_listener()
        self.live.close()
        self.live.publisher.spool.close()
        self.raw.close()
        self.server.close()


def _scan_samples(stack: _Stack, chosen, samples, *, seed: int, via_zmq: bool, step) -> list[str]:
    """Scan each sample on the simulated diffractometer; the live callback inverts each run as it stops."""
    from bluesky import RunEngine
    from bluesky.plans import scan

    from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
    from xrd_strain_plugin.reflection_cache import cached_reflection

    card = stack.card
    refl = cached_reflection(card.material, tuple(card.hkl), card.wavelength_angstrom)
    diff = SimulatedDiffractometer(
        reflection=refl, sample=samples[0], rng=np.random.default_rng(seed), window_deg=(-5.0, 1.0)
    )
    RE = RunEngine({})
    RE.subscribe(stack.raw)
    if via_zmq:
        stack.stop_listener, publisher = _zmq_path(stack.live)
        RE.subscribe(publisher)
    else:
        RE.subscribe(stack.live)
    uids = []
    for demo_sample, sample in zip(chosen, samples):
        diff.load(sample)
        lo, hi = scan_limits_two_theta_deg(refl, demo_sample.strain_max_percent)
        n = int(round((hi - lo) / STEP_TWO_THETA_DEG)) + 1
        (uid,) = RE(
            scan([diff.detector], diff.motor, lo / 2, hi / 2, n),
            sample=demo_sample.name,
            material=card.material,
            hkl=list(card.hkl),
            wavelength_angstrom=card.wavelength_angstrom,
            purpose="xrd-strain live demo",
        )
        uids.append(uid)
        step.done(f"scanned {demo_sample.name}: {n} points, omega {lo / 2:.3f}..{hi / 2:.3f} deg")
    if via_zmq:
        _wait_for_results(stack.client, uids, timeout=120)
    stack.live.wait(120)
    stack.raw.wait()
    step.done("all curves inverted and written")
    return uids


def _read_back(stack: _Stack, uids, *, refine: bool, step) -> list[dict]:
    """Print the results table from a Tiled query; read each result (and its refinement) back."""
    from xrd_strain_plugin.tiled import ResultRow, find_results, format_table, read_result

    client = stack.client
    hits = find_results(client, raw_uid=None, status=None)
    hits = {p: n for p, n in hits.items() if p[0] in uids}
    rows = sorted((ResultRow.from_node(p, n) for p, n in hits.items()), key=lambda r: uids.index(r.path.split("/")[0]))
    print("\nResults from a Tiled query (results/ with layout xrd_strain_result):")
    print(format_table(rows))
    results = [read_result(client["results"][uid]) for uid in uids if (uid,) in hits]
    if refine:
        refined = _wait_for_refinements(client, [uid for uid in uids if (uid,) in hits], timeout=180)
        for res in results:
            res["refinement"] = refined.get(res["metadata"]["raw_uid"])
        step.done(
            f"{sum(1 for r in refined.values() if r and r['arrays'])} of {len(results)} results refined "
            f"in the background and written beside the network's answers"
        )
    return results


def _report(out, stack: _Stack, chosen, samples, results, uids) -> None:
    """True versus retrieved figures on stdout, demo_live.json and demo_live.png."""
    from xrd_strain_plugin.reflection_cache import cached_reflection

    card = stack.card
    latencies = [o.latency_s for o in stack.live.outcomes if o.latency_s is not None]
    summary = _summary(chosen, samples, results, uids, latencies, card)
    (out / "demo_live.json").write_text(json.dumps(summary, indent=1))
    print("\nTrue vs retrieved:")
    for s in summary["samples"]:
        t, r = s["true"], s["retrieved"]
        print(
            f"  {s['sample']:<14} e_max {t['strain_max_percent']:.2f} -> {r.get('strain_max_percent', float('nan')):.2f} %"
            f"   t {t['thickness_nm']:.0f} -> {r.get('thickness_nm', float('nan')):.0f} nm"
            f"   DW_min {t['dw_min']:.2f} -> {r.get('dw_min', float('nan')):.2f}"
            f"   sigma_I {r.get('sigma_i', float('nan')):.3f}  (network)"
        )
        f = s.get("refined")
        if f:
            print(
                f"  {'':<14} e_max {t['strain_max_percent']:.2f} -> {f['strain_max_percent']:.2f} %"
                f"   t {t['thickness_nm']:.0f} -> {f['thickness_nm']:.0f} nm"
                f"   DW_min {t['dw_min']:.2f} -> {f['dw_min']:.2f}   sigma_I {f['sigma_i']:.3f}  (refined, "
                f"path {f['path']}, noise floor {f['noise_floor_sigma_i']:.3f})"
            )
            if f.get("layer_detected") is False:
                print(f"  {'':<14} no strained layer detected")
            for a in f.get("alternatives") or ():
                print(
                    f"  {'':<14} equally good: e_max {a['strain_max_percent']:.2f} %   t {a['thickness_nm']:.0f} nm"
                    f"   max at {a['depth_of_max_nm']:.0f} nm   sigma_I {a['sigma_i']:.3f}  (ambiguous)"
                )
    png = out / "demo_live.png"
    _plot(
        png, chosen, samples, results, cached_reflection(card.material, tuple(card.hkl), card.wavelength_angstrom), card
    )
    print(
        f"\nraw runs in Tiled: {[u[:8] for u in uids if u in stack.client['raw']]}; "
        f"stop -> readable latency: {', '.join(f'{x * 1e3:.0f} ms' for x in latencies)}"
    )
    print(f"wrote {png} and {out / 'demo_live.json'}")


class _Steps:
    def __init__(self, t0):
        self.t0 = t0

    def done(self, what):
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {what}", flush=True)


def _zmq_path(live):
    """Proxy and listener threads on free local ports; returns (stop, publisher)."""
    import socket

    from xrd_strain_plugin.bluesky.remote import ListenerThread, start_proxy

    def free():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    in_port, out_port = free(), free()
    start_proxy(in_port, out_port)
    remote = ListenerThread(in_port, out_port, [live])
    return remote.close, remote.publisher


def _wait_for_results(client, uids, *, timeout):
    from xrd_strain_plugin.tiled import find_results

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(find_results(client, raw_uid=u) for u in uids):
            return
        time.sleep(0.2)


def _wait_for_refinements(client, uids, *, timeout):
    """Refinements of the results of ``uids`` (raw uid -> read_refinement dict or None), once done."""
    from xrd_strain_plugin.tiled.refinement import read_refinement

    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        for uid in uids:
            if found.get(uid) is None or found[uid]["metadata"].get("status") not in ("done", "failed"):
                try:
                    found[uid] = read_refinement(client["results"][uid])
                except Exception as exc:  # a node being written (its table not complete yet): ask again
                    log.debug("refinement of %s not readable yet: %s", uid, exc)
                    found[uid] = None
        if all(f is not None and f["metadata"].get("status") in ("done", "failed") for f in found.values()):
            break
        time.sleep(0.5)
    return found


def _summary(demo_samples, samples, results, uids, latencies, card):
    out = {"model": {"id": card.model_id, "version": card.version}, "latency_s": latencies, "samples": []}
    for d, s, uid in zip(demo_samples, samples, uids):
        res = next((r for r in results if r["metadata"]["raw_uid"] == uid), None)
        md = res["metadata"] if res else {}
        out["samples"].append(
            {
                "sample": d.name,
                "raw_uid": uid,
                "true": {
                    "strain_max_percent": float(np.max(s.strain) * 100),
                    "thickness_nm": s.thickness_nm,
                    "dw_min": float(np.min(s.debye_waller)),
                    "depth_of_max_nm": float(s.depth_nm()[np.argmax(s.strain)]),
                },
                "retrieved": {
                    k: md.get(k)
                    for k in (
                        "strain_max_percent",
                        "thickness_nm",
                        "dw_min",
                        "depth_of_max_nm",
                        "sigma_i",
                        "status",
                        "reason",
                    )
                    if k in md
                },
            }
        )
        refined = (res or {}).get("refinement")
        if refined and refined["arrays"]:
            rmd = refined["metadata"]
            out["samples"][-1]["refined"] = {
                k: rmd.get(k)
                for k in (
                    "strain_max_percent",
                    "thickness_nm",
                    "dw_min",
                    "depth_of_max_nm",
                    "sigma_i",
                    "sigma_i_start",
                    "noise_floor_sigma_i",
                    "path",
                    "poor_fit",
                    "elapsed_s",
                    "ambiguous",
                    "layer_detected",
                )
            }
            out["samples"][-1]["refined"]["alternatives"] = [
                {k: a.get(k) for k in ("thickness_nm", "depth_of_max_nm", "strain_max_percent", "sigma_i")}
                for a in rmd.get("alternatives") or ()
            ]
    return out


def _plot(path, demo_samples, samples, results, refl, card):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xrd_strain_plugin.physics.qspace import q_to_two_theta_deg

    fig, axes = plt.subplots(len(samples), 2, figsize=(11, 3.2 * len(samples)), squeeze=False)
    for row, (d, s) in enumerate(zip(demo_samples, samples)):
        res = next((r for r in results if r["metadata"].get("sample") == d.name), None)
        ax, ax_dw = axes[row, 0], axes[row, 0].twinx()
        ax.plot(s.depth_nm(), s.strain * 100, "k-", lw=2, label="strain, true")
        ax_dw.plot(s.depth_nm(), s.debye_waller, "k:", lw=1.5, label="DW, true")
        if res and res["arrays"]:
            a = res["arrays"]
            ax.plot(a["depth_nm"], a["strain_percent"], "C3-", lw=1.5, label="strain, retrieved")
            ax_dw.plot(a["depth_nm"], a["debye_waller"], "C0--", lw=1.2, label="DW, retrieved")
        refined = (res or {}).get("refinement")
        if refined and refined["arrays"]:
            f = refined["arrays"]
            ax.plot(f["depth_nm"], f["strain_percent"], "C2-", lw=1.8, label="strain, refined")
            ax_dw.plot(f["depth_nm"], f["debye_waller"], "C2--", lw=1.2, label="DW, refined")
            rmd = refined["metadata"]
            band = rmd.get("strain_band_percent") or ()
            if len(band) == 2 and len(band[0]) == len(f["depth_nm"]):
                ax.fill_between(f["depth_nm"], band[0], band[1], color="C2", alpha=0.2, lw=0, label="refined +-1 sigma")
            for k, alt in enumerate(rmd.get("alternatives") or ()):
                ax.plot(
                    alt["depth_nm"],
                    alt["strain_percent"],
                    "C1--",
                    lw=1.0,
                    label=f"equally good #{k + 1} (σ_I {alt['sigma_i']:.3f})",
                )
        ax.set_xlabel("depth (nm)")
        ax.set_ylabel("strain (%)")
        ax_dw.set_ylabel("Debye-Waller factor")
        ax_dw.set_ylim(0, 1.05)
        verdict = ""
        if refined and refined["arrays"]:
            rmd = refined["metadata"]
            verdict = (
                "  (no strained layer detected)"
                if rmd.get("layer_detected") is False
                else "  (ambiguous: equally good profiles dashed)"
                if rmd.get("ambiguous")
                else ""
            )
        ax.set_title(f"{d.name}: strain and disorder vs depth{verdict}", fontsize=9)
        lines = ax.get_legend_handles_labels()
        lines_dw = ax_dw.get_legend_handles_labels()
        ax.legend(lines[0] + lines_dw[0], lines[1] + lines_dw[1], fontsize=7, loc="upper right")
        cx = axes[row, 1]
        if res and res["arrays"]:
            a = res["arrays"]
            tt = q_to_two_theta_deg(a["q_inv_angstrom"], refl.wavelength_angstrom)
            cx.semilogy(tt, a["intensity_measured"], ".", ms=2.5, color="0.3", label="measured (simulated)")
            cx.semilogy(
                tt,
                a["intensity_model"],
                "C3-",
                lw=1.2,
                label=f"model from the network, σ_I = {res['metadata']['sigma_i']:.3f}",
            )
            refined = res.get("refinement")
            if refined and refined["arrays"]:
                f = refined["arrays"]
                cx.semilogy(
                    f["two_theta_deg"],
                    f["intensity_model"],
                    "C2-",
                    lw=1.2,
                    label=f"refined ({refined['metadata'].get('path')}), "
                    f"σ_I = {refined['metadata'].get('sigma_i'):.3f}",
                )
        else:
            reason = res["metadata"].get("reason") if res else "no result in Tiled"
            cx.text(0.5, 0.5, f"no profile: {reason}", ha="center", va="center", transform=cx.transAxes, wrap=True)
        cx.set_xlabel("2θ (deg)")
        cx.set_ylabel("intensity (counts)")
        cx.set_title(f"{d.name}: measured and model curves")
        cx.legend(fontsize=7)
    fig.suptitle(f"xrd-strain live demo: model {card.model_id} {card.version}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
