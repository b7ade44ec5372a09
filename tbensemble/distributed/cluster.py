"""One Ray connection per command: the cluster at an address, or a small local instance for the run."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from tbensemble.core import errors
from tbensemble.core.errors import TbensError

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
"""A local instance moves fold files and score batches, never pixels: a small store leaves RAM to training."""

NAMESPACE = "tbensemble"
"""Named actors (one progress board per run folder) are seen by every tbens driver on a cluster."""

INSTALL_HINT = 'pip install "tbensemble[ray]"'


def require_ray() -> ModuleType:
    """Ray (with Ray Data), or a one-line error naming the extra that installs it."""
    # Before Ray is imported: show every job's epoch lines (Ray would fold similar lines of different
    # workers into "repeated Nx"), and no colour codes in logs that are not a terminal.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        import ray
        import ray.data  # predict --ray needs Ray Data: without it the extra was not installed
    except ImportError as exc:
        raise TbensError(f"--ray needs Ray, an optional extra ({exc.name} is not installed): {INSTALL_HINT}") from None
    return ray


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, in one line, when nothing listens at ``HOST:PORT`` (``ray://HOST:PORT`` too):
    Ray itself retries an unreachable cluster for minutes. Other forms (``auto``) are left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise TbensError(
            f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start one with `ray start --head`, or give no address for a local instance"
        ) from None


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[ModuleType]:
    """Ray, connected for the duration of the block.

    ``address`` None starts a local instance limited to this machine's usable CPUs, a small object store
    and no dashboard, and stops it afterwards; otherwise it joins the cluster there (``auto``,
    ``HOST:6379``, ``ray://HOST:10001``). A caller already connected (a notebook, a test) is reused as is.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True, "namespace": NAMESPACE}
    try:
        if address is None:
            ray.init(
                num_cpus=usable_cpus(),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False,
                **common,
            )
        else:
            check_reachable(address)
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise TbensError(f"--ray: cannot connect to {where} ({str(exc).splitlines()[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def per_worker_resources(ray: ModuleType) -> dict[str, float]:
    """One GPU per task or actor where the cluster has GPUs, one CPU otherwise."""
    return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}


def worker_logging() -> None:
    """tbensemble's INFO lines on a worker's stderr, which Ray forwards to the driver tagged with the task."""
    logger = logging.getLogger("tbensemble")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def tbens_cause(exc: BaseException) -> TbensError | None:
    """The TbensError a Ray error carries from a worker, if there is one. Ray wraps it, at times twice,
    and an actor that failed in ``__init__`` keeps only its text (``tbensemble.core.errors.X: message``),
    from which the same error (so the same exit code) is rebuilt."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TbensError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    found = _RAISED.findall(str(exc))
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, TbensError):
            return kind(message.strip())
    return None


_RAISED = re.compile(r"tbensemble\.core\.errors\.(\w+): (.+)")
