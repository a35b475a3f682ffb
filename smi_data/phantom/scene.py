"""Whole-scene photos for the phantom: both legs, shorts, wall and floor, clutter, and a label map.

The ``studio`` look (one isolated lower leg on a plain wall, :mod:`.render`) stays as it was;
this module draws the ``clinic`` and ``wild`` scenes (docs/phantom.md):

- the subject's lower body from the waist down (arms removed), one round of Loop
  subdivision, posed by a *stance shear*: a horizontal shift that grows from 0 just below
  the crotch to its full value at the ankle joint (the feet move rigidly). It only
  translates horizontal slices, so widths, circumferences and volumes stay those of the
  rest pose, where the truth is computed;
- shorts: an inflated copy of the body surface above a hem plane, clipped exactly at the hem,
  with cloth colour, weave, folds and a stitch line;
- a wall (plain, gradient, plaster or rectified brick), a skirting board, a textured floor in
  perspective, a contact shadow under the feet, a faint cast shadow on the wall, distractors;
- a camera with a portrait frame, focal length, distance, height (and so pitch), roll and yaw;
- the ArUco card at the calf's depth, noise, blur, low resolution and JPEG quality;
- a label map: :data:`LABELS`.

Randomness: a subject's body comes from ``(seed, index, 0)`` as in the studio; its skin from
``(seed, index, SKIN_STREAM)``; each photo session (take) from ``(seed, index, 1000 + 10 take)``
and each photo of it from ``(seed, index, 1000 + 10 take + 1 + view index)``.
"""

from __future__ import annotations

import colorsys

import numpy as np

from . import textures
from .geometry import clip_triangles, slice_points, vertex_normals
from .render import Camera, aimed_camera, triangle_fragments

#: Label map values (uint8 PNG beside each photo).
LABELS = {"background": 0, "leg": 1, "other_leg": 2, "clothing": 3, "marker": 4, "distractor": 5,
          "thigh": 6}
#: 1: the photographed leg below the plane through the knee joint square to the knee-ankle axis,
#: foot included; 6: the same leg's skin above that plane (below the hem).
CONDITIONS = ("clinic", "wild")
SKIN_STREAM = 999
ARM_BONES = ("upperarm", "lowerarm", "wrist", "finger", "metacarpal", "clavicle", "shoulder")

# parts of the assembled mesh
_SKIN_PHOTO, _SKIN_OTHER, _CLOTH, _DISTRACTOR, _SHOE = 0, 1, 2, 3, 4


def session_stream(take: int) -> int:
    return 1000 + 10 * int(take)


def photo_stream(take: int, view_index: int) -> int:
    return session_stream(take) + 1 + int(view_index)


# ============================================================================ draws
def _muted_rgb(rng, sat=(0.0, 0.5), val=(0.15, 0.85)):
    return tuple(float(c) for c in colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*sat), rng.uniform(*val)))


def draw_skin(rng: np.random.Generator) -> dict:
    """The subject's skin: tone in [0, 1] (very light to very dark) and texture strength."""
    return {"skin_tone": float(rng.uniform(0.0, 1.0)), "skin_texture": float(rng.uniform(0.02, 0.06))}


def draw_session(rng: np.random.Generator, condition: str) -> dict:
    """What one photo session fixes for both views: stance, shorts, the room."""
    wild = condition == "wild"
    s = {}
    s["stance_gap_cm"] = float(rng.uniform(3.0, 32.0) if wild else rng.uniform(8.0, 25.0))
    s["stagger_cm"] = float(rng.uniform(-14.0, 14.0) if wild else rng.uniform(-6.0, 6.0))
    s["hem_above_knee_cm"] = float(rng.uniform(3.0, 15.0))
    s["cloth_rgb"] = _muted_rgb(rng, (0.0, 0.7 if wild else 0.45), (0.08, 0.9))
    s["cloth_ease_cm"] = float(rng.uniform(0.6, 2.5))
    s["cloth_flare_cm"] = float(rng.uniform(0.0, 2.5 if wild else 1.5))
    s["cloth_weave_mm"] = float(rng.uniform(2.5, 8.0))
    s["cloth_weave_amp"] = float(rng.uniform(0.02, 0.10))
    s["cloth_fold_amp"] = float(rng.uniform(0.0, 0.12))
    if wild:
        s["wall_kind"] = str(rng.choice(textures.WALL_KINDS))
        s["floor_kind"] = str(rng.choice(textures.FLOOR_KINDS))
    else:
        s["wall_kind"] = str(rng.choice(["plain", "gradient", "plaster"], p=[0.45, 0.3, 0.25]))
        s["floor_kind"] = str(rng.choice(["plain", "wood", "tiles", "speckle"], p=[0.3, 0.35, 0.2, 0.15]))
    if wild:
        s["wall_rgb"] = _muted_rgb(rng, (0.0, 0.6), (0.2, 0.97))
    else:
        s["wall_rgb"] = _muted_rgb(rng, (0.0, 0.25), (0.6, 0.95))
    s["wall_rgb2"] = tuple(float(np.clip(c * rng.uniform(0.75, 1.1), 0, 1)) for c in s["wall_rgb"])
    s["wall_contrast"] = float(rng.uniform(0.15, 0.4) if s["wall_kind"] == "brick" else rng.uniform(0.03, 0.09))
    s["floor_rgb"] = _muted_rgb(rng, (0.0, 0.6 if wild else 0.4), (0.15, 0.8))
    if s["floor_kind"] == "grass":
        s["floor_rgb"] = tuple(float(c) for c in colorsys.hsv_to_rgb(rng.uniform(0.2, 0.33), rng.uniform(0.35, 0.7),
                                                                      rng.uniform(0.25, 0.6)))
    s["floor_contrast"] = float(rng.uniform(0.12, 0.45))
    s["floor_scale"] = float(rng.uniform(0.7, 1.4))
    s["wood"] = [float(rng.uniform(0.08, 0.22))] + [float(x) for x in rng.normal(0, 0.6, 7)]
    s["tile_m"] = float(rng.uniform(0.2, 0.6))
    s["skirting"] = bool(rng.uniform() < (0.6 if wild else 0.8))
    s["skirting_cm"] = float(rng.uniform(4.0, 14.0))
    s["skirting_rgb"] = _muted_rgb(rng, (0.0, 0.3), (0.2, 0.98))
    s["tex_offset"] = [float(x) for x in rng.uniform(0, 400, 4)]
    # wild only (drawn last, so the clinic's draws stay as they were): a skirt instead of shorts, shoes
    s["skirt"] = bool(wild and rng.uniform() < 0.3)
    s["shoes"] = bool(wild and rng.uniform() < 0.5)
    s["shoe_height_cm"] = float(rng.uniform(3.0, 14.0)) if wild else 0.0
    s["shoe_rgb"] = _muted_rgb(rng, (0.0, 0.8), (0.05, 0.95)) if wild else (0.0, 0.0, 0.0)
    return s


