"""Peak memory of one INT8 calibration + quantisation as ``tbens optimize`` runs it, in this fresh process.

Random uint8 images at the model's input size, both TTA views (identity, crop90), fed as optimize feeds
them (one view per run). ``--batch-images K`` instead feeds K images (2K views) per run, as optimize did
before calibration memory was bounded, to show what the bound saves. Memory is the process's peak RSS
(``ru_maxrss``); run one configuration per process.

    python scripts/calibration_memory.py RUN/onnx/densenet201-f0.onnx --kind full --images 128
    python scripts/calibration_memory.py RUN/onnx/densenet201-f0.onnx --kind full --images 8 --batch-images 8
    python scripts/calibration_memory.py RUN/onnx/densenet201-f0.onnx --kind nncf --images 8
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tbensemble.data.views import apply_views
from tbensemble.optimize.quantize import CalibrationViews, quantize_int8, quantize_openvino_int8

VIEWS = ["identity", "crop90"]


class BatchedViews(CalibrationViews):
    """K images (all their views) per run: the calibration feed before memory was bounded."""

    def __init__(self, images: np.ndarray, input_name: str, batch_images: int) -> None:
        self.batch_images = batch_images
        super().__init__(images, VIEWS, input_name)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_images)

    def _feeds(self, start: int, end: int) -> Iterator[dict[str, np.ndarray]]:
        for index in range(start, end):
            chunk = self.images[index * self.batch_images : (index + 1) * self.batch_images]
            yield {self.input_name: apply_views(chunk, self.views).astype(np.float32)[..., None]}


def input_size(model: Path) -> tuple[str, int]:
    import onnx

    graph_input = onnx.load(str(model), load_external_data=False).graph.input[0]
    return graph_input.name, graph_input.type.tensor_type.shape.dim[1].dim_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="An exported fold model (.onnx).")
    parser.add_argument(
        "--kind",
        choices=["full", "conv", "nncf"],
        default="full",
        help="ort-int8-qoperator, ort-int8-conv or openvino-int8.",
    )
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-images", type=int, default=None, help="Images per run (default: one view per run).")
    args = parser.parse_args()

    name, size = input_size(args.model)
    images = np.random.default_rng(0).integers(0, 256, (args.images, size, size), dtype=np.uint8)
    reader = (
        BatchedViews(images, name, args.batch_images) if args.batch_images else CalibrationViews(images, VIEWS, name)
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.kind == "nncf":
            quantize_openvino_int8(args.model, Path(tmp) / "model.xml", reader)
        else:
            quantize_int8(
                args.model,
                Path(tmp) / "model.onnx",
                reader,
                "features",
                op_types=["Conv"] if args.kind == "conv" else None,
            )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    feed = (
        f"{args.batch_images} images ({args.batch_images * len(VIEWS)} views) per run"
        if args.batch_images
        else "one view per run"
    )
    print(
        f"{args.model.name} {args.kind}: {args.images} images at {size} px, {feed}: peak RSS {peak_gb:.2f} GB, {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
