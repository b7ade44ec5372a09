"""Reproduce issue 8's figures through the CLI doors: operating points out of sample, a second site
before and after ``tbens recalibrate``, what ``tbens monitor`` says, and refer rates.

    flock /tmp/tbens-heavy.lock python scripts/measure_decisions.py --scratch /work/scratch-8/measure \\
        --run before=/work/runs/quickstart --run after=/work/scratch-8/qs-after

Each ``--run NAME=FOLDER`` is a trained run (train-folds output); it is copied and re-exported with this
code (Platt calibration), so only the training differs between runs. Data are made with
``tbens make-demo-data`` (fixed seeds), non-chest inputs are drawn here, and real chest radiographs come
from TBX11K when present. Steps whose outputs exist are skipped (delete the scratch folder to redo).
Writes ``results.json`` and ``results.md`` in the scratch folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from sklearn.metrics import roc_auc_score

TBX11K = Path("/work/shared/data/tbx11k-tb/images")
SITES = {
    "siteA": ("hospital-a", 2, 1000, 11),
    "siteB": ("hospital-b", 300, 1000, 12),
    "siteC": ("hospital-c", 2, 200, 13),
}
"""Folder -> (site, labelled train images, test images, seed)."""
NON_CHEST_EACH = 25


def tbens(*args: object, capture: bool = False) -> str:
    command = [sys.executable, "-m", "tbensemble", "-q", *map(str, args)]
    print("$ tbens", " ".join(map(str, args)), flush=True)
    done = subprocess.run(command, check=True, text=True, capture_output=capture)
    return done.stdout if capture else ""


def make_data(scratch: Path) -> None:
    for folder, (site, n_train, n_test, seed) in SITES.items():
        if not (scratch / folder / "_truth" / "test_labels.csv").is_file():
            tbens(
                "make-demo-data",
                scratch / folder,
                "--site",
                site,
                "--n-train",
                n_train,
                "--n-test",
                n_test,
                "--seed",
                seed,
            )
    non_chest = scratch / "non-chest"
    if not non_chest.is_dir():
        write_non_chest(non_chest)
    tbx = scratch / "tbx11k"
    if TBX11K.is_dir() and not tbx.is_dir():
        tbx.mkdir()
        for path in sorted(TBX11K.glob("*.png"))[:200]:
            (tbx / path.name).symlink_to(path)


def write_non_chest(folder: Path, size: int = 256, seed: int = 0) -> None:
    """Inputs an edge box may be sent by mistake: photograph-like scenes, a hand-like radiograph, noise,
    blank and saturated frames (``NON_CHEST_EACH`` of each)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)

    def photo() -> np.ndarray:
        coarse = rng.normal(128, 60, (rng.integers(4, 12), rng.integers(4, 12), 3)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC).convert("L")
        return np.asarray(image, float) + rng.normal(0, 8, (size, size))

    def hand() -> np.ndarray:
        image = Image.new("L", (size, size), int(rng.integers(10, 40)))
        draw = ImageDraw.Draw(image)
        x0 = rng.integers(40, 90)
        draw.ellipse((x0, 120, x0 + 120, 240), fill=int(rng.integers(140, 190)))
        for i in range(4):
            x = x0 + 5 + 30 * i
            top = 10 + rng.integers(0, 40)
            draw.rounded_rectangle((x, top, x + 20, 150), 9, fill=int(rng.integers(150, 200)))
            for joint in np.linspace(top + 25, 140, 3):
                draw.line((x, joint, x + 20, joint), fill=90, width=2)
        draw.rounded_rectangle((x0 + 125, 95, x0 + 150, 190), 10, fill=170)
        return np.asarray(image, float) + rng.normal(0, 5, (size, size))

    makers = {
        "photo": photo,
        "hand": hand,
        "noise": lambda: rng.integers(0, 256, (size, size)).astype(float),
        "blank": lambda: np.full((size, size), float(rng.integers(0, 256))),
        "saturated": lambda: photo() * rng.uniform(3.0, 5.0),  # over-exposed: most of the frame clips at 255
    }
    for kind, make in makers.items():
        for i in range(NON_CHEST_EACH):
            Image.fromarray(np.clip(make(), 0, 255).astype(np.uint8)).save(folder / f"{kind}{i}.png")


