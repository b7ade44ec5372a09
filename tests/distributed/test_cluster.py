"""Without the ray extra, --ray is a one-line error that names the extra, exit 2."""

import sys

import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.errors import EXIT_USAGE


@pytest.mark.parametrize("command", ["train-folds", "predict"])
def test_ray_option_without_ray_installed_names_the_extra(command, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like to import
    args = {
        "train-folds": ["train-folds", "--config", str(tmp_path / "absent.yaml"), "--ray"],
        "predict": ["predict", "--artifacts", str(tmp_path), "--images", str(tmp_path), "--ray", "auto"],
    }[command]
    result = CliRunner().invoke(cli, args, obj={})
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.strip() == (
        'error: --ray needs Ray, an optional extra (ray is not installed): pip install "tbensemble[ray]"'
    )
