"""The Object-CXR annotation grammar, by hand-worked cases."""

import pytest

from xiqa.data.annotation import Shape, format_annotation, parse_annotation


def test_empty_annotation_is_a_negative_image():
    assert parse_annotation("") == []
    assert parse_annotation("  ") == []


def test_rectangle():
    (shape,) = parse_annotation("0 10 20 30 40")
    assert shape == Shape("rectangle", ((10, 20), (30, 40)))
    assert shape.box == (10, 20, 30, 40)


def test_ellipse_is_given_by_its_bounding_box():
    (shape,) = parse_annotation("1 1457 1060 1580 1207")
    assert shape.kind == "ellipse"
    assert shape.box == (1457, 1060, 1580, 1207)


def test_polygon_box_is_min_and_max_of_its_points():
    (shape,) = parse_annotation("2 50 10 90 40 70 95 20 60")
    assert shape.kind == "polygon"
    assert shape.points == ((50, 10), (90, 40), (70, 95), (20, 60))
    assert shape.box == (20, 10, 90, 95)


def test_several_objects_keep_their_order():
    shapes = parse_annotation("1 5 6 7 8;0 0 0 4 4;2 1 1 9 1 5 7")
    assert [s.kind for s in shapes] == ["ellipse", "rectangle", "polygon"]
    assert [s.box for s in shapes] == [(5, 6, 7, 8), (0, 0, 4, 4), (1, 1, 9, 7)]


def test_zero_size_rectangle_is_valid():
    assert parse_annotation("0 7 7 7 9")[0].box == (7, 7, 7, 9)


def test_format_is_the_inverse_of_parse():
    text = "1 5 6 7 8;0 0 0 4 4;2 1 1 9 1 5 7"
    assert format_annotation(parse_annotation(text)) == text
    assert format_annotation([]) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3 1 2 3 4", "object 1: unknown shape type '3'"),
        ("x 1 2 3 4", "unknown shape type 'x'"),
        ("0 1 2 3 4;4 1 2 3 4", "object 2: unknown shape type '4'"),
        ("0 1 2 3", "a rectangle needs 4 coordinates (x1 y1 x2 y2), got 3"),
        ("1 1 2 3 4 5", "an ellipse needs 4 coordinates"),
        ("0", "rectangle needs 4 coordinates (x1 y1 x2 y2), got 0"),
        ("2 1 2 3 4 5", "odd number (5)"),
        ("2 1 2 3 4", "at least 3 points, got 2"),
        ("0 1.5 2 3 4", "coordinate '1.5' is not a non-negative integer"),
        ("0 a 2 3 4", "coordinate 'a'"),
        ("0 -1 2 3 4", "coordinate '-1'"),
        ("0 1 2 3 4;;1 1 2 3 4", "object 2 is empty"),
        ("0 1 2 3 4;", "object 2 is empty"),
        (";0 1 2 3 4", "object 1 is empty"),
        ("0 30 2 10 4", "rectangle corners are reversed (x1 30, y1 2, x2 10, y2 4"),
        ("1 1 20 3 4", "ellipse corners are reversed"),
    ],
)
def test_malformed_annotations_say_what_is_wrong(text, message):
    with pytest.raises(ValueError) as error:
        parse_annotation(text)
    assert message in str(error.value)
