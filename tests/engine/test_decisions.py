import hashlib

import numpy as np
import pytest

from tbensemble.core.errors import TbensError
from tbensemble.engine.decisions import DECISION_COLUMNS, decide_images
from tbensemble.engine.ensemble import Ensemble

pytestmark = pytest.mark.slow


@pytest.fixture
def images():
    rng = np.random.default_rng(5)
    return rng.integers(30, 220, (6, 32, 32), dtype=np.uint8)


@pytest.fixture
def ensemble(tiny_export):
    return Ensemble.load(tiny_export, device="cpu")


def test_one_row_per_image_with_the_contract_columns(ensemble, images, tiny_export):
    ids = [f"img{i}.png" for i in range(len(images))]
    frame = decide_images(ensemble, images, ids)
    assert tuple(frame.columns) == DECISION_COLUMNS
    assert frame["image_id"].tolist() == ids
    point = ensemble.operating_point
    assert (frame["operating_point"] == point["name"]).all()
    assert (frame["threshold"] == point["threshold"]).all()
    np.testing.assert_allclose(frame["score"], ensemble.historical(ensemble.score(images)))
    decided = frame["reasons"] == ""
    expected = np.where(frame["score"] >= point["threshold"], "tb", "normal")
    assert (frame.loc[decided, "decision"] == expected[decided.to_numpy()]).all()
    assert (frame.loc[~decided, "decision"] == "refer").all()
    sha = hashlib.sha256((tiny_export / "manifest.json").read_bytes()).hexdigest()
    assert (frame["manifest_sha256"] == sha).all()
    np.testing.assert_allclose(frame["probability"], ensemble.calibrate(frame["score"].to_numpy()))


def test_an_image_alone_gets_the_decision_it_gets_in_a_batch(ensemble, images):
    batch = decide_images(ensemble, images, list("abcdef"))
    alone = decide_images(ensemble, images[3:4], ["d"])
    assert alone.iloc[0].drop("image_id").equals(batch.iloc[3].drop("image_id"))


def test_dicom_tags_and_blank_frames_are_referred_with_their_reasons(ensemble, images):
    images = images.copy()
    images[1] = 128
    images[2] = 255
    headers = [{"Modality": "CT", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}, None, None, None, None]
    headers.append({"Modality": "DX", "BodyPartExamined": "HAND", "ViewPosition": "LL"})
    frame = decide_images(ensemble, images, list("abcdef"), headers=headers)
    assert frame["decision"].tolist()[:3] == ["refer"] * 3
    reasons = [r.split(";") for r in frame["reasons"]]
    assert "dicom_modality=CT" in reasons[0] and reasons[1][0] == reasons[2][0] == "blank_image"
    assert reasons[5][:2] == ["dicom_body_part=HAND", "dicom_view=LL"]


def test_bad_arguments_are_one_line_errors(ensemble, images):
    with pytest.raises(TbensError, match="operating point 'nope'"):
        decide_images(ensemble, images, list("abcdef"), operating_point="nope")
    with pytest.raises(TbensError, match="5 image ids for 6 images"):
        decide_images(ensemble, images, list("abcde"))
    with pytest.raises(TbensError, match="dtype float32"):
        decide_images(ensemble, images.astype(np.float32), list("abcdef"))
    with pytest.raises(TbensError, match="shape"):
        decide_images(ensemble, images[:, :16, :16], list("abcdef"))


def test_export_stores_compact_refer_references_that_catch_unlike_images(ensemble, images):
    refer = ensemble.manifest.ensemble.refer
    features = refer["features"]
    assert set(features["models"]) == {m.name for m in ensemble.manifest.models}
    assert all(len(r["components"]) <= features["n_components"] for r in features["models"].values())
    assert features["threshold"] > 0 and refer["disagreement"]["threshold"] > 0
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    stripes = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    frame = decide_images(ensemble, np.stack([checker, stripes, *images[:2]]), list("abcd"))
    assert "out_of_distribution" in frame["reasons"].iloc[0].split(";")
    assert "out_of_distribution" in frame["reasons"].iloc[1].split(";")
