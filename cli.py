"""legsmi command line: thin click commands over library functions.

Each command packs its options into a config dict and calls a plain function that a
notebook can call too. torch, xgboost and shap are imported inside the commands that
use them, so ``python cli.py --help`` answers at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__version__ = "0.1.0"

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _default_dataset() -> str:
    from smi_data.paths import BUNDLED_COHORT

    return str(BUNDLED_COHORT)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="legsmi")
def main() -> None:
    """legsmi: estimate the skeletal muscle index (SMI, kg/m^2) from photos of the lower leg.

    Data commands: validate, splits, phantom, features. Models: train, predict, explain.
    Evaluation: benchmark, ablate, speed. Run any command with -h for its options.
    """


# ----------------------------------------------------------------------------- data commands
@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--no-images", is_flag=True, help="Check the manifest only; do not open the images.")
@click.option("--predict-only", is_flag=True, help="Allow a missing or empty smi column (data to predict on).")
def validate(dataset, no_images, predict_only):
    """Check every row of a dataset and print every problem found (default: the bundled cohort)."""
    from smi_data.validate import format_summary, validate_dataset

    dataset = dataset or _default_dataset()
    report = validate_dataset(dataset, check_images=not no_images, require_label=not predict_only)
    for problem in report.problems:
        click.echo(problem)
    if report.problems:
        click.echo(f"{len(report.problems)} problem(s) found in {dataset}", err=True)
        sys.exit(1)
    click.echo(format_summary(report))


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--folds", default=5, type=click.IntRange(2, 50), help="Number of folds.")
@click.option("--seed", default=0, type=int, help="Seed of the first repeat.")
@click.option("--repeats", default=1, type=click.IntRange(1, 100), help="Repeated cross-validation: seeds seed..seed+repeats-1.")
@click.option("--out", "out", default="splits.json", type=click.Path(dir_okay=False), help="Output JSON file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def splits(dataset, folds, seed, repeats, out, overwrite):
    """Make subject-level folds stratified by sex and SMI tertile and save them as JSON."""
    from smi_data.manifest import ManifestError, read_manifest
    from smi_data.runs import OutputExistsError, check_output_file
    from smi_data.splits import make_splits, save_splits, summarize_splits

    dataset = dataset or _default_dataset()
    try:
        check_output_file(out, overwrite=overwrite)
        manifest = read_manifest(dataset)
        sp = make_splits(manifest, n_folds=folds, seeds=list(range(seed, seed + repeats)), dataset=dataset)
    except (ManifestError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    save_splits(sp, out)
    click.echo(summarize_splits(sp))
    click.echo(f"wrote {out}")


# ----------------------------------------------------------------------------- phantom commands (smi_data.phantom)
# (section owned by the phantom work; add `phantom` here)


# ----------------------------------------------------------------------------- feature commands (smi_features)
# (section owned by the features work; add `features` and `explain` here)


# ----------------------------------------------------------------------------- model commands (train / predict)
# (section owned by the integration; `train` and `predict` dispatch on --model)


# ----------------------------------------------------------------------------- evaluation commands (benchmarks)
# (section owned by the benchmark work; add `benchmark`, `ablate`, `speed` here)
_DEFAULT_MODELS = "mean,covariates,tape,xgb-features,cnn-paper,cnn-lite"


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _echo_table(df) -> None:
    from benchmarks.report import md_table

    click.echo(md_table(df))


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--models", default=_DEFAULT_MODELS, help="Comma-separated model names (see --list-models).")
@click.option("--views", default="auto",
              help="Comma-separated views (lateral, posterior, both), or 'auto': lateral and posterior for "
                   "every model, 'both' too for the cheap ones (the CNNs are the slow part).")
@click.option("--folds", default=5, type=click.IntRange(2, 50), help="Folds, when the splits are made here.")
@click.option("--repeats", default=1, type=click.IntRange(1, 100), help="Repeats (seeds seed..seed+repeats-1).")
@click.option("--seed", default=0, type=int, help="The one seed: splits, model initialisation, augmentation.")
@click.option("--out", "out", default="legsmi-benchmark", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False), default=None,
              help="Use this splits.json (from `legsmi splits`) instead of making one.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.PARAM=VALUE",
              help="Override a model parameter, e.g. --set cnn-lite.epochs=5 (repeatable).")
@click.option("--jobs", default=1, type=click.IntRange(1, 64), help="Fits run in parallel processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--list-models", is_flag=True, help="List the models and exit.")
def benchmark(dataset, models, views, folds, repeats, seed, out, splits_file, sets, jobs, overwrite, list_models):
    """Every model under the same saved splits: metrics, the study's table and a report.

    Writes RUN_DIR/predictions.csv, metrics.csv, table.csv, report.md, report.html (plots
    embedded), plots/, splits.json and run.json. DATASET defaults to the bundled cohort.
    """
    from benchmarks import registry
    from benchmarks.harness import BenchmarkConfig, BenchmarkError, parse_overrides, run_benchmark
    from smi_data.manifest import ManifestError
    from smi_data.runs import OutputExistsError

    if list_models:
        for spec in registry.MODELS.values():
            click.echo(f"{spec.name:14s} {spec.family:9s} {spec.description}")
        return
    try:
        cfg = BenchmarkConfig(dataset=dataset or _default_dataset(), out=out, models=_csv_list(models),
                              views=views, folds=folds, repeats=repeats, seed=seed, splits=splits_file,
                              overwrite=overwrite, jobs=jobs, overrides=parse_overrides(sets))
        result = run_benchmark(cfg, echo=lambda s: click.echo(s, err=True))
    except (BenchmarkError, ManifestError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    _echo_table(result["table"])
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"report: {Path(result['out']) / 'report.html'} ({result['seconds']:.0f} s)")


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--ablations", default="canny,augment,views,feature-groups,resolution,train-size",
              help="Comma-separated ablations to run.")
@click.option("--model", default="xgb-features", help="Model of the 'views' and 'train-size' ablations.")
@click.option("--cnn-model", default="cnn-lite", help="CNN of the 'canny', 'augment' and 'resolution' ablations.")
@click.option("--view", default="lateral", type=click.Choice(["lateral", "posterior", "both"]),
              help="View of every ablation except 'views'.")
@click.option("--folds", default=5, type=click.IntRange(2, 50), help="Folds, when the splits are made here.")
@click.option("--repeats", default=1, type=click.IntRange(1, 100), help="Repeats (seeds seed..seed+repeats-1).")
@click.option("--seed", default=0, type=int, help="The one seed.")
@click.option("--out", "out", default="legsmi-ablate", type=click.Path(file_okay=False), help="Run folder.")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False), default=None,
              help="Use this splits.json instead of making one.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.PARAM=VALUE", help="Override a model parameter.")
@click.option("--jobs", default=1, type=click.IntRange(1, 64), help="Fits run in parallel processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
def ablate(dataset, ablations, model, cnn_model, view, folds, repeats, seed, out, splits_file, sets, jobs,
           overwrite):
    """Named ablations under one set of splits, printed as one table.

    canny (CNN on edges vs grey), augment (on/off), views (lateral/posterior/both),
    feature-groups (width; +area; +curvature; +covariates), resolution (64/96/128 px),
    train-size (20/40/60/80/100 % of each training fold).
    """
    from benchmarks.ablate import AblateConfig, run_ablations
    from benchmarks.harness import BenchmarkError, parse_overrides
    from smi_data.manifest import ManifestError
    from smi_data.runs import OutputExistsError

    try:
        cfg = AblateConfig(dataset=dataset or _default_dataset(), out=out, ablations=_csv_list(ablations),
                           folds=folds, repeats=repeats, seed=seed, splits=splits_file, overwrite=overwrite,
                           jobs=jobs, cnn_model=cnn_model, model=model, view=view,
                           overrides=parse_overrides(sets))
        result = run_ablations(cfg, echo=lambda s: click.echo(s, err=True))
    except (BenchmarkError, ManifestError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    _echo_table(result["table"])
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"table: {Path(result['out']) / 'ablation.md'} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
