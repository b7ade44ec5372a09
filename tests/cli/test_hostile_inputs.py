"""What an edge server may be handed, through ``tbens predict`` / ``explain`` on a hand-made ONNX run:
decompression bombs, symlink loops, control characters in names, two files for one submission id."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from tbensemble.cli import cli
from tbensemble.data import decode
from tests.data.dicom_files import write_deflated_bomb
from tests.engine.test_cam import blob_image, write_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("run"), n_models=1)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """0.9 MB on disk, 30000×30000 declared: 900 MB once inflated."""
    return write_deflated_bomb(tmp_path_factory.mktemp("bomb") / "bomb.dcm")


@pytest.fixture(autouse=True)
def default_limit():
    """``--max-pixels`` sets a process-wide limit; every test starts from (and leaves) the default."""
    decode.set_max_pixels(decode.DEFAULT_MAX_PIXELS)
    yield
    decode.set_max_pixels(decode.DEFAULT_MAX_PIXELS)


def invoke(*args) -> object:
    return CliRunner().invoke(cli, [*map(str, args)], obj={})


def images(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(blob_image(8, 8, size=64)).save(
            folder / name, format="PNG" if name.endswith(".png") else "JPEG"
        )
    return folder


def predict(run_dir: Path, folder: Path, out: Path, *extra) -> object:
    return invoke("predict", "--artifacts", run_dir, "--images", folder, "--out", out, "--device", "cpu", *extra)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    return result.output.strip()


def test_deflated_bomb_is_refused_by_predict_and_skipped_with_skip_bad(run_dir, bomb, tmp_path):
    folder = images(tmp_path / "test", "a.png")
    os.symlink(bomb, folder / "bomb.dcm")
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv"))
    assert "bomb.dcm: refused (declares 30000×30000 = 900.0 megapixels, above the 50-megapixel limit" in message
    assert not (tmp_path / "s.csv").exists()
    result = predict(run_dir, folder, tmp_path / "s.csv", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "s.csv")["image_id"].tolist() == ["a.png"]
    assert "refused" in pd.read_csv(tmp_path / "s.skipped.csv")["reason"][0]


def test_max_pixels_changes_the_limit(run_dir, tmp_path):
    folder = images(tmp_path / "test", "a.png")  # 64×64 = 4096 pixels
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv", "--max-pixels", "4000"))
    assert "a.png: refused (declares 0.0 megapixels, above the 0.004-megapixel limit (--max-pixels))" in message
    assert predict(run_dir, folder, tmp_path / "s.csv", "--max-pixels", "4096").exit_code == 0


def test_explain_refuses_a_1_by_100000_png(run_dir, tmp_path):
    """The table row: 277 bytes that made explain take 6.3 GB and 29 s."""
    wide = tmp_path / "wide.png"
    Image.new("L", (1, 100000)).save(wide, optimize=True)
    assert wide.stat().st_size < 1000
    result = invoke("explain", "--artifacts", run_dir, wide, "--out", tmp_path / "explain", "--device", "cpu")
    message = one_line_error(result)
    assert "wide.png: refused (declares 1×100000 pixels, an aspect ratio above 10:1)" in message
    assert not (tmp_path / "explain" / "wide.png.cam.png").exists()


def test_symlink_loop_is_a_bad_file_named_or_skipped(run_dir, tmp_path):
    """The table row: a traceback (ELOOP), exit 1, even with --skip-bad."""
    folder = images(tmp_path / "test", "a.png", "b.png")
    os.symlink("loop.png", folder / "loop.png")
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv"))
    assert "loop.png: cannot decode (" in message and "symbolic links" in message
    result = predict(run_dir, folder, tmp_path / "s.csv", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "s.csv")["image_id"].tolist() == ["a.png", "b.png"]
    assert pd.read_csv(tmp_path / "s.skipped.csv")["image_id"].tolist() == ["loop.png"]


def test_dangling_symlink_and_fifo(run_dir, tmp_path):
    folder = images(tmp_path / "test", "a.png")
    os.symlink(tmp_path / "gone.png", folder / "gone.png")
    os.mkfifo(folder / "pipe.png")  # never opened: reading a FIFO would block forever
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv"))
    assert "gone.png: cannot decode (" in message and "pipe.png" not in message


@pytest.mark.parametrize("character", ["\r", "\n", "\t"])
def test_control_character_in_a_file_name_is_refused_or_skipped(run_dir, tmp_path, character):
    """The table row: a carriage return split the CSV row in two."""
    folder = images(tmp_path / "test", "a.png", f"bad{character}name.png")
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv"))
    shown = repr(character)[1:-1]
    assert f"bad{shown}name.png: refused (file name holds '{shown}'" in message
    result = predict(run_dir, folder, tmp_path / "s.csv", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.csv").read_text().splitlines() == [
        "image_id,label",
        *(f"a.png,{v}" for v in pd.read_csv(tmp_path / "s.csv")["label"]),
    ]
    skipped = pd.read_csv(tmp_path / "s.skipped.csv")
    assert len(skipped) == 1 and skipped["image_id"][0] == f"bad{shown}name.png"  # escaped: one row


def test_two_files_for_one_sample_submission_id_are_named(run_dir, tmp_path):
    """The table row: test1.png and test1.jpg beside stem ids gave exit 0 and one score silently dropped."""
    folder = images(tmp_path / "test", "test1.png", "test1.jpg", "test2.png")
    pd.DataFrame({"id": ["test1", "test2"], "score": 0.5}).to_csv(tmp_path / "sample_submission.csv", index=False)
    message = one_line_error(predict(run_dir, folder, tmp_path / "s.csv"))
    assert "sample_submission.csv: the sample submission's ids are file stems" in message
    assert "test1.jpg and test1.png -> test1" in message
    assert not (tmp_path / "s.csv").exists()
    (folder / "test1.jpg").unlink()
    assert predict(run_dir, folder, tmp_path / "s.csv").exit_code == 0
    assert pd.read_csv(tmp_path / "s.csv")["id"].tolist() == ["test1", "test2"]


def test_check_data_lists_syntaxes_and_refuses_bombs(bomb, tmp_path):
    from tests.data.dicom_files import transcode, write_dicom

    root = tmp_path / "data"
    for label, folder in ((0, "Normal"), (1, "Tuberculosis")):
        (root / folder).mkdir(parents=True)
        write_dicom(root / folder / f"plain{label}.dcm", np.full((8, 8), 100 + 1000 * label, np.uint16))
        transcode(root / folder / f"plain{label}.dcm", root / folder / f"ll{label}.dcm", "jpeg-lossless-sv1")
    os.symlink(bomb, root / "Normal" / "bomb.dcm")
    result = invoke("check-data", root)
    assert result.exit_code == 2
    dicom_line = next(line for line in result.output.splitlines() if line.startswith("dicom:"))
    assert "Explicit VR Little Endian (1.2.840.10008.1.2.1): 2" in dicom_line
    assert "First-Order Prediction (Process 14 [Selection Value 1]) (1.2.840.10008.1.2.4.70): 2" in dicom_line
    assert "cannot be decoded here" not in dicom_line
    assert (
        "1 of 5 images refused before decoding: " in result.output and "bomb.dcm (declares 30000×30000" in result.output
    )
