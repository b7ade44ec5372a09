"""scripts/brief_big_backbones.py: the oof.csv it writes for fold 0 (train-folds writes one only when every
fold is done) and the config it trains with; the training itself is measured, not tested (minutes a model)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tbensemble.core.config import load_config
from tbensemble.core.metrics import oof_ensemble
from tests.script_module import load_script


@pytest.fixture(scope="module")
def brief():
    return load_script("brief_big_backbones")


def fold_run(root: Path, done: list[str]) -> Path:
    ids = [f"img{i}.png" for i in range(10)]
    pd.DataFrame({"image_id": ids, "label": [i % 2 for i in range(10)], "fold": [i % 2 for i in range(10)]}).to_csv(
        root / "folds.csv", index=False
    )
    rng = np.random.default_rng(0)
    for backbone in done:
        folder = root / "models" / backbone / "fold0"
        folder.mkdir(parents=True)
        held = ids[0::2]
        pd.DataFrame({"image_id": held[::-1], "label": 0, "score": rng.random(len(held))}).to_csv(
            folder / "val_scores.csv", index=False
        )
        (folder / "done.json").write_text("{}")
    return root


def test_oof_holds_fold_zero_and_the_backbones_done(brief, tmp_path):
    run = fold_run(tmp_path, ["resnet50", "efficientnetb5"])
    (tmp_path / "models" / "densenet201" / "fold0").mkdir(parents=True)  # started, not done
    assert brief.write_fold_oof(run) == ["resnet50", "efficientnetb5"]
    oof = pd.read_csv(run / "oof.csv", dtype={"image_id": str})
    assert list(oof.columns) == ["image_id", "label", "fold", "resnet50", "efficientnetb5", "ensemble"]
    assert oof["image_id"].tolist() == [f"img{i}.png" for i in range(0, 10, 2)] and set(oof["fold"]) == {0}
    scores = pd.read_csv(run / "models" / "resnet50" / "fold0" / "val_scores.csv").set_index("image_id")
    np.testing.assert_allclose(oof["resnet50"], scores.loc[oof["image_id"], "score"])
    np.testing.assert_allclose(oof["ensemble"], oof_ensemble(oof, ["resnet50", "efficientnetb5"]))


def test_no_backbone_done_writes_no_oof(brief, tmp_path):
    assert brief.write_fold_oof(fold_run(tmp_path, [])) == []
    assert not (tmp_path / "oof.csv").exists()


def test_brief_config_is_a_valid_train_config(brief, tmp_path):
    from tbensemble.core.config import dump_config

    path = tmp_path / "brief.yaml"
    path.write_text(dump_config(brief.brief_config(tmp_path / "data", tmp_path / "run", 384, 2)))
    config = load_config(path)
    assert (config.image_size, config.folds, config.weights, config.ema_momentum) == (384, 2, None, 0.0)
    assert config.backbones == ["resnet50", "densenet201", "efficientnetb5"]
