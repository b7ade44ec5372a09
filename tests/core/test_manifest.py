"""The manifest is checked at load: round trip, schema versions, every field's type and range, and the
model files it names (inside the folder, regular, hashed, self-contained)."""

import json
import math
import os
from pathlib import Path

import pytest

from tbensemble.core.errors import EXIT_ARTIFACT, ArtifactError
from tbensemble.core.manifest import (
    EnsembleEntry,
    InputSpec,
    Manifest,
    ModelEntry,
    load_manifest,
    load_verified,
    save_manifest,
    sha256_of,
    verify_model_files,
)
from tbensemble.core.onnx_scan import external_tensors

MINIMAL_ONNX = b"\x08\x08"
"""A ModelProto holding only ir_version 8: enough for the file checks, which parse but never run it."""
POINT = {"name": "youden", "threshold": 0.6, "sensitivity": 0.9, "specificity": 0.8, "ppv": 0.7, "npv": float("nan")}


def make_run(tmp_path: Path, n_models: int = 3) -> Manifest:
    (tmp_path / "onnx").mkdir(exist_ok=True)
    entries = []
    for k in range(n_models):
        model = tmp_path / "onnx" / f"tinycnn-f{k}.onnx"
        model.write_bytes(MINIMAL_ONNX + bytes([8, k]))
        entries.append(
            ModelEntry(
                name=f"tinycnn-f{k}",
                file=f"onnx/tinycnn-f{k}.onnx",
                sha256=sha256_of(model),
                backbone="tinycnn",
                fold=k,
                input=InputSpec(size=64),
                outputs={"probability": "probability", "logit": "logit", "features": "features"},
                oof_auc=0.9,
                parity={"max_abs_diff_probability": 1e-7, "max_abs_diff_logit": 1e-6, "n_images": 16},
                oof_scores_sorted=[0.1, 0.5, 0.9],
                head_weights=[0.5, -0.5],
                head_bias=0.1,
                weight=1.0 / n_models,
            )
        )
    ensemble = EnsembleEntry(
        tta=["identity"],
        operating_points={"youden": POINT},
        default_operating_point="youden",
        oof_auc=0.9,
        calibration={"method": "platt", "input": "logit", "eps": 1e-4, "a": 1.0, "b": 0.0, "n": 10},
    )
    manifest = Manifest(1, "0.1.0", "t", "2026-01-01T00:00:00Z", entries, ensemble, root=tmp_path)
    save_manifest(manifest, tmp_path)
    return manifest


def edit(tmp_path: Path, change) -> Path:
    """Apply ``change`` to the manifest's JSON and write it back (NaN written as JSON's NaN)."""
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def refused(tmp_path: Path, change, message: str) -> str:
    edit(tmp_path, change)
    with pytest.raises(ArtifactError) as info:
        load_manifest(tmp_path)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text and info.value.exit_code == EXIT_ARTIFACT
    return text


def test_round_trip_and_verify(tmp_path: Path) -> None:
    written = make_run(tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.to_dict()["models"] == written.to_dict()["models"]
    assert loaded.models[0].input.size == loaded.image_size == 64
    assert math.isnan(loaded.ensemble.operating_points["youden"]["npv"]), "an undefined NPV stays NaN, not an error"
    verify_model_files(loaded)


def test_tampered_and_missing_files_are_refused(tmp_path: Path) -> None:
    manifest = make_run(tmp_path)
    path = tmp_path / "onnx" / "tinycnn-f0.onnx"
    path.write_bytes(b"\x08\x09")
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: sha256 .* does not match"):
        verify_model_files(manifest)
    path.unlink()
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: model file listed in the manifest is missing"):
        verify_model_files(manifest)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            99,
            "schema_version 99 (written by tbensemble 0.1.0) is not supported; this tbensemble reads version 1: upgrade",
        ),
        (
            0,
            "schema_version 0 (written by tbensemble 0.1.0) is not supported; this tbensemble reads version 1: re-export",
        ),
        ("1", 'schema_version: "1" is not an integer'),
    ],
)
def test_other_schema_versions_name_the_writer_and_what_to_do(tmp_path: Path, version, message) -> None:
    make_run(tmp_path)
    refused(tmp_path, lambda d: d.update(schema_version=version), message)


