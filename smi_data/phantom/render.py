"""A small CPU renderer for the phantom's photos: pinhole camera, depth buffer, smooth shading.

No OpenGL: triangles are rasterised in numpy (every pixel of every triangle's bounding box is
tested at once, then the nearest fragment per pixel wins), shading interpolates vertex normals
(perspective-correct), a wall and a floor are ray-cast behind the leg, and the image is drawn
at ``supersample`` times the output size and reduced by area averaging (anti-aliasing).
The ArUco marker card is placed in 3-D, facing the camera at the calf's depth, and projected
with the same camera, so its side in pixels is ``MARKER_SIZE_CM * px_per_cm`` at the calf.

Conventions: world in metres, +z up; camera coordinates x right, y down, z forward (depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scale import MARKER_SIZE_CM, marker_image
from .geometry import vertex_normals

#: White border around the marker's black square, cm (the detector needs a quiet zone).
CARD_MARGIN_CM = 1.25


@dataclass
class Camera:
    """Pinhole camera. ``rot`` rows are the camera's right, down and forward axes in world coordinates."""

    position: np.ndarray
    rot: np.ndarray
    f_px: float
    cx: float
    cy: float
    width: int
    height: int

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=float) - self.position) @ self.rot.T

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` to pixel coordinates ``(N, 2)`` (pixel centres at integer + 0.5)."""
        pc = self.to_camera(points)
        return np.stack([self.f_px * pc[:, 0] / pc[:, 2] + self.cx, self.f_px * pc[:, 1] / pc[:, 2] + self.cy], axis=1)

    def px_per_cm_at_depth(self, depth_m: float) -> float:
        return self.f_px / (depth_m * 100.0)

    def scaled(self, factor: int) -> "Camera":
        return Camera(self.position, self.rot, self.f_px * factor, self.cx * factor, self.cy * factor,
                      self.width * factor, self.height * factor)


def look_at_camera(target, view_dir, *, distance_m: float, camera_height_m: float, yaw_deg: float,
                   roll_deg: float, f_px: float, size: int) -> Camera:
    """A camera ``distance_m`` from ``target`` (horizontally), turned ``yaw_deg`` about the vertical
    from ``view_dir`` (unit vector from the subject towards the camera), at ``camera_height_m``
    above the floor, aimed at ``target`` and rolled ``roll_deg`` about its optical axis."""
    target = np.asarray(target, dtype=float)
    yaw = np.deg2rad(yaw_deg)
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.asarray(view_dir, dtype=float)
    d = np.array([c * d[0] - s * d[1], s * d[0] + c * d[1], 0.0])
    d /= np.linalg.norm(d)
    pos = np.array([target[0] + distance_m * d[0], target[1] + distance_m * d[1], camera_height_m])
    return aimed_camera(pos, target, roll_deg, f_px, size, size, size / 2.0, size / 2.0)


def aimed_camera(position, target, roll_deg: float, f_px: float, width: int, height: int,
                 cx: float, cy: float) -> Camera:
    """A camera at ``position`` looking at ``target``, image x to the right of the view and y down
    (the world's +z up), rolled ``roll_deg`` about its optical axis."""
    fwd = np.asarray(target, float) - position
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    r = np.deg2rad(roll_deg)
    right, down = np.cos(r) * right + np.sin(r) * down, -np.sin(r) * right + np.cos(r) * down
    return Camera(np.asarray(position, float), np.stack([right, down, fwd]), float(f_px), float(cx), float(cy),
                  int(width), int(height))


def rasterize(cam: Camera, vertices: np.ndarray, faces: np.ndarray):
    """Depth-buffer rasterisation.

    Returns
    -------
    face_id : ndarray (H, W) int64, -1 where no triangle covers the pixel centre
    bary : ndarray (H, W, 3) perspective-correct barycentric weights of the visible triangle
    depth : ndarray (H, W) camera depth (m), inf where empty
    """
    H, W = cam.height, cam.width
    pc = cam.to_camera(vertices)
    z = pc[:, 2]
    if np.any(z <= 1e-3):
        raise ValueError("mesh reaches behind the camera")
    uv = np.stack([cam.f_px * pc[:, 0] / z + cam.cx, cam.f_px * pc[:, 1] / z + cam.cy], axis=1)
    t, px, py, w = triangle_fragments(uv, faces, W, H)
    fz = z[faces[t]]
    inv = w / fz
    depth = 1.0 / inv.sum(1)
    pix = py * W + px
    order = np.lexsort((depth, pix))
    pix_s = pix[order]
    first = np.ones(len(pix_s), dtype=bool)
    first[1:] = pix_s[1:] != pix_s[:-1]
    sel = order[first]
    face_id = np.full(H * W, -1, dtype=np.int64)
    bary = np.zeros((H * W, 3))
    dbuf = np.full(H * W, np.inf)
    face_id[pix[sel]] = t[sel]
    bary[pix[sel]] = inv[sel] * depth[sel, None]
    dbuf[pix[sel]] = depth[sel]
    return face_id.reshape(H, W), bary.reshape(H, W, 3), dbuf.reshape(H, W)


def triangle_fragments(uv: np.ndarray, faces: np.ndarray, W: int, H: int):
    """Every pixel whose centre lies inside a projected triangle (edge functions, all at once).

    Parameters
    ----------
    uv : ndarray (N, 2) projected vertices, pixels; faces : ndarray (T, 3)
    W, H : image size

    Returns
    -------
    t, px, py : ndarray (n,) triangle index, pixel column and row of each fragment
    w : ndarray (n, 3) screen-space barycentric weights
    """
    tri = uv[faces]  # (T, 3, 2)
    x0 = np.floor(tri[:, :, 0].min(1) - 0.5)
    x1 = np.ceil(tri[:, :, 0].max(1) - 0.5)
    y0 = np.floor(tri[:, :, 1].min(1) - 0.5)
    y1 = np.ceil(tri[:, :, 1].max(1) - 0.5)
    in_frame = (x1 >= 0) & (x0 <= W - 1) & (y1 >= 0) & (y0 <= H - 1)
    x0 = np.clip(x0, 0, W - 1).astype(np.int64)
    x1 = np.clip(x1, 0, W - 1).astype(np.int64)
    y0 = np.clip(y0, 0, H - 1).astype(np.int64)
    y1 = np.clip(y1, 0, H - 1).astype(np.int64)
    area = ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
            - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    ti = np.nonzero((np.abs(area) > 1e-12) & in_frame)[0]
    bw, bh = (x1 - x0 + 1)[ti], (y1 - y0 + 1)[ti]
    counts = bw * bh
    t = np.repeat(ti, counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(len(t)) - start
    bwr = np.repeat(bw, counts)
    px = x0[t] + local % bwr
    py = y0[t] + local // bwr
    qx, qy = px + 0.5, py + 0.5
    a, b, c = tri[t, 0], tri[t, 1], tri[t, 2]
    ar = area[t]
    w0 = ((b[:, 0] - qx) * (c[:, 1] - qy) - (c[:, 0] - qx) * (b[:, 1] - qy)) / ar
    w1 = ((c[:, 0] - qx) * (a[:, 1] - qy) - (a[:, 0] - qx) * (c[:, 1] - qy)) / ar
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    return t[inside], px[inside], py[inside], np.stack([w0[inside], w1[inside], w2[inside]], 1)


@dataclass
class Scene:
    """What a photo shows besides the leg: light, skin, wall, floor, marker placement."""

    skin_rgb: tuple
    wall_rgb: tuple
    floor_rgb: tuple
    light_dir: np.ndarray  # unit vector towards the light, world
    light_intensity: float
    ambient: float
    wall_distance_m: float  # behind the leg's axis
    view_dir: np.ndarray  # unit, subject -> camera (no yaw)
    target: np.ndarray


def _background(cam: Camera, scene: Scene) -> np.ndarray:
    H, W = cam.height, cam.width
    u = (np.arange(W) + 0.5 - cam.cx) / cam.f_px
    v = (np.arange(H) + 0.5 - cam.cy) / cam.f_px
    uu, vv = np.meshgrid(u, v)
    d = uu[..., None] * cam.rot[0] + vv[..., None] * cam.rot[1] + cam.rot[2]
    back = -scene.view_dir
    o = cam.position
    t_wall = (scene.wall_distance_m - (o - scene.target) @ back) / np.maximum(d @ back, 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[..., 2] < 0, -o[2] / d[..., 2], np.inf)
    floor = t_floor < t_wall
    hit_z = o[2] + np.minimum(t_wall, t_floor) * d[..., 2]
    # the wall gets a little darker towards the floor, the floor a little darker far away
    shade_wall = (0.85 + 0.15 * np.clip(hit_z / 0.8, 0, 1))[..., None]
    shade_floor = (0.9 + 0.1 * np.clip(1.0 - (t_floor - 0.8) / 1.5, 0, 1))[..., None]
    wall = np.asarray(scene.wall_rgb, float) * shade_wall
    flo = np.asarray(scene.floor_rgb, float) * shade_floor
    lit = scene.light_intensity * (scene.ambient + (1 - scene.ambient) * 0.8)
    return np.where(floor[..., None], flo, wall) * lit


def render_leg(cam: Camera, vertices: np.ndarray, faces: np.ndarray, scene: Scene, *, supersample: int = 2):
    """Render the leg in front of wall and floor.

    Returns
    -------
    rgb : ndarray (H, W, 3) float in [0, 1] (RGB), before marker, noise and encoding
    coverage : ndarray (H, W) float, fraction of each output pixel covered by the leg
    """
    import cv2

    big = cam.scaled(supersample)
    face_id, bary, _ = rasterize(big, vertices, faces)
    img = _background(big, scene)
    mask = face_id >= 0
    if mask.any():
        vn = vertex_normals(vertices, faces)
        fid = face_id[mask]
        n = np.einsum("kj,kjd->kd", bary[mask], vn[faces[fid]])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        # normals facing away from the camera (seen through a silhouette edge) are flipped
        to_cam = cam.position - np.einsum("kj,kjd->kd", bary[mask], vertices[faces[fid]])
        flip = np.einsum("kd,kd->k", n, to_cam) < 0
        n[flip] *= -1
        lam = np.clip(n @ scene.light_dir, 0, None)
        shade = scene.light_intensity * (scene.ambient + (1 - scene.ambient) * lam)
        img[mask] = np.asarray(scene.skin_rgb, float)[None, :] * shade[:, None]
    img = np.clip(img, 0, 1)
    small = cv2.resize(img.astype(np.float32), (cam.width, cam.height), interpolation=cv2.INTER_AREA)
    cov = cv2.resize(mask.astype(np.float32), (cam.width, cam.height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float64), cov.astype(np.float64)


def marker_card_corners(cam: Camera, center_px, depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel corners of the marker's black square and of its white card.

    The card stands upright (its "up" is the world's vertical as seen in the image), faces the
    camera (its plane is square to the optical axis) at depth ``depth_m``, centred on ``center_px``.
    Returns two ``(4, 2)`` arrays, clockwise from top-left in the image.
    """
    up_cam = cam.rot @ np.array([0.0, 0.0, 1.0])
    up2 = np.array([up_cam[0], up_cam[1]])
    up2 /= np.linalg.norm(up2)  # image direction of world-up (y down: roughly (0, -1))
    right2 = np.array([-up2[1], up2[0]])
    ppc = cam.px_per_cm_at_depth(depth_m)
    c = np.asarray(center_px, dtype=float)

    def square(half_cm):
        h = half_cm * ppc
        return np.array([c + h * (-right2 + up2), c + h * (right2 + up2), c + h * (right2 - up2),
                         c + h * (-right2 - up2)])

    return square(MARKER_SIZE_CM / 2), square(MARKER_SIZE_CM / 2 + CARD_MARGIN_CM)


def draw_marker(img: np.ndarray, marker_corners: np.ndarray, card_corners: np.ndarray, brightness: float,
                *, supersample: int = 4) -> np.ndarray:
    """Paint the marker card (white, with the ArUco square) into a float RGB image, anti-aliased."""
    import cv2

    H, W = img.shape[:2]
    s = supersample
    tex_px = 600
    margin = int(round(tex_px * CARD_MARGIN_CM / MARKER_SIZE_CM))
    tex = np.full((tex_px + 2 * margin,) * 2, 255, np.uint8)
    tex[margin:margin + tex_px, margin:margin + tex_px] = marker_image(tex_px)
    src = np.array([[margin, margin], [margin + tex_px, margin], [margin + tex_px, margin + tex_px],
                    [margin, margin + tex_px]], np.float32)
    dst = (marker_corners * s).astype(np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    x0 = int(max(0, np.floor(card_corners[:, 0].min()) - 2))
    x1 = int(min(W, np.ceil(card_corners[:, 0].max()) + 2))
    y0 = int(max(0, np.floor(card_corners[:, 1].min()) - 2))
    y1 = int(min(H, np.ceil(card_corners[:, 1].max()) + 2))
    T = np.array([[1, 0, -x0 * s], [0, 1, -y0 * s], [0, 0, 1]], float) @ M
    size = ((x1 - x0) * s, (y1 - y0) * s)
    warped = cv2.warpPerspective(tex.astype(np.float32) / 255.0, T, size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cover = cv2.warpPerspective(np.ones_like(tex, np.float32), T, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped = cv2.resize(warped, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(cover, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    card = np.clip(warped * 0.92 * brightness + 0.03, 0, 1)
    out = img.copy()
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = region * (1 - cover[..., None]) + card[..., None] * cover[..., None]
    return out


def finish_photo(rgb: np.ndarray, rng: np.random.Generator, noise_sigma: float) -> np.ndarray:
    """Add Gaussian sensor noise (sigma in 8-bit units) and return a BGR uint8 image."""
    img = rgb * 255.0 + rng.normal(0.0, noise_sigma, size=rgb.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1])
