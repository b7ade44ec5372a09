"""The pieces of train-folds --ray that need no cluster: the driver's fold commit, the board's ETA, and how
an error raised on a worker comes back."""

from __future__ import annotations

import math

import pytest

from tbensemble.core.errors import ArtifactError, DataError, TbensError
from tbensemble.distributed.board import RunBoard
from tbensemble.distributed.cluster import tbens_cause
from tbensemble.distributed.folds import commit_fold


def test_commit_writes_every_file_with_done_json_last(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "tinycnn" / "fold0"
    written = []
    from tbensemble.core import atomic

    real_write = atomic.write_bytes
    monkeypatch.setattr(atomic, "write_bytes", lambda path, data: (written.append(path.name), real_write(path, data)))
    commit_fold(folder, {"done.json": b"{}", "model.keras": b"m", "history.csv": b"h", "sub/extra.txt": b"x"})
    assert written[-1] == "done.json" and sorted(written) == ["done.json", "extra.txt", "history.csv", "model.keras"]
    assert (folder / "model.keras").read_bytes() == b"m" and (folder / "sub" / "extra.txt").read_bytes() == b"x"
    assert not list(folder.rglob("*.tmp"))


def test_commit_refuses_files_outside_the_fold_folder_and_a_fold_without_done_json(tmp_path):
    folder = tmp_path / "fold0"
    with pytest.raises(ArtifactError, match=r"outside the fold folder \(\.\./escape\)"):
        commit_fold(folder, {"done.json": b"{}", "../escape": b"x"})
    with pytest.raises(TbensError, match=r"no done\.json"):
        commit_fold(folder, {"model.keras": b"m"})
    assert not (tmp_path / "escape").exists() and not (folder / "model.keras").exists()


def test_board_eta_covers_the_whole_run_and_counts_attempts(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("tbensemble.distributed.board.time.monotonic", lambda: now[0])
    board = RunBoard(n_jobs=4)
    board.started("a/fold0", pid=1, node="n")
    board.started("b/fold0", pid=2, node="n")
    now[0] = 10.0
    elapsed, eta = board.progress("a/fold0", 0.5)  # 0.5 of 4 jobs done
    assert elapsed == 10.0 and eta == pytest.approx(10.0 * (1 - 0.125) / 0.125)
    board.started("a/fold0", pid=3, node="n")  # its worker died: restarted, progress back to 0
    assert board.attempts("a/fold0") == 2 and board.attempts("b/fold0") == 1
    assert board.running()["a/fold0"] == {"pid": 3, "node": "n", "attempt": 2, "fraction": 0.0}
    board.finished("b/fold0")
    now[0] = 20.0
    elapsed, eta = board.progress("a/fold0", 0.0)  # 1 of 4 jobs done
    assert elapsed == 20.0 and eta == pytest.approx(60.0)
    assert math.isnan(RunBoard(1).progress("x", 0.0)[1])


class _Wrapped(Exception):
    def __init__(self, cause):
        super().__init__("wrapped")
        self.cause = cause


def test_worker_errors_come_back_as_the_same_tbens_error():
    original = DataError("img.png: cannot decode")
    assert tbens_cause(_Wrapped(_Wrapped(original))) is original
    text = RuntimeError(
        "The actor died because of an error raised in its creation task\n  raise ArtifactError(\n"
        "tbensemble.core.errors.ArtifactError: onnx/m.onnx: sha256 1 does not match the manifest's 2"
    )
    rebuilt = tbens_cause(text)
    assert (
        isinstance(rebuilt, ArtifactError) and str(rebuilt) == "onnx/m.onnx: sha256 1 does not match the manifest's 2"
    )
    assert tbens_cause(RuntimeError("a bug")) is None
