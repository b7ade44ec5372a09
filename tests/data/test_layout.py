"""Both dataset layouts, id resolution with and without extension, natural order, sample submissions."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

from tbensemble.core.errors import DataError
from tbensemble.data.layout import (
    find_test_dir,
    list_images,
    load_training_set,
    natural_key,
    read_sample_submission,
    submission_ids,
)


def png(path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def competition(root, rows: str, files=("train1.png", "train2.png", "train3.png")) -> None:
    for name in files:
        png(root / "train" / name)
    (root / "train_labels.csv").write_text(rows)


def test_competition_ids_with_and_without_extension(tmp_path):
    competition(tmp_path, "image_id,label\ntrain1,0\ntrain2.png,1\ntrain3,1\n")
    frame = load_training_set(tmp_path)
    assert list(frame.columns) == ["image_id", "path", "label"]
    assert list(frame["image_id"]) == ["train1", "train2.png", "train3"]  # as written in the csv
    assert list(frame["path"]) == [str(tmp_path / "train" / f"train{i}.png") for i in (1, 2, 3)]
    assert list(frame["label"]) == [0, 1, 1] and frame["label"].dtype.kind == "i"


def test_competition_group_column(tmp_path):
    competition(tmp_path, "image_id,label,patient_id\ntrain1,0,p1\ntrain2,1,p1\ntrain3,1,p2\n")
    frame = load_training_set(tmp_path)
    assert list(frame["group"]) == ["p1", "p1", "p2"]


def test_competition_without_group_has_no_group_column(tmp_path):
    competition(tmp_path, "image_id,label\ntrain1,0\n", files=("train1.png",))
    assert "group" not in load_training_set(tmp_path).columns


def test_competition_ids_keep_leading_zeros_and_blank_lines(tmp_path):
    competition(tmp_path, "image_id,label\n007,1\n\n010,0\n", files=("007.png", "010.png"))
    frame = load_training_set(tmp_path)
    assert list(frame["image_id"]) == ["007", "010"]


def test_folder_layout_any_case(tmp_path):
    png(tmp_path / "normal" / "n10.png")
    png(tmp_path / "normal" / "n2.png")
    png(tmp_path / "TUBERCULOSIS" / "t1.jpg")
    frame = load_training_set(tmp_path)
    assert list(frame["image_id"]) == ["n2.png", "n10.png", "t1.jpg"]
    assert list(frame["label"]) == [0, 0, 1]
    assert "group" not in frame.columns


def test_neither_layout_names_dir_and_expectation(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match=r"no dataset found; expected train/ \+ train_labels.csv") as info:
        load_training_set(tmp_path)
    assert str(info.value).startswith(str(tmp_path))
    with pytest.raises(DataError, match="data folder not found"):
        load_training_set(tmp_path / "nope")


def test_list_images_natural_order_and_ignored_files(tmp_path, caplog):
    for name in ("test10.png", "test2.png", "Test1.PNG", "scan.dcm", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    with caplog.at_level(logging.INFO, logger="tbensemble.data.layout"):
        frame = list_images(tmp_path)
    assert list(frame["image_id"]) == ["scan.dcm", "Test1.PNG", "test2.png", "test10.png"]
    assert frame["path"].iloc[0] == str(tmp_path / "scan.dcm")
    assert "readme.txt" in caplog.text


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        list_images(tmp_path / "nope")


def test_natural_key_orders_numbers_numerically():
    names = ["img10", "img2", "img1", "a", "img2b"]
    assert sorted(names, key=natural_key) == ["a", "img1", "img2", "img2b", "img10"]


def test_find_test_dir(tmp_path):
    with pytest.raises(DataError, match="no test/ folder"):
        find_test_dir(tmp_path)
    (tmp_path / "Test").mkdir()
    assert find_test_dir(tmp_path) == tmp_path / "Test"


def test_read_sample_submission_keeps_names_and_order(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("ID,score\ntest2.png,0\ntest1.png,0\n")
    table = read_sample_submission(path)
    assert list(table.columns) == ["ID", "score"]
    assert list(table["ID"]) == ["test2.png", "test1.png"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "sample submission not found"),
        ("id\na\n", "needs an id column and a score column"),
        ("id,label\na,0\na,0\n", "duplicate id: a"),
    ],
)
def test_read_sample_submission_errors(tmp_path, content, message):
    path = tmp_path / "s.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_sample_submission(path)
    assert str(info.value).startswith(str(path))


def test_symlink_loop_and_dangling_link_named_like_images_are_listed(tmp_path, caplog):
    """Listed so decoding names them as bad files; before, the loop raised ELOOP out of os.scandir."""
    png(tmp_path / "a.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "gone.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (tmp_path / "loop").symlink_to("loop")
    os.mkfifo(tmp_path / "pipe.png")  # never listed: opening a FIFO would block the decoder forever
    (tmp_path / "sub.png").mkdir()
    with caplog.at_level(logging.INFO):
        assert list_images(tmp_path)["image_id"].tolist() == ["a.png", "gone.dcm", "loop.png"]
    assert "loop" in caplog.text  # the suffix-less loop is ignored, with a word


def test_submission_ids_by_name_or_stem_and_clashes_named():
    assert submission_ids(["a.png", "b"], ["a.png", "b.png"]) == {"a.png": "a.png", "b.png": "b.png"}
    assert submission_ids(["a", "b"], ["a.png", "b.dcm"]) == {"a.png": "a", "b.dcm": "b"}
    with pytest.raises(DataError, match=r"several files give the same id: test1\.jpg and test1\.png -> test1$"):
        submission_ids(["test1", "test2"], ["test1.png", "test2.png", "test1.jpg"])
