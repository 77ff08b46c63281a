"""The bad-input corpus: every command and the workflow config, each case a user's mistake.

Each case makes its inputs in a fresh folder, then runs one command. It must fail with exactly one
line ``xiqa: error: ...`` naming the file, row or key, a non-zero exit and no traceback, and leave
every file as it was: nothing written (not even a temporary), nothing removed, nothing changed,
also in the shared inputs (caches, model, shards) that the cases read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from xiqa.evaluation.shards import run_saliency
from xiqa.model.network import build_model, save_model

from conftest import assert_one_line_error, copy_workflow, make_dataset, run_cli, run_snakemake

GOOD = {
    "train": [("00001.jpg", "0 10 10 40 40"), ("00002.jpg", "")],
    "dev": [("00003.jpg", "1 5 5 20 20")],
    "test": [("00004.jpg", "")],
}
GRADCAM = '{"family": "gradcam", "layer": "layer4.1"}'


@pytest.fixture(scope="module")
def world(tiny_caches, tmp_path_factory) -> dict[str, Path]:
    """Good inputs the later stages read: caches, a model, a method's two val shards, a results
    folder. Cases must leave all of it untouched."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    save_model(
        root / "model.pt", build_model("resnet18").eval(), {"arch": "resnet18", "image_size": 32}
    )
    torch.manual_seed(1)
    save_model(
        root / "other.pt", build_model("resnet18").eval(), {"arch": "resnet18", "image_size": 32}
    )
    shards = [root / f"gradcam-{k}.h5" for k in range(2)]
    for k, out in enumerate(shards):
        run_saliency(
            root / "model.pt", tiny_caches["val"], "gradcam", k, 2, out, json.loads(GRADCAM)
        )
    run_saliency(
        root / "model.pt",
        tiny_caches["test"],
        "gradcam",
        0,
        1,
        root / "test-0.h5",
        json.loads(GRADCAM),
    )
    return {
        "root": root,
        "model": root / "model.pt",
        "other": root / "other.pt",
        "shards": shards,
        "test_shard": root / "test-0.h5",
        **tiny_caches,
    }


# --- helpers that make bad inputs ---------------------------------------------------------------


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


def _truncated(source: Path, dest: Path) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def _split_args(root: Path, tmp: Path) -> list:
    return ["split", "--dataset", root, "--out", tmp / "splits"]


def _good_splits(tmp: Path) -> Path:
    root = make_dataset(tmp / "d", GOOD)
    assert run_cli(*_split_args(root, tmp)).exit_code == 0
    return tmp / "splits"


def _prepare_args(manifest: Path, tmp: Path, size: int = 32) -> list:
    return ["prepare", manifest, "--size", size, "--out", tmp / "cache.h5", "--num-workers", 1]


def _train_args(w, tmp: Path, train=None, val=None) -> list:
    return [
        "train",
        "--train",
        train or w["train"],
        "--val",
        val or w["val"],
        "--out",
        tmp / "run",
        "--arch",
        "resnet18",
        "--epochs",
        1,
        "--no-augment",
        "--warmup-iters",
        0,
    ]


def _saliency_args(w, tmp: Path, *extra, model=None, images=None) -> list:
    return [
        "saliency",
        "--model",
        model or w["model"],
        "--images",
        images or w["val"],
        "--out",
        tmp / "s.h5",
        *extra,
    ]


def _pointing_args(w, tmp: Path, *shards, tau=3, model=None, images=None) -> list:
    return [
        "pointing",
        "--model",
        model or w["model"],
        "--images",
        images or w["val"],
        "--tau",
        tau,
        "--out",
        tmp / "p.csv",
        *(shards or w["shards"]),
    ]


def _copy_shard(w, tmp: Path, k: int = 0) -> Path:
    return Path(shutil.copy(w["shards"][k], tmp / f"shard-{k}.h5"))


def _edit_hdf5(path: Path, edit: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "a") as h5:
        edit(h5)
    return path


