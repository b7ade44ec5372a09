"""Outputs that never destroy: a temp file in the target folder, then a rename, so a crash never leaves half
a file; an existing output keeps its permissions; SIGINT and SIGTERM leave no temp file; and
``check_output_path`` refuses, before any work starts, an output that would overwrite an input, the
artifacts or something that is not a plain file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pandas as pd

from tbensemble.core.errors import TbensError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
"""mkstemp makes 0600 files; new outputs get the permissions a plain ``open`` would give them."""

_TEMPS: set[Path] = set()
"""Temp files and folders alive now; removed by the signal handler before the process ends."""
_PREVIOUS: dict[int, Any] = {}
"""Signal -> the handler installed before ours, which ours hands over to after cleaning up."""
_LOCK = threading.Lock()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Remove every registered temp, then act as the previous handler would: SIGINT raises
    KeyboardInterrupt (exit 130 from the CLI), SIGTERM by default ends the process by that signal (143)."""
    for path in list(_TEMPS):
        _remove(path)
    _TEMPS.clear()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """Hook SIGINT and SIGTERM once, from the main thread only (Python allows no other), chaining to
    whatever handler was there (a server's own shutdown, Python's KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current is not _on_signal and current is not None:
            _PREVIOUS[signum] = current
            signal.signal(signum, _on_signal)


@contextlib.contextmanager
def registered_temp(path: Path) -> Iterator[Path]:
    """Keep ``path`` (a temp file or folder) on the list a signal cleans up; remove it on exit if still there."""
    with _LOCK:
        _install_handlers()
        _TEMPS.add(path)
    try:
        yield path
    finally:
        _remove(path)
        with _LOCK:
            _TEMPS.discard(path)


@contextlib.contextmanager
def temporary_folder(parent: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """A fresh folder in ``parent`` for staging work, removed on exit and on SIGINT/SIGTERM."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    with registered_temp(folder):
        yield folder


def _mode_for(target: Path) -> int:
    """The existing output's permission bits (a 600 file stays 600), else what ``open`` would give."""
    try:
        existing = os.stat(target)
    except OSError:
        return 0o666 & ~_UMASK
    return stat.S_IMODE(existing.st_mode) if stat.S_ISREG(existing.st_mode) else 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error or signal it is removed.

    A symlinked output is written through (its target replaced), so the link stays a link.
    """
    target = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    with registered_temp(Path(tmp_name)) as tmp:
        tmp.chmod(_mode_for(target))
        yield tmp
        os.replace(tmp, target)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _kind_of(mode: int) -> str:
    checks: list[tuple[Callable[[int], bool], str]] = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((kind for check, kind in checks if check(mode)), "not a regular file")


def _check_writable(folder: Path, option: str, shown: Path) -> None:
    """Create the folder if needed and prove a file can be made there (permissions, read-only mounts, ACLs)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TbensError(f"{option} {shown}: cannot write in {folder} ({exc.strerror}); choose another path") from None


def check_output_path(
    path: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    protected_dir: str | os.PathLike[str] | None = None,
    option: str = "--out",
    folder: bool = False,
) -> Path:
    """Refuse, in one line (exit 2), an output that would destroy something; call it before scoring starts.

    Refused: a path inside ``protected_dir`` (the artifacts: ``manifest.json``, the models), one of the
    ``inputs`` (the same file by any name: symlinks and hard links count), an existing folder where a
    file is wanted (or a file where a folder is), a FIFO, device or socket, and a folder that cannot be
    written in. Returns the path to write to (symlinks resolved).
    """
    shown = Path(path)
    target = Path(os.path.realpath(path))
    if protected_dir is not None and _is_inside(target, Path(os.path.realpath(protected_dir))):
        raise TbensError(f"{option} {shown}: is inside the artifacts folder {protected_dir}; choose another path")
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise TbensError(f"{option} {shown}: cannot be checked ({exc.strerror})") from None
    if existing is not None:
        if folder and not stat.S_ISDIR(existing.st_mode):
            raise TbensError(f"{option} {shown}: exists and is not a folder")
        if not folder and not stat.S_ISREG(existing.st_mode):
            raise TbensError(f"{option} {shown}: is {_kind_of(existing.st_mode)}, not a regular file to write")
        if not folder:
            for item in inputs:
                with contextlib.suppress(OSError):
                    if os.path.samestat(existing, os.stat(item)):
                        raise TbensError(f"{option} {shown}: is the input image {item}; it would be overwritten")
    _check_writable(target if folder else target.parent, option, shown)
    return target
