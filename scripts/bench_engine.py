"""Engine benchmark, printed as one table per part.

(a) Per backbone (random weights, built by ``train.backbones.build_model``, exported to a temp folder,
    each in its own process so conversion memory goes back): images/s of Keras ``predict`` and of the
    engine's ONNX Runtime session at one batch size, their ratio, and Keras/ONNX parity with the head
    rescaled so the sigmoid is not saturated.
(b) End to end: ``engine.predict.predict_images`` on PNG files on disk (decode + resize + TTA + every
    model + ensemble) against the raw session throughput of the same models and views (session.run on
    arrays already in memory), as a fraction; with ``--precision auto`` the models run as their chosen
    variants (``tbens optimize``).
(c) Variants (``--variants``, needs an optimized ``--run``): per backbone (its first fold model) and for
    the whole ensemble, fp32 against the chosen variants on the same arrays, rounds interleaved.

    python scripts/bench_engine.py --backbones resnet50 --size 384 --batch 8          # one backbone
    python scripts/bench_engine.py --backbones tinycnn --size 64 --images 32          # a quick look
    python scripts/bench_engine.py --run artifacts/quickstart --skip-keras --images 64  # (b) on a real run
    python scripts/bench_engine.py --run artifacts/lb --skip-keras --skip-e2e --variants    # (c) after tbens optimize

Timings are medians of ``--repeats`` warm calls; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import functools
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_seconds(call, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_backbone(
    name: str, size: int, batch: int, repeats: int, out_dir: str, parity_dir: str | None
) -> dict[str, Any]:
    """Build, unsaturate the head, export, then time Keras predict and the ONNX session (runs in a child)."""
    import keras

    from tbensemble.engine.session import make_session
    from tbensemble.export import onnx_export, parity
    from tbensemble.train.backbones import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, size, weights=None)
    images = _parity_images(parity_dir, size)
    parity.unsaturate_head(model, images)
    model3 = onnx_export.three_output_model(model)
    start = time.perf_counter()
    data, _ = onnx_export.convert(model3, size, onnx_export.DEFAULT_OPSET, {"backbone": name, "image_size": str(size)})
    convert_s = time.perf_counter() - start
    path = Path(out_dir) / f"{name}.onnx"
    path.write_bytes(data)
    figures = parity.check(model3, path, images, label=name, tolerance=float("inf"))
    x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 1)).astype(np.float32)
    keras_s = _median_seconds(lambda: model.predict(x, batch_size=batch, verbose=0), repeats)
    session, provider = make_session(path, "cpu")
    onnx_s = _median_seconds(lambda: session.run(["probability"], {"image": x}), repeats)
    return {
        "backbone": name,
        "path": str(path),
        "convert_s": convert_s,
        "onnx_mb": path.stat().st_size / 2**20,
        "keras_ips": batch / keras_s,
        "onnx_ips": batch / onnx_s,
        "provider": provider,
        "parity_source": "real" if parity_dir else "random",
        **figures,
    }


def _parity_images(folder: str | None, size: int, n: int = 16) -> np.ndarray:
    from tbensemble.data.decode import load_image
    from tbensemble.data.layout import list_images
    from tbensemble.export.parity import random_images

    if folder is None:
        return random_images(n, size, seed=1)
    paths = list_images(folder)["path"].tolist()[:n]
    return np.stack([load_image(p, size) for p in paths])


def synthetic_artifacts(models: list[dict[str, Any]], size: int, tta: list[str], folder: Path) -> Path:
    """A manifest over the benchmark's exported models (uniform OOF references): enough to run the engine."""
    import shutil

    import onnxruntime as ort

    from tbensemble import __version__
    from tbensemble.core.manifest import (
        SCHEMA_VERSION,
        EnsembleEntry,
        InputSpec,
        Manifest,
        ModelEntry,
        save_manifest,
        sha256_of,
    )

    (folder / "onnx").mkdir(parents=True)
    entries = []
    for m in models:
        file = folder / "onnx" / f"{m['backbone']}.onnx"
        shutil.copy(m["path"], file)
        outputs = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"]).get_outputs()
        channels = next(o.shape[3] for o in outputs if o.name == "features")
        entries.append(
            ModelEntry(
                name=m["backbone"],
                file=f"onnx/{file.name}",
                sha256=sha256_of(file),
                backbone=m["backbone"],
                fold=0,
                input=InputSpec(size=size),
                outputs={"probability": "probability", "logit": "logit", "features": "features"},
                oof_auc=0.5,
                parity={},
                oof_scores_sorted=list(np.linspace(0, 1, 101)),
                head_weights=[0.0] * channels,
                head_bias=0.0,
            )
        )
    point = {"name": "benchmark", "threshold": 0.5, "sensitivity": 0.0, "specificity": 0.0, "ppv": 0.0, "npv": 0.0}
    ensemble = EnsembleEntry(
        tta=tta, operating_points={"benchmark": point}, default_operating_point="benchmark", oof_auc=0.0
    )
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    save_manifest(Manifest(SCHEMA_VERSION, __version__, "benchmark", created, entries, ensemble), folder)
    return folder