def _sanity_args(w, out: Path, *extra) -> list:
    return [
        "sanity",
        "--model",
        w["model"],
        "--images",
        w["val"],
        "--method",
        "gradcam",
        "--params",
        GRADCAM,
        "--out",
        out,
        *extra,
    ]


def _results(
    w, tmp: Path, pointing_text: str | None = None, predictions: bool = True, sanity: bool = True
) -> Path:
    """A results folder for `xiqa aggregate` with one method (gradcam) on val."""
    results = tmp / "results"
    (results / "pointing" / "gradcam").mkdir(parents=True)
    run_cli(*_pointing_args(w, tmp))
    text = pointing_text if pointing_text is not None else (tmp / "p.csv").read_text()
    (tmp / "p.csv").unlink()
    (results / "pointing" / "gradcam" / "val.csv").write_text(text)
    if sanity:
        run_cli(*_sanity_args(w, results / "sanity" / "gradcam.csv", "--n-images", 2))
    if predictions:
        (results / "predictions").mkdir()
        run_cli(
            "predict",
            "--model",
            w["model"],
            "--images",
            w["val"],
            "--out",
            results / "predictions" / "val.csv",
            "--metrics",
            results / "predictions" / "val.json",
        )
    return results


def _aggregate_args(results: Path) -> list:
    methods = json.dumps({"gradcam": json.loads(GRADCAM)})
    return ["aggregate", "--results", results, "--methods", methods, "--splits", "val", "--tau", 3]


