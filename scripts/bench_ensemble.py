"""Does the ensemble earn its keep? The seed's way against the configured ensemble and its members, on
fresh phantoms, over several seeds so the run-to-run spread shows beside the gain.

Per seed: a phantom training set and a test set of the same generator (``--difficulty``), then
- the seed's way: one model (``--seed-backbone``, the first release's tinycnn by default, in or out of the
  ensemble), one 80/20 split (fold 0 of 5), no TTA;
- the configured ensemble: every backbone x every fold (``tbens train-folds``), TTA, each fold model's test
  scores ranked within the test batch, averaged with the weights train-folds chose (what ``tbens predict``
  does; export's parity check keeps Keras and ONNX Runtime within 1e-4, so Keras scores stand in here);
- each member alone: its folds' ranks averaged, TTA (and the equal-weight ensemble when other weights
  were chosen).
It prints test AUC with 95% intervals, the ensemble's paired gain over its best member (chosen on the test
set, which favours the member), over the member with the best OOF AUC (the one a user could have shipped
alone) and over the seed's way (stratified bootstrap on the test images), training time, OOF AUC against test AUC, and the
validation-AUC swing (std over the last ``--swing-epochs`` epochs of each fold's history.csv). With several
seeds it ends with each figure's mean over seeds, and for the gains a t-interval of that mean: each seed has its
own data and training, so that interval holds training noise, which one seed's bootstrap leaves out.

    python scripts/bench_ensemble.py --config configs/quickstart.yaml --seeds 1,2 --out /tmp/bench
    python scripts/bench_ensemble.py --config configs/quickstart.yaml --seeds 1 --difficulty 0.6 --out /tmp/hard
    python scripts/bench_ensemble.py --runs RUN_A,RUN_B --test-data /tmp/bench/seed1/data   # score existing runs
    python scripts/bench_ensemble.py --swing RUN_A,RUN_B --swing-epochs 6                    # swing only

Wrap it in ``flock /tmp/tbens-heavy.lock`` on a shared machine; one quickstart seed (5 folds × 2 backbones)
takes about 12 minutes on 2 CPU cores. Runs are kept under ``--out`` (resumable: finished folds are skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tbensemble.core.bootstrap import auc_samples, bootstrap_indices, percentile_interval
from tbensemble.core.config import TrainConfig, load_config
from tbensemble.core.metrics import auc, rank_average


def make_data(folder: Path, seed: int, n_train: int, n_test: int, difficulty: float) -> Path:
    from tbensemble.data.phantoms import write_demo_dataset

    if not (folder / "_truth" / "test_labels.csv").is_file():
        write_demo_dataset(folder, n_train=n_train, n_test=n_test, seed=seed, difficulty=difficulty)
    return folder


def train(config: TrainConfig, backbones: list[str] | None = None, folds: list[int] | None = None) -> float:
    """Train (resuming) and return the wall time of this call."""
    from tbensemble.train.trainer import train_folds

    start = time.monotonic()
    train_folds(config, backbones=backbones, folds=folds)
    return time.monotonic() - start


def test_scores(run: Path, config: TrainConfig, data: Path, views: list[str], folds: list[int]) -> dict[str, dict]:
    """Per backbone, per fold model: TTA-mean probability of every test image, in test_labels.csv order."""
    import keras

    from tbensemble.train.pipeline import load_images
    from tbensemble.train.scoring import predict_tta
    from tbensemble.train.trainer import fold_dir

    truth = pd.read_csv(data / "_truth" / "test_labels.csv", dtype={"image_id": str})
    images = load_images([str(data / "test" / i) for i in truth["image_id"]], config.image_size)
    scores: dict[str, dict] = {}
    for backbone in config.backbones:
        for fold in folds:
            model = keras.models.load_model(fold_dir(run, backbone, fold) / "model.keras", compile=False)
            scores.setdefault(backbone, {})[fold] = predict_tta(model, images, views, config.batch_size)
            keras.backend.clear_session()
    return scores


def run_weights(run: Path, backbones: list[str]) -> dict[str, float]:
    ensemble = json.loads((run / "metrics.json").read_text())["ensemble"]
    return {b: float(ensemble["weights"][b]) for b in backbones}


def ensemble_of(scores: dict[str, dict], weights: dict[str, float]) -> np.ndarray:
    """The engine's batch ensemble: each fold model's scores to ranks, weighted mean (backbone weight shared
    among its folds)."""
    columns = {f"{b}-f{k}": s for b, per_fold in scores.items() for k, s in per_fold.items()}
    model_weights = {f"{b}-f{k}": weights[b] / len(scores[b]) for b, per_fold in scores.items() for k in per_fold}
    return rank_average(columns, model_weights)


def swing(run: Path, backbones: list[str], last: int) -> dict[str, dict[str, float]]:
    """Validation AUC over each fold's last ``last`` epochs: its std, its mean absolute change from one epoch
    to the next, and its largest drop between two epochs (a rise is learning, a drop is a swing), averaged
    over folds; and its lowest value in any fold over all epochs."""
    out = {}
    for backbone in backbones:
        histories = [pd.read_csv(p)["val_auc"] for p in sorted((run / "models" / backbone).glob("fold*/history.csv"))]
        if not histories:
            continue
        tails = [h.tail(last) for h in histories]
        out[backbone] = {
            "std": float(np.mean([t.std(ddof=1) for t in tails])),
            "mean_abs_step": float(np.mean([t.diff().abs().mean() for t in tails])),
            "largest_drop": float(np.mean([max(0.0, -t.diff().min()) for t in tails])),
            "min_all_epochs": float(min(h.min() for h in histories)),
        }
    return out


def _swing_line(swings: dict[str, dict[str, float]]) -> str:
    return "; ".join(
        f"{b} std {s['std']:.4f}, mean |step| {s['mean_abs_step']:.4f}, largest drop {s['largest_drop']:.4f}, "
        f"lowest {s['min_all_epochs']:.3f}"
        for b, s in swings.items()
    )


def compare(labels: np.ndarray, columns: dict[str, np.ndarray], pairs: dict[str, tuple[str, str]], n_boot: int) -> dict:
    """Each column's AUC with its interval, and each labelled pair's paired gain (new - old) with its interval."""
    indices = bootstrap_indices(labels, n_boot, seed=0)
    samples = {name: auc_samples(labels, s, indices) for name, s in columns.items()}
    result: dict[str, Any] = {}
    for name, s in columns.items():
        low, high = percentile_interval(samples[name])
        result[name] = {"auc": auc(labels, s, name), "ci": [low, high]}
    for label, (new, old) in pairs.items():
        low, high = percentile_interval(samples[new] - samples[old])
        result[label] = {"delta": result[new]["auc"] - result[old]["auc"], "ci": [low, high]}
    return result


def bench_seed(args: argparse.Namespace, base: TrainConfig, seed: int) -> dict[str, Any]:
    root = Path(args.out) / f"seed{seed}"
    data = make_data(root / "data", seed, args.n_train, args.n_test, args.difficulty)
    labels = pd.read_csv(data / "_truth" / "test_labels.csv")["label"].to_numpy()

    ensemble_config = dataclasses.replace(base, data=str(data), out=str(root / "ensemble"), seed=base.seed + seed)
    ensemble_seconds = train(ensemble_config)
    folds = list(range(base.folds))
    scores = test_scores(root / "ensemble", ensemble_config, data, list(base.tta), folds)
    weights = run_weights(root / "ensemble", list(base.backbones))

    single = args.seed_backbone
    seed_run = root / f"seed-way-{single}"
    seed_config = dataclasses.replace(
        base,
        data=str(data),
        out=str(seed_run),
        backbones=[single],
        folds=5,
        tta=["identity"],
        seed=base.seed + seed,
    )
    seed_seconds = train(seed_config, folds=[0])
    seed_scores = test_scores(seed_run, seed_config, data, ["identity"], [0])[single][0]

    columns = {"ensemble": ensemble_of(scores, weights), "seed's way": seed_scores}
    if len(set(weights.values())) > 1:
        columns["ensemble, equal weights"] = ensemble_of(scores, dict.fromkeys(weights, 1.0))
    for backbone in base.backbones:
        columns[backbone] = ensemble_of({backbone: scores[backbone]}, {backbone: 1.0})
    member_auc = {b: auc(labels, columns[b]) for b in base.backbones}
    best = max(member_auc, key=member_auc.__getitem__)
    metrics = json.loads((root / "ensemble" / "metrics.json").read_text())
    oof_best = max(base.backbones, key=lambda b: metrics["backbones"][b]["oof_auc"])
    pairs = {
        "ensemble - best member": ("ensemble", best),
        "ensemble - OOF-best member": ("ensemble", oof_best),
        "ensemble - seed's way": ("ensemble", "seed's way"),
    }
    result = compare(labels, columns, pairs, args.bootstrap)
    return {
        "seed": seed,
        "seed_backbone": single,
        "n_test": int(labels.size),
        "n_test_tb": int(labels.sum()),
        "test": result,
        "best_member": best,
        "oof_best_member": oof_best,
        "weighting": metrics["ensemble"]["weighting"],
        "weights": weights,
        "oof_auc": {b: metrics["backbones"][b]["oof_auc"] for b in base.backbones}
        | {"ensemble": metrics["ensemble"]["oof_auc"]},
        "nested": nested_figures(metrics),
        "train_seconds": {"ensemble": ensemble_seconds, "seed's way": seed_seconds},
        "swing": swing(root / "ensemble", list(base.backbones), args.swing_epochs),
    }


def nested_figures(metrics: dict) -> dict[str, dict[str, float]] | None:
    """Per weighting method: nested-CV OOF AUC with its interval, and its paired gain over the best backbone."""
    comparison = metrics["ensemble"].get("weighting_comparison")
    if not comparison:
        return None
    return {
        method: {
            "auc": r["nested_auc"],
            "ci": [r["ci_low"], r["ci_high"]],
            "vs_best": r["vs_best_backbone"]["delta"],
            "vs_best_ci": [r["vs_best_backbone"]["ci_low"], r["vs_best_backbone"]["ci_high"]],
        }
        for method, r in comparison["methods"].items()
    }


def score_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Existing run folders scored on ``--test-data``: OOF against test AUC, swing (e.g. a run made before)."""
    data = Path(args.test_data)
    labels = pd.read_csv(data / "_truth" / "test_labels.csv")["label"].to_numpy()
    out = []
    for run in map(Path, args.runs.split(",")):
        config = load_config(run / "config.yaml")
        scores = test_scores(run, config, data, list(config.tta), list(range(config.folds)))
        metrics = json.loads((run / "metrics.json").read_text())
        weights = {b: float(metrics["ensemble"]["weights"][b]) for b in config.backbones}
        columns = {"ensemble": ensemble_of(scores, weights)}
        columns.update({b: ensemble_of({b: scores[b]}, {b: 1.0}) for b in config.backbones})
        out.append(
            {
                "run": str(run),
                "test": compare(labels, columns, {}, args.bootstrap),
                "oof_auc": {b: metrics["backbones"][b]["oof_auc"] for b in config.backbones}
                | {"ensemble": metrics["ensemble"]["oof_auc"]},
                "swing": swing(run, list(config.backbones), args.swing_epochs),
            }
        )
    return out


