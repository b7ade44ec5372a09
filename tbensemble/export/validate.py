"""Export validation in layers, as optimum's ONNX exporter does: the graph (``onnx.checker`` once the outputs
are renamed, then input and output names), then each output's shape against Keras, and only then the
values (``parity``). Last, the CAM identity, which heatmaps rely on: the manifest's head over the pooled
``features`` must give the ``logit``. Each failure is one ``ArtifactError`` line naming the model.

Shapes come before values because numpy broadcasts: a ``(N,)`` output compared with Keras's ``(N, 1)``
gives an ``(N, N)`` difference whose maximum can pass or fail for the wrong reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tbensemble.core.errors import ArtifactError
from tbensemble.core.manifest import OUTPUT_ROLES

INPUT_NAME = "image"
CAM_ATOL, CAM_RTOL = 1e-3, 1e-3
"""float32 pooling and the Dense head summed in another order differ by ~1e-5 on real backbones; a wrong
head (another layer's weights, a missing bias) is off by whole units."""


def check_graph(onnx_model: Any, label: str) -> None:
    """Layer 1: a well-formed graph (after renaming) taking ``image`` and giving the three roles, in order."""
    import onnx

    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{label}: onnx.checker rejects the graph ({str(exc).strip().splitlines()[0]})") from None
    graph = onnx_model.graph
    constants = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in constants]
    if inputs != [INPUT_NAME]:
        raise ArtifactError(f"{label}: graph inputs are {inputs}; the engine feeds exactly [{INPUT_NAME!r}]")
    outputs = [o.name for o in graph.output]
    if outputs != list(OUTPUT_ROLES):
        raise ArtifactError(f"{label}: graph outputs are {outputs}; the engine needs {list(OUTPUT_ROLES)}")


def check_shapes(keras_out: dict[str, np.ndarray], onnx_out: dict[str, np.ndarray], label: str) -> None:
    """Layer 2: every output's shape equals Keras's on the same batch, before any value is compared."""
    for role in OUTPUT_ROLES:
        if np.shape(onnx_out[role]) != np.shape(keras_out[role]):
            raise ArtifactError(
                f"{label}: output {role!r} has shape {np.shape(onnx_out[role])} in ONNX Runtime but "
                f"{np.shape(keras_out[role])} in Keras"
            )


def check_cam_identity(
    features: np.ndarray, logit: np.ndarray, head_weights: list[float], head_bias: float, label: str
) -> float:
    """Layer 4: ``mean_hw(features) · w + b ≈ logit`` on the ONNX outputs; returns the largest difference."""
    weights = np.asarray(head_weights, dtype=np.float64)
    if features.ndim != 4 or features.shape[-1] != weights.size:
        raise ArtifactError(
            f"{label}: features of shape {features.shape} do not match the {weights.size} head weights (N, h, w, C)"
        )
    predicted = features.astype(np.float64).mean(axis=(1, 2)) @ weights + head_bias
    actual = np.asarray(logit, dtype=np.float64).reshape(-1)
    difference = np.abs(predicted - actual)
    if np.any(difference > CAM_ATOL + CAM_RTOL * np.abs(actual)):
        raise ArtifactError(
            f"{label}: CAM identity fails: mean(features)·w + b differs from the logit by up to {difference.max():.2e} "
            "(the head is not the layer after pooling?); heatmaps would not explain this model's scores"
        )
    return float(difference.max())
