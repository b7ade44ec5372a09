"""The training stack (TensorFlow, Keras, tf2onnx, onnx) is an extra: import it quietly, or say in one line
which extra to install.

TensorFlow prints C++ start-up lines while it is imported (``oneDNN custom operations are on``, ``Could not
find cuda drivers``, ``All log messages before absl::InitializeLog() ...``) through absl before its logging
is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` does not reach them (measured with TF 2.21: level 3 still
prints 6 lines). While ``TF_CPP_MIN_LOG_LEVEL`` is 3 (the CLI sets it unless ``--debug``), the import
runs with file descriptor 2 sent to a temp file, replayed if the import fails; afterwards level 3 keeps
the C++ side quiet and TensorFlow's Python logger (tf.function retracing warnings) is set to errors.
Processes started with ``spawn`` (export's converters) inherit the variable and call this again.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from tbensemble.core.errors import TbensError

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx")
INSTALL_TRAIN = 'pip install "tbensemble[train]"'
QUIET_LEVEL = "3"


def quiet_requested() -> bool:
    """True when TensorFlow's C++ logs are to be hidden (``TF_CPP_MIN_LOG_LEVEL=3``: the CLI without --debug)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == QUIET_LEVEL


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Send file descriptor 2 (what C++ libraries write to) to a temp file; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def require_training_stack(command: str) -> None:
    """Import the training stack once (quietly unless --debug), or raise one line naming the extra (exit 2)."""
    missing = [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise TbensError(f"{command} needs the train extra ({', '.join(missing)} not installed here): {INSTALL_TRAIN}")
    if "tensorflow" in sys.modules:
        return
    if not quiet_requested():
        importlib.import_module("tensorflow")
        return
    with native_stderr_hidden():
        importlib.import_module("tensorflow")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
