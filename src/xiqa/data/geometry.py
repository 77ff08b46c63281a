"""Where a model-input pixel lies on the original radiograph, and whether a point lies inside an
annotated shape (docs/protocol.md §7.1).

The point test is the Object-CXR challenge's (its FROC script): a rectangle contains its border
(x1 <= x <= x2 and y1 <= y <= y2); an ellipse, given by its bounding box, contains the points with
((x - cx) / a)² + ((y - cy) / b)² <= 1 (centre and semi-axes from the box; an ellipse with a zero
semi-axis contains no point, where the challenge's script would divide by zero); a polygon
contains its inside by the even–odd rule and every point of its border (as scikit-image's
``points_in_poly``, which the challenge calls, counts them).

A true-shape mask at S×S holds the pixels whose centre, mapped to original coordinates by
:func:`input_to_original`, lies inside the shape. So a peak pixel is inside a shape's mask exactly
when the point prediction made from it (the FROC's) hits the shape.
"""

from __future__ import annotations

import numpy as np

from xiqa.data.annotation import Shape


def input_to_original(x, y, size: int, width: int, height: int):
    """The centre of model-input pixel (x, y) of an S×S map, in original pixel coordinates
    (scalars or arrays).

    The cache maps an original coordinate x to x·S/W (origin at the image's top-left corner, as
    for annotations and cache boxes), so input pixel x, the interval [x, x + 1), covers
    [x·W/S, (x + 1)·W/S) of the original, and its centre lies at (x + ½)·W/S.
    """
    return (x + 0.5) * width / size, (y + 0.5) * height / size


def contains(shape: Shape, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each point (x, y) (original pixels; arrays that broadcast) lies inside ``shape``
    by the challenge's rules."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if shape.kind == "rectangle":
        (x1, y1), (x2, y2) = shape.points
        return (x1 <= x) & (x <= x2) & (y1 <= y) & (y <= y2)
    if shape.kind == "ellipse":
        (x1, y1), (x2, y2) = shape.points
        a, b = (x2 - x1) / 2, (y2 - y1) / 2
        if a == 0 or b == 0:
            return np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1
    return _in_polygon(np.asarray(shape.points, dtype=np.float64), x, y)


def _in_polygon(points: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even–odd crossing test (W. R. Franklin's PNPOLY), vectorised over the points, with the
    border inside. Written here, not taken from scikit-image, to avoid a dependency for one
    function and to run over a whole grid of pixel centres at once; tests check it against
    ``skimage.measure.points_in_poly``."""
    x, y = np.broadcast_arrays(x, y)
    inside = np.zeros(x.shape, dtype=bool)
    border = np.zeros(x.shape, dtype=bool)
    for (xi, yi), (xj, yj) in zip(points, np.roll(points, -1, axis=0), strict=True):
        straddles = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = xi + (y - yi) * (xj - xi) / (yj - yi)
        inside ^= straddles & (x < crossing)
        # On the edge: collinear with it (the cross product is exactly zero for the integer
        # vertices and the pixel centres of an exact division) and within its extent.
        collinear = (xj - xi) * (y - yi) - (yj - yi) * (x - xi) == 0
        within = (np.minimum(xi, xj) <= x) & (x <= np.maximum(xi, xj))
        within &= (np.minimum(yi, yj) <= y) & (y <= np.maximum(yi, yj))
        border |= collinear & within
    return inside | border


def shape_masks(shapes: list[Shape], width: int, height: int, size: int) -> np.ndarray:
    """(K, S, S) boolean masks of ``shapes`` (original pixels of a ``width`` × ``height``
    radiograph) at S×S: the pixels whose centre lies inside each shape."""
    masks = np.zeros((len(shapes), size, size), dtype=bool)
    centre_x, _ = input_to_original(np.arange(size), 0, size, width, height)
    _, centre_y = input_to_original(0, np.arange(size), size, width, height)
    for k, shape in enumerate(shapes):
        x0, y0, x1, y1 = shape.box
        # Only the columns and rows whose centres can reach the shape's box.
        cols = np.flatnonzero((centre_x >= x0) & (centre_x <= x1))
        rows = np.flatnonzero((centre_y >= y0) & (centre_y <= y1))
        if len(cols) and len(rows):
            inside = contains(shape, centre_x[cols][None, :], centre_y[rows][:, None])
            masks[k][np.ix_(rows, cols)] = inside
    return masks
