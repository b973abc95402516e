"""The demo's three samples under other noise draws, refined with given options: truth vs answer.

The levers of the search (issue 13) are measured by running this with each switched off, on the same
curves (an ablation): e.g.

    nice .venv/bin/python benchmarks/bench_search_samples.py 1,2,3 '{}'
    nice .venv/bin/python benchmarks/bench_search_samples.py 1,2,3 '{"continuation": false}'
    nice .venv/bin/python benchmarks/bench_search_samples.py 1,2,3 '{"n_rescan": 0}'
    nice .venv/bin/python benchmarks/bench_search_samples.py 1,2,3 '{"global_generations": 0}'

Arguments: comma-separated noise seeds; a JSON object of RefineOptions fields ("search": {...} for
SearchOptions fields; "truth": true starts from the true profile instead of the network's answer);
optionally a comma-separated list of the sample names to refine (the others are still drawn, so
every sample keeps its noise).
A sample counts as right when its depth of maximum is within 0.1 t, its thickness and e_max within 10 %
(the demo's criterion).
"""

import json
import sys
import time

import numpy as np

if any(a in ("-h", "--help") for a in sys.argv[1:]):
    print(__doc__)
    sys.exit(0)
from xrd_strain_plugin.bluesky.simulated import SimulatedDiffractometer
from xrd_strain_plugin.cli.demo import SAMPLES, STEP_TWO_THETA_DEG, scan_limits_two_theta_deg
from xrd_strain_plugin.inference import Inverter, default_bundle_path
from xrd_strain_plugin.physics.materials import make_reflection
from xrd_strain_plugin.refinement import RefineOptions, refine_curve

inv = Inverter(default_bundle_path())
card = inv.bundle.card
refl = make_reflection(card.material, tuple(card.hkl), card.wavelength_angstrom)
seeds = [int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1]
kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
kw_truth = kw.pop("truth", False)
only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
opts = RefineOptions.from_dict(kw)
tot = []
for seed in seeds:
    rng = np.random.default_rng(seed)
    for ds in SAMPLES:
        s = ds.simulated()
        d = SimulatedDiffractometer(reflection=refl, sample=s, rng=rng, window_deg=(-5.0, 1.0))
        d.load(s)
        lo, hi = scan_limits_two_theta_deg(refl, ds.strain_max_percent)
        n = int(round((hi - lo) / STEP_TWO_THETA_DEG)) + 1
        tt = np.linspace(lo, hi, n)
        counts = d.counts(tt)
        if only and ds.name not in only:
            continue  # drawn all the same: the other samples keep their noise
        z = (np.arange(s.strain.size) + 0.5) / s.strain.size
        i = int(np.argmax(s.strain))
        zt = z[i] * s.thickness_nm
        net = inv.invert(tt, counts, refl)
        if kw_truth:
            from xrd_strain_plugin.refinement import StartProfile

            net = StartProfile(
                depth_nm=z * s.thickness_nm,
                strain_percent=100 * s.strain,
                debye_waller=s.debye_waller,
                fwhm_deg=0.01,
                source="truth",
            )
        t0 = time.process_time()
        r = refine_curve(tt, counts, refl, start=net, options=opts)
        cpu = time.process_time() - t0
        dz = abs(r.depth_of_max_nm - zt) / s.thickness_nm
        dt = abs(r.thickness_nm - s.thickness_nm) / s.thickness_nm
        de = abs(r.strain_max_percent - ds.strain_max_percent) / ds.strain_max_percent
        ok = dz <= 0.1 and dt <= 0.1 and de <= 0.1
        alts = getattr(r, "alternatives", ())
        alt_ok = (
            any(
                abs(a["depth_of_max_nm"] - zt) / s.thickness_nm <= 0.1
                and abs(a["thickness_nm"] - s.thickness_nm) / s.thickness_nm <= 0.1
                and abs(a["strain_max_percent"] - ds.strain_max_percent) / ds.strain_max_percent <= 0.1
                for a in alts
            )
            if alts
            else False
        )
        tot.append(ok)
        print(
            f"seed {seed} {ds.name:14s} dz {dz:.2f} dt {dt:.2f} de {de:.2f} {'OK ' if ok else 'BAD'} sig {r.sigma_i:.3f} floor {r.noise_floor_sigma_i:.3f} poor {r.poor_fit} path {r.path} cpu {cpu:.1f}s amb {getattr(r, 'ambiguous', None)} n_alt {len(alts)} alt_ok {alt_ok}",
            flush=True,
        )
print("ok", sum(tot), "/", len(tot))
