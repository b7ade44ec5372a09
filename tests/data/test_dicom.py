"""DICOM as a PACS sends it: every transfer syntax, first frame only, Presentation LUT, bombs refused."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from tbensemble.core.errors import DataError
from tbensemble.data import dicom
from tbensemble.data.decode import decode_gray, load_image, read_header
from tests.data.dicom_files import LOSSY, SYNTAXES, cr_dataset, transcode, write_deflated_bomb, write_dicom


def smooth_12bit(rows: int = 96, columns: int = 120) -> np.ndarray:
    """A smooth 12-bit image, so lossy codecs stay within a few grey levels of it."""
    y, x = np.mgrid[0:rows, 0:columns]
    return ((np.sin(x / 9) + np.cos(y / 13) + 2) * 1000).astype(np.uint16)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("dicom") / "plain.dcm"
    write_dicom(path, smooth_12bit())
    return path


@pytest.mark.parametrize("name", list(SYNTAXES))
def test_every_pacs_transfer_syntax_decodes_like_uncompressed(plain, tmp_path, name):
    """The table row: JPEG Lossless (process 14, SV1) and JPEG-LS failed with 'all plugins are missing'."""
    path = transcode(plain, tmp_path / f"{name}.dcm", name)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == SYNTAXES[name]
    assert dicom.can_decode(SYNTAXES[name])
    difference = np.abs(decode_gray(path).astype(int) - decode_gray(plain).astype(int)).max()
    assert difference <= (2 if name in LOSSY else 0), difference
    assert read_header(path).transfer_syntax == SYNTAXES[name]
    if name.startswith("jpeg-lossless"):  # a real lossless JPEG stream: Start Of Frame 3
        ds = pydicom.dcmread(path)
        assert b"\xff\xc3" in next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))


def test_multiframe_decodes_the_first_frame_only(tmp_path):
    """A corrupt second frame is never touched: decoding all frames and slicing would fail here."""
    frames = np.stack([smooth_12bit(32, 32), smooth_12bit(32, 32)])
    write_dicom(tmp_path / "two.dcm", frames)
    ls = transcode(tmp_path / "two.dcm", tmp_path / "two-ls.dcm", "jpeg-ls-lossless")
    ds = pydicom.dcmread(ls)
    first = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=2))
    ds.PixelData = encapsulate([first, b"\xff\xd8 not a JPEG-LS frame"])
    ds.save_as(tmp_path / "broken-second.dcm")
    with pytest.raises(Exception, match=r"."):
        pydicom.pixels.pixel_array(tmp_path / "broken-second.dcm")  # all frames: fails on the second
    np.testing.assert_array_equal(decode_gray(tmp_path / "broken-second.dcm"), decode_gray(tmp_path / "two.dcm"))
    assert read_header(tmp_path / "two.dcm").frames == 2


@pytest.mark.parametrize(
    ("photometric", "shape", "inverted"),
    [
        ("MONOCHROME2", None, False),
        ("MONOCHROME2", "IDENTITY", False),
        ("MONOCHROME2", "INVERSE", True),
        ("MONOCHROME1", None, True),
        ("MONOCHROME1", "INVERSE", True),  # the DX pairing: one inversion, not two
    ],
)
def test_presentation_lut_shape_inverse_is_honoured(tmp_path, photometric, shape, inverted):
    pixels = np.array([[0, 1000, 4000]], dtype=np.uint16)
    attrs = {} if shape is None else {"PresentationLUTShape": shape}
    write_dicom(tmp_path / "a.dcm", pixels, photometric=photometric, **attrs)
    expected = np.array([[0, 64, 255]])
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.dcm"), 255 - expected if inverted else expected)


def test_deflated_30000_square_bomb_is_refused_from_its_header(tmp_path):
    """The table row: 0.9 MB on disk declaring 30000×30000 was inflated (2.8 GB resident) and scored."""
    bomb = write_deflated_bomb(tmp_path / "bomb.dcm")
    assert bomb.stat().st_size < 1_000_000
    header = read_header(bomb)
    assert (header.width, header.height) == (30000, 30000)
    for decode in (decode_gray, lambda p: load_image(p, 32)):
        with pytest.raises(DataError, match=r"bomb\.dcm: refused \(declares 30000×30000 = 900\.0 megapixels"):
            decode(bomb)


def test_deflated_data_larger_than_declared_are_refused(tmp_path):
    """A small declared image whose deflated data inflate far beyond it: never inflated in full."""
    small = cr_dataset(np.zeros((64, 64), np.uint8), bits=8)
    small.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    small.PixelData = bytes(64 * 64) + bytes(20 * 2**20)  # 20 MiB more than the header declares
    small.save_as(tmp_path / "liar.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"liar\.dcm: cannot decode \(deflated data inflate beyond"):
        decode_gray(tmp_path / "liar.dcm")


def test_multiframe_limit_counts_every_frame(tmp_path):
    ds = cr_dataset(np.zeros((1, 1), np.uint16))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4000, 4000, 8  # 128 MP in all; no pixel data is read
    ds.save_as(tmp_path / "cine.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"declares 4000×4000×8 frames = 128\.0 megapixels"):
        decode_gray(tmp_path / "cine.dcm")


def test_unknown_transfer_syntax_is_named(tmp_path):
    ds = cr_dataset(np.zeros((4, 4), np.uint16))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no decoder for a radiograph
    ds.PixelData = encapsulate([b"\0\0\1\xb3 not really MPEG"])
    ds.save_as(tmp_path / "video.dcm")
    assert not dicom.can_decode("1.2.840.10008.1.2.4.100")
    assert "no decoder" in dicom.missing_decoder("1.2.840.10008.1.2.4.100")
    with pytest.raises(DataError, match=r"video\.dcm: cannot decode"):
        decode_gray(tmp_path / "video.dcm")


@pytest.mark.parametrize("name", ["jpeg-ls-lossless", "jpeg2000-lossless", "jpeg-lossless-sv1", "jpeg2000"])
def test_codestream_larger_than_the_header_is_refused_before_the_codec(tmp_path, name):
    """A 2 kB JPEG-LS frame of 12000×12000 under a 16×16 header took 600 MB, then was cropped and scored."""
    write_dicom(tmp_path / "big.dcm", np.zeros((200, 240), np.uint16))
    ds = pydicom.dcmread(transcode(tmp_path / "big.dcm", tmp_path / "c.dcm", name))
    ds.Rows, ds.Columns = 16, 16
    ds.save_as(tmp_path / "liar.dcm")
    with pytest.raises(
        DataError, match=r"liar\.dcm: cannot decode \(the codestream declares 240×200 pixels, the header 16×16\)"
    ):
        decode_gray(tmp_path / "liar.dcm")


@pytest.mark.parametrize("implicit", [True, False])
def test_bare_data_set_without_file_meta_decodes(tmp_path, implicit):
    ds = cr_dataset(np.array([[0, 1000, 4000]], np.uint16))
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "bare.dcm", implicit_vr=implicit, little_endian=True)
    assert read_header(tmp_path / "bare.dcm").transfer_syntax is None
    np.testing.assert_array_equal(decode_gray(tmp_path / "bare.dcm"), [[0, 64, 255]])
