"""tbens optimize on a small hand-built model: variants built, gated on the fold's held-out images,
chosen, recorded with hashes; the engine then runs the chosen variant."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.config import TrainConfig, dump_config
from tbensemble.core.errors import DataError, TbensError
from tbensemble.core.gate import FP32, GateLimits
from tbensemble.core.manifest import load_manifest, sha256_of
from tbensemble.engine.ensemble import Ensemble
from tbensemble.optimize.quantize import head_nodes
from tbensemble.optimize.run import REPORT_NAME, optimize_run
from tests.engine.variantrun import SIZE, make_artifacts
from tests.export.tinyrun import write_images

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="needs the optimize extra (installed in CI)"
)
ANYTHING = GateLimits(min_spearman=-1.0, max_abs_delta_auc=1.0, max_flipped_fraction=1.0, min_speedup=0.0)
"""Limits every variant passes, to test what happens once one is chosen."""


@pytest.fixture
def run(tmp_path):
    """A run folder: the tiny model's artifacts, folder-layout training data, folds.csv, config.yaml."""
    root = make_artifacts(tmp_path / "run")
    data = tmp_path / "data"
    write_images(data / "Normal", 20, seed=1)
    write_images(data / "Tuberculosis", 20, seed=2)
    names = sorted(p.name for p in data.rglob("*.png"))
    labels = [int(n.startswith("img2_")) for n in names]
    pd.DataFrame({"image_id": names, "label": labels, "fold": np.arange(len(names)) % 2}).to_csv(
        root / "folds.csv", index=False
    )
    (root / "config.yaml").write_text(dump_config(TrainConfig(data=str(data))))
    return root


def test_head_nodes_are_what_the_features_do_not_need(run):
    assert head_nodes(run / "onnx" / "tiny-f0.onnx", "features") == [
        "pool",
        "flatten",
        "dense",
        "dense_bias",
        "sigmoid",
    ]


def test_int8_variant_built_gated_recorded_and_run_by_the_engine(run):
    reports = optimize_run(run, variant_names=["ort-int8-qoperator"], limits=ANYTHING, n_calibration=8)
    (report,) = reports
    assert report.n_heldout == 20 and report.chosen == "ort-int8-qoperator"
    assert [r.variant for r in report.rows] == [FP32, "ort-int8-qoperator"]
    row = report.rows[1]
    assert row.chosen and row.reason.startswith("chosen") and row.gate["n_images"] == 20
    assert row.ratio == pytest.approx(row.images_per_s / report.rows[0].images_per_s)

    manifest = load_manifest(run)
    (entry,) = manifest.models
    (variant,) = entry.variants
    assert entry.default_variant == "ort-int8-qoperator"
    assert variant.file == "onnx/variants/tiny-f0.ort-int8-qoperator.onnx"
    assert variant.sha256 == sha256_of(run / variant.file)
    assert variant.gate["spearman"] == row.gate["spearman"] and len(variant.oof_scores_sorted) == 20
    assert "QLinearConv" in (run / variant.file).read_bytes().decode("latin-1")
    assert json.loads((run / REPORT_NAME).read_text())["models"][0]["chosen"] == "ort-int8-qoperator"

    # the engine runs exactly the variant file, ranked against the variant's own held-out scores
    import onnxruntime as ort

    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE), dtype=np.uint8)
    ensemble = Ensemble.load(run, device="cpu")
    assert ensemble.variants == {"tiny-f0": "ort-int8-qoperator"}
    session = ort.InferenceSession(str(run / variant.file), providers=["CPUExecutionProvider"])
    direct = session.run(["probability"], {"image": images.astype(np.float32)[..., None]})[0][:, 0]
    np.testing.assert_allclose(ensemble.score(images)["tiny-f0"], direct, atol=1e-6)
    np.testing.assert_array_equal(ensemble.references["tiny-f0"], variant.oof_scores_sorted)


def test_rerun_resumes_and_force_rebuilds(run):
    optimize_run(run, variant_names=["ort-int8-qdq"], limits=ANYTHING, n_calibration=8)
    (again,) = optimize_run(run, variant_names=["ort-int8-qdq"], limits=ANYTHING)
    assert again.reused and again.chosen == "ort-int8-qdq" and len(again.rows) == 2
    (rebuilt,) = optimize_run(run, variant_names=["ort-int8-qdq"], force=True, n_calibration=8)
    assert not rebuilt.reused


