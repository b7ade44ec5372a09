import json

import numpy as np
import onnxruntime as ort
import pytest

from tbensemble.core.errors import ArtifactError
from tbensemble.core.metrics import historical_rank, rank_average
from tbensemble.data.views import apply_view
from tbensemble.engine.ensemble import Ensemble
from tests.export.tinyrun import copy_artifacts

pytestmark = pytest.mark.slow


class CountingSession:
    def __init__(self, session):
        self.session, self.feeds = session, []

    def run(self, outputs, feed):
        self.feeds.append({k: v.shape for k, v in feed.items()})
        return self.session.run(outputs, feed)


@pytest.fixture
def images():
    return np.random.default_rng(3).integers(0, 256, (5, 32, 32), dtype=np.uint8)


def test_all_views_of_a_batch_in_one_session_call_then_mean_of_views(tiny_export, images):
    ensemble = Ensemble.load(tiny_export, device="cpu")
    assert ensemble.tta == ["identity", "crop90"]
    counting = {name: CountingSession(s) for name, s in ensemble.sessions.items()}
    ensemble.sessions = counting
    scores = ensemble.score(images)
    assert all(c.feeds == [{"image": (10, 32, 32, 1)}] for c in counting.values())
    name = ensemble.manifest.models[0].name
    session = ort.InferenceSession(str(tiny_export / "onnx" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    per_view = [
        session.run(["probability"], {"image": apply_view(images, v).astype(np.float32)[..., None]})[0][:, 0]
        for v in ("identity", "crop90")
    ]
    np.testing.assert_allclose(scores[name], np.mean(per_view, axis=0), rtol=1e-6)


def test_batch_rank_average_and_historical_scale(tiny_export, images):
    ensemble = Ensemble.load(tiny_export, device="cpu")
    scores = ensemble.score(images)
    weights = {m.name: m.weight for m in ensemble.manifest.models}
    np.testing.assert_allclose(ensemble.batch_ensemble(scores), rank_average(scores, weights))
    historical = ensemble.historical(scores)
    entry = ensemble.manifest.models[0]
    expected_first = historical_rank(scores[entry.name], np.array(entry.oof_scores_sorted))
    assert expected_first.shape == historical.shape == (5,)
    alone = ensemble.historical(ensemble.score(images[2:3]))
    assert alone[0] == pytest.approx(historical[2], abs=1e-9), "one image alone and in a batch get one scale"
    threshold = ensemble.operating_point["threshold"]
    np.testing.assert_array_equal(ensemble.decide(historical), historical >= threshold)
    probability = ensemble.calibrate(historical)
    assert probability.shape == (5,) and np.all((probability > 0) & (probability < 1))
    order = np.argsort(historical, kind="stable")
    assert np.all(np.diff(probability[order]) >= -1e-12), "Platt calibration keeps the order"


def test_tampered_model_refused(tiny_export, tmp_path):
    artifacts = copy_artifacts(tiny_export, tmp_path / "a")
    target = artifacts / "onnx" / "tinyresnet-f1.onnx"
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactError, match=r"tinyresnet-f1.onnx: sha256 .* does not match the manifest") as info:
        Ensemble.load(artifacts, device="cpu")
    assert "\n" not in str(info.value)


def test_missing_model_refused(tiny_export, tmp_path):
    artifacts = copy_artifacts(tiny_export, tmp_path / "a")
    (artifacts / "onnx" / "tinycnn-f1.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"tinycnn-f1.onnx: model file listed in the manifest is missing"):
        Ensemble.load(artifacts, device="cpu")


def test_other_schema_version_refused(tiny_export, tmp_path):
    artifacts = copy_artifacts(tiny_export, tmp_path / "a")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ArtifactError, match=r"manifest.json: schema_version 99 \(written by tbensemble .*\) is not supported"
    ):
        Ensemble.load(artifacts, device="cpu")


def test_tta_override_checked(tiny_export, caplog):
    ensemble = Ensemble.load(tiny_export, device="cpu", tta=["identity"])
    assert ensemble.tta == ["identity"] and "differ from the manifest's" in caplog.text
    from tbensemble.core.errors import TbensError

    with pytest.raises(TbensError, match="--tta identity,spin: unknown"):
        Ensemble.load(tiny_export, device="cpu", tta=["identity", "spin"])
