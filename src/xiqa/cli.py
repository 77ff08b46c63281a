"""The ``xiqa`` command line: a thin shell over the library; each Snakemake rule calls one command.

Every command exits non-zero with a one-line ``xiqa: error: ...`` message on bad input.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import click

from xiqa import __version__
from xiqa.errors import InputError

# Existence is checked by the library, which names the file in its own one-line error.
_input_file = click.Path(dir_okay=False, path_type=Path)
_output_file = click.Path(dir_okay=False, path_type=Path)
_folder = click.Path(file_okay=False, path_type=Path)


def _required(*declarations: str, type: click.ParamType, help: str | None = None):
    """A required path option: click.option with the path's kind and help."""
    return click.option(*declarations, required=True, type=type, help=help)


_caches_option = click.option(
    "--caches",
    type=_folder,
    default=None,
    help="The folder of the image caches {split}.h5 (default: the results folder's cache/).",
)


_methods_option = click.option(
    "--methods",
    "methods_json",
    required=True,
    help="The config's methods mapping as JSON (name -> entry), in table order.",
)


_smooth_option = click.option(
    "--smooth",
    "smooth",
    multiple=True,
    metavar="SIGMA[:KERNEL]",
    help="Also score each map after a Gaussian blur of SIGMA px on KERNEL x KERNEL px (odd; "
    "default 2*ceil(3*SIGMA)+1); repeatable, each its own columns (peak_x_g1k7, ...).",
)


def _count(name: str, default: int, help: str | None = None, least: int = 1):
    """An integer option of at least ``least``, its default shown in --help."""
    return click.option(
        name, type=click.IntRange(min=least), default=default, show_default=True, help=help
    )


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
@_count("--n-train", 1200)
@_count("--n-dev", 300)
@_count("--n-test", 300)
@click.option("--seed", type=int, default=0, show_default=True)
@_count("--num-workers", 1, help="Processes that draw images in parallel.")
def synth(out: Path, n_train: int, n_dev: int, n_test: int, seed: int, num_workers: int) -> None:
    """Write a synthetic dataset in Object-CXR format to OUT (same seed: identical files)."""
    from xiqa.data.synth import write_synthetic

    write_synthetic(out, n_train, n_dev, n_test, seed=seed, num_workers=num_workers)


@main.command()
@_required(
    "--dataset",
    type=click.Path(path_type=Path),
    help="Object-CXR root: train.csv, dev.csv (test.csv) and folders or zips.",
)
@_required("--out", type=_folder)
@_count(
    "--test-size", 1000, help="Images carved (stratified) out of train when there is no test.csv."
)
@click.option("--seed", type=int, default=0, show_default=True)
def split(dataset: Path, out: Path, test_size: int, seed: int) -> None:
    """Write the train, val (= dev) and test manifests to OUT/{train,val,test}.csv."""
    from xiqa.data.split import make_splits, write_manifest

    for name, records in make_splits(dataset, test_size=test_size, seed=seed).items():
        write_manifest(records, out / f"{name}.csv")


@main.command()
@click.argument("manifest", type=_input_file)
@click.option("--size", required=True, type=int, help="S: images are cached at S×S.")
@_required("--out", type=_output_file)
@_count("--num-workers", 0, help="Decoding processes (0: one per core).", least=0)
def prepare(manifest: Path, size: int, out: Path, num_workers: int) -> None:
    """Decode a split manifest's images once into an HDF5 cache of S×S uint8 images."""
    from xiqa.data.cache import prepare_cache

    prepare_cache(manifest, size, out, num_workers=num_workers or None)


_device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, or cuda[:N].",
)


def _parse_params(ctx, param, value: str | None) -> dict | None:
    import json

    try:
        params = json.loads(value) if value else None
    except json.JSONDecodeError as exc:
        raise InputError(f"--params is not valid JSON ({exc})") from None
    if params is not None and not isinstance(params, dict):
        raise InputError("--params must be a JSON object")
    return params


def _method_options(name_is: str):
    """--method NAME and --params JSON (its config entry), for the commands that explain."""

    def add(command):
        command = click.option(
            "--params",
            callback=_parse_params,
            help='The method\'s config entry as JSON, e.g. \'{"family": "gradcam", '
            '"layer": "layer4.2"}\'; optional for presets and families.',
        )(command)
        return click.option(
            "--method",
            required=True,
            help=f"A preset, a family, or any name with --params naming the family; {name_is}.",
        )(command)

    return add


