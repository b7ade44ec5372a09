"""Keras fold model -> ONNX file with preprocessing inside, three named outputs, metadata and a parity check.

Each model is converted in a fresh process by default: tf2onnx at 384 px peaks at 9-15 GB and TensorFlow
does not give that memory back, so a run of 15 fold models would otherwise grow until it is killed.
"""

from __future__ import annotations

import concurrent.futures
import gc
import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tbensemble import __version__
from tbensemble.core import atomic
from tbensemble.core.errors import ArtifactError, TbensError
from tbensemble.core.manifest import OUTPUT_ROLES
from tbensemble.core.optional import require_training_stack
from tbensemble.core.registry import BACKBONES
from tbensemble.export.validate import INPUT_NAME, check_graph

DEFAULT_OPSET = 17

log = logging.getLogger(__name__)


@dataclass
class ExportedModel:
    """What the manifest needs from one converted fold model."""

    backbone: str
    fold: int
    image_size: int
    onnx_path: Path
    outputs: dict[str, str]
    parity: dict[str, Any]
    head_weights: list[float]
    head_bias: float


def three_output_model(model: Any) -> Any:
    """Rebuild the trained single-output model as one with ``probability``, ``logit`` and ``features`` outputs."""
    import keras

    try:
        outputs = [model.get_layer(name).output for name in OUTPUT_ROLES]
    except ValueError as exc:
        raise ArtifactError(f"model {model.name!r}: lacks a layer named as in {OUTPUT_ROLES} ({exc})") from None
    return keras.Model(model.inputs, outputs, name=f"{model.name}_export")


def _layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _layers(layer)
    return found


def float32_model(model: Any) -> Any:
    """The model in float32: one trained with mixed precision (GPU) is rebuilt from its own config with the
    same weights, so the ONNX graph runs float32 kernels on any device (float16 convolutions are slow or
    missing on CPUs)."""
    from tbensemble.train.backbones import float32_clone

    if all(layer.compute_dtype == "float32" for layer in _layers(model)):
        return model
    return float32_clone(model)


def head_parameters(model: Any) -> tuple[list[float], float]:
    """The ``logit`` Dense kernel (one weight per feature channel) and bias, for numpy CAM heatmaps."""
    kernel, bias = model.get_layer("logit").get_weights()
    return [float(v) for v in np.asarray(kernel).reshape(-1)], float(np.asarray(bias).reshape(-1)[0])


def _rename_outputs(onnx_model: Any, wanted: tuple[str, ...]) -> dict[str, str]:
    """Give the graph outputs the role names (tf2onnx may suffix them), rewiring every node that uses them."""
    graph = onnx_model.graph
    renames = {out.name: role for out, role in zip(graph.output, wanted, strict=True) if out.name != role}
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for out in graph.output:
        out.name = renames.get(out.name, out.name)
    return {role: role for role in wanted}


def convert(
    model3: Any, image_size: int, opset: int, metadata: dict[str, str], label: str = "model"
) -> tuple[bytes, dict[str, str]]:
    """tf2onnx ``from_keras`` with a dynamic batch, outputs renamed to their roles and the graph checked;
    returns the serialised model and role -> output name."""
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    spec = (tf.TensorSpec((None, image_size, image_size, 1), tf.float32, name=INPUT_NAME),)
    onnx_model, _ = tf2onnx.convert.from_keras(model3, input_signature=spec, opset=opset)
    outputs = _rename_outputs(onnx_model, OUTPUT_ROLES)
    del onnx_model.metadata_props[:]
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    check_graph(onnx_model, label)
    return onnx_model.SerializeToString(), outputs


