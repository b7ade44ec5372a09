"""The manifest: everything the engine needs beside the ONNX files, so ``onnx/`` + ``manifest.json`` ship alone.

An edge box acts on the manifest it was shipped, so it is checked when loaded, before any image is read:
every field's type and range (declared beside the field, checked by ``_convert``), the rules that tie
fields together (``_check_manifest``), and the model files it names (``read_model``: inside the
artifacts folder, a regular file, the sha256 it promises, no tensors stored outside it). Each failure is
one ``ArtifactError`` line naming the key, e.g. ``manifest.json: models[2].weight: NaN is not a finite
number ≥ 0``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union

from tbensemble.core import atomic
from tbensemble.core.config import TTA_VIEWS
from tbensemble.core.errors import ArtifactError
from tbensemble.core.onnx_scan import external_tensors

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
"""A manifest takes about 120 KB per model (2001 OOF reference points, up to 2048 head weights, indented JSON):
16 MB holds over 100 models; a larger file is refused before it is parsed."""
MAX_MODEL_BYTES = (2 << 30) - 1
"""Protobuf cannot serialise 2 GB; a larger ``.onnx`` must keep tensors outside, which is refused anyway."""
VARIANT_RUNTIMES = ("onnxruntime", "openvino", "onnxruntime-cuda")
VARIANT_PRECISIONS = ("fp32", "bf16", "int8", "fp16")
OUTPUT_ROLES = ("probability", "logit", "features")
"""The outputs the engine runs: ``probability`` to score, ``features`` with the head for CAM heatmaps."""


def _spec(
    low: float | None = None,
    high: float | None = None,
    choices: tuple[Any, ...] | None = None,
    pattern: str | None = None,
    sorted_values: bool = False,
    non_empty: bool = False,
) -> dict[str, Any]:
    """Field metadata read by ``_convert``: bounds (of a number, or of each number in a list), allowed
    values, a regular expression for strings, and list rules."""
    return {
        "low": low,
        "high": high,
        "choices": choices,
        "pattern": pattern,
        "sorted": sorted_values,
        "non_empty": non_empty,
    }


@dataclass
class InputSpec:
    """What an exported model takes: raw pixels 0-255, NHWC, one channel (tiled to three inside)."""

    name: str = "image"
    size: int = field(default=384, metadata=_spec(low=16, high=2048))
    channels: int = field(default=1, metadata=_spec(choices=(1,)))
    dtype: str = field(default="float32", metadata=_spec(choices=("float32",)))
    layout: str = field(default="NHWC", metadata=_spec(choices=("NHWC",)))
    value_range: list[float] = field(default_factory=lambda: [0.0, 255.0], metadata=_spec(sorted_values=True))


@dataclass
class VariantEntry:
    """A faster form of one fold model (another runtime or precision) built by ``tbens optimize``, with the
    accuracy gate it was put through against the fp32 model on that model's held-out images."""

    name: str
    """e.g. ``openvino-bf16``, ``ort-int8-qoperator``."""
    runtime: str = field(metadata=_spec(choices=VARIANT_RUNTIMES))
    file: str
    """Relative to the manifest's folder: an ``.onnx`` (an OpenVINO variant may read the fp32 file itself)
    or an OpenVINO IR ``.xml``."""
    sha256: str = field(metadata=_spec(pattern=r"[0-9a-f]{64}"))
    precision: str = field(metadata=_spec(choices=VARIANT_PRECISIONS))
    """The OpenVINO inference precision hint, or the quantised weights."""
    requires: list[str]
    """CPU capabilities (OpenVINO ``OPTIMIZATION_CAPABILITIES`` names) it needs; else the engine runs fp32."""
    images_per_s: float = field(metadata=_spec(low=0.0))
    speedup: float = field(metadata=_spec(low=0.0))
    """Against the fp32 model, measured in the same interleaved run by ``tbens optimize``."""
    gate: dict[str, Any]
    """``core.gate.GateResult`` figures (``passed``, ``spearman``, ``delta_auc``, ``flipped_fraction``, ...)."""
    oof_scores_sorted: list[float] = field(metadata=_spec(low=0.0, high=1.0, sorted_values=True, non_empty=True))
    """The variant's own scores on the held-out images: its historical-rank reference."""
    extra_files: dict[str, str] = field(default_factory=dict)
    """Further files the variant reads, relative path -> sha256 (an OpenVINO IR's ``.bin`` beside its ``.xml``)."""