def test_garbage_files(tmp_path: Path) -> None:
    make_run(tmp_path)
    path = tmp_path / "manifest.json"
    for content, message in [
        ("{", "not valid JSON"),
        ("42", "holds a number (42), not a manifest object"),
        ('"text"', 'holds a string ("text"), not a manifest object'),
        ("[]", "holds a list"),
        ("[" * 100000, "not valid JSON"),
    ]:
        path.write_text(content)
        with pytest.raises(ArtifactError, match=r"manifest\.json: ") as info:
            load_manifest(tmp_path)
        assert message in str(info.value)
    path.write_text(" " * (16 << 20) + "{}")
    with pytest.raises(ArtifactError, match="is too large for a manifest"):
        load_manifest(tmp_path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="manifest not found"):
        load_manifest(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["models"][2].update(weight=float("nan")), "models[2].weight: NaN is not a finite number ≥ 0"),
        (lambda d: d["models"][0].update(weight=-1), "models[0].weight: -1 is not a finite number ≥ 0"),
        (lambda d: d["models"][0].update(weight="1"), 'models[0].weight: "1" (a string) is not a finite number ≥ 0'),
        (lambda d: [m.update(weight=0) for m in d["models"]], "models: every weight is 0"),
        (
            lambda d: d["ensemble"]["operating_points"]["youden"].update(threshold=float("nan")),
            "ensemble.operating_points.youden.threshold: NaN is not a finite number",
        ),
        (
            lambda d: d["ensemble"]["operating_points"]["youden"].pop("threshold"),
            "ensemble.operating_points.youden.threshold: null (null) is not a finite number",
        ),
        (lambda d: d["ensemble"]["calibration"].update(a=float("inf")), "ensemble.calibration.a: Infinity is not"),
        (lambda d: d["ensemble"]["calibration"].update(eps=0), "ensemble.calibration.eps: 0 is not in (0, 0.5)"),
        (
            lambda d: d["ensemble"].update(calibration={"method": "isotonic", "x": [0.5, 0.1], "y": [0, 1]}),
            "ensemble.calibration.x: is not sorted",
        ),
        (lambda d: d["ensemble"]["calibration"].update(method="magic"), 'calibration.method: "magic" is not one of'),
        (lambda d: d["models"][1].update(oof_scores_sorted=[0.9, 0.1]), "models[1].oof_scores_sorted: is not sorted"),
        (
            lambda d: d["models"][1].update(oof_scores_sorted=[0.1, float("nan")]),
            "models[1].oof_scores_sorted[1]: NaN is not a finite number in [0, 1]",
        ),
        (lambda d: d["models"][1].update(oof_scores_sorted=[]), "models[1].oof_scores_sorted: is empty"),
        (lambda d: d["models"][0]["input"].update(size=100000), "models[0].input.size: 100000 is not an integer in"),
        (lambda d: d["models"][0]["input"].update(size=64.5), "models[0].input.size: 64.5 is not an integer"),
        (lambda d: d["models"][0]["input"].update(size=True), "models[0].input.size: true (true/false) is not"),
        (lambda d: d["models"][1]["input"].update(size=32), "models: models take different input sizes [32, 64]"),
        (lambda d: d["models"][0]["input"].update(channels=3), "models[0].input.channels: 3 is not one of 1"),
        (lambda d: d["models"][0].update(head_bias=float("nan")), "models[0].head_bias: NaN is not a finite number"),
        (lambda d: d["models"][0].update(head_weights=[1, None]), "models[0].head_weights[1]: null (null) is not"),
        (lambda d: d["models"][0].update(sha256="abc"), 'models[0].sha256: "abc" does not match'),
        (lambda d: d["models"][0].update(fold=-1), "models[0].fold: -1 is not an integer ≥ 0"),
        (lambda d: d["models"][0]["outputs"].pop("features"), "models[0].outputs: lacks the role(s) features"),
        (lambda d: d["models"][0].pop("sha256"), "models[0].sha256: key is missing"),
        (lambda d: d["models"][0].update(surprise=1), "models[0].surprise: unknown key"),
        (lambda d: d["models"][1].update(name="tinycnn-f0"), "model name 'tinycnn-f0' appears more than once"),
        (lambda d: d.update(models=[]), "models: is empty"),
        (lambda d: d.update(models=42), "models: 42 (a number) is not a list"),
        (lambda d: d["models"].__setitem__(0, "x"), 'models[0]: "x" (a string) is not an object'),
        (lambda d: d["ensemble"].update(tta=["spin"]), 'ensemble.tta[0]: "spin" is not one of identity'),
        (lambda d: d["ensemble"].update(default_operating_point="other"), "\"other\" is not among ['youden']"),
        (lambda d: d["models"][0].update(file="/etc/shadow"), 'models[0].file: "/etc/shadow" is not a relative path'),
        (lambda d: d["models"][0].update(file="../../x.onnx"), 'models[0].file: "../../x.onnx" is not a relative'),
        (lambda d: d["models"][0].update(file="onnx/model.bin"), "is not an .onnx file"),
        (
            lambda d: d["ensemble"]["operating_points"].update({"a\nb": {"threshold": "x"}}),
            'ensemble.operating_points."a\\nb".threshold: "x" (a string) is not a finite number',
        ),
    ],
)
def test_every_field_is_checked_in_one_line_naming_the_key(tmp_path: Path, change, message) -> None:
    make_run(tmp_path)
    refused(tmp_path, change, message)


