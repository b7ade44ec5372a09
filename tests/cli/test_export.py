import shutil

import pytest
import yaml
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.manifest import load_manifest, verify_model_files
from tests.export.tinyrun import exported_run

pytestmark = pytest.mark.slow


def test_export_command_converts_each_model_in_a_fresh_process(tmp_path_factory, tmp_path):
    """The default path: one spawned process per fold model; an unfinished fold (no done.json) is left out."""
    run = tmp_path / "run"
    shutil.copytree(exported_run(tmp_path_factory), run, ignore=shutil.ignore_patterns("onnx", "manifest.json"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["backbones"] = ["tinycnn"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "models" / "tinycnn" / "fold1" / "done.json").unlink()
    result = CliRunner().invoke(cli, ["export", str(run), "--calibration", "isotonic"], obj={})
    assert result.exit_code == 0, result.output
    manifest = load_manifest(run)
    verify_model_files(manifest)
    assert [m.name for m in manifest.models] == ["tinycnn-f0"]
    assert [m.weight for m in manifest.models] == [1.0]
    assert manifest.ensemble.calibration["method"] == "isotonic"
    assert "onnx/tinycnn-f0.onnx: OOF AUC" in result.output and "parity max |Δp|" in result.output
    assert "ensemble OOF AUC" in result.output


def test_export_command_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path)], obj={})
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert result.output.startswith(f"error: {tmp_path / 'config.yaml'}: not found")
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--parity-images", "4"], obj={})
    assert result.exit_code == 2 and "--parity-images" in result.output
