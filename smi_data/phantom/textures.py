"""Surface textures for the phantom's scenes: walls and floors, as grey modulation maps.

Each texture is a float32 array with mean 0 and roughly unit spread, sampled by metric
surface coordinates (metres) and used as ``albedo * (1 + contrast * t)``. Photographed
textures come from scikit-image's bundled images (``brick``, ``gravel``, ``grass``);
``brick`` is a photo taken in perspective, so it is rectified first (tiled as it is, it
makes chevrons). Wood and tiles are procedural. Results are cached per process.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Metres of surface that one texture pixel covers, per texture.
METRES_PER_PX = {"brick": 0.0045, "gravel": 0.0012, "grass": 0.0016, "plaster": 0.004}

WALL_KINDS = ("plain", "gradient", "plaster", "brick")
FLOOR_KINDS = ("plain", "wood", "tiles", "gravel", "grass", "speckle")


def _normalise(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.float32)
    a -= a.mean()
    return a / max(float(a.std()), 1e-6)


@lru_cache(maxsize=None)
def brick() -> np.ndarray:
    """``skimage.data.brick()`` rectified (its mortar columns converge: 30 px apart at the top, 41 px
    at the bottom, measured on the image) and turned so the bricks lie horizontally."""
    import cv2
    from skimage import data

    b = data.brick()
    # one mortar column stays vertical at x = 219; spacing 30.1 px at row 20, 41.3 px at row 490
    src = np.float32([[219 - 5 * 30.1, 20], [219 + 6 * 30.1, 20], [219 + 6 * 41.3, 490], [219 - 5 * 41.3, 490]])
    dst = np.float32([[219 - 5 * 36.0, 20], [219 + 6 * 36.0, 20], [219 + 6 * 36.0, 490], [219 - 5 * 36.0, 490]])
    M = cv2.getPerspectiveTransform(src, dst)
    r = cv2.warpPerspective(b, M, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    r = r[24:488, 44:430]
    return _normalise(np.ascontiguousarray(np.rot90(r)))


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    from skimage import data

    return _normalise(getattr(data, name)())


@lru_cache(maxsize=None)
def plaster() -> np.ndarray:
    """Smooth random relief: a plain wall that is not perfectly flat."""
    import cv2

    rng = np.random.default_rng(12345)
    n = rng.normal(size=(256, 256)).astype(np.float32)
    a = cv2.GaussianBlur(n, (0, 0), 6, borderType=cv2.BORDER_REFLECT_101) + 0.25 * cv2.GaussianBlur(n, (0, 0), 1.2)
    return _normalise(a)


def sample(tex: np.ndarray, u_m: np.ndarray, v_m: np.ndarray, metres_per_px: float,
           offset=(0.0, 0.0)) -> np.ndarray:
    """Texture values at surface coordinates ``(u_m, v_m)`` (metres), mirrored beyond its edges."""
    import cv2

    mx = (u_m / metres_per_px + offset[0]).astype(np.float32)
    my = (v_m / metres_per_px + offset[1]).astype(np.float32)
    return cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def wood(u_m: np.ndarray, v_m: np.ndarray, rng_values: np.ndarray) -> np.ndarray:
    """Planks along ``u``: a tone per plank (from ``rng_values``), grain, and dark joints."""
    width = float(rng_values[0])
    plank = np.floor(v_m / width).astype(np.int64)
    tones = rng_values[1:]
    tone = tones[plank % len(tones)]
    frac = v_m / width - plank
    grain = np.sin(2 * np.pi * (v_m * 55.0 + 0.6 * np.sin(u_m * 3.1 + plank)))
    joint = np.where((frac < 0.03) | (frac > 0.97), -2.5, 0.0)
    # plank ends, staggered
    end = (u_m + 0.37 * plank) % 1.2
    joint = np.where(end < 0.006, -2.5, joint)
    return (tone + 0.35 * grain + joint).astype(np.float32)


def tiles(u_m: np.ndarray, v_m: np.ndarray, size_m: float) -> np.ndarray:
    fu, fv = (u_m / size_m) % 1.0, (v_m / size_m) % 1.0
    grout = (fu < 0.02) | (fu > 0.98) | (fv < 0.02) | (fv > 0.98)
    return np.where(grout, -2.5, 0.0).astype(np.float32)