def draw_photo(rng: np.random.Generator, condition: str) -> dict:
    """What changes from one photo to the next: camera, light, marker, clutter, sensor."""
    wild = condition == "wild"
    p = {}
    if wild:
        p["f_factor"] = float(rng.uniform(0.6, 1.6))       # focal length / image height
        p["fill"] = float(rng.uniform(0.35, 1.35))          # knee-to-sole span / image height
        p["pp_dx"], p["pp_dy"] = (float(x) for x in rng.uniform(-0.22, 0.22, 2))
        p["camera_height_m"] = float(rng.uniform(0.1, 1.3))
        p["yaw_deg"] = float(rng.uniform(-20.0, 20.0))
        p["roll_deg"] = float(rng.uniform(-12.0, 12.0))
        p["aim_shift"] = float(rng.uniform(-0.2, 0.8))
        p["light_azimuth_deg"] = float(rng.uniform(-160.0, 160.0))
        p["light_elevation_deg"] = float(rng.uniform(5.0, 80.0))
        p["light_intensity"] = float(rng.uniform(0.55, 1.45))
        p["ambient_light"] = float(rng.uniform(0.08, 0.5))
        p["light_tint"] = [float(x) for x in rng.uniform(0.85, 1.15, 3)]
        p["wall_distance_m"] = float(rng.uniform(0.25, 2.5))
        p["noise_sigma"] = float(rng.uniform(0.5, 10.0))
        p["blur_sigma"] = float(rng.choice([0.0, rng.uniform(0.3, 2.5)]))
        p["lowres"] = float(rng.uniform(0.3, 0.75) if rng.uniform() < 0.3 else 1.0)
        p["jpeg_quality"] = int(rng.integers(40, 96))
        p["marker"] = bool(rng.uniform() < 0.6)
        p["n_distractors"] = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))
        p["wall_shadow"] = float(rng.uniform(0.0, 0.35))
        p["exposure"] = float(rng.uniform(0.7, 1.35))
        # front and oblique views too (the real photos are mostly frontal): turn the camera around the subject
        u = rng.uniform()
        p["turn_deg"] = float(180.0 + rng.uniform(-30, 30) if u < 0.35 else
                              (rng.choice([-1, 1]) * rng.uniform(25, 65) if u < 0.55 else 0.0))
    else:
        p["f_factor"] = float(rng.uniform(0.8, 1.15))
        p["fill"] = float(rng.uniform(0.76, 0.88))
        p["pp_dx"], p["pp_dy"] = (float(x) for x in rng.uniform(-0.03, 0.03, 2))
        p["camera_height_m"] = float(rng.uniform(0.2, 0.6))
        p["yaw_deg"] = float(rng.uniform(-5.0, 5.0))
        p["roll_deg"] = float(rng.uniform(-3.0, 3.0))
        p["aim_shift"] = float(rng.uniform(0.0, 0.25))
        p["light_azimuth_deg"] = float(rng.uniform(-60.0, 60.0))
        p["light_elevation_deg"] = float(rng.uniform(20.0, 65.0))
        p["light_intensity"] = float(rng.uniform(0.85, 1.12))
        p["ambient_light"] = float(rng.uniform(0.3, 0.5))
        p["light_tint"] = [float(x) for x in rng.uniform(0.96, 1.04, 3)]
        p["wall_distance_m"] = float(rng.uniform(0.3, 1.2))
        p["noise_sigma"] = float(rng.uniform(0.8, 3.0))
        p["blur_sigma"] = float(rng.uniform(0.0, 0.7))
        p["lowres"] = 1.0
        p["jpeg_quality"] = int(rng.integers(72, 89))
        p["marker"] = bool(rng.uniform() < 0.92)
        p["n_distractors"] = int(rng.uniform() < 0.15)
        p["wall_shadow"] = float(rng.uniform(0.0, 0.15))
        p["exposure"] = 1.0
    # frame from a little below the sole to a little above the knee (clinic: tight, so the card is >= ~50 px)
    p["margin_above_cm"] = float(rng.uniform(4.0, 12.0) if wild else rng.uniform(3.0, 8.0))
    p["margin_below_cm"] = float(rng.uniform(2.0, 6.0) if wild else rng.uniform(1.5, 4.0))
    p["marker_side"] = "left" if rng.uniform() < 0.5 else "right"
    p["marker_height_frac"] = float(rng.uniform(0.3, 0.6))
    p["marker_gap_cm"] = float(rng.uniform(2.0, 6.0))
    p["distractors"] = [_draw_distractor(rng, wild) for _ in range(p["n_distractors"])]
    p["texture_seed"] = int(rng.integers(0, 2**31 - 1))
    return p


def _draw_distractor(rng, wild: bool) -> dict:
    kind = str(rng.choice(["box", "cylinder", "post"]))
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    return {"kind": kind, "side": side,
            "offset_m": float(rng.uniform(0.22, 0.6) if wild else rng.uniform(0.4, 0.7)),
            "depth_m": float(rng.uniform(-0.4, 0.5)),
            "size_m": [float(x) for x in rng.uniform([0.1, 0.1, 0.15],
                                                     [0.45, 0.45, 1.2] if wild else [0.35, 0.3, 0.7])],
            "rgb": _muted_rgb(rng, (0.0, 0.8), (0.1, 0.95)), "turn_deg": float(rng.uniform(0, 90))}


