"""User-facing errors: each is one line that names the file, row or key; the CLI exits with status 2."""


class TbensError(Exception):
    """A problem with the user's input, config or artifacts (not a bug): shown as one line, exit status 2."""


class ConfigError(TbensError):
    """A config key is unknown, missing or holds a value outside what is allowed."""


class DataError(TbensError):
    """An image, label file or dataset folder is missing, unreadable or inconsistent."""


class ArtifactError(TbensError):
    """A run folder, model file or manifest is missing, tampered with or of another schema version."""
