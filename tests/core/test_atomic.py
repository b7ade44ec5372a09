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
