"""Pretraining of cnn-geo's trunk on rendered cohorts: leg mask → true leg geometry, never SMI.

``legsmi pretrain COHORT... --out DIR`` (:func:`pretrain`) reads rendered cohorts
(``legsmi phantom --scene clinic``: manifest.csv, truth.csv, label maps), makes each
photo's input with the shared segmentation (:func:`smi_deep.geo.geo_input_from_image`),
takes the targets from the truth (:data:`smi_deep.geo.GEO_TARGETS`: truth.csv's calf and
ankle measures, shank length and lower-leg volume, and the width profile of the
photographed leg's true mask, label 1, at ten levels knee → ankle, px / ``px_per_cm_true``),
and trains one :class:`~smi_deep.nets.GeoNet` per view on standardised targets (mean
squared error), holding out a seeded share of the subjects to report the held-out error.

Subject fingerprints (:func:`sample_fingerprint`, :func:`body_fingerprint`) let a test
prove that no pretraining person is a benchmark or test person: the trunk files record the
cohorts' seeds, and ``geo-pretrain-subjects.json`` beside them every pretraining subject's
fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from smi_data.errors import LegsmiError

from .geo import GEO_SIZE, GEO_TARGETS, GEO_VIEWS, PROFILE_FRACS, input_spec

SUBJECTS_FILE = "geo-pretrain-subjects.json"
#: Columns of truth.csv / the sampled subject that fix a body (the Anny fit's inputs and results).
BODY_COLUMNS = ("sex", "age", "anny_gender", "anny_age", "anny_muscle", "anny_proportions", "anny_weight",
                "anny_height")
#: Trunk architecture.
ARCH = {"widths": (12, 24, 48, 64), "hidden": 64, "dropout": 0.2}


class PretrainError(LegsmiError, ValueError):
    """A cohort that cannot be used for pretraining (missing files or columns, no usable photo)."""


# --------------------------------------------------------------------------- fingerprints
def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def sample_fingerprint(s: dict) -> str:
    """Fingerprint of a sampled subject (:func:`smi_data.phantom.sampling.sample_subject`).

    The sampled sex, age, target height and BMI, muscle and proportions are everything the
    body model is fitted from, so two subjects with the same fingerprint are the same body.
    """
    return _hash("|".join([s["sex"], f"{float(s['age']):.0f}", f"{float(s['target_height_cm']):.6f}",
                           f"{float(s['target_bmi']):.6f}", f"{float(s['muscle']):.6f}",
                           f"{float(s['proportions']):.6f}"]))


def seed_fingerprints(seed: int, n_subjects: int) -> list[str]:
    """:func:`sample_fingerprint` of subjects ``0 .. n_subjects - 1`` of ``seed`` (no rendering; microseconds each)."""
    from smi_data.phantom.sampling import sample_subject

    return [sample_fingerprint(sample_subject(int(seed), i)) for i in range(int(n_subjects))]


def body_fingerprint(row) -> str:
    """Fingerprint of a rendered body from its truth.csv row (:data:`BODY_COLUMNS`, rounded to 4 decimals)."""
    parts = [str(row["sex"])] + [f"{float(row[c]):.4f}" for c in BODY_COLUMNS[1:]]
    return _hash("|".join(parts))


def cohort_body_fingerprints(dataset: str | os.PathLike) -> set[str]:
    """:func:`body_fingerprint` of every subject in a rendered cohort's truth.csv."""
    truth = pd.read_csv(Path(dataset) / "truth.csv")
    missing = [c for c in BODY_COLUMNS if c not in truth.columns]
    if missing:
        raise PretrainError(f"{dataset}/truth.csv lacks {', '.join(missing)}; not a rendered cohort")
    return {body_fingerprint(r) for _, r in truth.drop_duplicates("subject_id").iterrows()}


# --------------------------------------------------------------------------- targets
def width_profile_cm(labels: np.ndarray, knee_y: float, ankle_y: float, px_per_cm: float,
                     fracs=PROFILE_FRACS) -> np.ndarray:
    """Widths (cm) of the photographed leg's true mask (label 1) at ``fracs`` of knee → ankle.

    Each level is the mean pixel count of label 1 over the three rows around it, over
    ``px_per_cm`` (the truth's scale at the calf's depth).
    """
    leg = labels == 1
    h = leg.shape[0]
    out = []
    for f in fracs:
        y = int(round(knee_y + f * (ankle_y - knee_y)))
        rows = leg[max(0, y - 1):min(h, y + 2)]
        out.append(float(rows.sum(axis=1).mean()) / float(px_per_cm) if rows.size else np.nan)
    return np.asarray(out)


