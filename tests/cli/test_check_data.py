"""``tbens check-data``: a readable summary, exit 0 on good data, exit 2 and one error line on bad."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from tbensemble.cli import cli


def make_dataset(root, labels: str) -> None:
    for folder, names in (("train", ("a.png", "b.png", "c.png")), ("test", ("test1.png", "test2.png"))):
        (root / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((16, 24), np.uint8)).save(root / folder / name)
    (root / "train_labels.csv").write_text(labels)


def test_good_data_prints_summary_and_exits_0(tmp_path):
    make_dataset(tmp_path, "image_id,label\na,0\nb,1\nc.png,0\n")
    result = CliRunner().invoke(cli, ["check-data", str(tmp_path)], obj={})
    assert result.exit_code == 0, result.output
    assert "(competition layout)" in result.stdout
    assert "train:    3 images; normal (0): 2, tuberculosis (1): 1" in result.stdout
    assert "test:     2 images" in result.stdout
    assert "width:    24-24 px (median 24)" in result.stdout
    assert "modes:    PNG 8-bit gray: 5" in result.stdout
    assert "problems: none" in result.stdout


def test_bad_data_exits_2_with_one_line_error(tmp_path):
    make_dataset(tmp_path, "image_id,label\na,0\nb,3\nzzz,1\nc,1\n")
    (tmp_path / "train" / "c.png").write_bytes(b"broken")
    result = CliRunner().invoke(cli, ["check-data", str(tmp_path), "--decode"], obj={})
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path}: ")
    assert "row 3: label is not 0 or 1 ('3')" in errors[0] and "row 4: no file" in errors[0]
    assert "1 of 4 images cannot be decoded" in errors[0]  # train c.png; --decode also covers test/
    assert "problems: 3" in result.stdout
    assert "  - " in result.stdout


def test_not_a_dataset_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["check-data", str(tmp_path)], obj={})
    assert result.exit_code == 2
    assert "no dataset found" in result.stderr