@dataclass
class ModelEntry:
    """One exported fold model, with the facts needed to trust it and to put its scores on a shared scale."""

    name: str
    file: str
    """Relative to the manifest's folder, e.g. ``onnx/resnet50-f0.onnx``."""
    sha256: str = field(metadata=_spec(pattern=r"[0-9a-f]{64}"))
    backbone: str
    fold: int = field(metadata=_spec(low=0))
    input: InputSpec
    outputs: dict[str, str]
    """Role -> ONNX output name; roles ``probability``, ``logit`` and ``features``."""
    oof_auc: float = field(metadata=_spec(low=0.0, high=1.0))
    parity: dict[str, Any]
    """``max_abs_diff_probability``, ``max_abs_diff_logit``, ``n_images``: Keras against ONNX Runtime;
    ``images``: ``run data`` or ``random`` (when the run's data was gone at export)."""
    oof_scores_sorted: list[float] = field(metadata=_spec(low=0.0, high=1.0, sorted_values=True, non_empty=True))
    """This model's TTA-mean scores on its held-out fold, sorted: the reference for historical ranks."""
    head_weights: list[float] = field(metadata=_spec(non_empty=True))
    """The Dense head over the pooled features (one weight per feature channel): used for CAM heatmaps."""
    head_bias: float
    weight: float = field(default=1.0, metadata=_spec(low=0.0))
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

    tta: list[str] = field(metadata=_spec(choices=TTA_VIEWS, non_empty=True))
    operating_points: dict[str, dict[str, Any]] = field(metadata=_spec(non_empty=True))
    """Name -> OperatingPoint fields, chosen on OOF scores on the historical-rank ensemble scale."""
    default_operating_point: str
    oof_auc: float = field(metadata=_spec(low=0.0, high=1.0))
    calibration: dict[str, Any] | None = None
    """Optional map from the ensemble scale to a probability, fitted on OOF (``method`` + parameters)."""
    refer: dict[str, Any] | None = None
    """When not to decide (``core.decisions``): the backbone-disagreement threshold and per-model feature
    references with their distance threshold, read from OOF; absent in older manifests (rules off)."""
    drift: dict[str, Any] | None = None
    """The OOF score distribution (bin edges and shares) that ``tbens monitor`` compares batches with."""
    site: dict[str, Any] | None = None
    """Set by ``tbens recalibrate``: the site data the operating points and calibration were re-chosen on."""
    weighting: dict[str, Any] | None = None
    """How the backbone weights were chosen (``core.weighting``): ``method``, ``weights`` per backbone and
    each method's nested cross-validated AUC."""


@dataclass
class Manifest:
    schema_version: int
    tbensemble_version: str
    run: str
    created: str
    models: list[ModelEntry] = field(metadata=_spec(non_empty=True))
    ensemble: EnsembleEntry
    root: Path = field(default=Path("."), repr=False, compare=False, metadata={"serialised": False})
    """The folder that holds ``manifest.json``; not serialised."""

    def model_path(self, entry: ModelEntry) -> Path:
        return self.root / entry.file

    @property
    def image_size(self) -> int:
        """The input size every model takes (one size per manifest, checked at load)."""
        return self.models[0].input.size

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


class _Invalid(Exception):
    """A field problem, raised with the key path; ``load_manifest`` turns it into one ArtifactError line."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


def _shown(value: Any) -> str:
    """A value as the error shows it: NaN and Infinity as JSON writes them, long text cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    text = json.dumps(value) if isinstance(value, (str, bool)) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(key: str) -> str:
    """A JSON key as shown in a key path: plain when printable, else quoted, so the error stays one line."""
    return key if re.fullmatch(r"[\w.<>=+-]{1,60}", key) else json.dumps(key[:60])


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


def _bounds_text(rule: dict[str, Any]) -> str:
    low, high = rule.get("low"), rule.get("high")
    if low is not None and high is not None:
        return f" in [{low:g}, {high:g}]"
    return f" ≥ {low:g}" if low is not None else (f" ≤ {high:g}" if high is not None else "")


def _number(value: Any, where: str, rule: dict[str, Any], integer: bool) -> float | int:
    """A finite JSON number within the rule's bounds (an integer where the field is one)."""
    wanted = ("an integer" if integer else "a finite number") + _bounds_text(rule)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(where, f"{_shown(value)} ({_kind(value)}) is not {wanted}")
    if integer and not isinstance(value, int):
        raise _Invalid(where, f"{_shown(value)} is not {wanted}")
    low, high = rule.get("low"), rule.get("high")
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise _Invalid(where, f"{_shown(value)} is not {wanted}")
    return value if integer else float(value)


