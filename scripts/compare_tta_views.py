"""Which test-time views help? Every fold model of a trained run scored on a labelled test set with each set
of views, per fold model and rank-averaged per backbone and over all, so a view that hurts shows on every model.

    python scripts/compare_tta_views.py RUN --test-data DATA --views identity "identity,crop90" crop90

DATA is a ``tbens make-demo-data`` folder (its ``_truth/test_labels.csv``); ``scripts/bench_ensemble.py`` keeps
one per seed. Keras scores stand in for ONNX Runtime (export's parity check keeps them within 1e-4). It also
prints the probability mean of each backbone's folds beside their rank average.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ensemble import test_scores

from tbensemble.core.config import load_config
from tbensemble.core.metrics import auc, rank_average


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--test-data", type=Path, required=True)
    parser.add_argument("--views", nargs="+", default=["identity", "identity,crop90"], help="comma-separated sets")
    args = parser.parse_args()
    labels = pd.read_csv(args.test_data / "_truth" / "test_labels.csv")["label"].to_numpy()
    config = load_config(args.run / "config.yaml")
    folds = list(range(config.folds))
    for views in args.views:
        scores = test_scores(args.run, config, args.test_data, views.split(","), folds)
        every = {}
        for backbone, per_fold in scores.items():
            every.update({f"{backbone}-f{k}": s for k, s in per_fold.items()})
            fold_aucs = " ".join(f"{auc(labels, s):.4f}" for s in per_fold.values())
            ranked = auc(labels, rank_average(per_fold, dict.fromkeys(per_fold, 1.0)))
            mean = auc(labels, np.mean(list(per_fold.values()), axis=0))
            print(f"{views:20s} {backbone:12s} folds {fold_aucs}   rank average {ranked:.4f}   mean {mean:.4f}")
        print(f"{views:20s} {'all':12s} rank average {auc(labels, rank_average(every, dict.fromkeys(every, 1.0))):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