def _model_and_images(command):
    """The options of commands that run a trained model over an image cache."""
    command = click.option("--images", required=True, type=_input_file, help="Image cache (.h5).")(
        command
    )
    return click.option(
        "--model", "model_path", required=True, type=_input_file, help="model.pt of xiqa train."
    )(command)


def _recipe_options(command):
    """One option per field of the training recipe, with its default, bounds and help."""
    from xiqa.model.recipe import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for field in reversed(dataclasses.fields(TrainConfig)):
        name, meta = field.name.replace("_", "-"), field.metadata
        kind = hints[field.name]
        decl, option_type = f"--{name}", kind
        if kind is bool:
            decl, option_type = f"--{name}/--no-{name}", None
        elif meta["min"] is not None or meta["max"] is not None:
            ranged = click.IntRange if kind is int else click.FloatRange
            option_type = ranged(meta["min"], meta["max"], min_open=meta["min_open"])
        command = click.option(
            decl, type=option_type, default=field.default, show_default=True, help=meta["help"]
        )(command)
    return command


@main.command()
@click.option(
    "--train", "train_cache", required=True, type=_input_file, help="Training image cache (.h5)."
)
@click.option(
    "--val",
    "val_cache",
    required=True,
    type=_input_file,
    help="Validation image cache (.h5): picks the best epoch by AUC.",
)
@_required(
    "--out", type=_folder, help="Run folder: model.pt, history.csv, metrics.json, checkpoints."
)
@_recipe_options
@click.option(
    "--restart-if-changed",
    is_flag=True,
    help="Discard a checkpoint in --out from another recipe or other data instead of refusing it.",
)
@_device_option
def train(
    train_cache: Path, val_cache: Path, out: Path, device: str, restart_if_changed: bool, **recipe
) -> None:
    """Train the classifier; re-running with the same --out resumes after the last epoch."""
    from xiqa.model.train import TrainConfig
    from xiqa.model.train import train as run_training

    metrics = run_training(
        train_cache,
        val_cache,
        out,
        TrainConfig(**recipe),
        device=device,
        restart_if_changed=restart_if_changed,
    )
    click.echo(
        f"best epoch {metrics['best_epoch']}: val AUC {metrics['val_auc']:.4f} "
        f"(95% CI {metrics['val_auc_ci95'][0]:.4f}-{metrics['val_auc_ci95'][1]:.4f})",
        err=True,
    )


@main.command()
@_model_and_images
@_required("--out", type=_output_file, help="Predictions CSV: image_name, label, prob.")
@click.option(
    "--metrics",
    "metrics_out",
    type=_output_file,
    help="Also write AUC, its bootstrap 95% CI and the ROC curve as JSON.",
)
@_count("--batch-size", 64)
@_device_option
def predict(
    model_path: Path,
    images: Path,
    out: Path,
    metrics_out: Path | None,
    batch_size: int,
    device: str,
) -> None:
    """P(foreign object) for every image of a cache."""
    from xiqa.model.predict import run_predict

    metrics = run_predict(model_path, images, out, metrics_out, batch_size, device)
    if metrics["auc"] is not None:
        low, high = metrics["auc_ci95"]
        click.echo(
            f"AUC {metrics['auc']:.4f} (95% CI {low:.4f}-{high:.4f}), n = {metrics['n']}", err=True
        )


