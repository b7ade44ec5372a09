"""Issue 7 from the command line, on the hand-made ONNX ensemble (milliseconds, no TensorFlow): a manifest
that is checked at load in every command that reads one (exit 3, one line), and outputs that never destroy
(exit 2 before any scoring)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.errors import EXIT_ARTIFACT, EXIT_USAGE
from tests.engine.test_cam import write_tiny_run
from tests.export.tinyrun import write_images


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_tiny_run(tmp_path / "run")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return write_images(tmp_path / "test", 3, seed=31)


def invoke(*args) -> object:
    return CliRunner().invoke(cli, [*map(str, args)], obj={})


def predict(run: Path, images_dir: Path, out: Path, *extra) -> object:
    return invoke("predict", "--artifacts", run, "--images", images_dir, "--out", out, "--device", "cpu", *extra)


def one_line_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert "Traceback" not in result.output


def edit_manifest(run: Path, change) -> None:
    path = run / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


BAD_MANIFESTS = [
    (lambda d: d["models"][1].update(weight=float("nan")), "models[1].weight: NaN is not a finite number ≥ 0"),
    (
        lambda d: d["ensemble"]["operating_points"]["youden"].update(threshold=float("nan")),
        "ensemble.operating_points.youden.threshold: NaN is not a finite number",
    ),
    (lambda d: d["models"][0].update(head_bias="0.1"), 'models[0].head_bias: "0.1" (a string) is not a finite number'),
    (lambda d: d["models"][0].update(file="/etc/shadow"), 'models[0].file: "/etc/shadow" is not a relative path'),
    (lambda d: d["models"][0].update(file="../../x.onnx"), 'models[0].file: "../../x.onnx" is not a relative path'),
]


@pytest.mark.parametrize(("change", "message"), BAD_MANIFESTS)
def test_bad_manifest_exits_3_in_predict_explain_and_evaluate(run, images, tmp_path, change, message) -> None:
    edit_manifest(run, change)
    one_line_error(predict(run, images[0].parent, tmp_path / "s.csv"), EXIT_ARTIFACT, message)
    assert not (tmp_path / "s.csv").exists()
    explain = invoke("explain", "--artifacts", run, images[0], "--out", tmp_path / "ex", "--device", "cpu")
    one_line_error(explain, EXIT_ARTIFACT, message)
    pd.DataFrame({"image_id": [p.name for p in images], "label": [0.1, 0.5, 0.9]}).to_csv(tmp_path / "sub.csv")
    pd.DataFrame({"image_id": [p.name for p in images], "label": [0, 1, 1]}).to_csv(tmp_path / "truth.csv")
    evaluate = invoke(
        "evaluate", "--submission", tmp_path / "sub.csv", "--truth", tmp_path / "truth.csv", "--artifacts", run
    )
    one_line_error(evaluate, EXIT_ARTIFACT, message)


@pytest.mark.parametrize("content", ["42", '"a string"', "[1, 2]", "{"])
def test_manifest_that_is_not_an_object_exits_3(run, images, tmp_path, content) -> None:
    (run / "manifest.json").write_text(content)
    one_line_error(predict(run, images[0].parent, tmp_path / "s.csv"), EXIT_ARTIFACT, "manifest.json: ")


def test_predict_refuses_to_overwrite_the_manifest_or_an_input(run, images, tmp_path) -> None:
    manifest = (run / "manifest.json").read_bytes()
    one_line_error(predict(run, images[0].parent, run / "manifest.json"), EXIT_USAGE, "inside the artifacts folder")
    assert (run / "manifest.json").read_bytes() == manifest
    before = images[1].read_bytes()
    one_line_error(predict(run, images[0].parent, images[1]), EXIT_USAGE, f"is the input image {images[1]}")
    one_line_error(
        invoke("predict", "--artifacts", run, "--images", images[1], "--out", images[1]),
        EXIT_USAGE,
        "is the input image",
    )
    assert images[1].read_bytes() == before
    result = predict(run, images[0].parent, Path("/dev/null"))
    one_line_error(result, EXIT_USAGE, "/dev/null: is a character device, not a regular file")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    one_line_error(predict(run, images[0].parent, fifo), EXIT_USAGE, "is a FIFO")
    one_line_error(predict(run, images[0].parent, Path("/proc/s.csv")), EXIT_USAGE, "cannot write in /proc")


def test_predict_refuses_to_overwrite_the_sample_submission(run, tmp_path) -> None:
    write_images(tmp_path / "comp" / "test", 2, seed=32)
    sample = tmp_path / "comp" / "sample_submission.csv"
    sample.write_text("image_id,label\nimg32_0.png,0.5\nimg32_1.png,0.5\n")
    one_line_error(predict(run, tmp_path / "comp" / "test", sample), EXIT_USAGE, "is the input image")
    assert sample.read_text().startswith("image_id,label\nimg32_0.png,0.5")


def test_existing_output_keeps_mode_600_and_a_clean_run_removes_a_stale_skipped_list(run, images, tmp_path) -> None:
    out = tmp_path / "s.csv"
    (images[0].parent / "bad.png").write_bytes(b"garbage")
    result = predict(run, images[0].parent, out, "--skip-bad")
    assert result.exit_code == 0 and (tmp_path / "s.skipped.csv").is_file(), result.output
    out.chmod(0o600)
    (images[0].parent / "bad.png").unlink()
    result = predict(run, images[0].parent, out)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "s.skipped.csv").exists(), "a stale skipped list would describe another run"
    assert len(pd.read_csv(out)) == 3


def test_explain_refuses_the_artifacts_folder_and_an_input(run, images, tmp_path) -> None:
    result = invoke("explain", "--artifacts", run, images[0], "--out", run / "onnx", "--device", "cpu")
    one_line_error(result, EXIT_USAGE, "inside the artifacts folder")
    image = images[0].parent / "scan.png"
    overlay_named_like_an_input = images[0].parent / "scan.png.cam.png"
    for path in (image, overlay_named_like_an_input):
        path.write_bytes(images[0].read_bytes())
    result = invoke("explain", "--artifacts", run, image, overlay_named_like_an_input, "--out", images[0].parent)
    one_line_error(result, EXIT_USAGE, f"is the input image {overlay_named_like_an_input}")
    assert overlay_named_like_an_input.read_bytes() == images[0].read_bytes()


def test_interrupt_exits_130_in_one_line(run, images, tmp_path, monkeypatch) -> None:
    from tbensemble.engine.api import TriageEnsemble

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TriageEnsemble, "score_files", interrupted)
    result = predict(run, images[0].parent, tmp_path / "s.csv")
    assert result.exit_code == 130 and result.output.strip() == "interrupted"
