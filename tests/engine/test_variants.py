"""The engine runs the variant the manifest chose, or fp32 with a log line where it cannot; it refuses a
tampered variant file like any model."""

import importlib.util
import logging
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from PIL import Image

from tbensemble.cli import cli
from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.engine import variants as engine_variants
from tbensemble.engine.ensemble import Ensemble
from tbensemble.engine.variants import OpenVinoModel
from tests.engine.variantrun import SIZE, make_artifacts, openvino_variant, set_variants

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="needs the optimize extra (installed in CI)"
)


@pytest.fixture(autouse=True)
def fresh_log_once(monkeypatch):
    monkeypatch.setattr(engine_variants, "_LOGGED", set())


@pytest.fixture
def images():
    return np.random.default_rng(5).integers(0, 256, (6, SIZE, SIZE), dtype=np.uint8)


def fp32_scores(root, images):
    session = ort.InferenceSession(str(root / "onnx" / "tiny-f0.onnx"), providers=["CPUExecutionProvider"])
    return session.run(["probability"], {"image": images.astype(np.float32)[..., None]})[0][:, 0]


def ort_variant(root, name="ort-int8-qoperator"):
    """An ONNX Runtime variant file (a copy of the fp32 model stands in for the quantised one)."""
    from tbensemble.core.manifest import sha256_of

    file = root / "onnx" / "variants" / f"tiny-f0.{name}.onnx"
    file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "onnx" / "tiny-f0.onnx", file)
    return openvino_variant(
        root,
        name=name,
        runtime="onnxruntime",
        precision="int8",
        file=f"onnx/variants/{file.name}",
        sha256=sha256_of(file),
    )


def cuda_variant(root):
    """A CUDA FP16 variant entry (a copy of the fp32 model stands in for the converted one)."""
    return ort_variant(root, "cuda-fp16") | {"runtime": "onnxruntime-cuda", "precision": "fp16"}


@needs_openvino
def test_auto_runs_the_chosen_openvino_variant_on_its_own_reference(tmp_path, images):
    root = make_artifacts(tmp_path)
    variant = openvino_variant(root)
    set_variants(root, [variant], "openvino-fp32")
    ensemble = Ensemble.load(root, device="cpu")
    assert ensemble.variants == {"tiny-f0": "openvino-fp32"}
    assert ensemble.providers == {"tiny-f0": "OpenVINO CPU fp32"}
    assert isinstance(ensemble.sessions["tiny-f0"], OpenVinoModel)
    scores = ensemble.score(images)["tiny-f0"]
    np.testing.assert_allclose(scores, fp32_scores(root, images), atol=1e-5)
    np.testing.assert_array_equal(ensemble.references["tiny-f0"], variant["oof_scores_sorted"])
    # dynamic batch: another batch size through the same compiled model
    np.testing.assert_allclose(ensemble.score(images[:1])["tiny-f0"], scores[:1], atol=1e-6)


@needs_openvino
def test_precision_fp32_runs_the_exported_model(tmp_path, images):
    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root)], "openvino-fp32")
    ensemble = Ensemble.load(root, device="cpu", precision="fp32")
    assert ensemble.variants == {"tiny-f0": "fp32"}
    assert ensemble.providers == {"tiny-f0": "CPUExecutionProvider"}
    assert ensemble.references["tiny-f0"][0] == pytest.approx(0.2)


@needs_openvino
def test_bf16_variant_runs_where_the_cpu_has_bf16_else_fp32(tmp_path, images, caplog):
    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root, "bf16")], "openvino-bf16")
    has_bf16 = "BF16" in engine_variants.cpu_capabilities()
    with caplog.at_level(logging.WARNING):
        ensemble = Ensemble.load(root, device="cpu")
    assert ensemble.variants["tiny-f0"] == ("openvino-bf16" if has_bf16 else "fp32")
    assert ("this CPU lacks BF16" in caplog.text) is not has_bf16
    scores = ensemble.score(images)["tiny-f0"]
    np.testing.assert_allclose(scores, fp32_scores(root, images), atol=0.02)


