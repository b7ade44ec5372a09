"""Export validation in layers: the graph (onnx.checker, names), shapes before values, the CAM identity."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tbensemble.core.errors import ArtifactError
from tbensemble.export import validate


def graph_model(outputs: list[str], broken: bool = False):
    """image -> Identity -> each output (a node reading an undefined tensor when ``broken``)."""
    source = "nowhere" if broken else "image"
    nodes = [helper.make_node("Identity", [source], [name]) for name in outputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4, 4, 1])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4, 4, 1]) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_graph_layer_checks_the_checker_then_the_names() -> None:
    validate.check_graph(graph_model(["probability", "logit", "features"]), "m")
    with pytest.raises(ArtifactError, match=r"^resnet50-f0: onnx.checker rejects the graph \("):
        validate.check_graph(graph_model(["probability", "logit", "features"], broken=True), "resnet50-f0")
    with pytest.raises(ArtifactError, match=r"^m: graph outputs are \['probability', 'logit_1', 'features'\]"):
        validate.check_graph(graph_model(["probability", "logit_1", "features"]), "m")


def test_shape_layer_catches_what_broadcasting_would_hide() -> None:
    keras_out = {"probability": np.zeros((4, 1)), "logit": np.zeros((4, 1)), "features": np.zeros((4, 2, 2, 3))}
    validate.check_shapes(keras_out, dict(keras_out), "m")
    flat = {**keras_out, "probability": np.zeros(4)}
    assert np.max(np.abs(keras_out["probability"] - flat["probability"])) == 0, "the value check alone would pass"
    with pytest.raises(ArtifactError, match=r"^m: output 'probability' has shape \(4,\) in ONNX Runtime but \(4, 1\)"):
        validate.check_shapes(keras_out, flat, "m")


def test_cam_identity_holds_for_the_true_head_and_fails_for_another() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 3, 3, 4)).astype(np.float32)
    weights, bias = [0.5, -1.0, 2.0, 0.1], 0.3
    logit = features.mean(axis=(1, 2)) @ np.array(weights, dtype=np.float32) + bias
    assert validate.check_cam_identity(features, logit, weights, bias, "m") < 1e-5
    with pytest.raises(
        ArtifactError, match=r"^tinycnn-f1: CAM identity fails: .* differs from the logit by up to 1.00e\+00"
    ):
        validate.check_cam_identity(features, logit, weights, bias + 1.0, "tinycnn-f1")
    with pytest.raises(ArtifactError, match="do not match the 3 head weights"):
        validate.check_cam_identity(features, logit, weights[:3], bias, "m")
