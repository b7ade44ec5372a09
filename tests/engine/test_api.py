"""``tbensemble.load(...).predict/explain``: paths, arrays and bytes give the decision rows of the one
decision step, and ``import tbensemble`` stays light."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import tbensemble
from tbensemble.core.errors import DataError
from tbensemble.data.decode import load_array, load_image
from tbensemble.engine.api import sniff_image_type
from tbensemble.engine.decisions import DECISION_COLUMNS, decide_images
from tbensemble.engine.ensemble import Ensemble
from tests.data.test_decode import write_dicom
from tests.fresh_interpreter import assert_prints_ok


def test_import_tbensemble_loads_neither_onnxruntime_nor_tensorflow():
    code = (
        "import sys, tbensemble\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'tensorflow', 'keras', 'tf2onnx'))\n"
        "assert not heavy, heavy\n"
        "assert 'tbensemble.engine' not in sys.modules\n"
        "tbensemble.load\n"
        "assert 'onnxruntime' in sys.modules and 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    assert_prints_ok(code)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tbensemble.nothing  # noqa: B018


def test_sniffing_reads_the_bytes_not_the_name(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="PNG")
    assert sniff_image_type(buffer.getvalue()) == "png"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="JPEG")
    assert sniff_image_type(buffer.getvalue()) == "jpeg"
    write_dicom(tmp_path / "a.bin", np.zeros((4, 4), np.uint16))
    assert sniff_image_type((tmp_path / "a.bin").read_bytes()) == "dicom"
    for other in (b"", b"GIF89a", b"\x89PN", b"%PDF-1.7" + b"\0" * 200):
        assert sniff_image_type(other) is None


@pytest.mark.parametrize("size", [16, 40])
def test_arrays_take_the_same_conversion_and_resize_as_their_png(tmp_path, size):
    rng = np.random.default_rng(1)
    cases = {
        "gray8": rng.integers(0, 256, (30, 50), dtype=np.uint8),
        "gray16": rng.integers(0, 65536, (30, 50), dtype=np.uint16),
        "rgb": rng.integers(0, 256, (30, 50, 3), dtype=np.uint8),
        "rgba": rng.integers(0, 256, (30, 50, 4), dtype=np.uint8),
    }
    for name, pixels in cases.items():
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        np.testing.assert_array_equal(load_array(pixels, size), load_image(tmp_path / f"{name}.png", size), name)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros(4, np.uint8),
    ],
)
def test_arrays_of_other_kinds_are_refused(pixels):
    with pytest.raises(DataError, match=r"^scan7: "):
        load_array(pixels, 8, "scan7")


@pytest.fixture(scope="module")
def triage(tiny_export):
    return tbensemble.load(tiny_export, device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api-images")
    rng = np.random.default_rng(11)
    pixels = rng.integers(40, 200, (48, 60)).astype(np.uint8)
    pixels[10:25, 20:40] = 230
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(folder / "b.jpg", quality=95)
    write_dicom(folder / "c.dcm", pixels.astype(np.uint16) * 16, WindowCenter=2048, WindowWidth=4096)
    return [folder / "a.png", folder / "b.jpg", folder / "c.dcm"]


@pytest.mark.slow
def test_paths_give_the_rows_of_decide_images(triage, tiny_export, files):
    frame = triage.predict(files)
    assert tuple(frame.columns) == DECISION_COLUMNS
    assert frame["image_id"].tolist() == ["a.png", "b.jpg", "c.dcm"]
    ensemble = Ensemble.load(tiny_export, device="cpu")
    images = np.stack([load_image(p, ensemble.image_size) for p in files])
    expected = decide_images(ensemble, images, ["a.png", "b.jpg", "c.dcm"], [None, None, {"Modality": "CR"}])
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.slow
def test_bytes_and_arrays_score_like_the_file(triage, files):
    by_path = triage.predict(files[0]).iloc[0]
    pixels = np.asarray(Image.open(files[0]))
    frame = triage.predict([files[0].read_bytes(), pixels], ids=["sent", "pixels"])
    assert frame["image_id"].tolist() == ["sent", "pixels"]
    for _, row in frame.iterrows():
        assert row["score"] == by_path["score"] and row["decision"] == by_path["decision"]
    alone = triage.predict(bytearray(files[0].read_bytes()))
    assert len(alone) == 1 and alone.iloc[0]["score"] == by_path["score"]


@pytest.mark.slow
def test_a_batch_and_one_at_a_time_agree(triage, files):
    together = triage.predict(files, batch_size=8)
    alone = pd.concat([triage.predict(p) for p in files], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)


@pytest.mark.slow
def test_dicom_header_in_bytes_reaches_the_refer_rule(triage, tmp_path):
    pixels = (np.random.default_rng(2).integers(40, 200, (40, 40)) * 16).astype(np.uint16)
    write_dicom(tmp_path / "lat.dcm", pixels, WindowCenter=2048, WindowWidth=4096, ViewPosition="LL")
    row = triage.predict((tmp_path / "lat.dcm").read_bytes()).iloc[0]
    assert row["decision"] == "refer" and "dicom_view=LL" in row["reasons"]


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors_naming_them(triage, tmp_path):
    with pytest.raises(DataError, match=r"^bytes0: not a PNG, JPEG or DICOM"):
        triage.predict(b"plain text")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(DataError, match=r"broken\.png: cannot decode"):
        triage.predict([tmp_path / "broken.png"])
    with pytest.raises(DataError, match="cannot read an input of type int"):
        triage.predict([3])
    with pytest.raises(DataError, match="1 ids for 2 inputs"):
        triage.predict([b"x", b"y"], ids=["one"])
    assert list(triage.predict([]).columns) == list(DECISION_COLUMNS)


@pytest.mark.slow
def test_paths_with_skip_bad_leave_out_the_bad_file_and_keep_the_order(triage, files, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    frame = triage.predict([files[1], tmp_path / "broken.png", files[0]], skip_bad=True, batch_size=1)
    assert frame["image_id"].tolist() == ["b.jpg", "a.png"]
    assert frame["score"].tolist() == triage.predict([files[1], files[0]])["score"].tolist()


@pytest.mark.slow
def test_skip_bad_leaves_out_bad_files_in_a_mixed_list_but_never_bad_bytes(triage, files, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    frame = triage.predict([files[0].read_bytes(), broken, files[1]], ids=["sent", "broken", "b"], skip_bad=True)
    assert frame["image_id"].tolist() == ["sent", "b"]
    with pytest.raises(DataError, match=r"broken\.png: cannot decode"):
        triage.predict([files[0].read_bytes(), broken], skip_bad=False)
    with pytest.raises(DataError, match=r"^bad: "):
        triage.predict([broken.read_bytes(), files[0]], ids=["bad", "a"], skip_bad=True)


@pytest.mark.slow
def test_operating_point_is_chosen_per_call(triage, files):
    for name, point in triage.ensemble.manifest.ensemble.operating_points.items():
        by_path = triage.predict(files, operating_point=name)
        by_bytes = triage.predict([p.read_bytes() for p in files], ids=[p.name for p in files], operating_point=name)
        assert (by_path["operating_point"] == name).all() and (by_path["threshold"] == float(point["threshold"])).all()
        pd.testing.assert_frame_equal(by_path, by_bytes)


@pytest.mark.slow
def test_tbens_predict_scores_through_the_python_api(tiny_export, files, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tbensemble.cli import cli
    from tbensemble.engine.api import TriageEnsemble

    calls = []
    original = TriageEnsemble.score_files

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TriageEnsemble, "score_files", spy)
    out = tmp_path / "decisions.csv"
    args = ["predict", "--artifacts", str(tiny_export), "--device", "cpu", "--decisions", str(out)]
    result = CliRunner().invoke(cli, [*args, *(x for p in files for x in ("--images", str(p)))], obj={})
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and calls[0]["decide"] is True
    written = pd.read_csv(out)
    expected = tbensemble.load(tiny_export, device="cpu").predict(files)
    assert written["image_id"].tolist() == expected["image_id"].tolist()
    np.testing.assert_allclose(written["score"], expected["score"], rtol=1e-12)
    assert written["decision"].tolist() == expected["decision"].tolist()


@pytest.mark.slow
def test_explain_heatmap_at_the_image_size_and_overlay_png(triage, files):
    explanation = triage.explain(files[2])
    assert explanation.heatmap.shape == (48, 60)
    assert explanation.heatmap.min() >= 0.0 and explanation.heatmap.max() <= 1.0
    assert explanation.overlay_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert explanation.decision["image_id"] == "c.dcm"
    assert explanation.decision["score"] == triage.predict(files[2]).iloc[0]["score"]