class _Exploit:
    """Pickled, it would run ``touch`` when unpickled: weights_only loading must refuse it."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


# --- the corpus: name -> case(tmp, world) -> (command arguments, fragments of the message) -------

CASES: dict[str, Callable] = {}


def case(name: str):
    def add(function):
        CASES[name] = function
        return function

    return add


def _annotation_case(name: str, annotation: str, *fragments: str) -> None:
    @case(f"split: annotation {name}")
    def _(tmp, w):
        root = make_dataset(tmp / "d", {**GOOD, "dev": [("00003.jpg", annotation)]})
        return _split_args(root, tmp), ["dev.csv, line 2", *fragments]


for _name, _annotation, _fragments in [
    ("of unknown type", "3 5 5 20 20", ("object 1: unknown shape type",)),
    ("rectangle with three numbers", "0 5 5 20", ("rectangle needs 4 coordinates",)),
    ("polygon with an odd count", "2 5 5 20 20 30", ("odd number (5) of coordinates",)),
    ("polygon with two points", "2 5 5 20 20", ("at least 3 points, got 2",)),
    ("with a non-integer", "0 5 5 2.5 20", ("'2.5' is not a non-negative integer",)),
    ("with a negative coordinate", "0 -5 5 20 20", ("'-5' is not a non-negative integer",)),
    ("with reversed corners", "0 20 20 5 5", ("corners are reversed",)),
    ("with an empty object between ';'", "0 5 5 20 20;;1 5 5 20 20", ("object 2 is empty",)),
    ("outside the image", "0 5 5 250 20", ("outside the 200x100 image",)),
]:
    _annotation_case(_name, _annotation, *_fragments)


@case("split: dataset folder missing")
def _(tmp, w):
    return _split_args(tmp / "nowhere", tmp), ["nowhere", "dataset folder not found"]


@case("split: folder without Object-CXR CSVs")
def _(tmp, w):
    (tmp / "empty").mkdir()
    return _split_args(tmp / "empty", tmp), ["no train.csv"]


@case("split: CSV with a wrong header")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "train.csv").write_text("image_name,label\n00001.jpg,1\n")
    return _split_args(root, tmp), ["train.csv", "no 'annotation' column"]


@case("split: test carve-out larger than train")
def _(tmp, w):
    root = make_dataset(tmp / "d", {k: v for k, v in GOOD.items() if k != "test"})
    return _split_args(root, tmp), ["--test-size 1000 must be between"]


for _unsafe in ("../00001.jpg", "sub/00001.jpg", "..", ".hidden.jpg", "a\\b.jpg", "/etc/passwd"):

    @case(f"split: unsafe image name {_unsafe!r}")
    def _(tmp, w, name=_unsafe):
        root = make_dataset(tmp / "d", GOOD)
        (root / "train.csv").write_text(f"image_name,annotation\n00001.jpg,\n{name},\n")
        return _split_args(root, tmp), ["train.csv, line 3", "is not a plain file name"]


@case("split: duplicate image name")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "train.csv").write_text("image_name,annotation\n00001.jpg,\n00001.jpg,\n")
    return _split_args(root, tmp), ["line 3", "duplicate image_name '00001.jpg' (first on line 2)"]


@case("split: an image in two splits")
def _(tmp, w):
    root = make_dataset(tmp / "d", {**GOOD, "dev": [("00001.jpg", "")]})
    return _split_args(root, tmp), ["dev.csv, line 2", "also in", "must not overlap"]


@case("split: image file missing")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "train" / "00002.jpg").unlink()
    return _split_args(root, tmp), ["train.csv, line 3", "00002.jpg", "not found"]


@case("split: zero-byte image")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "dev" / "00003.jpg").write_bytes(b"")
    return _split_args(root, tmp), ["00003.jpg", "empty (0 bytes)"]


@case("split: not an image")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "dev" / "00003.jpg").write_text("this is not a JPEG")
    return _split_args(root, tmp), ["00003.jpg", "not a readable image"]


@case("split: decompression bomb (our header check)")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "dev" / "00003.jpg").write_bytes(_png_declaring(10_000, 10_000))
    return _split_args(root, tmp), ["00003.jpg", "decompression bomb"]


@case("split: decompression bomb (PIL's guard)")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    (root / "dev" / "00003.jpg").write_bytes(_png_declaring(60_000, 60_000))
    return _split_args(root, tmp), ["00003.jpg", "decompression bomb"]


for _mode in ("I;16", "RGBA"):

    @case(f"split: {_mode} image")
    def _(tmp, w, mode=_mode):
        root = make_dataset(tmp / "d", GOOD)
        Image.new(mode, (50, 50)).save(root / "dev" / "00003.jpg", format="PNG")
        return _split_args(root, tmp), ["00003.jpg", f"unsupported image mode '{mode}'"]


@case("prepare: manifest missing")
def _(tmp, w):
    return _prepare_args(tmp / "none.csv", tmp), ["none.csv", "not found"]


@case("prepare: manifest without a label column")
def _(tmp, w):
    (tmp / "bad.csv").write_text("image_name,annotation\n00001.jpg,\n")
    return _prepare_args(tmp / "bad.csv", tmp), ["bad.csv", "no 'label' column"]


@case("prepare: manifest label disagrees with its annotation")
def _(tmp, w):
    manifest = _good_splits(tmp) / "train.csv"
    manifest.write_text(manifest.read_text().replace(",1,200,", ",0,200,"))
    return _prepare_args(manifest, tmp), ["train.csv, line 2", "label 0 disagrees"]


@case("prepare: image changed since the split")
def _(tmp, w):
    splits = _good_splits(tmp)
    Image.new("L", (120, 90)).save(tmp / "d" / "dev" / "00003.jpg", format="JPEG")
    return _prepare_args(splits / "val.csv", tmp), [
        "val.csv, line 2",
        "is 120x90, the manifest says 200x100",
    ]


@case("prepare: truncated JPEG")
def _(tmp, w):
    root = make_dataset(tmp / "d", GOOD)
    image = root / "train" / "00002.jpg"
    buffer = io.BytesIO()
    Image.effect_noise((400, 300), 40).save(buffer, format="JPEG")
    image.write_bytes(buffer.getvalue())
    assert run_cli(*_split_args(root, tmp)).exit_code == 0
    image.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return _prepare_args(tmp / "splits" / "train.csv", tmp), [
        "train.csv, line 3",
        "00002.jpg",
        "truncated or corrupt",
    ]


@case("prepare: size too small")
def _(tmp, w):
    return _prepare_args(_good_splits(tmp) / "val.csv", tmp, size=4), ["--size 4"]


@case("train: cache is not HDF5")
def _(tmp, w):
    (tmp / "fake.h5").write_text("not hdf5")
    return _train_args(w, tmp, train=tmp / "fake.h5"), ["fake.h5: not an HDF5 image cache"]


@case("train: truncated cache")
def _(tmp, w):
    cache = _truncated(w["train"], tmp / "cut.h5")
    return _train_args(w, tmp, train=cache), ["cut.h5"]


@case("train: cache without its images dataset")
def _(tmp, w):
    cache = _edit_hdf5(
        Path(shutil.copy(w["train"], tmp / "c.h5")), lambda h5: h5.__delitem__("images")
    )
    return _train_args(w, tmp, train=cache), ["c.h5", "images"]


@case("train: cache with inconsistent lengths")
def _(tmp, w):
    def cut_labels(h5):
        label = h5["label"][()]
        del h5["label"]
        h5["label"] = label[:-1]

    cache = _edit_hdf5(Path(shutil.copy(w["train"], tmp / "c.h5")), cut_labels)
    return _train_args(w, tmp, train=cache), ["c.h5", "label"]


@case("train: val cache of another size")
def _(tmp, w):
    def resize(h5):
        h5.attrs["image_size"] = 48

    cache = _edit_hdf5(Path(shutil.copy(w["val"], tmp / "v.h5")), resize)
    return _train_args(w, tmp, val=cache), ["v.h5", "images have shape", "expected (10, 48, 48)"]


@case("train: pretrained weights file that is not weights")
def _(tmp, w):
    (tmp / "w.pth").write_text("not weights")
    return [*_train_args(w, tmp), "--pretrained", tmp / "w.pth"], [
        "w.pth",
        "not a loadable weights file",
    ]


@case("predict: checkpoint carrying pickled code")
def _(tmp, w):
    torch.save(
        {
            "format": "xiqa-model/1",
            "arch": "resnet18",
            "image_size": 32,
            "state_dict": _Exploit(tmp / "pwned"),
        },
        tmp / "evil.pt",
    )
    return ["predict", "--model", tmp / "evil.pt", "--images", w["val"], "--out", tmp / "p.csv"], [
        "evil.pt: not a loadable xiqa checkpoint"
    ]


@case("predict: checkpoint that is a text file")
def _(tmp, w):
    (tmp / "m.pt").write_text("hello")
    return ["predict", "--model", tmp / "m.pt", "--images", w["val"], "--out", tmp / "p.csv"], [
        "m.pt"
    ]


@case("predict: truncated checkpoint")
def _(tmp, w):
    model = _truncated(w["model"], tmp / "m.pt")
    return ["predict", "--model", model, "--images", w["val"], "--out", tmp / "p.csv"], ["m.pt"]


def _saliency_case(name: str, method: str, params: str | None, shard: int, n_shards: int, fragment):
    @case(f"saliency: {name}")
    def _(tmp, w):
        extra = ["--params", params] if params is not None else []
        return _saliency_args(
            w, tmp, "--method", method, *extra, "--shard", shard, "--n-shards", n_shards
        ), [fragment]


for _case in [
    ("unknown method", "lime", None, 0, 1, "unknown method 'lime'"),
    ("unknown family", "m", '{"family": "lime"}', 0, 1, "unknown saliency family 'lime'"),
    ("unknown layer", "m", '{"family": "gradcam", "layer": "layer9"}', 0, 1, "unknown layer"),
    ("unknown parameter", "m", '{"family": "gradcam", "alpha": 1}', 0, 1, "no parameter 'alpha'"),
    ("params not JSON", "gradcam", "{not json", 0, 1, "--params is not valid JSON"),
    ("params not an object", "gradcam", "[1, 2]", 0, 1, "--params must be a JSON object"),
    ("shard index out of range", "gradcam", GRADCAM, 2, 2, "--shard 2 is out of range"),
    ("negative shard index", "gradcam", GRADCAM, -1, 2, "--shard -1 is out of range"),
]:
    _saliency_case(*_case)


@case("saliency: model trained at another size")
def _(tmp, w):
    def resize(h5):
        images = h5["images"][()]
        del h5["images"]
        h5["images"] = np.zeros((len(images), 48, 48), np.uint8)
        h5.attrs["image_size"] = 48

    cache = _edit_hdf5(Path(shutil.copy(w["val"], tmp / "v.h5")), resize)
    return _saliency_args(
        w, tmp, "--method", "gradcam", "--shard", 0, "--n-shards", 1, images=cache
    ), ["v.h5"]


@case("pointing: shard is not HDF5")
def _(tmp, w):
    (tmp / "s.h5").write_text("no")
    return _pointing_args(w, tmp, tmp / "s.h5", w["shards"][1]), [
        "s.h5: not an HDF5 saliency shard"
    ]


@case("pointing: truncated shard")
def _(tmp, w):
    shard = _truncated(w["shards"][0], tmp / "s.h5")
    return _pointing_args(w, tmp, shard, w["shards"][1]), ["s.h5"]


@case("pointing: shard without its maps")
def _(tmp, w):
    shard = _edit_hdf5(_copy_shard(w, tmp), lambda h5: h5.__delitem__("maps"))
    return _pointing_args(w, tmp, shard, w["shards"][1]), ["shard-0.h5", "lacks maps"]


@case("pointing: shard with maps of another size")
def _(tmp, w):
    def shrink(h5):
        maps = h5["maps"][()]
        del h5["maps"]
        h5["maps"] = maps[:, :16, :16]

    shard = _edit_hdf5(_copy_shard(w, tmp), shrink)
    return _pointing_args(w, tmp, shard, w["shards"][1]), ["shard-0.h5", "disagree"]


@case("pointing: shard of another cache")
def _(tmp, w):
    return _pointing_args(w, tmp, w["test_shard"], images=w["val"]), ["test-0.h5", "images_digest"]


@case("pointing: shard of another model")
def _(tmp, w):
    return _pointing_args(w, tmp, model=w["other"]), ["gradcam-0.h5", "checkpoint_sha256"]


@case("pointing: one shard of two missing")
def _(tmp, w):
    return _pointing_args(w, tmp, w["shards"][0]), ["shards [1] of 'gradcam' are missing"]


@case("pointing: tau not positive")
def _(tmp, w):
    return _pointing_args(w, tmp, tau=0), ["--tau 0"]


@case("aggregate: pointing CSV with a wrong header")
def _(tmp, w):
    return _aggregate_args(_results(w, tmp, "name,peak\n1.jpg,3\n")), [
        "val.csv",
        "not a pointing CSV of this xiqa version",
    ]


@case("aggregate: pointing CSV edited by hand")
def _(tmp, w):
    results = _results(w, tmp)
    path = results / "pointing" / "gradcam" / "val.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    next(r for r in rows if r["counted"] == "1")["hit"] = "yes"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return _aggregate_args(results), ["val.csv", "line", "not an xiqa pointing row"]


@case("aggregate: predictions missing")
def _(tmp, w):
    return _aggregate_args(_results(w, tmp, predictions=False)), ["predictions", "not found"]


@case("aggregate: predictions metrics missing")
def _(tmp, w):
    results = _results(w, tmp)
    (results / "predictions" / "val.json").unlink()
    return _aggregate_args(results), ["val.json", "not found", "xiqa predict --metrics"]


@case("aggregate: predictions metrics not JSON")
def _(tmp, w):
    results = _results(w, tmp)
    (results / "predictions" / "val.json").write_text('{"n": 4, "auc": ')
    return _aggregate_args(results), ["val.json", "not JSON"]


@case("aggregate: predictions metrics of another program")
def _(tmp, w):
    results = _results(w, tmp)
    (results / "predictions" / "val.json").write_text('{"n": 4, "auc": 0.5}\n')
    return _aggregate_args(results), ["val.json", "no key positives, auc_ci95, roc_fpr, roc_tpr"]


def _explain_args(w, tmp: Path, *images: Path) -> list:
    Image.new("L", (40, 30), 90).save(tmp / "good.png")
    return [
        "explain",
        tmp / "good.png",
        *images,
        "--model",
        w["model"],
        "--method",
        "gradcam",
        "--params",
        GRADCAM,
        "--out",
        tmp / "out",
    ]


@case("explain: a DICOM that is not DICOM")
def _(tmp, w):
    (tmp / "junk.dcm").write_bytes(b"not a dicom " * 30)
    return _explain_args(w, tmp, tmp / "junk.dcm"), ["junk.dcm", "not a readable DICOM"]


@case("explain: a PNG that is not an image")
def _(tmp, w):
    (tmp / "junk.png").write_bytes(b"not a png " * 30)
    return _explain_args(w, tmp, tmp / "junk.png"), ["junk.png", "not a readable image"]


@case("explain: two inputs with the same stem")
def _(tmp, w):
    (tmp / "b").mkdir()
    Image.new("L", (40, 30), 90).save(tmp / "b" / "good.jpg")
    return _explain_args(w, tmp, tmp / "b" / "good.jpg"), ["good.jpg", "would both be written"]


@case("aggregate: sanity results missing")
def _(tmp, w):
    return _aggregate_args(_results(w, tmp, sanity=False)), ["gradcam.csv", "not found"]


@case("sanity: more images than the split has positives")
def _(tmp, w):
    return _sanity_args(w, tmp / "s.csv", "--n-images", 500), ["500"]


@case("sanity: unknown stage")
def _(tmp, w):
    return _sanity_args(w, tmp / "s.csv", "--n-images", 2, "--stages", "layer9"), ["layer9"]


@case("synth: output folder exists")
def _(tmp, w):
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("precious")
    return ["synth", tmp / "out", "--n-train", 2, "--n-dev", 1, "--n-test", 1], ["already exists"]


def _snapshot(folder: Path, skip: str | None = None) -> dict[str, tuple[int, int, bytes]]:
    """Every file and folder under ``folder`` (except the ``skip`` folder): size, mtime, bytes."""
    entries = {}
    for p in sorted(folder.rglob("*")):
        name = str(p.relative_to(folder))
        if skip and (name == skip or name.startswith(skip + "/")):
            continue
        stat = p.stat()
        entries[name] = (stat.st_size, stat.st_mtime_ns, p.read_bytes()) if p.is_file() else None
    return entries


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, world, tmp_path):
    args, fragments = CASES[name](tmp_path, world)
    before, world_before = _snapshot(tmp_path), _snapshot(world["root"])
    result = run_cli(*args)
    assert_one_line_error(result, *fragments)
    assert _snapshot(tmp_path) == before, "the failed command changed files"
    assert _snapshot(world["root"]) == world_before
    assert not (tmp_path / "pwned").exists(), "code in a checkpoint ran"


def test_corpus_is_large():
    assert len(CASES) + len(CONFIG_CASES) >= 25


# --- the workflow config: `snakemake` refuses it before any job runs ---------------------------

CONFIG_CASES = {
    "negative image size": (
        {"image_size": -5},
        "config key image_size: -5 is less than the minimum of 32",
    ),
    "unknown key": ({"bogus": 1}, "config key bogus: unknown key"),
    "unknown nested key": ({"train": {"epocs": 3}}, "config key train.epocs: unknown key"),
    "tau zero": (
        {"pointing": {"tau": 0}},
        "config key pointing.tau: 0 is less than or equal to the minimum of 0",
    ),
    "a curve factor of zero": (
        {"pointing": {"curve_factors": [1, 0]}},
        "config key pointing.curve_factors.1: 0 is less than or equal to the minimum of 0",
    ),
    "sanity check without images": ({"sanity": {"n_images": 0}}, "config key sanity.n_images"),
    "no shards": ({"n_shards": 0}, "config key n_shards"),
    "wrong type": (
        {"train": {"lr": "fast"}},
        "config key train.lr: 'fast' is not of type 'number'",
    ),
    "unknown split": ({"splits": ["val", "train"]}, "config key splits.1"),
    "dataset folder missing": (
        {"dataset": "/no/such/folder"},
        "config key dataset: folder '/no/such/folder' not found",
    ),
    "pretrained file missing": (
        {"train": {"pretrained": "/no/weights.pth"}},
        "config key train.pretrained",
    ),
    "unknown architecture": (
        {"train": {"arch": "resnet999"}},
        "config key train.arch: unknown architecture 'resnet999'",
    ),
    "method of unknown family": (
        {"methods": {"m": {"family": "lime"}}},
        "config key methods.m: unknown saliency family 'lime'",
    ),
    "method with unknown parameter": (
        {"methods": {"m": {"family": "gradcam", "alpha": 1}}},
        "config key methods.m:",
        "takes no parameter 'alpha'",
    ),
    "method with unknown layer": (
        {"methods": {"m": {"family": "gradcam", "layer": "layer9"}}},
        "config key methods.m.layer: unknown layer 'layer9'",
    ),
    "method without family": (
        {"methods": {"m": {"layer": "layer4.1"}}},
        "config key methods.m: 'family' is a required property",
    ),
    "bad method name": ({"methods": {"My Method": {"family": "gradcam"}}}, "config key methods"),
    "NormGrad virtual layer unknown": (
        {"methods": {"ng": {"family": "normgrad", "virtual_layer": "conv5x5"}}},
        "config key methods.ng.virtual_layer: unknown NormGrad virtual_layer 'conv5x5'",
    ),
    "RISE without masks": (
        {"methods": {"r": {"family": "rise", "n_masks": 0}}},
        "config key methods.r.n_masks: rise parameter 'n_masks' must be an integer ≥ 1, not 0",
    ),
    "RISE keep probability above 1": (
        {"methods": {"r": {"family": "rise", "p": 2}}},
        "config key methods.r.p: rise parameter 'p' must be a probability in (0, 1], not 2",
    ),
    "Grad-CAM layer the architecture lacks": (
        {"methods": {"gc": {"family": "gradcam", "layer": "layer9.9"}}},
        "config key methods.gc.layer: unknown layer 'layer9.9'",
    ),
    "SmoothGrad negative noise": (
        {"methods": {"sg": {"family": "smoothgrad", "stdev": -1}}},
        "config key methods.sg.stdev: smoothgrad parameter 'stdev' must be a number ≥ 0, not -1",
    ),
    "audit switch not a boolean": (
        {"audit": {"enabled": "yes"}},
        "config key audit.enabled: 'yes' is not of type 'boolean'",
    ),
    "unknown audit key": (
        {"audit": {"methods": ["gradcam"]}},
        "config key audit.methods: unknown key",
    ),
    "FROC of a method the config lacks": (
        {"froc": {"methods": ["gradcam", "rise"]}},
        "config key froc.methods: 'rise' is not a configured method",
    ),
    "IoU fraction off the grid": (
        {"localisation": {"fraction": 0.33}},
        "config key localisation.fraction: 0.33 is not one of 0.05, 0.1",
    ),
}


@pytest.mark.slow  # one Snakemake run per case
@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_bad_config(name, tmp_path):
    """The user edits config.yaml badly; `snakemake` stops before any job with one line."""
    overrides, *fragments = CONFIG_CASES[name]
    workflow = copy_workflow(tmp_path / "study", ("gradcam",))
    config = yaml.safe_load((workflow / "config.yaml").read_text())
    for key, value in overrides.items():
        merge = isinstance(value, dict) and isinstance(config.get(key), dict) and key != "methods"
        config[key] = {**config[key], **value} if merge else value
    (workflow / "config.yaml").write_text(yaml.safe_dump(config))
    before = _snapshot(workflow, skip=".snakemake")
    result = run_snakemake(workflow, timeout=300)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xiqa: error: config key"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert _snapshot(workflow, skip=".snakemake") == before


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
    assert not (tmp_path / "out").exists()