def _read_cohort(dataset: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    for name in ("manifest.csv", "truth.csv", "run.json"):
        if not (dataset / name).is_file():
            raise PretrainError(f"{dataset}: no {name}; pretraining needs a cohort rendered by `legsmi phantom`")
    manifest = pd.read_csv(dataset / "manifest.csv")
    truth = pd.read_csv(dataset / "truth.csv")
    need = {"label_map", "knee_y_px", "ankle_y_px", "px_per_cm_true", *[t for t in GEO_TARGETS
                                                                         if not t.startswith("width_")]}
    missing = sorted(need - set(truth.columns))
    if missing:
        raise PretrainError(f"{dataset}/truth.csv lacks {', '.join(missing)}; render it with --scene clinic")
    run = json.loads((dataset / "run.json").read_text())
    return manifest, truth, run


def cohort_arrays(dataset: str | os.PathLike, view: str, cache_dir: str | os.PathLike | None = None,
                  echo=None) -> dict:
    """Inputs, targets and subject fingerprints of one rendered cohort's photos of ``view``.

    Returns ``{'x': (N, S, S) uint8 coverage × 255, 'y': (N, T), 'subject': (N,), 'fingerprint': (N,),
    'refused': {image: reason}}``; cached as ``.npz`` in ``cache_dir`` (keyed by the cohort's
    run.json and the segmenter's SHA-256) when given.
    """
    from smi_data.images import ImageError, read_image
    from smi_image.learned import weights_digest

    from .geo import geo_input_from_image
    from .preprocess import PreprocessError

    dataset = Path(dataset)
    manifest, truth, run = _read_cohort(dataset)
    key = _hash(json.dumps([run.get("config"), run.get("seed"), view, weights_digest(), input_spec()],
                           sort_keys=True, default=str))
    cache = Path(cache_dir) / f"{dataset.name}-{view}-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return {"x": z["x"], "y": z["y"], "subject": z["subject"], "fingerprint": z["fingerprint"],
                "refused": json.loads(str(z["refused"]))}
    rows = manifest[manifest["view"] == view]
    tr = truth.set_index(["subject_id", "view"])
    xs, ys, subj, fps, refused = [], [], [], [], {}
    t0 = time.perf_counter()
    for n, (_, r) in enumerate(rows.iterrows()):
        t = tr.loc[(r["subject_id"], view)]
        ppc = r.get("px_per_cm")
        ppc = float(ppc) if ppc is not None and pd.notna(ppc) else None
        try:
            img = read_image(dataset / r["image"], color=True)
            x = geo_input_from_image(img, px_per_cm=ppc, view=view, side=str(r["side"]))
        except (ImageError, PreprocessError) as exc:
            refused[str(r["image"])] = str(exc)
            continue
        import cv2

        labels = cv2.imread(str(dataset / t["label_map"]), cv2.IMREAD_UNCHANGED)
        prof = width_profile_cm(labels, float(t["knee_y_px"]), float(t["ankle_y_px"]), float(t["px_per_cm_true"]))
        target = [float(t[c]) for c in GEO_TARGETS if not c.startswith("width_")] + list(prof)
        xs.append(np.round(x * 255).astype(np.uint8))
        ys.append(target)
        subj.append(f"{run.get('seed')}:{r['subject_id']}")
        fps.append(body_fingerprint(t))
        if echo and (n + 1) % 200 == 0:
            echo(f"  {dataset.name} {view}: {n + 1}/{len(rows)} photos, {time.perf_counter() - t0:.0f} s")
    out = {"x": np.stack(xs) if xs else np.empty((0, GEO_SIZE, GEO_SIZE), np.uint8),
           "y": np.asarray(ys, dtype=np.float64).reshape(-1, len(GEO_TARGETS)),
           "subject": np.asarray(subj, dtype=str), "fingerprint": np.asarray(fps, dtype=str), "refused": refused}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.stem}-{os.getpid()}.npz")
        np.savez_compressed(tmp, x=out["x"], y=out["y"], subject=out["subject"], fingerprint=out["fingerprint"],
                            refused=json.dumps(refused))
        os.replace(tmp, cache)
    return out


