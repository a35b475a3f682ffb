"""The Anny body model, wrapped for the phantom: fitted rest-pose bodies, limb volumes, the lower leg.

Everything that touches ``anny``/``torch`` lives here and is imported lazily, so the rest of
the toolkit (and :mod:`smi_data.phantom.ceiling`) runs without them. Conventions (Anny's):
metres, +z up, +x the subject's left, -y anterior. Bodies are shifted so the soles rest on
the floor ``z = 0``. See docs/phantom.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import geometry

#: Anny age anchors (package's shape_calibration, morphological_age_mapping): 18 y -> 0.77, 64 y -> 0.83.
ANNY_AGE_ANCHORS = ((18.0, 0.77), (64.0, 0.83))
ARM_BONES = ("upperarm", "lowerarm", "wrist", "finger", "metacarpal")
LEG_BONES = ("upperleg", "lowerleg", "foot", "toe")
#: The arm is cut by a plane square to the upper arm, this fraction of the shoulder-elbow
#: distance below the shoulder joint (closer cuts leave the armpit open in the skinning selection).
ARM_CUT_FRACTION = 0.35
#: How far above the knee joint the rendered leg mesh reaches (m); out of every frame.
LEG_MESH_TOP_M = 0.20


def anny_age(age_years):
    """Anny's ``age`` parameter for an adult age in years (linear between the package's anchors)."""
    (a0, p0), (a1, p1) = ANNY_AGE_ANCHORS
    return p0 + (np.asarray(age_years, dtype=float) - a0) * (p1 - p0) / (a1 - a0)


@dataclass
class Body:
    """One rest-pose body: vertices (m, floor at z=0), joints, and the parameters that made it."""

    vertices: np.ndarray
    joints: dict
    params: dict
    height_m: float
    volume_l: float
    extras: dict = field(default_factory=dict)


def configure_torch_threads(n: int = 1) -> None:
    """Fix torch's thread count so forward passes are bit-identical from run to run."""
    import torch

    torch.set_num_threads(int(n))


