"""``tbens predict --decisions / --format json``: one decision row per image, the same through every door."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.engine.decisions import DECISION_COLUMNS
from tests.data.dicom_files import write_dicom
from tests.export.tinyrun import copy_artifacts, exported_run, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return copy_artifacts(exported_run(tmp_path_factory), tmp_path_factory.mktemp("edge") / "artifacts")


def run(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], obj={})


def test_single_files_get_decisions_and_never_a_batch_ranked_label(artifacts, tmp_path, monkeypatch):
    paths = write_images(tmp_path / "in", 3, seed=31)
    monkeypatch.chdir(tmp_path)
    result = run("--artifacts", artifacts, "--images", paths[0], "--images", paths[1], "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "submission.csv").exists()
    frame = pd.read_csv(tmp_path / "decisions.csv", dtype={"reasons": str}, keep_default_na=False)
    assert tuple(frame.columns) == DECISION_COLUMNS
    assert frame["image_id"].tolist() == [paths[0].name, paths[1].name]
    assert set(frame["decision"]) <= {"tb", "normal", "refer"}
    sha = hashlib.sha256((artifacts / "manifest.json").read_bytes()).hexdigest()
    assert (frame["manifest_sha256"] == sha).all()


def test_json_rows_equal_the_csv_rows_and_a_folder_gets_both_files(artifacts, tmp_path):
    folder = tmp_path / "test"
    paths = write_images(folder, 4, seed=32)
    result = run(
        "--artifacts", artifacts, "--images", folder, "--out", tmp_path / "s.csv",
        "--decisions", tmp_path / "d.csv", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    frame = pd.read_csv(tmp_path / "d.csv", dtype={"reasons": str}, keep_default_na=False)
    assert [r["image_id"] for r in rows] == frame["image_id"].tolist() == [p.name for p in paths]
    assert [r["decision"] for r in rows] == frame["decision"].tolist()
    np.testing.assert_allclose([r["score"] for r in rows], frame["score"])
    assert pd.read_csv(tmp_path / "s.csv").shape == (4, 2)
    alone = run("--artifacts", artifacts, "--images", paths[2], "--format", "json", "--batch-size", "1")
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.stdout)[0] == rows[2], "one image alone gets the row it gets in a batch"


def test_dicom_of_another_body_part_is_referred(artifacts, tmp_path):
    pixels = np.random.default_rng(3).integers(200, 3800, (48, 48)).astype(np.uint16)
    write_dicom(tmp_path / "hand.dcm", pixels, BodyPartExamined="HAND", ViewPosition="PA")
    write_dicom(tmp_path / "chest.dcm", pixels, BodyPartExamined="CHEST", ViewPosition="PA")
    result = run(
        "--artifacts", artifacts, "--images", tmp_path / "hand.dcm", "--images", tmp_path / "chest.dcm",
        "--decisions", tmp_path / "d.csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "d.csv", dtype={"reasons": str}, keep_default_na=False).set_index("image_id")
    assert frame.loc["hand.dcm", "decision"] == "refer"
    assert "dicom_body_part=HAND" in frame.loc["hand.dcm", "reasons"].split(";")
    assert "dicom_body_part" not in frame.loc["chest.dcm", "reasons"]


def test_a_model_below_who_minimum_says_so_in_one_line(artifacts, tmp_path):
    paths = write_images(tmp_path / "in", 1, seed=33)
    result = run("--artifacts", artifacts, "--images", paths[0], "--decisions", tmp_path / "d.csv")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "WHO" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: operating point sensitivity>=0.90@lcb95 misses")


def test_bad_operating_point_and_unsafe_decisions_path_are_one_line_errors(artifacts, tmp_path):
    paths = write_images(tmp_path / "in", 2, seed=34)
    result = run("--artifacts", artifacts, "--images", paths[0], "--operating-point", "nope")
    assert result.exit_code == 2 and "--operating-point 'nope' is not in the manifest" in result.output
    before = paths[1].read_bytes()
    result = run(
        "--artifacts", artifacts, "--images", tmp_path / "in", "--out", tmp_path / "s.csv", "--decisions", paths[1]
    )
    assert result.exit_code == 2 and "--decisions" in result.output and paths[1].read_bytes() == before
    result = run("--artifacts", artifacts, "--images", paths[0], "--decisions", artifacts / "manifest.json")
    assert result.exit_code == 2 and "artifacts folder" in result.output
    result = run("--artifacts", artifacts, "--images", paths[0], "--operating-point", "youden", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["operating_point"] == "youden"
