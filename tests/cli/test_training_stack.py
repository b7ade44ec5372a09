"""Training commands without the train extra say which extra to install; with it, TensorFlow's C++
start-up lines stay off the terminal unless --debug."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.core.errors import EXIT_USAGE


@pytest.mark.parametrize(
    "args",
    [
        ["train-folds", "--config", "configs/quickstart.yaml"],
        ["export", "."],
        ["demo"],
    ],
)
def test_missing_train_extra_is_one_line_naming_the_extra(monkeypatch, args) -> None:
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # what find_spec reports for a module that is not installed
    result = CliRunner().invoke(cli, args, obj={})
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.strip().splitlines() == [
        f'error: tbens {args[0]} needs the train extra (tf2onnx not installed here): pip install "tbensemble[train]"'
    ]


def _import_tensorflow_stderr(level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    code = (
        "from tbensemble.core.optional import require_training_stack\n"
        "require_training_stack('test')\n"
        "import tensorflow as tf\n"
        "for n in range(1, 8):\n"
        "    tf.function(lambda x: x * 2)(tf.zeros((n,)))\n"  # retraces: TensorFlow warns from the 6th
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_hidden_when_quiet() -> None:
    assert _import_tensorflow_stderr("3") == ""
    loud = _import_tensorflow_stderr(None)
    assert "absl::InitializeLog" in loud or "oneDNN" in loud or "cuda" in loud.lower(), "--debug shows them"
    assert "retracing" in loud
