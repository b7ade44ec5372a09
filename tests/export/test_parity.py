import numpy as np
import pytest

from tbensemble.core.errors import ArtifactError
from tbensemble.export import parity


def test_compare_reports_max_abs_differences():
    keras_out = {"probability": np.array([[0.5], [0.2]]), "logit": np.array([[0.0], [-1.0]])}
    onnx_out = {"probability": np.array([[0.50003], [0.2]]), "logit": np.array([[0.0], [-1.002]])}
    figures = parity.compare(keras_out, onnx_out)
    assert figures["max_abs_diff_probability"] == pytest.approx(3e-5)
    assert figures["max_abs_diff_logit"] == pytest.approx(2e-3)
    assert figures["n_images"] == 2


def test_enforce_fails_above_tolerance_naming_the_model():
    figures = {"max_abs_diff_probability": 2e-4, "max_abs_diff_logit": 1e-3, "n_images": 16}
    with pytest.raises(ArtifactError, match=r"^onnx/x.onnx: parity failed, max \|Δ probability\| 2.00e-04"):
        parity.enforce(figures, "onnx/x.onnx")
    parity.enforce({**figures, "max_abs_diff_probability": 1e-4}, "onnx/x.onnx")


def test_parity_images_fall_back_to_random_when_data_is_gone(tmp_path):
    images, source = parity.parity_images(tmp_path, str(tmp_path / "gone"), fold=0, n=16, size=32)
    assert source == "random"
    assert images.shape == (16, 32, 32) and images.dtype == np.uint8


def test_parity_images_prefer_the_folds_own_images(tmp_path):
    from tests.export.tinyrun import write_images

    data = tmp_path / "data"
    write_images(data / "Normal", 10, seed=1)
    write_images(data / "Tuberculosis", 10, seed=2)
    names = sorted(p.name for p in data.rglob("*.png"))
    own = set(names[:4])
    (tmp_path / "folds.csv").write_text(
        "image_id,label,fold\n" + "".join(f"{n},0,{0 if n in own else 1}\n" for n in names)
    )
    from tbensemble.data.decode import load_image

    images, source = parity.parity_images(tmp_path, str(data), fold=0, n=16, size=24)
    assert source == "run data" and images.shape == (16, 24, 24)
    expected_first = {load_image(next(data.rglob(n)), 24).tobytes() for n in own}
    assert {images[i].tobytes() for i in range(4)} == expected_first
