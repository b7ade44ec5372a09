"""INT8 calibration memory is bounded by feeding one view at a time, whatever the number of images, and the
ranges are those of one pass over all images at once."""

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tbensemble.optimize.quantize import CalibrationViews, merge_stride, quantize_int8, quantize_openvino_int8
from tests.engine.variantrun import SIZE, write_model

VIEWS = ["identity", "crop90"]


class RecordingViews(CalibrationViews):
    """Calibration views that remember the shape of every feed handed out."""

    def __init__(self, images: np.ndarray) -> None:
        super().__init__(images, VIEWS, "image")
        self.shapes: list[tuple[int, ...]] = []

    def _feeds(self, start, end):
        for feed in super()._feeds(start, end):
            self.shapes.append(feed["image"].shape)
            yield feed


class OneBatch(CalibrationViews):
    """Every view of every image in a single feed: the calibration whose ranges the bounded one must match."""

    def __len__(self) -> int:
        return 1

    def _feeds(self, start, end):
        from tbensemble.data.views import apply_views

        if start < end:
            yield {"image": apply_views(self.images, self.views).astype(np.float32)[..., None]}


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE), dtype=np.uint8)


def quantization_params(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {
        init.name: numpy_helper.to_array(init)
        for init in model.graph.initializer
        if init.name.endswith(("_scale", "_zero_point"))
    }


@pytest.mark.parametrize("count", [3, 40])
def test_ort_calibration_runs_one_view_at_a_time_whatever_the_image_count(tmp_path, count):
    model = write_model(tmp_path / "tiny.onnx")
    reader = RecordingViews(images(count))
    quantize_int8(model, tmp_path / "int8.onnx", reader, "features")
    assert set(reader.shapes) == {(1, SIZE, SIZE, 1)}
    assert len(reader.shapes) == count * len(VIEWS)


@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="needs the optimize extra (installed in CI)")
def test_nncf_calibration_runs_one_view_at_a_time(tmp_path):
    reader = RecordingViews(images(5))
    quantize_openvino_int8(write_model(tmp_path / "tiny.onnx"), tmp_path / "int8.xml", reader)
    assert set(reader.shapes) == {(1, SIZE, SIZE, 1)}
    assert len(reader.shapes) >= 5 * len(VIEWS)


def test_view_by_view_calibration_in_merged_chunks_gives_the_ranges_of_one_batched_pass(tmp_path):
    model = write_model(tmp_path / "tiny.onnx")
    pixels = images(21, seed=3)
    bounded = quantize_int8(model, tmp_path / "bounded.onnx", CalibrationViews(pixels, VIEWS, "image"), "features")
    single = quantize_int8(model, tmp_path / "single.onnx", OneBatch(pixels, VIEWS, "image"), "features")
    expected = quantization_params(single)
    assert expected and quantization_params(bounded).keys() == expected.keys()
    for name, value in quantization_params(bounded).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_a_subset_of_the_images_gives_other_ranges(tmp_path):
    """The comparison above can fail: calibrating on part of the images moves the ranges (what ORT 1.26's
    CalibMaxIntermediateOutputs does silently, and why it is not used)."""
    model = write_model(tmp_path / "tiny.onnx")
    pixels = images(21, seed=3)
    whole = quantize_int8(model, tmp_path / "whole.onnx", CalibrationViews(pixels, VIEWS, "image"), "features")
    part = quantize_int8(model, tmp_path / "part.onnx", CalibrationViews(pixels[:2], VIEWS, "image"), "features")
    assert any(
        not np.array_equal(value, quantization_params(whole)[name]) for name, value in quantization_params(part).items()
    )


def test_calibration_views_follow_ort_strided_reader_protocol():
    reader = CalibrationViews(images(3), VIEWS, "image")
    assert len(reader) == 6
    reader.set_range(start_index=2, end_index=4)
    first = [reader.get_next() for _ in range(3)]
    assert first[2] is None and all(f["image"].shape == (1, SIZE, SIZE, 1) for f in first[:2])
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["image"], first[0]["image"])
    assert len(list(reader)) == 6


@pytest.mark.parametrize(("count", "stride"), [(1, 1), (6, 6), (256, 64), (134, 2), (67, 1), (200, 50)])
def test_merge_stride_divides_the_count(count, stride):
    assert merge_stride(count) == stride
