"""cnn-geo: a CNN that has learnt the leg's geometry before it is shown any SMI.

Two stages (docs/cnn-geo.md):

1. **Pretraining** (:mod:`smi_deep.pretrain`, ``legsmi pretrain``, once, offline): the trunk
   (:class:`smi_deep.nets.GeoNet`) regresses the true lower-leg geometry of a large synthetic
   cohort (calf and ankle circumference and widths, shank length, lower-leg volume and the
   width profile knee → ankle, in cm; :data:`GEO_TARGETS`) from the photo's leg mask. It
   never sees SMI. One trunk per view, committed under ``smi_deep/weights/``.
2. **Fine-tuning inside each fold** (:class:`GeoCNNRegressor`): the trunk is frozen and its
   output for each photo is computed once (cached per image and trunk); only the head is
   fitted per fold on SMI: a ridge regression of log SMI on the log of the trunk's
   geometry (and, at the ``basic`` and ``weight`` tiers, the covariates: sex, age, log
   height, log weight), its penalty chosen by leave-one-out (generalised) cross-validation
   inside the training fold. A fold then costs milliseconds after the first.

The input (:func:`geo_input`) is what the image layer gives for any photo, real or
rendered: the shared segmentation's leg mask (:func:`smi_image.segment.segment_leg`
through :func:`smi_deep.preprocess.prepare_crop`, quality gate included), its outline on the
photo's own edges (the features' edge step), in a fixed :data:`WINDOW_CM` square standing on the
sole at the marker's (else the manifest's) pixels per cm, area-averaged to :data:`CROP_PX` px and
then :data:`GEO_SIZE` px without thresholding, so the mask's border carries sub-pixel coverage.
No colour, no texture, no Canny edges of the photo (where renders and real photos differ most);
the mask's outline is its own edge.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from smi_data.errors import LegsmiError

from .preprocess import CropSettings, PreprocessError, cached_crop

MODEL_NAME = "cnn-geo"
GEO_VIEWS = ("lateral", "posterior")
#: Side of the network's input, px.
GEO_SIZE = 96
#: The mask is cropped at this size and area-averaged down to :data:`GEO_SIZE`.
CROP_PX = 192
#: Side of the window in cm (the CNNs' ``crop='scale'`` window).
WINDOW_CM = 60.0
#: The mask's outline (:attr:`smi_deep.preprocess.CropSettings.outline`): each row's edges on the
#: photo's own edges, as the features measure them, kept as area coverage down to the input's size.
OUTLINE = "photo"
#: Width profile levels: fractions of the knee → ankle distance (truth rows of the label map).
PROFILE_FRACS = tuple(round(0.05 + 0.1 * i, 2) for i in range(10))
#: The trunk's regression targets (cm, or litres for the volume), in output order.
GEO_TARGETS = ("calf_circ_cm", "ankle_circ_cm", "calf_width_lateral_cm", "calf_width_posterior_cm",
               "ankle_width_lateral_cm", "ankle_width_posterior_cm", "shank_length_cm", "lowerleg_volume_l",
               *(f"width_{int(round(100 * f)):02d}_cm" for f in PROFILE_FRACS))
TRUNK_FORMAT = "legsmi-geo-trunk"
TRUNK_FORMAT_VERSION = 1
#: Where the committed trunks live.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Covariates of the head per tier (sample-table columns).
HEAD_COVARIATES = {False: (), "photo": (), "basic": ("sex", "age", "height_cm"),
                   "weight": ("sex", "age", "height_cm", "weight_kg")}
#: What the head may take from the trunk.
FEATURES = ("geometry", "geometry+embedding")
#: Ridge penalties tried by the head's leave-one-out cross-validation.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class GeoTrunkError(LegsmiError, ValueError):
    """A trunk weights file that is not a legsmi cnn-geo trunk, or not the one asked for."""


def input_spec() -> dict:
    """What the trunk's input is: part of every trunk file and checked before use."""
    return {"size": GEO_SIZE, "crop_px": CROP_PX, "window_cm": WINDOW_CM, "crop": "scale", "channels": ["mask"],
            "outline": OUTLINE, "coverage": "sub-pixel", "targets": list(GEO_TARGETS)}


