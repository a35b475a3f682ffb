"""The learned segmenter: shipped weights, inference, the split into two legs, which leg.

Inference (:func:`leg_probabilities`): the photo is shrunk (area averaging) so that its
longest side is the network's ``input_long_px`` (recorded in the weights), padded by replicating its edge
to a multiple of the network's stride, and run through :class:`~smi_image.nets.TinyUNet`,
which gives per pixel the probability of *a leg* (either leg, knee down, foot included),
of *the line where the two legs meet* and (three-output weights) of *a leg seen behind the
other one* (the far leg of a side view).

Instances (:func:`leg_instances`): at the working resolution, leg pixels off the meeting
line and not behind the other leg fall into connected components; components of at least
:data:`MIN_INSTANCE_SHARE` of the largest are legs, and the line's pixels go to the
nearest of them. A component that is two legs touching (at the feet, the knees or the
thighs: :func:`separate_touching_legs`) is split along the valley of the leg probability
between them.

Which leg (:func:`pick_instance`): with ``view='posterior'`` and the manifest's ``side``,
the subject's left leg is the one on the image's left (the camera looks at the back);
otherwise the leg whose centroid is nearest the image's vertical centre line.

The weights file is read with ``torch.load(weights_only=True)`` and its metadata
checked (:func:`load_segmenter`); see docs/segmentation.md for the model card.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from .errors import SegmentationError

#: The weights shipped in the repository.
WEIGHTS = Path(__file__).resolve().parent / "weights" / "segmenter.pt"
FORMAT = "legsmi-segmenter"
FORMAT_VERSION = 1
#: A component of the leg probability is a leg if it has this share of the largest one's area.
MIN_INSTANCE_SHARE = 0.25
#: The photographed leg must cover this share of the photo, else "no leg found".
MIN_LEG_SHARE = 0.01
#: Below this mean certainty beside the outline, or inside the leg (mean ``2 p - 1``: a region the
#: network is only half sure of, such as a wall beside a person), the segmentation is "unsure".
MIN_CONFIDENCE = 0.5
#: A leg seen behind the photographed one counts as a second leg in the photo from this share of its area.
MIN_BEHIND_SHARE = 0.03
#: ... and at most this share: a leg behind is partly hidden, so less of it shows than of the near leg (the
#: behind map firing over most of a drawn leg is the network outside what it was trained on, not a second leg).
MAX_BEHIND_SHARE = 0.5


def weights_available(path: str | Path | None = None) -> bool:
    return Path(path or WEIGHTS).is_file()


def weights_digest(path: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the weights file, '' if there is none (part of cache keys)."""
    p = Path(path or WEIGHTS)
    if not p.is_file():
        return ""
    st = p.stat()
    return _digest(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class SegmenterFileError(ValueError):
    """A weights file that is not a legsmi segmenter (wrong format, version or contents)."""


def save_segmenter(model, path: str | Path, meta: dict) -> None:
    """Write ``model``'s weights (float16) and ``meta`` (JSON-able) to ``path`` through a temporary file."""
    import os
    import tempfile

    import torch

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "widths": list(model.widths),
            "input_long_px": int(meta.get("input_long_px", 128)), "meta": meta, "state_dict": state}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".seg.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    torch.save(blob, tmp)
    os.replace(tmp, p)


