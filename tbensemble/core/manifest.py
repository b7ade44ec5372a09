"""The manifest: everything the engine needs beside the ONNX files, so ``onnx/`` + ``manifest.json`` ship alone."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tbensemble.core import atomic
from tbensemble.core.errors import ArtifactError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class InputSpec:
    """What an exported model takes: raw pixels 0-255, NHWC, one channel (tiled to three inside)."""

    name: str = "image"
    size: int = 384
    channels: int = 1
    dtype: str = "float32"
    layout: str = "NHWC"
    value_range: list[float] = field(default_factory=lambda: [0.0, 255.0])


@dataclass
class ModelEntry:
    """One exported fold model, with the facts needed to trust it and to put its scores on a shared scale."""

    name: str
    file: str
    """Relative to the manifest's folder, e.g. ``onnx/resnet50-f0.onnx``."""
    sha256: str
    backbone: str
    fold: int
    input: InputSpec
    outputs: dict[str, str]
    """Role -> ONNX output name; roles ``probability``, ``logit`` and ``features``."""
    oof_auc: float
    parity: dict[str, Any]
    """``max_abs_diff_probability``, ``max_abs_diff_logit``, ``n_images``: Keras against ONNX Runtime;
    ``images``: ``run data`` or ``random`` (when the run's data was gone at export)."""
    oof_scores_sorted: list[float]
    """This model's TTA-mean scores on its held-out fold, sorted: the reference for historical ranks."""
    head_weights: list[float]
    """The Dense head over the pooled features (one weight per feature channel): used for CAM heatmaps."""
    head_bias: float
    weight: float = 1.0
    """This model's weight in the rank average (a backbone's weight shared among its folds)."""


@dataclass
class EnsembleEntry:
    """How model scores become one score, and where that score is cut into a decision."""

    tta: list[str]
    operating_points: dict[str, dict[str, Any]]
    """Name -> OperatingPoint fields, chosen on OOF scores on the historical-rank ensemble scale."""
    default_operating_point: str
    oof_auc: float
    calibration: dict[str, Any] | None = None
    """Optional map from the ensemble scale to a probability, fitted on OOF (``method`` + parameters)."""
    refer: dict[str, Any] | None = None
    """When not to decide (``core.decisions``): the backbone-disagreement threshold and per-model feature
    references with their distance threshold, read from OOF; absent in older manifests (rules off)."""
    drift: dict[str, Any] | None = None
    """The OOF score distribution (bin edges and shares) that ``tbens monitor`` compares batches with."""
    site: dict[str, Any] | None = None
    """Set by ``tbens recalibrate``: the site data the operating points and calibration were re-chosen on."""


@dataclass
class Manifest:
    schema_version: int
    tbensemble_version: str
    run: str
    created: str
    models: list[ModelEntry]
    ensemble: EnsembleEntry
    root: Path = field(default=Path("."), repr=False, compare=False)
    """The folder that holds ``manifest.json``; not serialised."""

    def model_path(self, entry: ModelEntry) -> Path:
        return self.root / entry.file

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("root")
        return data


def sha256_of(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_manifest(manifest: Manifest, folder: str | os.PathLike[str]) -> Path:
    path = Path(folder) / MANIFEST_NAME
    atomic.write_json(path, manifest.to_dict())
    return path


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ArtifactError(f"{where}: key '{key}' is missing")
    return data[key]


def load_manifest(folder_or_file: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` from a run folder (or the file itself), refusing other schema versions."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{path}: manifest not found (run 'tbens export RUN' first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    version = _require(data, "schema_version", str(path))
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema_version {version!r} is not supported; this tbensemble reads version {SCHEMA_VERSION}"
        )
    try:
        models = [
            ModelEntry(**{**m, "input": InputSpec(**_require(m, "input", f"{path}: models[{i}]"))})
            for i, m in enumerate(_require(data, "models", str(path)))
        ]
        ensemble = EnsembleEntry(**_require(data, "ensemble", str(path)))
        fields = {k: v for k, v in data.items() if k not in ("models", "ensemble")}
        manifest = Manifest(**fields, models=models, ensemble=ensemble, root=path.parent)
    except TypeError as exc:
        raise ArtifactError(f"{path}: does not match schema version {SCHEMA_VERSION} ({exc})") from None
    if not manifest.models:
        raise ArtifactError(f"{path}: lists no models")
    return manifest


def verify_model_files(manifest: Manifest) -> None:
    """Refuse a missing or tampered model file: its sha256 must equal the manifest's."""
    for entry in manifest.models:
        model_path = manifest.model_path(entry)
        if not model_path.is_file():
            raise ArtifactError(f"{model_path}: model file listed in the manifest is missing")
        actual = sha256_of(model_path)
        if actual != entry.sha256:
            raise ArtifactError(
                f"{model_path}: sha256 {actual[:12]}… does not match the manifest's {entry.sha256[:12]}… (file changed or tampered)"
            )
