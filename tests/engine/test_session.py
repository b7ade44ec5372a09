import onnx
import pytest
from onnx import TensorProto, helper

from tbensemble.core.errors import TbensError
from tbensemble.engine import session as session_module
from tbensemble.engine.session import CPU, CUDA, make_session, physical_cores, why_no_cuda


@pytest.fixture
def identity_model(tmp_path):
    node = helper.make_node("Identity", ["image"], ["probability"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 4])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_cpu_session_uses_physical_cores_and_all_optimisations(identity_model):
    session, provider = make_session(identity_model, "cpu")
    assert provider == CPU == session.get_providers()[0]
    options = session.get_session_options()
    assert options.intra_op_num_threads == physical_cores() >= 1
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_cuda_fails_loudly_when_cuda_is_not_the_active_provider(identity_model):
    """On a machine without a working CUDA the session falls back to CPU: --device cuda must refuse that."""
    if why_no_cuda() is None:
        _, provider = make_session(identity_model, "cuda")
        assert provider == CUDA
    else:
        with pytest.raises(TbensError, match=r"^--device cuda: .*identity.onnx runs on CPUExecutionProvider, not CUDA"):
            make_session(identity_model, "cuda")


def test_cuda_refused_even_when_onnxruntime_claims_it(identity_model, monkeypatch):
    """get_available_providers may list CUDA on a machine without one; only the session's providers count."""
    monkeypatch.setattr(session_module, "why_no_cuda", lambda: None)
    monkeypatch.setattr(session_module.ort.InferenceSession, "get_providers", lambda self: [CPU])
    with pytest.raises(TbensError, match="not CUDA"):
        make_session(identity_model, "cuda")


def test_auto_logs_the_provider_and_why_not_cuda(identity_model, caplog, monkeypatch):
    monkeypatch.setattr(session_module, "why_no_cuda", lambda: "no NVIDIA driver found (test)")
    monkeypatch.setattr(session_module, "_LOGGED", set())
    caplog.set_level("INFO", logger="tbensemble.engine.session")
    _, provider = make_session(identity_model, "auto")
    assert provider == CPU
    assert "running on CPUExecutionProvider; not CUDA because no NVIDIA driver found (test)" in caplog.text


def test_bad_device_and_unreadable_model(tmp_path, identity_model):
    with pytest.raises(TbensError, match="--device 'tpu' is not known"):
        make_session(identity_model, "tpu")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(TbensError, match=r"broken.onnx: onnxruntime cannot load this model"):
        make_session(broken, "cpu")