def _options(*options):
    """A decorator applying click ``options`` in the order given (the first shown first)."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _image_choice():
    """--targets, --all-images and --max-images: which images of a split are explained (xiqa
    saliency), or scored as they were (xiqa faithfulness)."""
    return _options(
        click.option(
            "--targets",
            "target_policy",
            type=click.Choice(["label", "predicted"]),
            default="label",
            show_default=True,
            help="Explain the ground-truth class (the paper) or the predicted one.",
        ),
        click.option("--all-images", is_flag=True, help="Every image, not only positives."),
        click.option(
            "--max-images",
            type=click.IntRange(min=1),
            default=None,
            help="A fixed random subset of at most this many images (for costly methods).",
        ),
    )


@main.command()
@_model_and_images
@_method_options("recorded in the shard")
@click.option("--shard", type=int, required=True, help="Shard index, counting from 0.")
@click.option("--n-shards", type=int, required=True)
@_required("--out", type=_output_file)
@_image_choice()
@click.option(
    "--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True
)
@_count("--batch-size", 16)
@_device_option
def saliency(
    model_path: Path,
    images: Path,
    method: str,
    params: dict | None,
    shard: int,
    n_shards: int,
    out: Path,
    target_policy: str,
    all_images: bool,
    max_images: int | None,
    dtype: str,
    batch_size: int,
    device: str,
) -> None:
    """Saliency maps of one method for one shard of a split's images."""
    from xiqa.evaluation.shards import run_saliency

    run_saliency(
        model_path,
        images,
        method,
        shard,
        n_shards,
        out,
        params=params,
        target_policy=target_policy,
        all_images=all_images,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        max_images=max_images,
    )


@main.command()
@_model_and_images
@_method_options("recorded in the output")
@click.option(
    "--n-images",
    type=int,
    required=True,
    help="Positive images of the cache to explain, drawn with --seed.",
)
@click.option(
    "--stages",
    default=None,
    help="Comma-separated stages at which to compare maps (default: every stage of the model, "
    "from the output down: fc, the last block, ..., conv1).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the choice of images and the re-initialised weights.",
)
@_required(
    "--out", type=_output_file, help="CSV: method, stage_index, stage, image_name, spearman."
)
@_count("--batch-size", 16)
@_device_option
def sanity(
    model_path: Path,
    images: Path,
    method: str,
    params: dict | None,
    n_images: int,
    stages: str | None,
    seed: int,
    out: Path,
    batch_size: int,
    device: str,
) -> None:
    """Model-parameter randomisation test (Adebayo et al. 2018) of one saliency method: the
    Spearman correlation of |maps| between the trained model and copies randomised from the
    output down, stage by stage."""
    from xiqa.evaluation.sanity import run_sanity, summarise

    results = run_sanity(
        model_path,
        images,
        method,
        out,
        n_images,
        params=params,
        stages=None if stages is None else [s for s in stages.split(",") if s],
        seed=seed,
        batch_size=batch_size,
        device=device,
    )
    stage, correlations = results[-1]
    summary = summarise(correlations)
    click.echo(
        f"{method}: Spearman {summary['mean']:.3f} ± {summary['sd']:.3f} (n = {summary['n']}) "
        f"randomised down to {stage}",
        err=True,
    )


def _echo_share(what: str, counts: dict, more: str) -> None:
    """One stderr line: ``what`` as hits / n, then ``more``."""
    share = counts["hits"] / counts["n"] if counts["n"] else float("nan")
    click.echo(f"{what} {share:.4f} ({counts['hits']}/{counts['n']}), {more}", err=True)


@main.command()
@_required("--images", type=_input_file, help="The image cache the shards were made from (.h5).")
@click.option("--tau", required=True, type=float, help="Tolerance in model-input pixels.")
@_required("--out", type=_output_file)
@click.option(
    "--model",
    "model_path",
    type=_input_file,
    help="The checkpoint the shards must have been made by (checked by its SHA-256).",
)
@_smooth_option
@click.argument("shards", nargs=-1, required=True, type=_input_file)
def pointing(
    images: Path,
    tau: float,
    out: Path,
    model_path: Path | None,
    smooth: tuple[str, ...],
    shards: tuple[Path, ...],
) -> None:
    """Score one method's saliency SHARDS of a split with the pointing game."""
    from xiqa.evaluation.pointing import parse_smoothings, run_pointing

    counts = run_pointing(images, shards, tau, out, model_path, parse_smoothings(smooth))
    _echo_share("pointing accuracy", counts, f"mean energy share {counts['mean_energy']:.4f}")


