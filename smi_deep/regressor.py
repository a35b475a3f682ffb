"""CNNRegressor: the study's CNN as a scikit-learn regressor (a thin wrapper, no skorch).

``fit(X, y)`` takes the sample table of :func:`smi_data.manifest.to_samples` and SMI in
kg/m²; ``predict(X)`` returns a 1-D float array, NaN for a sample whose image cannot be
read or has no leg (the reason from ``predict_with_reasons``, :mod:`smi_data.reasons`). ``clone``, ``get_params`` and
``set_params`` work as for any scikit-learn estimator, so the benchmark harness
cross-validates it like the features model.

Why a wrapper of our own rather than skorch: the inputs are file paths that must go
through a cached, seeded, per-view pipeline and produce NaN for failed samples, and
skorch's default hidden validation split is one of the pitfalls to avoid; the loop
below is short enough to read in one sitting.

Our reading of the study's training (which it does not describe)
---------------------------------------------------------------
- **Target**: SMI standardised inside (``(y − mean) / sd`` of the training fold); the
  prediction is mapped back. Loss: mean squared error on the standardised target, with
  a guard that the network's ``(N, 1)`` output is squeezed to ``(N,)`` first.
- **Optimiser**: AdamW (lr 2e-3, weight decay 1e-4) with a one-cycle schedule (30 %
  warm-up, cosine decay), batch 16. A one-cycle schedule converges in few epochs, which
  is what a CPU budget allows.
- **Epochs**: ``cnn-paper`` 40, ``cnn-lite`` 60 (see :data:`DEFAULT_EPOCHS`), chosen
  for a CPU budget (fold times in docs/results.md).
- **Validation**: none by default: every training image is used for training and the
  final weights are kept. ``validation_fraction`` turns on early stopping on a split of
  *subjects* drawn (seeded) from the training fold only, keeping the best epoch's
  weights.
- **Crop and background**: "crop to the leg" read as a fixed-size window around the
  leg at a known scale (``crop='scale'``, 60 cm, from the ArUco marker): the study's
  photos were taken at a fixed distance, so its crops kept the leg's absolute size;
  with photos taken at any distance the marker restores it. The background outside
  the (dilated) leg mask is filled with its own colour (``fill_background=True``), so
  the Canny image shows the leg's edges rather than the wall's and the floor's. Both
  raised the test correlation on phantom-v1 (docs/results.md).
- **Input normalisation**: each input channel standardised with its mean and standard
  deviation over the (un-augmented) training fold; stored with the model.
- **Two views** (``view='both'``): the lateral and posterior crops' channels are
  stacked as input channels of one network (lateral first).
- **Covariates** (``covariates=True`` or ``'basic'``): sex (M = 1), age and height
  (``'weight'``: and weight, kg), standardised on the training fold, concatenated to the image
  features before the head and added through a linear term of their own. Off in the study's mode.
- **Batch-norm statistics**: after the last epoch, recomputed over the un-augmented
  training images with the final weights ("precise BN"); the running averages of a few
  hundred steps mix many past weights, and a regressor's output shifts with them.

Measured results on the studio cohort (per model, view and setting; the study's figures
and the cohort's ceiling beside them): docs/results.md, "The CNN".

Randomness: ``random_state`` seeds, through :class:`numpy.random.SeedSequence`, the
network's initialisation and dropout (torch's CPU generator, forked so the caller's is
untouched), the order of the training batches, the augmentation (one generator per
transform) and the early-stopping split. During ``fit`` and ``predict``
``torch.use_deterministic_algorithms`` is on (and restored afterwards), so on a CPU the
same seed gives the same predictions.

Device: ``device='auto'`` takes CUDA, then Apple's MPS, then the CPU. ``n_threads``
sets torch's CPU threads during ``fit``/``predict`` (restored afterwards; default half
the cores, :func:`default_threads`); results with different thread counts may differ
in the last bits.

Speed and scale: on the CPU the network and its inputs are kept in the channels-last
memory layout (:func:`to_fast_layout`; faster convolutions, the same values to
rounding). Inside a ``torch.distributed`` process group of more than one process
(``torchrun``, :mod:`smi_deep.ddp`) ``fit`` trains data-parallel: each rank takes its
share of every batch and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from .cropstore import shared_crop, side_code
from .preprocess import ChannelSettings, CropSettings, PreprocessError, make_channels
from .transforms import Augment, AugmentSettings

logger = logging.getLogger(__name__)

VIEWS = ("lateral", "posterior")
#: Epochs of each variant when ``epochs=None``.
DEFAULT_EPOCHS = {"cnn-paper": 40, "cnn-lite": 60}
COVARIATES = ("sex", "age", "height_cm")
#: Covariate columns per ``covariates`` setting (True is the basic tier, as before tiers).
COVARIATE_SETS = {False: (), True: COVARIATES, "photo": (), "basic": COVARIATES,
                  "weight": COVARIATES + ("weight_kg",)}


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` → ``'cuda'`` if available, else ``'mps'``, else ``'cpu'``; other names are checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device not in ("cpu", "cuda", "mps") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    return str(device)


def sample_views(X: pd.DataFrame) -> tuple[str, ...]:
    """The views every sample of ``X`` carries: ``('lateral',)``, ``('posterior',)`` or both.

    Raises
    ------
    ValueError
        If ``X`` lacks the image columns or mixes samples of different views.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a sample table (pandas DataFrame from to_samples), got {type(X).__name__}")
    missing = [f"image_{v}" for v in VIEWS if f"image_{v}" not in X.columns]
    if missing:
        raise ValueError(f"sample table lacks column(s) {', '.join(missing)}; build it with "
                         "smi_data.manifest.to_samples")
    if "view" in X.columns:
        kinds = set(X["view"].astype(str))
    else:
        kinds = {"both" if all(isinstance(r[f"image_{v}"], str) for v in VIEWS) else
                 next((v for v in VIEWS if isinstance(r[f"image_{v}"], str)), "none") for _, r in X.iterrows()}
    if len(kinds) != 1:
        raise ValueError(f"sample table mixes views {sorted(kinds)}; a CNN takes one view (or 'both') at a time")
    kind = kinds.pop()
    if kind == "both":
        return VIEWS
    if kind not in VIEWS:
        raise ValueError(f"unknown view {kind!r} in the sample table")
    return (kind,)


