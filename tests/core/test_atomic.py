"""Atomic writes leave either the old file or the new one, never half of either."""

from pathlib import Path

import pandas as pd
import pytest

from tbensemble.core import atomic


def test_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.csv"
    atomic.write_csv(target, pd.DataFrame({"image_id": ["a.png"], "label": [0.5]}))
    atomic.write_text(tmp_path / "x.txt", "one")
    atomic.write_text(tmp_path / "x.txt", "two")
    assert (tmp_path / "x.txt").read_text() == "two"
    assert target.read_text().splitlines() == ["image_id,label", "a.png,0.5"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")) == []


def test_crash_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    atomic.write_text(tmp_path / "a.csv", "x")
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def test_existing_output_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "submission.csv"
    target.write_text("old")
    target.chmod(0o600)
    atomic.write_text(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o600


def test_symlinked_output_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_while_writing_leaves_no_temp_file(tmp_path: Path, signame: str) -> None:
    """A process killed mid-write ends by that signal (143 / 130 in a shell) and leaves only the old file."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "submission.csv"
    target.write_text("old\n")
    script = (
        "import sys, time\n"
        "from tbensemble.core import atomic\n"
        f"with atomic.atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    assert len(list(tmp_path.glob(".submission.csv.*.tmp"))) == 1
    child.send_signal(getattr(signal, signame))
    child.wait(timeout=20)
    assert child.returncode == -getattr(signal, signame), child.stderr.read()
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]
    assert target.read_text() == "old\n"


def test_staging_folder_is_removed(tmp_path: Path) -> None:
    with atomic.temporary_folder(tmp_path, ".staging-") as folder:
        (folder / "model.onnx").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_would_destroy_are_refused(tmp_path: Path) -> None:
    import os

    from tbensemble.core.errors import EXIT_USAGE, TbensError

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "manifest.json").write_text("{}")
    image = tmp_path / "img.png"
    image.write_bytes(b"png")
    (tmp_path / "hard.png").hardlink_to(image)
    (tmp_path / "soft.csv").symlink_to(artifacts / "manifest.json")
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    cases = [
        (artifacts / "manifest.json", "is inside the artifacts folder"),
        (artifacts / "new.csv", "is inside the artifacts folder"),
        (tmp_path / "soft.csv", "is inside the artifacts folder"),
        (image, "is the input image"),
        (tmp_path / "hard.png", "is the input image"),
        (tmp_path, "is a folder, not a regular file"),
        (fifo, "is a FIFO, not a regular file"),
        (Path("/dev/null"), "is a character device"),
        (Path("/proc/tbens-out.csv"), "cannot write in /proc"),
    ]
    for path, message in cases:
        with pytest.raises(TbensError) as info:
            atomic.check_output_path(path, inputs=[image], protected_dir=artifacts)
        assert message in str(info.value) and str(path) in str(info.value), str(info.value)
        assert info.value.exit_code == EXIT_USAGE and "\n" not in str(info.value)
    with pytest.raises(TbensError, match="exists and is not a folder"):
        atomic.check_output_path(image, folder=True)
    with pytest.raises(TbensError, match="is inside the artifacts folder"):
        atomic.check_output_path(artifacts, protected_dir=artifacts, folder=True)
    assert atomic.check_output_path(tmp_path / "new" / "out.csv", inputs=[image], protected_dir=artifacts)
    assert [p.name for p in (tmp_path / "new").iterdir()] == [], "the write check leaves nothing behind"
