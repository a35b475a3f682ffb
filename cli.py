"""legsmi command line: thin click commands over library functions.

Each command packs its options into a config dict and calls a plain function that a
notebook can call too. torch, xgboost and shap are imported inside the commands that
use them, so ``python cli.py --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from smi_data import __version__

#: Packages whose loggers ``--verbose`` / ``--quiet`` set (the library logs; the commands echo).
LOGGED_PACKAGES = ("smi_data", "smi_image", "smi_features", "smi_deep", "benchmarks", "smi_app")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _default_dataset() -> str:
    from smi_data.paths import BUNDLED_COHORT

    return str(BUNDLED_COHORT)


def _exit_if_every_fit_failed(records, by: str = "model") -> None:
    """Exit 1 when every fit of some model (or ablation arm) failed: a run without results is no success."""
    from benchmarks.overrides import all_fits_failed

    dead = all_fits_failed(records, by)
    if dead:
        _fail(f"every fit of {', '.join(dead)} failed (see the notes above and folds.csv)", 1)


# ----------------------------------------------------------------------------- shared options
# One decorator per option that several commands take: the same name, type and help text everywhere
# (tests/test_cli.py checks it). Each command keeps its own default; a ``detail`` adds what is
# particular to one command after the shared text.
VIEW_CHOICE = click.Choice(["lateral", "posterior", "both"])
TIER_CHOICE = click.Choice(["photo", "basic", "weight"])
SEGMENTER_CHOICE = click.Choice(["auto", "learned", "classical"])

OVERWRITE_HELP = "Replace an earlier output at --out (without this flag an existing one is never replaced)."
OUT_HELP_END = "(kept if it exists; see --overwrite)."
SEED_HELP = "The one seed: the same seed gives the same output."
JOBS_HELP = "Worker processes for the photos to measure and the fits to run (1: all in this process)."
VIEW_HELP = "View: lateral, posterior or both (one sample per person with both photos)."
TIERS_HELP = ("Information tiers, comma-separated: photo (photos only), basic (+ sex, age, height), weight "
              "(+ weight).")
TIER_HELP = "Information tier: photo (photos only), basic (+ sex, age, height), weight (+ weight)."
FOLDS_HELP = "Cross-validation folds (by person)."
REPEATS_HELP = "Repeated cross-validation: seeds seed..seed+repeats-1."
SPLITS_HELP = "Use this splits.json (from `legsmi splits`) instead of making one."
SET_HELP = ("Override a model parameter (repeatable), e.g. --set cnn-lite.epochs=5 or "
            "--set covariates.use_weight=true; nested parameters the scikit-learn way (PARAM__SUB).")
SEGMENTER_HELP = "Leg finder (auto: the learned one when its weights ship)."
CLUSTER_METAVAR = "local:N|tcp://HOST:PORT"
CLUSTER_HELP = ("Run on a Dask cluster: N local worker processes, or a running `dask scheduler` (needs the "
                "cluster extra); replaces --jobs, same results as without.")


def _with_detail(text: str, detail: str | None) -> str:
    return f"{text} {detail}" if detail else text


def dataset_argument(required: bool = False):
    """DATASET: a dataset folder (manifest.csv beside the photos); optional ones default to the bundled cohort."""
    return click.argument("dataset", type=click.Path(file_okay=False), required=required)


def out_option(default: str | None = None, *, what: str, file: bool = False):
    """``--out``: a folder (a file with ``file=True``); ``what`` says what goes there. No default: required."""
    kind = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    kw = {"required": True} if default is None else {"default": default}
    return click.option("--out", "out", type=kind, help=f"{what} {OUT_HELP_END}", **kw)


def overwrite_option():
    return click.option("--overwrite", is_flag=True, help=OVERWRITE_HELP)


def seed_option(default: int = 0, detail: str | None = None):
    return click.option("--seed", default=default, type=int, help=_with_detail(SEED_HELP, detail))


def jobs_option(default: int | None = 1, detail: str | None = None, shown: str | None = None):
    """``--jobs``: worker processes; ``shown`` is what --help prints as the default when it is None."""
    return click.option("--jobs", default=default, type=click.IntRange(1, 64), help=_with_detail(JOBS_HELP, detail),
                        **({"show_default": shown} if shown else {}))


def view_option(default: str | None = "lateral", detail: str | None = None):
    return click.option("--view", default=default, type=VIEW_CHOICE, help=_with_detail(VIEW_HELP, detail))


def tiers_option(default: str = "auto", detail: str | None = None):
    return click.option("--tiers", default=default, help=_with_detail(TIERS_HELP, detail))


def tier_option(default: str | None = None, detail: str | None = None):
    return click.option("--tier", default=default, type=TIER_CHOICE, help=_with_detail(TIER_HELP, detail))


def folds_option(default: int = 5, detail: str | None = None):
    return click.option("--folds", default=default, type=click.IntRange(2, 50), help=_with_detail(FOLDS_HELP, detail))


def repeats_option(default: int = 1):
    return click.option("--repeats", default=default, type=click.IntRange(1, 100), help=REPEATS_HELP)


def splits_file_option():
    return click.option("--splits", "splits_file", type=click.Path(dir_okay=False), default=None, help=SPLITS_HELP)


def set_option():
    return click.option("--set", "sets", multiple=True, metavar="MODEL.PARAM=VALUE", help=SET_HELP)


def segmenter_option(default: str = "auto"):
    return click.option("--segmenter", default=default, type=SEGMENTER_CHOICE, help=SEGMENTER_HELP)


def cluster_option(detail: str | None = None):
    return click.option("--cluster", default=None, metavar=CLUSTER_METAVAR, help=_with_detail(CLUSTER_HELP, detail))


def max_concurrent_option(default: int = 2):
    return click.option("--max-concurrent", default=default, type=click.IntRange(1, 64),
                        help="Estimates the server computes at once.")


class _LegsmiGroup(click.Group):
    """The command group; its ``invoke`` is the one place that turns errors into messages and exit codes.

    ``LegsmiError`` -> its message and its ``exit_code`` (2: the command line cannot run,
    1: it ran and failed); an ``OSError`` (disk full, read-only, ...) -> a message, exit 1;
    SIGINT / SIGTERM -> exit 130. Click's own usage errors keep exit 2.
    """

    def invoke(self, ctx):
        from smi_data.errors import EXIT_FAILURE, EXIT_INTERRUPTED, LegsmiError, describe_os_error

        try:
            return super().invoke(ctx)
        except LegsmiError as exc:
            _fail(str(exc), getattr(exc, "exit_code", EXIT_FAILURE))
        except KeyboardInterrupt as exc:
            click.echo(f"\ninterrupted ({getattr(exc, 'signame', 'SIGINT')}); the run record says so", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            _fail(describe_os_error(exc), EXIT_FAILURE)


class _EchoHandler(logging.Handler):
    """Log records to the current stderr through click (so a test runner's capture sees them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # noqa: BLE001 - logging must never end the command
            self.handleError(record)


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """The CLI's logging: the library's warnings on stderr by default, ``-v`` its progress (INFO),
    ``-vv`` everything (DEBUG, with the logger's name), ``--quiet`` errors only. Called again, it
    replaces its own handler (tests invoke the CLI many times in one process)."""
    level = logging.ERROR if quiet else logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 \
        else logging.DEBUG
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _EchoHandler)]:
        root.removeHandler(h)
    handler = _EchoHandler(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose >= 2
                                           else "%(levelname)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)  # other libraries: their warnings only
    for name in LOGGED_PACKAGES:
        logging.getLogger(name).setLevel(level)


@click.group(cls=_LegsmiGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="legsmi")
@click.option("-v", "--verbose", count=True, help="More messages from the library: -v progress, -vv debugging.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors from the library (the commands' own output stays).")
def main(verbose: int = 0, quiet: bool = False) -> None:
    """legsmi: estimate the skeletal muscle index (SMI, kg/m^2) from photos of the lower leg.

    Data commands: validate, splits, phantom, features. Image layer: segment, segeval,
    segmenter. Models: train, predict, explain. Evaluation: benchmark, ablate, reliability,
    speed, fuzz. The clinic's page: app, app-load. Run any command with -h for its options.
    """
    # plots are files: the CLI (never the library) picks the non-interactive backend
    os.environ.setdefault("MPLBACKEND", "Agg")
    configure_logging(verbose, quiet)


# ----------------------------------------------------------------------------- data commands
@main.command()
@dataset_argument()
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
@dataset_argument()
@folds_option()
@seed_option(detail="With --repeats: the first repeat's.")
@repeats_option()
@out_option("splits.json", what="Output JSON file", file=True)
@overwrite_option()
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
@main.command()
@click.option("--subjects", "n_subjects", default=100, type=click.IntRange(1, 100000),
              help="People to generate (sexes alternate M, F, ...).")
@seed_option(detail="Another seed, other people (0 is the bundled cohort's; training renders use 1000 and above).")
@out_option(what="Output dataset folder")
@click.option("--size", default=None,
              help="Photo size: an integer (studio: the square's side; scenes: the width of a 3:4 portrait) "
                   "or WIDTHxHEIGHT. Default 512 (studio), 600x800 (clinic, wild).")
@click.option("--views", default="lateral,posterior", help="Comma-separated views to render.")
@click.option("--no-marker", is_flag=True, help="Leave the ArUco scale marker out of the photos.")
@click.option("--scene", default="studio", show_default=True, type=click.Choice(["studio", "clinic", "wild"]),
              help="studio: one lower leg on a plain wall (data/phantom-v1); clinic: both legs, shorts, wall and "
                   "floor as a clinic photographs them; wild: everything randomised (segmenter training). "
                   "Scenes write a label map per photo under labels/.")
@click.option("--retakes", default=1, show_default=True, type=click.IntRange(1, 99),
              help="Photo sessions per subject (camera, light, stance, scene drawn afresh; body unchanged); "
                   "adds a take column to the manifest.")
@click.option("--one-leg", is_flag=True,
              help="Scenes only: leave the other leg out of every photo (with its half of the shorts and its shoe); "
                   "photos of one leg with nothing behind it, for training the segmenter (docs/segmentation.md).")
@overwrite_option()
def phantom(n_subjects, seed, out, size, views, no_marker, scene, retakes, one_leg, overwrite):
    """Render a synthetic cohort of lower-leg photos with known SMI from the Anny body model.

    Needs the optional extra: pip install '.[phantom]'. The first run builds Anny's model data
    (about 100 s, cached in ~/.cache/anny). See docs/phantom.md.
    """
    try:
        from smi_data.phantom.generate import generate_cohort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        _fail(f"the phantom needs the optional extra ({exc}); install it with: pip install '.[phantom]'")
    from smi_data.runs import OutputExistsError

    view_list = [v.strip() for v in views.split(",") if v.strip()]
    try:
        summary = generate_cohort(out, n_subjects=n_subjects, seed=seed, size=size, views=view_list,
                                  marker=not no_marker, overwrite=overwrite, scene=scene, retakes=retakes,
                                  one_leg=one_leg)
    except ImportError as exc:
        _fail(f"the phantom needs the optional extra ({exc}); install it with: pip install '.[phantom]'")
    except (OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    for sid, reason in summary["failures"].items():
        click.echo(f"skipped {sid}: {reason}", err=True)
    click.echo(f"wrote {summary['subjects']} subjects, {summary['images']} images to {out}")
    if "smi_mean" in summary:
        click.echo(f"SMI {summary['smi_mean']:.2f} +- {summary['smi_sd']:.2f} kg/m^2")
    if "marker_share" in summary:
        click.echo(f"marker card in {100 * summary['marker_share']:.0f} % of the photos")
    click.echo(f"speed: {summary['s_per_subject']:.2f} s per subject, {summary['s_per_image']:.2f} s per image "
               f"({summary['images_per_s']:.2f} images/s, {summary['generation_s']:.0f} s, "
               f"model load {summary['model_load_s']:.1f} s)")



# ----------------------------------------------------------------------------- feature commands (smi_features)
# (section owned by the features work; add `features` and `explain` here)
def _feature_mapper(cluster):
    """A context giving None without ``--cluster``, else a mapper that runs the photos on the Dask cluster."""
    from contextlib import contextmanager, nullcontext

    if not cluster:
        return nullcontext(None)
    from benchmarks.cluster import chunked_mapper, open_client, parse_cluster

    spec = parse_cluster(cluster)

    @contextmanager
    def on_cluster():
        click.echo(f"measuring on {spec.describe()} (dask.distributed)", err=True)
        with open_client(spec) as client:
            yield chunked_mapper(client)

    return on_cluster()


def _features_table(manifest, dataset, per, settings, jobs, no_cache, mapper):
    """The ``features`` command's table, reasons and scale-mode counts."""
    from smi_data.manifest import to_samples
    from smi_features.extractor import image_features, sample_features

    if per == "image":
        table = image_features(manifest, settings=settings, n_jobs=jobs, cache=not no_cache, mapper=mapper)
        failed = table[table["failure"] != ""]
        reasons = dict(zip(failed["subject_id"] + ":" + failed["view"], failed["failure"]))
        modes = table["scale_mode"].value_counts(dropna=False).to_dict()
    else:
        samples = to_samples(manifest, per)
        if samples.empty:
            _fail(f"{dataset}: no samples with the {per} view")
        table, reasons = sample_features(samples, settings=settings, n_jobs=jobs, cache=not no_cache, mapper=mapper)
        modes = {}
        for p in ("lat_", "post_"):
            for k, v in table[f"{p}scale_mode"].dropna().value_counts().items():
                modes[f"{p}{k}"] = modes.get(f"{p}{k}", 0) + int(v)
    return table, reasons, modes


@main.command()
@dataset_argument()
@out_option("features.csv", what="Output CSV file", file=True)
@click.option("--per", "per", default="image", type=click.Choice(["image", "lateral", "posterior", "both"]),
              help="Rows: one per image, or the sample table of a view (both: one row per person, with the "
                   "two-view ellipse features).")
@jobs_option()
@click.option("--no-cache", is_flag=True, help="Measure every image again (ignore and do not fill the cache).")
@click.option("--no-marker", is_flag=True, help="Do not look for the ArUco marker (manifest px_per_cm, else relative).")
@click.option("--require-marker", is_flag=True, help="Refuse photos without the ArUco marker (quality gate).")
@segmenter_option()
@cluster_option(detail="Here: the photos are measured there.")
@overwrite_option()
def features(dataset, out, per, jobs, no_cache, no_marker, require_marker, segmenter, cluster, overwrite):
    """Measure the lower leg in every photo of a dataset and write the feature table (cm).

    Each row carries the scale mode used (marker, manifest or relative), the silhouette
    method (learned, or canny / otsu for the classical finder) and, for a photo the
    quality gate refused or that could not be measured, the reason (its features are
    empty).
    """
    import time

    from smi_data.manifest import ManifestError, read_manifest
    from smi_data.runs import OutputExistsError, atomic_write_csv, check_output_file
    from smi_features.extractor import ExtractionSettings

    dataset = dataset or _default_dataset()
    try:
        check_output_file(out, overwrite=overwrite)
        manifest = read_manifest(dataset, require_label=False)
    except (ManifestError, OutputExistsError) as exc:
        _fail(str(exc))
    from smi_image.settings import SilhouetteSettings

    settings = ExtractionSettings(silhouette=SilhouetteSettings(segmenter=segmenter), use_marker=not no_marker,
                                  require_marker=require_marker)
    t0 = time.perf_counter()
    with _feature_mapper(cluster) as mapper:
        table, reasons, modes = _features_table(manifest, dataset, per, settings, jobs, no_cache, mapper)
    atomic_write_csv(table, out, float_format="%.6g")
    secs = time.perf_counter() - t0
    click.echo(f"{len(table)} row(s) from {dataset} in {secs:.1f} s; scale modes: "
               + ", ".join(f"{k} {v}" for k, v in modes.items()))
    if reasons:
        click.echo(f"{len(reasons)} row(s) could not be measured (their features are empty):")
        for sid, why in reasons.items():
            click.echo(f"  {sid}: {why}")
    click.echo(f"wrote {out}")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@dataset_argument()
@out_option(what="Output folder for plots and CSVs")
@view_option(None, detail="The samples to explain (default: the view the model was trained on).")
@click.option("--max-display", default=20, type=click.IntRange(3, 200), help="Features shown in the plots.")
@jobs_option()
@overwrite_option()
def explain(model_dir, dataset, out, view, max_display, jobs, overwrite):
    """SHAP explanation of an xgb-features model on a dataset (default: the bundled cohort).

    Writes shap_blocks.png / shap_blocks.csv (mean |SHAP| per block: covariates, each
    leg-dimension family), shap_beeswarm.png, shap_bar.png (mean |SHAP| per feature),
    shap_values.csv (attributions per sample), shap_mean_abs.csv and run.json to --out.
    """
    from smi_data.manifest import ManifestError
    from smi_data.modelfile import ModelFileError
    from smi_data.runs import OutputExistsError
    from smi_features.explain import explain_model

    dataset = dataset or _default_dataset()
    try:
        summary = explain_model(model_dir, dataset, out, view=view, n_jobs=jobs, overwrite=overwrite,
                                max_display=max_display)
    except (ManifestError, ModelFileError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    click.echo(f"{summary['tier']}-tier model: explained {summary['n_explained']} of {summary['n_samples']} "
               f"sample(s); base value {summary['base_value']:.3f} kg/m^2; SHAP vs XGBoost pred_contribs max |diff| "
               f"{summary['max_abs_diff_vs_xgboost_pred_contribs']:.2e}")
    for sid, why in summary["failures"].items():
        click.echo(f"  not explained {sid}: {why}")
    click.echo("mean |SHAP| per block of features (kg/m^2):")
    for row in summary["blocks"]:
        click.echo(f"  {row['block']:<34s} {row['mean_abs_shap']:.4f}")
    if summary["tier"] != "photo":
        click.echo("  (a model with covariates: a photo-tier model answers which leg dimensions drive SMI; "
                   "the benchmark's report shows its SHAP first)")
    click.echo("largest mean |SHAP| (kg/m^2):")
    for row in summary["top_features"]:
        click.echo(f"  {row['feature']:<34s} {row['mean_abs_shap']:.4f}")
    click.echo(f"wrote {out}")



# ----------------------------------------------------------------------------- model commands (train / predict)
_FAMILY_MODULES = {"baseline": "benchmarks.baselines", "features": "smi_features", "deep": "smi_deep"}


def _model_choices() -> list[str]:
    # kept in step with benchmarks.registry.MODELS (a test checks it); literal so --help stays instant
    return ["mean", "covariates", "tape", "xgb-features", "cnn-paper", "cnn-lite", "cnn-hybrid", "cnn-geo"]


@main.command()
@dataset_argument()
@click.option("--model", "model_name", default="xgb-features", type=click.Choice(_model_choices()),
              help="Model to train.")
@view_option("lateral", detail="The photos the model learns from.")
@out_option(what="Model folder to write")
@seed_option(detail="Here: model initialisation, augmentation and data order.")
@click.option("--epochs", default=None, type=click.IntRange(1, 10000), help="CNN epochs (default: the variant's).")
@click.option("--device", "torch_device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
              help="CNN device: auto picks CUDA, then MPS, then the CPU.")
@jobs_option()
@set_option()
@click.option("--intervals", "interval_method", default="auto",
              type=click.Choice(["auto", "refit", "cv", "split", "split-refit", "none"]),
              help="Conformal calibration for prediction intervals, inside the training data: auto = cross-"
                   "conformal (5 folds for the baselines, 10 for xgb-features), split (25 %, at least 24 people, held "
                   "out) for the CNNs; refit (= split-refit for the CNNs): the split's scores, then the model "
                   "refit on all.")
@tier_option(None, detail="What the model is told besides the photos; recorded in model.json, and predict then "
                         "asks for exactly that. Default: no tier, the model's own settings with every covariate "
                         "the dataset has (as before tiers).")
@overwrite_option()
def train(dataset, model_name, view, out, seed, epochs, torch_device, jobs, sets, interval_method, tier, overwrite):
    """Fit a model on a whole dataset (default: the bundled cohort) and save it to a model folder."""
    import importlib

    import numpy as np

    from benchmarks.harness import parse_overrides
    from benchmarks.overrides import check_overrides
    from smi_data.manifest import ManifestError, read_manifest, to_samples
    from smi_data.metrics import ccc, mape
    from smi_data.runs import RunRecord

    dataset = dataset or _default_dataset()
    out_path = Path(out)
    if out_path.resolve() == Path(dataset).resolve() or out_path.resolve() in Path(dataset).resolve().parents:
        _fail(f"{out_path}: this model folder would replace the input {dataset}; choose another --out")
    if out_path.exists() and any(out_path.iterdir()) and not overwrite:
        _fail(f"{out_path}: model folder exists; pass --overwrite or choose another --out")
    try:
        samples = to_samples(read_manifest(dataset), view)
    except ManifestError as exc:
        _fail(f"{exc}\nRun `legsmi validate {dataset}` for a full check.")
    if len(samples) < 5:
        _fail(f"{dataset}: only {len(samples)} sample(s) with view {view!r}; need at least 5 to train")
    from benchmarks.registry import get_spec

    from smi_data.tiers import tier_covariates

    spec = get_spec(model_name)
    set_overrides = check_overrides(parse_overrides(sets), models=[model_name]).get(model_name, {})
    if tier is not None:
        if tier not in spec.tiers:
            _fail(f"{model_name} runs at the tier(s) {', '.join(spec.tiers)}, not {tier}")
        clash = sorted(set(set_overrides) & set(spec.tier_params(tier)))
        if clash:
            _fail(f"--set {model_name}.{clash[0]} sets what --tier decides; use --tier photo|basic|weight instead")
        missing_cov = [c for c in tier_covariates(tier) if c not in samples.columns or samples[c].isna().any()]
        if missing_cov:
            _fail(f"{dataset}: the {tier} tier needs {', '.join(missing_cov)} for every sample; "
                  "fill the manifest or choose a narrower --tier")
    overrides = dict(set_overrides)
    probe = spec.build(seed, tier=tier)
    params = probe.get_params()
    if epochs is not None:
        if "epochs" not in params:
            _fail(f"--epochs applies to the CNN models, not {model_name}")
        overrides["epochs"] = epochs
    if "device" in params:
        overrides["device"] = torch_device
    if "n_jobs" in params:
        overrides["n_jobs"] = jobs
    model = spec.build(seed, tier=tier, **overrides)
    config = {"model": model_name, "view": view, "tier": tier, "dataset": str(Path(dataset).resolve()), "seed": seed,
              "overrides": set_overrides,
              "params": {k: v for k, v in model.get_params().items()
                         if isinstance(v, (int, float, str, bool, type(None), list, tuple))},
              "intervals": interval_method}
    from benchmarks.calibration import plan_intervals
    from smi_data.reasons import predict_with_reasons
    from smi_data.runs import stage_output

    wrapper, interval_note = plan_intervals(model, spec.calibration_family, samples, seed, interval_method)
    # the old model is kept until the new one is saved; a failed fit leaves no folder, an interrupted one its run.json
    stage = stage_output(out_path, overwrite=overwrite, protect=(dataset,), keep_failed=False)
    tmp = stage.path
    from benchmarks.harness import tier_inputs

    y = samples["smi"].to_numpy(float)
    # with a tier, what the benchmark gives a model at that tier and nothing more
    X = tier_inputs(samples, tier) if tier else samples.drop(columns=["smi"])
    try:
        with RunRecord(tmp, "train", config, seed, stage=stage) as rec:
            calibration = None
            if wrapper is not None:
                wrapper.fit(X, y)
                model, calibration = wrapper.estimator_, wrapper.calibration_
                if calibration is None:  # too few usable people (photos that could not be measured)
                    interval_note = f"no prediction intervals: {wrapper.calibration_error_}"
            else:
                model.fit(X, y)
            fitted, failures = predict_with_reasons(model, X)
            ok = np.isfinite(fitted)
            rec.data["results"] = {
                "n_samples": int(len(samples)), "n_failed": int((~ok).sum()), "failures": failures,
                "training_mape": float(mape(y[ok], fitted[ok])) if ok.sum() > 1 else None,
                "training_ccc": float(ccc(y[ok], fitted[ok]).ccc) if ok.sum() > 2 else None,
                # predict flags estimates outside it (benchmarks.predict); failed samples were not learnt from
                "smi_range": ([float(np.min(y[ok])), float(np.max(y[ok]))] if ok.any()
                              else [float(y.min()), float(y.max())]),
            }
            rec.data["results"]["intervals"] = (calibration.details | {"method": calibration.method,
                                                                       "bins": calibration.bins_used}
                                                if calibration is not None else interval_note)
            family_module = importlib.import_module(_FAMILY_MODULES[spec.family])
            training = rec.data["results"] | {"dataset": config["dataset"], "seed": seed}
            family_module.save_model(model, tmp, extra_meta={
                "view": view, "model_name": model_name, "tier": tier, "training": training,
                "intervals": "intervals.json" if calibration is not None else None})
            if calibration is not None:
                from smi_data.conformal import save_calibration
                from smi_data.modelfile import read_model_meta

                save_calibration(calibration, tmp, model_meta=read_model_meta(tmp))
    except ValueError as exc:  # data the model cannot learn from (e.g. no photo could be measured)
        _fail(f"training {model_name} on {dataset} failed: {exc}", 1)
    res = rec.data["results"]
    told = (f"{tier} tier: {', '.join(tier_covariates(tier)) or 'the photos alone'}" if tier
            else "no --tier: every covariate the dataset has")
    click.echo(f"trained {model_name} ({told}) on {res['n_samples']} {view} sample(s) from {dataset}"
               + (f" (the model itself on the {calibration.details['n_training_subjects']} subjects not held out to "
                  "calibrate its intervals)" if calibration is not None and calibration.method == "split" else "")
               + (f" (its intervals from a fit without {calibration.details['n_calibration_subjects']} held-out "
                  "subjects, then refit on all)" if calibration is not None and calibration.method == "split-refit"
                  else ""))
    if res["n_failed"]:
        click.echo(f"{res['n_failed']} sample(s) could not be used:")
        for sid, why in failures.items():
            click.echo(f"  {sid}: {why}")
    if res["training_mape"] is not None:
        click.echo(f"fit on the training data (optimistic; use `legsmi benchmark` for cross-validated figures): "
                   f"MAPE {res['training_mape']:.2f} %, CCC {res['training_ccc']:.3f}")
    from benchmarks.calibration import describe_calibration

    click.echo(describe_calibration(calibration) if calibration is not None else interval_note)
    click.echo(f"wrote {out_path}")


def _parse_photos(photos: tuple[str, ...], default_view: str) -> list[tuple[str, str]]:
    out = []
    for p in photos:
        view, sep, path = p.partition("=")
        if sep and view in ("lateral", "posterior"):
            out.append((view, path))
        else:
            out.append((default_view, p))
    return out


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("photos", nargs=-1)
@click.option("--dataset", type=click.Path(file_okay=False), default=None,
              help="Predict every sample of a dataset folder instead of single photos.")
@click.option("--sex", type=click.Choice(["M", "F"]), default=None, help="Sex of the person in the photos.")
@click.option("--age", type=click.FloatRange(0, 120), default=None, help="Age, years.")
@click.option("--height", "height_cm", type=click.FloatRange(100, 230), default=None, help="Height, cm.")
@click.option("--weight", "weight_kg", type=click.FloatRange(20, 300), default=None, help="Weight, kg.")
@click.option("--px-per-cm", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Image scale if the photo has no ArUco marker.")
@click.option("--reference-device", default="BIA", type=click.Choice(["BIA", "DXA"]),
              help="Which AWGS 2019 cut-off to flag against.")
@out_option("legsmi-predictions", what="Folder for predictions.csv and annotated photos")
@click.option("--no-annotate", is_flag=True, help="Do not write annotated copies of the photos.")
@overwrite_option()
def predict(model_dir, photos, dataset, sex, age, height_cm, weight_kg, px_per_cm, reference_device, out,
            no_annotate, overwrite):
    """Estimate SMI from photos with a trained model and flag low muscle mass (AWGS 2019).

    PHOTOS are image files of the view the model was trained on; for a model trained on
    both views give them as lateral=PATH posterior=PATH. Example:

      legsmi predict MODEL_DIR leg.jpg --sex F --age 70 --height 158
    """
    from benchmarks.predict import (PredictInputError, load_predictor, missing_inputs, samples_from_dataset,
                                    samples_from_photos)
    from smi_data.manifest import ManifestError
    from smi_data.modelfile import ModelFileError
    from smi_data.runs import OutputExistsError, RunRecord, atomic_write_csv, stage_output

    try:
        predictor = load_predictor(model_dir)
    except ModelFileError as exc:
        _fail(str(exc))
    view = predictor.view
    if dataset and photos:
        _fail("give PHOTOS or --dataset DIR, not both")
    try:
        if dataset:
            samples = samples_from_dataset(dataset, view, reference_device=reference_device)
        else:
            if not photos:
                _fail("give one or more PHOTOS, or --dataset DIR")
            # what the model's tier needs (sex always, for the cut-off); a folder without a tier: sex, age, height
            missing = missing_inputs(predictor.tier, sex=sex, age=age, height_cm=height_cm, weight_kg=weight_kg)
            if missing:
                flags = {"sex": "--sex", "age": "--age", "height_cm": "--height", "weight_kg": "--weight"}
                why = (f"this model was trained at the {predictor.tier} tier" if predictor.tier
                       else "the model uses them or reports them")
                _fail(f"{', '.join(flags[m] for m in missing)} required with single photos ({why}"
                      + ("; or use a model trained with `legsmi train --tier basic`" if "weight_kg" in missing else "")
                      + ")")
            samples = samples_from_photos(_parse_photos(photos, "lateral" if view == "both" else view), view,
                                          sex=sex, age=age, height_cm=height_cm, weight_kg=weight_kg,
                                          reference_device=reference_device, px_per_cm=px_per_cm,
                                          tier=predictor.tier)
    except (ManifestError, PredictInputError) as exc:
        _fail(str(exc))
    try:
        inputs = (model_dir, dataset, *photos, *(ph.partition("=")[2] for ph in photos if "=" in ph))
        stage = stage_output(out, overwrite=overwrite, protect=inputs)  # the old folder is kept until this one is done
    except OutputExistsError as exc:
        _fail(str(exc))
    out_dir = stage.path
    config = {"model_dir": str(Path(model_dir).resolve()), "model": predictor.name,
              "view": view, "dataset": dataset, "photos": list(photos), "reference_device": reference_device}
    with RunRecord(out_dir, "predict", config, None, stage=stage) as rec:
        res = predictor.predict(samples, out_dir=out_dir, annotate=not no_annotate, reference_device=reference_device)
        atomic_write_csv(res.table, out_dir / "predictions.csv")
        rec.data["results"] = {"n": len(res.estimates), "n_failed": res.n_failed}
    for est in res.estimates:
        click.echo(f"{est.sample_id}: {est.summary()}")
        for ph in est.photos:
            if "annotation_error" in ph.measurement:
                click.echo(f"  {ph.measurement['annotation_error']}", err=True)
    click.echo(f"wrote {stage.target / 'predictions.csv'}")
    if res.n_failed:
        sys.exit(1 if res.n_failed == len(res.estimates) else 0)


# ----------------------------------------------------------------------------- evaluation commands (benchmarks)
# (section owned by the benchmark work; add `benchmark`, `ablate`, `speed` here)
_DEFAULT_MODELS = "mean,covariates,tape,xgb-features,cnn-paper,cnn-geo"


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _echo_table(df) -> None:
    from benchmarks.report import md_table

    click.echo(md_table(df))


@main.command()
@dataset_argument()
@click.option("--models", default=_DEFAULT_MODELS, help="Comma-separated model names (see --list-models).")
@click.option("--views", default="auto",
              help="Comma-separated views (lateral, posterior, both), or 'auto': lateral and posterior for "
                   "every model, 'both' too for the cheap ones (the CNNs are the slow part).")
@tiers_option("auto", detail="'auto': every tier each model supports, the CNNs at photo only; 'all': the CNNs at "
                             "every tier too (slow).")
@folds_option(detail="When the splits are made here.")
@repeats_option()
@seed_option(detail="Here: splits, model initialisation, augmentation.")
@out_option("legsmi-benchmark", what="Run folder")
@splits_file_option()
@set_option()
@jobs_option(None, shown="one per core, one torch thread per CNN")
@cluster_option(detail="Here: the per-fold fits run there.")
@overwrite_option()
@click.option("--list-models", is_flag=True, help="List the models and exit.")
@click.option("--intervals", "interval_method", default="auto", show_default=True,
              type=click.Choice(["auto", "refit", "none"]),
              help="Conformal intervals inside each training fold (docs/intervals.md): auto = cross-conformal for "
                   "the cheap models, split (25 %, at least 24 people, held out) for the CNNs, which then predict from "
                   "the rest of the fold; refit = the same scores, the CNNs then refit on the whole fold (about "
                   "2.1x their CPU); none.")
def benchmark(dataset, models, views, tiers, folds, repeats, seed, out, splits_file, sets, jobs, cluster, overwrite,
              list_models, interval_method):
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
            click.echo(f"{spec.name:14s} {spec.family:9s} {','.join(spec.tiers):19s} {spec.description}")
        return
    try:
        cfg = BenchmarkConfig(dataset=dataset or _default_dataset(), out=out, models=_csv_list(models),
                              views=views, tiers=tiers, folds=folds, repeats=repeats, seed=seed,
                              splits=splits_file, overwrite=overwrite, jobs=jobs,  # None: one per core
                              overrides=parse_overrides(sets), cluster=cluster,
                              intervals=False if interval_method == "none" else interval_method)
        result = run_benchmark(cfg, echo=lambda s: click.echo(s, err=True))
    except (BenchmarkError, ManifestError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    table = result["table"]
    for tier in (dict.fromkeys(table["tier"]) if "tier" in table.columns else [None]):
        if tier is not None:
            click.echo(f"\n## tier: {tier}\n")
            part = table[table["tier"] == tier].drop(columns=["tier"])
            _echo_table(part.loc[:, [c for c in part.columns if not (part[c] == "n/a").all()]])
        else:
            _echo_table(table)
    for line in result.get("calibration_targets") or []:  # prediction intervals (benchmarks.calibration)
        click.echo(line)
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"report: {Path(result['out']) / 'report.html'} ({result['seconds']:.0f} s)")
    _exit_if_every_fit_failed(result["records"])


@main.command()
@dataset_argument()
@click.option("--ablations", default="canny,augment,views,feature-groups,resolution,train-size",
              help="Comma-separated ablations to run (also: leaky-protocols).")
@tiers_option("auto", detail="Of the arms: 'auto' (CNNs at photo, other models at their widest tier; the leaky "
                             "protocols at photo and weight), or a list such as photo,weight.")
@click.option("--model", default="xgb-features", help="Model of the 'views' and 'train-size' ablations.")
@click.option("--cnn-model", default="cnn-lite", type=click.Choice(["cnn-paper", "cnn-lite", "cnn-hybrid"]),
              help="CNN of the 'canny', 'augment' and 'resolution' ablations.")
@view_option("lateral", detail="Of every ablation except 'views'.")
@folds_option(detail="When the splits are made here.")
@repeats_option()
@seed_option()
@out_option("legsmi-ablate", what="Run folder")
@splits_file_option()
@set_option()
@jobs_option()
@overwrite_option()
def ablate(dataset, ablations, tiers, model, cnn_model, view, folds, repeats, seed, out, splits_file, sets, jobs,
           overwrite):
    """Named ablations under one set of splits, printed as one table.

    canny (CNN on edges vs grey), augment (on/off), views (lateral/posterior/both),
    feature-groups (width; +area; +curvature; +covariates), resolution (64/96/128 px),
    train-size (20/40/60/80/100 % of each training fold), leaky-protocols (augmented copies
    before the split, folds by image, hyper-parameters tuned on the test folds, scaling
    fitted on all rows, each beside the honest protocol; written to leaky.csv).
    """
    from benchmarks.ablate import AblateConfig, run_ablations
    from benchmarks.harness import BenchmarkError, parse_overrides
    from smi_data.manifest import ManifestError
    from smi_data.runs import OutputExistsError

    try:
        cfg = AblateConfig(dataset=dataset or _default_dataset(), out=out, ablations=_csv_list(ablations),
                           tiers=tiers if tiers == "auto" else _csv_list(tiers), folds=folds, repeats=repeats,
                           seed=seed, splits=splits_file, overwrite=overwrite,
                           jobs=jobs, cnn_model=cnn_model, model=model, view=view,
                           overrides=parse_overrides(sets))
        result = run_ablations(cfg, echo=lambda s: click.echo(s, err=True))
    except (BenchmarkError, ManifestError, OutputExistsError, ValueError) as exc:
        _fail(str(exc))
    if len(result["table"]):
        _echo_table(result["table"])
    if result.get("leaky") is not None:
        click.echo("\n## leaky protocols beside the honest one\n")
        _echo_table(result["leaky"])
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"table: {Path(result['out']) / 'ablation.md'} ({result['seconds']:.0f} s)")
    _exit_if_every_fit_failed(result.get("records"), "arm")


@main.command()
@dataset_argument()
@click.option("--models", default=_DEFAULT_MODELS, help="Models to time (empty: none).")
@view_option("lateral", detail="The view to time.")
@folds_option(detail="Sets the fold size as in the benchmark (1/folds held out).")
@seed_option()
@click.option("--jobs", default="1,2", help="Process counts for the feature-extraction timing.")
@click.option("--no-extraction", is_flag=True, help="Skip the feature-extraction timing.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Time extraction on the first N images only.")
@set_option()
def speed(dataset, models, view, folds, seed, jobs, no_extraction, limit, sets):
    """Time feature extraction (images/s) and one fold of each model (fit s/fold, predict images/s)."""
    from benchmarks.harness import BenchmarkError, parse_overrides
    from benchmarks.speed import run_speed
    from smi_data.manifest import ManifestError

    try:
        run_speed(dataset or _default_dataset(), models=_csv_list(models), view=view, folds=folds, seed=seed,
                  extraction=not no_extraction, jobs=[int(j) for j in _csv_list(jobs)], limit=limit,
                  overrides=parse_overrides(sets), echo=click.echo)
    except (BenchmarkError, ManifestError, ValueError) as exc:
        _fail(str(exc))



# ----------------------------------------------------------------------------- reliability (benchmarks.reliability)
@main.command()
@dataset_argument(required=True)
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="Model folder whose SMI estimate is studied too (without it: the leg measurements only).")
@out_option("legsmi-reliability", what="Folder for reliability.csv, measurements.csv, report.html and plots")
@jobs_option()
@segmenter_option()
@overwrite_option()
def reliability(dataset, model_dir, out, jobs, segmenter, overwrite):
    """Test-retest reliability from repeat photos (a manifest with a take column).

    For calf width, calf circumference, lower-leg volume, knee-ankle length and (with
    --model) the SMI estimate: ICC(2,1) and ICC(3,1) with 95 % CI, SEM, MDC95,
    within-subject CV % and Bland-Altman between takes. --segmenter picks the leg finder
    for the measurement rows; a model's estimate keeps the settings it was trained with.
    """
    from benchmarks.reliability import ReliabilityConfig, ReliabilityError, run_reliability
    from smi_data.manifest import ManifestError
    from smi_data.modelfile import ModelFileError
    from smi_data.runs import OutputExistsError

    try:
        res = run_reliability(ReliabilityConfig(dataset=dataset, out=out, model=model_dir, overwrite=overwrite,
                                                jobs=jobs, segmenter=segmenter), echo=lambda s: click.echo(s, err=True))
    except (ReliabilityError, ManifestError, ModelFileError, OutputExistsError) as exc:
        _fail(str(exc))
    _echo_table(res["display"])
    for line in res["targets"]:
        click.echo(line)
    if res["failures"]:
        click.echo(f"{len(res['failures'])} photo session(s) could not be measured or estimated (see report)", err=True)
    click.echo(f"report: {Path(res['out']) / 'report.html'} ({res['seconds']:.0f} s)")


# ----------------------------------------------------------------------------- the clinic's web page (smi_app)
def _app_models(model_dirs: tuple[str, ...]):
    """The models the page serves: the folders given, or the default light model (trained once, cached)."""
    from smi_app.models import DEFAULT_MODEL, ModelSet, ModelSetError, default_model_dirs
    from smi_data.modelfile import ModelFileError

    ctx = click.get_current_context()

    def train_default(dataset: str, view: str, out_dir) -> None:
        # the `train` command itself, so the app's model is exactly what `legsmi train` makes
        ctx.invoke(train, dataset=dataset, model_name=DEFAULT_MODEL, view=view, out=str(out_dir), seed=0)

    try:
        if model_dirs:
            return ModelSet.from_dirs(list(model_dirs))
        return ModelSet.from_dirs(default_model_dirs(train_default, echo=click.echo), default=True)
    except (ModelFileError, ModelSetError) as exc:
        _fail(str(exc))


_APP_MODEL_HELP = ("Model folder to serve; repeat to give one per view (lateral, posterior, both). "
                   "Default: xgb-features trained on the bundled cohort at the first start and cached.")


@main.command("app")
@click.option("--model", "model_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help=_APP_MODEL_HELP)
@click.option("--host", default="127.0.0.1",
              help="Interface to listen on; anything but loopback is reachable by others.")
@click.option("--port", default=8000, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--save", "save_dir", default=None, type=click.Path(file_okay=False),
              help="Keep every result (JSON, annotated photos, results.csv) in this folder; "
                   "default: nothing is stored.")
@max_concurrent_option()
def app_command(model_dirs, host, port, save_dir, max_concurrent):
    """Serve the clinic's web page: two photos and four numbers in, an annotated estimate out.

    Open the printed address in a browser. Photos are processed on this computer only.
    """
    import uvicorn

    from smi_app.server import LOOPBACK_HOSTS, create_app, is_loopback, uvicorn_config

    models = _app_models(model_dirs)
    loopback = is_loopback(host)
    if not loopback:
        click.echo(f"WARNING: listening on {host}, not on loopback: anyone who can reach this computer on port "
                   f"{port} can send photos and read estimates, without a login and without encryption (plain "
                   "HTTP). Use it only on a network you trust.", err=True)
    try:
        web = create_app(models, save_dir=save_dir, max_concurrent=max_concurrent,
                         allowed_hosts=list(LOOPBACK_HOSTS) if loopback else None)
    except OSError as exc:
        _fail(f"--save {save_dir}: cannot keep results there ({exc.strerror or exc}); choose another folder")
    import socket

    try:  # a clear message instead of uvicorn's log line when the port is taken
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host.strip("[]"), port))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or --host")
    desc = models.describe()
    click.echo(f"model: {desc['name']} ({', '.join(desc['views'])}), trained on {desc['trained_on']}")
    click.echo("not clinically validated; " + (f"results are kept in {save_dir}" if save_dir else "nothing is stored"))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"legsmi app: open http://{shown}:{port}/ (Ctrl+C to stop)")
    uvicorn.Server(uvicorn_config(web, host, port)).run()


