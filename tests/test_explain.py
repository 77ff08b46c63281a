"""xiqa explain: new radiographs (JPEG, PNG, DICOM) preprocessed exactly as in training, the DICOM
grey mapping checked against hand-computed values, the JSON record, the peak mapped back to
original pixels, the overlay, and bad input leaving nothing behind."""

from __future__ import annotations

import hashlib
import json

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from xiqa import __version__, saliency
from xiqa.data.dicom import read_dicom_grey
from xiqa.data.split import read_manifest
from xiqa.evaluation.pointing import peak
from xiqa.explain import OVERLAY_ALPHA, read_radiograph
from xiqa.model.network import build_model, load_model, save_model, to_model_input
from xiqa.model.predict import predict_probs
from xiqa.saliency.registry import Family

from conftest import assert_one_line_error, run_cli

SIZE = 32
DIGITAL_XRAY = "1.2.840.10008.5.1.4.1.1.1.1"  # SOP class: Digital X-Ray Image, for presentation


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, build_model("resnet18").eval(), {"arch": "resnet18", "image_size": SIZE})
    return path


def write_dicom(
    path,
    pixels,
    photometric="MONOCHROME2",
    bits_stored=12,
    signed=False,
    transfer_syntax=ExplicitVRLittleEndian,
    **attributes,
):
    """A Part 10 DICOM file of 16-bit ``pixels`` (stored as given, high bits included)."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    meta.MediaStorageSOPClassUID = DIGITAL_XRAY
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DIGITAL_XRAY, meta.MediaStorageSOPInstanceUID
    pixels = np.asarray(pixels)
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    for key, value in attributes.items():
        setattr(ds, key, value)
    if transfer_syntax == ExplicitVRLittleEndian:
        ds.PixelData = pixels.astype("<u2").tobytes()
    else:  # compressed: a frame that only a decoder for the syntax could read
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60)])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------------------------------------
# Preprocessing: the cache's path for JPEG and PNG, the same resize for DICOM.


def test_jpeg_inputs_become_exactly_the_cached_images(tiny_caches):
    from xiqa.data.cache import load_cache

    cache = load_cache(tiny_caches["val"])
    records = read_manifest(tiny_caches["val"].with_suffix(".csv"))
    for index, record in enumerate(records):
        radiograph = read_radiograph(record.image.path, SIZE)
        assert radiograph.image_format == "JPEG"
        np.testing.assert_array_equal(radiograph.pixels, cache.images[index])
        assert (radiograph.width, radiograph.height) == (cache.width[index], cache.height[index])


def test_png_input_is_resized_like_the_cache_and_displayed_at_its_aspect_ratio(tmp_path):
    ramp = (np.add.outer(np.arange(150) * 3, np.arange(300)) % 256).astype(np.uint8)
    Image.fromarray(ramp).convert("RGB").save(tmp_path / "ramp.png")
    radiograph = read_radiograph(tmp_path / "ramp.png", SIZE, overlay_side=120)
    expected = Image.fromarray(ramp).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(radiograph.pixels, np.asarray(expected))
    assert (radiograph.image_format, radiograph.width, radiograph.height) == ("PNG", 300, 150)
    assert radiograph.display.size == (120, 60) and radiograph.display.mode == "L"
    small = read_radiograph(tmp_path / "ramp.png", SIZE, overlay_side=1024)
    assert small.display.size == (300, 150)  # never enlarged


# ---------------------------------------------------------------------------------------------
# DICOM grey mapping, by hand.

# 12-bit data in 16-bit words, some with junk in the 4 unused high bits (masked off); modality
# x = 2·stored − 1024; LINEAR window C = 1000, W = 2001 (PS3.3 C.11.2.1.2: C − ½ = 999.5,
# W − 1 = 2000): x ≤ −0.5 → 0, x > 1999.5 → 255, else ((x − 999.5)/2000 + ½)·255, rounded.
STORED_12BIT = np.array(
    [[0xF000 | 0, 512, 700, 1012], [0xA000 | 1300, 1524, 4095, 900]], dtype=np.uint16
)
WINDOWED_8BIT = np.array(
    [
        # x = −1024 → 0; x = 0 → 0.064 → 0; x = 376 → 48.004 → 48; x = 1000 → 127.564 → 128
        [0, 0, 48, 128],
        # x = 1576 → 201.004 → 201; x = 2024 → 255; x = 7166 → 255; x = 776 → 99.004 → 99
        [201, 255, 255, 99],
    ],
    dtype=np.uint8,
)
RESCALE_AND_WINDOW = {
    "RescaleSlope": 2,
    "RescaleIntercept": -1024,
    "WindowCenter": 1000,
    "WindowWidth": 2001,
}


def test_dicom_12_bit_rescale_and_window_give_the_hand_computed_grey(tmp_path):
    path = write_dicom(tmp_path / "IM0001", STORED_12BIT, **RESCALE_AND_WINDOW)  # no suffix
    grey, voi = read_dicom_grey(path)
    np.testing.assert_array_equal(grey, WINDOWED_8BIT)
    assert voi == "window"
    radiograph = read_radiograph(path, SIZE)  # recognised by its DICM marker
    expected = Image.fromarray(WINDOWED_8BIT).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(radiograph.pixels, np.asarray(expected))
    assert (radiograph.image_format, radiograph.width, radiograph.height) == ("DICOM", 4, 2)


def test_dicom_monochrome1_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "m1.dcm", STORED_12BIT, "MONOCHROME1", **RESCALE_AND_WINDOW)
    np.testing.assert_array_equal(read_dicom_grey(path)[0], 255 - WINDOWED_8BIT)


def test_dicom_sigmoid_window_spans_the_full_grey_range(tmp_path):
    stored = np.array([[2048, 2548, 1548]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "sigmoid.dcm",
        stored,
        WindowCenter=2048,
        WindowWidth=1000,
        VOILUTFunction="SIGMOID",
    )
    # 255 / (1 + exp(−4 (x − 2048) / 1000)): 127.5 → 128 (half to even); x = 2548: e^−2 → 224.62
    # → 225; x = 1548: e^2 → 30.38 → 30
    np.testing.assert_array_equal(read_dicom_grey(path)[0], [[128, 225, 30]])


def test_dicom_voi_lut_sequence_is_used_before_a_window(tmp_path):
    lut = Dataset()
    lut.add_new(0x00283002, "US", [4, 100, 12])  # LUT Descriptor: 4 entries from 100, 12 bits
    lut.add_new(0x00283006, "US", [0, 1000, 3000, 4095])  # LUT Data
    stored = np.array([[50, 100, 101], [102, 103, 200]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "lut.dcm",
        stored,
        VOILUTSequence=Sequence([lut]),
        WindowCenter=0,  # would make every pixel white; the LUT wins, as in pydicom
        WindowWidth=1,
        RescaleSlope=1,  # an identity rescale: float modality output, floored to LUT indices
        RescaleIntercept=0,
    )
    grey, voi = read_dicom_grey(path)
    # below the first mapped value → entry 0; beyond the last → entry 3; entry/4095·255 rounded:
    # 0, 0, 1000 → 62.27 → 62; 3000 → 186.81 → 187; 4095 → 255; 4095 → 255
    np.testing.assert_array_equal(grey, [[0, 0, 62], [187, 255, 255]])
    assert voi == "voi-lut"


def test_signed_dicom_without_voi_spans_its_minimum_to_maximum(tmp_path):
    # 12-bit two's complement with junk above bit 11: 0x5800 stores −2048
    stored = np.array([[0x5800, 0x0000], [0x07FF, 0x03E8]], dtype=np.uint16)
    path = write_dicom(tmp_path / "signed.dcm", stored, signed=True)
    grey, voi = read_dicom_grey(path)
    # −2048 → 0; 0 → 2048/4095·255 = 127.53 → 128; 2047 → 255; 1000 → 3048/4095·255 = 189.80
    np.testing.assert_array_equal(grey, [[0, 128], [255, 190]])
    assert voi == "min-max"


# ---------------------------------------------------------------------------------------------
# The command: records, overlays, the peak in original pixels.


def test_explain_records_match_independent_computations(model_file, tiny_caches, tmp_path):
    from xiqa.data.cache import load_cache

    cache = load_cache(tiny_caches["val"])
    jpegs = [r.image.path for r in read_manifest(tiny_caches["val"].with_suffix(".csv"))][:3]
    dicom = write_dicom(tmp_path / "scan.dcm", STORED_12BIT, **RESCALE_AND_WINDOW)
    out = tmp_path / "out"
    entry = {"family": "input-x-gradient"}
    result = run_cli(
        "explain", *jpegs, dicom, "--model", model_file, "--method", "ixg",
        "--params", json.dumps(entry), "--out", out, "--batch-size", "3", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stems = [p.split("/")[-1][:-4] for p in jpegs] + ["scan"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.ixg.{ext}" for stem in stems for ext in ("json", "png")
    )
    records = [json.loads((out / f"{stem}.ixg.json").read_text()) for stem in stems]

    model, _ = load_model(model_file)
    pixels = np.concatenate([cache.images[:3], read_radiograph(dicom, SIZE).pixels[None]])
    probs = predict_probs(model, pixels, batch_size=4, device=torch.device("cpu"))
    x = to_model_input(torch.from_numpy(pixels))
    maps = saliency.explain(model, x, torch.ones(4, dtype=torch.long), "input-x-gradient")
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    for k, record in enumerate(records):
        assert record["prob"] == pytest.approx(float(probs[k]), abs=1e-5)
        px, py, ties = peak(maps[k].numpy())
        assert (record["peak_input_x"], record["peak_input_y"], record["n_ties"]) == (px, py, ties)
        width, height = record["width"], record["height"]
        assert record["peak_x"] == pytest.approx((px + 0.5) * width / SIZE)
        assert record["peak_y"] == pytest.approx((py + 0.5) * height / SIZE)
        assert record["checkpoint_sha256"] == digest
        assert record["method"] == "ixg" and record["params"] == entry
        assert (record["input_size"], record["xiqa_version"]) == (SIZE, __version__)
        assert record["target"] == 1 and record["overlay"] == f"{stems[k]}.ixg.png"
        with Image.open(out / record["overlay"]) as overlay:
            assert overlay.mode == "RGB"
            assert overlay.size == (width, height)  # small inputs keep their size
    assert records[0]["input"] == str(jpegs[0]) and records[0]["image_format"] == "JPEG"
    assert (records[0]["width"], records[0]["height"]) == (cache.width[0], cache.height[0])
    assert records[3]["image_format"] == "DICOM" and records[3]["voi"] == "window"
    assert (records[3]["width"], records[3]["height"]) == (4, 2)


PEAK_CELL = (20, 22)  # (x, y) in the 32×32 map


@pytest.fixture
def known_peak(monkeypatch):
    """A registered family whose map is 1 at PEAK_CELL and 0 elsewhere, with P(object) = 0.75."""

    def family(model, images, targets):
        maps = torch.zeros(len(images), *images.shape[-2:])
        maps[:, PEAK_CELL[1], PEAK_CELL[0]] = 1.0
        logits = torch.tensor([[0.0, float(np.log(3.0))]]).repeat(len(images), 1)
        return maps, logits

    entry = Family("known-peak", family, label="Known peak", kind="gradient", params={})
    monkeypatch.setitem(saliency.FAMILIES, "known-peak", entry)


def test_peak_maps_to_original_pixel_centres_and_the_overlay_shows_it(
    model_file, known_peak, tmp_path
):
    Image.new("L", (300, 150), 100).save(tmp_path / "flat.png")
    out = tmp_path / "out"
    result = run_cli(
        "explain", tmp_path / "flat.png", "--model", model_file, "--method", "known-peak",
        "--out", out, "--overlay-size", "200", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "flat.known-peak.json").read_text())
    # Input pixel (20, 22) of 32×32 is [20, 21) × [22, 23); its centre (20.5, 22.5) scaled by
    # W/S = 300/32 and H/S = 150/32 is (192.1875, 105.46875) in the 300×150 original.
    assert (record["peak_x"], record["peak_y"]) == (192.1875, 105.46875)
    assert (record["peak_input_x"], record["peak_input_y"], record["n_ties"]) == (20, 22, 1)
    assert record["prob"] == pytest.approx(0.75)
    assert record["params"] == {"family": "known-peak"}

    overlay = np.asarray(Image.open(out / "flat.known-peak.png"), dtype=np.float64)
    assert overlay.shape == (100, 200, 3)  # 300×150 shrunk to a longest side of 200
    # The hottest colour (map value 1 over grey 100) sits at the peak scaled by 2/3:
    # (128.125, 70.3125), display pixel (128, 70).
    hottest = (1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * 255 * np.array(
        matplotlib.colormaps["turbo"](1.0)[:3]
    )
    distance = np.abs(overlay - hottest).sum(2)
    distance[(overlay == overlay[..., :1]).all(2)] = np.inf  # grey: radiograph, ring, caption
    y, x = np.unravel_index(distance.argmin(), distance.shape)
    assert abs(x - 128) <= 1 and abs(y - 70) <= 1, (x, y)
    # Far from the peak the map is 0: the radiograph shows through unchanged.
    np.testing.assert_array_equal(overlay[90, 10], [100, 100, 100])


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file, nothing left behind.


def _explain(model_file, out, *images):
    return run_cli(
        "explain", *images, "--model", model_file, "--method", "input-x-gradient",
        "--out", out, "--device", "cpu",
    )  # fmt: skip


@pytest.fixture
def good_png(tmp_path):
    Image.new("L", (40, 30), 90).save(tmp_path / "good.png")
    return tmp_path / "good.png"


@pytest.mark.parametrize(
    ("name", "make", "fragments"),
    [
        (
            "jls.dcm",
            lambda p: write_dicom(p, STORED_12BIT, transfer_syntax=JPEGLSLossless),
            ["cannot decode the DICOM pixel data", "JPEG-LS Lossless", "1.2.840.10008.1.2.4.80"],
        ),
        ("junk.dcm", lambda p: p.write_bytes(b"not a dicom " * 30), ["not a readable DICOM"]),
        ("junk.png", lambda p: p.write_bytes(b"not a png " * 30), ["not a readable image"]),
        (
            "colour.dcm",
            lambda p: write_dicom(p, STORED_12BIT, photometric="RGB"),
            ["'RGB'", "not greyscale"],
        ),
        (
            "frames.dcm",
            lambda p: write_dicom(p, np.stack([STORED_12BIT] * 2), NumberOfFrames=2),
            ["multi-frame DICOM (2 frames)"],
        ),
        ("missing.jpg", lambda p: None, ["image file not found"]),
    ],
)
def test_bad_inputs_give_one_line_and_leave_nothing(
    model_file, good_png, tmp_path, name, make, fragments
):
    bad = tmp_path / name
    make(bad)
    out = tmp_path / "out"
    result = _explain(model_file, out, good_png, bad)  # the good one is staged first
    assert_one_line_error(result, str(bad), *fragments)
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("x")
    assert _explain(model_file, existing, good_png, bad).exit_code == 1
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_inputs_with_the_same_stem_are_refused(model_file, good_png, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.new("L", (40, 30), 90).save(other / "good.jpg")
    out = tmp_path / "out"
    result = _explain(model_file, out, good_png, other / "good.jpg")
    assert_one_line_error(result, str(good_png), str(other / "good.jpg"), "good.input-x-gradient")
    assert not out.exists()


def test_bad_method_and_params(model_file, good_png, tmp_path):
    out = tmp_path / "out"
    result = _explain(model_file, out, good_png)
    assert result.exit_code == 0, result.output  # the preset name alone is enough
    bad_json = ["--params", "{oops"]
    result = run_cli("explain", good_png, "--model", model_file, "--method", "x", *bad_json,
                     "--out", tmp_path / "o2")  # fmt: skip
    assert_one_line_error(result, "--params is not valid JSON")
    result = run_cli("explain", good_png, "--model", model_file, "--method", "no-such-method",
                     "--out", tmp_path / "o3")  # fmt: skip
    assert_one_line_error(result, "unknown method 'no-such-method'")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