def _fmt(entry: dict) -> str:
    low, high = entry["ci"]
    value = entry.get("auc", entry.get("delta"))
    return f"{value:+.4f} [{low:+.4f}, {high:+.4f}]" if "delta" in entry else f"{value:.4f} [{low:.4f}, {high:.4f}]"


def print_seed(result: dict[str, Any]) -> None:
    print(f"\nseed {result['seed']}: {result['n_test']} test phantoms ({result['n_test_tb']} TB)")
    print(f"  seed's way: one {result['seed_backbone']}, one 80/20 split, no TTA")
    print(f"  weighting: {result['weighting']} {json.dumps({k: round(v, 3) for k, v in result['weights'].items()})}")
    for name, entry in result["test"].items():
        oof = result["oof_auc"].get(name)
        extra = f"   OOF {oof:.4f}" if oof is not None else ""
        member = {"ensemble - best member": "best_member", "ensemble - OOF-best member": "oof_best_member"}.get(name)
        extra += f"   ({result[member]})" if member else ""
        print(f"  {name:28s} {_fmt(entry)}{extra}")
    seconds = result["train_seconds"]
    seed_way = seconds["seed's way"]
    print(f"  training: ensemble {seconds['ensemble']:.0f}s, seed's way {seed_way:.0f}s")
    print(f"  val-AUC swing over the last epochs: {_swing_line(result['swing'])}")
    if result["nested"]:
        print("  nested-CV OOF AUC per weighting method (gain over the best backbone, paired):")
        for method, r in result["nested"].items():
            low, high = r["ci"]
            gain_low, gain_high = r["vs_best_ci"]
            print(
                f"    {method:8s} {r['auc']:.4f} [{low:.4f}, {high:.4f}]   "
                f"{r['vs_best']:+.4f} [{gain_low:+.4f}, {gain_high:+.4f}]"
            )