@main.command("app-load")
@click.option("--model", "model_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help=_APP_MODEL_HELP)
@click.option("--requests", "n_requests", default=40, type=click.IntRange(1, 100000), help="Requests to send.")
@click.option("--concurrency", default=4, type=click.IntRange(1, 256), help="Requests in flight at once.")
@click.option("--views", default="lateral,posterior", type=click.Choice(["lateral,posterior", "lateral", "posterior"]),
              help="Bundled photos sent with each request.")
@max_concurrent_option()
def app_load(model_dirs, n_requests, concurrency, views, max_concurrent):
    """Load benchmark of the web app on loopback: throughput, p50/p95 latency, errors."""
    from smi_app.load import bundled_person, run_load
    from smi_app.server import create_app

    models = _app_models(model_dirs)
    photos, fields = bundled_person()
    photos = {v: p for v, p in photos.items() if v in views.split(",")}
    res = run_load(create_app(models, max_concurrent=max_concurrent), requests=n_requests, concurrency=concurrency,
                   photos=photos, fields=fields, echo=click.echo)
    if res["errors"]:
        sys.exit(1)


# ----------------------------------------------------------------------------- robustness (benchmarks.fuzz)
@main.command()
@out_option("legsmi-fuzz", what="Run folder")
@click.option("--images", "n_images", default=1000, type=click.IntRange(0, 100000),
              help="Mutated images to generate (spread over the categories) besides 20 unmutated controls.")
@click.option("--random-manifests", default=60, type=click.IntRange(0, 10000),
              help="Random byte-level manifest mutations besides the named broken manifests.")
@click.option("--no-manifests", is_flag=True, help="Fuzz the images only.")
@click.option("--model", "model_dirs", multiple=True, metavar="VIEW=DIR",
              help="Model folder to predict with, per view (default: xgb-features trained on the cohort here).")
@click.option("--no-predict", is_flag=True, help="Skip the predict stage (no model is trained).")
@click.option("--bare-predict", is_flag=True,
              help="Predict with the bare model, without predict's plausibility bound (shows what the bound catches).")
@click.option("--timeout", "timeout_s", default=30.0, type=click.FloatRange(1, 3600),
              help="Seconds one item may take before it counts as a hang (the worker is killed).")
@seed_option(detail="Here: the mutated corpus.")
@click.option("--cohort", default=None, type=click.Path(file_okay=False, exists=True),
              help="Dataset the corpus is made from (default: the bundled cohort).")
@overwrite_option()
def fuzz(out, n_images, random_manifests, no_manifests, model_dirs, no_predict, bare_predict, timeout_s, seed, cohort,
         overwrite):
    """Mutated photos and broken manifests through validate, features and predict; counts per category.

    Reports clear refusals, accepted items (and implausible estimates), tracebacks and hangs.
    Writes fuzz.md, fuzz.json, results.csv and run.json to --out; exit 1 when there is any
    traceback, hang or implausible estimate. See docs/robustness.md.
    """
    from benchmarks.fuzz import FuzzConfig, run_fuzz

    dirs = {}
    for item in model_dirs:
        view, sep, path = item.partition("=")
        if not sep or view not in ("lateral", "posterior"):
            raise click.UsageError(f"--model {item!r}: expected lateral=DIR or posterior=DIR")
        dirs[view] = path
    cfg = FuzzConfig(out=out, cohort=cohort, n_images=n_images, n_random_manifests=random_manifests, seed=seed,
                     timeout_s=timeout_s, model_dirs=dirs, train_models=not no_predict, overwrite=overwrite,
                     manifests=not no_manifests, bare_predict=bare_predict)
    result = run_fuzz(cfg, echo=lambda s: click.echo(s, err=True))
    click.echo(result["text"])
    click.echo(f"wrote {Path(result['out']) / 'fuzz.md'} ({result['summary']['seconds']:.0f} s)")
    t = result["summary"]["totals"]
    if t["tracebacks"] or t["hangs"] or t["implausible_estimates"] or t["silently_wrong_manifests"]:
        sys.exit(1)


# ----------------------------------------------------------------------------- segmentation (image layer)
@main.command()
@click.argument("photos", nargs=-1, required=True)
@out_option(what="Folder for <stem>.png masks (uint8 0/1, the photo's size) and segment.csv")
@click.option("--view", default=None, type=click.Choice(["lateral", "posterior"]), help="View of the photos.")
@click.option("--side", default=None, type=click.Choice(["L", "R"]),
              help="Photographed leg (with --view posterior: the subject's left leg is on the image's left); "
                   "default: the leg nearest the image centre.")
@segmenter_option()
@overwrite_option()
def segment(photos, out, view, side, segmenter, overwrite):
    """Segment the photographed lower leg in PHOTOS: one mask per photo and segment.csv.

    A photo is refused (all-0 mask) only where the leg itself cannot be found (no leg,
    legs merged, segmentation unsure); protocol problems (knee or sole out of frame,
    exposure, blur, tilt) are warnings in the reason column, and are refused later by
    features and predict.
    """
    from smi_data.runs import OutputExistsError, RunRecord, prepare_output_dir
    from smi_image.evaluate import segment_photos

    try:
        out_dir = prepare_output_dir(out, overwrite=overwrite, protect=photos)
    except OutputExistsError as exc:
        _fail(str(exc))
    config = {"photos": list(photos), "view": view, "side": side, "segmenter": segmenter}
    with RunRecord(out_dir, "segment", config, None) as rec:
        table = segment_photos(photos, out_dir, view=view, side=side, method=segmenter, echo=click.echo)
        rec.data["results"] = {"n": int(len(table)), "n_refused": int((table["status"] != "ok").sum())}
    click.echo(f"wrote {out_dir / 'segment.csv'} ({int((table['status'] == 'ok').sum())} ok, "
               f"{int((table['status'] != 'ok').sum())} refused)")


@main.command()
@click.argument("set_dir", type=click.Path(file_okay=False, exists=True))
@out_option("legsmi-segeval", what="Folder for segeval.csv, worst.png, summary.json and run.json")
@segmenter_option()
@click.option("--limit", default=None, type=click.IntRange(1), help="Score the first N photos only.")
@click.option("--worst", default=24, type=click.IntRange(1, 200), show_default=True,
              help="Photos on the contact sheet (lowest IoU first).")
@overwrite_option()
def segeval(set_dir, out, segmenter, limit, worst, overwrite):
    """Score the segmentation on SET_DIR (images/ and masks/, label 1 = the leg, 3 = footwear, left out).

    Prints median and mean IoU, the share with IoU >= 0.8, the share refused and the
    median calf-width error (px), and writes a per-photo CSV and a contact sheet of the
    worst cases.
    """
    from smi_data.runs import OutputExistsError, RunRecord, atomic_write_csv, atomic_write_json, prepare_output_dir
    from smi_image.evaluate import contact_sheet, evaluate_set, format_summary
    from smi_image.segment import resolve_method

    try:
        out_dir = prepare_output_dir(out, overwrite=overwrite, protect=(set_dir,))
    except OutputExistsError as exc:
        _fail(str(exc))
    method = resolve_method(segmenter)
    config = {"set_dir": str(Path(set_dir).resolve()), "segmenter": segmenter, "resolved": method, "limit": limit}
    with RunRecord(out_dir, "segeval", config, None) as rec:
        try:
            table, summary, masks = evaluate_set(set_dir, method=segmenter, limit=limit)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        atomic_write_csv(table, out_dir / "segeval.csv", float_format="%.4f")
        atomic_write_json(out_dir / "summary.json", summary | {"segmenter": method})
        contact_sheet(table, masks, out_dir / "worst.png", set_dir, n=worst)
        rec.data["results"] = summary
    click.echo(f"segmenter: {method}")
    click.echo(format_summary(summary))
    click.echo(f"wrote {out_dir / 'segeval.csv'}, {out_dir / 'worst.png'}")


@main.command()
@click.argument("cohorts", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@out_option(what="Folder for geo-<view>.pt, geo-pretrain-subjects.json, pretrain.json and run.json")
@click.option("--views", default="lateral,posterior", show_default=True, help="Views to pretrain a trunk for.")
@seed_option(detail="Here: the hold-out split, initialisation, order and augmentation.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 1000), help="Passes over the photos.")
@click.option("--holdout", default=0.1, show_default=True, type=click.FloatRange(0, 0.5),
              help="Share of the subjects kept out of training to report the held-out error.")
@click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False),
              help="Keep each cohort's network inputs here (npz), so a rerun skips the segmentation.")
@overwrite_option()
def pretrain(cohorts, out, views, seed, epochs, holdout, cache_dir, overwrite):
    """Pretrain cnn-geo's trunk: rendered cohorts' leg masks -> true leg geometry (never SMI).

    COHORTS are folders from `legsmi phantom --scene clinic` with seeds no bundled or test
    cohort uses; copy OUT's geo-*.pt and geo-pretrain-subjects.json to smi_deep/weights/ to
    ship them. See docs/cnn-geo.md.
    """
    import shlex

    from smi_data.runs import OutputExistsError, RunRecord, stage_output
    from smi_deep.geo import GEO_VIEWS
    from smi_deep.pretrain import pretrain as run_pretrain

    view_list = [v.strip() for v in views.split(",") if v.strip()]
    bad = [v for v in view_list if v not in GEO_VIEWS]
    if bad or not view_list:
        _fail(f"--views: choose from {', '.join(GEO_VIEWS)}, got {views!r}")
    try:
        stage = stage_output(out, overwrite=overwrite, protect=tuple(cohorts))
    except OutputExistsError as exc:
        _fail(str(exc))
    command = "legsmi pretrain " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    config = {"cohorts": [str(Path(c).resolve()) for c in cohorts], "views": view_list, "epochs": epochs,
              "holdout": holdout}
    with RunRecord(stage.path, "pretrain", config, seed, stage=stage) as rec:
        records = run_pretrain(cohorts, stage.path, views=view_list, seed=seed, epochs=epochs, holdout=holdout,
                               cache_dir=cache_dir, command=command, echo=click.echo)
        rec.data["results"] = {v: {k: r.get(k) for k in ("n_photos", "n_refused", "train_cpu_s")}
                               for v, r in records.items()}
    for v, r in records.items():
        err = r.get("holdout_error") or {}
        calf = err.get("calf_circ_cm", {})
        click.echo(f"{v}: {r['n_photos']} photos, held-out calf circumference MAE "
                   f"{calf.get('mae', float('nan')):.2f} cm ({calf.get('mape_pct', float('nan')):.1f} %), "
                   f"training {r['train_cpu_s']:.0f} s CPU")
    click.echo(f"wrote {Path(out)}")


@main.group()
def segmenter():
    """The learned leg segmenter: train it on synthetic wild scenes."""


@segmenter.command("train")
@out_option(what="Run folder (segmenter.pt, run.json, log.csv)")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Pre-rendered wild scenes (images/ and labels/, from `legsmi phantom --scene wild`); "
                   "default: render --scenes of them into the run folder.")