def _scalar(value: Any, hint: Any, where: str, rule: dict[str, Any]) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise _Invalid(where, f"{_shown(value)} is not true or false")
    elif hint is int or hint is float:
        value = _number(value, where, rule, integer=hint is int)
    elif hint is str:
        if not isinstance(value, str) or not value:
            raise _Invalid(where, f"{_shown(value)} is not a non-empty string")
        if rule.get("pattern") and not re.fullmatch(rule["pattern"], value):
            raise _Invalid(where, f"{_shown(value)} does not match {rule['pattern']}")
    elif hint is not Any:
        raise TypeError(f"manifest field type {hint} has no checker")
    if rule.get("choices") is not None and value not in rule["choices"]:
        raise _Invalid(where, f"{_shown(value)} is not one of {', '.join(map(str, rule['choices']))}")
    return value


def _convert(value: Any, hint: Any, where: str, rule: dict[str, Any] | None = None) -> Any:
    """``value`` (parsed JSON) as type ``hint``, checked against ``rule``; raises ``_Invalid`` naming ``where``."""
    rule = rule or {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where, rule)
    if dataclasses.is_dataclass(hint):
        return _dataclass(value, hint, where)
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(where, f"{_shown(value)} ({_kind(value)}) is not a list")
        if rule.get("non_empty") and not value:
            raise _Invalid(where, "is empty")
        items = [_convert(item, args[0], f"{where}[{i}]", rule) for i, item in enumerate(value)]
        if rule.get("sorted") and any(b < a for a, b in itertools.pairwise(items)):
            raise _Invalid(where, "is not sorted in ascending order")
        return items
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(where, f"{_shown(value)} ({_kind(value)}) is not an object")
        if rule.get("non_empty") and not value:
            raise _Invalid(where, "is empty")
        return {key: _convert(item, args[1], f"{where}.{_key(key)}") for key, item in value.items()}
    return _scalar(value, hint, where, rule)


def _dataclass(value: Any, cls: type, where: str) -> Any:
    """A dataclass from a JSON object: every key known, every required key present, each field checked."""
    if not isinstance(value, dict):
        raise _Invalid(where, f"{_shown(value)} ({_kind(value)}) is not an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("serialised", True)}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _Invalid(f"{prefix}{_key(unknown[0])}", "unknown key (written by another tbensemble version?)")
    kwargs = {}
    for name, spec in fields.items():
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], f"{prefix}{name}", dict(spec.metadata))
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise _Invalid(f"{prefix}{name}", "key is missing")
    return cls(**kwargs)


def _check_calibration(params: dict[str, Any], where: str) -> None:
    """Parameters ``apply_calibration`` can replay: Platt a, b finite, eps in (0, 0.5); isotonic x sorted, y in [0, 1]."""
    method = params.get("method")
    number = {"low": None, "high": None}
    if method == "platt":
        for key in ("a", "b"):
            _number(params.get(key), f"{where}.{key}", number, integer=False)
        eps = _number(params.get("eps"), f"{where}.eps", {"low": 0.0, "high": 0.5}, integer=False)
        if eps in (0.0, 0.5):
            raise _Invalid(f"{where}.eps", f"{eps:g} is not in (0, 0.5)")
    elif method == "isotonic":
        x = _convert(params.get("x"), list[float], f"{where}.x", {"sorted": True, "non_empty": True})
        y = _convert(params.get("y"), list[float], f"{where}.y", {"low": 0.0, "high": 1.0, "non_empty": True})
        if len(x) != len(y):
            raise _Invalid(where, f"isotonic x has {len(x)} points but y has {len(y)}")
    else:
        raise _Invalid(f"{where}.method", f"{_shown(method)} is not one of platt, isotonic")


