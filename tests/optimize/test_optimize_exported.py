"""tbens optimize on the tiny exported run (Keras models through the project's own export): the engine
then runs exactly the chosen variants, and predict works end to end with them."""

import importlib.util
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.gate import FP32, GateLimits
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.variants import compile_openvino
from tbensemble.optimize.run import optimize_run
from tests.export.tinyrun import SIZE, read_submission

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("openvino") is None, reason="needs the optimize extra (installed in CI)"
    ),
]
ANYTHING = GateLimits(min_spearman=-1.0, max_abs_delta_auc=1.0, max_flipped_fraction=1.0, min_speedup=0.0)


@pytest.fixture
def optimized(tiny_export, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_export, run)
    optimize_run(run, variant_names=["openvino-fp32", "ort-int8-qoperator"], limits=ANYTHING, n_calibration=6)
    return run


def direct_scores(run, variant, images):
    feed = {"image": images.astype(np.float32)[..., None]}
    if variant.runtime == "openvino":
        return compile_openvino(str(run / variant.file), variant.precision).run(["probability"], feed)[0][:, 0]
    session = ort.InferenceSession(str(run / variant.file), providers=["CPUExecutionProvider"])
    return session.run(["probability"], feed)[0][:, 0]


def test_engine_runs_each_chosen_variant_exactly(optimized):
    images = np.random.default_rng(2).integers(0, 256, (4, SIZE, SIZE), dtype=np.uint8)
    ensemble = Ensemble.load(optimized, device="cpu", tta=["identity"])
    fp32 = Ensemble.load(optimized, device="cpu", precision="fp32", tta=["identity"])
    scores, fp32_scores = ensemble.score(images), fp32.score(images)
    for entry in ensemble.manifest.models:
        chosen = ensemble.variants[entry.name]
        assert chosen == entry.default_variant != FP32
        variant = entry.variant(chosen)
        np.testing.assert_allclose(scores[entry.name], direct_scores(optimized, variant, images), atol=1e-6)
        np.testing.assert_array_equal(ensemble.references[entry.name], variant.oof_scores_sorted)
        tolerance = 1e-4 if chosen == "openvino-fp32" else 0.2
        np.testing.assert_allclose(scores[entry.name], fp32_scores[entry.name], atol=tolerance)


def test_predict_with_variants_and_with_fp32(optimized, tiny_export, tmp_path):
    images = tiny_export.parent / "data" / "Normal"
    outputs, printed = {}, {}
    for precision in ("auto", "fp32"):
        out = tmp_path / f"{precision}.csv"
        args = ["predict", "--artifacts", str(optimized), "--images", str(images), "--out", str(out)]
        result = CliRunner().invoke(cli, [*args, "--device", "cpu", "--precision", precision])
        assert result.exit_code == 0, result.output
        outputs[precision], printed[precision] = read_submission(out), result.output.splitlines()[-1]
    assert outputs["auto"]["image_id"].tolist() == outputs["fp32"]["image_id"].tolist()
    assert "OpenVINO CPU fp32" in printed["auto"] or "CPUExecutionProvider int8" in printed["auto"]
    assert printed["fp32"].endswith("providers ['CPUExecutionProvider']")
