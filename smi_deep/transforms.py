"""Training-time augmentation of a leg crop, each random transform with its own seeded generator.

Transforms act on the cached crop (BGR uint8) and its leg mask *before* the input
channels are made, so the Canny edges of an augmented photo are drawn fresh, one pixel
wide, instead of an edge map being rotated and blurred.

Each random transform owns a :class:`numpy.random.Generator`. :class:`Augment` spawns
them from one seed through :class:`numpy.random.SeedSequence`, so a seed replays the
exact sequence of transforms (``reset()`` starts it again), and turning one transform
off does not change the draws of the others.

Our reading of the study (which says only "data augmentation")
--------------------------------------------------------------
Small, label-preserving changes a phone photo of a lower leg plausibly shows (what they
gain on the studio cohort: docs/results.md, "Augmentation"):

- :class:`RandomAffine`: rotation ± 5° and translation ± 3 % of the side; **no zoom**
  by default (``scale=0``). The crop is normalised to the leg's length, so the calf's
  width in the crop is what carries SMI; a random zoom changes exactly that (on the
  toy cohort a small zoom stopped the network learning: docs/results.md). A zoom can be
  asked for.
- :class:`RandomHorizontalFlip` (p = 0.5): a mirrored lateral view of a left leg is a
  lateral view of a right leg; the study photographed the non-dominant leg, which is
  either side.
- :class:`RandomBrightnessContrast`: brightness ± 0.10 (fraction of full scale) and
  contrast × 0.85–1.15 about the mean: lighting and exposure, which also move the
  Canny thresholds' effect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


class RandomAffine:
    """Random rotation, isotropic scale and translation about the crop's centre.

    Parameters
    ----------
    degrees : float
        Rotation drawn uniformly from [-degrees, degrees].
    scale : (float, float)
        Scale factor drawn uniformly from this range.
    translate : float
        Shift in x and y drawn uniformly from [-translate, translate] × side, px.
    seed : int or SeedSequence
    """

    def __init__(self, degrees: float = 5.0, scale=(1.0, 1.0), translate: float = 0.03, seed=0):
        self.degrees, self.scale, self.translate = float(degrees), tuple(scale), float(translate)
        self.rng = np.random.default_rng(seed)

    def draw(self) -> dict:
        return {
            "angle": float(self.rng.uniform(-self.degrees, self.degrees)),
            "scale": float(self.rng.uniform(*self.scale)),
            "tx": float(self.rng.uniform(-self.translate, self.translate)),
            "ty": float(self.rng.uniform(-self.translate, self.translate)),
        }

    @staticmethod
    def apply(crop: np.ndarray, mask: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = crop.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), p["angle"], p["scale"])
        m[0, 2] += p["tx"] * w
        m[1, 2] += p["ty"] * h
        out = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mout = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        return out, mout

    def __call__(self, crop, mask):
        return self.apply(crop, mask, self.draw())


class RandomHorizontalFlip:
    """Mirror left–right with probability ``p``."""

    def __init__(self, p: float = 0.5, seed=0):
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    def draw(self) -> dict:
        return {"flip": bool(self.rng.random() < self.p)}

    @staticmethod
    def apply(crop, mask, p):
        if p["flip"]:
            return np.ascontiguousarray(crop[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
        return crop, mask

    def __call__(self, crop, mask):
        return self.apply(crop, mask, self.draw())


class RandomBrightnessContrast:
    """``out = (x - mean) · c + mean + b · 255``, clipped to uint8; the mask is unchanged.

    Parameters
    ----------
    brightness : float
        ``b`` drawn from [-brightness, brightness] (fraction of full scale).
    contrast : float
        ``c`` drawn from [1 - contrast, 1 + contrast].
    """

    def __init__(self, brightness: float = 0.10, contrast: float = 0.15, seed=0):
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.rng = np.random.default_rng(seed)

    def draw(self) -> dict:
        return {"b": float(self.rng.uniform(-self.brightness, self.brightness)),
                "c": float(self.rng.uniform(1 - self.contrast, 1 + self.contrast))}

    @staticmethod
    def apply(crop, mask, p):
        # the mean as float32 pixels give it; then the map of each of the 256 grey levels
        # through the same float32 arithmetic, applied as a look-up table (the same output
        # as computing it per pixel, several times faster)
        mean = float(crop.astype(np.float32).mean())
        return cv2_lut(crop, RandomBrightnessContrast.table(mean, p)), mask

    @staticmethod
    def table(mean: float, p: dict) -> np.ndarray:
        """``(256,)`` uint8: where each grey level goes for the image mean ``mean`` and draw ``p``."""
        x = np.arange(256, dtype=np.float32)
        x = (x - mean) * p["c"] + mean + p["b"] * 255.0
        return np.clip(np.round(x), 0, 255).astype(np.uint8)

    def __call__(self, crop, mask):
        return self.apply(crop, mask, self.draw())


def cv2_lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[image]`` for a uint8 image of any channel count (OpenCV's look-up table)."""
    import cv2

    return cv2.LUT(np.ascontiguousarray(image), table)


@dataclass(frozen=True)
class AugmentSettings:
    """Strength of each augmentation (0 switches a transform off)."""

    degrees: float = 5.0
    scale: float = 0.0  # scale factor drawn from [1 - scale, 1 + scale]; 0: no zoom (see module doc)
    translate: float = 0.03
    flip_p: float = 0.5
    brightness: float = 0.10
    contrast: float = 0.15

    def to_dict(self) -> dict:
        return asdict(self)


class Augment:
    """The training augmentation: affine → flip → brightness/contrast, one generator each.

    Parameters
    ----------
    settings : AugmentSettings
    seed : int
        Spawns one independent generator per transform.

    Examples
    --------
    >>> aug = Augment(seed=3)
    >>> a = [aug.draw() for _ in range(4)]
    >>> aug.reset()
    >>> a == [aug.draw() for _ in range(4)]
    True
    """

    def __init__(self, settings: AugmentSettings = AugmentSettings(), seed: int = 0):
        self.settings = settings
        self.seed = int(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Restart every transform's generator from ``seed`` (default: the constructor's)."""
        if seed is not None:
            self.seed = int(seed)
        s = self.settings
        affine_ss, flip_ss, bc_ss = np.random.SeedSequence(self.seed).spawn(3)
        self.transforms = [
            RandomAffine(s.degrees, (1 - s.scale, 1 + s.scale), s.translate, seed=affine_ss),
            RandomHorizontalFlip(s.flip_p, seed=flip_ss),
            RandomBrightnessContrast(s.brightness, s.contrast, seed=bc_ss),
        ]

    def draw(self) -> list[dict]:
        """Draw the parameters of every transform for one image."""
        return [t.draw() for t in self.transforms]

    def apply(self, crop: np.ndarray, mask: np.ndarray, params: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        for t, p in zip(self.transforms, params):
            crop, mask = t.apply(crop, mask, p)
        return crop, mask

    def __call__(self, crop: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.apply(crop, mask, self.draw())