# ============================================================================ the body in the scene
def scene_body(model, body, *, top_above_hip_m: float = 0.06) -> dict:
    """The rest-pose lower body (waist down, no arms), subdivided once, with each face's side."""
    import trimesh.remesh

    v, f = body.vertices, model.faces
    arm = np.array([lb.startswith(ARM_BONES) for lb in model.dominant_bone])
    top = max(body.joints["upperleg01.L"][2], body.joints["upperleg01.R"][2]) + top_above_hip_m
    keep = ~arm[f].any(1) & (v[f][:, :, 2].max(1) < top)
    used, inv = np.unique(f[keep], return_inverse=True)
    vv, ff = trimesh.remesh.subdivide_loop(v[used], inv.reshape(-1, 3), iterations=1)
    vv, ff = np.asarray(vv, float), np.asarray(ff, np.int64)
    left = vv[ff].mean(1)[:, 0] > 0  # Anny: +x is the subject's left
    j = body.joints
    ankle_z = 0.5 * (j["foot.L"][2] + j["foot.R"][2])
    near = np.abs(vv[:, 2] - ankle_z) < 0.01
    gap0 = vv[near & (vv[:, 0] > 0), 0].min() - vv[near & (vv[:, 0] < 0), 0].max()
    crotch_z = 0.5 * (j["upperleg01.L"][2] + j["upperleg01.R"][2]) - 0.08
    return {"vertices": vv, "faces": ff, "face_left": left, "gap0_m": float(gap0), "crotch_z": float(crotch_z),
            "ankle_z": float(ankle_z)}


def stance_offsets(sb: dict, session: dict, side: str) -> dict:
    """Full shifts (m) at the ankle per leg: both legs move to the drawn gap, the other one staggers."""
    d = 0.5 * (sb["gap0_m"] - session["stance_gap_cm"] / 100.0)
    other = "R" if side == "L" else "L"
    return {"L": np.array([-d, 0.0]), "R": np.array([d, 0.0]), "stagger": (other, session["stagger_cm"] / 100.0)}


def shear(points: np.ndarray, is_left, sb: dict, offsets: dict) -> np.ndarray:
    """Apply the stance shear to world points; ``is_left`` says which leg each point belongs to."""
    p = np.array(points, dtype=float, copy=True)
    s = np.clip((sb["crotch_z"] - p[:, 2]) / (sb["crotch_z"] - sb["ankle_z"]), 0.0, 1.0)
    is_left = np.broadcast_to(np.asarray(is_left, bool), s.shape)
    dx = np.where(is_left, offsets["L"][0], offsets["R"][0])
    other, stag = offsets["stagger"]
    dy = np.where(is_left == (other == "L"), stag, 0.0)
    p[:, 0] += dx * s
    p[:, 1] += dy * s
    return p


def pose_body(sb: dict, session: dict, side: str) -> dict:
    off = stance_offsets(sb, session, side)
    v = sb["vertices"]
    return {"vertices": shear(v, v[:, 0] > 0, sb, off), "offsets": off}


def shorts_mesh(vertices, faces, normals, hem_z: float, session: dict):
    """Cloth: the body surface above ``hem_z`` pushed out along its normals, cut exactly at the hem.

    Returns a triangle soup ``(vertices (3T, 3), faces (T, 3), normals (3T, 3))``.
    """
    ease = session["cloth_ease_cm"] / 100.0
    flare = session["cloth_flare_cm"] / 100.0
    z = vertices[:, 2]
    push = ease + flare * np.clip((hem_z + 0.12 - z) / 0.12, 0.0, 1.0)
    cv = vertices + normals * push[:, None]
    keep = cv[faces][:, :, 2].max(1) > hem_z
    tri = np.concatenate([cv[faces[keep]], normals[faces[keep]]], axis=2)  # (T, 3, 6)
    tri = clip_triangles(tri, np.array([0, 0, hem_z, 0, 0, 0.0]), np.array([0, 0, -1.0, 0, 0, 0]))
    n = len(tri)
    return tri[:, :, :3].reshape(-1, 3), np.arange(3 * n).reshape(n, 3), tri[:, :, 3:].reshape(-1, 3)


def skirt_mesh(vertices, hem_z: float, top_z: float, session: dict, *, segments: int = 64, rings: int = 10):
    """A skirt: an elliptic cone around both legs from ``top_z`` down to the hem (double-sided soup)."""
    band = vertices[np.abs(vertices[:, 2] - top_z) < 0.02]
    cx, cy = band[:, 0].mean(), band[:, 1].mean()
    rx0 = np.abs(band[:, 0] - cx).max() + session["cloth_ease_cm"] / 100.0
    ry0 = np.abs(band[:, 1] - cy).max() + session["cloth_ease_cm"] / 100.0
    flare = 0.02 + 3 * session["cloth_flare_cm"] / 100.0
    zs = np.linspace(top_z, hem_z, rings)
    a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    grow = (top_z - zs) / max(top_z - hem_z, 1e-6)
    rx, ry = rx0 + flare * grow, ry0 + flare * grow
    pts = np.stack([cx + rx[:, None] * np.cos(a)[None], cy + ry[:, None] * np.sin(a)[None],
                    np.repeat(zs[:, None], segments, 1)], axis=-1)
    nrm = np.stack([np.cos(a)[None] / rx[:, None], np.sin(a)[None] / ry[:, None], np.zeros((rings, segments))], -1)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    idx = np.arange(rings * segments).reshape(rings, segments)
    i0, i1 = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    j0, j1 = idx[1:], np.roll(idx[1:], -1, axis=1)
    faces = np.concatenate([np.stack([i0, j0, i1], -1).reshape(-1, 3), np.stack([i1, j0, j1], -1).reshape(-1, 3)])
    return pts.reshape(-1, 3), faces, nrm.reshape(-1, 3)


