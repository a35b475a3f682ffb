"""Generate a phantom dataset: sample people, build their Anny bodies, compute the truth, render photos.

``generate_cohort(out_dir, n_subjects=100, seed=0)`` writes ``manifest.csv`` (the project's
dataset format, see :mod:`smi_data.manifest`), ``images/<subject_id>_<view>.jpg``,
``truth.csv`` (what the images were made from) and ``run.json``. The same seed gives the
same files, byte for byte, on a CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import camera as cam_mod
from . import sampling, truth
from .render import Scene, draw_marker, finish_photo, look_at_camera, marker_card_corners, render_leg

VIEWS = ("lateral", "posterior")
REFERENCE_DEVICE = "BIA"
MANIFEST_COLUMNS = ["subject_id", "view", "image", "sex", "age", "height_cm", "weight_kg", "smi", "side",
                    "reference_device"]


def subject_id(index: int, n_subjects: int) -> str:
    return f"P{index + 1:0{max(3, len(str(n_subjects)))}d}"


def build_subject(model, seed: int, index: int) -> dict:
    """One person: sampled demographics, fitted body, limb volumes, composition and calf truth."""
    s = sampling.sample_subject(seed, index)
    male = s["sex"] == "M"
    body = model.fit(gender=0.0 if male else 1.0, age=float(np.clip(model_age(s["age"]), 0.0, 1.0)),
                     muscle=s["muscle"], proportions=s["proportions"], height_m=s["target_height_cm"] / 100.0,
                     bmi=s["target_bmi"], density_kg_per_l=truth.RHO_BODY)
    vols = model.limb_volumes_l(body)
    height_m = body.height_m
    weight = body.volume_l * truth.RHO_BODY
    bmi = weight / height_m**2
    side = s["side"]
    leg_v, leg_f = model.leg_mesh(body, side)
    knee, ankle = body.joints[f"lowerleg01.{side}"], body.joints[f"foot.{side}"]
    calf = truth.calf_measures(leg_v, leg_f, knee, ankle)
    bf_d = float(truth.deurenberg_body_fat_pct(bmi, s["age"], male))
    residual = truth.FAT_RESIDUAL_SD * s["fat_residual_z"]
    excess = float(truth.shape_excess(calf["calf_width_lateral_cm"], calf["ankle_width_lateral_cm"], bmi, s["sex"]))
    bf = float(truth.body_fat_pct(bmi, s["age"], s["sex"], excess, residual))
    arm_factor = float(max(0.5, 1.0 + truth.ARM_LEAN_SD * s["arm_muscle_z"]))
    comp = truth.composition(vols, height_m=height_m, body_fat=bf, sex=s["sex"], arm_factor=arm_factor)
    smi_label = comp["smi_true"] * (1.0 + truth.DEVICE_CV * s["device_error_z"])
    row = {
        "sex": s["sex"], "age": s["age"], "height_cm": round(height_m * 100, 1), "weight_kg": round(weight, 1),
        "bmi": round(bmi, 2), "side": side,
        **{k: v for k, v in calf.items() if k != "calf_center"},
        "lowerleg_volume_l": vols[f"lowerleg_{side}"], "leg_volume_l": vols[f"leg_{side}"],
        "leg_L_volume_l": vols["leg_L"], "leg_R_volume_l": vols["leg_R"],
        "arm_L_volume_l": vols["arm_L"], "arm_R_volume_l": vols["arm_R"],
        "limb_volume_l": vols["leg_L"] + vols["leg_R"] + vols["arm_L"] + vols["arm_R"],
        "body_volume_l": body.volume_l,
        "fat_fraction": bf / 100.0, "body_fat_deurenberg_pct": bf_d, "fat_shape_pct": truth.FAT_PER_SHAPE * excess,
        "fat_residual_pct": residual, "calf_shape_excess": excess, "arm_lean_factor": arm_factor,
        "leg_muscle_kg": comp["leg_muscle_kg"], "arm_muscle_kg": comp["arm_muscle_kg"],
        "asm_kg": comp["asm_kg"], "smi_true": comp["smi_true"], "smi": round(smi_label, 2),
        "device_error_pct": 100 * truth.DEVICE_CV * s["device_error_z"],
        **{f"anny_{k}": v for k, v in body.params.items()},
    }
    return {"sample": s, "body": body, "row": row, "leg": (leg_v, leg_f), "knee": knee, "ankle": ankle,
            "calf_center": calf["calf_center"], "calf_level_frac": calf["calf_level_frac"]}


def model_age(age_years: float) -> float:
    from .body import anny_age

    return float(anny_age(age_years))


def view_direction(view: str, side: str) -> np.ndarray:
    """Unit vector from the subject towards the camera: lateral = outside of the photographed leg."""
    if view == "lateral":
        return np.array([1.0 if side == "L" else -1.0, 0.0, 0.0])
    if view == "posterior":
        return np.array([0.0, 1.0, 0.0])  # Anny's -y is anterior
    raise ValueError(f"view must be lateral or posterior, got {view!r}")


def make_camera(subj: dict, view: str, nz: dict, size: int):
    knee, ankle = subj["knee"], subj["ankle"]
    target = np.array([(knee[0] + ankle[0]) / 2, (knee[1] + ankle[1]) / 2, 0.5 * knee[2] + 0.015])
    f_px = size / cam_mod.NOMINAL_FIELD_CM * 100.0 * cam_mod.NOMINAL_DISTANCE_M
    framing_m = f_px * (knee[2] + cam_mod.FRAME_MARGIN_M) / (cam_mod.FRAME_FILL * size)
    vdir = view_direction(view, subj["row"]["side"])
    cam = look_at_camera(target, vdir, distance_m=framing_m * nz["distance_factor"],
                         camera_height_m=target[2] + nz["camera_height_offset_m"], yaw_deg=nz["yaw_deg"],
                         roll_deg=nz["roll_deg"], f_px=f_px, size=size)
    return cam, target, vdir


def _place_marker(cam, coverage: np.ndarray, depth_m: float, nz: dict):
    """Image centre of the marker card beside the leg, clear of it and inside the frame."""
    from .render import CARD_MARGIN_CM
    from ..scale import MARKER_SIZE_CM

    ppc = cam.px_per_cm_at_depth(depth_m)
    half = (MARKER_SIZE_CM / 2 + CARD_MARGIN_CM) * ppc * 1.1  # room for the roll
    H, W = coverage.shape
    sides = [nz["marker_side"], "right" if nz["marker_side"] == "left" else "left"]
    for frac in (nz["marker_height_frac"], 0.45, 0.3, 0.6, 0.2, 0.7):
        vc = frac * H
        r0, r1 = int(max(0, vc - half - 4)), int(min(H, vc + half + 5))
        cols = np.nonzero((coverage[r0:r1] > 0.01).any(0))[0]
        for side in sides:
            gap = nz["marker_gap_cm"] * ppc
            if side == "right":
                uc = (cols.max() if len(cols) else W / 2) + gap + half
                if uc + half < W - 3:
                    return np.array([uc, vc])
            else:
                uc = (cols.min() if len(cols) else W / 2) - gap - half
                if uc - half > 3:
                    return np.array([uc, vc])
    raise RuntimeError("no room beside the leg for the marker")


def render_view(subj: dict, view: str, *, seed: int, size: int, marker: bool, supersample: int = 2):
    """Render one photo. Returns ``(bgr uint8 image, truth-row dict for the image, coverage mask)``."""
    vi = VIEWS.index(view)
    rng = sampling.subject_rng(seed, subj["sample"]["index"], 1 + vi)
    nz = cam_mod.draw_nuisances(rng)
    cam, target, vdir = make_camera(subj, view, nz, size)
    az = np.deg2rad(nz["light_azimuth_deg"])
    el = np.deg2rad(nz["light_elevation_deg"])
    yaw = np.deg2rad(nz["yaw_deg"])
    h = np.array([np.cos(az + yaw) * vdir[0] - np.sin(az + yaw) * vdir[1],
                  np.sin(az + yaw) * vdir[0] + np.cos(az + yaw) * vdir[1], 0.0])
    light = np.cos(el) * h + np.array([0.0, 0.0, np.sin(el)])
    scene = Scene(skin_rgb=cam_mod.skin_rgb(nz["skin_tone"]), wall_rgb=nz["background_rgb"], floor_rgb=nz["floor_rgb"],
                  light_dir=light / np.linalg.norm(light), light_intensity=nz["light_intensity"],
                  ambient=nz["ambient_light"], wall_distance_m=nz["wall_distance_m"], view_dir=vdir, target=target)
    leg_v, leg_f = subj["leg"]
    rgb, cov = render_leg(cam, leg_v, leg_f, scene, supersample=supersample)
    depth = float(cam.to_camera(subj["calf_center"][None])[0, 2])
    ppc = cam.px_per_cm_at_depth(depth)
    info = {"px_per_cm_true": ppc, "calf_depth_cm": depth * 100.0}
    if marker:
        center = _place_marker(cam, cov, depth, nz)
        mk, card = marker_card_corners(cam, center, depth)
        brightness = nz["light_intensity"] * (nz["ambient_light"] + (1 - nz["ambient_light"]) * 0.85)
        rgb = draw_marker(rgb, mk, card, min(brightness, 1.05))
        info.update(marker_x_px=float(center[0]), marker_y_px=float(center[1]))
    else:
        info.update(marker_x_px=np.nan, marker_y_px=np.nan)
    # the calf level in the image, for checks
    uv = cam.project(np.stack([subj["calf_center"], subj["knee"]]))
    sole = cam.project(subj["leg"][0][subj["leg"][0][:, 2] < 0.005])
    info.update(calf_x_px=float(uv[0, 0]), calf_y_px=float(uv[0, 1]), knee_y_px=float(uv[1, 1]),
                sole_y_px=float(sole[:, 1].max()) if len(sole) else np.nan)
    img = finish_photo(rgb, rng, nz["noise_sigma"])
    info.update({
        "camera_distance_cm": float(np.linalg.norm((cam.position - target)[:2]) * 100.0),
        "camera_height_cm": float(cam.position[2] * 100.0),
        "roll_deg": nz["roll_deg"], "yaw_deg": nz["yaw_deg"],
        "light_azimuth_deg": nz["light_azimuth_deg"], "light_elevation_deg": nz["light_elevation_deg"],
        "light_intensity": nz["light_intensity"], "ambient_light": nz["ambient_light"],
        "skin_tone": nz["skin_tone"], "skin_rgb": cam_mod.hex_rgb(scene.skin_rgb),
        "background_rgb": cam_mod.hex_rgb(nz["background_rgb"]), "floor_rgb": cam_mod.hex_rgb(nz["floor_rgb"]),
        "wall_distance_cm": nz["wall_distance_m"] * 100.0,
        "noise_sigma": nz["noise_sigma"], "jpeg_quality": nz["jpeg_quality"],
        "marker": bool(marker), "marker_side": nz["marker_side"] if marker else "",
    })
    return img, info, cov


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def _round_floats(df: pd.DataFrame, digits: int = 5) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].round(digits)
    return out


def generate_cohort(out_dir, *, n_subjects: int = 100, seed: int = 0, size: int = 512,
                    views=VIEWS, marker: bool = True, overwrite: bool = False, progress: bool | None = None,
                    supersample: int = 2, command: str = "phantom", model=None) -> dict:
    """Write a phantom dataset to ``out_dir`` and return a summary (counts, timings, failures).

    Parameters
    ----------
    n_subjects : int
        People to generate; sexes alternate (M, F, M, ...), so an even number gives equal groups.
    seed : int
        The one seed: subject ``i`` and its photos depend only on ``(seed, i)``.
    size : int
        Image side in pixels (square images).
    views : sequence of {'lateral', 'posterior'}
    marker : bool
        Put the ArUco scale marker beside the leg (see :mod:`smi_data.scale`).
    progress : bool or None
        Show a progress bar; None: only when stderr is a terminal.
    model : AnnyBody, optional
        A loaded body model to reuse (tests); built here when None.
    """
    import sys

    from ..runs import RunRecord, atomic_write_bytes, atomic_write_csv, stage_output

    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if size < 128:
        raise ValueError(f"size must be at least 128 px, got {size}")
    views = tuple(views)
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {views}")
    stage = stage_output(out_dir, overwrite=overwrite)
    out = stage.path  # swapped into out_dir when the run ends ok
    config = {"n_subjects": n_subjects, "seed": seed, "size": size, "views": list(views), "marker": marker,
              "supersample": supersample, "generator": "smi_data.phantom", "body_model": "anny (rest pose)"}
    t_start = time.perf_counter()
    with RunRecord(out, command, config, seed, stage=stage) as rec:
        if model is None:
            from .body import AnnyBody

            model = AnnyBody(threads=1)
        t_model = time.perf_counter() - t_start
        from tqdm.auto import tqdm

        show = sys.stderr.isatty() if progress is None else progress
        manifest_rows, truth_rows, failures = [], [], {}
        (out / "images").mkdir(exist_ok=True)
        t_gen = time.perf_counter()
        for i in tqdm(range(n_subjects), desc="phantom", unit="subject", disable=not show):
            sid = subject_id(i, n_subjects)
            try:
                subj = build_subject(model, seed, i)
                rows = []
                for view in views:
                    img, info, _ = render_view(subj, view, seed=seed, size=size, marker=marker,
                                               supersample=supersample)
                    rel = f"images/{sid}_{view}.jpg"
                    atomic_write_bytes(out / rel, encode_jpeg(img, info["jpeg_quality"]))
                    rows.append((view, rel, info))
            except Exception as exc:  # skip and report; never die halfway through a cohort
                failures[sid] = f"{type(exc).__name__}: {exc}"
                continue
            r = subj["row"]
            for view, rel, info in rows:
                manifest_rows.append({"subject_id": sid, "view": view, "image": rel, "sex": r["sex"],
                                      "age": int(r["age"]), "height_cm": r["height_cm"], "weight_kg": r["weight_kg"],
                                      "smi": r["smi"], "side": r["side"], "reference_device": REFERENCE_DEVICE})
                truth_rows.append({"subject_id": sid, "view": view, "image": rel, **info, **r})
        elapsed = time.perf_counter() - t_gen
        manifest = pd.DataFrame(manifest_rows, columns=MANIFEST_COLUMNS)
        truth_df = _round_floats(pd.DataFrame(truth_rows))
        if len(manifest):
            atomic_write_csv(manifest, out / "manifest.csv")
            atomic_write_csv(truth_df, out / "truth.csv")
        n_ok = n_subjects - len(failures)
        summary = {"subjects": n_ok, "images": len(manifest), "failures": failures,
                   "model_load_s": round(t_model, 2), "generation_s": round(elapsed, 2),
                   "s_per_subject": round(elapsed / max(n_subjects, 1), 3),
                   "images_per_s": round(len(manifest) / elapsed, 3) if elapsed > 0 else None}
        if n_ok:
            sub = truth_df.drop_duplicates("subject_id")
            summary["smi_mean"] = round(float(sub["smi"].mean()), 3)
            summary["smi_sd"] = round(float(sub["smi"].std()), 3)
        rec.data["results"] = summary
        if not len(manifest):
            raise RuntimeError(f"no subject could be generated: {failures}")
    return summary
