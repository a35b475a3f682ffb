"""Estimate SMI for people from their photos with a trained model: the library behind ``legsmi predict``.

One call, from a notebook, the command line or the web app::

    from benchmarks.predict import load_predictor

    predictor = load_predictor("models/xgb-lateral")
    est = predictor.estimate({"lateral": "leg.jpg"}, sex="F", age=70, height_cm=158)
    est.smi, est.low_muscle_mass, est.photos[0].status, est.photos[0].reason

:class:`Predictor` loads a model folder once (the app keeps it for every request);
:meth:`Predictor.estimate` takes one person's photos (by view) and covariates and
returns an :class:`Estimate`; :meth:`Predictor.predict` takes a sample table
(:func:`samples_from_photos`, :func:`samples_from_dataset`) and returns a
:class:`PredictionResult` with one :class:`Estimate` per sample and the
``predictions.csv`` table.

Every estimate is bounded. A model output outside :data:`PLAUSIBLE_SMI_KG_M2`
(2-20 kg/m^2: below any adult measured by DXA or BIA, above elite athletes) is
refused with its reason, like an unmeasurable photo. An output outside the range of
SMI the model was trained on, widened by :data:`TRAINING_RANGE_MARGIN` of that range
on each side, is kept but flagged (``outside_training_range``, the ``caution`` note):
it is an extrapolation, not a measurement. The training range is
``training.smi_range`` in model.json (written by ``legsmi train``); an older model
folder without it gets ``outside_training_range = None`` and a note saying so.

Information tier: a model folder trained with ``legsmi train --tier photo|basic|weight``
records it (``tier`` in model.json), and the model is handed only that tier's covariates
(:func:`smi_data.tiers.restrict_to_tier`, as the benchmark does). Sex is required at
every tier (the AWGS cut-off depends on it); a ``basic`` model also needs age and height,
a ``weight`` model the weight too (:func:`required_inputs`): missing, the person's
estimate is refused with that reason (a table row, or :class:`PredictInputError` from
:func:`samples_from_photos`). A folder without a tier needs sex, age and height, as before.

Fields for intervals and three-way screening (``interval_90``, ``interval_95``,
``screening``, ``p_low``) are part of :class:`Estimate` and of the table, None until
a model carries what they need.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from smi_data.manifest import RANGES, VIEWS
from smi_data.reasons import predict_with_reasons

logger = logging.getLogger(__name__)

#: SMI (kg/m^2) an adult can have; a model output outside it is refused. The same range the manifest
#: accepts as a reference SMI (one definition, in smi_data.manifest).
PLAUSIBLE_SMI_KG_M2 = RANGES["smi"]
#: Share of the training SMI range added on each side before an estimate is flagged as outside it.
TRAINING_RANGE_MARGIN = 0.10


class PredictInputError(ValueError):
    """Input that cannot be predicted on (missing covariates, wrong views, an empty dataset)."""


# ----------------------------------------------------------------------------- result objects
@dataclass
class PhotoStatus:
    """What happened to one photo.

    Attributes
    ----------
    view : {'lateral', 'posterior'}
    path : str or None
        The photo file given (absolute).
    status : {'ok', 'refused'}
        ``refused``: the photo could not be read or measured, or its sample's estimate was refused.
    reason : str or None
        Why it was refused.
    advice : str or None
        What to do about it (retake with the knee in frame, place the marker card, ...).
    annotated_path : str or None
        The annotated copy (outline, levels, marker, result), when one was written.
    measurement : dict
        What the annotation measured (``calf_max_width_cm``, ``scale_mode``, ``px_per_cm``).
    """

    view: str
    path: str | None
    status: str = "ok"
    reason: str | None = None
    advice: str | None = None
    annotated_path: str | None = None
    measurement: dict = field(default_factory=dict)


@dataclass
class Estimate:
    """The estimate for one sample (one photo for a single-view model, one person for ``both``).

    ``smi`` is None when the estimate is refused (``status == 'refused'``, ``reason``
    says why). ``low_muscle_mass`` is the AWGS 2019 flag (``smi < awgs_cutoff``).
    ``interval_90``, ``interval_95`` (``(low, high)`` kg/m^2), ``screening``
    (``'low'``, ``'not low'``, ``'indeterminate'``) and ``p_low`` (probability of SMI
    below the cut-off) are None until the model carries calibrated intervals.
    """

    sample_id: str
    subject_id: str
    view: str
    sex: str | None
    reference_device: str
    awgs_cutoff: float | None
    smi: float | None = None
    status: str = "ok"
    reason: str | None = None
    low_muscle_mass: bool | None = None
    training_smi_range: tuple[float, float] | None = None
    outside_training_range: bool | None = None
    caution: str | None = None
    interval_90: tuple[float, float] | None = None
    interval_95: tuple[float, float] | None = None
    screening: str | None = None
    p_low: float | None = None
    photos: list[PhotoStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.smi is not None

    def summary(self) -> str:
        """The estimate and the flag (one line), or why there is none.

        With calibrated intervals: the estimate with its 95 % and 90 % intervals, then on
        a second line the three-way screening result and the probability of being below
        the cut-off.
        """
        if not self.ok:
            return f"no estimate: {self.reason}"
        if self.interval_95 is not None and self.screening:
            lo95, hi95 = self.interval_95
            lo90, hi90 = self.interval_90
            text = (f"SMI {self.smi:.2f} kg/m2, 95 % interval {lo95:.2f}-{hi95:.2f} (90 %: {lo90:.2f}-{hi90:.2f})"
                    f"\n  AWGS 2019 {self.reference_device}, {'men' if self.sex == 'M' else 'women'} < "
                    f"{self.awgs_cutoff:.1f}: {self.screening}"
                    f", P(SMI < {self.awgs_cutoff:.1f}) = {self.p_low:.2f}")
            if self.caution:
                text += f"\n  [caution: {self.caution}]"
            return text
        verdict = "LOW muscle mass" if self.low_muscle_mass else "not low"
        text = (f"SMI {self.smi:.2f} kg/m2: {verdict} (AWGS 2019 {self.reference_device}, "
                f"{'men' if self.sex == 'M' else 'women'} < {self.awgs_cutoff:.1f})")
        if self.caution:
            text += f" [caution: {self.caution}]"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass
class PredictionResult:
    """Every estimate of one call, the table for ``predictions.csv`` and the model's description."""

    estimates: list[Estimate]
    table: pd.DataFrame
    model: dict

    @property
    def n_failed(self) -> int:
        return sum(not e.ok for e in self.estimates)


