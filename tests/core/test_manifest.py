"""Manifest round trip, schema version refusal, and hash verification."""

import json
from pathlib import Path

import pytest

from tbensemble.core.errors import ArtifactError
from tbensemble.core.manifest import (
    EnsembleEntry,
    InputSpec,
    Manifest,
    ModelEntry,
    load_manifest,
    save_manifest,
    sha256_of,
    verify_model_files,
)


def make_run(tmp_path: Path) -> Manifest:
    model = tmp_path / "onnx" / "tinycnn-f0.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not really onnx")
    entry = ModelEntry(
        name="tinycnn-f0",
        file="onnx/tinycnn-f0.onnx",
        sha256=sha256_of(model),
        backbone="tinycnn",
        fold=0,
        input=InputSpec(size=64),
        outputs={"probability": "probability", "logit": "logit", "features": "features"},
        oof_auc=0.9,
        parity={"max_abs_diff_probability": 1e-7, "max_abs_diff_logit": 1e-6, "n_images": 16},
        oof_scores_sorted=[0.1, 0.5, 0.9],
        head_weights=[0.5, -0.5],
        head_bias=0.1,
    )
    ensemble = EnsembleEntry(tta=["identity"], operating_points={}, default_operating_point="youden", oof_auc=0.9)
    manifest = Manifest(1, "0.1.0", "t", "2026-01-01T00:00:00Z", [entry], ensemble, root=tmp_path)
    save_manifest(manifest, tmp_path)
    return manifest


def test_round_trip_and_verify(tmp_path: Path) -> None:
    written = make_run(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded == written
    assert loaded.models[0].input.size == 64
    verify_model_files(loaded)


def test_tampered_and_missing_files_are_refused(tmp_path: Path) -> None:
    manifest = make_run(tmp_path)
    path = tmp_path / "onnx" / "tinycnn-f0.onnx"
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: sha256 .* does not match"):
        verify_model_files(manifest)
    path.unlink()
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: model file listed in the manifest is missing"):
        verify_model_files(manifest)


def test_other_schema_version_and_garbage(tmp_path: Path) -> None:
    make_run(tmp_path)
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="schema_version 99 is not supported"):
        load_manifest(path)
    path.write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="manifest not found"):
        load_manifest(tmp_path / "nowhere")