def export_copy(scratch: Path, name: str, trained: Path) -> Path:
    run = scratch / f"run-{name}"
    if not (run / "manifest.json").is_file():
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(trained, run, ignore=shutil.ignore_patterns("onnx", "manifest.json", "report"))
        tbens("export", run, "--calibration", "platt")
    return run


def decisions(artifacts: Path, images: Path, out: Path) -> pd.DataFrame:
    if not out.is_file():
        tbens("predict", "--artifacts", artifacts, "--images", images, "--out", out.with_suffix(".sub.csv"),
              "--decisions", out, "--device", "cpu", capture=True)  # fmt: skip
    return pd.read_csv(out, dtype={"image_id": str, "reasons": str}, keep_default_na=False)


def figures(frame: pd.DataFrame, truth: Path | None) -> dict:
    """Threshold-only and as-shipped (refer counted as flagged) figures, AUCs, refer rate and reasons."""
    reasons = pd.Series([r for text in frame["reasons"] for r in text.split(";") if r]).value_counts()
    out = {"n": len(frame), "refer_rate": float((frame["decision"] == "refer").mean()),
           "refer_reasons": {k: int(v) for k, v in reasons.items()}}  # fmt: skip
    if truth is None:
        return out
    merged = pd.read_csv(truth, dtype={"image_id": str}).merge(frame, on="image_id")
    y = merged["label"].to_numpy() == 1
    called = merged["score"].to_numpy() >= merged["threshold"].to_numpy()
    flagged = merged["decision"].to_numpy() != "normal"
    decided = merged["decision"].to_numpy() != "refer"
    out.update(
        n_tb=int(y.sum()),
        auc=float(roc_auc_score(y, merged["score"])),
        auc_decided=float(roc_auc_score(y[decided], merged["score"][decided])) if len(set(y[decided])) == 2 else None,
        threshold=float(merged["threshold"].iloc[0]),
        sensitivity_at_threshold=float(called[y].mean()),
        specificity_at_threshold=float((~called[~y]).mean()),
        sensitivity_refer_flagged=float(flagged[y].mean()),
        specificity_as_shipped=float((~flagged[~y]).mean()),
    )
    return out


def at_point(frame: pd.DataFrame, truth: Path, threshold: float) -> dict:
    merged = pd.read_csv(truth, dtype={"image_id": str}).merge(frame, on="image_id")
    y = merged["label"].to_numpy() == 1
    called = merged["score"].to_numpy() >= threshold
    return {"threshold": threshold, "sensitivity": float(called[y].mean()), "specificity": float((~called[~y]).mean())}


def monitor(artifacts: Path, decision_file: Path) -> dict:
    return json.loads(
        tbens("monitor", "--artifacts", artifacts, "--decisions", decision_file, "--format", "json", capture=True)
    )


def measure_run(scratch: Path, name: str, run: Path) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    ensemble = manifest["ensemble"]
    truth_a = scratch / "siteA" / "_truth" / "test_labels.csv"
    result: dict = {"oof_auc": ensemble["oof_auc"], "default_point": ensemble["default_operating_point"], "points": {}}
    site_a = decisions(run, scratch / "siteA" / "test", scratch / f"{name}-siteA.csv")
    result["siteA"] = figures(site_a, truth_a)
    for point_name, point in ensemble["operating_points"].items():
        result["points"][point_name] = {
            "oof_sensitivity": point["sensitivity"], "oof_specificity": point["specificity"],
            "guarantee": point.get("guarantee"), **at_point(site_a, truth_a, point["threshold"]),
        }  # fmt: skip
    result["siteA"]["monitor"] = monitor(run, scratch / f"{name}-siteA.csv")
    truth_b = scratch / "siteB" / "_truth" / "test_labels.csv"
    site_b = decisions(run, scratch / "siteB" / "test", scratch / f"{name}-siteB.csv")
    result["siteB"] = {
        "shipped": figures(site_b, truth_b),
        "monitor_shipped": monitor(run, scratch / f"{name}-siteB.csv"),
    }
    recalibrated = scratch / f"run-{name}-siteB"
    if not (recalibrated / "manifest.json").is_file():
        tbens(
            "recalibrate",
            "--artifacts",
            run,
            "--data",
            scratch / "siteB",
            "--out",
            recalibrated,
            "--force",
            "--device",
            "cpu",
        )
    after = decisions(recalibrated, scratch / "siteB" / "test", scratch / f"{name}-siteB-recal.csv")
    result["siteB"]["recalibrated"] = figures(after, truth_b)
    result["siteB"]["recalibrated"]["site_record"] = json.loads((recalibrated / "manifest.json").read_text())[
        "ensemble"
    ]["site"]
    result["siteB"]["monitor_recalibrated"] = monitor(recalibrated, scratch / f"{name}-siteB-recal.csv")
    result["siteB"]["monitor_recalibrated_siteA"] = monitor(recalibrated, scratch / f"{name}-siteA.csv")
    result["siteC"] = figures(decisions(run, scratch / "siteC" / "test", scratch / f"{name}-siteC.csv"),
                              scratch / "siteC" / "_truth" / "test_labels.csv")  # fmt: skip
    non_chest = decisions(run, scratch / "non-chest", scratch / f"{name}-non-chest.csv")
    kinds = non_chest["image_id"].str.extract(r"^([a-z]+)")[0]
    result["non_chest"] = {kind: figures(non_chest[kinds == kind], None) for kind in sorted(kinds.unique())}
    if (scratch / "tbx11k").is_dir():
        tbx = decisions(run, scratch / "tbx11k", scratch / f"{name}-tbx11k.csv")
        result["tbx11k"] = figures(tbx, None) | {"flagged_tb_or_refer": float((tbx["decision"] != "normal").mean())}
    return result


