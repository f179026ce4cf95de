import numpy as np
import pytest

from vittui.ui.heatmap import (HALF_BLOCK, RAMP, ascii_heatmap, colormap, grayscale_cells, halfblock_cells,
                               image_cells, resample)


def test_shading_is_monotone_and_fills_the_asked_size():
    """Brighter values never get a lighter character than darker ones: the ramp's order is the shading."""
    rng = np.random.default_rng(0)
    values = rng.random((7, 5))
    rows = ascii_heatmap(values, 5, 7)
    assert len(rows) == 7 and all(len(r) == 5 for r in rows)
    shade = np.array([[RAMP.index(c) for c in r] for r in rows])
    order = np.argsort(values, axis=None)
    assert np.all(np.diff(shade.ravel()[order]) >= 0)  # sorted values -> non-decreasing shades
    assert shade.ravel()[order[0]] == 0 and shade.ravel()[order[-1]] == len(RAMP) - 1  # both ends used
    # any size, up or down
    for w, h in ((1, 1), (3, 11), (40, 2)):
        out = ascii_heatmap(values, w, h)
        assert len(out) == h and {len(r) for r in out} == {w}


def test_nan_is_drawn_as_the_lowest_shade_and_does_not_shift_the_rest():
    values = np.array([[0.0, np.nan, 1.0, 0.5]])
    assert ascii_heatmap(values, 4, 1) == ascii_heatmap([[0.0, 0.0, 1.0, 0.5]], 4, 1)
    assert ascii_heatmap(values, 4, 1)[0][1] == ascii_heatmap(values, 4, 1)[0][0] == RAMP[0]
    assert ascii_heatmap(np.full((2, 2), np.nan), 2, 2) == [RAMP[0] * 2] * 2  # all NaN: no error


def test_half_block_cells_put_the_upper_pixel_in_the_foreground():
    lo, hi = colormap(0.0), colormap(1.0)
    assert HALF_BLOCK in "▀▔"  # an upper half block: fg is the upper pixel
    assert halfblock_cells([[1.0], [0.0]], 1, 1) == [[(hi, lo)]]


def test_each_value_gets_its_ramp_character():
    assert ascii_heatmap(np.arange(10).reshape(1, 10), 10, 1) == [" .:-=+*#%@"]
    assert ascii_heatmap(np.arange(10)[::-1].reshape(1, 10), 10, 1) == ["@%#*+=-:. "]


def test_nearest_upsampling():
    assert ascii_heatmap([[0, 1], [2, 3]], 4, 2) == ["  --", "**@@"]
    assert ascii_heatmap([[0, 1], [2, 3]], 4, 4) == ["  --", "  --", "**@@", "**@@"]


def test_nearest_and_area_downsampling():
    v = np.array([[0, 0, 9, 9],
                  [0, 0, 9, 9],
                  [9, 9, 0, 0],
                  [9, 9, 9, 9]])
    assert ascii_heatmap(v, 2, 2) == [" @", "@@"]
    assert ascii_heatmap(v, 2, 2, method="area") == [" @", "@+"]


def test_area_with_fractional_overlap():
    # 3 columns into 2 cells: cell 0 covers col 0 and half of col 1 -> (0*1 + 9*0.5) / 1.5 = 3 -> ':' (3/9*9 = 3)
    assert ascii_heatmap([[0, 9, 0]], 2, 1, method="area") == ["--"]
    np.testing.assert_allclose(resample([[0.0, 9.0, 0.0]], 1, 2, "area"), [[3.0, 3.0]])


def test_constant_and_fixed_range():
    assert ascii_heatmap(np.full((2, 3), 7.0), 3, 2) == ["   ", "   "]
    assert ascii_heatmap([[0.5, 0.0, 1.0, 2.0]], 4, 1, vmin=0.0, vmax=1.0) == ["+ @@"]
    assert ascii_heatmap([[np.nan, 1.0]], 2, 1) == ["  "]


def test_colormap_anchors_and_interpolation():
    assert colormap(0.0) == (68, 1, 84)
    assert colormap(0.5) == (33, 145, 140)
    assert colormap(1.0) == (253, 231, 37)
    assert colormap(0.125) == (64, 42, 112)
    assert colormap(-3) == (68, 1, 84) and colormap(7) == (253, 231, 37)
    assert colormap(float("nan")) == (68, 1, 84)


def test_halfblock_cells():
    lo, hi = (68, 1, 84), (253, 231, 37)
    assert halfblock_cells([[0.0], [1.0]], 1, 1) == [[(lo, hi)]]
    assert halfblock_cells([[0, 1], [1, 0]], 2, 1) == [[(lo, hi), (hi, lo)]]
    # two rows of cells from a 2x1 map: each pixel row repeated
    assert halfblock_cells([[0.0], [1.0]], 1, 2) == [[(lo, lo)], [(hi, hi)]]
    assert halfblock_cells([[1, 3]], 2, 1, cmap=lambda v: (int(v * 10), 0, 0)) == [[((0, 0, 0), (0, 0, 0)),
                                                                                   ((10, 0, 0), (10, 0, 0))]]


def test_grayscale_and_image_cells():
    img = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    assert grayscale_cells(img, 2, 1) == [[((0, 0, 0), (128, 128, 128)), ((255, 255, 255), (64, 64, 64))]]
    rgb = np.zeros((2, 1, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 0] = (0, 0, 255)
    assert grayscale_cells(rgb, 1, 1) == [[((76, 76, 76), (29, 29, 29))]]
    assert image_cells(rgb, 1, 1) == [[((255, 0, 0), (0, 0, 255))]]
    # CHW float in [0, 1]
    wide = np.concatenate([rgb, rgb[::-1]], axis=1)  # (2, 2, 3)
    chw = np.transpose(wide, (2, 0, 1)).astype(np.float64) / 255.0
    assert image_cells(chw, 2, 1) == [[((255, 0, 0), (0, 0, 255)), ((0, 0, 255), (255, 0, 0))]]


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ascii_heatmap(np.zeros(4), 2, 2)
