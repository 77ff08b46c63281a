"""Shared fixtures: tiny datasets in the Object-CXR format, made fresh for the test session."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from xiqa.cli import main
from xiqa.data.synth import write_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (folders, with test.csv). Treat as read-only."""
    root = tmp_path_factory.mktemp("synthetic") / "data"
    write_synthetic(root, n_train=30, n_dev=10, n_test=10, seed=3)
    return root


def zip_dataset(folder_root: Path, out: Path, splits=("train", "dev", "test")) -> Path:
    """The distributed layout: CSVs beside train.zip/dev.zip holding train/NNNNN.jpg."""
    out.mkdir(parents=True)
    for split in splits:
        if not (folder_root / f"{split}.csv").exists():
            continue
        shutil.copy(folder_root / f"{split}.csv", out / f"{split}.csv")
        with zipfile.ZipFile(out / f"{split}.zip", "w") as archive:
            for image in sorted((folder_root / split).iterdir()):
                archive.write(image, f"{split}/{image.name}")
    return out


def jpeg_bytes(width: int, height: int, value: int = 128, mode: str = "L") -> bytes:
    """A plain image of the given size, encoded as JPEG."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height), value).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_dataset(
    root: Path,
    rows: dict[str, list[tuple[str, str]]],
    sizes: dict[str, tuple[int, int]] | None = None,
) -> Path:
    """A hand-made Object-CXR folder: ``rows[split] = [(image_name, annotation), ...]``.

    Every listed image is written as a grey JPEG (``sizes[name]``, default 200x100), with a
    gradient so that resizing is not trivially constant.
    """
    sizes = sizes or {}
    root.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        (root / split).mkdir(exist_ok=True)
        with open(root / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_name", "annotation"])
            for name, annotation in split_rows:
                writer.writerow([name, annotation])
                width, height = sizes.get(name, (200, 100))
                ramp = np.add.outer(np.arange(height), np.arange(width)) % 256
                Image.fromarray(ramp.astype(np.uint8), "L").save(root / split / name)
    return root


def run_cli(*args: str):
    """Run ``xiqa ARGS`` in-process; returns click's Result (stdout, stderr, exit_code)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    """A failed command: non-zero exit, one 'xiqa: error:' line naming the fragments."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xiqa: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def tiny_caches(synthetic_root, tmp_path_factory) -> dict[str, Path]:
    """32x32 image caches of the small synthetic dataset: {'train', 'val', 'test'} -> .h5."""
    from xiqa.data.cache import prepare_cache
    from xiqa.data.split import make_splits, write_manifest

    out = tmp_path_factory.mktemp("caches")
    caches = {}
    for split, records in make_splits(synthetic_root).items():
        write_manifest(records, out / f"{split}.csv")
        prepare_cache(out / f"{split}.csv", 32, out / f"{split}.h5", num_workers=1)
        caches[split] = out / f"{split}.h5"
    return caches


def write_map_shards(
    cache_path,
    folder,
    maps_for,
    all_images=False,
    n_shards=2,
    method="m",
    dtype="float32",
    prob=None,
    limit=None,
    **attr_overrides,
):
    """One method's shards of a cache's positives (or all images; the first ``limit`` of them),
    each map ``maps_for(cache, row)``, P(object) ``prob`` or spread over 0.1 .. 0.9 in each
    shard; ``attr_overrides`` replace shard attributes."""
    from xiqa.data.cache import load_cache
    from xiqa.evaluation.shards import images_digest, write_shard

    cache = load_cache(cache_path)
    rows = np.arange(len(cache)) if all_images else np.flatnonzero(cache.label == 1)
    rows = rows[:limit]
    paths = []
    for shard, part in enumerate(np.array_split(rows, n_shards)):
        attrs = {
            "method": method,
            "params": '{"family": "gradcam"}',
            "checkpoint_sha256": "0",
            "input_size": cache.size,
            "target_policy": "label",
            "shard": shard,
            "n_shards": n_shards,
            "images_digest": images_digest(cache),
            "max_images": 0,
            **attr_overrides,
        }
        path = folder / f"{method}-{shard}.h5"
        probs = np.linspace(0.1, 0.9, len(part)) if prob is None else np.full(len(part), prob)
        with write_shard(path, [cache.image_name[i] for i in part], part, attrs, dtype) as w:
            maps = np.stack([maps_for(cache, int(i)) for i in part]).astype(np.float32)
            w.append(maps, np.ones(len(part)), probs)
        paths.append(path)
    return paths


REPO = Path(__file__).resolve().parents[1]


def copy_workflow(dest: Path, methods: tuple[str, ...]) -> Path:
    """A user's copy of the workflow files in ``dest``, its config.yaml keeping only ``methods``
    (a --configfile merges the methods mapping and cannot drop entries)."""
    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "envs", "config"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        else:
            shutil.copy(source, dest / name)
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    demo["methods"] = {name: demo["methods"][name] for name in methods}
    (dest / "config.yaml").write_text(yaml.safe_dump(demo, sort_keys=False))
    return dest


def _snakemake(
    workdir: Path, args: tuple, cores: int | None, env: dict[str, str] | None
) -> tuple[list[str], dict]:
    """The command line and the Popen arguments of ``snakemake ARGS`` in ``workdir``: this
    interpreter's Snakemake, with its bin folder first on PATH, so that the jobs' ``xiqa`` and
    ``python`` are the ones under test. ``env`` (default os.environ) is the rest of the
    environment."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cores_flag = [] if cores is None else ["--cores", str(cores)]
    command = [sys.executable, "-m", "snakemake", *cores_flag, *map(str, args)]
    return command, {"cwd": workdir, "env": env, "text": True}


def run_snakemake(
    workdir: Path,
    *args,
    cores: int | None = 1,
    check: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    **popen_kwargs,
) -> subprocess.CompletedProcess:
    """Run ``snakemake --cores CORES ARGS`` in ``workdir`` (``cores=None``: no --cores) and wait;
    stdout and stderr are captured as text unless ``popen_kwargs`` say otherwise."""
    command, kwargs = _snakemake(workdir, args, cores, env)
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(command, check=check, timeout=timeout, **kwargs, **popen_kwargs)


def start_snakemake(
    workdir: Path, *args, cores: int | None = 1, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``snakemake --cores CORES ARGS`` in ``workdir`` without waiting, stdout and stderr
    together in ``stdout``, in a process group of its own: ``os.killpg`` kills its jobs too."""
    command, kwargs = _snakemake(workdir, args, cores, env)
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )
