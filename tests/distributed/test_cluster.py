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


def test_an_address_where_no_cluster_listens_is_a_quick_one_line_error():
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    import socket

    from tbensemble.core.errors import TbensError
    from tbensemble.distributed.cluster import connected

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        pytest.raises(TbensError, match=rf"^--ray 127\.0\.0\.1:{port}: no Ray cluster answers there"),
        connected(f"127.0.0.1:{port}"),
    ):
        pass
