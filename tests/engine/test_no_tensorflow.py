from tests.fresh_interpreter import assert_prints_ok


def test_engine_and_data_import_without_tensorflow():
    """Edge servers install tbensemble without TensorFlow: the predict path must never import it."""
    code = (
        "import sys\n"
        "import tbensemble.engine.session, tbensemble.engine.ensemble, tbensemble.engine.predict, tbensemble.engine.cam\n"
        "import tbensemble.data.decode, tbensemble.data.layout, tbensemble.data.views\n"
        "import tbensemble.core.manifest, tbensemble.core.calibration, tbensemble.cli.predict\n"
        "from tbensemble.cli import cli\n"
        "cli.get_command(None, 'predict')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'sklearn'))\n"
        "assert not heavy, heavy\n"
        "assert 'tbensemble.train' not in sys.modules and 'tbensemble.export' not in sys.modules\n"
        "print('ok')\n"
    )
    assert_prints_ok(code)
