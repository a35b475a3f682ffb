"""The models behind the page: given folders, or the default light model trained once and cached.

The page takes a lateral and a posterior photo, either or both, so the app holds one
model per view it can serve (``lateral``, ``posterior``, ``both``) and chooses for each
request (:meth:`ModelSet.estimate`): the two-view model when both photos came, else
the model of the photo's view; when the preferred model refuses a photo, the next one
that does not need that photo is tried, so one bad photo does not cost the estimate.

Without ``--model``, :func:`default_model_dirs` trains ``xgb-features`` on the bundled
cohort for the three views (seconds) into the user's cache folder
(``$LEGSMI_CACHE_DIR`` or ``~/.cache/legsmi``, under ``app-models/<key>``). The key is a
digest of the cohort's manifest and of the measuring and model code, so a changed
cohort or extractor trains afresh instead of serving a stale model.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from benchmarks.predict import VIEWS, Estimate, PhotoStatus, Predictor

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "xgb-features"
SERVED_VIEWS = ("both", "lateral", "posterior")
_CODE_PACKAGES = ("smi_data", "smi_image", "smi_features", "benchmarks")


class ModelSetError(ValueError):
    """Model folders that cannot serve the page together."""


def cache_root() -> Path:
    """``$LEGSMI_CACHE_DIR`` or ``~/.cache/legsmi`` (never inside the repository)."""
    import os

    env = os.environ.get("LEGSMI_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "legsmi"


def default_model_key(dataset, model: str = DEFAULT_MODEL, seed: int = 0) -> str:
    """Digest of the cohort's manifest, the model name and seed, and the code that measures and fits."""
    h = hashlib.sha256(f"{model}|{seed}|".encode())
    h.update((Path(dataset) / "manifest.csv").read_bytes())
    repo = Path(__file__).resolve().parent.parent
    for pkg in _CODE_PACKAGES:
        for path in sorted((repo / pkg).rglob("*.py")):
            if "phantom" in path.parts:
                continue
            h.update(str(path.relative_to(repo)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def default_model_dirs(train: Callable[[str, str, Path], None], *, dataset=None, model: str = DEFAULT_MODEL,
                       seed: int = 0, root: Path | None = None, echo: Callable[[str], None] = print
                       ) -> dict[str, Path]:
    """The default models, trained where not cached yet: ``{view: model folder}``.

    Parameters
    ----------
    train : callable
        ``train(dataset, view, out_dir)`` fits ``model`` and writes a model folder
        (the CLI passes its own ``train`` command, so the app's model is what
        ``legsmi train`` makes).
    dataset : path-like, optional
        Default: the bundled synthetic cohort.
    """
    from smi_data.paths import BUNDLED_COHORT

    dataset = Path(dataset or BUNDLED_COHORT)
    folder = (root or cache_root()) / "app-models" / f"{model}-{default_model_key(dataset, model, seed)}"
    dirs = {v: folder / v for v in SERVED_VIEWS}
    todo = [v for v, d in dirs.items() if not (d / "model.json").is_file()]
    if not todo:
        echo(f"using the default model {model} trained on {dataset.name}, cached in {folder}")
        return dirs
    echo(f"no --model given: training the default model {model} on {dataset} ({', '.join(todo)} view(s)) "
         f"once; it is cached in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    for view in todo:
        try:
            train(str(dataset), view, dirs[view])
        except Exception:
            if not (dirs[view] / "model.json").is_file():  # another app process may have just made it
                raise
    return dirs


class ModelSet:
    """One :class:`~benchmarks.predict.Predictor` per view served, chosen per request."""

    def __init__(self, predictors: dict[str, Predictor], *, default: bool = False):
        if not predictors:
            raise ModelSetError("no model to serve")
        self.predictors = predictors
        self.default = default

    @classmethod
    def from_dirs(cls, dirs, *, default: bool = False) -> "ModelSet":
        """Load model folders (a list, or ``{view: folder}``); two for one view are refused.

        The per-image feature cache of each model is switched off: nothing derived
        from a patient's photo is written to disk.
        """
        predictors: dict[str, Predictor] = {}
        for d in (dirs.values() if isinstance(dirs, dict) else dirs):
            p = Predictor(d, cache=False)
            if "n_jobs" in p.model.get_params():
                # one person per request: measured in this process, so the annotated copy reuses the
                # measurement the model was given (benchmarks.predict keeps it) instead of measuring again
                p.model.set_params(n_jobs=1)
            if p.view in predictors:
                raise ModelSetError(f"{d}: a second model for the {p.view} view "
                                    f"(first: {predictors[p.view].model_dir}); give one model per view")
            predictors[p.view] = p
        return cls(predictors, default=default)

    @property
    def views(self) -> list[str]:
        return [v for v in SERVED_VIEWS if v in self.predictors]

    def describe(self) -> dict:
        """The models and the data they were trained on, for the page and the API (no server paths)."""
        from smi_data.paths import BUNDLED_COHORT

        first = self.predictors[self.views[0]].info()
        trained_on = first.get("trained_on")
        bundled = bool(trained_on) and Path(trained_on).resolve() == BUNDLED_COHORT.resolve()
        if bundled:
            data = (f"the bundled synthetic cohort {BUNDLED_COHORT.name} ({first.get('n_samples')} samples per view, "
                    "people rendered from a 3D body model, not real patients)")
        else:
            data = f"the dataset {Path(trained_on).name if trained_on else '(not recorded)'}"
        return {"name": first.get("name"), "views": self.views, "trained_on": data, "synthetic_training_data": bundled,
                "default": self.default,
                "training_smi_range": first.get("training_smi_range"),
                "per_view": {v: {k: p.info()[k] for k in ("name", "n_samples", "training_smi_range", "created")}
                             for v, p in self.predictors.items()}}

    def _candidates(self, views: set[str]) -> list[str]:
        order = (["both"] if set(VIEWS) <= views else []) + [v for v in VIEWS if v in views]
        return [v for v in order if v in self.predictors]

    def estimate(self, photos: dict[str, Path], **covariates) -> tuple[Estimate, str | None]:
        """The estimate from the best model for the photos given, and the model's view (None: no model fits).

        Every photo given ends with a status: ``ok`` (measured and used), ``refused``
        (with its reason and advice) or ``unused`` (fine, but the model that gave the
        estimate does not take that view).
        """
        cands = self._candidates(set(photos))
        if not cands:
            reason = (f"this app's models take {' or '.join(self.views)} photos; "
                      f"the {' and '.join(photos)} photo given does not fit")
            est = Estimate("person", "person", "none", covariates.get("sex"),
                           covariates.get("reference_device") or "BIA", None, status="refused", reason=reason,
                           photos=[PhotoStatus(v, None, "refused", reason, "send the photo of the other view")
                                   for v in photos])
            return est, None
        refused: dict[str, PhotoStatus] = {}
        first: Estimate | None = None
        for view in cands:
            needs = list(VIEWS) if view == "both" else [view]
            if any(v in refused for v in needs):
                continue  # that photo was refused already: this model cannot do better
            est = self.predictors[view].estimate({v: photos[v] for v in needs}, **covariates)
            first = first or est
            if est.ok:
                return self._finish(est, photos, refused, view), view
            for ph in est.photos:
                if ph.status == "refused" and ph.view in needs:
                    refused.setdefault(ph.view, ph)
        return self._finish(first, photos, refused, None), cands[0]

    @staticmethod
    def _finish(est: Estimate, photos: dict, refused: dict[str, PhotoStatus], used_view: str | None) -> Estimate:
        by_view = {ph.view: ph for ph in est.photos}
        out = []
        for v in VIEWS:
            if v not in photos:
                continue
            if v in by_view and (est.ok or by_view[v].status == "refused"):
                out.append(by_view[v])
            elif v in refused:
                out.append(refused[v])
            elif v in by_view:
                out.append(by_view[v])
            else:
                out.append(PhotoStatus(v, None, "unused", "the model that gave this estimate does not take this view",
                                       None))
        est = replace(est, photos=out)
        if est.ok and refused:
            note = (f"estimated from the {' and '.join(ph.view for ph in out if ph.status == 'ok')} photo only: "
                    f"the {' and '.join(refused)} photo was refused")
            est.caution = f"{est.caution}; {note}" if est.caution else note
        return est
