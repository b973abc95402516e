"""``LiveProfilePlot``: a callback drawing each result as it arrives (strain and DW against depth,
measured against model curve), from the derived-run documents of :mod:`.derived`.

Subscribe it wherever those documents arrive: in process (``live.subscribe_results(plot)``), or in
a beamline's IPython session from the listener's 0MQ feed (``xrd-strain listen --results-zmq``)::

    from bluesky.callbacks.zmq import RemoteDispatcher
    from xrd_strain_plugin.bluesky.plot import LiveProfilePlot
    import matplotlib.pyplot as plt

    plot = LiveProfilePlot(fig=plt.figure(figsize=(10, 4)))
    dispatcher = RemoteDispatcher("listener-host:5578", prefix=b"xrd-strain")
    dispatcher.subscribe(plot)
    dispatcher.start()        # or run it in a thread; plot.fig redraws as results come

Without a figure it makes its own ``matplotlib.figure.Figure`` (no pyplot, no GUI: safe under the
Agg backend, in a service or a test); ``plot.savefig(path)`` writes it. It keeps the last
``keep`` results (older ones are dropped) and draws a refined profile dashed beside the network's.
"""

from __future__ import annotations

import collections
import logging

import event_model
import numpy as np

log = logging.getLogger(__name__)


class LiveProfilePlot(event_model.DocumentRouter):
    """Live plot of xrd-strain results (derived runs; other runs are ignored).

    Parameters
    ----------
    fig : matplotlib.figure.Figure, optional
        Where to draw (three axes are added); default: a new figure, headless.
    keep : int
        Results shown at once (the newest).
    """

    def __init__(self, *, fig=None, keep: int = 4):
        super().__init__()
        if fig is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(11, 3.6), layout="constrained")
        self.fig = fig
        self.ax_strain, self.ax_dw, self.ax_curve = fig.subplots(1, 3)
        self.keep = int(keep)
        self.shown: collections.deque = collections.deque(maxlen=self.keep)  # (label, kind, arrays)
        self._runs: dict[str, dict] = {}  # start uid -> start document, for our runs
        self._descriptors: dict[str, str] = {}  # descriptor uid -> start uid
        self.errors = 0
        self._style()

    def _style(self):
        self.ax_strain.set(xlabel="depth (nm)", ylabel="strain (%)", title="strain")
        self.ax_dw.set(xlabel="depth (nm)", ylabel="Debye-Waller factor", title="disorder", ylim=(0, 1.05))
        self.ax_curve.set(xlabel="q (1/Å)", ylabel="intensity (counts)", title="curve", yscale="log")

    def start(self, doc):
        if "xrd_strain" in doc:
            self._runs[doc["uid"]] = doc
        return doc

    def descriptor(self, doc):
        if doc.get("run_start") in self._runs:
            self._descriptors[doc["uid"]] = doc["run_start"]
        return doc

    def event(self, doc):
        start = self._runs.get(self._descriptors.get(doc.get("descriptor")))
        if start is None:
            return doc
        try:
            arrays = {k: np.asarray(v, dtype=float) for k, v in doc["data"].items()}
            link = start["xrd_strain"]
            label = f"{start.get('sample') or link['raw_uid'][:8]} (scan {start.get('raw_scan_id')})"
            self.shown.append((label, link.get("kind", "network"), arrays))
            self.redraw()
        except Exception:  # a plot never stops the feed
            self.errors += 1
            log.exception("LiveProfilePlot: could not draw a result")
        return doc

    def stop(self, doc):
        start = self._runs.pop(doc.get("run_start"), None)
        if start is not None:
            self._descriptors = {d: s for d, s in self._descriptors.items() if s != doc["run_start"]}
        return doc

    def redraw(self) -> None:
        """Draw the results kept (newest darkest)."""
        for ax in (self.ax_strain, self.ax_dw, self.ax_curve):
            ax.clear()
        self._style()
        labels = list(dict.fromkeys(label for label, _, _ in self.shown))
        for label, kind, a in self.shown:
            color = f"C{labels.index(label) % 10}"
            dashed = kind == "refined"
            name = f"{label}{' refined' if dashed else ''}"
            style = dict(color=color, ls="--" if dashed else "-", lw=1.3)
            if "depth_nm" in a and "strain_percent" in a:
                self.ax_strain.plot(a["depth_nm"], a["strain_percent"], label=name, **style)
            if "depth_nm" in a and "debye_waller" in a:
                self.ax_dw.plot(a["depth_nm"], a["debye_waller"], **style)
            x = a.get("q_inv_angstrom")
            if x is not None and "intensity_measured" in a and not dashed:
                self.ax_curve.plot(x, np.clip(a["intensity_measured"], 0.5, None), ".", color=color, ms=2)
            if x is not None and "intensity_model" in a:
                self.ax_curve.plot(x, np.clip(a["intensity_model"], 0.5, None), **style)
        if self.shown:
            self.ax_strain.legend(fontsize=7)
        self.fig.canvas.draw_idle()

    def savefig(self, path, **kwargs) -> None:
        self.fig.savefig(path, **kwargs)
