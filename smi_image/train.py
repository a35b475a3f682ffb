"""Training the learned segmenter on synthetic ``wild`` scenes (``legsmi segmenter train``).

Data: a folder of rendered scenes, ``images/<stem>.(jpg|png)`` with ``labels/<stem>.png``
beside (0 background, 1 the photographed leg knee down with its foot, 2 the other leg,
3 clothing, 4 marker, 5 distractor, 6 the photographed leg's skin above the knee, below
the hem; :mod:`smi_data.phantom.scene`). Without ``--data`` the command renders them
itself (``legsmi phantom --scene wild``), seeded.

Targets, at the network's resolution: **leg** = labels 1, 2 or 6 (the bare skin of either
leg, as a person would outline it, and as the real photos' masks do); **split** = leg
pixels within :data:`SPLIT_PX` of the other leg (where the two meet or overlap), so that
the two legs can be cut apart and the photographed one chosen (:mod:`smi_image.learned`);
**behind** = the leg farther from the camera in a side view, where the nearer one hides part of
it (the other leg, label 2, when the camera looks at the outside of the photographed leg; the
photographed leg when a ``wild`` camera turned round looks at its inside; :attr:`Scene.behind`),
0 on every leg pixel of a back or front view, learned on leg pixels only and not at all on
scenes whose camera is turned half-way (the legs half behind each other), so that the far leg's
visible sliver is not taken into the near one. Pixels under
a painted shoe (below) are not leg, or left out of every loss (:data:`IGNORE`).

Each scene gives one random view per epoch (:class:`SceneAugmenter`, its own generator):

* framing: with probability ``crop_p`` a crop like the real photos it must work on
  (0.7-0.85 as wide as tall, from somewhat above or below the top of the leg's label to
  just under the sole, centred on the photographed leg with jitter, so that the other
  leg is partly in frame), else the whole scene or a random 70-100 % window of it;
* geometry: rotation (±``rotate_deg``), horizontal flip;
* photometric: gain and offset, per-channel gain (white balance), saturation, gamma;
* degradation: downscale and back (small photos), Gaussian blur, noise, JPEG;
* no leg: with probability ``negative_p`` the sample is a random window of one of scikit-image's
  bundled photos that show no leg (:data:`NEGATIVE_PHOTOS`: a cat, a rocket, coins, a clock, ...;
  never ``astronaut``, ``coffee`` or ``text``, the controls the quality gate is tested on), with
  the same photometric changes and a target of no leg anywhere: the scenes alone never show a
  photo without a leg, so a network trained only on them finds the most leg-like thing in any photo;
* footwear: with probability ``shoe_p`` the feet (the lowest 6-14 % of each leg's rows,
  widened) are painted as a shoe of one random colour with shading, sometimes with a heel
  below; those pixels become clothing (label 3, not leg: a shoe is not the leg, as the
  renderer's own shoes are labelled; ``shoe_target="not_leg"``) or, with ``"ignore"``,
  :data:`IGNORE` (left out of every loss; a bare foot stays leg in the other scenes).

Loss: binary cross-entropy plus soft Dice on the leg channel (Milletari et al. 2016),
binary cross-entropy with ``split_pos_weight`` on the split channel. AdamW, cosine
learning rate. Every scene is held out or not by a seeded split (``val_share``); the
run folder gets ``segmenter.pt``, ``run.json`` (config, seed, versions, commit, the
command that rendered the data), ``log.csv`` and the held-out IoU.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: Pixels of one leg within this distance of the other leg are the "split" target (network px).
SPLIT_PX = 2
#: Label of the photographed leg's skin above the knee (below the hem).
PHOTO_THIGH = 6
#: Label (training only) of pixels left out of the loss: painted footwear.
IGNORE = 255
#: Label of painted shoes when they count as not leg (clothing, as in :mod:`smi_data.phantom.scene`).
SHOE_LABEL = 3


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`train_segmenter` (all recorded in run.json)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    widths: tuple = (8, 16, 32, 64, 96)
    input_hw: tuple = (128, 96)
    load_long_px: int = 256
    crop_p: float = 0.75
    shoe_p: float = 0.35
    #: What a painted shoe is to the loss: ``"not_leg"`` (clothing, label 3, as the renderer labels its own
    #: shoes) or ``"ignore"`` (left out of every loss: how the weights of branch seg2 were trained).
    shoe_target: str = "not_leg"
    #: Share of samples that are a photo with no leg at all (:data:`NEGATIVE_PHOTOS`), target 0 everywhere.
    negative_p: float = 0.1
    rotate_deg: float = 10.0
    split_pos_weight: float = 5.0
    behind_weight: float = 1.0
    val_share: float = 0.1
    seed: int = 0
    threads: int = 2
    time_budget_s: float | None = None
    #: What ``time_budget_s`` counts: ``"wall"`` seconds, or ``"cpu"`` seconds of this process (user + sys:
    #: on a shared machine the same budget then buys about the same number of steps whatever the load).
    budget_clock: str = "wall"
    #: Start from these weights (a previous run's segmenter.pt) instead of a random initialisation.
    init_weights: str | None = None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def input_size(long_px: int, stride: int | None = None) -> dict:
    """``input_hw`` and ``load_long_px`` of a network that sees ``long_px`` on a photo's longest side.

    The input is portrait, 0.75 as wide as tall (the real crops' shape), both sides rounded up to a
    multiple of ``stride``; the scenes are loaded at twice ``long_px`` (at least 256), so that a crop of
    the leg is shrunk to the input, as a photo is at inference, not enlarged.
    """
    if stride is None:
        from .nets import stride_of

        stride = stride_of(TrainConfig.widths)
    long_px = int(long_px)
    if long_px < stride or long_px % stride:
        lo = max(stride, long_px // stride * stride)
        raise ValueError(f"input size must be a multiple of {stride} px, got {long_px} (use {lo} or {lo + stride})")
    width = -(-int(round(0.75 * long_px)) // stride) * stride
    return {"input_hw": (long_px, width), "load_long_px": max(256, 2 * long_px)}


@dataclass
class Scene:
    image: np.ndarray   # BGR uint8, longest side <= load_long_px
    labels: np.ndarray  # uint8 label map, same size
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def lateral(self) -> bool:
        """A side view, from the rendered file's name."""
        return "lateral" in self.name

    @property
    def behind(self) -> str:
        """Which leg stands behind the other as the camera sees it: ``"other"`` (label 2), ``"photo"``
        (labels 1 and 6), ``"none"`` (side by side) or ``"unknown"`` (the behind map is not trained here).

        The renderer turns ``wild`` cameras around the subject (``turn_deg`` in its truth.csv): a side
        view turned by about 180 degrees looks at the inside of the photographed leg, with the other
        leg in front of it; one turned 20-140 degrees (or a back view turned 20-150) sees the legs
        half behind each other. A render without ``turn_deg`` (older renderer) was not turned. A photo of
        one leg (``one_leg``) has no leg behind another, whatever the turn.
        """
        if self.meta.get("one_leg"):
            return "none"
        turn = self.meta.get("turn_deg")
        t = 0.0 if turn is None or not np.isfinite(turn) else (float(turn) + 180.0) % 360.0 - 180.0
        if self.lateral:
            return "other" if abs(t) < 20 else ("photo" if abs(t) > 140 else "unknown")
        return "none" if abs(t) < 20 or abs(t) > 150 else "unknown"


def find_scenes(data_dir) -> list[tuple[Path, Path]]:
    """``(image, label map)`` pairs of a rendered scene folder (or of several: a list of folders)."""
    if isinstance(data_dir, (list, tuple)):
        return [pair for d in data_dir for pair in find_scenes(d)]
    d = Path(data_dir)
    labels = d / "labels"
    if not labels.is_dir():
        raise FileNotFoundError(f"{d}: no labels/ folder; render scenes with `legsmi phantom --scene wild`")
    out = []
    for img in sorted(p for p in (d / "images").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        lab = labels / f"{img.stem}.png"
        if lab.is_file():
            out.append((img, lab))
    if not out:
        raise FileNotFoundError(f"{d}: no images/<stem> with labels/<stem>.png")
    return out


def scene_meta(pairs) -> dict:
    """``{image stem: {"turn_deg": ..., "one_leg": ...}}`` from the ``truth.csv`` beside each pair's ``images/``
    (where present; ``one_leg`` only where the render has that column: `legsmi phantom --one-leg`)."""
    import pandas as pd

    meta = {}
    for root in sorted({img.parent.parent if img.parent.name == "images" else img.parent for img, _ in pairs}):
        truth = root / "truth.csv"
        if not truth.is_file():
            continue
        t = pd.read_csv(truth)
        if "image" not in t.columns or "turn_deg" not in t.columns:
            continue
        one = t["one_leg"].fillna(False).astype(bool) if "one_leg" in t.columns else np.zeros(len(t), bool)
        for image, turn, single in zip(t["image"], t["turn_deg"], one):
            meta[Path(str(image)).stem] = {"turn_deg": float(turn), **({"one_leg": True} if single else {})}
    return meta


def load_scenes(pairs, long_px: int) -> list[Scene]:
    import cv2

    meta = scene_meta(pairs)
    scenes = []
    for img_p, lab_p in pairs:
        img = cv2.imread(str(img_p), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(lab_p), cv2.IMREAD_UNCHANGED)
        if img is None or lab is None:
            raise FileNotFoundError(f"{img_p}: image or label map not readable")
        if lab.ndim == 3:
            lab = lab[..., 0]
        if not ((lab == 1) | (lab == PHOTO_THIGH)).any():
            continue  # no photographed leg in this scene: nothing to learn the framing from
        f = long_px / max(img.shape[:2])
        if f < 1:
            size = (max(1, int(round(img.shape[1] * f))), max(1, int(round(img.shape[0] * f))))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            lab = cv2.resize(lab, size, interpolation=cv2.INTER_NEAREST)
        scenes.append(Scene(img, lab, img_p.stem, meta.get(img_p.stem, {})))
    return scenes


def targets(labels: np.ndarray, behind: str = "none") -> tuple[np.ndarray, ...]:
    """(leg, split, behind, valid, behind_valid) float32 targets of a label map at the network's resolution.

    ``valid`` is 0 on :data:`IGNORE` pixels; ``behind`` is the leg :attr:`Scene.behind` names
    (``"other"``: label 2, ``"photo"``: labels 1 and 6, ``"none"``: neither); with ``"unknown"``
    ``behind_valid`` is 0 everywhere (that scene does not train the behind map).
    """
    import cv2

    if behind not in ("other", "photo", "none", "unknown"):
        raise ValueError(f"behind must be other, photo, none or unknown, got {behind!r}")
    one, two = ((labels == 1) | (labels == PHOTO_THIGH)).astype(np.uint8), (labels == 2).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SPLIT_PX + 1, 2 * SPLIT_PX + 1))
    split = (cv2.dilate(two, k) & one) | (cv2.dilate(one, k) & two)
    far = {"other": two, "photo": one}.get(behind, np.zeros_like(two))
    valid = (labels != IGNORE).astype(np.float32)
    behind_valid = valid * (0.0 if behind == "unknown" else 1.0)
    return ((one | two).astype(np.float32), split.astype(np.float32), far.astype(np.float32), valid,
            behind_valid)