@functools.lru_cache(maxsize=4)
def load_segmenter(path: str | None = None):
    """The network (eval mode, float32) and its metadata from a weights file.

    Raises
    ------
    SegmenterFileError
        Not a legsmi segmenter file, another format version, or missing fields.
    """
    import torch

    from .nets import TinyUNet

    p = Path(path or WEIGHTS)
    if not p.is_file():
        raise SegmenterFileError(f"{p}: no segmenter weights; train them with `legsmi segmenter train`")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which
        raise SegmenterFileError(f"{p}: not a readable segmenter weights file ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise SegmenterFileError(f"{p}: not a legsmi segmenter file (format {found!r})")
    if blob.get("format_version") != FORMAT_VERSION:
        raise SegmenterFileError(f"{p}: segmenter format version {blob.get('format_version')}, this code reads "
                                 f"{FORMAT_VERSION}; retrain with `legsmi segmenter train`")
    for key in ("widths", "input_long_px", "state_dict", "meta"):
        if key not in blob:
            raise SegmenterFileError(f"{p}: segmenter file lacks {key!r}")
    head = blob["state_dict"].get("head.weight") if isinstance(blob["state_dict"], dict) else None
    n_out = int(head.shape[0]) if head is not None and head.ndim == 4 else 2
    if n_out not in (2, 3):
        raise SegmenterFileError(f"{p}: {n_out} outputs; this code reads segmenters with 2 or 3")
    model = TinyUNet(blob["widths"], out_channels=n_out)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except RuntimeError as exc:
        raise SegmenterFileError(f"{p}: weights do not fit the network ({exc})") from None
    model.eval()
    meta = dict(blob["meta"])
    meta["input_long_px"] = int(blob["input_long_px"])
    return model, meta


def network_input(img: np.ndarray, long_px: int, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB float32 ``(3, Hp, Wp)`` in [0, 1] of a BGR/grey uint8 photo, and the unpadded (h, w)."""
    import cv2

    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    f = long_px / max(h, w)
    hs, ws = max(stride, int(round(h * f))), max(stride, int(round(w * f)))
    small = cv2.resize(img, (ws, hs), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    hp, wp = -(-hs // stride) * stride, -(-ws // stride) * stride
    if (hp, wp) != (hs, ws):
        small = cv2.copyMakeBorder(small, 0, hp - hs, 0, wp - ws, cv2.BORDER_REPLICATE)
    x = small[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    return np.ascontiguousarray(x), (hs, ws)


def fuse_for_inference(model):
    """A copy of an eval-mode network for CPU inference: every convolution followed by a batch norm
    merged into one convolution, and the weights in the channels-last layout.

    Batch norm in eval mode is an affine map per channel, so ``conv`` then ``bn`` is one
    convolution with scaled weights and a shifted bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``);
    the results equal the unfused network's to float32 rounding (tested). Channels-last lets
    oneDNN's convolutions run without reordering. The module's own ``forward`` is kept: only
    the contents of its ``nn.Sequential`` blocks change, so this holds for any widths and input
    size.
    """
    import copy

    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model).eval()
    for seq in [m for m in fast.modules() if isinstance(m, nn.Sequential)]:
        items, merged, i = list(seq), [], 0
        while i < len(items):
            if (isinstance(items[i], nn.Conv2d) and i + 1 < len(items) and isinstance(items[i + 1], nn.BatchNorm2d)
                    and items[i + 1].track_running_stats):
                merged.append(fuse_conv_bn_eval(items[i], items[i + 1]))
                i += 2
            else:
                merged.append(items[i])
                i += 1
        seq._modules.clear()
        for k, m in enumerate(merged):
            seq.add_module(str(k), m)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=4)
def inference_network(path: str | None = None):
    """:func:`load_segmenter`'s network made ready for CPU inference (:func:`fuse_for_inference`), and its metadata."""
    model, meta = load_segmenter(path)
    return fuse_for_inference(model), meta


def leg_probabilities(img: np.ndarray, *, weights: str | None = None) -> np.ndarray:
    """Per-pixel probabilities ``(c, h, w)`` float32 (leg, meeting line[, behind]) at the network's resolution.

    ``h, w`` is the photo shrunk to ``input_long_px`` on its longest side (padding removed).
    The network runs fused and channels-last (:func:`inference_network`).
    """
    import torch

    model, meta = inference_network(weights)
    x, (hs, ws) = network_input(img, meta["input_long_px"], model.stride)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)[None].contiguous(memory_format=torch.channels_last))[0, :, :hs, :ws]
    return np.ascontiguousarray(torch.sigmoid(logits).numpy())


def network_input_source(img: np.ndarray, work_image: np.ndarray | None, weights: str | None = None) -> np.ndarray:
    """The image to shrink to the network's input: the working copy when it is at least twice that size.

    The trainer shrinks every scene to the working size first and the network's input from that
    (:func:`smi_image.train.load_scenes`), so this is the input the network learned from. Area
    averaging twice is area averaging once up to the rounding of the copy to whole grey levels
    (exactly so when the second factor is a whole number, as 256 px to 128 px is), and shrinking a
    256 px copy costs a fraction of shrinking a full photo (docs/scaling.md).
    """
    if work_image is None:
        return img
    _, meta = inference_network(weights)
    return work_image if max(work_image.shape[:2]) >= 2 * meta["input_long_px"] else img


