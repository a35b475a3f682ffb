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


if __name__ == "__main__":
    main()
