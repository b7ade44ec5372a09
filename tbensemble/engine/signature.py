"""An ONNX session's own signature against its manifest entry, checked once the session exists.

A model swapped for another (another input size, other outputs) with the sha256 updated passes the hash
check; without this it would fail later as a traceback inside ``session.run``, or worse, score. Each
mismatch is one ``ArtifactError`` naming the model file and what differs.
"""

from __future__ import annotations

from typing import Any

from tbensemble.core.errors import ArtifactError
from tbensemble.core.manifest import ModelEntry

ORT_TYPES = {"float32": "tensor(float)"}
"""Manifest dtype -> the type string ONNX Runtime reports."""


def _dims(shape: list[Any]) -> str:
    return "[" + ", ".join("N" if not isinstance(d, int) else str(d) for d in shape) + "]"


def _matches(shape: list[Any], wanted: list[int | None]) -> bool:
    """Same rank; where ``wanted`` holds a number the model must have that number (None: a dynamic batch)."""
    if len(shape) != len(wanted):
        return False
    return all(
        (isinstance(d, int) and d == w) if w is not None else not isinstance(d, int)
        for d, w in zip(shape, wanted, strict=True)
    )


def check_signature(session: Any, entry: ModelEntry, label: str) -> None:
    """Refuse a session whose input or outputs are not the ones ``entry`` describes and the engine feeds."""
    inputs = session.get_inputs()
    size, channels = entry.input.size, entry.input.channels
    wanted_input = [None, size, size, channels]
    if len(inputs) != 1:
        raise ArtifactError(f"{label}: takes {len(inputs)} inputs; the manifest describes one, {entry.input.name!r}")
    (given,) = inputs
    if given.name != entry.input.name:
        raise ArtifactError(f"{label}: input is named {given.name!r}; the manifest says {entry.input.name!r}")
    if given.type != ORT_TYPES.get(entry.input.dtype):
        raise ArtifactError(f"{label}: input {given.name!r} is {given.type}; the manifest says {entry.input.dtype}")
    if not _matches(given.shape, wanted_input):
        raise ArtifactError(
            f"{label}: input {given.name!r} has shape {_dims(given.shape)}; the manifest says {_dims(wanted_input)} "
            "(another model?)"
        )
    outputs = {o.name: o for o in session.get_outputs()}
    expected = {
        "probability": [None, 1],
        "logit": [None, 1],
        "features": [None, None, None, len(entry.head_weights)],
    }
    for role, name in entry.outputs.items():
        if name not in outputs:
            raise ArtifactError(
                f"{label}: has no output {name!r} (role {role}); its outputs are {sorted(outputs)} (another model?)"
            )
        shape = outputs[name].shape
        wanted = expected.get(role)
        if wanted is None:
            continue
        ok = (len(shape) == 4 and shape[3] == wanted[3]) if role == "features" else _matches(shape, wanted)
        if not ok or outputs[name].type != "tensor(float)":
            raise ArtifactError(
                f"{label}: output {name!r} ({role}) is {outputs[name].type} {_dims(shape)}; "
                f"the engine needs tensor(float) {_dims(wanted)}"
                + (f" with {wanted[3]} channels, one per head weight" if role == "features" else "")
            )
