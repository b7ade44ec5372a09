import numpy as np
import pandas as pd

from tbensemble.core.metrics import within_fold_ranks
from tbensemble.export import decision_reference


def _oof(n: int = 90) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3 == 0
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "label": labels.astype(int),
            "fold": np.arange(n) % 3,
            "tinycnn": rng.normal(labels, 1.0),
            "tinyresnet": rng.normal(labels, 1.0),
        }
    )


def test_disagreement_threshold_is_the_oof_99th_percentile_and_needs_two_backbones():
    oof = _oof()
    rule = decision_reference.disagreement_rule(oof, ["tinycnn", "tinyresnet"])
    ranks = {b: within_fold_ranks(oof[b].to_numpy(), oof["fold"].to_numpy()) for b in ("tinycnn", "tinyresnet")}
    spread = np.abs(ranks["tinycnn"] - ranks["tinyresnet"])
    assert rule["threshold"] == np.quantile(spread, 0.99)
    assert np.sum(spread > rule["threshold"]) <= np.ceil(0.01 * len(spread))
    assert decision_reference.disagreement_rule(oof, ["tinycnn"]) is None


def test_no_feature_reference_when_the_run_data_is_gone(tmp_path, caplog):
    (tmp_path / "folds.csv").write_text("image_id,fold\na.png,0\n")
    rule = decision_reference.feature_rule(tmp_path, str(tmp_path / "gone"), 32, ["identity"], {}, {})
    assert rule is None and "no out-of-distribution rule" in caplog.text
