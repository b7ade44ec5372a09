"""The token rule and start-up refusals: checked before any model is loaded or any port bound."""

import subprocess
import sys

from click.testing import CliRunner

from tbensemble.cli import cli
from tbensemble.cli.serve import is_loopback
from tests.fresh_interpreter import assert_prints_ok


def _serve(tmp_path, *options):
    (tmp_path / "run").mkdir(exist_ok=True)
    return CliRunner().invoke(cli, ["serve", "--artifacts", str(tmp_path / "run"), *options], obj={})


def test_loopback_names():
    assert is_loopback("127.0.0.1") and is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.5")
    assert not is_loopback("example.org")


def test_binding_beyond_loopback_without_a_token_refuses_to_start(tmp_path):
    result = _serve(tmp_path, "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "needs --token-file" in result.output


def test_a_short_or_multi_word_token_is_refused(tmp_path):
    for text in ("short", "two words here that are long"):
        (tmp_path / "token").write_text(text)
        result = _serve(tmp_path, "--host", "0.0.0.0", "--token-file", str(tmp_path / "token"))
        assert result.exit_code == 2
        assert "at least 16 characters" in result.output


def test_missing_manifest_exits_3_before_binding(tmp_path):
    result = _serve(tmp_path, "--port", "1")
    assert result.exit_code == 3, result.output


def test_device_and_precision_reach_the_loaded_ensemble(tmp_path, monkeypatch):
    from tbensemble.core.errors import ArtifactError
    from tbensemble.engine import api

    asked = {}

    def load(artifacts, **options):
        asked.update(options)
        raise ArtifactError("stop here")

    monkeypatch.setattr(api, "load", load)
    result = _serve(tmp_path, "--device", "cpu", "--precision", "fp32")
    assert result.exit_code == 3 and asked == {"device": "cpu", "precision": "fp32"}, result.output


def test_the_service_never_imports_tensorflow():
    code = (
        "import sys\n"
        "import tbensemble.serve.app, tbensemble.serve.audit, tbensemble.serve.batcher, tbensemble.engine.api\n"
        "from tbensemble.cli import cli\n"
        "cli.get_command(None, 'serve')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    assert_prints_ok(code)


def test_without_the_serve_extra_the_error_names_it(tmp_path):
    (tmp_path / "run").mkdir()
    code = (
        "import sys\n"
        "sys.modules['uvicorn'] = None\n"
        "from tbensemble.cli import main\n"
        f"sys.argv = ['tbens', 'serve', '--artifacts', {str(tmp_path / 'run')!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install 'tbensemble[serve]'" in result.stderr
