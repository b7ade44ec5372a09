"""The CUDA FP16 copy: inputs, outputs and head stay fp32, the backbone is fp16, scores stay close; and
``--target cuda`` without a GPU is a device error (exit 4), never a silent CPU build."""

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner
from onnx import TensorProto

from tbensemble.cli import cli
from tbensemble.optimize import run as optimize_run_module
from tbensemble.optimize.fp16 import convert_fp16
from tests.engine.variantrun import SIZE, make_artifacts, write_model


def cast_targets(model: onnx.ModelProto) -> dict[str, int]:
    """Input tensor of every Cast -> the type it casts to."""
    return {
        node.input[0]: next(a.i for a in node.attribute if a.name == "to")
        for node in model.graph.node
        if node.op_type == "Cast"
    }


def test_fp16_copy_keeps_inputs_outputs_and_head_in_fp32(tmp_path):
    source = write_model(tmp_path / "tiny.onnx")
    model = onnx.load(str(convert_fp16(source, tmp_path / "fp16.onnx", "features")))
    ports = [*model.graph.input, *model.graph.output]
    assert {p.name: p.type.tensor_type.elem_type for p in ports} == {
        "image": TensorProto.FLOAT,
        "probability": TensorProto.FLOAT,
        "logit": TensorProto.FLOAT,
        "features": TensorProto.FLOAT,
    }
    types = {init.name: init.data_type for init in model.graph.initializer}
    assert types == {
        "conv_w": TensorProto.FLOAT16,
        "conv_b": TensorProto.FLOAT16,
        "dense_w": TensorProto.FLOAT,
        "dense_b": TensorProto.FLOAT,
    }
    to_fp16 = [name for name, to in cast_targets(model).items() if to == TensorProto.FLOAT16]
    assert to_fp16 == ["image"], "only the raw pixels go into fp16; no head tensor makes a round trip"


def test_fp16_copy_scores_close_to_fp32(tmp_path):
    source = write_model(tmp_path / "tiny.onnx")
    copy = convert_fp16(source, tmp_path / "fp16.onnx", "features")
    pixels = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 1)).astype(np.float32)
    runs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            ["probability", "logit"], {"image": pixels}
        )
        for p in (source, copy)
    ]
    (p32, l32), (p16, l16) = runs
    assert p16.dtype == np.float32 and np.abs(p16 - p32).max() < 1e-3 and np.abs(l16 - l32).max() < 5e-3


def test_target_cuda_without_a_gpu_is_a_device_error(tmp_path, monkeypatch):
    monkeypatch.setattr(
        optimize_run_module, "why_no_cuda", lambda: "no NVIDIA driver found (libcuda.so.1 cannot be loaded)"
    )
    root = make_artifacts(tmp_path / "run")
    result = CliRunner().invoke(cli, ["optimize", str(root), "--target", "cuda"])
    assert result.exit_code == 4
    assert result.output.strip().splitlines() == [
        "error: --target cuda: no NVIDIA driver found (libcuda.so.1 cannot be loaded); the CUDA variants are built "
        "and timed on a GPU"
    ]
    assert not (root / "onnx" / "variants").exists()


def test_unknown_variant_of_the_cuda_target_names_the_allowed(tmp_path):
    result = CliRunner().invoke(
        cli, ["optimize", str(make_artifacts(tmp_path / "run")), "--target", "cuda", "--variants", "ort-int8-qdq"]
    )
    assert result.exit_code == 2 and "allowed: cuda-fp16" in result.output


def round_trip(source_type: int) -> onnx.ModelProto:
    """x -> Cast(fp16) -> Cast(fp32) -> z."""
    from onnx import helper

    return helper.make_model(
        helper.make_graph(
            [
                helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16, name="to16"),
                helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT, name="to32"),
            ],
            "g",
            [helper.make_tensor_value_info("x", source_type, [2])],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
        )
    )


def test_only_float32_round_trips_become_identities():
    from tbensemble.optimize.fp16 import drop_round_trips

    assert [(n.op_type, list(n.input)) for n in drop_round_trips(round_trip(TensorProto.FLOAT)).graph.node] == [
        ("Identity", ["x"])
    ]
    kept = drop_round_trips(round_trip(TensorProto.INT32)).graph.node
    assert [n.op_type for n in kept] == ["Cast", "Cast"], "an int cast to fp16 and back is not an identity"
