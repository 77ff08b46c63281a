"""Bad input gets one clear line naming the file (and row), a non-zero exit, and no output."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib

from PIL import Image

from conftest import assert_one_line_error, make_dataset, run_cli

GOOD = {
    "train": [("00001.jpg", "0 10 10 40 40"), ("00002.jpg", "")],
    "dev": [("00003.jpg", "1 5 5 20 20")],
    "test": [("00004.jpg", "")],
}


def _png_declaring(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header is rewritten to declare ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), data (13), crc (4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21]))
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def _split(root, out):
    return run_cli("split", "--dataset", root, "--out", out)


def _assert_no_output(out):
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_missing_dataset_folder(tmp_path):
    result = _split(tmp_path / "nowhere", tmp_path / "out")
    assert_one_line_error(result, "nowhere", "dataset folder not found")
    _assert_no_output(tmp_path / "out")


def test_train_too_small_for_the_test_carve_out(tmp_path):
    root = make_dataset(tmp_path / "d", {k: v for k, v in GOOD.items() if k != "test"})
    assert_one_line_error(_split(root, tmp_path / "out"), "--test-size 1000 must be between")


def test_folder_without_object_cxr_csvs(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(_split(tmp_path / "empty", tmp_path / "out"), "no train.csv")


def test_csv_without_annotation_column(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "train.csv").write_text("image_name,label\n00001.jpg,1\n")
    result = _split(root, tmp_path / "out")
    assert_one_line_error(result, "train.csv", "no 'annotation' column")
    _assert_no_output(tmp_path / "out")


def test_malformed_annotation_names_file_and_line(tmp_path):
    rows = {**GOOD, "dev": [("00003.jpg", ""), ("00004.jpg", "0 5 5 20")]}
    root = make_dataset(tmp_path / "d", rows)
    result = _split(root, tmp_path / "out")
    assert_one_line_error(result, "dev.csv, line 3", "rectangle needs 4 coordinates")
    _assert_no_output(tmp_path / "out")


def test_unsafe_image_names(tmp_path):
    for name in ("../00001.jpg", "sub/00001.jpg", "..", ".hidden.jpg", "a\\b.jpg"):
        root = make_dataset(tmp_path / "d", GOOD)
        (root / "train.csv").write_text(f"image_name,annotation\n00001.jpg,\n{name},\n")
        assert_one_line_error(
            _split(root, tmp_path / "out"), "train.csv, line 3", "is not a plain file name"
        )
        _assert_no_output(tmp_path / "out")
        shutil.rmtree(root)


def test_duplicate_image_name(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "train.csv").write_text("image_name,annotation\n00001.jpg,\n00001.jpg,\n")
    assert_one_line_error(
        _split(root, tmp_path / "out"),
        "line 3",
        "duplicate image_name '00001.jpg' (first on line 2)",
    )


def test_overlapping_splits(tmp_path):
    root = make_dataset(tmp_path / "d", {**GOOD, "dev": [("00001.jpg", "")]})
    assert_one_line_error(
        _split(root, tmp_path / "out"), "dev.csv, line 2", "also in", "must not overlap"
    )


def test_missing_image(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "train" / "00002.jpg").unlink()
    assert_one_line_error(
        _split(root, tmp_path / "out"), "train.csv, line 3", "00002.jpg", "not found"
    )
    _assert_no_output(tmp_path / "out")


def test_zero_byte_image(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "dev" / "00003.jpg").write_bytes(b"")
    assert_one_line_error(_split(root, tmp_path / "out"), "00003.jpg", "empty (0 bytes)")


def test_not_an_image(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "dev" / "00003.jpg").write_text("this is not a JPEG")
    assert_one_line_error(_split(root, tmp_path / "out"), "00003.jpg", "not a readable image")


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    (root / "dev" / "00003.jpg").write_bytes(_png_declaring(10_000, 10_000))
    assert_one_line_error(_split(root, tmp_path / "out"), "00003.jpg", "decompression bomb")
    (root / "dev" / "00003.jpg").write_bytes(_png_declaring(60_000, 60_000))  # PIL's own guard
    assert_one_line_error(_split(root, tmp_path / "out"), "00003.jpg", "decompression bomb")


def test_sixteen_bit_and_rgba_images_are_refused(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    for mode in ("I;16", "RGBA"):
        Image.new(mode, (50, 50)).save(root / "dev" / "00003.jpg", format="PNG")
        assert_one_line_error(
            _split(root, tmp_path / "out"), "00003.jpg", f"unsupported image mode '{mode}'"
        )


def test_shape_outside_the_image(tmp_path):
    root = make_dataset(tmp_path / "d", {**GOOD, "dev": [("00003.jpg", "0 5 5 250 20")]})
    assert_one_line_error(
        _split(root, tmp_path / "out"), "dev.csv, line 2", "outside the 200x100 image"
    )


def test_truncated_image_leaves_no_cache(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    assert _split(root, tmp_path / "splits").exit_code == 0
    image = root / "train" / "00002.jpg"
    buffer = io.BytesIO()
    Image.effect_noise((400, 300), 40).save(buffer, format="JPEG")
    image.write_bytes(buffer.getvalue())
    _split(root, tmp_path / "splits")  # refresh the manifest's size for the new image
    image.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    cache = tmp_path / "cache" / "train.h5"
    result = run_cli(
        "prepare",
        tmp_path / "splits" / "train.csv",
        "--size",
        32,
        "--out",
        cache,
        "--num-workers",
        1,
    )
    assert_one_line_error(result, "train.csv, line 3", "00002.jpg", "truncated or corrupt")
    assert list((tmp_path / "cache").iterdir()) == []  # neither the cache nor a temporary file


def test_stale_manifest_size(tmp_path):
    root = make_dataset(tmp_path / "d", GOOD)
    assert _split(root, tmp_path / "splits").exit_code == 0
    Image.new("L", (120, 90)).save(root / "dev" / "00003.jpg", format="JPEG")
    result = run_cli(
        "prepare", tmp_path / "splits" / "val.csv", "--size", 32, "--out", tmp_path / "val.h5"
    )
    assert_one_line_error(result, "val.csv, line 2", "is 120x90, the manifest says 200x100")
    assert not (tmp_path / "val.h5").exists()


def test_manifest_errors(tmp_path):
    result = run_cli("prepare", tmp_path / "none.csv", "--size", 32, "--out", tmp_path / "c.h5")
    assert_one_line_error(result, "none.csv", "not found")
    bad = tmp_path / "bad.csv"
    bad.write_text("image_name,annotation\n00001.jpg,\n")
    result = run_cli("prepare", bad, "--size", 32, "--out", tmp_path / "c.h5")
    assert_one_line_error(result, "bad.csv", "no 'label' column")
    root = make_dataset(tmp_path / "d", GOOD)
    assert _split(root, tmp_path / "splits").exit_code == 0
    manifest = tmp_path / "splits" / "train.csv"
    manifest.write_text(manifest.read_text().replace(",1,200,", ",0,200,"))
    result = run_cli("prepare", manifest, "--size", 32, "--out", tmp_path / "c.h5")
    assert_one_line_error(result, "train.csv, line 2", "label 0 disagrees")
    result = run_cli(
        "prepare", tmp_path / "splits" / "val.csv", "--size", 4, "--out", tmp_path / "c.h5"
    )
    assert_one_line_error(result, "--size 4")
    assert not (tmp_path / "c.h5").exists()


def test_cache_that_is_not_hdf5(tmp_path):
    from xiqa.cache import load_cache
    from xiqa.errors import InputError

    fake = tmp_path / "fake.h5"
    fake.write_text("not hdf5")
    try:
        load_cache(fake)
    except InputError as exc:
        assert "fake.h5: not an HDF5 image cache" in str(exc)
    else:
        raise AssertionError("load_cache accepted a text file")


def test_synth_refuses_to_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    result = run_cli("synth", tmp_path / "out", "--n-train", 2, "--n-dev", 1, "--n-test", 1)
    assert_one_line_error(result, "already exists")
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


def test_console_script_prints_one_line_and_exits_1(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xiqa.cli",
            "split",
            "--dataset",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"xiqa: error: {tmp_path / 'missing'}: dataset folder not found"
    ]
