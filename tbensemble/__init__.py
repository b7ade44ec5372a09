"""tbensemble: CNN ensembles that tell tuberculosis from normal chest X-rays, served through ONNX Runtime.

``tbensemble.load(run)`` is the Python API (see ``tbensemble.engine.api``). It is imported on first use,
so ``import tbensemble`` stays light: no ONNX Runtime, no TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from tbensemble.engine.api import load

        return load
    raise AttributeError(f"module 'tbensemble' has no attribute {name!r}")