def shoe_mesh(vertices, faces, normals, top_z: float):
    """Shoes: the feet's surface below ``top_z`` pushed out (more at the sole), flat on the floor, cut at the top."""
    z = vertices[:, 2]
    push = 0.004 + 0.008 * np.clip((0.02 - z) / 0.02, 0, 1)
    v = vertices + normals * push[:, None]
    v[:, 2] = np.maximum(v[:, 2], 0.0)
    keep = v[faces][:, :, 2].min(1) < top_z
    tri = np.concatenate([v[faces[keep]], normals[faces[keep]]], axis=2)
    tri = clip_triangles(tri, np.array([0, 0, top_z, 0, 0, 0.0]), np.array([0, 0, 1.0, 0, 0, 0]))
    n = len(tri)
    return tri[:, :, :3].reshape(-1, 3), np.arange(3 * n).reshape(n, 3), tri[:, :, 3:].reshape(-1, 3)


def distractor_mesh(d: dict, anchor: np.ndarray, right: np.ndarray, back: np.ndarray):
    """A box, cylinder or post standing on the floor beside the subject (soup with face normals)."""
    import trimesh

    w, dd, h = d["size_m"]
    if d["kind"] == "box":
        m = trimesh.creation.box(extents=(w, dd, h))
    elif d["kind"] == "cylinder":
        m = trimesh.creation.cylinder(radius=w / 2, height=h, sections=24)
    else:
        m = trimesh.creation.box(extents=(0.05, 0.05, 1.4 + h))
    v = np.asarray(m.vertices, float)
    v[:, 2] -= v[:, 2].min()
    a = np.deg2rad(d["turn_deg"])
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    v = v @ rot.T
    centre = anchor + d["side"] * d["offset_m"] * right + d["depth_m"] * back
    v[:, :2] += centre[:2]
    f = np.asarray(m.faces, np.int64)
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    n = len(f)
    return tri.reshape(-1, 3), np.arange(3 * n).reshape(n, 3), np.repeat(fn, 3, axis=0)


# ============================================================================ camera
def frame_camera(ph: dict, condition: str, leg_points: np.ndarray, knee, ankle, other_ankle, vdir,
                 width: int, height: int, top_z: float = np.inf) -> Camera:
    """Place the camera so the knee-to-sole span fills ``fill`` of the frame's height.

    ``clinic``: the photographed leg from ``margin_above_cm`` above the knee to below the sole must be
    in frame (the camera steps back until it is). ``wild``: the leg may be cut by the frame, but the
    calf stays inside it and ``top_z`` (a little below the body mesh's open top) above it.
    """
    yaw = np.deg2rad(ph["yaw_deg"] + ph.get("turn_deg", 0.0))
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.array([c * vdir[0] - s * vdir[1], s * vdir[0] + c * vdir[1], 0.0])
    d /= np.linalg.norm(d)
    f_px = ph["f_factor"] * height
    z_lo, z_hi = -ph["margin_below_cm"] / 100.0, knee[2] + ph["margin_above_cm"] / 100.0
    mid = 0.5 * (knee + ankle)
    aim_xy = mid[:2] + ph["aim_shift"] * 0.5 * (other_ankle[:2] - ankle[:2]) * (abs(vdir[1]) > 0.5)
    target = np.array([aim_xy[0], aim_xy[1], 0.5 * (z_lo + z_hi)])
    dist = f_px * (z_hi - z_lo) / (ph["fill"] * height)
    cx = width / 2 + ph["pp_dx"] * width
    cy = height / 2 + ph["pp_dy"] * height
    top = np.array([knee[0], knee[1], z_hi])
    check = np.vstack([leg_points, top[None]])
    for _ in range(40):
        pos = np.array([target[0] + dist * d[0], target[1] + dist * d[1], ph["camera_height_m"]])
        cam = aimed_camera(pos, target, ph["roll_deg"], f_px, width, height, cx, cy)
        uv = cam.project(check)
        if condition == "wild":
            calf = cam.project(mid[None])[0]
            waist = cam.project(np.array([[knee[0], knee[1], top_z]]))[0]
            if waist[1] > -2:  # the open top of the body mesh would show: move the frame down
                cy -= waist[1] + 2
                continue
            if 0.05 * width < calf[0] < 0.95 * width and 0.05 * height < calf[1] < 0.95 * height:
                return cam
            cx, cy = 0.5 * (cx + width / 2), 0.5 * (cy + height / 2)
            continue
        inside = ((uv[:, 0] > 0.02 * width) & (uv[:, 0] < 0.98 * width) & (uv[:, 1] > 0.01 * height)
                  & (uv[:, 1] < 0.99 * height))
        if inside.all():
            return cam
        dist *= 1.04
    return cam


# ============================================================================ rasterising
def rasterize(cam: Camera, vertices: np.ndarray, faces: np.ndarray):
    """Depth-buffer rasterisation (as :func:`.render.rasterize`, with an O(n) depth test).

    Faces with a corner closer than 5 cm to the camera plane are dropped. Returns ``face_id (H, W)``
    (-1 empty; indexes the kept faces), ``bary (H, W, 3)`` perspective-correct weights, and ``keep``
    (indices of the kept faces in ``faces``).
    """
    H, W = cam.height, cam.width
    pc = cam.to_camera(vertices)
    z = pc[:, 2]
    ok_v = z > 0.05
    uv = np.stack([cam.f_px * pc[:, 0] / np.where(ok_v, z, 1) + cam.cx,
                   cam.f_px * pc[:, 1] / np.where(ok_v, z, 1) + cam.cy], axis=1)
    keep = np.nonzero(ok_v[faces].all(1))[0]
    faces = faces[keep]
    face_id = np.full(H * W, -1, dtype=np.int64)
    bary = np.zeros((H * W, 3))
    t, px, py, w = triangle_fragments(uv, faces, W, H)
    inv = w / z[faces[t]]
    depth = 1.0 / inv.sum(1)
    pix = py * W + px
    dbuf = np.full(H * W, np.inf)
    np.minimum.at(dbuf, pix, depth)
    win = depth <= dbuf[pix]
    face_id[pix[win]] = t[win]
    bary[pix[win]] = inv[win] * depth[win, None]
    return face_id.reshape(H, W), bary.reshape(H, W, 3), keep


