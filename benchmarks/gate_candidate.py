"""Put a candidate bundle through the registry's promotion gate on a held-out test set (issue 14).

Evaluates the registry's current model for the candidate's key and the candidate on the same
test set (Table-2 rows, MSE in each model's paper-label scaling, as ``flows retrain`` does),
adds the candidate to the registry with its row, and promotes it only if
:class:`~xrd_strain_plugin.inference.registry.PromotionGate` (default: no accuracy and no MSE
may regress) says so; otherwise logs the rejection. Prints both rows and the decision as JSON::

    .venv/bin/python benchmarks/gate_candidate.py CANDIDATE_BUNDLE --test DIR --registry ROOT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidate", help="candidate bundle directory")
    parser.add_argument("--test", required=True, help="held-out test set directory")
    parser.add_argument("--registry", required=True, help="registry root")
    args = parser.parse_args()

    from xrd_strain_plugin.inference import load_bundle
    from xrd_strain_plugin.inference.bundle import read_card
    from xrd_strain_plugin.inference.registry import ModelKey, ModelRegistry, PromotionGate
    from xrd_strain_training.dataset import load_dataset
    from xrd_strain_training.report import evaluate_bundle, table_row

    registry = ModelRegistry(args.registry)
    test = load_dataset(args.test)
    fingerprint = test.manifest["fingerprint"]
    key = ModelKey.from_card(read_card(args.candidate))
    current = registry.current(key)
    rows = {}
    for name, path in (("current", current.path), ("candidate", args.candidate)):
        ev, _ = evaluate_bundle(load_bundle(path), test)
        rows[name] = table_row(ev)
    registry.record_evaluation(current.ref, fingerprint, rows["current"])
    entry = registry.add(args.candidate, evaluation=rows["candidate"], test_fingerprint=fingerprint)
    decision = PromotionGate().decide(rows["candidate"], rows["current"])
    if decision.promote:
        registry.promote(entry.ref, reason="gate on " + fingerprint[:12] + ": " + "; ".join(decision.reasons))
    else:
        registry.log_rejection(entry.ref, reasons=decision.reasons)
    print(
        json.dumps(
            {
                "test_fingerprint": fingerprint,
                "n_test": test.n,
                "current": current.ref,
                "candidate": entry.ref,
                "rows": rows,
                "promoted": decision.promote,
                "reasons": list(decision.reasons),
                "current_after": registry.current(key).ref,
            },
            indent=1,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
