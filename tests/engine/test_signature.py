"""A model swapped for another, with the sha256 updated, is named at load (not a traceback at scoring),
and the engine runs the very bytes it hashed. Hand-made ONNX models: no TensorFlow, milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from tbensemble.core.errors import EXIT_ARTIFACT, ArtifactError
from tbensemble.core.manifest import sha256_of
from tbensemble.engine.ensemble import Ensemble
from tests.engine.test_cam import BRIGHTNESS_BIAS, BRIGHTNESS_HEAD, BRIGHTNESS_KERNEL, tiny_model, write_tiny_run


def swap(run: Path, model: bytes, index: int = 0) -> Path:
    """Replace model ``index`` with ``model`` and update its sha256, as a careless or hostile re-ship would."""
    path = run / "onnx" / f"tinycnn-f{index}.onnx"
    path.write_bytes(model)
    manifest_path = run / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["models"][index]["sha256"] = sha256_of(path)
    manifest_path.write_text(json.dumps(data))
    return path


def refused(run: Path, message: str) -> str:
    with pytest.raises(ArtifactError) as info:
        Ensemble.load(run, device="cpu")
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text and info.value.exit_code == EXIT_ARTIFACT
    return text


def renamed(model: bytes, old: str, new: str) -> bytes:
    proto = onnx.load_model_from_string(model)
    for node in proto.graph.node:
        node.output[:] = [new if n == old else n for n in node.output]
    for out in proto.graph.output:
        out.name = new if out.name == old else out.name
    return proto.SerializeToString()


def test_matching_models_load(tmp_path: Path) -> None:
    ensemble = Ensemble.load(write_tiny_run(tmp_path / "run"), device="cpu")
    assert ensemble.image_size == 32 and len(ensemble.sessions) == 2


def test_model_of_another_input_size_is_named(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    head, bias = BRIGHTNESS_HEAD
    path = swap(run, tiny_model(BRIGHTNESS_KERNEL, BRIGHTNESS_BIAS, head, bias, size=48), index=1)
    text = refused(run, "input 'image' has shape [N, 48, 48, 1]; the manifest says [N, 32, 32, 1]")
    assert text.startswith(str(path))


def test_model_with_other_outputs_is_named(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    head, bias = BRIGHTNESS_HEAD
    swap(run, renamed(tiny_model(BRIGHTNESS_KERNEL, BRIGHTNESS_BIAS, head, bias), "probability", "prob"))
    refused(run, "tinycnn-f0.onnx: has no output 'probability' (role probability); its outputs are")


def test_model_with_another_head_width_is_named(tmp_path: Path) -> None:
    import numpy as np

    run = write_tiny_run(tmp_path / "run")
    kernel = np.zeros((3, 1, 3, 3), dtype=np.float32)
    swap(run, tiny_model(kernel, np.zeros(3, np.float32), np.ones(3, np.float32), 0.0))
    refused(run, "output 'features' (features) is tensor(float) [N, 16, 16, 3]; the engine needs tensor(float)")


def test_model_with_another_input_name_is_named(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    data = json.loads((run / "manifest.json").read_text())
    data["models"][0]["input"]["name"] = "pixels"
    (run / "manifest.json").write_text(json.dumps(data))
    refused(run, "tinycnn-f0.onnx: input is named 'image'; the manifest says 'pixels'")


def test_not_an_onnx_file_is_an_artifact_error(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    swap(run, b"\x08\x08")
    refused(run, "tinycnn-f0.onnx: onnxruntime cannot load this model")


def test_model_files_outside_the_folder_are_refused_before_any_read(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run")
    for file in ("/etc/shadow", "../../x.onnx", "onnx/../../x.onnx"):
        data = json.loads((run / "manifest.json").read_text())
        data["models"][1]["file"] = file
        (run / "manifest.json").write_text(json.dumps(data))
        text = refused(run, f'models[1].file: "{file}" is not a relative path inside the artifacts folder')
        assert "sha256" not in text


def test_the_bytes_hashed_are_the_bytes_run(tmp_path: Path, monkeypatch) -> None:
    """A file swapped between the hash check and the session (TOCTOU) cannot run: sessions load the bytes read."""
    from tbensemble.engine import ensemble as ensemble_module

    run = write_tiny_run(tmp_path / "run", n_models=1)
    head, bias = BRIGHTNESS_HEAD
    other = tiny_model(BRIGHTNESS_KERNEL * 3, BRIGHTNESS_BIAS, head, bias)
    real_read = ensemble_module.read_model

    def read_then_swap(manifest, entry):
        data = real_read(manifest, entry)
        manifest.model_path(entry).write_bytes(other)
        return data

    monkeypatch.setattr(ensemble_module, "read_model", read_then_swap)
    import numpy as np

    image = np.full((1, 32, 32), 200, dtype=np.uint8)
    swapped_score = Ensemble.load(run, device="cpu").score(image)["tinycnn-f0"]
    original = write_tiny_run(tmp_path / "again", n_models=1)
    monkeypatch.undo()
    np.testing.assert_allclose(swapped_score, Ensemble.load(original, device="cpu").score(image)["tinycnn-f0"])


def test_model_with_external_data_is_refused_even_with_its_sha_updated(tmp_path: Path, monkeypatch) -> None:
    """The sha256 covers the .onnx only: weights in weights.bin could change scores unseen, so they are refused.
    The working directory holds a weights.bin too, where ONNX Runtime would look for a model given as bytes."""
    run = write_tiny_run(tmp_path / "run")
    head, bias = BRIGHTNESS_HEAD
    proto = onnx.load_model_from_string(tiny_model(BRIGHTNESS_KERNEL, BRIGHTNESS_BIAS, head, bias))
    path = run / "onnx" / "tinycnn-f1.onnx"
    onnx.save_model(proto, path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    (tmp_path / "weights.bin").write_bytes((run / "onnx" / "weights.bin").read_bytes())
    monkeypatch.chdir(tmp_path)
    data = json.loads((run / "manifest.json").read_text())
    data["models"][1]["sha256"] = sha256_of(path)
    (run / "manifest.json").write_text(json.dumps(data))
    refused(run, "tinycnn-f1.onnx: stores 4 tensor(s) in external data files (e.g. 'conv_w')")
