"""TTA views: shapes, exactness of identity and flips, the lookup tables, and unknown names."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tbensemble.core.config import TTA_VIEWS
from tbensemble.core.errors import ConfigError
from tbensemble.data.views import apply_view, apply_views

BATCH = np.random.default_rng(0).integers(0, 256, size=(3, 20, 20), dtype=np.uint8)


@pytest.mark.parametrize("name", TTA_VIEWS)
def test_every_view_keeps_shape_and_dtype(name):
    out = apply_view(BATCH, name)
    assert out.shape == BATCH.shape and out.dtype == np.uint8
    assert out.flags.c_contiguous


def test_identity_is_exact_and_hflip_twice_is_identity():
    np.testing.assert_array_equal(apply_view(BATCH, "identity"), BATCH)
    flipped = apply_view(BATCH, "hflip")
    np.testing.assert_array_equal(flipped[:, :, 0], BATCH[:, :, -1])
    np.testing.assert_array_equal(apply_view(flipped, "hflip"), BATCH)


def test_gamma_views_brighten_and_darken_keeping_black_and_white():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (1, 1, 1))
    brighter, darker = apply_view(ramp, "brighter")[0, 0], apply_view(ramp, "darker")[0, 0]
    assert brighter[0] == darker[0] == 0 and brighter[255] == darker[255] == 255
    assert (brighter[1:255] >= ramp[0, 0, 1:255]).all() and (darker[1:255] <= ramp[0, 0, 1:255]).all()
    assert brighter[128] == round(255 * (128 / 255) ** 0.9)


def test_crop90_zooms_into_the_centre():
    image = np.zeros((1, 40, 40), np.uint8)
    image[0, 0, :] = 255  # a line in the outer 5% border: cropped away
    out = apply_view(image, "crop90")
    assert out.max() < 10
    expected = Image.fromarray(image[0]).resize((40, 40), Image.Resampling.BILINEAR, box=(2, 2, 38, 38))
    np.testing.assert_array_equal(out[0], np.asarray(expected))


def test_apply_views_is_view_major():
    out = apply_views(BATCH, ["identity", "hflip", "darker"])
    assert out.shape == (9, 20, 20)
    np.testing.assert_array_equal(out[:3], BATCH)
    np.testing.assert_array_equal(out[3:6], BATCH[:, :, ::-1])
    np.testing.assert_array_equal(out[6:], apply_view(BATCH, "darker"))


def test_unknown_view_names_it_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown view 'vflip'; allowed: identity, hflip, crop90"):
        apply_views(BATCH, ["identity", "vflip"])
    with pytest.raises(ConfigError, match="'rot90'"):
        apply_view(BATCH, "rot90")