class SceneAugmenter:
    """One random network input and target per call (see the module docstring); owns its generator."""

    def __init__(self, config: TrainConfig, seed: int):
        self.c = config
        self.rng = np.random.default_rng(seed)

    def box(self, scene: Scene) -> tuple[float, float, float, float]:
        """(cx, cy, width, height) of the framing, scene px."""
        r = self.rng
        h, w = scene.labels.shape
        ys, xs = np.nonzero((scene.labels == 1) | (scene.labels == PHOTO_THIGH))
        y0, y1 = ys.min(), ys.max()
        length = max(8.0, float(y1 - y0))
        if r.random() < self.c.crop_p:
            top = y0 + r.uniform(-0.15, 0.12) * length
            bottom = y1 + r.uniform(0.0, 0.1) * length
            bh = bottom - top
            bw = bh * r.uniform(0.7, 0.85)
            mid = (ys > y0 + 0.2 * length) & (ys < y0 + 0.7 * length)
            cx = (xs[mid].mean() if mid.any() else xs.mean()) + r.uniform(-0.12, 0.12) * bw
            return cx, (top + bottom) / 2, bw, bh
        s = r.uniform(0.7, 1.0)
        bh = s * h
        bw = min(w, bh * self.c.input_hw[1] / self.c.input_hw[0])
        cx = r.uniform(bw / 2, max(bw / 2, w - bw / 2))
        cy = r.uniform(bh / 2, max(bh / 2, h - bh / 2))
        return cx, cy, bw, bh

    def __call__(self, scene: Scene, negatives: list | None = None) -> tuple[np.ndarray, ...]:
        if negatives and self.rng.random() < self.c.negative_p:
            img = self.negative(negatives[int(self.rng.integers(len(negatives)))])
            return (img, *targets(np.zeros(img.shape[:2], np.uint8), "none"))
        img, lab = self.sample(scene)
        return (img, *targets(lab, scene.behind))

    def negative(self, photo: np.ndarray) -> np.ndarray:
        """A random window (30-100 % of the shorter side, any place, half the time flipped) of a photo
        without a leg, at ``input_hw``, with the photometric changes."""
        import cv2

        r = self.rng
        oh, ow = self.c.input_hw
        h, w = photo.shape[:2]
        bh = r.uniform(0.3, 1.0) * min(h, w * oh / ow)
        bw = bh * ow / oh
        y0, x0 = r.uniform(0, h - bh), r.uniform(0, w - bw)
        win = photo[int(y0):int(y0 + bh), int(x0):int(x0 + bw)]
        img = cv2.resize(win, (ow, oh), interpolation=cv2.INTER_AREA)
        if r.random() < 0.5:
            img = np.ascontiguousarray(img[:, ::-1])
        return self.photometric(img)

    def sample(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """One augmented (BGR uint8 image, label map) at ``input_hw``."""
        import cv2

        r = self.rng
        oh, ow = self.c.input_hw
        cx, cy, bw, bh = self.box(scene)
        scale = min(ow / bw, oh / bh)
        angle = r.uniform(-self.c.rotate_deg, self.c.rotate_deg) if r.random() < 0.5 else 0.0
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[0, 2] += ow / 2 - cx
        m[1, 2] += oh / 2 - cy
        border = cv2.BORDER_REPLICATE if r.random() < 0.7 else cv2.BORDER_REFLECT
        img = cv2.warpAffine(scene.image, m, (ow, oh), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                             borderMode=border)
        lab = cv2.warpAffine(scene.labels, m, (ow, oh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0)
        if r.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        img, lab = np.ascontiguousarray(img), np.ascontiguousarray(lab)
        if r.random() < self.c.shoe_p:
            img, lab = self.shoes(img, lab)
        return self.photometric(img), lab

    def shoes(self, img: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paint both feet as shoes of one colour (see the module docstring); their pixels become clothing
        (``shoe_target="not_leg"``) or IGNORE."""
        import cv2

        r = self.rng
        colour = r.uniform(0, 255, 3) if r.random() < 0.6 else np.full(3, r.uniform(0, 70))
        heel = r.random() < 0.4
        share = r.uniform(0.06, 0.14)
        shoe = np.zeros(lab.shape, np.uint8)
        for legs in ((lab == 1) | (lab == PHOTO_THIGH), lab == 2):
            rows = np.flatnonzero(legs.any(axis=1))
            if rows.size < 8:
                continue
            top = rows[-1] - max(2, int(share * rows.size))
            foot = legs.copy()
            foot[:top] = False
            shoe |= foot.astype(np.uint8)
            if heel:  # a heel: the back of the foot lifted on a post a few px high
                ys, xs = np.nonzero(foot)
                x0 = int(np.percentile(xs, 10 if r.random() < 0.5 else 80))
                hh = int(r.integers(2, 6))
                y1 = min(lab.shape[0], rows[-1] + 1 + hh)
                shoe[rows[-1] + 1:y1, max(0, x0 - 1):x0 + 2] = 1
        if not shoe.any():
            return img, lab
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        shoe = cv2.dilate(shoe, k, iterations=int(r.integers(0, 3))) > 0
        shade = 0.6 + 0.4 * cv2.GaussianBlur(r.random(lab.shape).astype(np.float32), (0, 0), 2.0)
        paint = np.clip(colour[None, None, :] * (0.7 + 0.6 * shade[..., None]), 0, 255)
        img = img.copy()
        img[shoe] = paint[shoe].astype(np.uint8)
        lab = lab.copy()
        lab[shoe] = IGNORE if self.c.shoe_target == "ignore" else SHOE_LABEL
        return img, lab

    def photometric(self, img: np.ndarray) -> np.ndarray:
        import cv2

        r = self.rng
        f = img.astype(np.float32)
        f = f * r.uniform(0.6, 1.4) + r.uniform(-30, 30)
        f *= r.uniform(0.85, 1.15, size=3)[None, None, :]
        f = np.clip(f, 0, 255)
        if r.random() < 0.5:
            hsv = cv2.cvtColor(f.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
            hsv[..., 1] = np.clip(hsv[..., 1] * r.uniform(0.5, 1.5), 0, 255)
            hsv[..., 0] = (hsv[..., 0] + r.uniform(-8, 8)) % 180
            f = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
        if r.random() < 0.5:
            f = 255.0 * (f / 255.0) ** r.uniform(0.7, 1.4)
        out = np.clip(f, 0, 255).astype(np.uint8)
        h, w = out.shape[:2]
        if r.random() < 0.5:
            k = r.uniform(0.35, 0.9)
            small = cv2.resize(out, (max(8, int(w * k)), max(8, int(h * k))), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if r.random() < 0.3:
            out = cv2.GaussianBlur(out, (0, 0), r.uniform(0.3, 1.5))
        if r.random() < 0.5:
            noise = r.normal(0, r.uniform(1, 8), out.shape)
            out = np.clip(out + noise, 0, 255).astype(np.uint8)
        if r.random() < 0.5:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(35, 96))])
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return out


#: scikit-image's bundled photos that show no leg, used as "no leg anywhere" samples (``negative_p``).
#: ``astronaut``, ``coffee`` and ``text`` are left out: they are the quality gate's test controls.
NEGATIVE_PHOTOS = ("chelsea", "rocket", "camera", "coins", "moon", "clock", "immunohistochemistry",
                   "hubble_deep_field", "retina", "colorwheel", "cell")


def negative_photos(names=NEGATIVE_PHOTOS, long_px: int = 256) -> list[np.ndarray]:
    """The :data:`NEGATIVE_PHOTOS` as BGR uint8, longest side at most ``long_px``."""
    import cv2
    from skimage import data

    out = []
    for name in names:
        img = np.asarray(getattr(data, name)())
        if img.dtype != np.uint8:
            img = (255 * (img.astype(np.float64) / max(1e-9, float(img.max())))).astype(np.uint8)
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else np.ascontiguousarray(img[..., 2::-1])
        f = long_px / max(img.shape[:2])
        if f < 1:
            img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
        out.append(img)
    return out


def batch(aug: SceneAugmenter, scenes: list[Scene], idx, negatives: list | None = None) -> tuple:
    import torch

    xs, maps = [], []
    for i in idx:
        img, *t = aug(scenes[i], negatives)
        xs.append(_to_input(img))
        maps.append(np.stack(t))
    t = torch.from_numpy(np.stack(maps))  # (n, 5, h, w): leg, split, behind, valid, behind_valid
    return (torch.from_numpy(np.stack(xs)), *(t[:, j:j + 1] for j in range(t.shape[1])))


def loss_fn(logits, leg, split, behind=None, valid=None, pos_weight: float = 5.0, behind_weight: float = 1.0,
            behind_valid=None):
    """BCE + soft Dice (leg), weighted BCE (split), BCE on leg pixels (behind, where ``behind_valid``);
    IGNORE pixels left out."""
    import torch
    import torch.nn.functional as F

    if valid is None:
        valid = torch.ones_like(leg)
    n_valid = valid.sum().clamp(min=1)
    bce = (F.binary_cross_entropy_with_logits(logits[:, :1], leg, reduction="none") * valid).sum() / n_valid
    p = torch.sigmoid(logits[:, :1]) * valid
    inter = (p * leg).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + (leg * valid).sum(dim=(1, 2, 3)) + 1)
    sp = F.binary_cross_entropy_with_logits(logits[:, 1:2], split, reduction="none",
                                            pos_weight=torch.tensor(pos_weight, dtype=logits.dtype))
    sp = (sp * valid).sum() / n_valid
    total = bce + dice.mean() + sp
    if behind is not None and logits.shape[1] > 2:
        on_leg = leg * (valid if behind_valid is None else behind_valid)
        bh = F.binary_cross_entropy_with_logits(logits[:, 2:3], behind, reduction="none")
        total = total + behind_weight * (bh * on_leg).sum() / on_leg.sum().clamp(min=1)
    return total


def evaluate(model, scenes: list[Scene], config: TrainConfig, seed: int) -> dict:
    """Held-out IoU on real-photo-like crops (fixed seed): of the leg channel (either leg), and of the
    leg picked by the nearest-centre rule with the photographed leg (label 1)."""
    import dataclasses

    import torch

    from .learned import leg_instances, pick_instance

    if not scenes:
        return {"val_leg_iou": float("nan"), "val_target_iou": float("nan"), "n_val": 0}
    aug = SceneAugmenter(dataclasses.replace(config, crop_p=1.0, shoe_p=0.0), seed)
    was_training = model.training
    model.eval()
    leg_iou, target_iou = [], []
    with torch.inference_mode():
        for start in range(0, len(scenes), 32):
            items = [aug.sample(scenes[i]) for i in range(start, min(len(scenes), start + 32))]
            x = torch.from_numpy(np.stack([_to_input(img) for img, _ in items]))
            prob = torch.sigmoid(model(x)).numpy()
            for (_img, lab), pr in zip(items, prob):
                photo = (lab == 1) | (lab == PHOTO_THIGH)
                leg_iou.append(_iou(pr[0] >= 0.5, photo | (lab == 2)))
                inst = leg_instances(*pr)
                k = pick_instance(inst)
                target_iou.append(_iou(inst == k, photo) if k else 0.0)
    model.train(was_training)
    return {"val_leg_iou": float(np.nanmean(leg_iou)), "val_target_iou": float(np.nanmean(target_iou)),
            "val_target_iou_median": float(np.nanmedian(target_iou)),
            "val_target_iou_ge_0.8": float(np.mean(np.asarray(target_iou) >= 0.8)), "n_val": len(scenes)}


def _fit_head(start: dict, fresh: dict) -> dict:
    """``start``'s weights for a network with more outputs: the head's missing channels from ``fresh``
    (bias -3: starting near "no"), so a two-output segmenter can be continued as a three-output one."""
    out = dict(start)
    for key in ("head.weight", "head.bias"):
        old, new = start[key], fresh[key].clone()
        if old.shape[0] < new.shape[0]:
            new[: old.shape[0]] = old
            if key == "head.bias":
                new[old.shape[0]:] = -3.0
            else:
                new[old.shape[0]:] *= 0.1
            out[key] = new
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else float("nan")


def _to_input(img: np.ndarray) -> np.ndarray:
    return img[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0


def learning_rate(c: TrainConfig, step_share: float, elapsed_s: float) -> float:
    """Linear warm-up over the first 5 %, then cosine to 2 % of ``c.lr``; progress is the larger of the
    share of steps done and, with a time budget, the share of the budget spent (so a budgeted run anneals)."""
    p = step_share
    if c.time_budget_s:
        p = max(p, elapsed_s / c.time_budget_s)
    p = min(1.0, p)
    if p < 0.05:
        return c.lr * (0.1 + 0.9 * p / 0.05)
    q = (p - 0.05) / 0.95
    return c.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * q)))


def train_segmenter(scenes_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig = TrainConfig(),
                    *, data_command: str | None = None, echo=print) -> dict:
    """Train the U-Net on rendered scenes; writes ``segmenter.pt``, ``log.csv``; returns the results."""
    import torch

    from smi_data.runs import atomic_write_text

    from .learned import save_segmenter
    from .nets import TinyUNet

    c = config
    if c.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"budget_clock must be 'wall' or 'cpu', got {c.budget_clock!r}")
    if c.shoe_target not in ("not_leg", "ignore"):
        raise ValueError(f"shoe_target must be 'not_leg' or 'ignore', got {c.shoe_target!r}")
    torch.manual_seed(c.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(c.threads)))
    try:
        pairs = find_scenes(scenes_dir)
        rng = np.random.default_rng(c.seed)
        order = rng.permutation(len(pairs))
        n_val = int(round(c.val_share * len(pairs))) if len(pairs) >= 10 else 0
        val_pairs = [pairs[i] for i in order[:n_val]]
        train_pairs = [pairs[i] for i in order[n_val:]]
        t0 = time.perf_counter()
        train = load_scenes(train_pairs, c.load_long_px)
        val = load_scenes(val_pairs, c.load_long_px)
        if not train:
            raise ValueError(f"{scenes_dir}: no scene with a photographed leg (label 1) to train on")
        longest = max(max(sc.image.shape[:2]) for sc in train)
        if longest < c.load_long_px:
            echo(f"warning: the scenes are at most {longest} px on the long side, less than the {c.load_long_px} px "
                 f"an input of {c.input_hw[0]} px is meant to be cut from: crops are enlarged to the input, not "
                 "shrunk as a photo is at inference; render larger scenes (legsmi phantom --size) or use a "
                 "smaller --input-px")
        echo(f"{len(train)} training and {len(val)} held-out scenes loaded in {time.perf_counter() - t0:.1f} s")
        model = TinyUNet(c.widths)
        if c.init_weights:
            from .learned import load_segmenter

            start, _ = load_segmenter(str(c.init_weights))
            if tuple(start.widths) != tuple(c.widths):
                raise ValueError(f"{c.init_weights}: widths {start.widths} differ from {c.widths}")
            model.load_state_dict(_fit_head(start.state_dict(), model.state_dict()))
        opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps_per_epoch = max(1, int(np.ceil(len(train) / c.batch_size)))
        total = steps_per_epoch * c.epochs
        aug = SceneAugmenter(c, c.seed + 1)
        negatives = negative_photos(long_px=c.load_long_px) if c.negative_p > 0 else None
        log = ["epoch,loss,val_leg_iou,val_target_iou,wall_s,cpu_s"]
        wall0, cpu0 = time.perf_counter(), time.process_time()

        def spent() -> float:  # seconds of the budget's clock since training began
            return time.process_time() - cpu0 if c.budget_clock == "cpu" else time.perf_counter() - wall0

        step = 0
        epochs_done = 0
        for epoch in range(c.epochs):
            perm = rng.permutation(len(train))
            losses = []
            model.train()
            for b in range(steps_per_epoch):
                idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
                if len(idx) < 2:
                    continue
                x, leg, split, behind, valid, behind_valid = batch(aug, train, idx, negatives)
                for group in opt.param_groups:
                    group["lr"] = learning_rate(c, step / total, spent())
                loss = loss_fn(model(x), leg, split, behind, valid, c.split_pos_weight, c.behind_weight,
                               behind_valid)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
            epochs_done = epoch + 1
            ev = evaluate(model, val, c, c.seed + 1000)
            secs = spent()
            log.append(f"{epoch + 1},{np.mean(losses):.4f},{ev['val_leg_iou']:.4f},{ev['val_target_iou']:.4f},"
                       f"{time.perf_counter() - wall0:.1f},{time.process_time() - cpu0:.1f}")
            echo(f"epoch {epoch + 1}/{c.epochs}: loss {np.mean(losses):.4f}, held-out IoU leg "
                 f"{ev['val_leg_iou']:.3f}, photographed leg {ev['val_target_iou']:.3f} ({secs:.0f} s)")
            if c.time_budget_s and secs >= c.time_budget_s and epoch + 1 < c.epochs:
                echo(f"time budget of {c.time_budget_s:.0f} s ({c.budget_clock}) spent: stopping after epoch "
                     f"{epoch + 1}")
                break
        model.eval()
        results = {"epochs_done": epochs_done, "train_s": round(spent(), 1), "clock": c.budget_clock,
                   "train_wall_s": round(time.perf_counter() - wall0, 1),
                   "train_cpu_s": round(time.process_time() - cpu0, 1),
                   "n_train": len(train), "n_val": len(val), **evaluate(model, val, c, c.seed + 1000),
                   "val_scenes": [p.stem for p, _ in val_pairs]}
        meta = {"config": c.to_dict(), "data": str(Path(scenes_dir).resolve()), "data_command": data_command,
                "results": {k: v for k, v in results.items() if k != "val_scenes"}, "input_long_px": c.input_hw[0],
                "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        out = Path(out_dir)
        save_segmenter(model, out / "segmenter.pt", meta)
        atomic_write_text(out / "log.csv", "\n".join(log) + "\n")
        atomic_write_text(out / "val_scenes.json", json.dumps(results["val_scenes"]))
        return results
    finally:
        torch.set_num_threads(old_threads)


#: Photo size of the rendered training scenes (width, height): enough for inputs up to 200 px on the long
#: side (:func:`input_size` loads scenes at twice the input).
TRAIN_SCENE_SIZE = (300, 400)


def render_wild_scenes(out_dir: str | os.PathLike, n_subjects: int, seed: int, *, echo=print) -> str:
    """Render ``n_subjects`` wild scenes (two views each) with the phantom; returns the equivalent command."""
    from smi_data.phantom.generate import generate_cohort

    size = f"{TRAIN_SCENE_SIZE[0]}x{TRAIN_SCENE_SIZE[1]}"
    command = f"legsmi phantom --scene wild --subjects {n_subjects} --seed {seed} --size {size} --out {out_dir}"
    if echo:
        echo(f"rendering: {command}")
    generate_cohort(out_dir, n_subjects=n_subjects, seed=seed, size=TRAIN_SCENE_SIZE, scene="wild",
                    command="phantom")
    return command