@main.command()
@_required(
    "--results",
    type=_folder,
    help="The workflow's results folder (pointing/, predictions/ with predict's --metrics JSONs, "
    "sanity/, saliency/; cache/ unless --caches), or one model's of several.",
)
@_caches_option
@_methods_option
@click.option(
    "--splits", default="val,test", show_default=True, help="Comma-separated splits, as columns."
)
@click.option("--tau", required=True, type=float)
@click.option(
    "--paper", is_flag=True, help="The paper's setup (600x600, tau 25): show its published numbers."
)
@click.option(
    "--curve-factors",
    default=None,
    help="Comma-separated multiples of --tau at which the pointing curve is drawn "
    "(default 0.25, 0.5, ..., 4); tau itself is always on it.",
)
@click.option(
    "--extra-taus",
    default=None,
    help="Comma-separated tolerances (px) beside --tau in the pointing variants table.",
)
@_smooth_option
def aggregate(
    results: Path,
    methods_json: str,
    splits: str,
    tau: float,
    paper: bool,
    curve_factors: str | None,
    caches: Path | None,
    extra_taus: str | None,
    smooth: tuple[str, ...],
) -> None:
    """Tables (pointing game with CIs and McNemar tests, pointing curve, pointing variants,
    energy-based pointing, randomisation test, classification AUC) and figures; --smooth as
    the pointing CSVs were made."""
    from xiqa.evaluation.pointing import parse_smoothings
    from xiqa.evaluation.tables import DEFAULT_CURVE_FACTORS
    from xiqa.evaluation.tables import aggregate as run_aggregate

    factors = DEFAULT_CURVE_FACTORS
    if curve_factors is not None:
        try:
            factors = [float(f) for f in curve_factors.split(",") if f.strip()]
        except ValueError:
            raise InputError(f"--curve-factors {curve_factors!r}: not numbers") from None

    methods = _json_mapping("--methods", methods_json, "method")
    splits_ = [s for s in splits.split(",") if s]
    smoothings = parse_smoothings(smooth)
    taus = _numbers("--extra-taus", extra_taus) or []
    run_aggregate(results, methods, splits_, tau, paper, factors, caches, taus, smoothings)


def _json_mapping(option: str, value: str, what: str) -> dict:
    """A JSON object option mapping each name to an entry with a 'family' (one-line errors)."""
    import json

    try:
        mapping = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option} is not valid JSON ({exc})") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(e, dict) and "family" in e for e in mapping.values()
    ):
        raise InputError(f"{option} must map each {what} name to an entry with a 'family'")
    return mapping


@main.command()
@_model_and_images
@click.option("--method", required=True, help="The config's method name the variants are of.")
@click.option(
    "--variants",
    "variants_json",
    required=True,
    help='Variant name -> method entry as JSON, in table order, with a "correct" one, e.g. '
    '\'{"correct": {"family": "gradcam", "layer": "layer4.1"}, "all": {...}}\'.',
)
@click.option("--tau", required=True, type=float, help="Tolerance in model-input pixels.")
@_required(
    "--out",
    type=_output_file,
    help="CSV: image_name, variant, peak_x, peak_y, n_ties, distance, hit.",
)
@_count("--batch-size", 16)
@_device_option
def audit(
    model_path: Path,
    images: Path,
    method: str,
    variants_json: str,
    tau: float,
    out: Path,
    batch_size: int,
    device: str,
) -> None:
    """The paper audit of one method on one split: the pointing game of each variant (the
    correct method, each deviation of the authors' code alone, all of them) on the positive
    images with a box."""
    from xiqa.evaluation.audit import run_audit

    variants = _json_mapping("--variants", variants_json, "variant")
    counts = run_audit(model_path, images, method, variants, tau, out, batch_size, device)
    for name, count in counts.items():
        accuracy = count["hits"] / count["n"] if count["n"] else float("nan")
        click.echo(f"{method} {name}: {accuracy:.4f} ({count['hits']}/{count['n']})", err=True)


@main.command("audit-table")
@_required(
    "--results", type=_folder, help="The workflow's results folder (audit/{method}/{split}.csv)."
)
@click.option(
    "--methods",
    "methods_json",
    required=True,
    help="The audited methods as JSON (name -> config entry), in table order.",
)
@click.option(
    "--splits", default="val,test", show_default=True, help="Comma-separated splits, as columns."
)
@click.option("--tau", type=float, default=None, help="This run's tolerance, for the caption.")
@click.option("--paper", is_flag=True, help="The paper's setup (600x600, tau 25), for the caption.")
def audit_table(
    results: Path, methods_json: str, splits: str, tau: float | None, paper: bool
) -> None:
    """Tables (results/tables/audit.{csv,md,tex}) and figure (results/figures/audit.{png,pdf})
    of the paper audit, with the paper's published values on each method's `all` row."""
    from xiqa.evaluation.audit import write_audit_tables

    methods = _json_mapping("--methods", methods_json, "method")
    write_audit_tables(results, methods, [s for s in splits.split(",") if s], paper, tau)


