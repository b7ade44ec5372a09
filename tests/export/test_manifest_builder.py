import numpy as np
import pandas as pd
import pytest

from tbensemble.core.config import TrainConfig
from tbensemble.core.errors import ArtifactError
from tbensemble.core.metrics import quantile_reference
from tbensemble.export import manifest_builder
from tbensemble.export.onnx_export import ExportedModel


def _oof(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    oof = pd.DataFrame(
        {
            "image_id": [f"i{i}.png" for i in range(n)],
            "label": np.arange(n) % 2,
            "fold": (np.arange(n) // 2) % 2,
            "tinycnn": rng.random(n),
            "tinyresnet": rng.random(n),
        }
    )
    oof["ensemble"] = rng.random(n)
    oof.to_csv(tmp_path / "oof.csv", index=False)
    return oof


def _exported(tmp_path, backbone, fold):
    path = tmp_path / f"{backbone}-f{fold}.onnx"
    path.write_bytes(f"{backbone}{fold}".encode())
    parity = {"max_abs_diff_probability": 0.0, "max_abs_diff_logit": 0.0, "n_images": 16, "images": "random"}
    return ExportedModel(backbone, fold, 32, path, {"probability": "probability"}, parity, [0.5, -0.5], 0.1)


def test_manifest_weights_references_and_operating_points(tmp_path):
    oof = _oof(tmp_path)
    config = TrainConfig(backbones=["tinycnn", "tinyresnet"], folds=2, ensemble_weights={"tinycnn": 3.0})
    exported = [_exported(tmp_path, b, k) for b in ("tinycnn", "tinyresnet") for k in (0, 1)]
    files = {f"{e.backbone}-f{e.fold}": e.onnx_path for e in exported}
    manifest = manifest_builder.build_manifest(tmp_path, config, exported, files, calibration="isotonic")
    weights = {m.name: m.weight for m in manifest.models}
    assert weights == {"tinycnn-f0": 1.5, "tinycnn-f1": 1.5, "tinyresnet-f0": 0.5, "tinyresnet-f1": 0.5}
    first = manifest.models[0]
    fold0 = oof[oof["fold"] == 0]
    assert first.oof_scores_sorted == quantile_reference(fold0["tinycnn"])
    assert first.file == "onnx/tinycnn-f0.onnx" and len(first.sha256) == 64
    assert first.head_weights == [0.5, -0.5] and first.input.size == 32
    points = manifest.ensemble.operating_points
    assert manifest.ensemble.default_operating_point == "sensitivity>=0.90@lcb95"
    assert points["sensitivity>=0.90"]["sensitivity"] >= 0.90
    guaranteed = points["sensitivity>=0.90@lcb95"]
    assert guaranteed["threshold"] <= points["sensitivity>=0.90"]["threshold"]
    assert guaranteed["guarantee"]["n_positives"] == 20 and not guaranteed["guarantee"]["achieved"]
    assert manifest.ensemble.refer["disagreement"]["threshold"] > 0
    assert manifest.ensemble.refer["features"] is None, "no 'features' output, so no feature reference"
    assert sum(manifest.ensemble.drift["expected"]) == pytest.approx(1.0)
    assert manifest.ensemble.tta == config.tta
    assert manifest.ensemble.calibration["method"] == "isotonic"


def test_manifest_needs_oof_with_an_ensemble_column(tmp_path):
    _oof(tmp_path).drop(columns="ensemble").to_csv(tmp_path / "oof.csv", index=False)
    with pytest.raises(ArtifactError, match=r"oof.csv: columns \['ensemble'\] are missing"):
        manifest_builder.read_oof(tmp_path, ["tinycnn"])
    (tmp_path / "oof.csv").unlink()
    with pytest.raises(ArtifactError, match=r"oof\.csv: not found"):
        manifest_builder.read_oof(tmp_path, ["tinycnn"])
