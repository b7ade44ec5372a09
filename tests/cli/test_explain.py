"""``tbens explain`` on the hand-made ONNX ensemble: 16-bit PNG, DICOM and JPEG in, overlay PNGs out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from click.testing import CliRunner
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from tbensemble.cli import cli
from tests.engine.test_cam import blob_image, write_tiny_run


def _png16(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image.astype(np.uint16) * 257).save(path)
    return path


def _dicom(path: Path, image: np.ndarray) -> Path:
    """A MONOCHROME2, 12-bit-in-16 DICOM whose pixels are the uint8 image scaled by 16."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (image.astype(np.uint16) * 16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_explain_on_16bit_png_dicom_and_jpeg(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run", calibration={"method": "isotonic", "x": [0.0, 1.0], "y": [0.1, 0.9]})
    big = np.asarray(Image.fromarray(blob_image(10, 22)).resize((96, 64), Image.Resampling.NEAREST))
    inputs = [
        _png16(tmp_path / "lesion16.png", big),
        _dicom(tmp_path / "scan.dcm", blob_image(22, 9)),
        tmp_path / "photo.jpg",
    ]
    Image.fromarray(blob_image(16, 16)).save(inputs[2], quality=95)
    out = tmp_path / "explain"
    result = CliRunner().invoke(
        cli, ["explain", "--artifacts", str(run), *map(str, inputs), "--out", str(out), "--device", "cpu"], obj={}
    )
    assert result.exit_code == 0, result.output
    for path in inputs:
        overlay = out / f"{path.name}.cam.png"
        assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Image.open(overlay).size[0] > 100
    table = pd.read_csv(out / "explain.csv")
    assert set(table["decision"]) <= {"TB", "normal", "refer"} and len(table) == 3
    scan = table.set_index(table["image"].map(lambda p: Path(p).name)).loc["scan.dcm"]
    assert scan["decision"] == "refer" and "dicom_modality=OT" in scan["reasons"], "an OT DICOM is no radiograph"
    assert table["probability"].between(0.1, 0.9).all() and table["score"].between(0, 1).all()
    assert "p(TB)" in result.output


def test_explain_heatmap_follows_the_image_geometry(tmp_path: Path) -> None:
    """The 16-bit PNG is 96×64 with its blob upper right: the upsampled heatmap must peak there too."""
    from tbensemble.data.decode import decode_gray, load_image
    from tbensemble.engine.cam import ensemble_heatmaps, resize_maps
    from tbensemble.engine.ensemble import Ensemble

    big = np.asarray(Image.fromarray(blob_image(10, 22)).resize((96, 64), Image.Resampling.NEAREST))
    path = _png16(tmp_path / "wide.png", big)
    ensemble = Ensemble.load(write_tiny_run(tmp_path / "run"), device="cpu")
    gray = decode_gray(path)
    heat = resize_maps(ensemble_heatmaps(ensemble, load_image(path, 32)[None]), *gray.shape)[0]
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert heat.shape == (64, 96)
    assert abs(row - 10 * 2) <= 4 and abs(col - 22 * 3) <= 6


def test_explain_names_an_undecodable_image_and_still_writes_the_others(tmp_path: Path) -> None:
    run = write_tiny_run(tmp_path / "run", n_models=1)
    good = tmp_path / "good.png"
    Image.fromarray(blob_image(8, 8)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    out = tmp_path / "explain"
    result = CliRunner().invoke(
        cli, ["explain", "--artifacts", str(run), str(good), str(broken), "--out", str(out), "--device", "cpu"], obj={}
    )
    assert result.exit_code == 2
    assert "1 of 2 image(s) could not be decoded" in result.output and "broken.png" in result.output
    assert (out / "good.png.cam.png").is_file() and not (out / "broken.png.cam.png").exists()