def end_to_end(
    artifacts: Path, n_images: int, batch: int, repeats: int, png_size: int, work: Path, precision: str = "fp32"
) -> dict[str, float]:
    """predict_images on PNGs on disk against session.run alone on the same views, in images per second."""
    from PIL import Image

    from tbensemble.data.views import apply_views
    from tbensemble.engine.ensemble import Ensemble
    from tbensemble.engine.predict import collect_images, predict_images

    ensemble = Ensemble.load(artifacts, device="cpu", precision=precision)
    folder = work / "pngs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 256, (png_size, png_size), dtype=np.uint8)).save(folder / f"test{i + 1}.png")
    images = collect_images([folder])
    size = ensemble.image_size
    feed = apply_views(rng.integers(0, 256, (batch, size, size), dtype=np.uint8), ensemble.tta).astype(np.float32)[
        ..., None
    ]

    def raw() -> None:
        for _ in range(0, n_images, batch):
            for entry in ensemble.manifest.models:
                ensemble.sessions[entry.name].run(["probability"], {"image": feed})

    def e2e() -> None:
        predict_images(ensemble, images, batch_size=batch, progress=False)

    for entry in ensemble.manifest.models:  # warm-up
        ensemble.sessions[entry.name].run(["probability"], {"image": feed})
    raw_s, e2e_s = [], []
    for _ in range(max(1, (repeats + 1) // 2)):  # interleaved, so a change in machine load hits both alike
        for call, times in ((raw, raw_s), (e2e, e2e_s)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    batches = -(-n_images // batch)
    return {
        "variants": ",".join(sorted(set(ensemble.variants.values()))),
        "models": len(ensemble.manifest.models),
        "tta": ",".join(ensemble.tta),
        "raw_ips": batches * batch / statistics.median(raw_s),
        "e2e_ips": n_images / statistics.median(e2e_s),
        "fraction": statistics.median(r / e for r, e in zip(raw_s, e2e_s, strict=True)) * n_images / (batches * batch),
    }


def _interleaved_ips(calls: dict[str, Any], images_per_call: int, repeats: int) -> dict[str, float]:
    """Images/s of each call: one warm-up each, then ``repeats`` rounds in which every call runs once."""
    for call in calls.values():
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return {name: images_per_call / statistics.median(times) for name, times in seconds.items()}


def variants(artifacts: Path, batch: int, repeats: int) -> list[dict[str, Any]]:
    """Per backbone (first fold model) and for the whole ensemble: fp32 against the chosen variants."""
    from tbensemble.engine.ensemble import Ensemble

    fp32 = Ensemble.load(artifacts, device="cpu", precision="fp32")
    chosen = Ensemble.load(artifacts, device="cpu", precision="auto")
    size = fp32.image_size
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size), dtype=np.uint8)
    rows = []
    seen: set[str] = set()
    for entry in fp32.manifest.models:
        if entry.backbone in seen:
            continue
        seen.add(entry.backbone)
        feed = {entry.input.name: images.astype(np.float32)[..., None]}
        output = [entry.outputs["probability"]]
        ips = _interleaved_ips(
            {
                "fp32_ips": functools.partial(fp32.sessions[entry.name].run, output, feed),
                "variant_ips": functools.partial(chosen.sessions[entry.name].run, output, feed),
            },
            batch,
            repeats,
        )
        rows.append({"what": f"{entry.backbone} ({entry.name})", "variant": chosen.variants[entry.name], **ips})
    ips = _interleaved_ips(
        {"fp32_ips": lambda: fp32.score(images), "variant_ips": lambda: chosen.score(images)}, batch, repeats
    )
    names = sorted(set(chosen.variants.values()))
    rows.append(
        {
            "what": f"ensemble ({len(fp32.manifest.models)} models, TTA {','.join(fp32.tta)})",
            "variant": "+".join(names),
            **ips,
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", default="resnet50,densenet201,efficientnetb5")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="PNG files for the end-to-end part")
    parser.add_argument("--png-size", type=int, default=1024, help="side of the generated PNGs (decoded and resized)")
    parser.add_argument("--tta", default="identity,crop90", help="views for the end-to-end part without --run")
    parser.add_argument("--parity-images", default=None, help="folder of real images for parity (default: random)")
    parser.add_argument("--run", type=Path, help="exported run: end-to-end on its ensemble instead of the benchmark's")
    parser.add_argument("--skip-keras", action="store_true", help="skip part (a)")
    parser.add_argument("--skip-e2e", action="store_true", help="skip part (b)")
    parser.add_argument(
        "--precision", choices=["auto", "fp32"], default="fp32", help="(b): run the chosen variants (auto) or fp32"
    )
    parser.add_argument("--variants", action="store_true", help="part (c): fp32 against the chosen variants (--run)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> int:
    results = []
    if not args.skip_keras:
        context = multiprocessing.get_context("spawn")
        for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                job = pool.submit(
                    bench_backbone, name, args.size, args.batch, args.repeats, str(work), args.parity_images
                )
                results.append(job.result())
        print(f"\n(a) {args.size} px, batch {args.batch}, median of {args.repeats} warm calls, images/s")
        print("backbone        keras  onnx   ratio  convert_s  onnx_MB  max|Δp|   max|Δlogit|  parity images")
        for r in results:
            print(
                f"{r['backbone']:<15} {r['keras_ips']:<6.2f} {r['onnx_ips']:<6.2f} {r['onnx_ips'] / r['keras_ips']:<6.2f} "
                f"{r['convert_s']:<10.1f} {r['onnx_mb']:<8.1f} {r['max_abs_diff_probability']:<9.1e} "
                f"{r['max_abs_diff_logit']:<12.1e} {r['n_images']} {r['parity_source']}"
            )
    if args.variants:
        if args.run is None:
            print("--variants needs --run with an optimized run (tbens optimize)", file=sys.stderr)
            return 2
        print(
            f"\n(c) {args.run}: fp32 against the chosen variants, batch {args.batch}, median of {args.repeats} interleaved rounds"
        )
        print(f"{'what':<40} {'variant':<32} {'fp32 img/s':>10} {'variant img/s':>13} {'ratio':>6}")
        for r in variants(args.run, args.batch, args.repeats):
            print(
                f"{r['what']:<40} {r['variant']:<32} {r['fp32_ips']:>10.2f} {r['variant_ips']:>13.2f} {r['variant_ips'] / r['fp32_ips']:>6.2f}"
            )
    if args.skip_e2e:
        return 0
    if args.run is None and not results:
        print("nothing to run end to end: give --run or leave out --skip-keras", file=sys.stderr)
        return 2
    artifacts = args.run or synthetic_artifacts(results, args.size, args.tta.split(","), work / "artifacts")
    e2e = end_to_end(artifacts, args.images, args.batch, args.repeats, args.png_size, work, args.precision)
    print(
        f"\n(b) end to end on {args.images} PNGs of {args.png_size} px, {e2e['models']} models ({e2e['variants']}), "
        f"TTA {e2e['tta']}, batch {args.batch}"
    )
    print(
        f"raw session {e2e['raw_ips']:.2f} images/s, predict {e2e['e2e_ips']:.2f} images/s: "
        f"{100 * e2e['fraction']:.0f}% of raw (target >= 85%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
