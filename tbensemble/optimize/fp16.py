"""An FP16 copy of a fold model for ONNX Runtime's CUDA provider, the head kept in fp32.

``onnxruntime.transformers.float16`` converts every float tensor and initializer to float16 and inserts
casts at the blocked nodes. Inputs and outputs stay float32 (``keep_io_types``), so the engine feeds raw
0-255 pixels and reads probabilities as for fp32. The head (pooling, Dense, sigmoid: every node the last
conv feature map does not need) stays fp32, as for INT8: a logit near the sigmoid's tails loses its
resolution in fp16. Whether the backbone survives fp16 (a trained quickstart model once gave NaN) is the
gate's to judge, on the GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tbensemble.optimize.quantize import head_nodes

if TYPE_CHECKING:
    import onnx


def convert_fp16(model_path: str | Path, out_path: str | Path, features_output: str) -> Path:
    """Write the FP16 copy of ``model_path`` to ``out_path`` (the caller renames it into place)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(model_path))
    converted = convert_float_to_float16(
        model, keep_io_types=True, node_block_list=head_nodes(model_path, features_output)
    )
    onnx.save(drop_round_trips(converted), str(out_path))
    return Path(out_path)


def drop_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace each fp32 -> fp16 -> fp32 pair of casts by an identity, in place; returns ``model``.

    The converter casts every blocked node's output to fp16 and back for the next blocked node, so the
    head would still pass its pooled features and logit through fp16. The identity is exact and ONNX
    Runtime removes it. Only pairs whose source is known (from the converter's type inference) to be
    float32 are replaced.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    casts_to_fp16 = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Cast"
        and _cast_to(node) == TensorProto.FLOAT16
        and types.get(node.input[0]) == TensorProto.FLOAT
    }
    for index, node in enumerate(graph.node):
        first = casts_to_fp16.get(node.input[0]) if node.op_type == "Cast" else None
        if first is not None and _cast_to(node) == TensorProto.FLOAT:
            graph.node[index].CopyFrom(
                helper.make_node("Identity", [first.input[0]], list(node.output), name=node.name)
            )
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for node in [n for n in casts_to_fp16.values() if n.output[0] not in used]:
        graph.node.remove(node)
        for info in [v for v in graph.value_info if v.name == node.output[0]]:
            graph.value_info.remove(info)
    return model


def _cast_to(node: onnx.NodeProto) -> int:
    return next(attribute.i for attribute in node.attribute if attribute.name == "to")
