"""The dataset reader, split manifests and the HDF5 image cache."""

from __future__ import annotations

import csv
import zipfile

import h5py
import numpy as np
import pytest

from xiqa.data.annotation import parse_annotation
from xiqa.data.cache import load_cache, prepare_cache
from xiqa.data.objectcxr import ObjectCXR
from xiqa.data.split import (
    MANIFEST_COLUMNS,
    make_splits,
    read_manifest,
    stratified_sample,
    write_manifest,
)
from xiqa.errors import InputError

from conftest import make_dataset, zip_dataset


def _manifest_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_all(splits, out):
    for name, records in splits.items():
        write_manifest(records, out / f"{name}.csv")


def _h5_contents(path):
    with h5py.File(path) as h5:
        return {key: h5[key][()] for key in h5}, dict(h5.attrs)


def test_folders_and_zips_give_identical_manifests_and_caches(synthetic_root, tmp_path):
    zipped = zip_dataset(synthetic_root, tmp_path / "zipped")
    caches = {}
    for kind, root in (("folders", synthetic_root), ("zips", zipped)):
        out = tmp_path / kind
        _write_all(make_splits(root), out)
        prepare_cache(out / "val.csv", 32, out / "val.h5", num_workers=1)
        caches[kind] = _h5_contents(out / "val.h5")
    for split in ("train", "val", "test"):
        folders = _manifest_rows(tmp_path / "folders" / f"{split}.csv")
        zips = _manifest_rows(tmp_path / "zips" / f"{split}.csv")
        assert [r["path"] for r in zips] == [str(zipped / f"{r['source']}.zip") for r in zips]
        assert [r["member"] for r in zips] == [f"{r['source']}/{r['image_name']}" for r in zips]
        strip = [{k: v for k, v in r.items() if k not in ("path", "member")} for r in folders]
        assert strip == [{k: v for k, v in r.items() if k not in ("path", "member")} for r in zips]
    (folder_data, folder_attrs), (zip_data, zip_attrs) = caches["folders"], caches["zips"]
    assert folder_attrs == zip_attrs
    assert folder_data.keys() == zip_data.keys()
    for key in folder_data:
        np.testing.assert_array_equal(folder_data[key], zip_data[key])
    assert not (zipped / "train").exists() and not (zipped / "dev").exists()  # never extracted


def test_manifests_follow_the_design(synthetic_root, tmp_path):
    _write_all(make_splits(synthetic_root), tmp_path)
    rows = {s: _manifest_rows(tmp_path / f"{s}.csv") for s in ("train", "val", "test")}
    assert [len(rows[s]) for s in ("train", "val", "test")] == [30, 10, 10]
    assert list(rows["val"][0]) == list(MANIFEST_COLUMNS)
    assert {r["source"] for r in rows["val"]} == {"dev"}
    assert {r["source"] for r in rows["test"]} == {"test"}
    names = [r["image_name"] for s in rows.values() for r in s]
    assert len(names) == len(set(names))
    for row in rows["train"]:
        assert int(row["label"]) == int(bool(parse_annotation(row["annotation"])))
        assert int(row["width"]) != int(row["height"])  # Object-CXR sizes are not square


def test_stratified_sample_by_hand():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    chosen = stratified_sample(labels, 5, seed=0)
    assert len(chosen) == 5 and len(set(chosen.tolist())) == 5
    assert list(chosen) == sorted(chosen)
    assert (labels[chosen] == 0).sum() == 3 and (labels[chosen] == 1).sum() == 2
    # 7 of 10 with 3 positives: quotas 4.9 and 2.1 round by largest remainder to 5 and 2.
    chosen = stratified_sample(np.array([0] * 7 + [1] * 3), 7, seed=1)
    assert (np.array([0] * 7 + [1] * 3)[chosen] == 1).sum() == 2
    np.testing.assert_array_equal(stratified_sample(labels, 5, 0), stratified_sample(labels, 5, 0))
    with pytest.raises(InputError, match="--test-size 10 must be between 1 and 9"):
        stratified_sample(labels, 10, 0)


