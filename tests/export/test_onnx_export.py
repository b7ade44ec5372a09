import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.core.manifest import load_manifest, verify_model_files
from tbensemble.export import parity
from tbensemble.export.onnx_export import export_run

pytestmark = pytest.mark.slow


def test_every_fold_model_exported_with_named_outputs_and_metadata(tiny_export):
    manifest = load_manifest(tiny_export)
    verify_model_files(manifest)
    assert [m.name for m in manifest.models] == ["tinycnn-f0", "tinycnn-f1", "tinyresnet-f0", "tinyresnet-f1"]
    for entry in manifest.models:
        model = onnx.load(manifest.model_path(entry))
        assert [o.name for o in model.graph.output] == ["probability", "logit", "features"]
        assert entry.outputs == {"probability": "probability", "logit": "logit", "features": "features"}
        (image,) = model.graph.input
        dims = image.type.tensor_type.shape.dim
        assert (
            image.name == "image"
            and not dims[0].HasField("dim_value")
            and [d.dim_value for d in dims[1:]] == [32, 32, 1]
        )
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["backbone"] == entry.backbone and meta["fold"] == str(entry.fold) and meta["image_size"] == "32"
        assert "tbensemble_version" in meta and "preprocessing" in meta
        assert entry.parity["max_abs_diff_probability"] <= 1e-4 and entry.parity["n_images"] >= 16
        assert entry.parity["images"] == "run data"
        assert entry.parity["max_abs_diff_cam_logit"] < 1e-3, "export enforces the CAM identity per model"
        assert entry.weight == 0.5 and len(entry.oof_scores_sorted) == 12


def test_head_weights_are_the_logit_dense_and_features_give_the_logit(tiny_export):
    """The manifest's head over the pooled ONNX features reproduces the ONNX logit (what CAM relies on)."""
    manifest = load_manifest(tiny_export)
    entry = manifest.models[0]
    session = ort.InferenceSession(str(manifest.model_path(entry)), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 1)).astype(np.float32)
    logit, features = session.run(["logit", "features"], {"image": batch})
    pooled = features.mean(axis=(1, 2))
    np.testing.assert_allclose(pooled @ np.array(entry.head_weights) + entry.head_bias, logit[:, 0], atol=1e-4)


def test_failed_parity_leaves_the_previous_export_untouched(tiny_export, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_export, run)
    before = {p.name: p.read_bytes() for p in [*(run / "onnx").iterdir(), run / "manifest.json"]}
    real_compare = parity.compare

    def drifting(keras_out, onnx_out):
        return {**real_compare(keras_out, onnx_out), "max_abs_diff_probability": 3e-4}

    monkeypatch.setattr(parity, "compare", drifting)
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: parity failed, max \|Δ probability\| 3.00e-04 > 1e-04"):
        export_run(run, isolate=False)
    assert {p.name: p.read_bytes() for p in [*(run / "onnx").iterdir(), run / "manifest.json"]} == before
    assert not [p for p in run.iterdir() if p.name.startswith(".onnx-staging")]


def test_a_head_that_does_not_give_the_logit_fails_export_naming_the_model(tiny_export, tmp_path, monkeypatch):
    """Heatmaps rely on mean(features)·w + b = logit; a wrong head must not ship (and nothing is replaced)."""
    from tbensemble.export import onnx_export

    run = tmp_path / "run"
    shutil.copytree(tiny_export, run)
    before = {p.name: p.read_bytes() for p in [*(run / "onnx").iterdir(), run / "manifest.json"]}
    real_head = onnx_export.head_parameters

    def shifted(model):
        weights, bias = real_head(model)
        return weights, bias + 1.0

    monkeypatch.setattr(onnx_export, "head_parameters", shifted)
    with pytest.raises(ArtifactError, match=r"fold0/model.keras -> tinycnn-f0.onnx: CAM identity fails"):
        export_run(run, isolate=False)
    assert {p.name: p.read_bytes() for p in [*(run / "onnx").iterdir(), run / "manifest.json"]} == before


def test_export_refuses_a_run_without_finished_models(tmp_path):
    run = tmp_path / "run"
    (run / "models" / "tinycnn" / "fold0").mkdir(parents=True)
    (run / "config.yaml").write_text("backbones: [tinycnn]\nimage_size: 32\nweights: null\nfolds: 2\n")
    with pytest.raises(ArtifactError, match="no finished fold model"):
        export_run(run, isolate=False)
    with pytest.raises(TbensError, match=r"config.yaml: not found") as info:
        export_run(tmp_path, isolate=False)
    assert info.value.exit_code == 2, "a folder that is not a run is a usage error, not a broken artifact"
    assert json.dumps(sorted(p.name for p in run.rglob("*"))) == json.dumps(
        ["config.yaml", "fold0", "models", "tinycnn"]
    )


def test_backbone_missing_from_oof_is_left_out(tiny_export, tmp_path):
    """train-folds puts a backbone into oof.csv only once all its folds are done: export only those."""
    run = tmp_path / "run"
    shutil.copytree(tiny_export, run, ignore=shutil.ignore_patterns("onnx", "manifest.json"))
    oof = (run / "oof.csv").read_text().splitlines()
    header = oof[0].split(",")
    keep = [i for i, column in enumerate(header) if column != "tinyresnet"]
    (run / "oof.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in oof) + "\n")
    export_run(run, isolate=False)
    assert [m.name for m in load_manifest(run).models] == ["tinycnn-f0", "tinycnn-f1"]


def test_mixed_precision_model_exported_in_float32(tmp_path):
    """A model trained with mixed_float16 on a GPU is exported as a float32 graph with the same weights."""
    import keras

    from tbensemble.export.onnx_export import export_fold_model
    from tbensemble.train.backbones import build_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = build_model("tinycnn", 32, weights=None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("backbone").get_layer("top_conv").compute_dtype == "float16"
    model.save(tmp_path / "model.keras")
    images = parity.random_images(16, 32)
    exported = export_fold_model(tmp_path / "model.keras", tmp_path / "m.onnx", "tinycnn", 0, 32, images, "random")
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert not [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert exported.parity["max_abs_diff_probability"] <= 1e-4
    kernel = model.get_layer("logit").get_weights()[0].reshape(-1)
    np.testing.assert_allclose(exported.head_weights, kernel)