def export_fold_model(
    model_path: Path,
    onnx_path: Path,
    backbone: str,
    fold: int,
    image_size: int,
    parity_images: np.ndarray,
    parity_source: str,
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = None,
) -> ExportedModel:
    """Load ``model.keras``, convert it, check parity; the ONNX file appears only if parity passes."""
    require_training_stack("export")  # quiet TensorFlow start-up in the spawned converter process too
    import keras

    import tbensemble.train.backbones  # noqa: F401  registers the custom preprocessing layers for load_model
    from tbensemble.export import parity

    try:
        model = keras.models.load_model(model_path, compile=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{model_path}: cannot load the Keras model ({str(exc).splitlines()[0]})") from None
    model = float32_model(model)
    model3 = three_output_model(model)
    metadata = {
        "backbone": backbone,
        "fold": str(fold),
        "image_size": str(image_size),
        "tbensemble_version": __version__,
        "preprocessing": f"inside the graph ({BACKBONES[backbone].preprocessing}); input raw 0-255, NHWC, 1 channel",
    }
    label = f"{model_path} -> {onnx_path.name}"
    data, outputs = convert(model3, image_size, opset, metadata, label)
    weights, bias = head_parameters(model)
    with atomic.atomic_path(onnx_path) as tmp:
        tmp.write_bytes(data)
        limit = BACKBONES[backbone].parity_tolerance if tolerance is None else tolerance
        figures = parity.check(model3, tmp, parity_images, label, limit, head=(weights, bias))
    return ExportedModel(
        backbone=backbone,
        fold=fold,
        image_size=image_size,
        onnx_path=onnx_path,
        outputs=outputs,
        parity={**figures, "images": parity_source},
        head_weights=weights,
        head_bias=bias,
    )


def _free_keras() -> None:
    import keras

    keras.backend.clear_session()
    gc.collect()


def export_many(jobs: list[dict[str, Any]], isolate: bool = True) -> list[ExportedModel]:
    """Run ``export_fold_model`` for each job (its keyword arguments), each in a fresh process when ``isolate``."""
    results = []
    if not isolate:
        for job in jobs:
            results.append(export_fold_model(**job))
            _free_keras()
        return results
    context = multiprocessing.get_context("spawn")
    for job in jobs:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            try:
                results.append(pool.submit(export_fold_model, **job).result())
            except concurrent.futures.process.BrokenProcessPool:
                raise ArtifactError(
                    f"{job['model_path']}: the export process died (out of memory?); free memory and run export again"
                ) from None
    return results


def find_fold_models(run_dir: Path, backbones: list[str]) -> list[tuple[str, int, Path]]:
    """Finished fold models (``done.json`` beside ``model.keras``), in config backbone order then fold order."""
    found = []
    for backbone in backbones:
        for fold_dir in sorted((run_dir / "models" / backbone).glob("fold*"), key=lambda p: p.name):
            model_path = fold_dir / "model.keras"
            if not (fold_dir / "done.json").is_file() or not model_path.is_file():
                log.warning("%s: unfinished (no done.json or model.keras); not exported", fold_dir)
                continue
            try:
                fold = int(fold_dir.name.removeprefix("fold"))
            except ValueError:
                continue
            found.append((backbone, fold, model_path))
    if not found:
        raise ArtifactError(f"{run_dir / 'models'}: no finished fold model (models/<backbone>/fold<k>/done.json)")
    return found


def export_run(
    run_dir: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    n_parity_images: int = 16,
    calibration: str | None = None,
    isolate: bool = True,
    tolerance: float | None = None,
) -> Path:
    """Export every finished fold model of a run and write ``manifest.json``; returns the manifest path.

    Files are converted into a staging folder and moved into ``onnx/`` only once every model passed
    parity, then the manifest is written last: a failure leaves the previous export as it was.
    """
    from tbensemble.core.config import load_config
    from tbensemble.core.manifest import save_manifest
    from tbensemble.export import manifest_builder, parity

    run = Path(run_dir)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise TbensError(f"{config_path}: not found; is {run} a run folder written by 'tbens train-folds'?")
    config = load_config(config_path)
    models = find_fold_models(run, config.backbones)
    oof_columns = set(manifest_builder.read_oof(run, []).columns)
    incomplete = sorted({b for b, _, _ in models if b not in oof_columns})
    if incomplete:
        log.warning("%s: %s not in oof.csv (folds unfinished); not exported", run / "oof.csv", ", ".join(incomplete))
        models = [m for m in models if m[0] not in incomplete]
    if not models:
        raise ArtifactError(f"{run / 'oof.csv'}: no backbone with all folds finished; finish 'tbens train-folds' first")
    with atomic.temporary_folder(run, ".onnx-staging-") as staging:
        jobs = []
        for backbone, fold, model_path in models:
            images, source = parity.parity_images(run, config.data, fold, n_parity_images, config.image_size)
            name = manifest_builder.model_name(backbone, fold)
            jobs.append(
                {
                    "model_path": model_path,
                    "onnx_path": staging / f"{name}.onnx",
                    "backbone": backbone,
                    "fold": fold,
                    "image_size": config.image_size,
                    "parity_images": images,
                    "parity_source": source,
                    "opset": opset,
                    "tolerance": tolerance,
                }
            )
        exported = export_many(jobs, isolate=isolate)
        files = {manifest_builder.model_name(e.backbone, e.fold): e.onnx_path for e in exported}
        manifest = manifest_builder.build_manifest(run, config, exported, files, calibration)
        (run / "onnx").mkdir(exist_ok=True)
        for entry in manifest.models:
            os.replace(files[entry.name], run / entry.file)
        return save_manifest(manifest, run)