# ============================================================================ the scene
def _smooth_noise(rng, shape, cell: int) -> np.ndarray:
    import cv2

    h, w = shape
    small = rng.normal(size=(max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _light(ph: dict, vdir: np.ndarray) -> np.ndarray:
    az = np.deg2rad(ph["light_azimuth_deg"] + ph["yaw_deg"] + ph.get("turn_deg", 0.0))
    el = np.deg2rad(ph["light_elevation_deg"])
    h = np.array([np.cos(az) * vdir[0] - np.sin(az) * vdir[1], np.sin(az) * vdir[0] + np.cos(az) * vdir[1], 0.0])
    v = np.cos(el) * h + np.array([0.0, 0.0, np.sin(el)])
    return v / np.linalg.norm(v)


def _background(cam: Camera, sess: dict, ph: dict, anchor, vdir, feet):
    """Wall and floor albedo x light for every pixel; returns ``(rgb, is_wall)``."""
    H, W = cam.height, cam.width
    u = (np.arange(W) + 0.5 - cam.cx) / cam.f_px
    v = (np.arange(H) + 0.5 - cam.cy) / cam.f_px
    uu, vv = np.meshgrid(u, v)
    d = uu[..., None] * cam.rot[0] + vv[..., None] * cam.rot[1] + cam.rot[2]
    back = -np.asarray(vdir, float)
    along = np.cross(back, [0.0, 0.0, 1.0])
    o = cam.position
    db = d @ back
    t_wall = np.where(db > 1e-6, (ph["wall_distance_m"] - (o - anchor) @ back) / np.maximum(db, 1e-6), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[..., 2] < -1e-9, -o[2] / d[..., 2], np.inf)
    floor = t_floor < t_wall
    t = np.minimum(t_wall, t_floor)
    t = np.where(np.isfinite(t), t, 50.0)
    hit = o + t[..., None] * d
    rel = hit - anchor
    wu, wz = rel @ along, hit[..., 2]
    off = sess["tex_offset"]
    # ---- wall
    kind = sess["wall_kind"]
    base = np.asarray(sess["wall_rgb"], float)
    wall = np.broadcast_to(base, (H, W, 3)).copy()
    if kind == "gradient":
        g = np.clip(wz / 1.2 + 0.3 * wu, 0, 1)[..., None]
        wall = (1 - g) * np.asarray(sess["wall_rgb2"]) + g * base
    elif kind in ("plaster", "brick"):
        tex = textures.brick() if kind == "brick" else textures.plaster()
        m = textures.sample(tex, wu, -wz, textures.METRES_PER_PX[kind], (off[0], off[1]))
        wall = wall * (1 + sess["wall_contrast"] * m)[..., None]
    if sess["skirting"]:
        sk = sess["skirting_cm"] / 100.0
        wall = np.where((wz < sk)[..., None], np.asarray(sess["skirting_rgb"]), wall)
        wall = np.where((np.abs(wz - sk) < 0.003)[..., None], wall * 0.6, wall)
    wall = wall * (0.85 + 0.15 * np.clip(wz / 0.8, 0, 1))[..., None]
    # ---- floor
    fu, fw = wu, rel @ back
    kind = sess["floor_kind"]
    sc = sess["floor_scale"]
    if kind == "wood":
        m = textures.wood(fu, fw, np.asarray(sess["wood"]))
    elif kind == "tiles":
        m = textures.tiles(fu, fw, sess["tile_m"])
    elif kind in ("gravel", "grass"):
        m = textures.sample(textures.photo(kind), fu, fw, textures.METRES_PER_PX[kind] * sc, (off[2], off[3]))
    elif kind == "speckle":
        m = textures.sample(textures.photo("gravel"), fu, fw, 0.0004 * sc, (off[2], off[3]))
    else:
        m = np.zeros_like(fu)
    flo = np.asarray(sess["floor_rgb"], float) * (1 + sess["floor_contrast"] * np.clip(m, -3, 3))[..., None]
    dist_fl = np.linalg.norm(rel[..., :2], axis=-1)
    shade_f = 0.9 + 0.1 * np.clip(1.0 - (dist_fl - 0.8) / 1.5, 0, 1)
    for mean, icov in feet:  # contact shadows: a soft dark ellipse under each foot
        q = hit[..., :2] - mean
        m2 = np.einsum("...i,ij,...j->...", q, icov, q)
        shade_f = shade_f * (1 - 0.55 * np.exp(-0.5 * m2 / 1.3**2))
    flo = flo * shade_f[..., None]
    rgb = np.where(floor[..., None], flo, wall)
    lit = ph["light_intensity"] * (ph["ambient_light"] + (1 - ph["ambient_light"]) * 0.8)
    return np.clip(rgb, 0, 1.2) * lit, ~floor


def _foot_ellipses(vertices: np.ndarray, face_left: np.ndarray, faces: np.ndarray, *, only_left: bool | None = None):
    """Each foot's floor contact as (centre, inverse covariance); ``only_left``: that foot alone (True: left)."""
    out = []
    vl = np.zeros(len(vertices), bool)
    vl[faces[face_left].ravel()] = True
    sides = (vl, ~vl) if only_left is None else ((vl,) if only_left else (~vl,))
    for side_mask in sides:
        p = vertices[side_mask & (vertices[:, 2] < 0.03), :2]
        if len(p) < 5:
            continue
        cov = np.cov(p.T) + np.eye(2) * 1e-4
        out.append((p.mean(0), np.linalg.inv(cov)))
    return out


def render_scene(cam: Camera, parts: list, sess: dict, ph: dict, skin: dict, anchor, vdir, knee_plane,
                 feet, *, supersample: int = 2):
    """Draw the scene. ``parts``: list of ``(vertices, faces, normals, kind, rgb, cull)``; ``cull``
    True drops back faces, False keeps them, a height (m) drops those wholly above it.

    Returns ``(rgb float (H, W, 3) in [0, 1], label coverage (H, W, n_labels) float, wall mask (H, W))``.
    """
    import cv2

    big = cam.scaled(supersample)
    H, W = big.height, big.width
    rng = np.random.default_rng(ph["texture_seed"])
    # ---- assemble, cull back faces of closed parts
    verts, faces, norms, kind, rgbs = [], [], [], [], []
    base = 0
    for v, f, n, k, rgb, cull in parts:
        if cull is not False:  # True: every back face; a height: back faces above it (cloth near its hem)
            a = v[f[:, 0]]
            fn = np.cross(v[f[:, 1]] - a, v[f[:, 2]] - a)
            front = np.einsum("ij,ij->i", fn, cam.position - a) > 0
            if cull is not True:
                front |= v[f][:, :, 2].min(1) < cull
            f = f[front]
        verts.append(v), norms.append(n), faces.append(f + base)
        kind.append(np.full(len(f), k, np.int8))
        rgbs.append(np.broadcast_to(np.asarray(rgb, float), (len(f), 3)))
        base += len(v)
    V, N, F = np.vstack(verts), np.vstack(norms), np.vstack(faces)
    K, C = np.concatenate(kind), np.vstack(rgbs)
    face_id, bary, keep = rasterize(big, V, F)
    F, K, C = F[keep], K[keep], C[keep]
    # the background is smooth where no mesh is: drawn at the output size, then enlarged
    bg, is_wall = _background(cam, sess, ph, anchor, vdir, feet)
    img = cv2.resize(bg.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    mask = face_id >= 0
    labels = np.zeros((H, W), np.uint8)
    light = _light(ph, vdir)
    tint = np.asarray(ph["light_tint"], float)
    if mask.any():
        fid = face_id[mask]
        b = bary[mask]
        pts = np.einsum("kj,kjd->kd", b, V[F[fid]])
        n = np.einsum("kj,kjd->kd", b, N[F[fid]])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        away = np.einsum("kd,kd->k", n, cam.position - pts) < 0
        n[away] *= -1
        lam = np.clip(n @ light, 0, None)
        shade = ph["light_intensity"] * (ph["ambient_light"] + (1 - ph["ambient_light"]) * lam)
        k = K[fid]
        albedo = C[fid].copy()
        skin_px = k <= _SKIN_OTHER
        if skin_px.any():
            tex = _smooth_noise(rng, (H, W), 24 * supersample) + 0.4 * _smooth_noise(rng, (H, W), 4 * supersample)
            albedo[skin_px] *= (1 + skin["skin_texture"] * 0.7 * tex[mask][skin_px])[:, None]
        cloth = k == _CLOTH
        if cloth.any():
            q = pts[cloth]
            per = sess["cloth_weave_mm"] / 1000.0
            weave = np.sin(2 * np.pi * (q[:, 0] + q[:, 1] + q[:, 2]) / per) * np.sin(
                2 * np.pi * (q[:, 0] - q[:, 1] - q[:, 2]) / per)
            fold = np.sin(2 * np.pi * q[:, 2] / 0.07 + 3 * q[:, 0])
            hem = knee_plane["hem_z"]
            stitch = np.where(np.abs(q[:, 2] - hem - 0.012) < 0.0025, 0.7, 1.0)
            albedo[cloth] *= (stitch * (1 + sess["cloth_weave_amp"] * weave + sess["cloth_fold_amp"] * fold))[:, None]
            shade[cloth & away] *= 0.5  # the inside of the shorts
        img[mask] = albedo * shade[:, None]
        lab = np.where(k == _SKIN_PHOTO, LABELS["leg"], LABELS["other_leg"]).astype(np.uint8)
        above = (pts - knee_plane["point"]) @ knee_plane["normal"] < 0
        lab[(k == _SKIN_PHOTO) & above] = LABELS["thigh"]
        lab[cloth | (k == _SHOE)] = LABELS["clothing"]
        lab[k == _DISTRACTOR] = LABELS["distractor"]
        labels[mask] = lab
    img = np.clip(img * tint * ph["exposure"], 0, 1)
    out_wh = (cam.width, cam.height)
    small = cv2.resize(img.astype(np.float32), out_wh, interpolation=cv2.INTER_AREA).astype(np.float64)
    cover = np.stack([cv2.resize((labels == i).astype(np.float32), out_wh, interpolation=cv2.INTER_AREA)
                      for i in range(len(LABELS))], axis=-1)
    wall_small = is_wall.astype(np.float32) * cover[..., 0]
    return small, cover, wall_small


def wall_shadow(rgb: np.ndarray, cover: np.ndarray, wall: np.ndarray, cam: Camera, ph: dict, vdir) -> np.ndarray:
    """A faint, soft cast shadow of the body on the wall, offset away from the light."""
    import cv2

    if ph["wall_shadow"] <= 0:
        return rgb
    fg = cover[..., [LABELS["leg"], LABELS["other_leg"], LABELS["clothing"], LABELS["thigh"]]].sum(-1)
    lc = cam.rot @ _light(ph, vdir)
    ppc = cam.f_px / 100.0  # px per metre-ish at 1 m, scaled below
    depth = max(float(np.linalg.norm(cam.position[:2])), 0.5)
    shift = -lc[:2] / max(np.linalg.norm(lc[:2]), 1e-6) * ph["wall_distance_m"] * ppc * 100 / depth * 0.5
    M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    sh = cv2.warpAffine(fg.astype(np.float32), M, (rgb.shape[1], rgb.shape[0]))
    sigma = max(1.0, 0.04 * ph["wall_distance_m"] * cam.f_px / depth)
    sh = cv2.GaussianBlur(sh, (0, 0), sigma)
    k = ph["wall_shadow"] * (1 - ph["ambient_light"])
    return rgb * (1 - k * np.clip(sh, 0, 1) * wall)[..., None]


def finish(rgb: np.ndarray, rng: np.random.Generator, ph: dict) -> np.ndarray:
    """Blur, low resolution, sensor noise; BGR uint8 (JPEG quality is applied when saving)."""
    import cv2

    img = rgb.astype(np.float32)
    if ph["blur_sigma"] > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), ph["blur_sigma"])
    if ph["lowres"] < 0.999:
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(8, int(w * ph["lowres"])), max(8, int(h * ph["lowres"]))),
                           interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    img = img * 255.0 + rng.normal(0.0, ph["noise_sigma"], size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1])


