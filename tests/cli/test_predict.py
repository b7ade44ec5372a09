import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.errors import EXIT_ARTIFACT, EXIT_DEVICE
from tbensemble.engine.session import why_no_cuda
from tests.export.tinyrun import copy_artifacts, exported_run, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Only onnx/ + manifest.json, as shipped to an edge server."""
    return copy_artifacts(exported_run(tmp_path_factory), tmp_path_factory.mktemp("edge") / "artifacts")


def run(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], obj={})


def test_predict_folder_writes_submission_and_prints_few_images(artifacts, tmp_path):
    paths = write_images(tmp_path / "test", 3, seed=21)
    out = tmp_path / "submission.csv"
    result = run("--artifacts", artifacts, "--images", tmp_path / "test", "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image_id", "label"]
    assert frame["image_id"].tolist() == [p.name for p in paths]
    for path in paths:
        line = next(line for line in result.output.splitlines() if line.startswith(path.name))
        assert "score " in line and "p(TB) " in line and "at sensitivity>=0.90@lcb95 (threshold" in line
        assert " TB at " in line or " normal at " in line or " refer (" in line


def test_single_file_gets_the_same_historical_score_as_in_a_batch(artifacts, tmp_path):
    paths = write_images(tmp_path / "test", 4, seed=22)
    batch = run("--artifacts", artifacts, "--images", tmp_path / "test", "--out", tmp_path / "a.csv")
    alone = run("--artifacts", artifacts, "--images", paths[1], "--out", tmp_path / "b.csv", "--batch-size", "1")
    assert batch.exit_code == alone.exit_code == 0, batch.output + alone.output

    def line_of(output):
        return next(line for line in output.splitlines() if line.startswith(paths[1].name))

    assert line_of(batch.output) == line_of(alone.output)


def test_tampered_model_is_a_one_line_error_and_no_submission(artifacts, tmp_path):
    copy = copy_artifacts(artifacts, tmp_path / "copy")
    model = copy / "onnx" / "tinycnn-f0.onnx"
    model.write_bytes(model.read_bytes() + b"x")
    write_images(tmp_path / "test", 2, seed=23)
    result = run("--artifacts", copy, "--images", tmp_path / "test", "--out", tmp_path / "s.csv")
    assert result.exit_code == EXIT_ARTIFACT
    assert result.output.strip().startswith(f"error: {model}: sha256")
    assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "s.csv").exists()


def test_empty_folder_and_bad_image(artifacts, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("--artifacts", artifacts, "--images", tmp_path / "empty", "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "no images found" in result.output
    write_images(tmp_path / "test", 3, seed=24)
    (tmp_path / "test" / "bad.png").write_bytes(b"garbage")
    result = run("--artifacts", artifacts, "--images", tmp_path / "test", "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "bad.png: cannot decode" in result.output and "1 of 4 images" in result.output
    assert not (tmp_path / "s.csv").exists()
    result = run("--artifacts", artifacts, "--images", tmp_path / "test", "--out", tmp_path / "s.csv", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 3
    assert pd.read_csv(tmp_path / "s.skipped.csv")["image_id"].tolist() == ["bad.png"]
    assert "1 skipped, listed in" in result.output


def test_device_cuda_without_cuda_fails_loudly(artifacts, tmp_path):
    write_images(tmp_path / "test", 1, seed=25)
    result = run(
        "--artifacts", artifacts, "--images", tmp_path / "test", "--out", tmp_path / "s.csv", "--device", "cuda"
    )
    if why_no_cuda() is None:
        assert result.exit_code == 0, result.output
    else:
        assert (
            result.exit_code == EXIT_DEVICE and "error: --device cuda:" in result.output and "not CUDA" in result.output
        )


def test_historical_scale_writes_the_per_image_scores(artifacts, tmp_path):
    write_images(tmp_path / "test", 3, seed=23)
    result = run(
        "--artifacts", artifacts, "--images", tmp_path / "test", "--out", tmp_path / "h.csv", "--scale", "historical"
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "h.csv")
    printed = [float(line.split("score ")[1].split()[0]) for line in result.output.splitlines() if " score " in line]
    assert frame["label"].round(4).tolist() == printed
