"""Wall time of `tbens train-folds` serial against `--ray`, one after the other, on the same config and data.

    python scripts/bench_ray_train.py --config configs/quickstart.yaml --data data/demo --scratch /tmp/bench-train

Trains the config twice into SCRATCH/serial and SCRATCH/ray (both removed first; serial first unless
`--ray-first`: run both orders on a shared machine, where one pair is noise), then prints each wall time,
whether `folds.csv` is byte-identical, and each run's per-backbone and ensemble OOF AUC from `metrics.json`.
`--ray ADDRESS` points the second run at a cluster (default: a local Ray instance started for the run, one worker
per CPU). Run it alone on the machine (e.g. under `flock`): both runs compete for the same cores otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

TBENS = [sys.executable, "-c", "import sys; from tbensemble.cli import main; sys.argv[0] = 'tbens'; main()"]


def train(config: Path, data: Path, out: Path, extra: list[str]) -> float:
    """Seconds of one `tbens train-folds` run; its output goes to OUT.log."""
    shutil.rmtree(out, ignore_errors=True)
    command = [*TBENS, "train-folds", "--config", str(config), "--data", str(data), "--out", str(out), *extra]
    started = time.perf_counter()
    with open(f"{out}.log", "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode:
        sys.exit(f"{' '.join(command[3:])}: exit {finished.returncode}, see {out}.log")
    return seconds


def oof_aucs(run: Path) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    aucs = {name: figures["oof_auc"] for name, figures in metrics["backbones"].items()}
    aucs["ensemble"] = metrics["ensemble"]["oof_auc"]
    return aucs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, required=True, help="folder for the two run folders and logs")
    parser.add_argument("--ray", dest="address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--ray-first", action="store_true", help="run --ray first (repeat both orders: noise)")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    runs = {
        "serial": lambda: train(args.config, args.data, args.scratch / "serial", []),
        "ray": lambda: train(
            args.config, args.data, args.scratch / "ray", ["--ray", *([args.address] if args.address else [])]
        ),
    }
    order = ["ray", "serial"] if args.ray_first else ["serial", "ray"]
    seconds = {name: runs[name]() for name in order}
    serial_s, ray_s = seconds["serial"], seconds["ray"]
    print(f"serial {serial_s:.1f}s   --ray {ray_s:.1f}s   (ray/serial {ray_s / serial_s:.2f})")
    same = (args.scratch / "serial/folds.csv").read_bytes() == (args.scratch / "ray/folds.csv").read_bytes()
    print(f"folds.csv {'identical' if same else 'DIFFERENT'}")
    serial, on_ray = oof_aucs(args.scratch / "serial"), oof_aucs(args.scratch / "ray")
    for name in serial:
        print(f"OOF AUC {name:12s} serial {serial[name]:.4f}   --ray {on_ray.get(name, float('nan')):.4f}")


if __name__ == "__main__":
    main()