def crop_settings() -> CropSettings:
    return CropSettings(size=CROP_PX, crop="scale", window_cm=WINDOW_CM, outline=OUTLINE, soft_mask=True)


def mask_to_input(mask: np.ndarray) -> np.ndarray:
    """A ``(CROP_PX, CROP_PX)`` uint8 leg coverage (0–255) → ``(GEO_SIZE, GEO_SIZE)`` float32 coverage in [0, 1]."""
    import cv2

    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    m = np.asarray(mask, dtype=np.float32) / 255.0
    return cv2.resize(m, (GEO_SIZE, GEO_SIZE), interpolation=cv2.INTER_AREA)


def geo_input_from_image(image: np.ndarray, *, px_per_cm: float | None = None, view: str | None = None,
                         side: str | None = None) -> np.ndarray:
    """The network input of one BGR photo (see the module docstring); raises PreprocessError."""
    from .preprocess import prepare_crop

    _, mask = prepare_crop(image, crop_settings(), px_per_cm=px_per_cm, view=view, side=side)
    return mask_to_input(mask)


def geo_input(path: str, *, px_per_cm: float | None = None, view: str | None = None,
              side: str | None = None) -> np.ndarray:
    """:func:`geo_input_from_image` of an image file, through the CNNs' crop cache; raises PreprocessError."""
    _, mask = cached_crop(path, crop_settings(), px_per_cm=px_per_cm, view=view, side=side)
    return mask_to_input(mask)


# --------------------------------------------------------------------------- trunk files
def trunk_path(view: str, weights_dir: str | os.PathLike | None = None) -> Path:
    if view not in GEO_VIEWS:
        raise ValueError(f"cnn-geo has trunks for {', '.join(GEO_VIEWS)}, not {view!r}")
    return Path(weights_dir or WEIGHTS_DIR) / f"geo-{view}.pt"


def save_trunk(net, path: str | os.PathLike, meta: dict) -> Path:
    """Write a trunk (float16 weights, plain-number metadata) for ``torch.load(weights_only=True)``."""
    import torch

    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
             for k, v in net.state_dict().items()}
    blob = {"format": TRUNK_FORMAT, "format_version": TRUNK_FORMAT_VERSION, "input": input_spec(),
            "arch": {"widths": list(meta["arch"]["widths"]), "hidden": int(meta["arch"]["hidden"]),
                     "dropout": float(meta["arch"]["dropout"])},
            "meta": {k: v for k, v in meta.items() if k != "arch"}, "state_dict": state}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def file_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_TRUNKS: dict[tuple, tuple] = {}


