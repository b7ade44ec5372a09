"""A synthetic out-of-fold table shaped like the trainer's oof.csv, generated at test time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tbensemble.core.metrics import oof_ensemble


def make_oof(n: int = 240, seed: int = 0, identity: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    frame = pd.DataFrame({"image_id": [f"img{i}.png" for i in range(n)], "label": labels, "fold": np.arange(n) % 3})
    for name, separation in (("tinycnn", 1.0), ("tinyresnet", 1.5)):
        z = rng.normal(labels * separation, 1.0)
        frame[name] = 1 / (1 + np.exp(-z))
        if identity:
            frame[f"{name}@identity"] = 1 / (1 + np.exp(-(z + rng.normal(0, 0.7, n))))
    frame["ensemble"] = oof_ensemble(frame, ["tinycnn", "tinyresnet"])
    return frame


@pytest.fixture
def oof() -> pd.DataFrame:
    return make_oof()
