import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tbensemble.core.errors import DataError
from tbensemble.engine import predict
from tbensemble.engine.ensemble import Ensemble
from tests.export.tinyrun import write_images


def write_dicom(path, pixels):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.preamble = meta, b"\0" * 128
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_mixed_formats(folder):
    """Grayscale, RGBA, 16-bit PNG, JPEG and DICOM: what an edge server may be handed."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (40, 40), dtype=np.uint16)).save(folder / "deep16.png")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(folder / "photo.jpg")
    write_dicom(folder / "scan.dcm", rng.integers(0, 4096, (40, 40)))
    return ["deep16.png", "gray.png", "photo.jpg", "rgba.png", "scan.dcm"]


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ensemble(tiny_export):
    return Ensemble.load(tiny_export, device="cpu")


def test_mixed_formats_all_scored_and_written(ensemble, tmp_path):
    names = write_mixed_formats(tmp_path / "test")
    images = predict.collect_images([tmp_path / "test"])
    prediction = predict.predict_images(ensemble, images, batch_size=2, progress=False)
    assert sorted(prediction.image_ids) == names
    labels = ensemble.batch_ensemble(prediction.scores)
    out = predict.write_submission(prediction, labels, tmp_path / "sub.csv")
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image_id", "label"] and sorted(frame["image_id"]) == names
    assert frame["label"].between(0, 1).all()


def test_scores_do_not_depend_on_batching(ensemble, tmp_path):
    write_images(tmp_path / "test", 11, seed=7)
    images = predict.collect_images([tmp_path / "test"])
    one = predict.predict_images(ensemble, images, batch_size=1, progress=False)
    many = predict.predict_images(ensemble, images, batch_size=4, progress=False)
    assert one.image_ids == many.image_ids == images["image_id"].tolist()
    for name in one.scores:
        np.testing.assert_allclose(one.scores[name], many.scores[name], rtol=1e-5)


def test_decoding_runs_ahead_but_memory_stays_bounded(monkeypatch):
    """At most (ahead + 1) batches are decoded and not yet consumed, whatever the number of images."""
    lock, state = threading.Lock(), {"decoded": 0, "consumed": 0, "peak": 0}

    def fake_load(path, size):
        with lock:
            state["decoded"] += 1
            state["peak"] = max(state["peak"], state["decoded"] - state["consumed"])
        return np.zeros((size, size), dtype=np.uint8)

    monkeypatch.setattr(predict, "load_image", fake_load)
    paths = [f"p{i}.png" for i in range(100)]
    seen = 0
    for batch in predict.decoded_batches(paths, 8, batch_size=4, workers=2, ahead=2):
        seen += len(batch)
        with lock:
            state["consumed"] += len(batch)
    assert seen == 100
    assert 4 < state["peak"] <= 3 * 4


def test_bad_image_named_with_count_and_skip_bad_writes_the_rest(ensemble, tmp_path):
    folder = tmp_path / "test"
    write_images(folder, 6, seed=9)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.dcm").write_bytes(b"")
    images = predict.collect_images([folder])
    with pytest.raises(DataError, match=r"broken.png: cannot decode .*; 2 of 8 images cannot be decoded") as info:
        predict.predict_images(ensemble, images, progress=False)
    assert "\n" not in str(info.value)
    prediction = predict.predict_images(ensemble, images, skip_bad=True, progress=False)
    assert len(prediction.image_ids) == 6
    out = tmp_path / "sub.csv"
    predict.write_submission(prediction, ensemble.batch_ensemble(prediction.scores), out)
    assert len(pd.read_csv(out)) == 6
    skipped = pd.read_csv(tmp_path / "sub.skipped.csv")
    assert sorted(skipped["image_id"]) == ["broken.png", "empty.dcm"]
    assert skipped["reason"].str.contains("cannot decode").all()


def test_empty_folder_is_one_line_error(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"test: no images found"):
        predict.collect_images([tmp_path / "test"])


def test_sample_submission_order_and_columns(ensemble, tmp_path):
    folder = tmp_path / "test"
    paths = write_images(folder, 5, seed=11)
    names = [p.name for p in paths]
    sample = tmp_path / "sample_submission.csv"
    pd.DataFrame({"ID": names[::-1], "TB": 0.5}).to_csv(sample, index=False)
    assert predict.find_sample_submission([folder]) == sample.resolve()
    prediction = predict.predict_images(ensemble, predict.collect_images([folder]), progress=False)
    labels = ensemble.batch_ensemble(prediction.scores)
    predict.write_submission(prediction, labels, tmp_path / "sub.csv", sample)
    frame = pd.read_csv(tmp_path / "sub.csv")
    assert list(frame.columns) == ["ID", "TB"] and frame["ID"].tolist() == names[::-1]
    by_id = dict(zip(prediction.image_ids, labels, strict=True))
    assert frame["TB"].tolist() == pytest.approx([by_id[n] for n in names[::-1]])
    pd.DataFrame({"ID": [*names[1:], "other.png"], "TB": 0.5}).to_csv(sample, index=False)
    with pytest.raises(
        DataError,
        match=r"ids differ from the images: 1 in the sample but not among the images \(e.g. other.png\), 1 images not in the sample",
    ):
        predict.write_submission(prediction, labels, tmp_path / "sub2.csv", sample)
    assert not (tmp_path / "sub2.csv").exists()