def _check_decision_fields(ensemble: EnsembleEntry, models: list[ModelEntry]) -> None:
    """Refer thresholds finite; each feature reference well formed and for a listed model; drift bins usable."""
    from tbensemble.core.decisions import FeatureReference

    for rule in ("disagreement", "features"):
        spec = (ensemble.refer or {}).get(rule)
        if spec:
            _number(spec.get("threshold"), f"ensemble.refer.{rule}.threshold", {"low": 0.0}, integer=False)
    features = (ensemble.refer or {}).get("features") or {}
    references = features.get("models") or {}
    names = {m.name for m in models}
    if features and set(references) != names:
        raise _Invalid(
            "ensemble.refer.features.models", f"references {sorted(references)} are not the models {sorted(names)}"
        )
    for name, reference in references.items():
        try:
            FeatureReference.from_dict(reference, f"ensemble.refer.features.models.{_key(name)}")
        except ArtifactError as exc:
            raise _Invalid("", str(exc)) from None
    if ensemble.drift is not None:
        edges = _convert(ensemble.drift.get("edges"), list[float], "ensemble.drift.edges", {"sorted": True})
        shares = _convert(
            ensemble.drift.get("expected"), list[float], "ensemble.drift.expected", {"low": 0.0, "high": 1.0}
        )
        if len(shares) != len(edges) + 1:
            raise _Invalid("ensemble.drift", f"{len(edges)} edges need {len(edges) + 1} shares, got {len(shares)}")