# ----------------------------------------------------------------------------- advice for a refusal
_ADVICE = (
    (("too dark",), "add light, or retake without a window or lamp behind the person"),
    (("overexposed",), "retake without flash or direct sun"),
    (("blurred",), "hold the camera still and focus on the leg"),
    (("cut by the frame",), "retake with the whole lower leg, knee to sole, inside the frame"),
    (("legs merged", "both legs"), "retake with the other leg set back or out of the photo"),
    (("not found", "not a regular file"), "the photo file is missing; choose it again"),
    (("safety limit", "too large"), "the photo is too large; send it at a lower resolution (e.g. 2000 px)"),
    (("empty", "truncated", "decode", "not a readable image", "unusable image", "corrupt"),
     "the file is not a usable photo; take it again or export it as JPEG or PNG"),
    (("has no lateral photo", "has no posterior photo", "no image"),
     "add the missing view's photo, or use a model trained on the views you have"),
    (("plausible range",), "check the photo (whole lower leg, marker card at the leg) and the height entered"),
    (("no leg", "leg-shaped", "outline", "silhouette"),
     "retake the photo: the whole lower leg from knee to floor in frame, against a plain background"),
    (("knee",), "retake the photo with the knee in frame"),
    (("ankle", "foot"), "retake the photo with the ankle and foot in frame"),
    (("marker", "scale", "relative"), "place the marker card beside the leg, at the leg's depth, fully in frame"),
    (("leg", "edge", "region"),
     "retake the photo: the whole lower leg from knee to floor in frame, against a plain background"),
)


