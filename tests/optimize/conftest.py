import pytest

from tests.export.tinyrun import exported_run


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny run (2 tiny backbones x 2 folds at 32 px) exported once per session; read-only."""
    return exported_run(tmp_path_factory)
