import pytest


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs, small store) per test module; the code under test reuses it."""
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    from tbensemble.distributed.cluster import connected

    with connected(None) as ray:
        assert ray.cluster_resources()["CPU"] >= 2, "these tests need 2 CPUs for 2 workers"
        yield ray
