"""The Object-CXR annotation grammar: objects separated by ``;``, each ``TYPE c1 c2 ...`` with
TYPE 0 a rectangle ``x1 y1 x2 y2``, 1 an ellipse given by its bounding box, 2 a polygon
``x1 y1 ... xn yn``, in original-image pixels (docs/protocol.md §1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHAPE_KINDS = ("rectangle", "ellipse", "polygon")  # type codes 0, 1, 2
_INTEGER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Shape:
    """One annotated object, in original-image pixels."""

    kind: str
    points: tuple[tuple[int, int], ...]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Axis-aligned bounding box (x0, y0, x1, y1) of the shape's points."""
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        return min(xs), min(ys), max(xs), max(ys)


def parse_annotation(text: str) -> list[Shape]:
    """Parse an Object-CXR annotation: ``TYPE c1 c2 ...`` objects separated by ``;``.

    TYPE 0 is a rectangle and 1 an ellipse, both given by ``x1 y1 x2 y2``; 2 is a polygon
    ``x1 y1 ... xn yn``. An empty text is a negative image (no shapes). Raises ``ValueError``
    saying which object is malformed and how.
    """
    if not text.strip():
        return []
    shapes = []
    for number, obj in enumerate(text.split(";"), start=1):
        fields = obj.split()
        if not fields:
            raise ValueError(f"object {number} is empty (nothing between ';' separators)")
        code, coords = fields[0], fields[1:]
        if code not in ("0", "1", "2"):
            raise ValueError(
                f"object {number}: unknown shape type {code!r} "
                "(expected 0 rectangle, 1 ellipse or 2 polygon)"
            )
        kind = SHAPE_KINDS[int(code)]
        for value in coords:
            if not _INTEGER.fullmatch(value):
                raise ValueError(
                    f"object {number}: coordinate {value!r} is not a non-negative integer"
                )
        values = [int(v) for v in coords]
        if kind == "polygon":
            if len(values) % 2:
                raise ValueError(
                    f"object {number}: a polygon needs x y pairs, got an odd number "
                    f"({len(values)}) of coordinates"
                )
            if len(values) < 6:
                raise ValueError(
                    f"object {number}: a polygon needs at least 3 points, got {len(values) // 2}"
                )
        else:
            if len(values) != 4:
                article = "an" if kind == "ellipse" else "a"
                raise ValueError(
                    f"object {number}: {article} {kind} needs 4 coordinates (x1 y1 x2 y2), "
                    f"got {len(values)}"
                )
            x1, y1, x2, y2 = values
            if x2 < x1 or y2 < y1:
                raise ValueError(
                    f"object {number}: {kind} corners are reversed "
                    f"(x1 {x1}, y1 {y1}, x2 {x2}, y2 {y2}; need x1 <= x2 and y1 <= y2)"
                )
        shapes.append(Shape(kind, tuple(zip(values[::2], values[1::2], strict=True))))
    return shapes


def format_annotation(shapes: list[Shape]) -> str:
    """The inverse of :func:`parse_annotation`."""
    return ";".join(
        " ".join([str(SHAPE_KINDS.index(s.kind))] + [f"{x} {y}" for x, y in s.points])
        for s in shapes
    )


def check_shapes_inside(shapes: list[Shape] | tuple[Shape, ...], width: int, height: int) -> None:
    """Every point must lie on the image (0..width, 0..height); raises ``ValueError``."""
    for number, shape in enumerate(shapes, start=1):
        x0, y0, x1, y1 = shape.box
        if x1 > width or y1 > height:
            raise ValueError(
                f"object {number}: {shape.kind} reaches ({x1}, {y1}), outside the "
                f"{width}x{height} image"
            )