def _numbers(option: str, value: str | None) -> list[float] | None:
    """A comma-separated list of numbers option (None when not given)."""
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {value!r}: not comma-separated numbers") from None


_shard_options = _options(
    _required("--images", type=_input_file, help="The image cache the shards were made from."),
    click.option(
        "--model",
        "model_path",
        type=_input_file,
        help="The checkpoint the shards must have been made by (checked by its SHA-256).",
    ),
    click.argument("shards", nargs=-1, required=True, type=_input_file),
)
"""--images, --model and the SHARDS argument of a command that reads one method's shards."""


@main.command()
@_shard_options
@_required("--out", type=_output_file, help="Per-image CSV (docs/formats.md).")
@click.option(
    "--fractions",
    default=None,
    help="Comma-separated fractions of a map's range whose masks' IoU each row carries "
    "(default 0.05, 0.10, ..., 0.95).",
)
def localisation(
    images: Path,
    model_path: Path | None,
    shards: tuple[Path, ...],
    out: Path,
    fractions: str | None,
) -> None:
    """Hit-in-shape and segmentation IoU (Otsu; fractions of the range) of one method's SHARDS
    of a split, with the true shapes and with the boxes, per image."""
    from xiqa.evaluation.localisation import DEFAULT_FRACTIONS, run_localisation

    grid = _numbers("--fractions", fractions) or DEFAULT_FRACTIONS
    counts = run_localisation(images, shards, out, model_path, grid)
    _echo_share("hit-in-shape", counts, f"mIoU (Otsu, shapes) {counts['miou']:.4f}")


@main.command()
@_shard_options
@_required(
    "--out",
    type=_folder,
    help="Folder for the challenge's prediction_localization.csv and "
    "prediction_classification.csv.",
)
@click.option(
    "--radius",
    type=click.FloatRange(min=0),
    default=6.0,
    show_default=True,
    help="Non-maximum suppression radius in model-input pixels.",
)
@_count("--top-k", 3, help="Peaks per image at most.")
@click.option(
    "--score",
    "score_rule",
    default="prob-x-relative",
    show_default=True,
    help="A peak's score: prob-x-relative (P(foreign object) x its share of the map's range), "
    "prob, or relative (the share alone).",
)
def froc(
    images: Path,
    model_path: Path | None,
    shards: tuple[Path, ...],
    out: Path,
    radius: float,
    top_k: int,
    score_rule: str,
) -> None:
    """The Object-CXR challenge's prediction CSVs from one method's SHARDS of a split, which
    must hold every image (xiqa saliency --all-images)."""
    from xiqa.evaluation.froc import run_froc_predictions

    n = run_froc_predictions(images, shards, out, model_path, radius, top_k, score_rule)
    click.echo(f"{n} point predictions", err=True)


def _splits_option(command):
    return click.option(
        "--splits", default="val,test", show_default=True, help="Comma-separated splits."
    )(command)


@main.command("localisation-table")
@_required(
    "--results",
    type=_folder,
    help="The workflow's results folder (localisation/ and pointing/{method}/{split}.csv).",
)
@_methods_option
@_splits_option
@click.option(
    "--fraction",
    type=float,
    default=0.5,
    show_default=True,
    help="The fixed fraction of the range for the mIoU column (on the per-image grid).",
)
@click.option(
    "--size-bounds",
    default=None,
    help="Area shares separating small, medium and large objects (default 0.002,0.006).",
)
def localisation_table(
    results: Path, methods_json: str, splits: str, fraction: float, size_bounds: str | None
) -> None:
    """Tables results/tables/localisation.{csv,md,tex} and localisation_by_size.{csv,md}, and
    the figure results/figures/localisation_by_size.{png,pdf}."""
    from xiqa.evaluation.localisation import write_localisation_tables

    methods = _json_mapping("--methods", methods_json, "method")
    bounds = _numbers("--size-bounds", size_bounds)
    write_localisation_tables(
        results, methods, [s for s in splits.split(",") if s], fraction, bounds
    )


