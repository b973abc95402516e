"""Agreement of the recursion with xrayutilities' DynamicalModel over strain, thickness and profile shape.

Writes a markdown table (stdout, and --out FILE). Both curves convolved with a 0.02 deg Gaussian in theta.
Run: .venv/bin/python benchmarks/validate_physics.py --out docs/physics_validation.md
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.physics.xu_reference import compare_with_xu, graded_profile  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the markdown table here too")
    args = p.parse_args(argv)
    rows = ["| profile | e_max (%) | t (nm) | rms log10 exact | rms log10 linearized (paper) |", "| --- | --- | --- | --- | --- |"]
    cases = [("uniform", e, t) for e in (0.001, 0.005, 0.01, 0.02, 0.04, 0.08) for t in (100.0, 300.0, 1000.0)]
    cases += [(k, e, t) for k in ("ramp", "gauss", "buried") for e, t in ((0.01, 300.0), (0.02, 500.0), (0.02, 1000.0), (0.08, 300.0))]
    t0 = time.time()
    for kind, e, t in cases:
        prof = np.full(20, e) if kind == "uniform" else graded_profile(kind, e)
        exact = compare_with_xu(prof, t)
        lin = compare_with_xu(prof, t, bragg="linearized")
        rows.append(f"| {kind} | {100 * e:g} | {t:g} | {exact:.1e} | {lin:.2f} |")
        print(rows[-1], flush=True)
    text = "\n".join(rows) + f"\n\n({len(cases)} cases, {time.time() - t0:.0f} s)\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