def _check_manifest(manifest: Manifest) -> None:
    """The rules that tie fields together: unique names, one input size, weights that sum above 0, every
    output role, usable operating points and calibration."""
    names = [m.name for m in manifest.models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _Invalid("models", f"model name {twice[0]!r} appears more than once")
    sizes = sorted({m.input.size for m in manifest.models})
    if len(sizes) != 1:
        raise _Invalid("models", f"models take different input sizes {sizes}; one ensemble takes one size")
    if sum(m.weight for m in manifest.models) <= 0:
        raise _Invalid("models", "every weight is 0; at least one model must count")
    for i, entry in enumerate(manifest.models):
        where = f"models[{i}]"
        missing = [role for role in OUTPUT_ROLES if role not in entry.outputs]
        if missing:
            raise _Invalid(f"{where}.outputs", f"lacks the role(s) {', '.join(missing)} the engine uses")
        low, high = entry.input.value_range if len(entry.input.value_range) == 2 else (0.0, 0.0)
        if low >= high:
            raise _Invalid(f"{where}.input.value_range", f"{entry.input.value_range} is not [low, high]")
        _check_model_file(entry.file, f"{where}.file")
        _check_variants(entry, where)
    ensemble = manifest.ensemble
    for name, point in ensemble.operating_points.items():
        _number(point.get("threshold"), f"ensemble.operating_points.{_key(name)}.threshold", {}, integer=False)
    if ensemble.default_operating_point not in ensemble.operating_points:
        raise _Invalid(
            "ensemble.default_operating_point",
            f"{_shown(ensemble.default_operating_point)} is not among {_shown(list(ensemble.operating_points))}",
        )
    if ensemble.calibration is not None:
        _check_calibration(ensemble.calibration, "ensemble.calibration")
    _check_decision_fields(ensemble, manifest.models)


def _check_model_file(file: str, where: str, suffixes: tuple[str, ...] = (".onnx",)) -> None:
    """A model path written the way export writes it: relative, forward slashes, no ``..``, ending .onnx
    (or, for a variant, another suffix its runtime reads)."""
    parts = PurePosixPath(file).parts
    if PurePosixPath(file).is_absolute() or "\\" in file or ".." in parts or file.startswith("~"):
        raise _Invalid(where, f"{_shown(file)} is not a relative path inside the artifacts folder")
    if not file.endswith(suffixes):
        kind = "an .onnx" if suffixes == (".onnx",) else "a " + " or ".join(suffixes)
        raise _Invalid(where, f"{_shown(file)} is not {kind} file")


def _check_variants(entry: ModelEntry, where: str) -> None:
    """Unique variant names, files where the engine may read them, a default that exists."""
    names = [v.name for v in entry.variants]
    if "fp32" in names or len(set(names)) != len(names):
        raise _Invalid(f"{where}.variants", "variant names must be unique and not 'fp32'")
    for j, variant in enumerate(entry.variants):
        _check_model_file(variant.file, f"{where}.variants[{j}].file", (".onnx", ".xml"))
        for extra in variant.extra_files:
            _check_model_file(extra, f"{where}.variants[{j}].extra_files", (".bin",))
            _scalar(variant.extra_files[extra], str, f"{where}.variants[{j}].extra_files", {"pattern": r"[0-9a-f]{64}"})
    if entry.default_variant != "fp32" and entry.default_variant not in names:
        raise _Invalid(
            f"{where}.default_variant", f"{_shown(entry.default_variant)} is not fp32 or one of its variants"
        )


def _version_problem(data: dict[str, Any], path: Path) -> str | None:
    """Why this tbensemble cannot read a manifest of another schema version, naming the version that wrote it."""
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        return f"schema_version: {_shown(version)} is not an integer (not a tbensemble manifest?)"
    if version == SCHEMA_VERSION:
        return None
    from tbensemble import __version__

    writer = data.get("tbensemble_version")
    wrote = f"tbensemble {writer}" if isinstance(writer, str) and len(writer) < 40 else "an unknown tbensemble"
    if version > SCHEMA_VERSION:
        advice = f"upgrade tbensemble (this is {__version__}) to the version that wrote it"
    else:
        advice = f"re-export the run with this tbensemble {__version__} ('tbens export RUN')"
    return (
        f"schema_version {version} (written by {wrote}) is not supported; this tbensemble reads version "
        f"{SCHEMA_VERSION}: {advice}"
    )


def load_manifest(folder_or_file: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` from a run folder (or the file itself), every field checked; one line if not."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{path}: manifest not found (run 'tbens export RUN' first)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: {path.stat().st_size} bytes is too large for a manifest")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: holds {_kind(data)} ({_shown(data)}), not a manifest object")
    problem = _version_problem(data, path)
    if problem:
        raise ArtifactError(f"{path}: {problem}")
    try:
        manifest = _dataclass(data, Manifest, "")
        _check_manifest(manifest)
    except _Invalid as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    manifest.root = path.parent
    return manifest


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def read_model(manifest: Manifest, entry: ModelEntry) -> bytes:
    """The bytes of ``entry``'s model file, refused unless it lies inside the artifacts folder (symlinks
    resolved), is a regular file, matches the manifest's sha256 and keeps every tensor inside itself.

    The engine loads these very bytes, so the file checked is the file run. Nothing about a file outside
    the folder is ever shown (no hash, not even whether it exists).
    """
    where = f"models[{manifest.models.index(entry)}].file {_shown(entry.file)}"
    return read_artifact(manifest, entry.file, entry.sha256, where)


def read_artifact(
    manifest: Manifest, file: str, sha256: str, where: str, suffixes: tuple[str, ...] = (".onnx",)
) -> bytes:
    """The bytes of a file the manifest names (a model or a variant's), checked as ``read_model`` says;
    the external-tensor check applies to ``.onnx`` files."""
    label = manifest.root / MANIFEST_NAME
    try:
        _check_model_file(file, where, suffixes)
    except _Invalid as exc:
        raise ArtifactError(f"{label}: {exc}") from None
    model_path = manifest.root / file
    root = manifest.root.resolve()
    resolved = model_path.resolve()
    if not _is_inside(resolved, root):
        raise ArtifactError(f"{label}: {where} leads outside the artifacts folder (a symlink?); refused")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)  # a FIFO must not hang the load
    try:
        handle = os.fdopen(os.open(resolved, flags), "rb")
    except FileNotFoundError:
        raise ArtifactError(f"{model_path}: model file listed in the manifest is missing") from None
    except OSError as exc:
        raise ArtifactError(f"{model_path}: cannot read the model file ({exc.strerror})") from None
    with handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ArtifactError(f"{model_path}: not a regular file; a model must be a plain .onnx file")
        if status.st_size > MAX_MODEL_BYTES:
            raise ArtifactError(
                f"{model_path}: {status.st_size} bytes is above protobuf's 2 GB limit: not a single-file ONNX model"
            )
        data = handle.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"{model_path}: sha256 {actual[:12]}… does not match the manifest's {sha256[:12]}… (file changed or tampered)"
        )
    external = external_tensors(data, str(model_path)) if file.endswith(".onnx") else []
    if external:
        raise ArtifactError(
            f"{model_path}: stores {len(external)} tensor(s) in external data files (e.g. {external[0]!r}), "
            "which the sha256 does not cover; re-export it as a single .onnx file"
        )
    return data


def verify_model_files(manifest: Manifest) -> None:
    """Refuse a missing, tampered, outside or split model file (see ``read_model``)."""
    for entry in manifest.models:
        read_model(manifest, entry)


def load_verified(folder_or_file: str | os.PathLike[str]) -> Manifest:
    """The manifest, checked, with every model file it names verified: what a command that acts on
    artifacts without running the models (``tbens evaluate --artifacts``) should read."""
    manifest = load_manifest(folder_or_file)
    verify_model_files(manifest)
    return manifest
