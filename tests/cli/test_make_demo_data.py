"""``tbens make-demo-data``: writes the layout, prints one line, refuses to clobber a foreign folder."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from tbensemble.cli import cli


def _run(*args: str):
    return CliRunner().invoke(cli, ["make-demo-data", *args], obj={})


def test_writes_the_competition_layout_and_one_summary_line(tmp_path) -> None:
    out = tmp_path / "demo"
    result = _run(str(out), "--n-train", "10", "--n-test", "5", "--size", "32", "--seed", "2", "--difficulty", "0.4")
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "10 train (2 TB)" in result.output and "difficulty 0.4" in result.output
    assert len(list((out / "train").glob("*.png"))) == 10 and len(list((out / "test").glob("*.png"))) == 5
    assert pd.read_csv(out / "train_labels.csv").shape == (10, 2)
    assert "difficulty: 0.4" in (out / "_truth" / "PROVENANCE.txt").read_text()


def test_positive_rate_option(tmp_path) -> None:
    result = _run(str(tmp_path / "d"), "--n-train", "10", "--n-test", "0", "--size", "16", "--positive-rate", "0.5")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "d" / "train_labels.csv").label.sum() == 5


def test_refuses_a_non_empty_foreign_folder_unless_forced(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = _run(str(tmp_path), "--n-train", "4", "--n-test", "2", "--size", "16")
    assert result.exit_code == 2
    assert "error:" in result.output and "not empty" in result.output and "--force" in result.output
    assert not (tmp_path / "train").exists()
    forced = _run(str(tmp_path), "--n-train", "4", "--n-test", "2", "--size", "16", "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_rewriting_a_previous_demo_needs_no_force(tmp_path) -> None:
    assert _run(str(tmp_path / "d"), "--n-train", "4", "--n-test", "2", "--size", "16").exit_code == 0
    assert _run(str(tmp_path / "d"), "--n-train", "6", "--n-test", "2", "--size", "16").exit_code == 0
    assert len(list((tmp_path / "d" / "train").iterdir())) == 6


def test_out_of_range_difficulty_exits_2(tmp_path) -> None:
    result = _run(str(tmp_path / "d"), "--difficulty", "1.5")
    assert result.exit_code == 2
    assert "--difficulty" in result.output