def markdown(results: dict) -> str:
    lines = ["# Issue 8 measurements", ""]
    for name, r in results.items():
        a, b = r["siteA"], r["siteB"]
        lines += [
            f"## run `{name}` (default point {r['default_point']})",
            "",
            f"- OOF AUC {r['oof_auc']:.3f}; site A test AUC {a['auc']:.3f} ({a['n']} images, {a['n_tb']} TB).",
            "",
            "| point | OOF sens / spec | lower bound | site A test sens / spec |",
            "|---|---|---|---|",
        ]
        for point_name, p in r["points"].items():
            bound = p["guarantee"]["sensitivity_lower_bound"] if p.get("guarantee") else None
            lines.append(
                f"| {point_name} | {p['oof_sensitivity']:.3f} / {p['oof_specificity']:.3f} | "
                f"{'' if bound is None else f'{bound:.3f}'} | {p['sensitivity']:.3f} / {p['specificity']:.3f} |"
            )
        rows = [
            ("site A", a),
            ("site B shipped", b["shipped"]),
            ("site B recalibrated", b["recalibrated"]),
            ("site C", r["siteC"]),
        ]
        lines += [
            "",
            "| data | AUC | sens / spec at threshold | as shipped (refer = flagged) | refer rate | reasons |",
            "|---|---|---|---|---|---|",
        ]
        for label, f in rows:
            lines.append(
                f"| {label} | {f['auc']:.3f} | {f['sensitivity_at_threshold']:.3f} / {f['specificity_at_threshold']:.3f} | "
                f"{f['sensitivity_refer_flagged']:.3f} / {f['specificity_as_shipped']:.3f} | {f['refer_rate']:.1%} | {f['refer_reasons']} |"
            )
        lines += ["", "| monitor | status | PSI | refer rate |", "|---|---|---|---|"]
        for label, m in (("site A, shipped", a["monitor"]), ("site B, shipped", b["monitor_shipped"]),
                         ("site B, recalibrated", b["monitor_recalibrated"]), ("site A, recalibrated for B", b["monitor_recalibrated_siteA"])):  # fmt: skip
            lines.append(f"| {label} | {m['status']} | {m['psi']:.3f} | {m['refer_rate']:.1%} |")
        lines += ["", "| other inputs | refer rate | reasons |", "|---|---|---|"]
        for kind, f in r["non_chest"].items():
            lines.append(f"| {kind} | {f['refer_rate']:.1%} | {f['refer_reasons']} |")
        if "tbx11k" in r:
            lines.append(
                f"| TBX11K (real chest, TB) | {r['tbx11k']['refer_rate']:.1%} | {r['tbx11k']['refer_reasons']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--run", action="append", required=True, help="NAME=TRAINED_RUN_FOLDER; repeatable")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    make_data(args.scratch)
    results = {}
    for spec in args.run:
        name, _, folder = spec.partition("=")
        results[name] = measure_run(args.scratch, name, export_copy(args.scratch, name, Path(folder)))
        (args.scratch / "results.json").write_text(json.dumps(results, indent=2))
        (args.scratch / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
