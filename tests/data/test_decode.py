"""Every input kind the one decoder accepts, built in tmp_path at test time."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless

from tbensemble.core.errors import DataError
from tbensemble.data import decode
from tbensemble.data.decode import IMAGE_SUFFIXES, decode_gray, is_image_file, load_image
from tests.data.dicom_files import write_dicom

RAMP = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))  # 16×32, every column a different value


def test_png_8bit_gray_is_exact(tmp_path):
    Image.fromarray(RAMP).save(tmp_path / "a.png")
    out = decode_gray(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, RAMP)


def test_png_16bit_scaled_by_bit_depth(tmp_path):
    pixels = np.array([[0, 257 * 100, 65535, 257 * 200]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I;16")
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.png"), [[0, 100, 255, 200]])


def test_png_rgb_uses_luma(tmp_path):
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[1, 1] = (90, 90, 90)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = decode_gray(tmp_path / "a.png")
    assert out.shape == (2, 2)
    assert out[0, 0] == 76  # 0.299 · 255
    assert out[1, 1] == 90


def test_png_rgba_drops_alpha(tmp_path):
    pixels = np.full((4, 4, 4), 200, np.uint8)
    pixels[..., 3] = 0  # fully transparent: compositing on black would give 0
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.png"), np.full((4, 4), 200))


def test_png_gray_alpha_drops_alpha(tmp_path):
    pixels = np.stack([RAMP, np.zeros_like(RAMP)], axis=-1)
    Image.fromarray(pixels, mode="LA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.png"), RAMP)


def test_png_palette_maps_through_palette(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([10, 10, 10, 128, 128, 128, 250, 250, 250] + [0] * (256 * 3 - 9))
    image.putdata([2, 0, 1])
    image.save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.png"), [[250, 10, 128]])


def test_jpeg_gray_and_rgb(tmp_path):
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.full((16, 16, 3), 60, np.uint8)).save(tmp_path / "c.JPEG", quality=95)
    assert np.abs(decode_gray(tmp_path / "g.jpg").astype(int) - 128).max() <= 1
    assert np.abs(decode_gray(tmp_path / "c.JPEG").astype(int) - 60).max() <= 1


def test_jpeg_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "a.jpg", exif=exif)
    assert decode_gray(tmp_path / "a.jpg").shape == (32, 16)


def test_dicom_monochrome2_window(tmp_path):
    pixels = np.array([[0, 1000, 2048, 4095]], dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", pixels, WindowCenter=2048, WindowWidth=1024)
    out = decode_gray(tmp_path / "a.dcm")
    # Scaled by the window's output range, not the image's extremes: below the window is 0, above 255.
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[0, 3] == 255
    assert abs(int(out[0, 2]) - 128) <= 1


def test_dicom_window_after_rescale(tmp_path):
    pixels = np.array([[0, 1000, 1114, 2048]], dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=50, WindowWidth=101)
    out = decode_gray(tmp_path / "a.dcm")
    np.testing.assert_array_equal(out[0, [0, 1, 3]], [0, 0, 255])
    assert abs(int(out[0, 2]) - 231) <= 1  # value 90 in the window [-0.5, 99.5]: 0.905 · 255


def test_dicom_monochrome1_inverted(tmp_path):
    pixels = np.array([[0, 1000, 4000]], dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", pixels, photometric="MONOCHROME1")
    # No window: min–max to 0, 64, 255, then inverted.
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.dcm"), [[255, 191, 0]])


def test_dicom_voi_lut_sequence(tmp_path):
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new(0x00283006, "US", [min(v, 1000) for v in range(4096)])  # LUT Data, saturating above 1000
    pixels = np.array([[0, 500, 1000, 4000]], dtype=np.uint16)
    write_dicom(tmp_path / "a.dcm", pixels, VOILUTSequence=Sequence([item]), WindowCenter=3000, WindowWidth=10)
    # The LUT wins over the window, and its own output range (0–1000) sets the scale.
    np.testing.assert_array_equal(decode_gray(tmp_path / "a.dcm"), [[0, 128, 255, 255]])


def test_dicom_multiframe_takes_first_frame(tmp_path):
    frames = np.stack([np.full((4, 4), 100), np.full((4, 4), 3000)]).astype(np.uint16)
    frames[0, 0, 0] = 0
    write_dicom(tmp_path / "a.dcm", frames, WindowCenter=2048, WindowWidth=4096)
    out = decode_gray(tmp_path / "a.dcm")
    assert out.shape == (4, 4)
    assert out[0, 0] == 0 and abs(int(out[1, 1]) - 6) <= 1  # 100 in a 0–4095 window, not 3000


def test_dicom_jpeg2000_decodes_like_uncompressed(tmp_path):
    pixels = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    write_dicom(tmp_path / "plain.dcm", pixels)
    ds = pydicom.dcmread(tmp_path / "plain.dcm")
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="JPEG2000", irreversible=False, no_jp2=True)  # lossless
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([stream.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j2k.dcm")
    np.testing.assert_array_equal(decode_gray(tmp_path / "j2k.dcm"), decode_gray(tmp_path / "plain.dcm"))


def test_dicom_without_suffix_found_by_preamble(tmp_path):
    write_dicom(tmp_path / "1.2.840.99", np.array([[0, 4095]], dtype=np.uint16))
    write_dicom(tmp_path / "scan", np.array([[0, 4095]], dtype=np.uint16))
    (tmp_path / "notes").write_text("not an image")
    assert is_image_file(tmp_path / "scan")
    assert not is_image_file(tmp_path / "notes")
    np.testing.assert_array_equal(decode_gray(tmp_path / "scan"), [[0, 255]])
    assert pydicom.dcmread(tmp_path / "scan").Modality == "CR"


def test_image_suffixes_case_insensitive(tmp_path):
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
    assert is_image_file(tmp_path / "A.PNG") and is_image_file(tmp_path / "b.DiCoM")
    assert not is_image_file(tmp_path / "c.txt")


@pytest.mark.parametrize("name", ["broken.png", "broken.dcm", "broken.jpg", "missing.png"])
def test_undecodable_file_named_in_error(tmp_path, name):
    if not name.startswith("missing"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n not really" if name.endswith(".png") else b"garbage")
    path = tmp_path / name
    with pytest.raises(DataError, match=r"cannot decode \(") as info:
        decode_gray(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=re.escape(name)):
        load_image(path, 16)


def test_truncated_png_is_an_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a\.png: cannot decode"):
        decode_gray(tmp_path / "a.png")


def test_load_image_is_one_bilinear_resize_and_deterministic(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 255, (48, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", 32)
    expected = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR))
    assert out.shape == (32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, load_image(tmp_path / "a.png", 32))


def test_load_image_jpeg_draft_and_dicom(tmp_path):
    pixels = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    small = load_image(tmp_path / "a.jpg", 32)
    full = np.asarray(Image.fromarray(decode_gray(tmp_path / "a.jpg")).resize((32, 32), Image.Resampling.BILINEAR))
    assert small.shape == (32, 32)
    assert np.abs(small.astype(int) - full.astype(int)).max() <= 4  # reduced-scale decode stays close
    write_dicom(tmp_path / "a.dcm", np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1)))
    assert load_image(tmp_path / "a.dcm", 16).shape == (16, 16)


@pytest.fixture
def limit():
    """Set the process-wide pixel limit for one test; the default comes back afterwards."""
    yield decode.set_max_pixels
    decode.set_max_pixels(decode.DEFAULT_MAX_PIXELS)


def test_png_above_the_pixel_limit_is_refused_before_decoding(tmp_path, limit, monkeypatch):
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(tmp_path / "big.png")
    limit(11_999)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels decoded"))
    for call in (decode_gray, lambda p: load_image(p, 16)):
        with pytest.raises(DataError, match=r"big\.png: refused \(declares 0\.0 megapixels, above the 0\.011999"):
            call(tmp_path / "big.png")


def test_pixel_limit_in_check_limits_and_pillow_agree(tmp_path, limit):
    """Pillow's MAX_IMAGE_PIXELS follows the limit: its own bomb check refuses exactly above it too."""
    limit(12_000)
    decode.check_limits(120, 100)
    with pytest.raises(decode.ImageRefused, match=r"declares 121×100 = 0\.0 megapixels"):
        decode.check_limits(121, 100)
    assert 2 * Image.MAX_IMAGE_PIXELS == 12_000
    Image.fromarray(np.zeros((100, 121), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "a.png")
    limit(12_100)
    assert decode_gray(tmp_path / "a.png").shape == (100, 121)


@pytest.mark.parametrize(("width", "height"), [(1, 100000), (1001, 100), (100, 1001)])
def test_absurd_aspect_ratio_is_refused(tmp_path, width, height):
    Image.new("L", (width, height)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=rf"declares {width}×{height} pixels, an aspect ratio above 10:1"):
        decode_gray(tmp_path / "a.png")


def test_aspect_ratio_of_a_long_leg_image_is_accepted(tmp_path):
    Image.new("L", (100, 400)).save(tmp_path / "a.png")
    assert decode_gray(tmp_path / "a.png").shape == (400, 100)


def test_dicom_limits_read_from_the_header(tmp_path, limit):
    write_dicom(tmp_path / "a.dcm", np.zeros((100, 120), np.uint16))
    limit(11_999)
    with pytest.raises(DataError, match=r"a\.dcm: refused \(declares 120×100 = 0\.0 megapixels"):
        decode_gray(tmp_path / "a.dcm")


@pytest.mark.parametrize("character", ["\r", "\n", "\t", "\x1b", "\udcff"])
def test_control_characters_and_undecodable_bytes_in_names_are_refused(tmp_path, character):
    """A CR split the CSV row; '\\udcff' is how Python spells a file-name byte that is not UTF-8."""
    path = tmp_path / f"bad{character}name.png"
    Image.fromarray(RAMP).save(path)
    with pytest.raises(DataError) as info:
        decode_gray(path)
    message = str(info.value)
    assert message.isprintable() and f"bad{repr(character)[1:-1]}name.png: refused (file name holds" in message


def test_ordinary_unicode_and_spaces_in_names_are_fine(tmp_path):
    path = tmp_path / "Röntgen thorax 1.png"
    Image.fromarray(RAMP).save(path)
    np.testing.assert_array_equal(decode_gray(path), RAMP)