def over_seeds(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each figure's mean and sd over seeds; for the paired gains also a 95% t-interval of the mean and the
    count of seeds where the ensemble is at least as good. Each seed has its own data and its own training, so
    this interval holds training noise as well as test sampling, which the per-seed bootstrap leaves out."""
    out = {}
    for name in results[0]["test"]:
        values = np.array([r["test"][name].get("auc", r["test"][name].get("delta")) for r in results])
        entry = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "n": int(values.size)}
        if "delta" in results[0]["test"][name]:
            half = stats.t.ppf(0.975, values.size - 1) * entry["sd"] / np.sqrt(values.size)
            entry |= {"ci": [entry["mean"] - half, entry["mean"] + half], "at_least_as_good": int((values >= 0).sum())}
        out[name] = entry
    return out


def print_over_seeds(results: list[dict[str, Any]]) -> None:
    print(f"\nover {len(results)} seeds: mean ± sd of test AUC; for gains, the t-interval of the mean over seeds")
    for name, e in over_seeds(results).items():
        line = f"  {name:28s} {e['mean']:{'+' if 'ci' in e else ''}.4f} ± {e['sd']:.4f}"
        if "ci" in e:
            line += f"   [{e['ci'][0]:+.4f}, {e['ci'][1]:+.4f}]   ensemble ≥ it on {e['at_least_as_good']} of {e['n']}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument(
        "--seed-backbone",
        default="tinycnn",
        help="The seed's way's one model: the first release's tinycnn (issue 11), or e.g. the ensemble's best member.",
    )
    parser.add_argument("--seeds", default="1,2", help="Comma-separated data seeds.")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument(
        "--difficulty", type=float, default=0.35, help="Phantom difficulty (make-demo-data's default 0.35)."
    )
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--swing-epochs", type=int, default=6)
    parser.add_argument("--out", default="artifacts/bench-ensemble")
    parser.add_argument("--runs", help="Instead of training: score these run folders (comma-separated) on --test-data.")
    parser.add_argument("--test-data", help="A make-demo-data folder whose test set scores --runs.")
    parser.add_argument("--swing", help="Only print the validation-AUC swing of these run folders (comma-separated).")
    parser.add_argument("--json", help="Also write every figure to this JSON file.")
    args = parser.parse_args(argv)

    if args.swing:
        results = []
        for run in map(Path, args.swing.split(",")):
            backbones = [p.name for p in sorted((run / "models").iterdir())]
            results.append({"run": str(run), "swing": swing(run, backbones, args.swing_epochs)})
            print(f"{run}: last {args.swing_epochs} epochs: {_swing_line(results[-1]['swing'])}")
    elif args.runs:
        if not args.test_data:
            parser.error("--runs needs --test-data")
        results = score_runs(args)
        for result in results:
            print(f"\n{result['run']}")
            for name, entry in result["test"].items():
                print(f"  {name:12s} test {_fmt(entry)}   OOF {result['oof_auc'][name]:.4f}")
            print(f"  val-AUC swing over the last {args.swing_epochs} epochs: {_swing_line(result['swing'])}")
    else:
        base = load_config(args.config)
        results = []
        for seed in (int(s) for s in args.seeds.split(",")):
            results.append(bench_seed(args, base, seed))
            print_seed(results[-1])
        if len(results) > 1:
            print_over_seeds(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