@click.option("--scenes", "n_scenes", default=300, show_default=True, type=click.IntRange(2, 100000),
              help="Subjects to render when no --data is given (two views each).")
@seed_option(detail="Here: scene rendering (seed + 1000), split, initialisation, augmentation.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 10000), help="Passes over the scenes.")
@click.option("--minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Stop after the epoch that passes this much training time (wall clock; the cosine "
                   "schedule anneals over it).")
@click.option("--cpu-minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="As --minutes, in CPU time of the process (user + sys, summed over its threads: about "
                   "--threads times the wall time on an idle machine); the same budget buys about the same "
                   "training on a loaded machine as on an idle one. log.csv records both clocks.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2, 1024), help="Scenes per step.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64), help="Torch CPU threads.")
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (AdamW; warm-up, then cosine).")
@click.option("--init", "init_weights", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Continue from this segmenter.pt (a previous run's) instead of a random start.")
@click.option("--negative-share", default=0.1, show_default=True, type=click.FloatRange(0, 0.9),
              help="Share of samples that are a photo with no leg (scikit-image's bundled photos, not the "
                   "quality gate's controls), target no leg anywhere.")
@click.option("--shoe-target", default="not_leg", show_default=True, type=click.Choice(["not_leg", "ignore"]),
              help="Painted shoes in training: not leg (clothing), or left out of the loss.")
@click.option("--input-px", default=128, show_default=True, type=click.IntRange(32, 512),
              help="Network input on a photo's longest side (a multiple of 16; --init weights of another "
                   "input size are continued at this one: the network is fully convolutional). Scenes are "
                   "cut at twice it: the default 300 x 400 renders serve up to 192.")
@overwrite_option()
def segmenter_train(out, data_dir, n_scenes, seed, epochs, minutes, batch_size, threads, lr, init_weights,
                    negative_share, shoe_target, input_px, cpu_minutes, overwrite):
    """Train the U-Net segmenter on wild scenes; copy DIR/segmenter.pt to smi_image/weights/ to ship it."""
    import json

    from smi_data.runs import OutputExistsError, RunRecord, prepare_output_dir
    from smi_image.train import TrainConfig, input_size, render_wild_scenes, train_segmenter

    if minutes and cpu_minutes:
        raise click.UsageError("give --minutes or --cpu-minutes, not both")
    budget = minutes or cpu_minutes
    try:
        size = input_size(input_px)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--input-px") from None
    try:
        out_dir = prepare_output_dir(out, overwrite=overwrite, protect=(data_dir,))
    except OutputExistsError as exc:
        _fail(str(exc))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, threads=threads, lr=lr,
                      negative_p=negative_share, shoe_target=shoe_target, **size,
                      time_budget_s=budget * 60 if budget else None,
                      budget_clock="cpu" if cpu_minutes else "wall",
                      init_weights=str(Path(init_weights).resolve()) if init_weights else None)
    config = {"data": data_dir, "n_scenes": n_scenes, "train": cfg.to_dict()}
    with RunRecord(out_dir, "segmenter train", config, seed) as rec:
        if data_dir is None:
            data_dir = str(out_dir / "scenes")
            data_command = render_wild_scenes(data_dir, n_scenes, seed + 1000, echo=click.echo)
        else:
            run_json = Path(data_dir) / "run.json"
            data_command = None
            if run_json.is_file():
                try:
                    data_command = " ".join(json.loads(run_json.read_text()).get("argv") or []) or None
                except (OSError, ValueError):
                    data_command = None
        rec.data["config"]["data_command"] = data_command
        try:
            results = train_segmenter(data_dir, out_dir, cfg, data_command=data_command, echo=click.echo)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        rec.data["results"] = results
    click.echo(f"wrote {out_dir / 'segmenter.pt'} (held-out IoU of the photographed leg "
               f"{results['val_target_iou']:.3f})")

@segmenter.command("orientation")
@out_option(what="Run folder (orientation.json, run.json)")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@seed_option(detail="Here: XGBoost's row and column sampling.")
@overwrite_option()
def segmenter_orientation(scenes, out, seed, overwrite):
    """Fit the upside-down rule on rendered SCENES (`legsmi phantom --scene clinic` folders: every photo
    upright and turned over, through the shipped segmenter); copy OUT/orientation.json to smi_image/weights/
    to ship it. Refit after retraining the segmenter. See docs/segmentation.md."""
    import shlex

    from smi_data.runs import OutputExistsError, RunRecord, atomic_write_json, stage_output
    from smi_image.orientation import fit_orientation, orientation_examples

    try:
        stage = stage_output(out, overwrite=overwrite, protect=tuple(scenes))
    except OutputExistsError as exc:
        _fail(str(exc))
    command = "legsmi segmenter orientation " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    with RunRecord(stage.path, "segmenter orientation", {"scenes": [str(Path(d).resolve()) for d in scenes]}, seed,
                   stage=stage) as rec:
        try:
            profiles, labels, sources = orientation_examples(scenes, echo=click.echo)
            rule = fit_orientation(profiles, labels, seed=seed)
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
        rule["training"].update(sources=sources, command=command)
        atomic_write_json(stage.path / "orientation.json", rule)
        rec.data["results"] = {k: v for k, v in rule["training"].items() if k != "xgb_params"}
    t = rule["training"]
    click.echo(f"wrote {Path(out) / 'orientation.json'} ({t['profiles']} profiles; refused at P > "
               f"{rule['refuse_above']:g}: upright {100 * t['upright_refused']:.2f} %, turned over "
               f"{100 * t['turned_refused']:.2f} %)")


if __name__ == "__main__":
    main()