def test_failing_variants_leave_no_file_and_fp32_stays(run):
    strict = GateLimits(min_spearman=1.01)
    (report,) = optimize_run(run, variant_names=["ort-int8-qoperator", "ort-int8-conv"], limits=strict, n_calibration=8)
    assert report.chosen == FP32 and report.rows[0].chosen
    assert all(r.reason.startswith("gate failed: Spearman") for r in report.rows[1:])
    assert load_manifest(run).models[0].variants == []
    assert list((run / "onnx" / "variants").glob("*.onnx")) == []
    assert Ensemble.load(run, device="cpu").variants == {"tiny-f0": FP32}


@needs_openvino
def test_cli_prints_a_table_per_model(run):
    result = CliRunner().invoke(
        cli, ["optimize", str(run), "--variants", "openvino-fp32,openvino-bf16", "--calibration-images", "4"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("tiny-f0: 20 held-out images, chosen ")
    assert lines[1].split()[:9] == [
        "variant",
        "img/s",
        "×fp32",
        "Spearman",
        "AUC",
        "ΔAUC",
        "flipped",
        "max|Δp|",
        "chosen",
    ]
    assert lines[2].split()[0] == "fp32" and lines[3].split()[0] == "openvino-fp32"
    assert "1.00000" in lines[3] and "+0.0000" in lines[3]
    assert "manifest.json: defaults" in lines[-1]


def test_openvino_missing_makes_its_variants_unavailable_not_fatal(run, monkeypatch):
    from tbensemble.engine import variants as engine_variants

    def no_openvino():
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(engine_variants, "openvino_core", no_openvino)
    (report,) = optimize_run(run, variant_names=["openvino-bf16"])
    assert report.chosen == FP32
    assert report.rows[1].reason == "not available here: openvino is not installed (pip install 'tbensemble[optimize]')"


def test_bad_inputs_are_one_line_errors(run, tmp_path):
    with pytest.raises(TbensError, match="--variants int4: not known; allowed: openvino-fp32"):
        optimize_run(run, variant_names=["int4"])
    with pytest.raises(TbensError, match="--target 'tpu': not known; allowed: cpu, cuda"):
        optimize_run(run, target="tpu")
    with pytest.raises(DataError, match="no dataset found"):
        optimize_run(run, data_dir=tmp_path / "run" / "onnx")
    other = tmp_path / "other"
    write_images(other / "Normal", 2, seed=8)
    write_images(other / "Tuberculosis", 2, seed=9)
    with pytest.raises(
        DataError, match=r"folds\.csv: 40 images are not in .*other \(e\.g\. img1_0\.png\); give --data"
    ):
        optimize_run(run, data_dir=other)
    (run / "folds.csv").unlink()
    with pytest.raises(DataError, match=r"folds\.csv: not found"):
        optimize_run(run)


def test_a_second_optimize_on_the_same_run_is_refused(run):
    from tbensemble.optimize.run import exclusive

    with exclusive(run), pytest.raises(TbensError, match="another 'tbens optimize' is running on this run"):
        optimize_run(run, variant_names=["ort-int8-qdq"])
    assert optimize_run(run, variant_names=["ort-int8-qdq"], n_calibration=4)[0].n_heldout == 20


@needs_openvino
def test_openvino_int8_ir_hashes_both_files_and_a_tampered_bin_is_refused(run):
    from tbensemble.core.errors import ArtifactError

    (report,) = optimize_run(run, variant_names=["openvino-int8"], limits=ANYTHING, n_calibration=8)
    assert report.chosen == "openvino-int8", report.rows
    (variant,) = load_manifest(run).models[0].variants
    assert variant.file == "onnx/variants/tiny-f0.openvino-int8.xml"
    assert variant.extra_files == {
        "onnx/variants/tiny-f0.openvino-int8.bin": sha256_of(run / "onnx/variants/tiny-f0.openvino-int8.bin")
    }
    assert variant.sha256 == sha256_of(run / variant.file)
    assert Ensemble.load(run, device="cpu").providers == {"tiny-f0": "OpenVINO CPU int8"}
    with open(run / "onnx/variants/tiny-f0.openvino-int8.bin", "r+b") as handle:
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(ArtifactError, match=r"openvino-int8\.bin: sha256 .* does not match"):
        Ensemble.load(run, device="cpu")