#: First words of a clause that already says what to do ("...; retake without backlight").
_ADVICE_VERBS = ("add", "retake", "hold", "frame", "place", "photograph", "copy", "re-export", "export",
                 "downscale", "send", "take", "use", "check", "move", "choose", "stand", "turn", "remove")


def advice_for(reason: str | None) -> str | None:
    """What a person can do about a refusal, from its reason (None for no reason).

    A reason whose last clause already says what to do (the image and segmentation
    layers write them so: "...; hold the camera still") keeps those words; otherwise
    the advice comes from the first keyword of :data:`_ADVICE` found in the reason.
    """
    if not reason:
        return None
    clauses = [c.strip() for c in reason.strip().split(";") if c.strip()]
    if len(clauses) > 1 and clauses[-1].split(" ", 1)[0].lower() in _ADVICE_VERBS:
        return clauses[-1]
    low = reason.lower()
    for keys, advice in _ADVICE:
        if any(k in low for k in keys):
            return advice
    return "retake the photo: whole lower leg in frame, plain background, marker card beside the leg"


# ----------------------------------------------------------------------------- building the sample table
def _empty_images(px_per_cm: float | None) -> dict:
    ppc = float(px_per_cm) if px_per_cm else np.nan
    return {f"image_{v}": None for v in VIEWS} | {f"px_per_cm_{v}": ppc for v in VIEWS}


def required_inputs(tier: str | None) -> tuple[str, ...]:
    """Sample-table fields a model at ``tier`` needs for one person.

    ``sex`` always (the AWGS cut-off depends on it, even where the model is not told it);
    the tier's covariates besides (:mod:`smi_data.tiers`): nothing more for ``photo``,
    age and height for ``basic``, and the weight too for ``weight``. A model folder that
    records no tier (made before tiers) needs sex, age and height, as it always did.
    """
    from smi_data.tiers import tier_covariates

    if tier is None:
        return ("sex", "age", "height_cm")
    return ("sex", *(c for c in tier_covariates(tier) if c != "sex"))


def missing_inputs(tier: str | None, **values) -> list[str]:
    """Names of the :func:`required_inputs` that ``values`` leaves None or not a number."""
    out = []
    for name in required_inputs(tier):
        v = values.get(name)
        if v is None or (name != "sex" and not np.isfinite(_float_or_nan(v))):
            out.append(name)
    return out


