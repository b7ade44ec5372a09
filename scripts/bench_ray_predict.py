"""`tbens predict` throughput single-process against `--ray` with 1..N actors, and the driver's peak memory.

    python scripts/bench_ray_predict.py --artifacts artifacts/quickstart --scratch /tmp/bench-predict \
        --images 1000 --copies 10 --actors 1,2

Makes IMAGES test phantoms at the ensemble's input size in SCRATCH/phantoms (once), and a folder of
IMAGES × COPIES images hard-linked under new names (no extra disk) when COPIES > 1. Then, on each folder and
in turn: single-process `predict`, then `predict --ray --ray-actors K` for each K. Each line gives the wall time
of the whole command (Python and Ray start-up included), the Ray scoring rate the command logs (actors' start-up
included), and the driver's peak RSS (VmHWM of the `tbens` process itself; Ray's workers are other processes).
Every `--ray` submission is compared byte for byte with the single-process one. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

DRIVER = """
import atexit, sys
def peak():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    print("DRIVER_PEAK_KB", line.split()[1], file=sys.stderr)
atexit.register(peak)
from tbensemble.cli import main
sys.argv[0] = "tbens"
main()
"""


def tbens(args: list[str], log: Path) -> tuple[float, str]:
    """Seconds of one tbens command run as a child process, and its log (stdout and stderr)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        finished = subprocess.run([sys.executable, "-c", DRIVER, *args], stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    text = log.read_text()
    if finished.returncode:
        sys.exit(f"tbens {' '.join(args)}: exit {finished.returncode}, see {log}")
    return seconds, text


def phantoms(scratch: Path, n: int, size: int, copies: int) -> list[Path]:
    """The image folders to score: N phantoms, and N × COPIES hard links to them when COPIES > 1."""
    base = scratch / "phantoms"
    if not (base / "test").is_dir():
        tbens(
            ["make-demo-data", str(base), "--n-train", "2", "--n-test", str(n), "--size", str(size), "--seed", "5"],
            scratch / "make-demo-data.log",
        )
    folders = [base / "test"]
    if copies > 1:
        many = scratch / f"x{copies}"
        if not many.is_dir():
            many.mkdir()
            for copy in range(copies):
                for image in sorted(folders[0].iterdir()):
                    os.link(image, many / f"c{copy}_{image.name}")
        folders.append(many)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="an exported run (tbens export)")
    parser.add_argument("--scratch", type=Path, required=True, help="folder for phantoms, submissions and logs")
    parser.add_argument("--images", type=int, default=1000, help="phantoms to make")
    parser.add_argument("--copies", type=int, default=10, help="also score IMAGES x COPIES hard-linked images")
    parser.add_argument("--actors", default="1,2", help="comma-separated --ray-actors values")
    parser.add_argument("--ray", dest="address", default=None, help="Ray cluster address (default: local)")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    size = max(model["input"]["size"] for model in json.loads((args.artifacts / "manifest.json").read_text())["models"])
    actors = [int(k) for k in args.actors.split(",")]
    ray_flag = ["--ray", *([args.address] if args.address else [])]
    for folder in phantoms(args.scratch, args.images, size, args.copies):
        n = sum(1 for _ in folder.iterdir())
        common = ["predict", "--artifacts", str(args.artifacts), "--device", "cpu", "--images", str(folder)]
        runs = [("single", [])] + [(f"ray{k}", [*ray_flag, "--ray-actors", str(k)]) for k in actors]
        for label, extra in runs:
            out = args.scratch / f"{folder.name}-{label}.csv"
            seconds, log = tbens([*common, "--out", str(out), *extra], args.scratch / f"{folder.name}-{label}.log")
            peak_kb = int(re.search(r"DRIVER_PEAK_KB (\d+)", log).group(1))
            rate = re.search(r"scored in ([\d.]+)s \(([\d.]+) images/s", log)
            scored = f"  Ray scoring {rate.group(2)} images/s" if rate else ""
            same = ""
            if label != "single":
                same = (
                    "  rows identical"
                    if out.read_bytes() == (args.scratch / f"{folder.name}-single.csv").read_bytes()
                    else "  ROWS DIFFER"
                )
            print(
                f"{n:7d} images  {label:6s}  wall {seconds:6.1f}s ({n / seconds:6.1f} images/s){scored}  "
                f"driver peak {peak_kb / 1024:.0f} MB{same}",
                flush=True,
            )


if __name__ == "__main__":
    main()