def load_trunk(view: str, weights_dir: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None):
    """``(net, meta)``: the trunk of ``view``, checked before use (memoised per file and content).

    Raises
    ------
    GeoTrunkError
        Missing file, not a legsmi cnn-geo trunk, another format version, another view,
        an input or target list this code does not make, or weights that do not fit.
    """
    import torch

    from .nets import GeoNet

    p = Path(path) if path else trunk_path(view, weights_dir)
    if not p.is_file():
        raise GeoTrunkError(f"{p}: no cnn-geo trunk for the {view} view; make it with `legsmi pretrain` "
                            "(docs/cnn-geo.md)")
    digest = file_digest(p)
    hit = _TRUNKS.get((str(p.resolve()), digest))
    if hit is not None:
        return hit
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is the same refusal
        raise GeoTrunkError(f"{p}: not a readable torch weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != TRUNK_FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise GeoTrunkError(f"{p}: not a legsmi cnn-geo trunk (format {found!r}, expected {TRUNK_FORMAT!r})")
    if blob.get("format_version") != TRUNK_FORMAT_VERSION:
        raise GeoTrunkError(f"{p}: cnn-geo trunk format version {blob.get('format_version')}, this code reads "
                            f"{TRUNK_FORMAT_VERSION}; rerun `legsmi pretrain`")
    meta = blob.get("meta") or {}
    if meta.get("view") != view:
        raise GeoTrunkError(f"{p}: a trunk for the {meta.get('view')!r} view, asked for {view!r}")
    if blob.get("input") != input_spec():
        raise GeoTrunkError(f"{p}: trunk made for input {blob.get('input')}, this code makes {input_spec()}; "
                            "rerun `legsmi pretrain`")
    arch = blob.get("arch") or {}
    try:
        net = GeoNet(len(GEO_TARGETS), widths=tuple(arch["widths"]), hidden=int(arch["hidden"]),
                     dropout=float(arch["dropout"]), image_size=GEO_SIZE)
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise GeoTrunkError(f"{p}: trunk weights do not fit the network ({exc})") from None
    net.eval()
    meta = {**meta, "sha256": digest, "path": str(p)}
    _TRUNKS[(str(p.resolve()), digest)] = (net, meta)
    return net, meta


# --------------------------------------------------------------------------- embeddings
_EMBED: dict[tuple, np.ndarray | str] = {}


def trunk_outputs(net, meta: dict, inputs: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """The trunk's geometry (in the targets' units) and its embedding for ``(N, S, S)`` inputs.

    Returns ``(N, len(GEO_TARGETS) + hidden)``: the geometry first, then the hidden layer.
    Each image is passed through alone on one thread, so its result does not depend on which
    other images a process happens to embed with it, nor on the process's thread count (in
    batches, oneDNN's kernels change the last bits with the batch's size). ``batch_size`` (None:
    one image at a time) trades that for speed.
    """
    import torch

    mean = np.asarray(meta["target_mean"], dtype=np.float64)
    sd = np.asarray(meta["target_std"], dtype=np.float64)
    step = 1 if batch_size is None else int(batch_size)
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for s in range(0, len(inputs), step):
                xb = torch.from_numpy(np.ascontiguousarray(inputs[s:s + step], dtype=np.float32)[:, None])
                h = net.embed(xb)
                out.append(np.concatenate([net.out(h).double().numpy() * sd + mean, h.double().numpy()], axis=1))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(out) if out else np.empty((0, len(GEO_TARGETS) + net.out.in_features))


def embed_images(rows: list[tuple[str, float | None, str, str | None]], view: str,
                 weights_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, dict[int, str], dict]:
    """Trunk output of each ``(path, px_per_cm, view, side)`` (:func:`trunk_outputs`; NaN rows failed), failures, meta.

    Each image's result is memoised per process by its path, modification time, size,
    scale, side and the trunk's SHA-256, so cross-validation computes it once.
    """
    net, meta = load_trunk(view, weights_dir)
    out = np.full((len(rows), len(GEO_TARGETS) + net.out.in_features), np.nan)
    failures: dict[int, str] = {}
    todo, inputs = [], []
    for i, (path, ppc, v, side) in enumerate(rows):
        try:
            st = Path(path).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (None, None)
        key = (str(Path(path).resolve()), *stamp, ppc, v, side, meta["sha256"])
        hit = _EMBED.get(key)
        if isinstance(hit, str):
            failures[i] = hit
        elif hit is not None:
            out[i] = hit
        else:
            try:
                inputs.append(geo_input(path, px_per_cm=ppc, view=v, side=side))
                todo.append((i, key))
            except PreprocessError as exc:
                failures[i] = _EMBED[key] = str(exc)
    if todo:
        geom = trunk_outputs(net, meta, np.stack(inputs))
        for (i, key), g in zip(todo, geom):
            g.setflags(write=False)
            out[i] = _EMBED[key] = g
    return out, failures, meta


def clear_embeddings() -> None:
    _EMBED.clear()
    _TRUNKS.clear()


# --------------------------------------------------------------------------- the estimator
def _positive_log(a: np.ndarray, floor: float) -> np.ndarray:
    return np.log(np.maximum(a, floor))


class GeoCNNRegressor(RegressorMixin, BaseEstimator):
    """cnn-geo: the pretrained geometry trunk (frozen) and a ridge head fitted per fold.

    Parameters
    ----------
    features : {'geometry', 'geometry+embedding'}
        Head inputs from the trunk: the log of its geometry (cm, litres), and optionally its
        hidden layer (the embedding the geometry is read from).
    covariates : False or {'photo', 'basic', 'weight'}
        The tier's covariates joined at the head (the registry sets it per tier; the
        harness also drops every column the tier does not give).
    alphas : sequence of float, optional
        Ridge penalties tried (leave-one-out on the training fold); default :data:`DEFAULT_ALPHAS`.
    weights_dir : str, optional
        Folder of the ``geo-<view>.pt`` trunks (default: the committed :data:`WEIGHTS_DIR`).
    n_threads : int, optional
        torch CPU threads while the trunk runs (None: :func:`smi_deep.regressor.default_threads`).
    random_state : int
        Accepted for the registry's one seed; the head's fit is closed-form and uses none.

    Attributes
    ----------
    views_ : tuple of str
    trunk_sha256_ : dict
        ``{view: SHA-256}`` of the trunks used.
    head_columns_ : list of str
        Head inputs, in coefficient order.
    coef_ : ndarray (k,)
        Ridge coefficients on the standardised head inputs; the target is log SMI.
    intercept_ : float
    alpha_ : float
        The penalty the training fold's leave-one-out cross-validation chose.
    x_mean_, x_scale_ : ndarray (k,)
    failures_ : dict
        ``{sample_id: reason}`` of training samples ``fit`` skipped (``predict_with_reasons``
        gives a prediction's).
    fit_seconds_ : float
    """

    model_name = MODEL_NAME

    def __init__(self, features: str = "geometry", covariates=False, alphas=None, weights_dir: str | None = None,
                 n_threads: int | None = None, random_state: int = 0):
        self.features = features
        self.covariates = covariates
        self.alphas = alphas
        self.weights_dir = weights_dir
        self.n_threads = n_threads
        self.random_state = random_state

    def covariate_columns(self) -> tuple[str, ...]:
        try:
            return HEAD_COVARIATES[self.covariates]
        except (KeyError, TypeError):
            raise ValueError(f"covariates must be False, 'photo', 'basic' or 'weight', "
                             f"got {self.covariates!r}") from None

    def _design(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str], dict[str, str], dict[str, str]]:
        """Head inputs ``(N, k)`` (NaN rows unusable), their names, the failures by sample id and
        ``{view: trunk SHA-256}``."""
        from .regressor import _torch_settings, sample_views

        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {', '.join(FEATURES)}, got {self.features!r}")
        views = sample_views(X)
        ids = X["sample_id"].astype(str).tolist() if "sample_id" in X.columns else [str(i) for i in range(len(X))]
        failures: dict[str, str] = {}
        digests: dict[str, str] = {}
        blocks, names = [], []
        sides = X["side"].astype(str).tolist() if "side" in X.columns else [None] * len(X)
        with _torch_settings(self.n_threads):
            for v in views:
                rows = []
                for path, ppc, side in zip(X[f"image_{v}"], X.get(f"px_per_cm_{v}", pd.Series([None] * len(X))),
                                           sides):
                    ppc = float(ppc) if ppc is not None and pd.notna(ppc) else None
                    rows.append((path if isinstance(path, str) else "", ppc, v, side))
                geom, fails, meta = embed_images(rows, v, self.weights_dir)
                for i, why in fails.items():
                    failures.setdefault(ids[i], why if rows[i][0] else f"no {v} image")
                nt = len(GEO_TARGETS)
                blocks.append(_positive_log(geom[:, :nt], 0.1))
                names += [f"log_{t}_{v}" for t in GEO_TARGETS]
                if self.features == "geometry+embedding":
                    blocks.append(geom[:, nt:])
                    names += [f"embedding_{j}_{v}" for j in range(geom.shape[1] - nt)]
                digests[v] = meta["sha256"]
        cov_cols = self.covariate_columns()
        for c in cov_cols:
            if c not in X.columns:
                raise ValueError(f"covariates={self.covariates!r} needs column {c!r} in the sample table")
            if c == "sex":
                col = X["sex"].astype(str).str.upper().map({"M": 1.0, "F": 0.0}).to_numpy(dtype=float)
            else:
                col = pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float)
                if c in ("height_cm", "weight_kg"):
                    col = np.log(np.where(col > 0, col, np.nan))
                    c = f"log_{c}"
            blocks.append(col[:, None])
            names.append(c)
        Z = np.concatenate(blocks, axis=1)
        for i in np.flatnonzero(~np.all(np.isfinite(Z), axis=1)):
            failures.setdefault(ids[i], f"missing or invalid covariate(s) ({', '.join(cov_cols)})")
        return Z, names, failures, digests

    def fit(self, X: pd.DataFrame, y) -> "GeoCNNRegressor":
        """Fit the head on the trunk's geometry (+ the tier's covariates) and SMI (kg/m²); returns self."""
        import time

        from sklearn.linear_model import RidgeCV

        t0 = time.perf_counter()
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("y must be positive finite SMI values (kg/m^2)")
        Z, names, failures, digests = self._design(X)
        ok = np.all(np.isfinite(Z), axis=1)
        if ok.sum() < 3:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
            raise ValueError(f"fewer than 3 usable training samples ({len(failures)} failed: {reasons})")
        self.x_mean_ = Z[ok].mean(axis=0)
        sd = Z[ok].std(axis=0)
        self.x_scale_ = np.where(sd > 0, sd, 1.0)
        alphas = tuple(self.alphas) if self.alphas is not None else DEFAULT_ALPHAS
        head = RidgeCV(alphas=alphas).fit((Z[ok] - self.x_mean_) / self.x_scale_, np.log(y[ok]))
        self.coef_ = np.asarray(head.coef_, dtype=float)
        self.intercept_ = float(head.intercept_)
        self.alpha_ = float(head.alpha_)
        self.head_columns_ = names
        self.views_ = tuple(v for v in GEO_VIEWS if v in digests)
        self.trunk_sha256_ = digests
        self.n_train_ = int(ok.sum())
        self.failures_ = failures
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """SMI (kg/m²) per sample; NaN where the photo or a covariate failed."""
        return self.predict_with_reasons(X)[0]

    def predict_with_reasons(self, X: pd.DataFrame) -> tuple[np.ndarray, dict]:
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN; the estimator is left unchanged."""
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this GeoCNNRegressor is not fitted yet; call fit() first")
        if len(X) == 0:
            return np.empty(0, dtype=float), {}
        from .regressor import sample_views

        views = sample_views(X)
        if tuple(views) != self.views_:
            raise ValueError(f"model fitted on view(s) {'+'.join(self.views_)}, got {'+'.join(views)}")
        Z, _, failures, digests = self._design(X)
        if digests != self.trunk_sha256_:
            raise GeoTrunkError("the cnn-geo trunk changed between fit and predict "
                                f"({self.trunk_sha256_} -> {digests}); refit")
        ok = np.all(np.isfinite(Z), axis=1)
        out = np.full(len(X), np.nan)
        if ok.any():
            out[ok] = np.exp(self.intercept_ + ((Z[ok] - self.x_mean_) / self.x_scale_) @ self.coef_)
        return out, failures


# --------------------------------------------------------------------------- model folders
GEO_FORMAT_VERSION = 1


def save_geo_model(estimator: GeoCNNRegressor, model_dir: str | os.PathLike, *, extra_meta: dict | None = None,
                   overwrite: bool = False) -> Path:
    """A fitted cnn-geo as a model folder: ``model.json`` only (the head as plain numbers, the trunks by SHA-256).

    The trunks are the committed ``smi_deep/weights/geo-<view>.pt`` (or ``weights_dir``);
    loading checks that the same files are there.
    """
    from smi_data.modelfile import META_NAME, write_model_meta
    from smi_data.runs import OutputExistsError

    if not hasattr(estimator, "coef_"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError("this GeoCNNRegressor is not fitted yet; call fit() first")
    d = Path(model_dir)
    if (d / META_NAME).exists() and not overwrite:
        raise OutputExistsError(f"{d / META_NAME}: exists; pass overwrite=True (--overwrite) or choose another folder")
    head = {"geo_format_version": GEO_FORMAT_VERSION, "views": list(estimator.views_),
            "trunk_sha256": dict(estimator.trunk_sha256_), "columns": list(estimator.head_columns_),
            "x_mean": [float(v) for v in estimator.x_mean_], "x_scale": [float(v) for v in estimator.x_scale_],
            "coef": [float(v) for v in estimator.coef_], "intercept": float(estimator.intercept_),
            "alpha": float(estimator.alpha_), "n_train": int(estimator.n_train_),
            "note": "SMI = exp(intercept + sum(coef * (x - x_mean) / x_scale)), x = the trunk's log geometry "
                    "(+ the tier's covariates)"}
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in estimator.get_params().items()}
    return write_model_meta(d, family="deep", model=MODEL_NAME, config=params,
                            extra={**(extra_meta or {}), "geo": head}).parent


def load_geo_model(model_dir: str | os.PathLike, meta: dict) -> GeoCNNRegressor:
    """The fitted cnn-geo of a model folder whose ``model.json`` is ``meta`` (checked before use)."""
    from smi_data.modelfile import ModelFileError

    where = Path(model_dir) / "model.json"
    head = meta.get("geo")
    if not isinstance(head, dict) or head.get("geo_format_version") != GEO_FORMAT_VERSION:
        raise ModelFileError(f"{where}: no cnn-geo head of format version {GEO_FORMAT_VERSION}")
    try:
        est = GeoCNNRegressor(**meta["config"])
        k = len(head["columns"])
        arrs = [np.asarray(head[n], dtype=float) for n in ("x_mean", "x_scale", "coef")]
        if any(a.shape != (k,) or not np.all(np.isfinite(a)) for a in arrs) or not np.isfinite(head["intercept"]):
            raise ValueError("head arrays must be finite, one number per column")
        est.x_mean_, est.x_scale_, est.coef_ = arrs
        est.intercept_, est.alpha_ = float(head["intercept"]), float(head["alpha"])
        est.head_columns_, est.views_ = list(head["columns"]), tuple(head["views"])
        est.trunk_sha256_, est.n_train_ = dict(head["trunk_sha256"]), int(head["n_train"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: damaged cnn-geo head ({exc})") from None
    for view, digest in est.trunk_sha256_.items():
        try:
            _, tmeta = load_trunk(view, est.weights_dir)
        except GeoTrunkError as exc:
            raise ModelFileError(f"{where}: {exc}") from None
        if tmeta["sha256"] != digest:
            raise ModelFileError(f"{where}: fitted on the {view} trunk {digest[:16]}, but {tmeta['path']} is "
                                 f"{tmeta['sha256'][:16]}; retrain the model (`legsmi train --model cnn-geo`)")
    est.failures_ = {}
    return est


def make_geo(random_state: int = 0, **params) -> GeoCNNRegressor:
    """The registry's constructor."""
    return GeoCNNRegressor(random_state=random_state, **params)
