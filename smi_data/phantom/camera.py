"""Camera nuisances of the phantom's photos, drawn per image from its own generator.

Ranges are modelling choices meant to look like phone photos taken in a clinic by hand
(docs/phantom.md lists them).
"""

from __future__ import annotations

import colorsys

import numpy as np

#: Focal length in pixels per pixel of image size: a 70 cm wide view at 1 m (a phone's main camera).
NOMINAL_DISTANCE_M = 1.0
NOMINAL_FIELD_CM = 70.0
#: The photographer stands where the floor-to-knee span plus FRAME_MARGIN_M fills FRAME_FILL of the
#: image height, then the distance varies by DISTANCE_RANGE: px_per_cm varies about +-10 % around that.
FRAME_MARGIN_M = 0.10
FRAME_FILL = 0.82
DISTANCE_RANGE = (0.9, 1.1)
CAMERA_HEIGHT_OFFSET_M = (-0.12, 0.12)  # relative to the aim point, half-way up the shank
ROLL_DEG = (-3.0, 3.0)
YAW_DEG = (-5.0, 5.0)
LIGHT_AZIMUTH_DEG = (-60.0, 60.0)
LIGHT_ELEVATION_DEG = (15.0, 60.0)
LIGHT_INTENSITY = (0.8, 1.15)
AMBIENT = (0.25, 0.45)
WALL_DISTANCE_M = (0.4, 1.2)
NOISE_SIGMA = (1.0, 5.0)  # 8-bit units
JPEG_QUALITY = (75, 95)
#: Skin colours (sRGB) from very light to very dark; a tone t in [0, 1] interpolates between them.
SKIN_ANCHORS = ((0.96, 0.84, 0.74), (0.91, 0.74, 0.62), (0.78, 0.56, 0.42), (0.58, 0.38, 0.26), (0.36, 0.23, 0.16))


def skin_rgb(tone: float) -> tuple:
    x = np.linspace(0, 1, len(SKIN_ANCHORS))
    return tuple(float(np.interp(tone, x, [c[k] for c in SKIN_ANCHORS])) for k in range(3))


def draw_nuisances(rng: np.random.Generator) -> dict:
    """One image's camera, light, colours, noise and JPEG quality."""
    n = {}
    n["distance_factor"] = float(rng.uniform(*DISTANCE_RANGE))
    n["camera_height_offset_m"] = float(rng.uniform(*CAMERA_HEIGHT_OFFSET_M))
    n["roll_deg"] = float(rng.uniform(*ROLL_DEG))
    n["yaw_deg"] = float(rng.uniform(*YAW_DEG))
    n["light_azimuth_deg"] = float(rng.uniform(*LIGHT_AZIMUTH_DEG))
    n["light_elevation_deg"] = float(rng.uniform(*LIGHT_ELEVATION_DEG))
    n["light_intensity"] = float(rng.uniform(*LIGHT_INTENSITY))
    n["ambient_light"] = float(rng.uniform(*AMBIENT))
    n["skin_tone"] = float(rng.uniform(0.0, 1.0))
    n["wall_distance_m"] = float(rng.uniform(*WALL_DISTANCE_M))
    h = rng.uniform()
    wall = colorsys.hsv_to_rgb(h, rng.uniform(0.0, 0.35), rng.uniform(0.45, 0.95))
    floor = colorsys.hsv_to_rgb((h + rng.uniform(0.2, 0.8)) % 1.0, rng.uniform(0.0, 0.4), rng.uniform(0.2, 0.7))
    n["background_rgb"] = tuple(float(c) for c in wall)
    n["floor_rgb"] = tuple(float(c) for c in floor)
    n["noise_sigma"] = float(rng.uniform(*NOISE_SIGMA))
    n["jpeg_quality"] = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    n["marker_side"] = "left" if rng.uniform() < 0.5 else "right"
    n["marker_height_frac"] = float(rng.uniform(0.3, 0.6))
    n["marker_gap_cm"] = float(rng.uniform(2.0, 6.0))
    return n


def hex_rgb(rgb) -> str:
    return "#" + "".join(f"{int(round(255 * min(max(c, 0.0), 1.0))):02x}" for c in rgb)