@main.command("froc-table")
@_required(
    "--results",
    type=_folder,
    help="The workflow's results folder (froc/{method}/{split}/; cache/{split}.h5 unless "
    "--caches), or one model's of several.",
)
@_caches_option
@click.option("--methods", required=True, help="Comma-separated method names, in table order.")
@_splits_option
@_count("--n-boot", 1000, help="Bootstrap resamples of the images.", least=0)
def froc_table(results: Path, methods: str, splits: str, n_boot: int, caches: Path | None) -> None:
    """Table results/tables/froc.{csv,md,tex} and figure results/figures/froc.{png,pdf}."""
    from xiqa.evaluation.froc import write_froc_tables

    names = [m for m in methods.split(",") if m]
    write_froc_tables(results, names, [s for s in splits.split(",") if s], n_boot, caches)


@main.command()
@click.argument("images", nargs=-1, required=True, type=_input_file)
@click.option(
    "--model", "model_path", required=True, type=_input_file, help="model.pt of xiqa train."
)
@_method_options("part of the output names")
@_required(
    "--out",
    type=_folder,
    help="Folder for STEM.METHOD.png (overlay) and STEM.METHOD.json (record) per IMAGE.",
)
@_count("--batch-size", 8)
@_count(
    "--overlay-size",
    1024,
    help="Longest side of an overlay PNG in pixels (smaller images keep their size).",
    least=16,
)
@_device_option
def explain(
    images: tuple[Path, ...],
    model_path: Path,
    method: str,
    params: dict | None,
    out: Path,
    batch_size: int,
    overlay_size: int,
    device: str,
) -> None:
    """Explain new radiographs IMAGE... (JPEG, PNG or DICOM) with a trained model: the saliency
    of the foreign-object class, as an overlay PNG and a JSON record per image in OUT."""
    from xiqa.explain import run_explain

    records = run_explain(images, model_path, method, out, params, batch_size, device, overlay_size)
    click.echo(f"explained {len(records)} images with {method} into {out}", err=True)


def _faithfulness_options(command):
    """The scoring parameters shared by xiqa faithfulness and its --chance mode. Their defaults
    live in xiqa.evaluation.faithfulness (an option left out takes it), which is not imported
    here: every xiqa command would then pay for torch."""
    options = [
        click.option(
            "--n-steps", type=int, default=None, help="Deletion/insertion steps (default 100)."
        ),
        click.option(
            "--deletion-baseline",
            default=None,
            help="What deletion puts in place of the removed pixels: constant (default) or blur.",
        ),
        click.option(
            "--insertion-baseline",
            default=None,
            help="The image insertion starts from: blur (default) or constant.",
        ),
        click.option(
            "--baseline-value",
            type=float,
            default=None,
            help="The constant baseline's grey in [0, 1] (default 0.449, ImageNet's mean: about 0 "
            "after normalisation).",
        ),
        click.option(
            "--blur-sigma",
            type=float,
            default=None,
            help="The blur baseline's Gaussian sigma in model-input pixels (default 5).",
        ),
        click.option(
            "--road-percentages",
            default=None,
            help="Comma-separated percentages of pixels ROAD removes (default 10,20,...,90).",
        ),
        click.option(
            "--road-noise",
            type=float,
            default=None,
            help="SD of ROAD's imputation noise in normalised model-input units (0: none; "
            "default 0.01).",
        ),
        click.option(
            "--batch-size", type=int, default=None, help="Perturbed inputs per forward pass."
        ),
        _device_option,
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seeds noise and random maps."
        ),
    ]
    return _options(*options)(command)


