"""Parity of every leaderboard backbone of the registry (random weights, head unsaturated) at a small size; the
384-px figures are measured by scripts/bench_engine.py."""

import time

import numpy as np
import onnxruntime as ort
import pytest

from tbensemble.core.registry import BACKBONES, list_backbones
from tbensemble.export import onnx_export, parity

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backbone", list_backbones(leaderboard=True))
def test_leaderboard_backbone_parity_at_64px(backbone, tmp_path):
    import keras

    from tbensemble.train.backbones import build_model

    size = 64
    keras.utils.set_random_seed(0)
    model = build_model(backbone, size, weights=None)
    images = parity.random_images(16, size, seed=1)
    parity.unsaturate_head(model, images)
    model3 = onnx_export.three_output_model(model)
    start = time.perf_counter()
    data, _ = onnx_export.convert(model3, size, onnx_export.DEFAULT_OPSET, {"backbone": backbone})
    (tmp_path / "m.onnx").write_bytes(data)
    figures = parity.check(model3, tmp_path / "m.onnx", images, label=backbone)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (probability,) = session.run(["probability"], {"image": images.astype(np.float32)[..., None]})
    assert 0.05 < float(np.median(probability)) < 0.95, "the head is still saturated"
    assert np.std(probability) > 0.05
    assert figures["max_abs_diff_probability"] <= BACKBONES[backbone].parity_tolerance
    print(f"{backbone}: {figures} in {time.perf_counter() - start:.1f}s")
    keras.backend.clear_session()