def test_model_file_outside_the_folder_is_refused_without_telling_anything_about_it(tmp_path: Path) -> None:
    outside = tmp_path / "secret.onnx"
    outside.write_bytes(MINIMAL_ONNX)
    run = tmp_path / "run"
    run.mkdir()
    manifest = make_run(run)
    link = run / "onnx" / "tinycnn-f0.onnx"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(ArtifactError) as info:
        load_verified(run)
    text = str(info.value)
    assert "leads outside the artifacts folder" in text and sha256_of(outside)[:6] not in text
    assert "secret" not in text
    inside = run / "onnx" / "real.onnx"
    inside.write_bytes(MINIMAL_ONNX + bytes([8, 0]))
    link.unlink()
    link.symlink_to(inside)
    verify_model_files(manifest)  # a symlink that stays inside the folder is fine


def test_model_file_must_be_a_regular_file(tmp_path: Path) -> None:
    manifest = make_run(tmp_path)
    path = tmp_path / "onnx" / "tinycnn-f1.onnx"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ArtifactError, match=r"tinycnn-f1\.onnx: not a regular file"):
        verify_model_files(manifest)


def test_external_data_is_refused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="builds a model with external data")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert external_tensors(model.SerializeToString()) == []
    make_run(tmp_path, n_models=1)
    path = tmp_path / "onnx" / "tinycnn-f0.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert external_tensors(path.read_bytes()) == ["w"]
    edit(tmp_path, lambda d: d["models"][0].update(sha256=sha256_of(path)))
    with pytest.raises(ArtifactError, match=r"tinycnn-f0.onnx: stores 1 tensor\(s\) in external data files"):
        load_verified(tmp_path)


def test_broken_protobuf_is_an_artifact_error() -> None:
    with pytest.raises(ArtifactError, match=r"m\.onnx: not a valid ONNX file"):
        external_tensors(b"\x0a\xff\xff\xff\x0f", "m.onnx")