def default_threads() -> int:
    """Torch CPU threads when ``n_threads=None``: half the cores (at least 1, at most torch's default).

    On a two-core machine shared with other work, two torch threads were several times
    slower than one (docs/results.md), because OpenMP threads wait on each other when
    one of them is descheduled. Half the cores also leaves one for the data preparation
    (augmentation, Canny) that runs between steps.
    """
    import os

    import torch

    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // 2))


@contextmanager
def _torch_settings(n_threads: int | None):
    """Deterministic algorithms and the thread count for the duration of a call, restored after."""
    import torch

    n_threads = int(n_threads) if n_threads else default_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.set_num_threads(prev_threads)


def to_fast_layout(t, device: str):
    """A 4-D tensor or a network in channels-last memory layout on the CPU, else unchanged.

    Channels-last convolutions (oneDNN) are faster per training step than the default
    layout on a CPU (docs/results.md, docs/scaling.md); the values are the same up to
    rounding.
    """
    import torch

    if not str(device).startswith("cpu"):
        return t
    if isinstance(t, torch.nn.Module):
        return t.to(memory_format=torch.channels_last)
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised ``torch.distributed`` process group, else ``(0, 1)``.

    ``fit`` trains data-parallel (DistributedDataParallel) when it is called inside a
    process group of more than one process, as ``torchrun`` starts it
    (:mod:`smi_deep.ddp`).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def all_reduce_sum(value: float, device: str) -> float:
    """The sum of a float over the ranks of the process group."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


class CNNRegressor(RegressorMixin, BaseEstimator):
    """The study's CNN on Canny-edge images of the lower leg, as a scikit-learn regressor.

    Parameters
    ----------
    variant : {'cnn-paper', 'cnn-lite'}
        Architecture and default input size (:data:`smi_deep.nets.VARIANTS`).
    input_mode : {'canny', 'grey', 'rgb', 'mask', 'canny+grey'}
        What the network sees; ``'canny'`` is the study.
    image_size : int, optional
        Side of the square input, px (default: the variant's, 224 or 96).
    epochs : int, optional
        Training epochs (default :data:`DEFAULT_EPOCHS` of the variant).
    batch_size : int
    lr : float
        Peak learning rate of the one-cycle schedule.
    weight_decay : float
        AdamW's decoupled weight decay.
    augment : bool
        Random affine, flip and brightness/contrast during training (:mod:`smi_deep.transforms`).
    covariates : bool or {'photo', 'basic', 'weight'}
        Feed covariates to the head: True or ``'basic'`` sex, age and height;
        ``'weight'`` also weight; False or ``'photo'`` none (the study's mode).
    validation_fraction : float, optional
        If set (0 < f < 1), hold out this fraction of the training fold's subjects for
        early stopping and keep the best epoch's weights. None (default): no hidden split.
    patience : int
        Epochs without improvement of the validation loss before stopping.
    fill_background : bool
        Replace everything outside the dilated leg mask by the background colour before
        the channels are made (default True: the edge image shows the leg, not the
        wall's corners or the floor line).
    device : str
        ``'auto'`` (CUDA, then MPS, then CPU), ``'cpu'``, ``'cuda'``, ``'mps'``.
    n_threads : int, optional
        torch CPU threads during fit/predict (None: :func:`default_threads`, half the
        cores).
    random_state : int
        The one seed.
    verbose : int
        0 silent; 1 one line per epoch, logged at INFO (shown by ``legsmi -v``).
    pool : {'flatten', 'avg'}, optional
        Override the variant's pooling before the head (:class:`smi_deep.nets.VGGRegressor`).
    crop : {'scale', 'leg'}
        ``'scale'`` (default): a fixed 60 cm window standing on the sole, at the
        marker's (else ``px_per_cm_<view>``'s) scale, which keeps the leg's absolute
        size as the study's fixed-distance photos did; a photo with neither fails.
        ``'leg'``: a square around the leg, size-normalised (proportions only).
        See :class:`smi_deep.preprocess.CropSettings`.

    Attributes
    ----------
    net_ : torch.nn.Module
        The trained network (in eval mode).
    arch_ : dict
        Keyword arguments of :class:`smi_deep.nets.VGGRegressor` (with ``in_channels_``
        and ``n_covariates_``, enough to rebuild the network).
    y_mean_, y_std_ : float
        Target standardisation, kg/m².
    input_mean_, input_std_ : ndarray (C,)
        Per-channel input standardisation.
    cov_mean_, cov_std_ : ndarray (3,) or None
        Covariate standardisation (sex as 0/1, age years, height cm).
    views_ : tuple of str
        Views the model was trained on.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (standardised MSE), ``val_loss`` (or None), ``lr``.
    failures_ : dict
        ``{sample_id: reason}`` of training samples ``fit`` skipped (``predict`` leaves the
        estimator unchanged; :meth:`predict_with_reasons` gives its reasons).
    fit_seconds_ : float
        Wall time of the last ``fit`` (preprocessing included).
    """

    def __init__(self, variant: str = "cnn-paper", input_mode: str = "canny", image_size: int | None = None,
                 epochs: int | None = None, batch_size: int = 16, lr: float = 2e-3, weight_decay: float = 1e-4,
                 augment: bool = True, covariates: bool = False, validation_fraction: float | None = None,
                 patience: int = 10, fill_background: bool = True, device: str = "auto",
                 n_threads: int | None = None, random_state: int = 0, verbose: int = 0,
                 pool: str | None = None, crop: str = "scale"):
        self.variant = variant
        self.input_mode = input_mode
        self.image_size = image_size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.augment = augment
        self.covariates = covariates
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.fill_background = fill_background
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.pool = pool
        self.crop = crop

    # ------------------------------------------------------------------ settings
    def _resolved(self) -> dict:
        from .nets import VARIANTS

        if self.variant not in VARIANTS:
            raise ValueError(f"unknown CNN variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        size = int(self.image_size) if self.image_size else int(VARIANTS[self.variant]["image_size"])
        epochs = int(self.epochs) if self.epochs is not None else DEFAULT_EPOCHS[self.variant]
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        vf = self.validation_fraction
        if vf is not None and not 0 < float(vf) < 1:
            raise ValueError(f"validation_fraction must be in (0, 1) or None, got {vf}")
        return {
            "crop": CropSettings(size=size, crop=self.crop),
            "channels": ChannelSettings(mode=self.input_mode, fill_background=bool(self.fill_background)),
            "epochs": epochs,
        }

    def _arch_overrides(self) -> dict:
        """Architecture keys that differ from the variant's defaults (image size, pooling)."""
        out = {"image_size": self._resolved()["crop"].size}
        if self.pool is not None:
            out["pool"] = self.pool
        return out

    def _seeds(self) -> dict:
        order, aug, torch_seed, split = np.random.SeedSequence(int(self.random_state)).spawn(4)
        return {"order": order, "augment": int(aug.generate_state(1)[0]),
                "torch": int(torch_seed.generate_state(1)[0]), "split": split}

    # ------------------------------------------------------------------ data
    def _load(self, X: pd.DataFrame, views: tuple[str, ...], crop: CropSettings):
        """Cached crops per sample (a list of (crop, mask) per view), or None; and failures."""
        items: list[list[tuple[np.ndarray, np.ndarray]] | None] = []
        failures: dict[str, str] = {}
        ids = X["sample_id"].astype(str).tolist() if "sample_id" in X.columns else [str(i) for i in range(len(X))]
        for sid, (_, row) in zip(ids, X.iterrows()):
            per_view = []
            for v in views:
                path = row.get(f"image_{v}")
                if not isinstance(path, str) or not path:
                    failures[sid] = f"no {v} image"
                    break
                ppc = row.get(f"px_per_cm_{v}")
                ppc = float(ppc) if ppc is not None and pd.notna(ppc) else None
                try:
                    # which leg of two: the segmentation's side rule (smi_image.segment.segment_leg)
                    per_view.append(shared_crop(path, crop, px_per_cm=ppc, view=v, side=side_code(row.get("side"))))
                except PreprocessError as exc:
                    failures[sid] = str(exc)
                    break
            items.append(per_view if len(per_view) == len(views) else None)
        return items, failures

    def covariate_columns(self) -> tuple[str, ...]:
        """Sample-table columns fed to the head under the ``covariates`` setting."""
        try:
            return COVARIATE_SETS[self.covariates]
        except (KeyError, TypeError):
            raise ValueError(f"covariates must be True, False, 'photo', 'basic' or 'weight', "
                             f"got {self.covariates!r}") from None

    def _covariate_matrix(self, X: pd.DataFrame) -> np.ndarray:
        cols = self.covariate_columns()
        for c in cols:
            if c not in X.columns:
                raise ValueError(f"covariates={self.covariates!r} needs column {c!r} in the sample table")
        from smi_data.manifest import male_indicator

        sex = male_indicator(X["sex"])
        rest = [pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float) for c in cols[1:]]
        return np.column_stack([sex, *rest])

    def _usable_covariates(self, X: pd.DataFrame, usable: np.ndarray, failures: dict, why: str) -> np.ndarray:
        """The covariate matrix; rows with a missing or invalid covariate are marked unusable.

        ``usable`` (bool, one per row) is updated in place and each newly unusable
        sample's reason goes into ``failures``.
        """
        cov = self._covariate_matrix(X)
        bad = ~np.all(np.isfinite(cov), axis=1) & usable
        ids = X["sample_id"].astype(str).tolist() if "sample_id" in X.columns else [str(i) for i in range(len(X))]
        for i in np.flatnonzero(bad):
            failures[ids[i]] = f"missing or invalid {'/'.join(self.covariate_columns())} ({why})"
        usable &= ~bad
        return cov

    def _inputs(self, items, channels: ChannelSettings, augment: Augment | None, keep=None) -> np.ndarray:
        """Stack the channels of ``items`` (all present) into ``(N, C, S, S)`` float32, un-normalised.

        With ``augment``, its parameters are drawn for every item in order; ``keep``
        (positions in ``items``; default all) says which items are made, so a
        data-parallel rank that makes only its share draws the same as a single process.
        """
        keep = set(range(len(items))) if keep is None else {int(k) for k in keep}
        out = []
        for pos, per_view in enumerate(items):
            chans = []
            for crop, mask in per_view:
                params = augment.draw() if augment is not None else None
                if pos not in keep:
                    continue
                if params is not None:
                    crop, mask = augment.apply(crop, mask, params)
                chans.append(make_channels(crop, mask, channels))
            if pos in keep:
                out.append(np.concatenate(chans, axis=0))
        return np.stack(out).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ fit
    def fit(self, X: pd.DataFrame, y) -> "CNNRegressor":
        """Train on a sample table and SMI (kg/m²); returns self.

        Samples whose image cannot be read or has no leg are left out and listed in
        ``failures_``; if none is left, ``ValueError``.
        """
        import torch

        from .nets import VARIANTS, VGGRegressor, regression_loss

        t0 = time.perf_counter()
        cfg = self._resolved()
        y = np.asarray(y, dtype=float)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one SMI per sample), got shape {y.shape}")
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y holds NaN or infinite values; drop those samples before fit")
        views = sample_views(X)
        items, failures = self._load(X, views, cfg["crop"])
        keep = np.array([it is not None for it in items])
        use_cov = bool(self.covariate_columns())
        if use_cov:
            cov = self._usable_covariates(X, keep, failures, f"covariates={self.covariates!r}")
        if keep.sum() < 2:
            reasons = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
            raise ValueError(f"fewer than 2 usable training samples ({len(failures)} failed: {reasons})")
        items = [it for it, k in zip(items, keep) if k]
        y = y[keep]
        subjects = (X["subject_id"].astype(str).to_numpy()[keep] if "subject_id" in X.columns
                    else np.arange(keep.sum()).astype(str))
        seeds = self._seeds()
        device = resolve_device(self.device)

        # held-out subjects for early stopping: drawn from this training fold only
        val_mask = np.zeros(len(y), bool)
        if self.validation_fraction is not None:
            uniq = np.unique(subjects)
            n_val = max(1, int(round(float(self.validation_fraction) * len(uniq))))
            if n_val >= len(uniq):
                raise ValueError(f"validation_fraction={self.validation_fraction} leaves no training subjects")
            val_subj = np.random.default_rng(seeds["split"]).choice(uniq, n_val, replace=False)
            val_mask = np.isin(subjects, val_subj)
        tr = np.flatnonzero(~val_mask)
        va = np.flatnonzero(val_mask)

        self.y_mean_ = float(y[tr].mean())
        self.y_std_ = float(y[tr].std()) or 1.0
        y_std = ((y - self.y_mean_) / self.y_std_).astype(np.float32)
        plain = self._inputs(items, cfg["channels"], None)
        self.input_mean_ = plain[tr].mean(axis=(0, 2, 3)).astype(np.float64)
        self.input_std_ = np.maximum(plain[tr].std(axis=(0, 2, 3)), 1e-6).astype(np.float64)
        cov_all = None
        if use_cov:
            cov_all = cov[keep]
            self.cov_mean_ = cov_all[tr].mean(axis=0)
            self.cov_std_ = np.where(cov_all[tr].std(axis=0) > 0, cov_all[tr].std(axis=0), 1.0)
            cov_all = ((cov_all - self.cov_mean_) / self.cov_std_).astype(np.float32)
        else:
            self.cov_mean_ = self.cov_std_ = None
        self.views_ = tuple(views)
        self.in_channels_ = int(plain.shape[1])
        self.image_size_ = int(cfg["crop"].size)
        self.crop_settings_ = cfg["crop"].to_dict()
        self.channel_settings_ = cfg["channels"].to_dict()
        self.augment_settings_ = AugmentSettings().to_dict() if self.augment else None
        self.device_ = device
        self.arch_ = {**VARIANTS[self.variant], **self._arch_overrides()}
        self.n_covariates_ = len(self.covariate_columns())
        epochs = cfg["epochs"]
        bs = int(self.batch_size)
        aug = Augment(AugmentSettings(), seed=seeds["augment"]) if self.augment else None
        order_rng = np.random.default_rng(seeds["order"])
        norm_m = self.input_mean_.astype(np.float32)[None, :, None, None]
        norm_s = self.input_std_.astype(np.float32)[None, :, None, None]
        history = []
        rank, world = distributed_context()
        with _torch_settings(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds["torch"])
            net = VGGRegressor(self.in_channels_, n_covariates=self.n_covariates_, **self.arch_)
            net = to_fast_layout(net.to(device), device)
            model = net
            if world > 1:  # data-parallel: rank 0's weights are broadcast, gradients averaged
                from torch.nn.parallel import DistributedDataParallel

                model = DistributedDataParallel(net)
                torch.manual_seed(seeds["torch"] + rank)  # each rank's own dropout stream
            opt = torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            steps = epochs * math.ceil(len(tr) / bs)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(self.lr), total_steps=steps,
                                                        pct_start=0.3, anneal_strategy="cos")
            best = (np.inf, None, 0)
            val_x = val_y = val_c = None
            if len(va):
                val_x = to_fast_layout(torch.from_numpy((plain[va] - norm_m) / norm_s).to(device), device)
                val_y = torch.from_numpy(y_std[va]).to(device)
                val_c = torch.from_numpy(cov_all[va]).to(device) if cov_all is not None else None
            for epoch in range(epochs):
                model.train()
                perm = order_rng.permutation(tr)
                total, count = 0.0, 0
                for start in range(0, len(perm), bs):
                    idx = perm[start:start + bs]
                    # every rank draws the augmentation of the whole batch (so the draws do not
                    # depend on the world size) and keeps its own share of the samples
                    mine = np.arange(rank, len(idx), world)
                    # a last batch smaller than the world is skipped by every rank alike: were it
                    # skipped only by the ranks with no share, the others would wait in DDP forever
                    if len(idx) < world:
                        sched.step()
                        continue
                    if aug is not None:
                        xb = self._inputs([items[i] for i in idx], cfg["channels"], aug, keep=mine)
                    else:
                        xb = plain[idx[mine]]
                    xb = to_fast_layout(torch.from_numpy((xb - norm_m) / norm_s).to(device), device)
                    yb = torch.from_numpy(y_std[idx[mine]]).to(device)
                    cb = torch.from_numpy(cov_all[idx[mine]]).to(device) if cov_all is not None else None
                    pred = model(xb, cb)[:, 0]
                    # the batch mean over all ranks: DDP averages gradients over ``world`` ranks
                    loss = regression_loss(pred, yb) * (len(mine) * world / len(idx))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(idx) / world
                    count += len(idx)
                if world > 1:
                    total = all_reduce_sum(total, device)
                rec = {"epoch": epoch + 1, "train_loss": total / count, "val_loss": None,
                       "lr": float(sched.get_last_lr()[0])}
                if val_x is not None:
                    net.eval()
                    with torch.no_grad():
                        rec["val_loss"] = float(regression_loss(net(val_x, val_c)[:, 0], val_y))
                    if rec["val_loss"] < best[0]:
                        best = (rec["val_loss"], {k: v.detach().clone() for k, v in net.state_dict().items()},
                                epoch + 1)
                history.append(rec)
                if self.verbose and rank == 0:
                    logger.info("epoch %3d/%d  train %.4f%s", epoch + 1, epochs, rec["train_loss"],
                                f"  val {rec['val_loss']:.4f}" if rec["val_loss"] is not None else "")
                if val_x is not None and epoch + 1 - best[2] >= int(self.patience):
                    break
            if best[1] is not None:
                net.load_state_dict(best[1])
            else:
                self._recalibrate_batchnorm(net, plain[tr], cov_all[tr] if cov_all is not None else None,
                                            norm_m, norm_s, bs, device)
            self.best_epoch_ = best[2] if best[1] is not None else len(history)
        self.world_size_ = int(world)
        net.eval()
        self.net_ = net
        self.history_ = history
        self.n_train_ = int(len(tr))
        self.failures_ = failures
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    @staticmethod
    def _recalibrate_batchnorm(net, x, cov, norm_m, norm_s, bs, device) -> None:
        """Batch-norm statistics of the final weights over the un-augmented training images.

        The running averages collected during training mix many past weights (few steps
        on small data), and a regressor's output shifts with them; one more pass with the
        final weights and a cumulative average (``momentum=None``) makes evaluation match
        the trained network ("precise BN"). No gradient, no weight changes; dropout is off.
        """
        import torch

        bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        net.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for start in range(0, len(x), bs):
                xb = to_fast_layout(torch.from_numpy((x[start:start + bs] - norm_m) / norm_s).to(device), device)
                cb = torch.from_numpy(cov[start:start + bs]).to(device) if cov is not None else None
                net(xb, cb)
        for m, mom in zip(bns, saved):
            m.momentum = mom
        net.eval()

    # ------------------------------------------------------------------ predict
    def _check_fitted(self):
        if not hasattr(self, "net_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this CNNRegressor is not fitted yet; call fit() or load_model() first")

    def predict(self, X: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
        """SMI (kg/m²) per sample, 1-D float array of ``len(X)``; NaN where the image failed."""
        return self.predict_with_reasons(X, batch_size=batch_size)[0]

    def predict_with_reasons(self, X: pd.DataFrame, batch_size: int = 64) -> tuple[np.ndarray, dict]:
        """``(SMI per sample, {sample_id: reason})`` of the samples predicted NaN; the estimator is left unchanged."""
        import torch

        self._check_fitted()
        if isinstance(X, pd.DataFrame) and len(X) == 0:
            return np.empty(0, dtype=float), {}
        views = sample_views(X)
        if tuple(views) != tuple(self.views_):
            raise ValueError(f"model trained on view(s) {'+'.join(self.views_)}, got samples of "
                             f"{'+'.join(views)}; use a model trained on that view")
        crop = CropSettings(**self.crop_settings_)
        channels = ChannelSettings(**self.channel_settings_)
        items, failures = self._load(X, views, crop)
        ok = np.array([it is not None for it in items], bool)
        cov = None
        if self.cov_mean_ is not None:
            cov = self._usable_covariates(X, ok, failures, "the model uses covariates")
            cov = ((cov - self.cov_mean_) / self.cov_std_).astype(np.float32)
        out = np.full(len(X), np.nan, dtype=float)
        idx = np.flatnonzero(ok)
        norm_m = np.asarray(self.input_mean_, np.float32)[None, :, None, None]
        norm_s = np.asarray(self.input_std_, np.float32)[None, :, None, None]
        device = next(self.net_.parameters()).device
        to_fast_layout(self.net_, str(device))  # in place: a loaded network predicts as the fitted one
        self.net_.eval()
        with _torch_settings(self.n_threads), torch.no_grad():
            for start in range(0, len(idx), int(batch_size)):
                sel = idx[start:start + int(batch_size)]
                xb = self._inputs([items[i] for i in sel], channels, None)
                xb = to_fast_layout(torch.from_numpy((xb - norm_m) / norm_s).to(device), device)
                cb = torch.from_numpy(cov[sel]).to(device) if cov is not None else None
                pred = self.net_(xb, cb)[:, 0].double().cpu().numpy()
                out[sel] = pred * self.y_std_ + self.y_mean_
        return out, failures


def make_cnn(name: str, **params) -> CNNRegressor:
    """The registry's constructor: ``make_cnn('cnn-paper', random_state=0)``."""
    return CNNRegressor(variant=name, **params)
