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
class VariantEntry:
    """A faster form of one fold model (another runtime or precision) built by ``tbens optimize``, with the
    accuracy gate it was put through against the fp32 model on that model's held-out images."""

    name: str
    """e.g. ``openvino-bf16``, ``ort-int8-qoperator``."""
    runtime: str
    """``onnxruntime`` or ``openvino``."""
    file: str
    """Relative to the manifest's folder; an OpenVINO variant may read the fp32 ONNX file itself."""
    sha256: str
    precision: str
    """``fp32``, ``bf16`` or ``int8``: the OpenVINO inference precision hint, or the quantised weights."""
    requires: list[str]
    """CPU capabilities (OpenVINO ``OPTIMIZATION_CAPABILITIES`` names) it needs; else the engine runs fp32."""
    images_per_s: float
    speedup: float
    """Against the fp32 model, measured in the same interleaved run by ``tbens optimize``."""
    gate: dict[str, Any]
    """``core.gate.GateResult`` figures (``passed``, ``spearman``, ``delta_auc``, ``flipped_fraction``, ...)."""
    oof_scores_sorted: list[float]
    """The variant's own scores on the held-out images: its historical-rank reference."""
    extra_files: dict[str, str] = field(default_factory=dict)
    """Further files the variant reads, relative path -> sha256 (an OpenVINO IR's ``.bin`` beside its ``.xml``)."""


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
    variants: list[VariantEntry] = field(default_factory=list)
    default_variant: str = "fp32"
    """The variant the engine runs under ``--precision auto``: ``fp32`` or one of ``variants``."""

    def variant(self, name: str) -> VariantEntry:
        for v in self.variants:
            if v.name == name:
                return v
        raise ArtifactError(f"model {self.name}: default variant {name!r} is not among its variants")


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
            ModelEntry(
                **{
                    **m,
                    "input": InputSpec(**_require(m, "input", f"{path}: models[{i}]")),
                    "variants": [VariantEntry(**v) for v in m.get("variants", [])],
                }
            )
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


def verify_file(path: Path, expected_sha256: str) -> None:
    """Refuse a missing or tampered model file: its sha256 must equal the manifest's."""
    if not path.is_file():
        raise ArtifactError(f"{path}: model file listed in the manifest is missing")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{path}: sha256 {actual[:12]}… does not match the manifest's {expected_sha256[:12]}… (file changed or tampered)"
        )


def verify_model_files(manifest: Manifest) -> None:
    """Refuse a missing or tampered fp32 model file (variants are checked when they are loaded)."""
    for entry in manifest.models:
        verify_file(manifest.model_path(entry), entry.sha256)