def test_without_test_csv_test_is_a_stratified_seeded_carve_out(tmp_path):
    rows = {
        "train": [(f"{i:05d}.jpg", "0 1 1 5 5" if i % 4 == 0 else "") for i in range(1, 41)],
        "dev": [("00041.jpg", ""), ("00042.jpg", "1 2 2 8 8")],
    }
    root = make_dataset(tmp_path / "d", rows)
    splits = make_splits(root, test_size=8, seed=5)
    train, test = splits["train"], splits["test"]
    assert len(train) == 32 and len(test) == 8
    assert sum(r.label for r in test) == 2  # 10 of 40 train images are positive: a quarter
    assert {r.image_name for r in train}.isdisjoint(r.image_name for r in test)
    assert {r.source for r in test} == {"train"}
    again = make_splits(root, test_size=8, seed=5)["test"]
    other = make_splits(root, test_size=8, seed=6)["test"]
    assert [r.image_name for r in again] == [r.image_name for r in test]
    assert [r.image_name for r in other] != [r.image_name for r in test]


def test_cache_boxes_equal_hand_scaled_annotations(tmp_path):
    rows = {
        "train": [("a.jpg", "0 10 20 50 80;2 100 10 150 30 120 90"), ("b.jpg", "")],
        "dev": [("c.jpg", "1 0 0 300 200")],
    }
    sizes = {"a.jpg": (200, 100), "b.jpg": (64, 80), "c.jpg": (300, 200)}
    root = make_dataset(tmp_path / "d", rows, sizes)
    _write_all(make_splits(root, test_size=1), tmp_path)
    prepare_cache(tmp_path / "train.csv", 64, tmp_path / "train.h5", num_workers=1)
    cache = load_cache(tmp_path / "train.h5")
    # test_size=1 carved one of the two train images out; find which one stayed.
    if cache.image_name == ["a.jpg"]:
        # a.jpg is 200x100 -> 64x64: x * 0.32, y * 0.64.
        expected = [[0, 3.2, 12.8, 16.0, 51.2], [0, 32.0, 6.4, 48.0, 57.6]]
    else:
        assert cache.image_name == ["b.jpg"]
        expected = np.zeros((0, 5))
    np.testing.assert_allclose(cache.boxes, expected, atol=1e-3)
    prepare_cache(tmp_path / "val.csv", 64, tmp_path / "val.h5", num_workers=1)
    val = load_cache(tmp_path / "val.h5")
    np.testing.assert_allclose(val.boxes, [[0, 0, 0, 64, 64]], atol=1e-3)
    assert val.images.dtype == np.uint8 and val.images.shape == (1, 64, 64)
    assert val.width.tolist() == [300] and val.height.tolist() == [200]
    assert val.label.tolist() == [1]


def test_cache_layout_and_workers_agree(synthetic_root, tmp_path):
    _write_all(make_splits(synthetic_root), tmp_path)
    prepare_cache(tmp_path / "train.csv", 48, tmp_path / "one.h5", num_workers=1)
    prepare_cache(tmp_path / "train.csv", 48, tmp_path / "two.h5", num_workers=2)
    one, two = _h5_contents(tmp_path / "one.h5"), _h5_contents(tmp_path / "two.h5")
    for key in one[0]:
        np.testing.assert_array_equal(one[0][key], two[0][key])
    cache = load_cache(tmp_path / "one.h5")
    records = read_manifest(tmp_path / "train.csv")
    assert cache.images.shape == (30, 48, 48) and cache.images.dtype == np.uint8
    assert cache.image_name == [r.image_name for r in records]
    assert cache.label.tolist() == [r.label for r in records]
    assert cache.images.std() > 10  # real content, not a constant
    # The cache is the resized image: compare one against PIL directly.
    from PIL import Image

    index = 3
    ref = Image.open(records[index].image.path)
    ref.draft("L", (48, 48))
    expected = np.asarray(ref.convert("L").resize((48, 48), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(cache.images[index], expected)
    for index, record in enumerate(records):
        boxes = cache.boxes_of(index)
        assert len(boxes) == len(record.shapes)


def test_zip_archive_without_folder_prefix_is_read(synthetic_root, tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for split in ("train", "dev"):
        (root / f"{split}.csv").write_bytes((synthetic_root / f"{split}.csv").read_bytes())
        with zipfile.ZipFile(root / f"{split}.zip", "w") as archive:
            for image in (synthetic_root / split).iterdir():
                archive.write(image, image.name)
    records = ObjectCXR(root).records("dev")
    assert [r.image.member for r in records][:2] == ["00031.jpg", "00032.jpg"]