def test_missing_openvino_falls_back_to_fp32_with_one_log_line(tmp_path, images, monkeypatch, caplog):
    def no_openvino():
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(engine_variants, "openvino_core", no_openvino)
    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root)], "openvino-fp32")
    with caplog.at_level(logging.WARNING):
        ensemble = Ensemble.load(root, device="cpu")
        Ensemble.load(root, device="cpu")
    assert ensemble.variants == {"tiny-f0": "fp32"} and ensemble.providers == {"tiny-f0": "CPUExecutionProvider"}
    lines = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert lines == [
        "tiny-f0: variant openvino-fp32 not used (openvino is not installed (pip install 'tbensemble[optimize]')); running the fp32 model"
    ]
    np.testing.assert_allclose(ensemble.score(images)["tiny-f0"], fp32_scores(root, images), atol=1e-6)
    assert ensemble.references["tiny-f0"][0] == pytest.approx(0.2)


def test_cpu_without_the_capability_falls_back(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(engine_variants, "cpu_capabilities", lambda: frozenset({"FP32", "INT8"}))
    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root, "bf16")], "openvino-bf16")
    with caplog.at_level(logging.WARNING):
        assert Ensemble.load(root, device="cpu").variants == {"tiny-f0": "fp32"}
    assert "variant openvino-bf16 not used (this CPU lacks BF16)" in caplog.text


def test_onnxruntime_variant_runs_its_own_file(tmp_path, images):
    root = make_artifacts(tmp_path)
    set_variants(root, [ort_variant(root)], "ort-int8-qoperator")
    ensemble = Ensemble.load(root, device="cpu")
    assert ensemble.variants == {"tiny-f0": "ort-int8-qoperator"}
    assert ensemble.providers == {"tiny-f0": "CPUExecutionProvider int8"}
    np.testing.assert_allclose(ensemble.score(images)["tiny-f0"], fp32_scores(root, images), atol=1e-6)


def test_cuda_variant_on_the_cpu_runs_fp32_with_one_log_line(tmp_path, images, caplog):
    root = make_artifacts(tmp_path)
    set_variants(root, [cuda_variant(root)], "cuda-fp16")
    with caplog.at_level(logging.WARNING):
        ensemble = Ensemble.load(root, device="cpu")
    assert ensemble.variants == {"tiny-f0": "fp32"}
    assert "variant cuda-fp16 not used (it is a CUDA build and this run uses the CPU)" in caplog.text
    np.testing.assert_allclose(ensemble.score(images)["tiny-f0"], fp32_scores(root, images), atol=1e-6)


@pytest.mark.skipif(engine_variants.why_no_cuda() is None, reason="CUDA works here: the variant would run")
def test_cuda_variant_whose_session_gets_no_cuda_falls_back(tmp_path, monkeypatch, caplog):
    """onnxruntime falls back to the CPU silently when CUDA cannot start: the variant must not run there."""
    monkeypatch.setattr(engine_variants, "why_no_cuda", lambda: None)
    root = make_artifacts(tmp_path)
    set_variants(root, [cuda_variant(root)], "cuda-fp16")
    with caplog.at_level(logging.WARNING):
        ensemble = Ensemble.load(root, device="auto")
    assert ensemble.variants == {"tiny-f0": "fp32"}
    assert "variant cuda-fp16 not used (its session did not get CUDA" in caplog.text


def test_tampered_variant_is_refused_even_where_it_would_not_run(tmp_path, monkeypatch):
    root = make_artifacts(tmp_path / "artifacts")
    variant = ort_variant(root)
    set_variants(root, [variant], "ort-int8-qoperator")
    with open(root / variant["file"], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=r"tiny-f0\.ort-int8-qoperator\.onnx: sha256 .* does not match"):
        Ensemble.load(root, device="cpu")
    scan = tmp_path / "scan.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(scan)
    out = str(tmp_path / "out.csv")
    result = CliRunner().invoke(cli, ["predict", "--artifacts", str(root), "--images", str(scan), "--out", out])
    assert result.exit_code == 3 and "does not match the manifest" in result.output
    (root / variant["file"]).unlink()
    with pytest.raises(ArtifactError, match="model file listed in the manifest is missing"):
        Ensemble.load(root, device="cpu")
    # --precision fp32 does not need the variant file at all
    assert Ensemble.load(root, device="cpu", precision="fp32").variants == {"tiny-f0": "fp32"}


