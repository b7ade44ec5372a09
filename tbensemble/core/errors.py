"""User-facing errors: each is one line that names the file, row or key. The CLI exits with the error's
``exit_code`` so an orchestrator can tell bad input (2) from bad artifacts (3) from a missing device (4)."""

EXIT_USAGE = 2
"""Usage, config and data problems: the caller must change what it passes."""
EXIT_ARTIFACT = 3
"""Artifact integrity: a tampered, foreign or invalid manifest or model; the edge box must be re-shipped."""
EXIT_DEVICE = 4
"""The device asked for is not available (``--device cuda`` without a working CUDA provider)."""


class TbensError(Exception):
    """A problem with the user's input, config or artifacts (not a bug): shown as one line."""

    exit_code = EXIT_USAGE


class ConfigError(TbensError):
    """A config key is unknown, missing or holds a value outside what is allowed."""


class DataError(TbensError):
    """An image, label file or dataset folder is missing, unreadable or inconsistent."""


class ArtifactError(TbensError):
    """A run folder, model file or manifest is missing, tampered with or of another schema version."""

    exit_code = EXIT_ARTIFACT


class DeviceError(TbensError):
    """The execution device asked for cannot be used on this machine."""

    exit_code = EXIT_DEVICE
