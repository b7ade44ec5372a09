"""Each validation error on its own, all of them in one line together, and the check-data summary."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tbensemble.core.errors import DataError
from tbensemble.data.validate import summarise_dataset, validate_training_set
from tests.data.test_decode import write_dicom


def png(path, value: int = 0, size=(16, 16), dtype=np.uint8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, dtype)).save(path)


def dataset(root, rows: str | None, files=("train1.png", "train2.png", "train3.png", "train4.png")):
    (root / "train").mkdir(parents=True, exist_ok=True)
    for name in files:
        png(root / "train" / name)
    if rows is not None:
        (root / "train_labels.csv").write_text("image_id,label\n" + rows)
    return root


GOOD_ROWS = "train1,0\ntrain2,1\ntrain3,0\ntrain4,1\n"


def problem_text(data_dir, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        validate_training_set(data_dir, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{data_dir}: ")
    return text


def test_good_dataset_returns_frame(tmp_path):
    frame = validate_training_set(dataset(tmp_path, GOOD_ROWS))
    assert list(frame["label"]) == [0, 1, 0, 1]


def test_missing_labels_file(tmp_path):
    text = problem_text(dataset(tmp_path, None))
    assert f"{tmp_path / 'train_labels.csv'}: labels file not found" in text


def test_missing_train_folder(tmp_path):
    (tmp_path / "train_labels.csv").write_text("image_id,label\na,0\n")
    assert f"{tmp_path / 'train'}: training image folder not found" in problem_text(tmp_path)


def test_missing_columns_named(tmp_path):
    dataset(tmp_path, None)
    (tmp_path / "train_labels.csv").write_text("image_id,y\ntrain1,0\n")
    assert "train_labels.csv: missing column(s) label (found: image_id, y)" in problem_text(tmp_path)


def test_label_outside_0_1_names_row(tmp_path):
    text = problem_text(dataset(tmp_path, "train1,0\ntrain2,2\ntrain3,0\ntrain4,1\n"))
    assert "train_labels.csv row 3: label is not 0 or 1 ('2')" in text
    assert text.startswith(f"{tmp_path}: 1 problem: ")


def test_non_numeric_label_names_row(tmp_path):
    text = problem_text(dataset(tmp_path, "train1,yes\ntrain2,1\ntrain3,0\ntrain4,1\n"))
    assert "train_labels.csv row 2: label is not a number ('yes')" in text


def test_empty_label_names_row(tmp_path):
    assert "train_labels.csv row 4: empty label" in problem_text(dataset(tmp_path, "train1,0\ntrain2,1\ntrain3,\n"))


def test_many_bad_rows_are_shortened(tmp_path):
    rows = "".join(f"train{i},{i + 5}\n" for i in range(1, 5)) + "".join(f"x{i},7\n" for i in range(6))
    text = problem_text(dataset(tmp_path, rows))
    assert "rows 2, 3, 4 and 7 more: label is not 0 or 1 ('6', '7', '8', ...)" in text


def test_duplicate_ids_name_rows(tmp_path):
    text = problem_text(dataset(tmp_path, GOOD_ROWS + "train2.png,1\n"))
    assert "train_labels.csv rows 3, 6: duplicate image_id 'train2', 'train2.png'" in text


def test_id_with_no_file(tmp_path):
    text = problem_text(dataset(tmp_path, GOOD_ROWS + "train9,1\n"))
    assert f"train_labels.csv row 6: no file in {tmp_path / 'train'} ('train9')" in text


def test_id_matching_two_files_is_ambiguous(tmp_path):
    dataset(tmp_path, GOOD_ROWS + "scan,1\n", files=("train1.png", "train2.png", "train3.png", "train4.png"))
    png(tmp_path / "train" / "scan.png")
    png(tmp_path / "train" / "scan.jpg")
    assert "row 6: image_id matches several files" in problem_text(tmp_path)


def test_empty_train_folder(tmp_path):
    text = problem_text(dataset(tmp_path, GOOD_ROWS, files=()))
    assert f"{tmp_path / 'train'}: no images" in text


def test_empty_class_folder(tmp_path):
    png(tmp_path / "Normal" / "a.png")
    (tmp_path / "Tuberculosis").mkdir()
    assert f"{tmp_path / 'Tuberculosis'}: no images" in problem_text(tmp_path)


def test_missing_class_folder(tmp_path):
    png(tmp_path / "Normal" / "a.png")
    assert "no Tuberculosis/ folder" in problem_text(tmp_path)


def test_same_file_name_in_both_class_folders(tmp_path):
    png(tmp_path / "Normal" / "a.png")
    png(tmp_path / "Tuberculosis" / "a.png")
    assert "file names in both Normal/ and Tuberculosis/: a.png" in problem_text(tmp_path)


def test_only_one_class(tmp_path):
    text = problem_text(dataset(tmp_path, "train1,1\ntrain2,1\n"))
    assert "only one class (label 1 (tuberculosis): 2); training needs labels 0 and 1" in text


def test_empty_group_names_row(tmp_path):
    dataset(tmp_path, None)
    (tmp_path / "train_labels.csv").write_text("image_id,label,patient_id\ntrain1,0,p1\ntrain2,1,\n")
    assert "train_labels.csv row 3: empty patient_id" in problem_text(tmp_path)


def test_unreadable_images_count_and_first_three(tmp_path):
    rows = "".join(f"train{i},{i % 2}\n" for i in range(1, 9))
    dataset(tmp_path, rows, files=[f"train{i}.png" for i in range(1, 9)])
    for i in range(1, 6):
        (tmp_path / "train" / f"train{i}.png").write_bytes(b"not a png")
    text = problem_text(tmp_path)
    assert "5 of 8 training images cannot be decoded: " in text
    for i in (1, 2, 3):
        assert f"{tmp_path / 'train' / f'train{i}.png'}: cannot decode (" in text
    assert "train4.png" not in text and text.endswith(", ...")
    validate_training_set(tmp_path, check_decode=False)  # decoding is optional


def test_every_problem_in_one_error(tmp_path):
    dataset(tmp_path, "train1,0\ntrain2,5\ntrain2,0\nnope,1\ntrain3,1\n")
    (tmp_path / "train" / "train1.png").write_bytes(b"broken")
    text = problem_text(tmp_path)
    assert text.startswith(f"{tmp_path}: 4 problems: ")
    for part in ("row 3: label is not 0 or 1", "rows 3, 4: duplicate image_id", "row 5: no file", "cannot be decoded"):
        assert part in text


def test_summary_counts_sizes_modes_and_groups(tmp_path):
    dataset(tmp_path, None, files=())
    (tmp_path / "train_labels.csv").write_text(
        "image_id,label,group\ntrain1,0,a\ntrain2,1,a\ntrain3,0,b\nscan.dcm,1,c\n"
    )
    png(tmp_path / "train" / "train1.png", size=(20, 10))
    png(tmp_path / "train" / "train2.png", size=(30, 16))
    png(tmp_path / "train" / "train3.png", size=(40, 12), dtype=np.uint16)
    write_dicom(tmp_path / "train" / "scan.dcm", np.zeros((8, 24), np.uint16), photometric="MONOCHROME1")
    png(tmp_path / "test" / "test1.png")
    (tmp_path / "sample_submission.csv").write_text("image_id,label\ntest1.png,0.5\ntest2.png,0.5\n")
    summary = summarise_dataset(tmp_path)
    assert summary["layout"] == "competition"
    assert summary["train_images"] == 4 and summary["classes"] == {0: 2, 1: 2}
    assert summary["groups"] == 3 and summary["test_images"] == 1
    assert summary["width"] == [16, 24, 40] and summary["height"] == [8, 12, 16]  # train + test
    assert summary["modes"] == {"PNG 8-bit gray": 3, "PNG 16-bit gray": 1, "DICOM MONOCHROME1 12-bit": 1}
    assert summary["problems"] == [f"{tmp_path / 'sample_submission.csv'}: 1 id with no file in test/: test2.png"]


def test_summary_reports_unreadable_headers_and_decode_failures(tmp_path):
    dataset(tmp_path, GOOD_ROWS)
    (tmp_path / "train" / "train2.png").write_bytes(b"junk")
    summary = summarise_dataset(tmp_path)
    assert summary["problems"] == [
        f"1 of 4 images have no readable header: {tmp_path / 'train' / 'train2.png'} (cannot identify image file "
        f"'{tmp_path / 'train' / 'train2.png'}')"
    ]
    png_bytes = (tmp_path / "train" / "train3.png").read_bytes()
    (tmp_path / "train" / "train3.png").write_bytes(png_bytes[:-30])  # header intact, pixels truncated
    assert len(summarise_dataset(tmp_path)["problems"]) == 1
    decoded = summarise_dataset(tmp_path, check_decode=True)["problems"]
    assert len(decoded) == 1 and decoded[0].startswith("2 of 4 images cannot be decoded")


def test_transfer_syntax_no_decoder_here_stops_training_before_it_starts(tmp_path):
    from pydicom.encaps import encapsulate

    from tests.data.dicom_files import cr_dataset

    dataset(tmp_path, GOOD_ROWS.replace("train4,1", "scan,1"), files=("train1.png", "train2.png", "train3.png"))
    ds = cr_dataset(np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: pydicom has no decoder
    ds.PixelData = encapsulate([b"\0\0\1\xb3 not really MPEG"])
    ds.save_as(tmp_path / "train" / "scan.dcm")
    text = problem_text(tmp_path)
    assert "1 training images in MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)" in text
    assert "which this install cannot decode (pydicom has no decoder for it)" in text
    assert "cannot be decoded:" not in text  # named once, by its syntax, not again by the decode pass
    summary = summarise_dataset(tmp_path)
    assert summary["undecodable_syntaxes"] == ["MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)"]
    assert summary["transfer_syntaxes"] == {"MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)": 1}


def test_images_above_the_limits_are_problems_from_their_headers(tmp_path):
    dataset(tmp_path, GOOD_ROWS)
    Image.new("L", (1, 5000)).save(tmp_path / "train" / "train2.png")
    text = problem_text(tmp_path)
    assert "1 of 4 training images refused before decoding: " in text
    assert "train2.png (declares 1×5000 pixels, an aspect ratio above 10:1)" in text