def marker_label(shape, card_corners: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, np.round((card_corners - 0.5) * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


# ============================================================================ one photo
def seen_calf_width(leg_v: np.ndarray, leg_f: np.ndarray, knee, ankle, cam: Camera, place,
                    band=(0.2, 0.6), step: float = 0.005) -> tuple[float, float]:
    """The widest horizontal slice of the calf as the camera sees it: ``(cm, px)``.

    Horizontal slices of the rest-pose leg between ``band`` fractions of the knee-to-ankle height,
    moved by ``place`` (the stance shear, which only translates horizontal slices). ``cm``: the
    largest extent along the camera's image-right axis made horizontal (an orthographic view);
    ``px``: the largest extent along the image rows of the slice projected by ``cam`` (perspective
    included, each slice at its own depth). ``px`` is what the widest row of the photographed leg's
    mask shows, without pixels.
    """
    r = np.array([cam.rot[0][0], cam.rot[0][1], 0.0])
    r /= np.linalg.norm(r)
    zk, za = float(knee[2]), float(ankle[2])
    tri_z = leg_v[leg_f][:, :, 2]
    z_top, z_bot = zk - band[0] * (zk - za), zk - band[1] * (zk - za)
    sel = leg_f[(tri_z.max(1) >= z_bot) & (tri_z.min(1) <= z_top)]
    best_cm, best_px = np.nan, np.nan
    for z in np.arange(z_bot, z_top + 1e-9, step * (zk - za)):
        pts = slice_points(leg_v, sel, [0.0, 0.0, z], [0.0, 0.0, 1.0])
        if len(pts) >= 3:
            best_cm = np.nanmax([best_cm, float(np.ptp(pts @ r))])
            best_px = np.nanmax([best_px, float(np.ptp(cam.project(place(pts))[:, 0]))])
    return best_cm * 100.0, best_px


def _facing(view: str, turn_deg: float) -> str:
    """Which side of the subject the camera sees: back, front, outside (lateral) or oblique."""
    t = (turn_deg + 180.0) % 360.0 - 180.0
    if abs(t) < 20:
        return "back" if view == "posterior" else "outside"
    if abs(abs(t) - 180) < 40 and view == "posterior":
        return "front"
    return "oblique"


def render_scene_view(subj: dict, view: str, *, seed: int, take: int = 1, condition: str = "clinic",
                      width: int = 600, height: int = 800, supersample: int = 2, marker: bool = True,
                      one_leg: bool = False):
    """Render one scene photo of a built subject (``subj["scene_body"]`` from :func:`scene_body`).

    ``marker=False`` leaves the card out of every photo (otherwise it is in most, as drawn).
    ``one_leg=True`` leaves the other leg out (its skin, its half of the shorts, its shoe and its contact
    shadow): a photo that shows one leg only, with nothing behind it, for training the segmenter's *behind*
    map on single legs. Every random draw is the same as without it, so the photo differs only by the leg.

    Returns ``(bgr uint8 image, label map uint8, truth-row dict, jpeg quality)``.
    """
    from ..scale import MARKER_SIZE_CM
    from . import camera as cam_mod
    from .generate import VIEWS, _place_marker, view_direction
    from .render import draw_marker, marker_card_corners
    from .sampling import subject_rng

    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    idx, side = subj["sample"]["index"], subj["row"]["side"]
    sb = subj["scene_body"]
    skin = draw_skin(subject_rng(seed, idx, SKIN_STREAM))
    sess = draw_session(subject_rng(seed, idx, session_stream(take)), condition)
    rng = subject_rng(seed, idx, photo_stream(take, VIEWS.index(view)))
    ph = draw_photo(rng, condition)
    # ---- pose
    posed = pose_body(sb, sess, side)
    V, F, left, off = posed["vertices"], sb["faces"], sb["face_left"], posed["offsets"]
    is_l = side == "L"
    other = "R" if is_l else "L"
    j = subj["body"].joints
    knee, ankle, calf = shear(np.stack([subj["knee"], subj["ankle"], subj["calf_center"]]), is_l, sb, off)
    other_ankle = shear(j[f"foot.{other}"][None], not is_l, sb, off)[0]
    hem_z = float(knee[2] + sess["hem_above_knee_cm"] / 100.0)
    normals = vertex_normals(V, F)
    photo_face = left == is_l
    skin_keep = V[F][:, :, 2].min(1) < hem_z + 0.02
    skin_rgb = cam_mod.skin_rgb(skin["skin_tone"])
    parts = [(V, F[skin_keep & photo_face], normals, _SKIN_PHOTO, skin_rgb, True)]
    if not one_leg:
        parts.append((V, F[skin_keep & ~photo_face], normals, _SKIN_OTHER, skin_rgb, True))
    F_worn = F[photo_face] if one_leg else F  # the surfaces the shorts and shoes are made from
    # the inside of the cloth shows near the hem (more of it from the low cameras of wild scenes)
    if sess.get("skirt"):
        parts.append((*skirt_mesh(V, hem_z, float(V[:, 2].max()) - 0.03, sess), _CLOTH, sess["cloth_rgb"], False))
    else:
        inside = hem_z + (0.12 if condition == "wild" else 0.04)
        parts.append((*shorts_mesh(V, F_worn, normals, hem_z, sess), _CLOTH, sess["cloth_rgb"], inside))
    if sess.get("shoes"):
        parts.append((*shoe_mesh(V, F_worn, normals, sess["shoe_height_cm"] / 100.0), _SHOE, sess["shoe_rgb"],
                      True))
    # ---- camera
    vdir = view_direction(view, side)
    used = np.unique(F[photo_face].ravel())
    leg_pts = V[used][V[used][:, 2] < knee[2]]
    cam = frame_camera(ph, condition, leg_pts, knee, ankle, other_ankle, vdir, width, height,
                       top_z=float(V[:, 2].max()) - 0.04)
    anchor = np.array([0.5 * (knee[0] + ankle[0]), 0.5 * (knee[1] + ankle[1]), 0.0])
    right = np.array([cam.rot[0][0], cam.rot[0][1], 0.0])
    right /= np.linalg.norm(right)
    for d in ph["distractors"]:
        d = dict(d, depth_m=min(d["depth_m"], ph["wall_distance_m"] - 0.5 * max(d["size_m"][:2]) - 0.02))
        parts.append((*distractor_mesh(d, anchor, right, -vdir), _DISTRACTOR, d["rgb"], True))
    knee_plane = {"point": knee, "normal": (ankle - knee) / np.linalg.norm(ankle - knee), "hem_z": hem_z}
    feet = _foot_ellipses(V, left, F, only_left=is_l if one_leg else None)
    rgb, cover, wall = render_scene(cam, parts, sess, ph, skin, anchor, vdir, knee_plane, feet,
                                    supersample=supersample)
    rgb = wall_shadow(rgb, cover, wall, cam, ph, vdir)
    labels = np.argmax(cover, axis=-1).astype(np.uint8)
    # ---- marker
    depth = float(cam.to_camera(calf[None])[0, 2])
    ppc = cam.px_per_cm_at_depth(depth)
    info = {"scene": condition, "take": int(take), "width_px": width, "height_px": height,
            "px_per_cm_true": ppc, "calf_depth_cm": depth * 100.0}
    placed = False
    if ph["marker"] and marker:
        try:
            center = _place_marker(cam, 1.0 - cover[..., 0], depth, ph)
        except RuntimeError:
            center = None
        if center is not None:
            mk, card = marker_card_corners(cam, center, depth)
            brightness = ph["light_intensity"] * (ph["ambient_light"] + (1 - ph["ambient_light"]) * 0.85)
            rgb = draw_marker(rgb, mk, card, min(brightness * ph["exposure"], 1.05))
            labels[marker_label(labels.shape, card)] = LABELS["marker"]
            placed = True
            info.update(marker_x_px=float(center[0]), marker_y_px=float(center[1]),
                        marker_side_px=MARKER_SIZE_CM * ppc)
    if not placed:
        info.update(marker_x_px=np.nan, marker_y_px=np.nan, marker_side_px=np.nan)
    # ---- what a segmenter or a measurer is checked against
    uv = cam.project(np.stack([calf, knee, ankle]))
    sole = cam.project(leg_pts[leg_pts[:, 2] < 0.005])
    width_cm = subj["row"][f"calf_width_{view}_cm"]
    leg_cov = cover[..., LABELS["leg"]]
    ky, ay = uv[1, 1], uv[2, 1]
    r0 = int(np.clip(np.floor(ky + 0.2 * (ay - ky)), 0, height))
    r1 = int(np.clip(np.ceil(ky + 0.6 * (ay - ky)), 0, height))
    rows = leg_cov[r0:r1].sum(1)
    mask_w = float(rows.max()) if len(rows) else np.nan
    sole_y = float(sole[:, 1].max()) if len(sole) else np.nan
    in_frame = bool(0 <= ky and sole_y < height and 0 <= uv[0, 0] < width)
    fwd = cam.rot[2]
    seen_cm, seen_px = seen_calf_width(*subj["leg"], subj["knee"], subj["ankle"], cam,
                                       lambda q: shear(q, is_l, sb, off))
    info.update(
        calf_x_px=float(uv[0, 0]), calf_y_px=float(uv[0, 1]), knee_y_px=float(ky), ankle_y_px=float(ay),
        sole_y_px=sole_y, calf_width_px_true=width_cm * ppc, calf_width_seen_cm=seen_cm,
        calf_width_seen_px=seen_px, mask_calf_width_px=mask_w,
        mask_calf_width_row=int(r0 + np.argmax(rows)) if len(rows) else -1,
        perspective_bias_pct=100.0 * (seen_px / (seen_cm * ppc) - 1.0),
        mask_vs_seen_pct=100.0 * (mask_w / seen_px - 1.0),
        mask_vs_slice_pct=100.0 * (mask_w / (width_cm * ppc) - 1.0), leg_pixels=float(leg_cov.sum()),
        leg_in_frame=in_frame, f_px=cam.f_px,
        camera_distance_cm=float(np.linalg.norm((cam.position - calf)[:2]) * 100.0),
        camera_height_cm=float(cam.position[2] * 100.0), pitch_deg=float(np.degrees(np.arcsin(-fwd[2]))),
        roll_deg=ph["roll_deg"], yaw_deg=ph["yaw_deg"], principal_dx_px=cam.cx - width / 2,
        principal_dy_px=cam.cy - height / 2,
        light_azimuth_deg=ph["light_azimuth_deg"], light_elevation_deg=ph["light_elevation_deg"],
        light_intensity=ph["light_intensity"], ambient_light=ph["ambient_light"], exposure=ph["exposure"],
        skin_tone=skin["skin_tone"], skin_rgb=cam_mod.hex_rgb(skin_rgb), stance_gap_cm=sess["stance_gap_cm"],
        stagger_cm=sess["stagger_cm"], hem_above_knee_cm=sess["hem_above_knee_cm"],
        cloth_rgb=cam_mod.hex_rgb(sess["cloth_rgb"]), wall_kind=sess["wall_kind"],
        wall_rgb=cam_mod.hex_rgb(sess["wall_rgb"]),
        floor_kind=sess["floor_kind"], floor_rgb=cam_mod.hex_rgb(sess["floor_rgb"]), skirting=sess["skirting"],
        wall_distance_cm=ph["wall_distance_m"] * 100.0, wall_shadow=ph["wall_shadow"],
        n_distractors=len(ph["distractors"]), noise_sigma=ph["noise_sigma"], blur_sigma=ph["blur_sigma"],
        lowres_factor=ph["lowres"], jpeg_quality=ph["jpeg_quality"], marker=placed,
        marker_side=ph["marker_side"] if placed else "",
    )
    if condition == "wild":  # what only wild scenes vary
        info.update(turn_deg=ph["turn_deg"], facing=_facing(view, ph["turn_deg"]), skirt=sess["skirt"],
                    shoes=sess["shoes"])
    if one_leg:
        info.update(one_leg=True)
    img = finish(rgb, rng, ph)
    return img, labels, info, ph["jpeg_quality"]