@main.command()
@_model_and_images
@_required("--out", type=_output_file, help="Per-image CSV (docs/formats.md).")
@click.option(
    "--chance",
    is_flag=True,
    help="Score the chance baselines (a random and a uniform map) of the split's images instead "
    "of SHARDS: one CSV with a `baseline` column, for all methods.",
)
@_image_choice()
@_faithfulness_options
@click.argument("shards", nargs=-1, type=_input_file)
def faithfulness(
    model_path: Path,
    images: Path,
    out: Path,
    chance: bool,
    target_policy: str,
    all_images: bool,
    max_images: int | None,
    road_percentages: str | None,
    shards: tuple[Path, ...],
    **params,
) -> None:
    """Deletion, insertion and ROAD of one method's saliency SHARDS of a split (or, with
    --chance, of a random and a uniform map), one row per map. The maps scored are those of the
    images xiqa saliency would explain with --all-images and --max-images (by default the
    positives: the FROC's shards also hold the negatives); --targets is the chance maps' (a
    shard's map keeps its own target)."""
    from xiqa.evaluation.faithfulness import (
        parse_percentages,
        run_faithfulness,
        run_faithfulness_baselines,
    )

    if road_percentages is not None:
        params["road_percentages"] = parse_percentages(road_percentages)
    params = {k: v for k, v in params.items() if v is not None}  # the rest: the library's
    if chance:
        if shards:
            raise InputError("--chance scores chance maps: give no SHARDS")
        summaries = run_faithfulness_baselines(
            model_path, images, out, target_policy, all_images, max_images, **params
        )
    else:
        if not shards:
            raise InputError("no saliency shards given (or --chance for the chance baselines)")
        summaries = {
            "maps": run_faithfulness(
                model_path, images, shards, out, all_images, max_images, **params
            )
        }
    for name, s in summaries.items():
        click.echo(
            f"{name}: deletion AUC {s['deletion_auc']:.4f}, insertion AUC "
            f"{s['insertion_auc']:.4f}, ROAD MoRF {s['road_morf_mean']:.4f}, LeRF "
            f"{s['road_lerf_mean']:.4f} (n = {s['n']})",
            err=True,
        )


@main.command("faithfulness-table")
@_required(
    "--results",
    type=_folder,
    help="The workflow's results folder (faithfulness/{method}/{split}.csv and "
    "faithfulness/_baselines/{split}.csv).",
)
@click.option(
    "--methods",
    "methods_value",
    required=True,
    help="The methods in table order: the config's mapping as JSON, or comma-separated names.",
)
@click.option("--splits", default="val,test", show_default=True, help="Comma-separated splits.")
def faithfulness_table(results: Path, methods_value: str, splits: str) -> None:
    """Tables (results/tables/faithfulness.{csv,md,tex}) and figure
    (results/figures/faithfulness.{png,pdf}) of deletion, insertion and ROAD, with the chance
    baselines."""
    from xiqa.evaluation.faithfulness import methods_list, write_faithfulness_tables

    write_faithfulness_tables(
        results, methods_list(methods_value), [s for s in splits.split(",") if s]
    )


@main.command()
@_required(
    "--results",
    type=_folder,
    help="The workflow's results folder of a study of several models "
    "(models/{model}/pointing/{method}/{split}.csv); writes its tables/ and figures/.",
)
@click.option(
    "--models",
    "models_json",
    required=True,
    help='Each model\'s architecture and methods as JSON, in order, e.g. \'{"r18-s0": {"arch": '
    '"resnet18", "methods": ["gradcam"]}, ...}\'.',
)
@_methods_option
@_splits_option
@click.option("--tau", required=True, type=float, help="Tolerance in model-input pixels.")
@_count("--n-permutations", 10000, help="Permutations of the Kendall's W test.", least=0)
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the permutations.")
def consistency(
    results: Path,
    models_json: str,
    methods_json: str,
    splits: str,
    tau: float,
    n_permutations: int,
    seed: int,
) -> None:
    """Tables results/tables/consistency*.{csv,md,tex} and figure
    results/figures/consistency.{png,pdf}: each method's pointing accuracy across the models
    (repeatability over seeds, reproducibility over architectures), the agreement of the
    methods' rankings (Kendall's W) and of two models' peaks per image."""
    from xiqa.evaluation.consistency import parse_models, write_consistency

    methods = _json_mapping("--methods", methods_json, "method")
    splits_ = [s for s in splits.split(",") if s]
    write_consistency(
        results, parse_models(models_json), methods, splits_, tau, n_permutations, seed
    )


if __name__ == "__main__":
    main()