def test_default_variant_missing_from_the_list_and_unknown_precision(tmp_path):
    root = make_artifacts(tmp_path)
    set_variants(root, [], "openvino-bf16")
    with pytest.raises(
        ArtifactError, match=r'models\[0\]\.default_variant: "openvino-bf16" is not fp32 or one of its variants'
    ):
        Ensemble.load(root, device="cpu")
    set_variants(root, [], "fp32")
    with pytest.raises(TbensError, match="--precision 'int4' is not known"):
        Ensemble.load(root, device="cpu", precision="int4")


@needs_openvino
def test_openvino_model_is_safe_to_call_from_threads(tmp_path, images):
    from concurrent.futures import ThreadPoolExecutor

    root = make_artifacts(tmp_path)
    model = engine_variants.compile_openvino(str(root / "onnx" / "tiny-f0.onnx"), "fp32", threads=1)
    batches = [images[i : i + 1].astype(np.float32)[..., None] for i in range(len(images))]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda b: model.run(["probability"], {"image": b})[0], batches * 4))
    np.testing.assert_allclose(np.concatenate(results[: len(images)])[:, 0], fp32_scores(root, images), atol=1e-5)
    assert all(np.array_equal(results[i], results[i + len(images)]) for i in range(len(images)))


def test_a_variant_that_cannot_be_opened_falls_back(tmp_path, monkeypatch, caplog):
    def cannot_compile(*args, **kwargs):
        raise TbensError("tiny-f0.onnx: OpenVINO cannot compile this model (unsupported op)")

    monkeypatch.setattr(engine_variants, "why_unavailable", lambda runtime, requires: None)
    monkeypatch.setattr(engine_variants, "compile_openvino", cannot_compile)
    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root)], "openvino-fp32")
    with caplog.at_level(logging.WARNING):
        assert Ensemble.load(root, device="cpu").variants == {"tiny-f0": "fp32"}
    assert "variant openvino-fp32 not used (tiny-f0.onnx: OpenVINO cannot compile this model" in caplog.text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"file": "../elsewhere.onnx"}, 'variants[0].file: "../elsewhere.onnx" is not a relative path inside'),
        ({"file": "onnx/variants/x.so"}, "is not a .onnx or .xml file"),
        ({"precision": "fp8"}, 'variants[0].precision: "fp8" is not one of fp32, bf16, int8'),
        ({"runtime": "tensorrt"}, 'variants[0].runtime: "tensorrt" is not one of onnxruntime, openvino'),
        ({"oof_scores_sorted": [0.9, 0.1]}, "variants[0].oof_scores_sorted: is not sorted"),
        ({"extra_files": {"/etc/passwd.bin": "0" * 64}}, 'extra_files: "/etc/passwd.bin" is not a relative path'),
        ({"name": "fp32"}, "variant names must be unique and not 'fp32'"),
        ({"surprise": 1}, "variants[0].surprise: unknown key"),
    ],
)
def test_a_variant_entry_is_checked_when_the_manifest_is_read(tmp_path, change, problem):
    root = make_artifacts(tmp_path)
    set_variants(root, [{**openvino_variant(root), **change}], "fp32")
    with pytest.raises(ArtifactError) as error:
        Ensemble.load(root, device="cpu", precision="fp32")
    assert problem in str(error.value)


@needs_openvino
def test_the_api_and_the_ray_actor_run_the_precision_asked_for(tmp_path):
    """Found while routing ``tbens predict`` through the API: Ray's actors loaded with the default precision."""
    import tbensemble
    from tbensemble.distributed.scoring import EnsembleScorer

    root = make_artifacts(tmp_path)
    set_variants(root, [openvino_variant(root)], "openvino-fp32")
    for precision, running in (("auto", "openvino-fp32"), ("fp32", "fp32")):
        assert tbensemble.load(root, device="cpu", precision=precision).ensemble.variants == {"tiny-f0": running}
        actor = EnsembleScorer(str(root), "cpu", ["identity"], 4, precision=precision)
        assert actor.ensemble.variants == {"tiny-f0": running}
