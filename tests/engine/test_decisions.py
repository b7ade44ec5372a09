import hashlib
import json

import numpy as np
import pytest
from PIL import Image

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


def test_feature_reference_from_held_out_images_refers_unlike_images(tiny_export, tmp_path):
    """The export step on the tiny run's own models, with 48 held-out images per fold (the tiny run itself
    has too few for a reference), then the engine on a copy of the manifest that carries it."""
    import pandas as pd

    from tbensemble.export.decision_reference import feature_rule
    from tests.export.tinyrun import copy_artifacts, write_images

    data = tmp_path / "data"
    write_images(data / "Normal", 48, seed=51)
    write_images(data / "Tuberculosis", 48, seed=52)
    ids = sorted(p.name for p in data.rglob("*.png"))
    rng = np.random.default_rng(0)
    pd.DataFrame({"image_id": ids, "fold": rng.permutation(np.arange(len(ids)) % 2)}).to_csv(
        tmp_path / "folds.csv", index=False
    )
    artifacts = copy_artifacts(tiny_export, tmp_path / "artifacts")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    models = {
        m["name"]: {"path": artifacts / m["file"], "fold": m["fold"], "input": "image", "features": "features"}
        for m in manifest["models"]
    }
    weights = {m["name"]: m["weight"] for m in manifest["models"]}
    rule = feature_rule(tmp_path, str(data), 32, manifest["ensemble"]["tta"], models, weights)
    assert set(rule["models"]) == set(models) and rule["threshold"] > 0
    assert all(len(r["components"]) == rule["n_components"] == 8 for r in rule["models"].values())
    manifest["ensemble"]["refer"]["features"] = rule
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    ensemble = Ensemble.load(artifacts, device="cpu")
    fresh = np.stack([np.asarray(Image.open(p)) for p in write_images(tmp_path / "fresh", 40, seed=53, size=32)])
    checker = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    stripes = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    frame = decide_images(ensemble, np.stack([checker, stripes, *fresh]), [str(i) for i in range(42)])
    flagged = frame["reasons"].str.contains("out_of_distribution")
    assert flagged.iloc[0] and flagged.iloc[1]
    assert flagged.iloc[2:].mean() <= 0.1, "new images like the training ones are rarely referred"
