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
@main.command()
@click.option("--subjects", "n_subjects", default=100, type=click.IntRange(1, 100000),
              help="People to generate (sexes alternate M, F, ...).")
@click.option("--seed", default=0, type=int,
              help="The one seed: same seed, same files; another seed, other people (0 is the bundled cohort's; "
                   "training renders use 1000 and above).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output dataset folder.")
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
@click.option("--overwrite", is_flag=True, help="Replace an existing non-empty output folder.")
def phantom(n_subjects, seed, out, size, views, no_marker, scene, retakes, overwrite):
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
                                  marker=not no_marker, overwrite=overwrite, scene=scene, retakes=retakes)
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
@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--out", "out", default="features.csv", type=click.Path(dir_okay=False), help="Output CSV file.")
@click.option("--per", "per", default="image", type=click.Choice(["image", "lateral", "posterior", "both"]),
              help="Rows: one per image, or the sample table of a view (both: one row per person, with the "
                   "two-view ellipse features).")
@click.option("--jobs", default=1, type=click.IntRange(1, 64), help="Parallel extraction processes.")
@click.option("--no-cache", is_flag=True, help="Measure every image again (ignore and do not fill the cache).")
@click.option("--no-marker", is_flag=True, help="Do not look for the ArUco marker (manifest px_per_cm, else relative).")
@click.option("--require-marker", is_flag=True, help="Refuse photos without the ArUco marker (quality gate).")
@click.option("--segmenter", default="auto", show_default=True, type=click.Choice(["auto", "learned", "classical"]),
              help="Leg finder (auto: the learned one when its weights ship).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def features(dataset, out, per, jobs, no_cache, no_marker, require_marker, segmenter, overwrite):
    """Measure the lower leg in every photo of a dataset and write the feature table (cm).

    Each row carries the scale mode used (marker, manifest or relative), the silhouette
    method (learned, or canny / otsu for the classical finder) and, for a photo the
    quality gate refused or that could not be measured, the reason (its features are
    empty).
    """
    import time

    from smi_data.manifest import ManifestError, read_manifest, to_samples
    from smi_data.runs import OutputExistsError, atomic_write_csv, check_output_file
    from smi_features.extractor import ExtractionSettings, image_features, sample_features

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
    if per == "image":
        table = image_features(manifest, settings=settings, n_jobs=jobs, cache=not no_cache)
        failed = table[table["failure"] != ""]
        reasons = dict(zip(failed["subject_id"] + ":" + failed["view"], failed["failure"]))
        modes = table["scale_mode"].value_counts(dropna=False).to_dict()
    else:
        samples = to_samples(manifest, per)
        if samples.empty:
            _fail(f"{dataset}: no samples with the {per} view")
        table, reasons = sample_features(samples, settings=settings, n_jobs=jobs, cache=not no_cache)
        modes = {}
        for p in ("lat_", "post_"):
            for k, v in table[f"{p}scale_mode"].dropna().value_counts().items():
                modes[f"{p}{k}"] = modes.get(f"{p}{k}", 0) + int(v)
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
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder for plots and CSVs.")
@click.option("--view", default=None, type=click.Choice(["lateral", "posterior", "both"]),
              help="Samples to explain (default: the view the model was trained on).")
@click.option("--max-display", default=20, type=click.IntRange(3, 200), help="Features shown in the plots.")
@click.option("--jobs", default=1, type=click.IntRange(1, 64), help="Parallel extraction processes.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def explain(model_dir, dataset, out, view, max_display, jobs, overwrite):
    """SHAP explanation of an xgb-features model on a dataset (default: the bundled cohort).

    Writes shap_beeswarm.png, shap_bar.png (mean |SHAP| per feature), shap_values.csv
    (attributions per sample), shap_mean_abs.csv and run.json to --out.
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
    click.echo(f"explained {summary['n_explained']} of {summary['n_samples']} sample(s); base value "
               f"{summary['base_value']:.3f} kg/m^2; SHAP vs XGBoost pred_contribs max |diff| "
               f"{summary['max_abs_diff_vs_xgboost_pred_contribs']:.2e}")
    for sid, why in summary["failures"].items():
        click.echo(f"  not explained {sid}: {why}")
    click.echo("largest mean |SHAP| (kg/m^2):")
    for row in summary["top_features"]:
        click.echo(f"  {row['feature']:<34s} {row['mean_abs_shap']:.4f}")
    click.echo(f"wrote {out}")



# ----------------------------------------------------------------------------- model commands (train / predict)
_FAMILY_MODULES = {"baseline": "benchmarks.baselines", "features": "smi_features", "deep": "smi_deep"}


def _model_choices() -> list[str]:
    # kept in step with benchmarks.registry.MODELS (a test checks it); literal so --help stays instant
    return ["mean", "covariates", "tape", "xgb-features", "cnn-paper", "cnn-lite", "cnn-hybrid"]


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move a finished folder into place; an old one is removed only after the new one is there."""
    import shutil

    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder (e.g. made beforehand by the user) holds nothing to keep
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out}: exists; pass --overwrite or choose another --out")
        import os

        # a fresh name: never touch a sibling folder of the user's (e.g. their own 'MODEL.old' backup)
        old, k = out.with_name(f"{out.name}.old-{os.getpid()}"), 0
        while old.exists():
            k += 1
            old = out.with_name(f"{out.name}.old-{os.getpid()}-{k}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--model", "model_name", default="xgb-features", type=click.Choice(_model_choices()),
              help="Model to train.")
@click.option("--view", default="lateral", type=click.Choice(["lateral", "posterior", "both"]),
              help="Photos the model learns from (both: one sample per person with both photos).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--seed", default=0, type=int, help="Seed for model initialisation, augmentation and data order.")
@click.option("--epochs", default=None, type=click.IntRange(1, 10000), help="CNN epochs (default: the variant's).")
@click.option("--device", "torch_device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
              help="CNN device: auto picks CUDA, then MPS, then the CPU.")
@click.option("--jobs", default=1, type=click.IntRange(1, 64), help="Parallel feature extraction processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder.")
def train(dataset, model_name, view, out, seed, epochs, torch_device, jobs, overwrite):
    """Fit a model on a whole dataset (default: the bundled cohort) and save it to a model folder."""
    import importlib
    import os
    import shutil

    import numpy as np

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

    spec = get_spec(model_name)
    overrides = {}
    probe = spec.build(seed)
    params = probe.get_params()
    if epochs is not None:
        if "epochs" not in params:
            _fail(f"--epochs applies to the CNN models, not {model_name}")
        overrides["epochs"] = epochs
    if "device" in params:
        overrides["device"] = torch_device
    if "n_jobs" in params:
        overrides["n_jobs"] = jobs
    model = spec.build(seed, **overrides)
    config = {"model": model_name, "view": view, "dataset": str(Path(dataset).resolve()), "seed": seed,
              "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None), list, tuple))}}
    tmp = out_path.with_name(out_path.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=False)
    y = samples["smi"].to_numpy(float)
    X = samples.drop(columns=["smi"])
    try:
        with RunRecord(tmp, "train", config, seed) as rec:
            model.fit(X, y)
            fitted = model.predict(X)
            ok = np.isfinite(fitted)
            failures = dict(getattr(model, "failures_", {}) or {})
            rec.data["results"] = {
                "n_samples": int(len(samples)), "n_failed": int((~ok).sum()), "failures": failures,
                "training_mape": float(mape(y[ok], fitted[ok])) if ok.sum() > 1 else None,
                "training_ccc": float(ccc(y[ok], fitted[ok]).ccc) if ok.sum() > 2 else None,
            }
            family_module = importlib.import_module(_FAMILY_MODULES[spec.family])
            family_module.save_model(model, tmp, extra_meta={"view": view, "model_name": model_name,
                                                             "training": rec.data["results"] | {"dataset": config["dataset"], "seed": seed}})
    except ValueError as exc:  # data the model cannot learn from (e.g. no photo could be measured)
        shutil.rmtree(tmp, ignore_errors=True)
        _fail(f"training {model_name} on {dataset} failed: {exc}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written model folder left behind
        raise
    try:
        _swap_into_place(tmp, out_path, overwrite)
    except FileExistsError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _fail(str(exc))
    res = rec.data["results"]
    click.echo(f"trained {model_name} on {res['n_samples']} {view} sample(s) from {dataset}")
    if res["n_failed"]:
        click.echo(f"{res['n_failed']} sample(s) could not be used:")
        for sid, why in failures.items():
            click.echo(f"  {sid}: {why}")
    if res["training_mape"] is not None:
        click.echo(f"fit on the training data (optimistic; use `legsmi benchmark` for cross-validated figures): "
                   f"MAPE {res['training_mape']:.2f} %, CCC {res['training_ccc']:.3f}")
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
@click.option("--out", "out", default="legsmi-predictions", type=click.Path(file_okay=False),
              help="Folder for predictions.csv and annotated photos.")
@click.option("--no-annotate", is_flag=True, help="Do not write annotated copies of the photos.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def predict(model_dir, photos, dataset, sex, age, height_cm, weight_kg, px_per_cm, reference_device, out,
            no_annotate, overwrite):
    """Estimate SMI from photos with a trained model and flag low muscle mass (AWGS 2019).

    PHOTOS are image files of the view the model was trained on; for a model trained on
    both views give them as lateral=PATH posterior=PATH. Example:

      legsmi predict MODEL_DIR leg.jpg --sex F --age 70 --height 158
    """
    import numpy as np
    import pandas as pd

    from smi_data.cutoffs import low_muscle_mass, smi_cutoff
    from smi_data.images import ImageError, read_image
    from smi_data.manifest import ManifestError, read_manifest, to_samples
    from smi_data.modelfile import ModelFileError, read_model_meta
    from smi_data.runs import OutputExistsError, RunRecord, atomic_write_csv, prepare_output_dir

    try:
        meta = read_model_meta(model_dir)
        from benchmarks.registry import load_any_model

        model = load_any_model(model_dir)
    except ModelFileError as exc:
        _fail(str(exc))
    view = meta.get("view", "lateral")
    if dataset and photos:
        _fail("give PHOTOS or --dataset DIR, not both")
    if dataset:
        try:
            samples = to_samples(read_manifest(dataset, require_label=False), view)
        except ManifestError as exc:
            _fail(str(exc))
        if samples.empty:
            _fail(f"{dataset}: no samples with the {view} view; this model was trained on {view} photos")
        if "reference_device" not in samples.columns:
            samples["reference_device"] = reference_device
    else:
        if not photos:
            _fail("give one or more PHOTOS, or --dataset DIR")
        missing = [n for n, v in (("--sex", sex), ("--age", age), ("--height", height_cm)) if v is None]
        if missing:
            _fail(f"{', '.join(missing)} required with single photos (the model uses them or reports them)")
        parsed = _parse_photos(photos, "lateral" if view == "both" else view)
        rows = []
        base = {"sex": sex, "age": float(age), "height_cm": float(height_cm), "reference_device": reference_device}
        if weight_kg is not None:
            base["weight_kg"] = float(weight_kg)
        def empty():
            return {f"image_{v}": None for v in ("lateral", "posterior")} | {f"px_per_cm_{v}": float(px_per_cm) if px_per_cm else np.nan for v in ("lateral", "posterior")}
        if view == "both":
            by_view = {v: p for v, p in parsed}
            if set(by_view) != {"lateral", "posterior"} or len(parsed) != 2:
                _fail("this model was trained on both views: give lateral=PATH posterior=PATH")
            rec = {"sample_id": Path(by_view["lateral"]).stem + ":both", "subject_id": Path(by_view["lateral"]).stem,
                   "view": "both", **base, **empty()}
            for v, p in by_view.items():
                rec[f"image_{v}"] = str(Path(p).resolve())
            rows.append(rec)
        else:
            used: set[str] = set()
            for v, p in parsed:
                if v != view:
                    _fail(f"{p}: this model was trained on {view} photos, not {v}")
                # photos from different folders may share a name: keep their ids (and results) apart
                sid, k = Path(p).stem, 1
                while sid in used:
                    k += 1
                    sid = f"{Path(p).stem}-{k}"
                used.add(sid)
                rec = {"sample_id": f"{sid}:{view}", "subject_id": sid, "view": view, **base, **empty()}
                rec[f"image_{view}"] = str(Path(p).resolve())
                rows.append(rec)
        samples = pd.DataFrame(rows)
    # check images up front so bad ones are reported by name and skipped
    bad = {}
    for i, row in samples.iterrows():
        for v in ("lateral", "posterior"):
            p = row.get(f"image_{v}")
            if isinstance(p, str) and p:
                try:
                    read_image(p)
                except ImageError as exc:
                    bad[row["sample_id"]] = str(exc)
    good = samples[~samples["sample_id"].isin(bad)].reset_index(drop=True)
    try:
        inputs = (model_dir, dataset, *photos, *(ph.partition("=")[2] for ph in photos if "=" in ph))
        out_dir = prepare_output_dir(out, overwrite=overwrite, protect=inputs)
    except OutputExistsError as exc:
        _fail(str(exc))
    config = {"model_dir": str(Path(model_dir).resolve()), "model": meta.get("model_name", meta.get("model")),
              "view": view, "dataset": dataset, "photos": list(photos), "reference_device": reference_device}
    with RunRecord(out_dir, "predict", config, None) as rec:
        pred = model.predict(good.drop(columns=["smi"], errors="ignore")) if len(good) else np.array([])
        failures = dict(getattr(model, "failures_", {}) or {}) | bad
        good["smi_pred"] = pred
        result = pd.concat([good, samples[samples["sample_id"].isin(bad)]], ignore_index=True)
        result["smi_pred"] = result["smi_pred"].astype(float)
        devices = result["reference_device"].fillna(reference_device).replace("", reference_device)
        cut = [smi_cutoff(s, d) for s, d in zip(result["sex"], devices)]
        result["awgs_cutoff"] = cut
        ok = np.isfinite(result["smi_pred"].to_numpy())
        flag = np.full(len(result), None, dtype=object)
        if ok.any():
            flag[ok] = low_muscle_mass(result.loc[ok, "smi_pred"].to_numpy(), result.loc[ok, "sex"].to_numpy(),
                                       devices[ok].to_numpy())
        result["low_muscle_mass"] = flag
        result["failure"] = [failures.get(s, "") for s in result["sample_id"]]
        atomic_write_csv(result, out_dir / "predictions.csv")
        rec.data["results"] = {"n": int(len(result)), "n_failed": int((~ok).sum())}
        annotated: set[Path] = set()
        for _, r in result.iterrows():
            if not np.isfinite(r["smi_pred"]):
                click.echo(f"{r['sample_id']}: no estimate: {r['failure']}")
                continue
            verdict = "LOW muscle mass" if r["low_muscle_mass"] else "not low"
            text = (f"SMI {r['smi_pred']:.2f} kg/m2: {verdict} (AWGS 2019 {r['reference_device'] or reference_device}, "
                    f"{'men' if r['sex'] == 'M' else 'women'} < {r['awgs_cutoff']:.1f})")
            click.echo(f"{r['sample_id']}: {text}")
            if not no_annotate:
                try:
                    from smi_features.annotate import annotate_photo
                except ImportError:
                    continue
                for v in ("lateral", "posterior"):
                    p = r.get(f"image_{v}")
                    if isinstance(p, str) and p:
                        stem = Path(p).stem
                        target = out_dir / f"{stem}_annotated.png"
                        k = 1
                        while target in annotated:  # same file name from another folder: do not overwrite
                            k += 1
                            target = out_dir / f"{stem}-{k}_annotated.png"
                        annotated.add(target)
                        try:
                            ppc = r.get(f"px_per_cm_{v}")
                            annotate_photo(p, target, result_text=text, height_cm=float(r["height_cm"]),
                                           px_per_cm=float(ppc) if ppc is not None and np.isfinite(ppc) else None)
                        except Exception as exc:  # an annotation failure must not lose the estimate
                            click.echo(f"  could not annotate {p}: {exc}", err=True)
    click.echo(f"wrote {out_dir / 'predictions.csv'}")
    if (~ok).any():
        sys.exit(1 if not ok.any() else 0)


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


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False), required=False)
@click.option("--models", default=_DEFAULT_MODELS, help="Models to time (empty: none).")
@click.option("--view", default="lateral", type=click.Choice(["lateral", "posterior", "both"]), help="View to time.")
@click.option("--folds", default=5, type=click.IntRange(2, 50), help="Fold size as in the benchmark (1/folds held out).")
@click.option("--seed", default=0, type=int, help="The one seed.")
@click.option("--jobs", default="1,2", help="Process counts for the feature-extraction timing.")
@click.option("--no-extraction", is_flag=True, help="Skip the feature-extraction timing.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Time extraction on the first N images only.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.PARAM=VALUE", help="Override a model parameter.")
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



# ----------------------------------------------------------------------------- segmentation (image layer)
@main.command()
@click.argument("photos", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for <stem>.png masks (uint8 0/1, the photo's size) and segment.csv.")
@click.option("--view", default=None, type=click.Choice(["lateral", "posterior"]), help="View of the photos.")
@click.option("--side", default=None, type=click.Choice(["L", "R"]),
              help="Photographed leg (with --view posterior: the subject's left leg is on the image's left); "
                   "default: the leg nearest the image centre.")
@click.option("--segmenter", default="auto", type=click.Choice(["auto", "learned", "classical"]), show_default=True,
              help="Leg finder (auto: the learned one when its weights ship).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
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
@click.option("--out", "out", default="legsmi-segeval", type=click.Path(file_okay=False), show_default=True,
              help="Folder for segeval.csv, worst.png, summary.json and run.json.")
@click.option("--segmenter", default="auto", type=click.Choice(["auto", "learned", "classical"]), show_default=True,
              help="Leg finder to score.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Score the first N photos only.")
@click.option("--worst", default=24, type=click.IntRange(1, 200), show_default=True,
              help="Photos on the contact sheet (lowest IoU first).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
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


@main.group()
def segmenter():
    """The learned leg segmenter: train it on synthetic wild scenes."""


@segmenter.command("train")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder (segmenter.pt, run.json, log.csv).")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Pre-rendered wild scenes (images/ and labels/, from `legsmi phantom --scene wild`); "
                   "default: render --scenes of them into the run folder.")
@click.option("--scenes", "n_scenes", default=300, show_default=True, type=click.IntRange(2, 100000),
              help="Subjects to render when no --data is given (two views each).")
@click.option("--seed", default=0, type=int, show_default=True,
              help="The one seed: scene rendering (seed + 1000), split, initialisation, augmentation.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 10000), help="Passes over the scenes.")
@click.option("--minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Stop after the epoch that passes this much training time.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(2, 1024), help="Scenes per step.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64), help="Torch CPU threads.")
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (AdamW; warm-up, then cosine).")
@click.option("--init", "init_weights", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Continue from this segmenter.pt (a previous run's) instead of a random start.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty run folder.")
def segmenter_train(out, data_dir, n_scenes, seed, epochs, minutes, batch_size, threads, lr, init_weights,
                    overwrite):
    """Train the U-Net segmenter on wild scenes; copy DIR/segmenter.pt to smi_image/weights/ to ship it."""
    import json

    from smi_data.runs import OutputExistsError, RunRecord, prepare_output_dir
    from smi_image.train import TrainConfig, render_wild_scenes, train_segmenter

    try:
        out_dir = prepare_output_dir(out, overwrite=overwrite, protect=(data_dir,))
    except OutputExistsError as exc:
        _fail(str(exc))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, threads=threads, lr=lr,
                      time_budget_s=minutes * 60 if minutes else None,
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

if __name__ == "__main__":
    main()
