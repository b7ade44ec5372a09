from tests.fresh_interpreter import assert_prints_ok


def test_optimize_imports_neither_tensorflow_nor_openvino_until_asked():
    """optimize never imports TensorFlow; the engine's variant hook loads OpenVINO only for an OpenVINO variant."""
    code = (
        "import sys\n"
        "import tbensemble.optimize.run, tbensemble.optimize.candidates, tbensemble.optimize.quantize\n"
        "import tbensemble.engine.variants, tbensemble.cli.optimize\n"
        "from tbensemble.cli import cli\n"
        "cli.get_command(None, 'optimize')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'openvino'))\n"
        "assert not heavy, heavy\n"
        "assert 'tbensemble.train' not in sys.modules and 'tbensemble.export' not in sys.modules\n"
        "print('ok')\n"
    )
    assert_prints_ok(code)
