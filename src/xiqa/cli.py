"""The ``xiqa`` command line: a thin shell over the library; each Snakemake rule calls one command.

Every command exits non-zero with a one-line ``xiqa: error: ...`` message on bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from xiqa import __version__
from xiqa.errors import InputError

_existing_file = click.Path(exists=False, dir_okay=False, path_type=Path)


class _Group(click.Group):
    """Turns :class:`InputError` (and plain I/O errors) into one line and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (InputError, OSError) as exc:
            message = str(exc).replace("\n", " ")
            click.echo(f"xiqa: error: {message}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xiqa")
def main() -> None:
    """Explainable image-quality analysis of chest X-rays (foreign objects in Object-CXR)."""


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n-train", type=click.IntRange(min=1), default=1200, show_default=True)
@click.option("--n-dev", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--n-test", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--num-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes that draw images in parallel.",
)
def synth(out: Path, n_train: int, n_dev: int, n_test: int, seed: int, num_workers: int) -> None:
    """Write a synthetic dataset in Object-CXR format to OUT (same seed: identical files)."""
    from xiqa.synth import write_synthetic

    write_synthetic(out, n_train, n_dev, n_test, seed=seed, num_workers=num_workers)


@main.command()
@click.option(
    "--dataset",
    required=True,
    type=click.Path(path_type=Path),
    help="Object-CXR root: train.csv, dev.csv (test.csv) and folders or zips.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--test-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Images carved (stratified) out of train when there is no test.csv.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def split(dataset: Path, out: Path, test_size: int, seed: int) -> None:
    """Write the train, val (= dev) and test manifests to OUT/{train,val,test}.csv."""
    from xiqa.split import make_splits, write_manifest

    for name, records in make_splits(dataset, test_size=test_size, seed=seed).items():
        write_manifest(records, out / f"{name}.csv")


@main.command()
@click.argument("manifest", type=_existing_file)
@click.option("--size", required=True, type=int, help="S: images are cached at S×S.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Decoding processes (0: one per core).",
)
def prepare(manifest: Path, size: int, out: Path, num_workers: int) -> None:
    """Decode a split manifest's images once into an HDF5 cache of S×S uint8 images."""
    from xiqa.cache import prepare_cache

    prepare_cache(manifest, size, out, num_workers=num_workers or None)


if __name__ == "__main__":
    main()
