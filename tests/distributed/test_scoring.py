"""predict --ray: the same submission rows, decision rows, skipped list and errors as single-process predict."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.errors import EXIT_USAGE
from tests.export.tinyrun import exported_run, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """27 images (not a multiple of the batch size) and one file that does not decode, in the middle."""
    folder = tmp_path_factory.mktemp("images")
    write_images(folder, 27, seed=31)
    (folder / "img31_13b.png").write_bytes(b"not a png")
    return folder


def predict(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], obj={})


def test_predict_on_ray_writes_the_rows_of_single_process_predict(images, tmp_path, tmp_path_factory, local_ray):
    artifacts = exported_run(tmp_path_factory)
    # batch 2: engine batches of 2 (the bad file leaves one of 1), two Ray blocks of 16, so both actors work
    common = ["--artifacts", artifacts, "--images", images, "--batch-size", 2, "--device", "cpu", "--skip-bad"]
    alone = predict(*common, "--out", tmp_path / "alone.csv", "--decisions", tmp_path / "alone-decisions.csv")
    on_ray = predict(
        *common,
        "--out",
        tmp_path / "ray.csv",
        "--decisions",
        tmp_path / "ray-decisions.csv",
        "--ray",
        "--ray-actors",
        2,
    )
    assert alone.exit_code == on_ray.exit_code == 0, alone.output + on_ray.output
    for name in ("{}.csv", "{}.skipped.csv", "{}-decisions.csv"):
        assert (tmp_path / name.format("ray")).read_bytes() == (tmp_path / name.format("alone")).read_bytes(), name
    assert len((tmp_path / "ray.csv").read_text().splitlines()) == 1 + 27
    assert len((tmp_path / "ray-decisions.csv").read_text().splitlines()) == 1 + 27


def test_bad_file_without_skip_bad_is_the_same_one_line_error(images, tmp_path, tmp_path_factory, local_ray):
    artifacts = exported_run(tmp_path_factory)
    common = ["--artifacts", artifacts, "--images", images, "--device", "cpu"]
    alone = predict(*common, "--out", tmp_path / "alone.csv")
    on_ray = predict(*common, "--out", tmp_path / "ray.csv", "--ray")
    assert alone.exit_code == on_ray.exit_code == EXIT_USAGE
    error = [line for line in alone.output.splitlines() if line.startswith("error:")]
    assert error and error == [line for line in on_ray.output.splitlines() if line.startswith("error:")]
    assert "1 of 28 images cannot be decoded" in error[0]
    assert not (tmp_path / "ray.csv").exists()


def test_an_actor_that_finds_other_artifacts_fails_with_the_engines_own_error(
    images, tmp_path, tmp_path_factory, local_ray
):
    """What a node whose copy of the artifacts differs from the driver's gives: the one-line error, exit 3."""
    from tbensemble.core.errors import ArtifactError
    from tbensemble.distributed.scoring import predict_images_ray
    from tbensemble.engine.ensemble import Ensemble
    from tbensemble.engine.predict import collect_images
    from tests.export.tinyrun import copy_artifacts

    good = exported_run(tmp_path_factory)
    other = copy_artifacts(good, tmp_path / "other")
    model = other / "onnx" / "tinycnn-f0.onnx"
    model.write_bytes(model.read_bytes() + b"x")
    ensemble = Ensemble.load(good, device="cpu")
    with pytest.raises(ArtifactError, match=rf"^{re.escape(str(model))}: sha256 .* does not match the manifest"):
        predict_images_ray(ensemble, other, collect_images([images]), device="cpu", skip_bad=True, actors=1)
