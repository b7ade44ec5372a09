"""Artifacts with one small hand-built ONNX model (no TensorFlow) and a manifest that can list variants:
fast fixtures for the engine's variant loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tbensemble import __version__
from tbensemble.core.manifest import (
    SCHEMA_VERSION,
    EnsembleEntry,
    InputSpec,
    Manifest,
    ModelEntry,
    save_manifest,
    sha256_of,
)

SIZE = 16


def write_model(path: Path, seed: int = 0) -> Path:
    """image (N,S,S,1) -> conv 3x3 (4 channels) -> relu (NHWC: features) -> mean -> dense -> logit -> sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.normal(0, 0.02, (4, 1, 3, 3))).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.array([-0.5, 0.0, 0.2, -1.0], np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (4, 1)).astype(np.float32), "dense_w"),
        numpy_helper.from_array(np.array([0.1], np.float32), "dense_b"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Transpose", ["relu"], ["features"], perm=[0, 2, 3, 1], name="to_nhwc"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "dense_w"], ["matmul"], name="dense"),
        helper.make_node("Add", ["matmul", "dense_b"], ["logit"], name="dense_bias"),
        helper.make_node("Sigmoid", ["logit"], ["probability"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", SIZE, SIZE, 1])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", SIZE, SIZE, 4]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_artifacts(root: Path) -> Path:
    """A shippable folder (onnx/ + manifest.json) with one model and no variants yet."""
    file = write_model(root / "onnx" / "tiny-f0.onnx")
    entry = ModelEntry(
        name="tiny-f0",
        file="onnx/tiny-f0.onnx",
        sha256=sha256_of(file),
        backbone="tiny",
        fold=0,
        input=InputSpec(size=SIZE),
        outputs={"probability": "probability", "logit": "logit", "features": "features"},
        oof_auc=0.5,
        parity={},
        oof_scores_sorted=list(np.linspace(0.2, 0.8, 51)),
        head_weights=[0.0] * 4,
        head_bias=0.0,
    )
    point = {"threshold": 0.5, "sensitivity": 0.9, "specificity": 0.5, "ppv": 0.5, "npv": 0.5}
    ensemble = EnsembleEntry(tta=["identity"], operating_points={"p": point}, default_operating_point="p", oof_auc=0.5)
    save_manifest(Manifest(SCHEMA_VERSION, __version__, "tiny", "2026-11-29T00:00:00+00:00", [entry], ensemble), root)
    return root


def openvino_variant(root: Path, precision: str = "fp32", **changes) -> dict:
    """An OpenVINO variant that reads the fp32 ONNX file itself."""
    manifest = json.loads((root / "manifest.json").read_text())
    model = manifest["models"][0]
    fields = {
        "name": f"openvino-{precision}",
        "runtime": "openvino",
        "file": model["file"],
        "sha256": model["sha256"],
        "precision": precision,
        "requires": ["BF16"] if precision == "bf16" else [],
        "images_per_s": 2.0,
        "speedup": 2.0,
        "gate": {"passed": True},
        "oof_scores_sorted": list(np.linspace(0.1, 0.9, 41)),
    }
    return {**fields, **changes}


def set_variants(root: Path, variants: list[dict], default_variant: str) -> Path:
    """Write ``variants`` (VariantEntry fields) and the default into the manifest's only model."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["models"][0].update(variants=variants, default_variant=default_variant)
    path.write_text(json.dumps(manifest))
    return root
