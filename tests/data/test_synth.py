"""The synthetic Object-CXR: exact format, determinism and a credible content."""

from __future__ import annotations

import csv
import filecmp
import io

import numpy as np
from PIL import Image

from xiqa.data.annotation import check_shapes_inside, parse_annotation
from xiqa.data.synth import _anatomy, _place, synth_image, write_synthetic

from conftest import run_cli


def _tree(root):
    return sorted(p.relative_to(root) for p in root.rglob("*"))


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_synthetic(tmp_path / name, n_train=6, n_dev=2, n_test=2, seed=seed)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _tree(a) == _tree(b) == _tree(c)
    files = [p for p in _tree(a) if (a / p).is_file()]
    assert len(files) == 13  # 3 CSVs + 10 images
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(a, c, files, shallow=False)
    assert len(mismatch) >= 10


def test_parallel_workers_write_the_same_bytes(tmp_path):
    write_synthetic(tmp_path / "one", n_train=6, n_dev=2, n_test=2, seed=1, num_workers=1)
    write_synthetic(tmp_path / "two", n_train=6, n_dev=2, n_test=2, seed=1, num_workers=2)
    files = [p for p in _tree(tmp_path / "one") if (tmp_path / "one" / p).is_file()]
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "one", tmp_path / "two", files, shallow=False)
    assert mismatch == [] and errors == []


def test_object_cxr_format(synthetic_root):
    names = []
    for split, count in (("train", 30), ("dev", 10), ("test", 10)):
        with open(synthetic_root / f"{split}.csv", newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == ["image_name", "annotation"]
            rows = list(reader)
        assert len(rows) == count
        for name, annotation in rows:
            names.append(name)
            image = Image.open(synthetic_root / split / name)
            assert image.format == "JPEG" and image.mode == "L"
            assert image.width != image.height
            assert 200 < image.width < 450 and 300 < image.height < 450
            check_shapes_inside(parse_annotation(annotation), *image.size)
    # Names continue across splits as in Object-CXR: 00001.. train, then dev, then test.
    assert names == [f"{i:05d}.jpg" for i in range(1, 51)]


def test_statistics_of_labels_shapes_and_objects():
    kinds, positives, multiple = set(), 0, 0
    for index in range(160):
        jpeg, shapes = synth_image(11, "train", index)
        positives += bool(shapes)
        multiple += len(shapes) >= 2
        kinds.update(s.kind for s in shapes)
        if shapes:
            image = np.asarray(Image.open(io.BytesIO(jpeg)))
            x0, y0, x1, y1 = shapes[0].box
            # A foreign object is radio-dense: brighter than the image as a whole.
            assert image[y0:y1, x0:x1].max() > np.percentile(image, 90)
    assert 0.4 <= positives / 160 <= 0.6
    assert multiple >= 10
    assert kinds == {"rectangle", "ellipse", "polygon"}


def test_unannotated_objects_stay_outside_the_lung_fields():
    rng = np.random.default_rng(0)
    _, anatomy = _anatomy(rng, 320, 384)
    assert 0.15 < (anatomy.lungs > 0.5).mean() < 0.5  # lungs cover a plausible share
    placed = 0
    for kind in ("button", "electrode", "wire", "clip"):
        for _ in range(10):
            obj = _place(rng, anatomy, 320, 384, kind, inside=False)
            if obj is None:
                continue
            placed += 1
            h, w = obj.alpha.shape
            under = anatomy.lungs[obj.y0 : obj.y0 + h, obj.x0 : obj.x0 + w][obj.alpha > 0.1]
            assert under.max() <= 0.05
        obj = _place(rng, anatomy, 320, 384, kind, inside=True)
        if obj is not None:
            h, w = obj.alpha.shape
            assert anatomy.lungs[obj.y0 : obj.y0 + h, obj.x0 : obj.x0 + w].max() > 0.5
    assert placed >= 20


def test_synth_command(tmp_path):
    result = run_cli(
        "synth", tmp_path / "s", "--n-train", 3, "--n-dev", 2, "--n-test", 2, "--seed", 4
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "dev",
        "dev.csv",
        "test",
        "test.csv",
        "train",
        "train.csv",
    ]
    assert [p.name for p in (tmp_path).iterdir()] == ["s"]  # no temporary left behind
