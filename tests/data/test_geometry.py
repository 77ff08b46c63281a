"""True shapes rasterised at S×S, by hand on small grids and against scikit-image's
point-in-polygon test (the one the challenge's FROC script calls)."""

from __future__ import annotations

import numpy as np
import pytest

from xiqa.data.annotation import Shape, parse_annotation
from xiqa.data.geometry import contains, input_to_original, shape_masks


def _grid(text: str) -> np.ndarray:
    return np.array([[c == "#" for c in line] for line in text.split()], dtype=bool)


def test_ellipse_on_a_10x10_grid_by_hand():
    # Original = map pixels (W = H = S = 10): centres at i + 0.5. Box (1, 1)-(9, 5): centre
    # (5, 3), semi-axes 4 and 2. Row 2 (y = 2.5): (x - 5)^2 <= 16 * (1 - 1/16) = 15, so
    # |x - 5| <= 3.87: x = 1.5 .. 8.5; row 1 (y = 1.5): (x - 5)^2 <= 16 * (1 - 9/16) = 7,
    # |x - 5| <= 2.65: x = 2.5 .. 7.5; rows 0 and 5 (|y - 3| = 2.5 > 2): none.
    (shape,) = parse_annotation("1 1 1 9 5")
    expected = _grid(
        """
        ..........
        ..######..
        .########.
        .########.
        ..######..
        ..........
        ..........
        ..........
        ..........
        ..........
        """
    )
    assert (shape_masks([shape], 10, 10, 10)[0] == expected).all()


def test_polygon_border_counts_as_inside():
    # The triangle (0, 0), (8, 0), (0, 8) at S = W = H = 8: centres (i + .5, j + .5) are inside
    # when x + y <= 8, i.e. i + j <= 7; on i + j = 7 the centre lies exactly on the hypotenuse.
    (shape,) = parse_annotation("2 0 0 8 0 0 8")
    mask = shape_masks([shape], 8, 8, 8)[0]
    i, j = np.meshgrid(np.arange(8), np.arange(8))
    assert (mask == (i + j <= 7)).all()
    assert mask.sum() == 36


def test_rectangle_contains_its_border_and_scales_by_the_original_size():
    # W = 20, H = 40, S = 4: centres x = 2.5, 7.5, 12.5, 17.5 and y = 5, 15, 25, 35. The box
    # x 5..12, y 5..15 holds x = 7.5 and y = 5 and 15 (its border).
    (shape,) = parse_annotation("0 5 5 12 15")
    mask = shape_masks([shape], 20, 40, 4)[0]
    assert sorted(zip(*np.nonzero(mask), strict=True)) == [(0, 1), (1, 1)]
    assert input_to_original(1, 0, 4, 20, 40) == (7.5, 5.0)


def test_degenerate_shapes_contain_no_point_or_only_their_segment():
    flat_ellipse = Shape("ellipse", ((2, 2), (2, 6)))
    assert not contains(flat_ellipse, np.array([2.0]), np.array([4.0])).any()
    line = Shape("rectangle", ((2, 2), (2, 6)))
    assert contains(line, np.array([2.0, 2.5]), np.array([4.0, 4.0])).tolist() == [True, False]


def test_a_shape_smaller_than_a_pixel_may_hold_no_centre():
    (shape,) = parse_annotation("0 1 1 3 3")  # 2 px of a 100 px image, at S = 10: centres 5, 15..
    assert not shape_masks([shape], 100, 100, 10)[0].any()


@pytest.mark.parametrize("seed", range(6))
def test_polygons_agree_with_scikit_image(seed):
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(seed)
    # A star-shaped polygon with integer vertices, and integer and half-integer query points
    # (many exactly on its edges and vertices).
    n = int(rng.integers(3, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(2, 10, n)
    points = np.round(np.c_[12 + radii * np.cos(angles), 12 + radii * np.sin(angles)]).astype(int)
    shape = Shape("polygon", tuple(map(tuple, points.tolist())))
    ys, xs = np.mgrid[0:25:0.5, 0:25:0.5]
    ours = contains(shape, xs, ys)
    theirs = measure.points_in_poly(np.c_[xs.ravel(), ys.ravel()], points.astype(float))
    assert (ours.ravel() == theirs).all()
    mask = shape_masks([shape], 25, 25, 25)[0]
    centres = np.c_[xs.ravel(), ys.ravel()][(xs.ravel() % 1 == 0.5) & (ys.ravel() % 1 == 0.5)]
    expected = measure.points_in_poly(centres, points.astype(float)).reshape(25, 25)
    assert (mask == expected).all()