def _float_or_nan(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _missing_message(tier: str | None, missing: list[str]) -> str:
    what = {"sex": "sex", "age": "age", "height_cm": "height", "weight_kg": "weight"}
    names = ", ".join(what.get(m, m) for m in missing)
    if tier is None:
        return f"{names} required (the model uses them or reports them)"
    why = "for the AWGS cut-off" if missing == ["sex"] else f"this model was trained at the {tier} tier"
    hint = "; or use a model trained at the basic tier (`legsmi train --tier basic`)" if "weight_kg" in missing else ""
    return f"{names} required: {why}{hint}"


def samples_from_photos(photos, model_view: str, *, sex: str, age: float | None = None,
                        height_cm: float | None = None, weight_kg: float | None = None,
                        reference_device: str = "BIA", px_per_cm: float | None = None,
                        tier: str | None = None) -> pd.DataFrame:
    """The sample table for one person's photos.

    Parameters
    ----------
    photos : sequence of (view, path) or mapping view -> path
        For a single-view model every photo is its own sample (ids from the file
        names, made unique); for a ``both`` model exactly one lateral and one
        posterior photo make one sample.
    model_view : {'lateral', 'posterior', 'both'}
    sex, age, height_cm, weight_kg, reference_device, px_per_cm
        The person's covariates, the AWGS device and the scale if there is no marker.
    tier : {'photo', 'basic', 'weight'} or None, keyword-only
        The model's information tier: which covariates are required (:func:`required_inputs`).

    Raises
    ------
    PredictInputError
        Missing covariates, no photo, or views that do not fit the model.
    """
    pairs = list(photos.items()) if isinstance(photos, Mapping) else [tuple(p) for p in photos]
    if not pairs:
        raise PredictInputError("give one or more photos")
    missing = missing_inputs(tier, sex=sex, age=age, height_cm=height_cm, weight_kg=weight_kg)
    if missing:
        raise PredictInputError(_missing_message(tier, missing))
    base = {"sex": sex, "age": _float_or_nan(age), "height_cm": _float_or_nan(height_cm),
            "reference_device": reference_device}
    if weight_kg is not None:
        base["weight_kg"] = float(weight_kg)
    rows = []
    if model_view == "both":
        by_view = dict(pairs)
        if set(by_view) != set(VIEWS) or len(pairs) != 2:
            raise PredictInputError("this model was trained on both views: give lateral=PATH posterior=PATH")
        stem = Path(by_view["lateral"]).stem
        rec = {"sample_id": f"{stem}:both", "subject_id": stem, "view": "both", **base, **_empty_images(px_per_cm)}
        for v, p in by_view.items():
            rec[f"image_{v}"] = str(Path(p).resolve())
        rows.append(rec)
    else:
        used: set[str] = set()
        for v, p in pairs:
            if v != model_view:
                raise PredictInputError(f"{p}: this model was trained on {model_view} photos, not {v}")
            # photos from different folders may share a name: keep their ids (and results) apart
            sid, k = Path(p).stem, 1
            while sid in used:
                k += 1
                sid = f"{Path(p).stem}-{k}"
            used.add(sid)
            rec = {"sample_id": f"{sid}:{model_view}", "subject_id": sid, "view": model_view, **base,
                   **_empty_images(px_per_cm)}
            rec[f"image_{model_view}"] = str(Path(p).resolve())
            rows.append(rec)
    return pd.DataFrame(rows)


def samples_from_dataset(dataset, model_view: str, *, reference_device: str = "BIA") -> pd.DataFrame:
    """The sample table of every person in a dataset folder with the model's view (labels optional).

    Raises
    ------
    smi_data.manifest.ManifestError
        A manifest that cannot be read.
    PredictInputError
        No sample with the model's view.
    """
    from smi_data.manifest import read_manifest, to_samples

    samples = to_samples(read_manifest(dataset, require_label=False), model_view)
    if samples.empty:
        raise PredictInputError(f"{dataset}: no samples with the {model_view} view; "
                                f"this model was trained on {model_view} photos")
    if "reference_device" not in samples.columns:
        samples["reference_device"] = reference_device
    return samples


# ----------------------------------------------------------------------------- the predictor
def training_smi_range(meta: dict) -> tuple[float, float] | None:
    """``(min, max)`` SMI of the model's training data from model.json, or None if not recorded."""
    rng = (meta.get("training") or {}).get("smi_range")
    try:
        lo, hi = float(rng[0]), float(rng[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) and lo <= hi else None


def bound_estimate(smi: float,
                   training_range: tuple[float, float] | None) -> tuple[str | None, bool | None, str | None]:
    """Check one model output against the plausible and the training range.

    Returns
    -------
    refusal : str or None
        Why the estimate is refused (outside :data:`PLAUSIBLE_SMI_KG_M2`), else None.
    outside_training_range : bool or None
        None when the model did not record its training range.
    caution : str or None
        The note that goes with a flagged (or unchecked) estimate.
    """
    lo, hi = PLAUSIBLE_SMI_KG_M2
    if not np.isfinite(smi) or not lo <= smi <= hi:
        return (f"the model's estimate {smi:.2f} kg/m2 is outside the plausible range {lo:g}-{hi:g} kg/m2 "
                "(the photo's scale or the height is probably wrong)"), None, None
    if training_range is None:
        return None, None, "the model folder does not record its training SMI range, so extrapolation is unchecked"
    tlo, thi = training_range
    margin = TRAINING_RANGE_MARGIN * (thi - tlo)
    if tlo - margin <= smi <= thi + margin:
        return None, False, None
    return None, True, (f"outside the model's training range ({tlo:.2f}-{thi:.2f} kg/m2): "
                        "an extrapolation, not a measurement")


class Predictor:
    """A loaded model folder that estimates SMI from photos; safe to share between threads.

    Parameters
    ----------
    model_dir : path-like
        A folder written by ``legsmi train`` (model.json checked first).
    cache : bool or None, keyword-only
        Switch the per-image feature cache of the model on or off (None: as saved).
        The app switches it off so nothing derived from a patient's photo is kept.

    Raises
    ------
    smi_data.modelfile.ModelFileError
        Not a legsmi model folder, or one this code cannot load.
    """

    def __init__(self, model_dir, *, cache: bool | None = None):
        from benchmarks.registry import load_any_model
        from smi_data.modelfile import read_model_meta

        self.model_dir = Path(model_dir)
        self.meta = read_model_meta(model_dir)
        self.model = load_any_model(model_dir)
        if cache is not None and "cache" in self.model.get_params():
            self.model.set_params(cache=bool(cache))
        self.view = self.meta.get("view", "lateral")
        self.tier = _model_tier(self.meta)
        self.name = self.meta.get("model_name", self.meta.get("model"))
        self.training_range = training_smi_range(self.meta)
        self.calibration = _load_calibration(self.model_dir, self.meta)
        # the model's caches (feature records, crops) are shared: one request at a time
        self._lock = threading.Lock()

    def info(self) -> dict:
        """What the model is and what it was trained on (for a page, a report, a run record)."""
        tr = self.meta.get("training") or {}
        return {"name": self.name, "family": self.meta.get("family"), "view": self.view, "tier": self.tier,
                "model_dir": str(self.model_dir.resolve()), "created": self.meta.get("created"),
                "trained_on": tr.get("dataset"), "n_samples": tr.get("n_samples"), "seed": tr.get("seed"),
                "training_smi_range": list(self.training_range) if self.training_range else None,
                "intervals": None if self.calibration is None else {
                    "method": self.calibration.method, "bins": self.calibration.bins_used,
                    "n_scores": self.calibration.details.get("n_scores")}}

    # ------------------------------------------------------------------ one person
    def estimate(self, photos: Mapping[str, str | os.PathLike], *, sex: str, age: float, height_cm: float,
                 weight_kg: float | None = None, reference_device: str | None = "BIA",
                 px_per_cm: float | None = None, out_dir=None, annotate: bool = True,
                 annotated_suffix: str = ".png") -> Estimate:
        """The estimate for one person from photos by view (``{'lateral': path, 'posterior': path}``).

        Photos of a view the model does not use are reported as refused with the reason.
        """
        from smi_data.cutoffs import normalise_device

        device = normalise_device(reference_device)
        photos = {v: p for v, p in photos.items() if p is not None}
        unknown = [v for v in photos if v not in VIEWS]
        if unknown:
            raise PredictInputError(f"unknown view {unknown[0]!r}; expected lateral or posterior")
        wanted = VIEWS if self.view == "both" else (self.view,)
        used = {v: p for v, p in photos.items() if v in wanted}
        unused = [PhotoStatus(v, str(Path(p).resolve()), "refused",
                              f"this model uses {' and '.join(wanted)} photos, not {v}",
                              "use a model trained on this view") for v, p in photos.items() if v not in wanted]
        if not used or (self.view == "both" and len(used) != 2):
            need = " and ".join(f"a {v}" for v in wanted)
            reason = f"this model needs {need} photo"
            return Estimate(sample_id="person", subject_id="person", view=self.view, sex=sex,
                            reference_device=device, awgs_cutoff=_cutoff(sex, device), status="refused",
                            reason=reason, training_smi_range=self.training_range,
                            photos=[*(PhotoStatus(v, str(Path(p).resolve())) for v, p in used.items()), *unused])
        missing = missing_inputs(self.tier, sex=sex, age=age, height_cm=height_cm, weight_kg=weight_kg)
        if missing:  # a refusal with its reason, like a missing photo (the app shows it; no traceback)
            return Estimate(sample_id="person", subject_id="person", view=self.view, sex=sex,
                            reference_device=device, awgs_cutoff=_cutoff(sex, device), status="refused",
                            reason=_missing_message(self.tier, missing), training_smi_range=self.training_range,
                            photos=[*(PhotoStatus(v, str(Path(p).resolve())) for v, p in used.items()), *unused])
        samples = samples_from_photos(used, self.view, sex=sex, age=age, height_cm=height_cm, weight_kg=weight_kg,
                                      reference_device=device, px_per_cm=px_per_cm, tier=self.tier)
        est = self.predict(samples, out_dir=out_dir, annotate=annotate, reference_device=device,
                           annotated_suffix=annotated_suffix).estimates[0]
        est.photos.extend(unused)
        return est

    # ------------------------------------------------------------------ a sample table
    def predict(self, samples: pd.DataFrame, *, out_dir=None, annotate: bool = True,
                reference_device: str = "BIA", annotated_suffix: str = ".png") -> PredictionResult:
        """Estimates for every sample of a sample table.

        Unreadable images are refused by name before the model sees them; the model's
        own failures, and estimates outside the plausible range, are refused with their
        reasons. With ``out_dir`` and ``annotate``, an annotated copy of every photo of
        an estimated sample is written there (``<stem>_annotated.png``, or ``.jpg`` by
        ``annotated_suffix``; never over one written by this call). Nothing is written
        without ``out_dir``.
        """
        from smi_data.images import ImageError, read_image

        bad: dict[str, str] = {}
        for _, row in samples.iterrows():
            for v in VIEWS:
                p = row.get(f"image_{v}")
                if isinstance(p, str) and p:
                    try:
                        read_image(p)
                    except ImageError as exc:
                        why = f"{v} photo: {exc}" if row["view"] == "both" else str(exc)
                        bad.setdefault(str(row["sample_id"]), why)
        for sid, why in self._missing_covariates(samples).items():
            bad.setdefault(sid, why)
        is_bad = samples["sample_id"].astype(str).isin(bad)
        good = samples[~is_bad].reset_index(drop=True)
        with _kept_measurements(out_dir is not None and annotate):
            if len(good):
                with self._lock:
                    pred, failures = predict_with_reasons(self.model, self.model_inputs(good))
            else:
                pred, failures = np.array([]), {}
            return self._results(samples, good, is_bad, pred, failures | bad, out_dir=out_dir, annotate=annotate,
                                 reference_device=reference_device, annotated_suffix=annotated_suffix)

    def _results(self, samples, good, is_bad, pred, failures, *, out_dir, annotate, reference_device,
                 annotated_suffix) -> PredictionResult:
        from smi_data.cutoffs import normalise_device

        good = good.assign(smi_pred=pred)
        result = pd.concat([good, samples[is_bad]], ignore_index=True)
        result["smi_pred"] = result["smi_pred"].astype(float)
        if "reference_device" not in result.columns:
            result["reference_device"] = reference_device
        result["reference_device"] = [normalise_device(d if isinstance(d, str) and d else reference_device)
                                      for d in result["reference_device"]]
        estimates = [self._estimate_row(r, failures) for _, r in result.iterrows()]
        if self.calibration is not None:
            add_intervals(estimates, self.calibration)
        if out_dir is not None and annotate:
            self._annotate(estimates, result, Path(out_dir), annotated_suffix)
        table = result.copy()
        table["smi_pred"] = [e.smi if e.ok else np.nan for e in estimates]
        table["awgs_cutoff"] = [e.awgs_cutoff for e in estimates]
        table["low_muscle_mass"] = [e.low_muscle_mass for e in estimates]
        table["failure"] = [e.reason or "" for e in estimates]
        table["outside_training_range"] = [e.outside_training_range for e in estimates]
        table["caution"] = [e.caution or "" for e in estimates]
        for name in ("interval_90", "interval_95"):
            bounds = [getattr(e, name) or (np.nan, np.nan) for e in estimates]
            table[f"{name}_low"] = [b[0] for b in bounds]
            table[f"{name}_high"] = [b[1] for b in bounds]
        table["screening"] = [e.screening or "" for e in estimates]
        table["p_low"] = [np.nan if e.p_low is None else e.p_low for e in estimates]
        return PredictionResult(estimates=estimates, table=table, model=self.info())

    def model_inputs(self, samples: pd.DataFrame) -> pd.DataFrame:
        """What the model is handed: the sample table without the label and, for a model with a
        tier, without every column its tier does not give (as the benchmark and ``train`` do)."""
        X = samples.drop(columns=["smi"], errors="ignore")
        if self.tier is None:
            return X
        from smi_data.tiers import restrict_to_tier

        return restrict_to_tier(X, self.tier)

    def _missing_covariates(self, samples: pd.DataFrame) -> dict[str, str]:
        """``{sample_id: reason}`` of samples lacking a covariate the model's tier needs."""
        out: dict[str, str] = {}
        for _, r in samples.iterrows():
            values = {k: (None if k not in r.index or (k != "sex" and not np.isfinite(_float_or_nan(r[k])))
                          or (k == "sex" and not isinstance(r[k], str)) else r[k])
                      for k in required_inputs(self.tier)}
            missing = missing_inputs(self.tier, **values)
            if missing:
                out[str(r["sample_id"])] = _missing_message(self.tier, missing)
        return out

    def _estimate_row(self, r: pd.Series, failures: dict) -> Estimate:
        sid = str(r["sample_id"])
        sex = r.get("sex")
        sex = str(sex) if isinstance(sex, str) else None
        device = r["reference_device"]
        photos = [PhotoStatus(v, r.get(f"image_{v}")) for v in VIEWS
                  if isinstance(r.get(f"image_{v}"), str) and r.get(f"image_{v}")]
        est = Estimate(sample_id=sid, subject_id=str(r.get("subject_id")), view=str(r.get("view")), sex=sex,
                       reference_device=device, awgs_cutoff=_cutoff(sex, device),
                       training_smi_range=self.training_range, photos=photos)
        smi = float(r["smi_pred"])
        reason = failures.get(sid)
        if reason is None and not np.isfinite(smi):
            reason = "the model gave no estimate for this sample"
        if reason is None:
            reason, est.outside_training_range, est.caution = bound_estimate(smi, self.training_range)
        if reason is not None:
            est.status, est.reason = "refused", reason
            _attribute(est, reason)
            return est
        est.smi = smi
        est.low_muscle_mass = bool(est.awgs_cutoff is not None and smi < est.awgs_cutoff)
        return est

    def _annotate(self, estimates: list[Estimate], result: pd.DataFrame, out_dir: Path, suffix: str) -> None:
        try:
            from smi_features.annotate import annotate_photo
        except ImportError:  # the features family is not installed: estimates without pictures
            return
        # the model's own extraction settings: the annotated copy then shows the measurement it was given
        settings = self.model.extraction_settings() if hasattr(self.model, "extraction_settings") else None
        written: set[Path] = set()
        for e, (_, r) in zip(estimates, result.iterrows()):
            if not e.ok:
                continue
            for ph in e.photos:
                if not ph.path:
                    continue
                stem = Path(ph.path).stem
                target, k = out_dir / f"{stem}_annotated{suffix}", 1
                while target in written:  # same file name from another folder: do not overwrite
                    k += 1
                    target = out_dir / f"{stem}-{k}_annotated{suffix}"
                written.add(target)
                ppc = r.get(f"px_per_cm_{ph.view}")
                try:
                    h = _float_or_nan(r.get("height_cm"))
                    info = annotate_photo(ph.path, target, result_text=e.summary(),
                                          height_cm=h if np.isfinite(h) else None,
                                          px_per_cm=float(ppc) if ppc is not None and np.isfinite(ppc) else None,
                                          settings=settings, view=ph.view)
                except Exception as exc:  # an annotation failure must not lose the estimate
                    logger.warning("could not annotate %s: %s", ph.path, exc)
                    ph.measurement = {"annotation_error": f"could not annotate {ph.path}: {exc}"}
                    continue
                ph.annotated_path = str(target)
                ph.measurement = {k: info.get(k) for k in ("calf_max_width_cm", "scale_mode", "px_per_cm")}


def _kept_measurements(keep: bool):
    """Keep each photo's measurement for the annotated copy (the features family; else nothing)."""
    import contextlib

    if not keep:
        return contextlib.nullcontext()
    try:
        from smi_features.extractor import keep_measurements
    except ImportError:
        return contextlib.nullcontext()
    return keep_measurements()


def _model_tier(meta: dict) -> str | None:
    """The model's information tier from model.json (``tier``, written by ``legsmi train``);
    None for a model folder from before tiers. An unknown value is refused."""
    from smi_data.modelfile import ModelFileError
    from smi_data.tiers import TIERS

    tier = meta.get("tier")
    if tier is None:
        return None
    if tier not in TIERS:
        raise ModelFileError(f"model.json: tier {tier!r} is not one of {', '.join(TIERS)}")
    return str(tier)


def _load_calibration(model_dir: Path, meta: dict):
    """The model's conformal calibration (``intervals.json``), checked; None for a model without one."""
    from smi_data.conformal import CalibrationError, load_calibration
    from smi_data.modelfile import ModelFileError

    try:
        return load_calibration(model_dir, model_meta=meta)
    except CalibrationError as exc:
        raise ModelFileError(str(exc)) from None


def add_intervals(estimates: list[Estimate], calibration) -> None:
    """Fill ``interval_90``, ``interval_95``, ``screening`` and ``p_low`` of every estimate with an SMI."""
    ok = [e for e in estimates if e.ok and e.sex in ("M", "F") and e.awgs_cutoff is not None]
    if not ok:
        return
    t = calibration.table([e.smi for e in ok], [e.sex for e in ok], [e.reference_device for e in ok])
    for e, (_, r) in zip(ok, t.iterrows()):
        e.interval_90 = (float(r["lo90"]), float(r["hi90"]))
        e.interval_95 = (float(r["lo95"]), float(r["hi95"]))
        e.screening = str(r["screening"])
        e.p_low = float(r["p_low"])


def _cutoff(sex, device) -> float | None:
    from smi_data.cutoffs import smi_cutoff

    try:
        return smi_cutoff(sex, device)
    except ValueError:
        return None


def _attribute(est: Estimate, reason: str) -> None:
    """Refuse the photos of a refused sample: those its reason names by view, else all of them.

    A two-view sample whose reason names only the lateral photo keeps its posterior
    photo ``ok``: that photo was measured, the sample still has no estimate.
    """
    import re

    # feature_table joins the views' reasons as "lateral: ...; posterior: ..."; a reason may hold ';' itself
    parts = [p.strip() for p in re.split(r";\s*(?=(?:lateral|posterior)(?: photo)?:)", reason)]
    named = {ph.view: [p for p in parts if p.startswith((f"{ph.view}:", f"{ph.view} photo:"))] for ph in est.photos}
    any_named = any(named.values())
    for ph in est.photos:
        if any_named and not named[ph.view]:
            continue
        ph.status = "refused"
        ph.reason = "; ".join(named[ph.view]) if named[ph.view] else reason
        ph.advice = advice_for(ph.reason)


def load_predictor(model_dir, *, cache: bool | None = None) -> Predictor:
    """:class:`Predictor` for a model folder (see there)."""
    return Predictor(model_dir, cache=cache)
