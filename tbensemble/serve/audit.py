"""The audit log: one JSON line per decision, on disk (fsynced) before the response that carries it is sent.

Lines are written under one lock by ``os.write`` on an ``O_APPEND`` descriptor, so lines of concurrent batches never
interleave; a batch's lines share one fsync (group commit). A process killed mid-write can leave a torn
last line: opening the log cuts it off, and that line's request never got its answer (the answer waits
for the fsync). No pixels and no identifiers from the image are stored: only its sha256.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tbensemble.core.errors import DataError

AUDIT_FIELDS = ("time", "request_id", "input_sha256", "decision", "score", "manifest_sha256")

log = logging.getLogger(__name__)


def cut_torn_tail(path: Path) -> int:
    """Truncate a last line that has no newline (a write cut short by a kill); returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        position, step, keep = size, 4096, 0
        while position > 0:
            start = max(0, position - step)
            handle.seek(start)
            chunk = handle.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return size - keep


class AuditLog:
    """Append-only JSON lines; ``append`` returns only once the lines are on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
            removed = cut_torn_tail(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot open the audit log ({exc.strerror})") from None
        if removed:
            log.warning("%s: cut a torn last line of %d bytes (a write interrupted by a kill)", self.path, removed)
        self._lock = threading.Lock()

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps({key: record[key] for key in AUDIT_FIELDS}) + "\n" for record in records)
        if not lines:
            return
        remaining = memoryview(lines.encode("utf-8"))
        with self._lock:
            while remaining:
                remaining = remaining[os.write(self._fd, remaining) :]
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of an audit log as a dict; a torn or non-JSON line raises ``DataError`` naming its number."""
    records = []
    text = Path(path).read_bytes().decode("utf-8")
    if text and not text.endswith("\n"):
        raise DataError(f"{path}: last line is torn (no newline)")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number}: not a JSON line") from None
    return records