class AnnyBody:
    """Build Anny rest-pose bodies and cut them into limbs.

    The first use builds Anny's model data (about 100 s, cached in ``~/.cache/anny`` or
    ``$ANNY_CACHE_DIR``); later uses load in about a second.
    """

    def __init__(self, threads: int = 1):
        configure_torch_threads(threads)
        import anny
        import torch

        self._torch = torch
        self.model = anny.Anny(skinning_method="lbs")
        self.model.eval()
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        labels = list(self.model.bone_labels)
        self.bone_labels = labels
        w = self.model.vertex_bone_weights.cpu().numpy()
        idx = self.model.vertex_bone_indices.cpu().numpy()
        dom = idx[np.arange(len(w)), w.argmax(1)]
        self.dominant_bone = np.array(labels, dtype=object)[dom]
        self._bone = {b: i for i, b in enumerate(labels)}

    # ------------------------------------------------------------------ bodies
    def rest(self, **params) -> Body:
        """Rest-pose body for phenotype parameters (gender, age, muscle, weight, height, proportions)."""
        torch = self._torch
        kw = {k: torch.tensor([float(v)], dtype=self.model.dtype) for k, v in params.items()}
        with torch.no_grad():
            _, ph, lc, fa = self.model.get_tensor_inputs(None, kw, None, None)
            coeffs = self.model._get_phenotype_blendshape_coefficients(ph, lc, fa)
            out = self.model.get_rest_model(coeffs)
        v = out["rest_vertices"][0].double().cpu().numpy()
        heads = out["rest_bone_heads"][0].double().cpu().numpy()
        floor = v[:, 2].min()
        v = v - [0.0, 0.0, floor]
        heads = heads - [0.0, 0.0, floor]
        joints = {name: heads[i] for name, i in self._bone.items()}
        height = float(v[:, 2].max())
        volume = geometry.signed_volume(v[self.faces], [0.0, 0.0, 0.0]) * 1000.0
        return Body(v, joints, dict(params), height, volume)

    def fit(self, *, gender: float, age: float, muscle: float, proportions: float,
            height_m: float, bmi: float, density_kg_per_l: float, iterations: int = 14) -> Body:
        """Find Anny's ``height`` and ``weight`` parameters that give a target stature and BMI.

        Stature is linear in ``height`` (two evaluations, then one correction); BMI, with
        weight = mesh volume x density, rises monotonically with ``weight`` at fixed ``muscle``
        (bisection). Targets outside what the model reaches end at the nearest bound.
        """
        base = dict(gender=gender, age=age, muscle=muscle, proportions=proportions)

        def solve_height(w: float, h0: float = 0.3, h1: float = 0.5) -> float:
            b0 = self.rest(**base, weight=w, height=h0).height_m
            b1 = self.rest(**base, weight=w, height=h1).height_m
            return float(np.clip(h0 + (height_m - b0) * (h1 - h0) / (b1 - b0), 0.0, 1.0))

        def bmi_of(w: float, h: float) -> float:
            b = self.rest(**base, weight=w, height=h)
            return b.volume_l * density_kg_per_l / b.height_m**2

        h = solve_height(0.5)
        lo, hi = 0.0, 1.0
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            if bmi_of(mid, h) < bmi:
                lo = mid
            else:
                hi = mid
        w = 0.5 * (lo + hi)
        h = solve_height(w, h - 0.02, h + 0.02)
        body = self.rest(**base, weight=w, height=h)
        return body

    # ------------------------------------------------------------------ selections
    def _chain_faces(self, side: str, kinds, how: str = "any") -> np.ndarray:
        lab = self.dominant_bone
        sel = np.array([lb.endswith("." + side) and lb.startswith(kinds) for lb in lab])
        per_face = sel[self.faces]
        return per_face.any(1) if how == "any" else per_face.all(1)

    def limb_volumes_l(self, body: Body) -> dict:
        """Volumes (L) of the four limbs and both lower legs, cut from the closed mesh.

        - leg: everything on its side of the midsagittal plane ``x = 0`` and below the
          horizontal plane through the hip joint (``upperleg01`` head); arm-skinned
          triangles (hands hang at hip level) are left out.
        - arm: the arm-skinned triangles distal to a plane square to the upper arm,
          :data:`ARM_CUT_FRACTION` of the shoulder-elbow distance below the shoulder joint.
        - lower leg: between the planes through the knee (``lowerleg01`` head) and the
          ankle (``foot`` head) joints, square to the knee-ankle axis.
        Each cut solid is closed by the cutting planes; volumes are exact (signed tetrahedra
        from a point on every plane).
        """
        v, f, j = body.vertices, self.faces, body.joints
        out = {}
        lab = self.dominant_bone
        arm_any = np.array([lb.startswith(ARM_BONES) for lb in lab])[f].any(1)
        for side, s in (("L", 1.0), ("R", -1.0)):
            hip = j[f"upperleg01.{side}"]
            origin = np.array([0.0, hip[1], hip[2]])
            out[f"leg_{side}"] = 1000 * geometry.clipped_volume(
                v, f[~arm_any], [(origin, [0, 0, 1.0]), (origin, [-s, 0, 0])], origin)
            sh, el = j[f"upperarm01.{side}"], j[f"lowerarm01.{side}"]
            ax = (el - sh) / np.linalg.norm(el - sh)
            p = sh + ARM_CUT_FRACTION * np.linalg.norm(el - sh) * ax
            out[f"arm_{side}"] = 1000 * geometry.clipped_volume(
                v, f[self._chain_faces(side, ARM_BONES, "any")], [(p, -ax)], p)
            knee, ankle = j[f"lowerleg01.{side}"], j[f"foot.{side}"]
            a = (ankle - knee) / np.linalg.norm(ankle - knee)
            legf = f[self._chain_faces(side, LEG_BONES, "all")]
            below_knee = geometry.clipped_volume(v, legf, [(knee, -a)], knee)
            below_ankle = geometry.clipped_volume(v, legf, [(ankle, -a)], ankle)
            out[f"lowerleg_{side}"] = 1000 * (below_knee - below_ankle)
        return out

    def leg_mesh(self, body: Body, side: str, *, subdivide: int = 1):
        """The leg of one side from the foot to :data:`LEG_MESH_TOP_M` above the knee.

        Returns ``(vertices, faces)``, smoothed by ``subdivide`` rounds of Loop subdivision so
        that the coarse mesh (about 400 triangles on the lower leg) shows no corners in outline.
        The open top edge lies above every frame.
        """
        import trimesh.remesh

        v, f = body.vertices, self.faces
        top = body.joints[f"lowerleg01.{side}"][2] + LEG_MESH_TOP_M
        keep = self._chain_faces(side, LEG_BONES, "all") & (v[f][:, :, 2].max(1) < top)
        sub = f[keep]
        used, inv = np.unique(sub, return_inverse=True)
        vv, ff = v[used], inv.reshape(-1, 3)
        if subdivide:
            vv, ff = trimesh.remesh.subdivide_loop(vv, ff, iterations=int(subdivide))
        return np.asarray(vv, dtype=float), np.asarray(ff, dtype=np.int64)
