"""Score one test set with the exported ONNX engine and with the run's Keras models (same images, same
TTA, same rank averaging) and compare: the submission AUC of each against the truth, and how far apart
the per-model scores are. The export is only trustworthy if both AUCs agree (issue: within 0.005).

    python scripts/compare_keras_onnx.py artifacts/quickstart --images data/demo/test \\
        --truth data/demo/_truth/test_labels.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def keras_scores(run: Path, manifest, paths: list[str], tta: list[str], batch_size: int) -> dict[str, np.ndarray]:
    """TTA-mean probability per fold model, computed in Keras from ``model.keras`` (not the ONNX file)."""
    import keras

    import tbensemble.train.backbones  # noqa: F401  registers the custom preprocessing layers
    from tbensemble.data.decode import load_image
    from tbensemble.data.views import apply_views

    images = np.stack([load_image(p, manifest.models[0].input.size) for p in paths])
    views = apply_views(images, tta).astype(np.float32)[..., None]
    scores = {}
    for entry in manifest.models:
        path = run / "models" / entry.backbone / f"fold{entry.fold}" / "model.keras"
        model = keras.models.load_model(path, compile=False)
        probability = model.predict(views, batch_size=batch_size, verbose=0)
        scores[entry.name] = probability.reshape(len(tta), len(images)).mean(axis=0)
        keras.backend.clear_session()
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder with models/, onnx/ and manifest.json")
    parser.add_argument("--images", type=Path, required=True, help="test images folder")
    parser.add_argument("--truth", type=Path, help="CSV image_id,label (default: IMAGES/../_truth/test_labels.csv)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    from tbensemble.core.metrics import auc, rank_average
    from tbensemble.engine.ensemble import Ensemble
    from tbensemble.engine.predict import collect_images, predict_images

    ensemble = Ensemble.load(args.run, device="cpu")
    images = collect_images([args.images])
    prediction = predict_images(ensemble, images, batch_size=args.batch_size, progress=False)
    paths = images.set_index("image_id").loc[prediction.image_ids, "path"].tolist()
    reference = keras_scores(args.run, ensemble.manifest, paths, ensemble.tta, args.batch_size)

    truth_path = args.truth or args.images.resolve().parent / "_truth" / "test_labels.csv"
    truth = pd.read_csv(truth_path, dtype={"image_id": str}).set_index("image_id")["label"]
    labels = truth.loc[prediction.image_ids].to_numpy()
    weights = ensemble.weights
    engine_auc = auc(labels, ensemble.batch_ensemble(prediction.scores), "engine submission")
    keras_auc = auc(labels, rank_average(reference, weights), "keras ensemble")
    for name in prediction.scores:
        diff = np.max(np.abs(prediction.scores[name] - reference[name]))
        print(f"{name}: max |Δ TTA-mean probability| ONNX vs Keras {diff:.2e}")
    print(f"images {len(labels)} (positives {int(labels.sum())}), TTA {ensemble.tta}")
    print(f"submission AUC: ONNX engine {engine_auc:.4f}, Keras {keras_auc:.4f}, |Δ| {abs(engine_auc - keras_auc):.4f}")
    return 0 if abs(engine_auc - keras_auc) <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
