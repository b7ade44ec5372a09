"""Reproduce the optimize gate table on the three big backbones at 384 px, trained briefly on phantoms.

Random weights exaggerate quantisation error and a saturated head hides it, so the gate needs trained,
unsaturated models; training the leaderboard properly takes a GPU. This trains each backbone from scratch
for a few dozen steps on phantoms (fold 0 of 2 only), then runs the ordinary commands:

    tbens make-demo-data DATA --n-train N --n-test 0 --size SIZE --seed 10   (when DATA does not exist)
    tbens train-folds --config <brief config> --data DATA --out RUN --folds 0 [--backbones B]
    <oof.csv of fold 0, which train-folds writes only once every fold is done>
    tbens export RUN
    tbens optimize RUN --variants ...

The brief config (written beside RUN as RUN.brief.yaml and shown by --print-config): 2 folds, batch 8,
2 epochs, no warm-up, no pretrained weights, no weight averaging (EMA over about 40 steps would keep mostly the
initial weights), TTA identity + crop90. Every step resumes: finished fold models, the export and the
optimized models are kept. The models learn little in about 40 steps (held-out AUC near 0.5): the table they
give measures precision error on trained weights, not accuracy on the task.

300 phantoms by default, so fold 0 trains on 150: batch-norm statistics are re-estimated only from 128
training images or more, and without that EfficientNetB5 kept the running averages of its few steps and gave
every image the same score. On 2 CPU cores (no GPU): about 6-9 min of training per backbone, export and
optimize 14 min. Train one backbone per call to keep each job short:

    python scripts/brief_big_backbones.py RUN --data DATA --backbones resnet50 --stop-after train
    python scripts/brief_big_backbones.py RUN --data DATA --backbones densenet201 --stop-after train
    python scripts/brief_big_backbones.py RUN --data DATA
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tbensemble.core import atomic
from tbensemble.core.config import TrainConfig, dump_config
from tbensemble.core.metrics import oof_ensemble

BACKBONES = ["resnet50", "densenet201", "efficientnetb5"]
VARIANTS = "openvino-fp32,openvino-bf16,openvino-int8,ort-int8-qoperator,ort-int8-conv"
FOLD = 0
STEPS = ("data", "train", "export", "optimize")


def brief_config(data: Path, run: Path, size: int, epochs: int) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        out=str(run),
        backbones=list(BACKBONES),
        weights=None,
        image_size=size,
        folds=2,
        batch_size=8,
        epochs=epochs,
        warmup_epochs=0,
        ema_momentum=0.0,
        ensemble_weighting="equal",
    )


def tbens(*args: str) -> None:
    """Run one tbens command of this environment; stop on its failure with its exit status."""
    beside = Path(sys.executable).with_name("tbens")
    program = str(beside) if beside.is_file() else shutil.which("tbens")
    if program is None:
        sys.exit("tbens: not found; install tbensemble[train,optimize] in this environment")
    print("$ tbens " + " ".join(args), flush=True)
    result = subprocess.run([program, *args], check=False)
    if result.returncode:
        sys.exit(result.returncode)


def write_fold_oof(run: Path) -> list[str]:
    """oof.csv holding fold 0's held-out images, a column per backbone whose fold 0 is done, and the ensemble."""
    folds = pd.read_csv(run / "folds.csv", dtype={"image_id": str})
    oof = folds.loc[folds["fold"] == FOLD, ["image_id", "label", "fold"]]
    done = [b for b in BACKBONES if (run / "models" / b / f"fold{FOLD}" / "done.json").is_file()]
    for backbone in done:
        scores = pd.read_csv(run / "models" / backbone / f"fold{FOLD}" / "val_scores.csv", dtype={"image_id": str})
        oof = oof.merge(scores[["image_id", "score"]].rename(columns={"score": backbone}), on="image_id")
    if done:
        oof["ensemble"] = oof_ensemble(oof, done)
        atomic.write_csv(run / "oof.csv", oof)
        print(f"{run / 'oof.csv'}: {len(oof)} held-out images of fold {FOLD}, backbones {', '.join(done)}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="Run folder to create or resume.")
    parser.add_argument("--data", type=Path, required=True, help="Phantom training data (made when missing).")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="Train only these (default: all three).")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=300, help="Phantoms to make when --data is missing.")
    parser.add_argument("--variants", default=VARIANTS, help="Passed to tbens optimize.")
    parser.add_argument("--calibration-images", type=int, default=None, help="Passed to tbens optimize.")
    parser.add_argument("--stop-after", choices=STEPS, default="optimize")
    parser.add_argument("--print-config", action="store_true", help="Print the brief config and exit.")
    args = parser.parse_args()
    chosen = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BACKBONES))
    if unknown:
        parser.error(f"--backbones {','.join(unknown)}: not one of {', '.join(BACKBONES)}")
    run, data = args.run.resolve(), args.data.resolve()
    config = brief_config(data, run, args.image_size, args.epochs)
    if args.print_config:
        print(dump_config(config), end="")
        return
    steps = STEPS[: STEPS.index(args.stop_after) + 1]

    if not data.exists():
        size = str(args.image_size)
        tbens(
            "make-demo-data", str(data), "--n-train", str(args.n_train), "--n-test", "0", "--size", size, "--seed", "10"
        )
    if "train" in steps:
        config_path = run.with_name(run.name + ".brief.yaml")
        atomic.write_text(config_path, dump_config(config))
        tbens("train-folds", "--config", str(config_path), "--folds", str(FOLD), "--backbones", ",".join(chosen))
        write_fold_oof(run)
    if "export" in steps:
        tbens("export", str(run))
    if "optimize" in steps:
        extra = ["--calibration-images", str(args.calibration_images)] if args.calibration_images else []
        tbens("optimize", str(run), "--variants", args.variants, *extra)


if __name__ == "__main__":
    main()
