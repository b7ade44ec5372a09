"""GPU variant check for a lent CUDA machine: the CUDA targets of ``tbens optimize`` (docs/optimize.md),
measured before they are built into it.

For one ONNX model (the engine's kind: raw pixels NHWC in, ``probability`` out) it runs, on the same
images, in one interleaved run:
  cpu-fp32     ONNX Runtime CPU provider (the reference)
  cuda-fp32    CUDA provider
  cuda-fp16    CUDA provider on an FP16 copy (onnxruntime.transformers.float16, inputs/outputs kept fp32)
  trt-fp16     TensorRT provider with FP16 kernels (skipped with a reason where TensorRT is missing)
and prints, per variant, images/s, ratio to cuda-fp32, Spearman and max |Δp| against cpu-fp32, and the
provider that really ran (onnxruntime falls back to the CPU silently; only get_providers() tells).

Standalone on a fresh machine with the repository (onnxruntime-gpu 1.26 needs CUDA 12 + cuDNN 9; the
pip wheels below are found through onnxruntime.preload_dlls(), so no system CUDA install is needed):
    pip install -e . onnx nvidia-cuda-runtime-cu12 nvidia-cublas-cu12 nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-curand-cu12
    pip install tensorrt-cu12             # optional: the trt-fp16 row
    python scripts/gpu_variants_check.py --onnx artifacts/lb/onnx/resnet50-f0.onnx --size 384
    python scripts/gpu_variants_check.py --tiny                 # builds a small random conv net (needs onnx)
    python scripts/gpu_variants_check.py --backbone resnet50    # random-weight backbone (needs the train extra)
Results also go to --out (JSON). Exit status 4 when no CUDA provider can run at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def tiny_model(path: Path, size: int) -> Path:
    """A small random conv net with the engine's interface (no TensorFlow needed, only ``onnx``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, previous, channels = [], [], "nchw", 1
    nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
    nodes.append(helper.make_node("Div", ["nchw", "scale"], ["scaled"]))
    inits.append(numpy_helper.from_array(np.array([255.0], np.float32), "scale"))
    previous = "scaled"
    for i, out in enumerate((32, 64, 128, 256)):
        w = rng.normal(0, np.sqrt(2 / (9 * channels)), (out, channels, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}")]
        nodes.append(
            helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], strides=[2, 2])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        previous, channels = f"r{i}", out
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.1, (channels, 1)).astype(np.float32), "dense_w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "dense_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense_w"], ["mm"]),
        helper.make_node("Add", ["mm", "dense_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, 1])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def backbone_model(path: Path, name: str, size: int) -> Path:
    """A random-weight backbone exported by the project's converter, head unsaturated (train extra)."""
    import keras

    from tbensemble.export import onnx_export, parity
    from tbensemble.train.backbones import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, size, weights=None)
    parity.unsaturate_head(model, parity.random_images(8, size, seed=1))
    data, _ = onnx_export.convert(onnx_export.three_output_model(model), size, onnx_export.DEFAULT_OPSET, {})
    path.write_bytes(data)
    return path


def fp16_copy(src: Path, dst: Path) -> Path:
    """The copy ``tbens optimize --target cuda`` builds (head fp32) for an exported model; a whole-model
    conversion for one without the ``features`` output (the --tiny net)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from tbensemble.optimize.fp16 import convert_fp16

    if "features" in {o.name for o in onnx.load(str(src), load_external_data=False).graph.output}:
        return convert_fp16(src, dst, "features")
    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    return dst


def session(path: Path, providers: list[Any]) -> tuple[Any, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    created = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    return created, created.get_providers()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="an exported model (image -> probability)")
    source.add_argument("--tiny", action="store_true", help="build a small random conv net")
    source.add_argument("--backbone", help="build a random-weight backbone (train extra), e.g. resnet50")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=256, help="random images for the agreement figures")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("gpu_variants_check.json"))
    args = parser.parse_args(argv)

    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-*-cu12 wheels, where installed
    work = Path(tempfile.mkdtemp(prefix="gpu_variants_"))
    if args.onnx:
        model = args.onnx
    elif args.tiny:
        model = tiny_model(work / "tiny.onnx", args.size)
    else:
        model = backbone_model(work / f"{args.backbone}.onnx", args.backbone, args.size)
    input_name = "image"
    size = args.size
    print(f"onnxruntime {ort.__version__}, available providers {ort.get_available_providers()}, model {model}")

    cuda = ("CUDAExecutionProvider", {"device_id": 0})
    shapes = f"{input_name}:1x{size}x{size}x1"
    trt = (
        "TensorrtExecutionProvider",
        {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(work / "trt"),
            "trt_profile_min_shapes": shapes,
            "trt_profile_opt_shapes": shapes.replace(":1x", f":{args.batch}x"),
            "trt_profile_max_shapes": shapes.replace(":1x", f":{max(64, args.batch)}x"),
        },
    )
    plans = {
        "cpu-fp32": (model, ["CPUExecutionProvider"], "CPUExecutionProvider"),
        "cuda-fp32": (model, [cuda, "CPUExecutionProvider"], "CUDAExecutionProvider"),
        "cuda-fp16": (None, [cuda, "CPUExecutionProvider"], "CUDAExecutionProvider"),
        "trt-fp16": (model, [trt, cuda, "CPUExecutionProvider"], "TensorrtExecutionProvider"),
    }
    runners, results = {}, {}
    for name, (path, providers, wanted) in plans.items():
        try:
            path = path or fp16_copy(model, work / "fp16.onnx")
            runner, provider = session(path, providers)
        except Exception as exc:  # a variant that cannot start is a finding, not a crash
            results[name] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
            continue
        if provider != wanted:
            results[name] = {"error": f"ran on {provider}, not {wanted}"}
            continue
        runners[name] = runner
        results[name] = {"provider": provider}
    for name, result in results.items():
        if "error" in result:
            print(f"{name}: not run ({result['error']})")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, size, size, 1)).astype(np.float32)
    scores = {
        name: np.concatenate(
            [
                r.run(["probability"], {input_name: images[i : i + args.batch]})[0][:, 0]
                for i in range(0, len(images), args.batch)
            ]
        )
        for name, r in runners.items()
    }
    batch = images[: args.batch]
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, r in runners.items():
            start = time.perf_counter()
            r.run(["probability"], {input_name: batch})
            seconds[name].append(time.perf_counter() - start)
    reference = scores.get("cpu-fp32")
    base = args.batch / statistics.median(seconds["cuda-fp32"]) if "cuda-fp32" in seconds else None
    print(f"\n{'variant':<10} {'img/s':>9} {'×cuda-fp32':>10} {'Spearman':>9} {'max|Δp|':>9}  provider")
    for name in runners:
        ips = args.batch / statistics.median(seconds[name])
        rho = float(np.corrcoef(np.argsort(np.argsort(scores[name])), np.argsort(np.argsort(reference)))[0, 1])
        diff = float(np.max(np.abs(scores[name] - reference)))
        results[name].update(
            images_per_s=ips, ratio_to_cuda_fp32=ips / base if base else None, spearman=rho, max_abs_diff=diff
        )
        ratio = f"{ips / base:10.2f}" if base else f"{'—':>10}"
        print(f"{name:<10} {ips:9.1f} {ratio} {rho:9.5f} {diff:9.5f}  {results[name]['provider']}")
    args.out.write_text(
        json.dumps({"model": str(model), "size": size, "batch": args.batch, "results": results}, indent=2)
    )
    print(f"\n{args.out}: written")
    return 0 if "cuda-fp32" in runners else 4


if __name__ == "__main__":
    sys.exit(main())