# --------------------------------------------------------------------------- training
def _augment(x: np.ndarray, rng: np.random.Generator, shift_px: int = 2) -> np.ndarray:
    """Random mirror (geometry is mirror-free) and a shift of up to ``shift_px`` px, zero-filled."""
    out = np.zeros_like(x)
    n, h, w = x.shape
    flips = rng.uniform(size=n) < 0.5
    dy = rng.integers(-shift_px, shift_px + 1, size=n)
    dx = rng.integers(-shift_px, shift_px + 1, size=n)
    for i in range(n):
        src = x[i, :, ::-1] if flips[i] else x[i]
        ys, yd = (slice(0, h - dy[i]), slice(dy[i], h)) if dy[i] >= 0 else (slice(-dy[i], h), slice(0, h + dy[i]))
        xs, xd = (slice(0, w - dx[i]), slice(dx[i], w)) if dx[i] >= 0 else (slice(-dx[i], w), slice(0, w + dx[i]))
        out[i, yd, xd] = src[ys, xs]
    return out


def train_trunk(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, *, seed: int = 0, epochs: int = 30,
                batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 1e-4, holdout: float = 0.1,
                echo=None) -> tuple:
    """Train a :class:`~smi_deep.nets.GeoNet` on ``x`` (N, S, S) uint8 and ``y`` (N, T); returns ``(net, record)``.

    A seeded ``holdout`` share of the subjects is kept out of training; the record has the
    targets' training mean and SD, the loss per epoch and the held-out error per target
    (mean absolute error in the target's unit and mean absolute percentage error).
    """
    import torch

    from .nets import GeoNet, regression_loss
    from .regressor import _torch_settings

    ss = np.random.SeedSequence(int(seed)).spawn(3)
    uniq = np.unique(subjects)
    n_ho = int(round(holdout * len(uniq)))
    ho_subj = np.random.default_rng(ss[0]).choice(uniq, n_ho, replace=False) if n_ho else np.array([], str)
    ho = np.isin(subjects, ho_subj)
    tr = np.flatnonzero(~ho)
    if len(tr) < 2:
        raise PretrainError(f"only {len(tr)} training photo(s) for pretraining")
    mean, sd = y[tr].mean(axis=0), y[tr].std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    ys = ((y - mean) / sd).astype(np.float32)
    order_rng, aug_rng = np.random.default_rng(ss[1]), np.random.default_rng(ss[2])
    history = []
    t0, c0 = time.perf_counter(), time.process_time()
    with _torch_settings(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(ss[0].generate_state(1)[0]))
        net = GeoNet(y.shape[1], widths=ARCH["widths"], hidden=ARCH["hidden"], dropout=ARCH["dropout"],
                     image_size=x.shape[-1])
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * math.ceil(len(tr) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
        for epoch in range(epochs):
            net.train()
            perm = order_rng.permutation(tr)
            total = 0.0
            for s in range(0, len(perm), batch_size):
                idx = perm[s:s + batch_size]
                xb = torch.from_numpy(_augment(x[idx], aug_rng).astype(np.float32)[:, None] / 255.0)
                loss = regression_loss(net(xb), torch.from_numpy(ys[idx]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            rec = {"epoch": epoch + 1, "train_loss": total / len(tr)}
            if ho.any():
                rec["holdout_loss"] = float(np.mean((_predict(net, x[ho]) - ys[ho]) ** 2))
            history.append(rec)
            if echo:
                echo(f"  epoch {epoch + 1}/{epochs}: train {rec['train_loss']:.4f}"
                     + (f", held out {rec['holdout_loss']:.4f}" if "holdout_loss" in rec else "")
                     + f" ({time.perf_counter() - t0:.0f} s)")
        net.eval()
    record = {"target_mean": [float(v) for v in mean], "target_std": [float(v) for v in sd], "history": history,
              "n_train_photos": int(len(tr)), "n_holdout_photos": int(ho.sum()),
              "n_train_subjects": int(len(uniq) - n_ho), "n_holdout_subjects": int(n_ho),
              "train_cpu_s": round(time.process_time() - c0, 1), "train_wall_s": round(time.perf_counter() - t0, 1)}
    if ho.any():
        pred = _predict(net, x[ho]) * sd + mean
        err = pred - y[ho]
        record["holdout_error"] = {t: {"mae": round(float(np.mean(np.abs(err[:, j]))), 4),
                                       "mape_pct": round(float(100 * np.mean(np.abs(err[:, j]) / np.abs(y[ho, j]))), 2),
                                       "r": round(float(np.corrcoef(pred[:, j], y[ho, j])[0, 1]), 4)}
                                   for j, t in enumerate(GEO_TARGETS)}
    return net, record


def _predict(net, x: np.ndarray) -> np.ndarray:
    import torch

    net.eval()
    with torch.no_grad():
        out = [net(torch.from_numpy(x[s:s + 256].astype(np.float32)[:, None] / 255.0)).numpy()
               for s in range(0, len(x), 256)]
    return np.concatenate(out)


# --------------------------------------------------------------------------- the command
def pretrain(cohorts, out_dir: str | os.PathLike, *, views=GEO_VIEWS, seed: int = 0, epochs: int = 30,
             holdout: float = 0.1, cache_dir: str | os.PathLike | None = None, command: str = "",
             echo=print) -> dict:
    """Pretrain one trunk per view on ``cohorts``; writes ``geo-<view>.pt`` and :data:`SUBJECTS_FILE` into ``out_dir``.

    Returns the record written into each trunk's metadata (and ``pretrain.json``).
    """
    from smi_data.runs import atomic_write_json, git_commit, package_versions
    from smi_image.learned import WEIGHTS as SEG_WEIGHTS

    from .geo import file_digest, save_trunk

    cohorts = [Path(c) for c in cohorts]
    infos = []
    for c in cohorts:
        _, truth, run = _read_cohort(c)
        cfg = run.get("config") or {}
        if cfg.get("scene") not in (None, "clinic", "wild"):
            echo(f"note: {c} is a {cfg.get('scene')!r} cohort; the benchmark's is clinic")
        infos.append({"path": str(c), "seed": run.get("seed", cfg.get("seed")), "n_subjects": cfg.get("n_subjects"),
                      "scene": cfg.get("scene"), "size": cfg.get("size")})
    seeds = [i["seed"] for i in infos]
    if len(set(seeds)) != len(seeds):
        raise PretrainError(f"two cohorts share a seed ({seeds}): the same people twice")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seg = Path(SEG_WEIGHTS)
    base = {"model": "cnn-geo", "seed": int(seed), "epochs": int(epochs), "holdout": float(holdout),
            "cohorts": infos, "segmenter_sha256": file_digest(seg) if seg.is_file() else None,
            "command": command, "git_commit": git_commit(), "versions": package_versions(),
            "arch": {k: list(v) if isinstance(v, tuple) else v for k, v in ARCH.items()}}
    records = {}
    for view in views:
        t0, c0 = time.perf_counter(), time.process_time()
        parts = []
        for c in cohorts:
            echo(f"{view}: inputs of {c}")
            parts.append(cohort_arrays(c, view, cache_dir, echo=echo))
        x = np.concatenate([p["x"] for p in parts])
        y = np.concatenate([p["y"] for p in parts])
        subjects = np.concatenate([p["subject"] for p in parts])
        refused = {f"{c}/{k}": v for c, p in zip(cohorts, parts) for k, v in p["refused"].items()}
        prep = {"inputs_cpu_s": round(time.process_time() - c0, 1), "inputs_wall_s": round(time.perf_counter() - t0, 1),
                "n_photos": int(len(x)), "n_refused": len(refused),
                "refused_examples": dict(list(refused.items())[:10])}
        echo(f"{view}: {len(x)} photos ({len(refused)} refused by the segmentation / quality gate); training")
        net, rec = train_trunk(x, y, subjects, seed=seed, epochs=epochs, holdout=holdout, echo=echo)
        meta = {**base, **prep, **rec, "view": view}
        records[view] = {k: v for k, v in meta.items() if k != "history"}
        save_trunk(net, out / f"geo-{view}.pt", meta)
    write_subjects_file(cohorts, out)
    atomic_write_json(out / "pretrain.json", records)
    return records


def write_subjects_file(cohorts, out_dir: str | os.PathLike) -> Path:
    """Write :data:`SUBJECTS_FILE`: the fingerprints of every subject of ``cohorts`` (used or refused)."""
    from smi_data.runs import atomic_write_json

    infos = []
    body: set[str] = set()
    for c in cohorts:
        _, _, run = _read_cohort(Path(c))
        cfg = run.get("config") or {}
        infos.append({"seed": run.get("seed", cfg.get("seed")), "n_subjects": cfg.get("n_subjects"),
                      "scene": cfg.get("scene"), "size": cfg.get("size")})
        body |= cohort_body_fingerprints(c)
    sample = sorted({f for i in infos for f in seed_fingerprints(i["seed"], i["n_subjects"])})
    return atomic_write_json(Path(out_dir) / SUBJECTS_FILE, {
        "what": "fingerprints of every subject of cnn-geo's pretraining cohorts (smi_deep.pretrain; "
                "sample: sample_fingerprint of the seeds' draws, body: body_fingerprint of truth.csv)",
        "cohorts": infos, "sample_fingerprints": sample, "body_fingerprints": sorted(body)})
