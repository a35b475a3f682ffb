"""Mesh geometry for the phantom: exact volumes of clipped closed meshes, slices, circumferences.

Pure numpy functions on ``(N, 3)`` vertex arrays (metres unless a name says cm) and
``(F, 3)`` integer triangle arrays wound counter-clockwise seen from outside.
"""

from __future__ import annotations

import numpy as np


def _rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return a[np.arange(len(a))[:, None], idx]


def clip_triangles(tri: np.ndarray, point, normal) -> np.ndarray:
    """Clip triangles to the half-space ``(x - point) . normal <= 0``, keeping their winding.

    Parameters
    ----------
    tri : ndarray, (T, 3, 3)
        Triangle corner coordinates.
    point, normal : array-like, (3,)
        A point on the cutting plane and the normal pointing to the side that is removed.

    Returns
    -------
    ndarray, (T', 3, 3)
        The parts of the triangles inside the half-space (a triangle cut by the plane
        becomes one or two triangles). The removed side leaves an open hole on the plane.
    """
    tri = np.asarray(tri, dtype=float)
    p = np.asarray(point, dtype=float)
    n = np.asarray(normal, dtype=float)
    d = (tri - p) @ n  # (T, 3)
    inside = d <= 0
    k = inside.sum(1)
    out = [tri[k == 3]]
    # one corner inside: rotate it to position 0 -> (a, ab, ac)
    t1, d1 = tri[k == 1], d[k == 1]
    if len(t1):
        first = np.argmax(d1 <= 0, axis=1)
        order = (first[:, None] + np.arange(3)) % 3
        t1, d1 = _rows(t1, order), _rows(d1, order)
        a, b, c = t1[:, 0], t1[:, 1], t1[:, 2]
        ab = a + (d1[:, :1] / (d1[:, :1] - d1[:, 1:2])) * (b - a)
        ac = a + (d1[:, :1] / (d1[:, :1] - d1[:, 2:3])) * (c - a)
        out.append(np.stack([a, ab, ac], axis=1))
    # two corners inside: rotate the outside one to position 0 -> (ab, b, c), (ab, c, ac)
    t2, d2 = tri[k == 2], d[k == 2]
    if len(t2):
        first = np.argmax(d2 > 0, axis=1)
        order = (first[:, None] + np.arange(3)) % 3
        t2, d2 = _rows(t2, order), _rows(d2, order)
        a, b, c = t2[:, 0], t2[:, 1], t2[:, 2]
        ab = a + (d2[:, :1] / (d2[:, :1] - d2[:, 1:2])) * (b - a)
        ac = a + (d2[:, :1] / (d2[:, :1] - d2[:, 2:3])) * (c - a)
        out.append(np.stack([ab, b, c], axis=1))
        out.append(np.stack([ab, c, ac], axis=1))
    return np.concatenate(out, axis=0) if out else np.zeros((0, 3, 3))


def signed_volume(tri: np.ndarray, origin) -> float:
    """Sum of signed tetrahedra ``(origin, a, b, c)``: the enclosed volume of a closed surface.

    For a closed surface clipped by planes that all pass through ``origin``, the missing
    cap faces would add tetrahedra of zero height, so the sum is the exact volume of the
    clipped solid.
    """
    o = np.asarray(origin, dtype=float)
    a, b, c = tri[:, 0] - o, tri[:, 1] - o, tri[:, 2] - o
    return float(np.einsum("ij,ij->i", np.cross(a, b), c).sum() / 6.0)


def clipped_volume(vertices, faces, planes, origin) -> float:
    """Volume (m^3 if vertices are in metres) of a closed mesh cut by half-spaces.

    Parameters
    ----------
    vertices : ndarray, (N, 3)
    faces : ndarray, (F, 3)
        The triangles of a closed surface (or of a part of it that is closed inside the kept region).
    planes : list of (point, normal)
        Each removes the side the normal points to.
    origin : array-like, (3,)
        A point lying on every cutting plane.
    """
    tri = np.asarray(vertices, dtype=float)[np.asarray(faces)]
    for point, normal in planes:
        tri = clip_triangles(tri, point, normal)
    return signed_volume(tri, origin)


def slice_points(vertices, faces, point, normal) -> np.ndarray:
    """Points where the plane ``(x - point) . normal = 0`` cuts the mesh's edges, ``(K, 3)``."""
    tri = np.asarray(vertices, dtype=float)[np.asarray(faces)]
    d = (tri - np.asarray(point, dtype=float)) @ np.asarray(normal, dtype=float)
    pts = []
    for i, j in ((0, 1), (1, 2), (2, 0)):
        m = (d[:, i] > 0) != (d[:, j] > 0)
        if m.any():
            t = d[m, i] / (d[m, i] - d[m, j])
            pts.append(tri[m, i] + t[:, None] * (tri[m, j] - tri[m, i]))
    return np.concatenate(pts, axis=0) if pts else np.zeros((0, 3))


def hull_perimeter(points_2d: np.ndarray) -> float:
    """Perimeter of the convex hull of 2-D points: what a tape measure around them reads."""
    import cv2

    pts = np.asarray(points_2d, dtype=np.float32)
    if len(pts) < 3:
        return float("nan")
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(float)
    return float(np.linalg.norm(hull - np.roll(hull, -1, axis=0), axis=1).sum())


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals, ``(N, 3)``."""
    v = np.asarray(vertices, dtype=float)
    f = np.asarray(faces)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.maximum(norm, 1e-12)