#: Two legs touching: rows crossing the region as two runs (each at least TWO_RUN_MIN_PX wide,
#: with a gap) make up this share of its rows, and at least TWO_RUN_MIN_ROWS of them.
TWO_RUN_SHARE = 0.15
TWO_RUN_MIN_ROWS = 6
TWO_RUN_MIN_PX = 2
#: ... and the two legs' pieces of such rows overlap over this share of the region's rows.
TWO_LEG_OVERLAP = 0.25


def _two_run_seeds(region: np.ndarray) -> tuple[np.ndarray, int]:
    """The two widest runs (at least :data:`TWO_RUN_MIN_PX` wide; the leftmost first among equals) of every
    row that crosses ``region`` as two or more such runs, painted 1; and the number of those rows."""
    h, w = region.shape
    d = np.diff(np.pad(region.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    ys, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # row-major order: the i-th end closes the i-th start
    keep = ends - starts >= TWO_RUN_MIN_PX
    ys, starts, ends = ys[keep], starts[keep], ends[keep]
    counts = np.bincount(ys, minlength=h)
    two = counts[ys] >= 2
    ys, starts, ends = ys[two], starts[two], ends[two]
    order = np.lexsort((starts, starts - ends, ys))  # per row: widest first, then leftmost
    ys, starts, ends = ys[order], starts[order], ends[order]
    first = np.r_[True, ys[1:] != ys[:-1]]
    rank = np.arange(ys.size) - np.maximum.accumulate(np.where(first, np.arange(ys.size), 0))
    top = rank < 2
    ys, starts, ends = ys[top], starts[top], ends[top]
    paint = np.zeros((h, w + 1), np.int32)
    np.add.at(paint, (ys, starts), 1)
    np.add.at(paint, (ys, ends), -1)
    seeds = (np.cumsum(paint, axis=1)[:, :w] > 0).astype(np.uint8)
    return seeds, int((counts >= 2).sum())


def separate_touching_legs(region: np.ndarray, p_leg: np.ndarray) -> np.ndarray:
    """Split one region that is two legs touching into two; label image (0, 1[, 2]).

    Standing legs run top to bottom: where they do not touch, a row crosses them as two runs.
    When such rows make up :data:`TWO_RUN_SHARE` of the region's rows, the two runs of those
    rows, grouped into the two largest connected pieces (one per leg), seed a watershed on the
    leg probability (:func:`skimage.segmentation.watershed` of ``-p_leg``), so the rest of the
    region (where the legs touch: feet together, knees, thighs under a skirt) goes to one leg or
    the other along the valley of the probability between them. Otherwise the region is one leg.
    """
    import cv2

    rows = np.flatnonzero(region.any(axis=1))
    seeds, n_two = _two_run_seeds(region)
    out = region.astype(np.int32)
    if n_two < max(TWO_RUN_MIN_ROWS, TWO_RUN_SHARE * rows.size):
        return out
    n, lab, stats, _ = cv2.connectedComponentsWithStats(seeds, connectivity=4)
    if n < 3:
        return out
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[:2] + 1
    if stats[order[1], cv2.CC_STAT_AREA] < MIN_INSTANCE_SHARE * stats[order[0], cv2.CC_STAT_AREA]:
        return out
    # Two legs stand side by side over a good part of their height: both pieces, and the rows they
    # share, span TWO_LEG_OVERLAP of the region's rows (two runs only at the feet, a foot beside the
    # other's toes, are one leg).
    top = stats[order, cv2.CC_STAT_TOP]
    bottom = top + stats[order, cv2.CC_STAT_HEIGHT]
    if min(bottom) - max(top) < TWO_LEG_OVERLAP * rows.size:
        return out
    from skimage.segmentation import watershed

    markers = np.zeros(region.shape, np.int32)
    markers[lab == order[0]] = 1
    markers[lab == order[1]] = 2
    return watershed(-p_leg.astype(np.float64), markers, mask=region).astype(np.int32)


def leg_instances(p_leg: np.ndarray, p_split: np.ndarray, p_behind: np.ndarray | None = None) -> np.ndarray:
    """Label image (int32, 0 background, 1..n legs) from the probability maps at one resolution."""
    import cv2

    leg = p_leg >= 0.5
    if p_behind is not None:
        leg &= p_behind < 0.5
    core = (leg & (p_split < 0.5)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=4)
    if n <= 1:
        return np.zeros(p_leg.shape, np.int32)
    labels, n = _split_touching(labels, n, p_leg, stats)
    areas = np.bincount(labels.ravel(), minlength=n)[1:]
    keep = np.flatnonzero(areas >= MIN_INSTANCE_SHARE * areas.max()) + 1
    lut = np.zeros(n, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1)
    inst = lut[labels]
    # The rest of the leg (the meeting line, small bits) goes to the nearest instance.
    rest = leg & (inst == 0)
    if rest.any():
        _, nearest = cv2.distanceTransformWithLabels((inst == 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(inst)
        lab_of = np.zeros(nearest.max() + 1, np.int32)
        lab_of[nearest[ys, xs]] = inst[ys, xs]
        inst[rest] = lab_of[nearest[rest]]
    return inst


def _split_touching(labels: np.ndarray, n: int, p_leg: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, int]:
    """Each connected component that is two legs touching becomes two (:func:`separate_touching_legs`).

    Holes are not filled first: the gap between legs that touch at the knees and the feet is one.
    ``stats``: OpenCV's statistics of the components (``connectedComponentsWithStats``); each
    component is looked at inside its bounding box only, which holds all the split looks at.
    """
    import cv2

    out = labels.copy()
    nxt = n
    for k in range(1, n):
        if stats[k, cv2.CC_STAT_AREA] < 50:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        box = (slice(y, y + h), slice(x, x + w))
        region = labels[box] == k
        parts = separate_touching_legs(region, p_leg[box])
        if parts.max() >= 2:
            out[box][(parts == 2) & region] = nxt
            nxt += 1
    return out, nxt


def pick_instance(inst: np.ndarray, *, view: str | None = None, side: str | None = None) -> int:
    """Label of the photographed leg (see the module docstring); 0 if there is none."""
    labels = [k for k in range(1, int(inst.max()) + 1) if (inst == k).any()]
    if not labels:
        return 0
    xs = {k: float(np.nonzero(inst == k)[1].mean()) for k in labels}
    side = (side or "").upper()[:1]
    if view == "posterior" and side in ("L", "R") and len(labels) >= 2:
        two = sorted(labels, key=lambda k: -(inst == k).sum())[:2]
        left, right = sorted(two, key=lambda k: xs[k])
        return left if side == "L" else right
    centre = (inst.shape[1] - 1) / 2.0
    return min(labels, key=lambda k: abs(xs[k] - centre))


def outline_confidence(p_leg: np.ndarray, mask: np.ndarray) -> float:
    """Mean certainty ``|2 p - 1|`` of the leg probability on a ring 1-3 px either side of the outline.

    ``p_leg`` and ``mask`` at the network's resolution. The outline itself is where ``p``
    crosses 0.5, so it is left out; a sure network is near 0 or 1 a pixel or two away
    from it, an unsure one stays in between over a wide band.
    """
    import cv2

    m = mask.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    d1, d3 = cv2.dilate(m, k), cv2.dilate(m, k, iterations=3)
    e1, e3 = cv2.erode(m, k), cv2.erode(m, k, iterations=3)
    ring = ((d3 > 0) & (d1 == 0)) | ((e1 > 0) & (e3 == 0))
    if not ring.any():
        return float("nan")
    return float(np.abs(2.0 * p_leg[ring] - 1.0).mean())


def learned_leg_mask(img: np.ndarray, work_shape: tuple, *, exclude: np.ndarray | None = None,
                     view: str | None = None, side: str | None = None, weights: str | None = None,
                     work_image: np.ndarray | None = None):
    """:class:`~smi_image.segment.LegSegmentation` of the photographed leg by the learned segmenter.

    ``work_image``: the photo already shrunk to ``work_shape`` (:func:`smi_image.segment.working_image`);
    the network's input may be shrunk from it rather than from the photo (:func:`network_input_source`).

    Raises
    ------
    SegmentationError
        No leg (``no_leg``), the legs merged (``legs_merged``), low certainty on the
        outline (``unsure``).
    """
    import cv2

    from .segment import LegSegmentation

    probs = leg_probabilities(network_input_source(img, work_image, weights), weights=weights)
    hs, ws = work_shape
    p = np.stack([cv2.resize(c, (ws, hs), interpolation=cv2.INTER_LINEAR) for c in probs])
    if exclude is not None:
        p[0][exclude] = 0.0
    # The behind map cuts the far leg off a side view only: it was trained on side views, and a front or back
    # view (or one whose view is not known) has no leg behind the other to cut, only two legs side by side.
    inst = leg_instances(p[0], p[1], p[2] if len(p) > 2 and view == "lateral" else None)
    n_legs = int(inst.max())
    # A leg seen behind the photographed one (a side view's far leg) is a leg in the photo too.
    n_behind = int(((p[0] >= 0.5) & (p[2] >= 0.5)).sum()) if len(p) > 2 else 0
    if n_legs == 0 or (inst > 0).mean() < MIN_LEG_SHARE:
        raise SegmentationError("no leg found: the segmenter sees no lower leg in the photo; photograph the "
                                "lower leg from above the knee to the floor", code="no_leg")
    k = pick_instance(inst, view=view, side=side)
    leg = drop_horizontal_smears(_fill_holes(inst == k))
    hn, wn = probs.shape[1:]
    leg_net = cv2.resize(leg.astype(np.uint8), (wn, hn), interpolation=cv2.INTER_NEAREST)
    conf = outline_confidence(probs[0], leg_net)
    notes = []
    if n_legs == 1 and view == "posterior" and _looks_merged(p[1], leg):
        raise SegmentationError("the two legs merge in the photo and cannot be told apart; stand with the feet "
                                "apart (a hand's width)", code="legs_merged")
    if not np.isfinite(conf) or conf < MIN_CONFIDENCE:
        raise SegmentationError(f"segmentation unsure: certainty {conf:.2f} along the leg's outline (< "
                                f"{MIN_CONFIDENCE:g}); retake against a plainer background, in good light",
                                code="unsure")
    inside = float(2.0 * probs[0][leg_net > 0].mean() - 1.0) if leg_net.any() else float("nan")
    if not np.isfinite(inside) or inside < MIN_CONFIDENCE:
        raise SegmentationError(f"segmentation unsure: certainty {inside:.2f} inside the leg (< {MIN_CONFIDENCE:g}); "
                                "retake against a plainer background, in good light", code="unsure")
    coarse = max(img.shape[:2]) / max(probs.shape[1:])
    if n_legs == 1 and MIN_BEHIND_SHARE * leg.sum() <= n_behind <= MAX_BEHIND_SHARE * leg.sum():
        n_legs = 2
    return LegSegmentation(work=leg, photo_shape=img.shape[:2], method="learned", confidence=conf, n_legs=n_legs,
                           notes=notes, coarse_px=coarse)


#: Rows (working resolution) a part of the mask must span to stay: thinner horizontal bits are not leg.
SMEAR_ROWS = 5


def drop_horizontal_smears(leg: np.ndarray, rows: int = SMEAR_ROWS) -> np.ndarray:
    """The leg without thin horizontal bits (a skirting line, a floor edge, a shadow taken in beside it).

    A standing lower leg is tall everywhere; an opening with a vertical ``rows`` x 1 line
    keeps every column run at least ``rows`` tall and drops the thinner ones, then the largest
    connected piece is kept (what the opening cut off the leg).
    """
    import cv2

    if not leg.any():
        return leg
    opened = cv2.morphologyEx(leg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((rows, 1), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=4)
    if n <= 1:
        return leg
    return lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _looks_merged(p_split: np.ndarray, leg: np.ndarray) -> bool:
    """A meeting line was seen inside the one leg found, but it did not cut it in two."""
    inside = p_split[leg] >= 0.5
    return inside.sum() >= 0.02 * leg.sum()


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from .classical import fill_holes

    return fill_holes(mask.astype(np.uint8)) > 0
