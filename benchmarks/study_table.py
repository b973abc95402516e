"""Accuracy versus samples seen from training runs' monitor histories (issue 14); not a test.

Each run of ``xrd-strain train --monitor DIR`` records, after every epoch, the Table-2 accuracies
of its current weights on the monitor set, the samples seen and the CPU seconds. This prints them
side by side at the given sample counts (the nearest epoch at or below)::

    .venv/bin/python benchmarks/study_table.py NAME=RUN ... [--at 100000 200000 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
    parser.add_argument(
        "--at",
        type=int,
        nargs="+",
        default=[
            50_000,
            100_000,
            200_000,
            300_000,
            400_000,
            500_000,
            750_000,
            1_000_000,
            1_500_000,
            2_000_000,
            3_000_000,
        ],
    )
    args = parser.parse_args()
    print(
        "| run | samples seen | CPU s | lr | val loss | a(t) | a(e_max) | a(DW) | a(H) | a(DR) | "
        "a(strain) | a(strain) any of K |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for item in args.runs:
        name, _, run = item.partition("=")
        state = json.loads((Path(run) / "state.json").read_text())
        h = state["history"]
        cpu, total = [], 0.0
        for c in h["cpu_seconds"]:
            total += c
            cpu.append(total)
        marks = [s for s in args.at if s <= h["samples"][-1]] + [h["samples"][-1]]
        shown = set()
        for mark in marks:
            i = max(j for j, s in enumerate(h["samples"]) if s <= mark)
            if i in shown:
                continue
            shown.add(i)
            m = h["monitor"][i]
            anyk = f"{100 * m['a_strain_any']:.0f} %" if "a_strain_any" in m else "-"
            accs = " | ".join(f"{100 * m[k]:.0f} %" for k in ("a_t", "a_emax", "a_dw", "a_h", "a_dr", "a_strain"))
            print(
                f"| {name} | {h['samples'][i]:,} | {cpu[i]:.0f} | {h['learning_rate'][i]:.0e} | "
                f"{h['val_loss'][i]:.4f} | {accs} | {anyk} |"
            )


if __name__ == "__main__":
    main()
