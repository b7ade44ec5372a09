"""Find tensors that an ONNX file keeps in external data files, without the ``onnx`` package.

An ONNX model may store its weights beside it (``weights.bin``); the manifest's sha256 covers the
``.onnx`` file only, and ONNX Runtime resolves such files relative to the model (or, for a model given
as bytes, the working directory). tbensemble's models are far below protobuf's 2 GB limit and tf2onnx
writes them as one file, so a model that points outside itself is refused rather than hashed in parts.

The edge install has no ``onnx`` package, so this walks the protobuf wire format over the messages that
can hold tensors: graph initializers, sparse initializers, node attributes (and their subgraphs), and
model-local functions. Field numbers are those of ``onnx.proto``.
"""

from __future__ import annotations

from collections.abc import Iterator

from tbensemble.core.errors import ArtifactError

MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_SPARSE_INITIALIZER = 1, 5, 15
FUNCTION_NODE = 7
NODE_ATTRIBUTE = 5
ATTRIBUTE_TENSOR, ATTRIBUTE_GRAPH, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 6, 10, 11
ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS = 22, 23
SPARSE_VALUES, SPARSE_INDICES = 1, 2
TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
EXTERNAL = 1
MAX_DEPTH = 64
"""Subgraphs nest (If/Loop bodies); deeper than this is not a model but an attack on the parser."""


class _Malformed(Exception):
    pass


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message: an int for varints, a view for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Malformed
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Malformed
    if pos != len(data):
        raise _Malformed


def _tensor(data: memoryview) -> str | None:
    """The tensor's name if it lives in external data, else None."""
    name, external = "", False
    for number, value in _fields(data):
        if number == TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif (number == TENSOR_DATA_LOCATION and value == EXTERNAL) or number == TENSOR_EXTERNAL_DATA:
            external = True
    return (name or "<unnamed>") if external else None


def _sparse(data: memoryview) -> Iterator[str]:
    for number, value in _fields(data):
        if number in (SPARSE_VALUES, SPARSE_INDICES) and isinstance(value, memoryview):
            found = _tensor(value)
            if found:
                yield found


def _nodes(data: memoryview, node_field: int, depth: int) -> Iterator[str]:
    """External tensors in the attributes of the nodes of a graph or function message."""
    for number, value in _fields(data):
        if number != node_field or not isinstance(value, memoryview):
            continue
        for node_number, attribute in _fields(value):
            if node_number == NODE_ATTRIBUTE and isinstance(attribute, memoryview):
                yield from _attribute(attribute, depth)


def _attribute(data: memoryview, depth: int) -> Iterator[str]:
    for number, value in _fields(data):
        if not isinstance(value, memoryview):
            continue
        if number in (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS):
            found = _tensor(value)
            if found:
                yield found
        elif number in (ATTRIBUTE_SPARSE_TENSOR, ATTRIBUTE_SPARSE_TENSORS):
            yield from _sparse(value)
        elif number in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
            yield from _graph(value, depth + 1)


def _graph(data: memoryview, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise _Malformed
    for number, value in _fields(data):
        if not isinstance(value, memoryview):
            continue
        if number == GRAPH_INITIALIZER:
            found = _tensor(value)
            if found:
                yield found
        elif number == GRAPH_SPARSE_INITIALIZER:
            yield from _sparse(value)
    yield from _nodes(data, GRAPH_NODE, depth)


def external_tensors(model: bytes, label: str = "model") -> list[str]:
    """Names of the tensors of a serialised ONNX model that are stored outside it (empty: self-contained)."""
    data = memoryview(model)
    try:
        found = []
        for number, value in _fields(data):
            if number == MODEL_GRAPH and isinstance(value, memoryview):
                found += list(_graph(value, 0))
            elif number == MODEL_FUNCTIONS and isinstance(value, memoryview):
                found += list(_nodes(value, FUNCTION_NODE, 0))
    except _Malformed:
        raise ArtifactError(f"{label}: not a valid ONNX file (protobuf structure is broken)") from None
    return found
