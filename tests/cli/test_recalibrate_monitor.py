"""``tbens recalibrate`` (a site's own points, models untouched) and ``tbens monitor`` (PSI + refer rate)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core import decisions as rules
from tbensemble.core.manifest import load_manifest
from tbensemble.data.decode import load_image
from tbensemble.data.layout import load_training_set
from tbensemble.engine.decisions import decide_images
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.recalibrate import site_data_hash
from tests.export.tinyrun import copy_artifacts, exported_run, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return copy_artifacts(exported_run(tmp_path_factory), tmp_path_factory.mktemp("edge") / "artifacts")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_images(root / "Normal", 16, seed=41)
    write_images(root / "Tuberculosis", 14, seed=42)
    return root


def tbens(*args):
    return CliRunner().invoke(cli, [*map(str, args)], obj={})


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recalibrate_rechooses_points_on_the_site_and_keeps_the_models(artifacts, site, tmp_path):
    out = tmp_path / "site-run"
    before = {p.name: sha(p) for p in (artifacts / "onnx").glob("*.onnx")}
    manifest_before = sha(artifacts / "manifest.json")
    result = tbens("recalibrate", "--artifacts", artifacts, "--data", site, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert {p.name: sha(p) for p in (out / "onnx").glob("*.onnx")} == before
    assert sha(artifacts / "manifest.json") == manifest_before, "the shipped artifacts are untouched"
    new, old = load_manifest(out), load_manifest(artifacts)
    assert [m.sha256 for m in new.models] == [m.sha256 for m in old.models]
    assert [m.oof_scores_sorted for m in new.models] == [m.oof_scores_sorted for m in old.models]
    record = new.ensemble.site
    assert record["n"] == 30 and record["n_positive"] == 14
    assert record["sha256"] == site_data_hash(load_training_set(site)) and record["date"]
    assert record["recalibrated_from"]["manifest_sha256"] == manifest_before
    frame = load_training_set(site)
    ensemble = Ensemble.load(artifacts, device="cpu")
    images = np.stack([load_image(p, ensemble.image_size) for p in frame["path"]])
    scores = decide_images(ensemble, images, frame["image_id"].tolist())["score"].to_numpy()
    points, default = rules.decision_points(frame["label"].to_numpy(), scores, 0.90)
    assert new.ensemble.default_operating_point == default
    assert new.ensemble.operating_points[default]["threshold"] == pytest.approx(points[default]["threshold"])
    assert new.ensemble.calibration["method"] == old.ensemble.calibration["method"] == "platt"
    assert new.ensemble.calibration["n"] == 30
    for rule in ("features", "disagreement"):
        if old.ensemble.refer.get(rule):
            assert new.ensemble.refer[rule]["threshold"] >= old.ensemble.refer[rule]["threshold"]
    assert "models copied unchanged" in result.output
    predicted = tbens("predict", "--artifacts", out, "--images", frame["path"][0], "--format", "json")
    assert predicted.exit_code == 0 and json.loads(predicted.stdout)[0]["manifest_sha256"] == sha(out / "manifest.json")


def test_recalibrate_refuses_unsafe_outputs_and_thin_data(artifacts, site, tmp_path):
    result = tbens("recalibrate", "--artifacts", artifacts, "--data", site, "--out", artifacts)
    assert result.exit_code == 2 and "new folder" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = tbens("recalibrate", "--artifacts", artifacts, "--data", site, "--out", tmp_path / "full")
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    thin = tmp_path / "thin"
    write_images(thin / "Normal", 12, seed=43)
    write_images(thin / "Tuberculosis", 3, seed=44)
    result = tbens("recalibrate", "--artifacts", artifacts, "--data", thin, "--out", tmp_path / "new")
    assert result.exit_code == 2 and "3 TB and 12 normal" in result.output
    assert not (tmp_path / "new").exists()


def test_monitor_reports_psi_and_refer_rate(artifacts, tmp_path):
    write_images(tmp_path / "batch", 12, seed=45)
    predicted = tbens(
        "predict", "--artifacts", artifacts, "--images", tmp_path / "batch", "--out", tmp_path / "s.csv",
        "--decisions", tmp_path / "d.csv",
    )  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    text = tbens("monitor", "--artifacts", artifacts, "--decisions", tmp_path / "d.csv")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(("ok: PSI", "alert: PSI")) and "refer rate" in text.stdout and "noisy" in text.stdout
    summary = json.loads(
        tbens("monitor", "--artifacts", artifacts, "--decisions", tmp_path / "d.csv", "--format", "json").stdout
    )
    frame = pd.read_csv(tmp_path / "d.csv")
    manifest = load_manifest(artifacts)
    assert summary["psi"] == pytest.approx(rules.psi(manifest.ensemble.drift, frame["score"].to_numpy()))
    assert summary["refer_rate"] == pytest.approx((frame["decision"] == "refer").mean())
    assert summary["n"] == 12 and summary["status"] in ("ok", "alert")
    frame.assign(score=0.999).to_csv(tmp_path / "high.csv", index=False)
    shifted = json.loads(
        tbens("monitor", "--artifacts", artifacts, "--decisions", tmp_path / "high.csv", "--format", "json").stdout
    )
    assert shifted["status"] == "alert" and shifted["psi"] > 0.2


def test_monitor_errors_are_one_line(artifacts, tmp_path):
    pd.DataFrame({"image_id": ["a"], "score": [0.5]}).to_csv(tmp_path / "bad.csv", index=False)
    result = tbens("monitor", "--artifacts", artifacts, "--decisions", tmp_path / "bad.csv")
    assert result.exit_code == 2 and "missing column(s) decision, manifest_sha256" in result.output
    old = copy_artifacts(artifacts, tmp_path / "old")
    data = json.loads((old / "manifest.json").read_text())
    del data["ensemble"]["drift"]
    (old / "manifest.json").write_text(json.dumps(data))
    result = tbens("monitor", "--artifacts", old, "--decisions", tmp_path / "bad.csv")
    assert result.exit_code == 3 and "no drift reference" in result.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e["refer"]["disagreement"].update(threshold=float("nan")), "ensemble.refer.disagreement.threshold"),
        (lambda e: e["refer"]["features"]["models"].popitem(), "ensemble.refer.features.models"),
        (lambda e: e["drift"].update(expected=[0.5, 0.5]), "ensemble.drift"),
        (lambda e: next(iter(e["refer"]["features"]["models"].values())).update(scales=[-1.0]), "feature reference"),
    ],
)
def test_tampered_decision_fields_are_refused_at_load(artifacts, tmp_path, edit, message):
    copy = copy_artifacts(artifacts, tmp_path / "copy")
    data = json.loads((copy / "manifest.json").read_text())
    reference = rules.FeatureReference.fit(np.random.default_rng(0).normal(size=(40, 6)), 2).to_dict()
    models = {m["name"]: reference for m in data["models"]}
    data["ensemble"]["refer"]["features"] = {"threshold": 2.0, "n_components": 2, "models": models}
    (copy / "manifest.json").write_text(json.dumps(data))
    assert tbens("monitor", "--artifacts", copy, "--decisions", copy / "manifest.json").exit_code == 2, "valid as built"
    edit(data["ensemble"])
    (copy / "manifest.json").write_text(json.dumps(data))
    result = tbens("monitor", "--artifacts", copy, "--decisions", copy / "manifest.json")
    assert result.exit_code == 3 and message in result.output and result.output.count("\n") == 1
