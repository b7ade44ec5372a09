"""``tbens optimize``: per fold model, build the candidate variants, score the model's held-out images with
fp32 and every variant in one interleaved pass (so each batch times all of them under the same machine
load), put each variant through the accuracy gate, and record the chosen one in the manifest.

The manifest is rewritten after each model. Before a model's variant files are replaced its variants are
dropped from the manifest, so an interrupted run never leaves a manifest whose hashes point at changed
files; a rerun skips models already done unless ``force``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tbensemble.core import atomic
from tbensemble.core.errors import DeviceError, TbensError
from tbensemble.core.gate import DEFAULT_LIMITS, FP32, Candidate, GateLimits, choose_variant, evaluate_gate
from tbensemble.core.manifest import (
    Manifest,
    ModelEntry,
    VariantEntry,
    load_manifest,
    save_manifest,
    verify_model_files,
)
from tbensemble.core.metrics import auc, quantile_reference
from tbensemble.data.views import apply_views
from tbensemble.engine.session import make_session, why_no_cuda
from tbensemble.engine.variants import why_unavailable
from tbensemble.optimize.candidates import VariantSpec, build_variant, remove_stale, select_specs
from tbensemble.optimize.images import FoldImages, fold_images, run_training_set
from tbensemble.optimize.quantize import CalibrationViews

LOCK_NAME = ".optimize.lock"
REPORT_NAME = "optimize.json"
"""Every variant's figures, the ones that failed or could not run included (the manifest keeps only the
variants whose files it ships)."""

log = logging.getLogger(__name__)


@dataclass
class VariantRow:
    """One line of the table ``tbens optimize`` prints for a model."""

    variant: str
    images_per_s: float | None
    ratio: float | None
    gate: dict[str, Any] | None
    chosen: bool
    reason: str


@dataclass
class ModelReport:
    model: str
    n_heldout: int
    chosen: str
    rows: list[VariantRow] = field(default_factory=list)
    reused: bool = False


CALIBRATION_IMAGES = 128
"""Default INT8 calibration sample (each image with all its TTA views). Calibration runs one view at a
time, so its memory does not grow with this count (see ``optimize.quantize``)."""


def score_interleaved(
    runners: dict[str, Any], entry: ModelEntry, images: np.ndarray, views: list[str], batch_size: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """TTA-mean scores of ``images`` from every runner, and each runner's images/s.

    Each batch goes through every runner in turn (the order rotating per batch), so all share the same
    machine load; the speed is the median over full batches, after one untimed warm-up call each.
    """
    output, input_name = entry.outputs["probability"], entry.input.name
    names = list(runners)
    scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names}
    first = {input_name: apply_views(images[:batch_size], views).astype(np.float32)[..., None]}
    for name in names:
        runners[name].run([output], first)
    for index, start in enumerate(range(0, len(images), batch_size)):
        chunk = images[start : start + batch_size]
        feed = {input_name: apply_views(chunk, views).astype(np.float32)[..., None]}
        for name in names[index % len(names) :] + names[: index % len(names)]:
            began = time.perf_counter()
            (probability,) = runners[name].run([output], feed)
            elapsed = time.perf_counter() - began
            scores[name].append(probability.reshape(len(views), len(chunk)).mean(axis=0, dtype=np.float64))
            if len(chunk) == batch_size or len(images) < batch_size:
                seconds[name].append(elapsed / len(chunk))
    return (
        {n: np.concatenate(parts) for n, parts in scores.items()},
        {n: 1.0 / statistics.median(seconds[n]) for n in names},
    )


def _earlier_reports(run: Path) -> dict[str, ModelReport]:
    """The reports of an earlier optimize of this run (empty when there is none or it is unreadable)."""
    try:
        models = json.loads((run / REPORT_NAME).read_text(encoding="utf-8"))["models"]
        return {m["model"]: ModelReport(**{**m, "rows": [VariantRow(**r) for r in m["rows"]]}) for m in models}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _reused_report(entry: ModelEntry, earlier: dict[str, ModelReport]) -> ModelReport:
    """A model optimized by an earlier run: its rows from optimize.json, else from the manifest."""
    if entry.name in earlier and earlier[entry.name].chosen == entry.default_variant:
        return ModelReport(**{**asdict(earlier[entry.name]), "rows": earlier[entry.name].rows, "reused": True})
    rows = [
        VariantRow(v.name, v.images_per_s, v.speedup, v.gate, v.name == entry.default_variant, "from an earlier run")
        for v in entry.variants
    ]
    return ModelReport(entry.name, rows[0].gate["n_images"] if rows else 0, entry.default_variant, rows, reused=True)


def optimize_model(
    manifest: Manifest,
    entry: ModelEntry,
    specs: list[VariantSpec],
    images: FoldImages,
    threshold: float,
    batch_size: int,
    limits: GateLimits,
    device: str = "cpu",
) -> ModelReport:
    """Build, score, time and gate every variant of one model against fp32 on ``device``; set its variants
    and default in place."""
    views = manifest.ensemble.tta
    fp32, _ = make_session(manifest.model_path(entry), device)
    runners: dict[str, Any] = {FP32: fp32}
    built, candidates = {}, {}
    for spec in specs:
        reason = why_unavailable(spec.runtime, spec.requires)
        if reason is None:
            try:
                built[spec.name] = build_variant(
                    spec, manifest, entry, lambda: CalibrationViews(images.calibration, views, entry.input.name)
                )
                runners[spec.name] = built[spec.name].runner
                continue
            except Exception as exc:  # one variant that cannot be built must not stop the others
                reason = f"build failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                log.warning("%s: %s %s", entry.name, spec.name, reason)
        candidates[spec.name] = Candidate(spec.name, 0.0, None, unavailable=reason)
    scores, speed = score_interleaved(runners, entry, images.heldout, views, batch_size)
    references = {n: quantile_reference(s) for n, s in scores.items() if n != FP32 and np.isfinite(s).all()}
    for name in built:
        gate = evaluate_gate(
            images.labels,
            scores[FP32],
            scores[name],
            np.asarray(entry.oof_scores_sorted),
            np.asarray(references.get(name, [])),
            threshold,
            limits,
        )
        candidates[name] = Candidate(name, speed[name], gate)
    ordered = [candidates[s.name] for s in specs]
    chosen, reasons = choose_variant(ordered, speed[FP32], limits)
    fp32_figures = {"n_images": len(images.labels), "auc_fp32": auc(images.labels, scores[FP32], f"{entry.name} fp32")}
    rows = [VariantRow(FP32, speed[FP32], 1.0, fp32_figures, chosen == FP32, reasons[FP32])]
    for c in ordered:
        rows.append(
            VariantRow(
                c.name,
                c.images_per_s or None,
                c.images_per_s / speed[FP32] if c.images_per_s else None,
                c.gate.to_dict() if c.gate else None,
                c.name == chosen,
                reasons[c.name],
            )
        )
    entry.variants = [
        VariantEntry(
            name=name,
            runtime=b.spec.runtime,
            file=b.file,
            sha256=b.sha256,
            precision=b.spec.precision,
            requires=list(b.spec.requires),
            images_per_s=speed[name],
            speedup=speed[name] / speed[FP32],
            gate=candidates[name].gate.to_dict(),
            oof_scores_sorted=references[name],
            extra_files=b.extra_files,
        )
        for name, b in built.items()
        if candidates[name].gate.passed
    ]
    for name, b in built.items():
        if not candidates[name].gate.passed and b.file != entry.file:
            for file in (b.file, *b.extra_files):
                (manifest.root / file).unlink(missing_ok=True)
    entry.default_variant = chosen
    return ModelReport(entry.name, len(images.labels), chosen, rows)


def optimize_run(
    run_dir: str | os.PathLike[str],
    target: str = "cpu",
    variant_names: list[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    n_calibration: int | None = None,
    batch_size: int = 8,
    limits: GateLimits = DEFAULT_LIMITS,
    force: bool = False,
    on_model: Callable[[ModelReport], None] | None = None,
) -> list[ModelReport]:
    """Optimize every fold model of an exported run; returns one report per model (also in optimize.json)."""
    run = Path(run_dir)
    specs = select_specs(target, variant_names)
    if target == "cuda" and (reason := why_no_cuda()):
        raise DeviceError(f"--target cuda: {reason}; the CUDA variants are built and timed on a GPU")
    with exclusive(run):
        return _optimize_models(run, target, specs, data_dir, n_calibration, batch_size, limits, force, on_model)


@contextlib.contextmanager
def exclusive(run: Path) -> Iterator[None]:
    """Refuse a second ``tbens optimize`` on the same run while one is running (both rewrite the manifest)."""
    with open(run / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TbensError(f"{run}: another 'tbens optimize' is running on this run; wait for it to finish") from None
        yield


def _optimize_models(
    run: Path,
    target: str,
    specs: list[VariantSpec],
    data_dir: str | os.PathLike[str] | None,
    n_calibration: int | None,
    batch_size: int,
    limits: GateLimits,
    force: bool,
    on_model: Callable[[ModelReport], None] | None,
) -> list[ModelReport]:
    manifest = load_manifest(run)
    verify_model_files(manifest)
    frame = run_training_set(run, data_dir)
    ensemble = manifest.ensemble
    threshold = float(ensemble.operating_points[ensemble.default_operating_point]["threshold"])
    reports, earlier = [], _earlier_reports(run)
    names = {s.name for s in select_specs(target, None)}
    for entry in manifest.models:
        if entry.variants and not force and {v.name for v in entry.variants} <= names:
            report = _reused_report(entry, earlier)
        else:
            entry.variants, entry.default_variant = [], FP32
            save_manifest(manifest, run)
            remove_stale(manifest, entry)
            images = fold_images(frame, entry.fold, entry.input.size, n_calibration or CALIBRATION_IMAGES)
            report = optimize_model(manifest, entry, specs, images, threshold, batch_size, limits, target)
            save_manifest(manifest, run)
        reports.append(report)
        atomic.write_json(
            run / REPORT_NAME, {"target": target, "limits": asdict(limits), "models": [asdict(r) for r in reports]}
        )
        if on_model:
            on_model(report)
    return reports
