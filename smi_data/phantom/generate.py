"""Generate a phantom dataset: sample people, build their Anny bodies, compute the truth, render photos.

``generate_cohort(out_dir, n_subjects=100, seed=0, scene="studio")`` writes ``manifest.csv`` (the
project's dataset format, see :mod:`smi_data.manifest`), ``images/<subject_id>_<view>.jpg``,
``truth.csv`` (what the images were made from) and ``run.json``; the ``clinic`` and ``wild`` scenes
(:mod:`.scene`) add ``labels/<same stem>.png``, and ``retakes > 1`` a ``take`` column and
``_t<take>`` in the file names. The same seed gives the same files, byte for byte, on a CPU.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from . import camera as cam_mod
from . import sampling, truth
from . import scene as scene_mod
from .render import Scene, draw_marker, finish_photo, look_at_camera, marker_card_corners, render_leg

VIEWS = ("lateral", "posterior")
SCENES = ("studio",) + scene_mod.CONDITIONS
#: Default photo size per scene: (width, height) in pixels.
DEFAULT_SIZE = {"studio": (512, 512), "clinic": (600, 800), "wild": (600, 800)}
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


def render_view(subj: dict, view: str, *, seed: int, size: int, marker: bool, supersample: int = 2,
                take: int = 1):
    """Render one studio photo. Returns ``(bgr uint8 image, truth-row dict for the image, coverage mask)``.

    Take 1 draws its nuisances from the stream ``1 + view index`` (as data/phantom-v1); a retake ``k > 1``
    from the scene module's photo stream for ``(k, view)``.
    """
    vi = VIEWS.index(view)
    stream = 1 + vi if take == 1 else scene_mod.photo_stream(take, vi)
    rng = sampling.subject_rng(seed, subj["sample"]["index"], stream)
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


def photo_size(scene: str, size) -> tuple[int, int]:
    """``(width, height)`` from ``size``: None (the scene's default), an int (studio: the square's side;
    scenes: the width of a 3:4 portrait), ``(w, h)`` or a string ``"WxH"``."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    if size is None:
        w, h = DEFAULT_SIZE[scene]
    elif isinstance(size, str):
        parts = size.lower().split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"size must be an integer or WIDTHxHEIGHT, got {size!r}") from None
        if len(nums) == 1:
            return photo_size(scene, nums[0])
        if len(nums) != 2:
            raise ValueError(f"size must be an integer or WIDTHxHEIGHT, got {size!r}")
        w, h = nums
    elif isinstance(size, (int, np.integer)):
        w, h = (int(size), int(size)) if scene == "studio" else (int(size), int(round(size * 4 / 3)))
    else:
        w, h = (int(x) for x in size)
    if min(w, h) < 128:
        raise ValueError(f"size must be at least 128 px on each side, got {w}x{h}")
    if scene == "studio" and w != h:
        raise ValueError(f"the studio scene draws square photos; got {w}x{h}")
    return w, h


def image_stem(sid: str, view: str, take: int, retakes: int) -> str:
    """File stem of one photo: ``P001_lateral``; with retakes ``P001_t2_lateral``."""
    return f"{sid}_{view}" if retakes == 1 else f"{sid}_t{take}_{view}"


def encode_png(labels: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def render_subject(subj: dict, *, seed: int, scene: str, views, take: int, retakes: int, width: int,
                   height: int, marker: bool, supersample: int, sid: str, one_leg: bool = False) -> list:
    """Every photo of one take of a subject: ``[(view, files {relpath: bytes}, truth info)]``."""
    out = []
    for view in views:
        stem = image_stem(sid, view, take, retakes)
        rel = f"images/{stem}.jpg"
        if scene == "studio":
            img, info, _ = render_view(subj, view, seed=seed, size=width, marker=marker, supersample=supersample,
                                       take=take)
            files = {rel: encode_jpeg(img, info["jpeg_quality"])}
        else:
            img, labels, info, quality = scene_mod.render_scene_view(
                subj, view, seed=seed, take=take, condition=scene, width=width, height=height,
                supersample=supersample, marker=marker, one_leg=one_leg)
            lab_rel = f"labels/{stem}.png"
            files = {rel: encode_jpeg(img, quality), lab_rel: encode_png(labels)}
            info = {"label_map": lab_rel, **info}
        out.append((view, rel, files, info))
    return out


def generate_cohort(out_dir, *, n_subjects: int = 100, seed: int = 0, size=None,
                    views=VIEWS, marker: bool = True, overwrite: bool = False, progress: bool | None = None,
                    supersample: int = 2, command: str = "phantom", model=None, scene: str = "studio",
                    retakes: int = 1, one_leg: bool = False) -> dict:
    """Write a phantom dataset to ``out_dir`` and return a summary (counts, timings, failures).

    Parameters
    ----------
    n_subjects : int
        People to generate; sexes alternate (M, F, M, ...), so an even number gives equal groups.
    seed : int
        The one seed: subject ``i`` and its photos depend only on ``(seed, i)``; another seed gives
        other people (so training renders use seeds that no bundled or test cohort uses).
    size : int, (width, height), "WxH" or None
        Photo size (see :func:`photo_size`); None: 512 x 512 for ``studio``, 600 x 800 for scenes.
    views : sequence of {'lateral', 'posterior'}
    marker : bool
        Put the ArUco scale marker beside the leg (see :mod:`smi_data.scale`). In scenes it is in most
        photos; where it is not, the manifest's ``px_per_cm`` holds the true scale at the calf.
    scene : {'studio', 'clinic', 'wild'}
        ``studio``: one lower leg on a plain wall (data/phantom-v1's look); ``clinic``/``wild``: whole
        scenes with a label map per photo (:mod:`.scene`).
    retakes : int
        Photo sessions per subject; with more than one, the manifest gets a ``take`` column and the
        file names a ``_t<take>`` part.
    one_leg : bool
        Scenes only: the other leg left out of every photo (:func:`.scene.render_scene_view`).
    progress : bool or None
        Show a progress bar; None: only when stderr is a terminal.
    model : AnnyBody, optional
        A loaded body model to reuse (tests); built here when None.
    """
    import sys

    from ..runs import RunRecord, atomic_write_bytes, atomic_write_csv, stage_output

    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    width, height = photo_size(scene, size)
    if not 1 <= int(retakes) <= 99:
        raise ValueError(f"retakes must be between 1 and 99, got {retakes}")
    retakes = int(retakes)
    views = tuple(views)
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {views}")
    if one_leg and scene == "studio":
        raise ValueError("one_leg is for the scenes (clinic, wild); a studio photo shows one leg already")
    stage = stage_output(out_dir, overwrite=overwrite)
    out = stage.path  # swapped into out_dir when the run ends ok
    config = {"n_subjects": n_subjects, "seed": seed, "size": width if scene == "studio" else [width, height],
              "views": list(views), "marker": marker, "supersample": supersample, "generator": "smi_data.phantom",
              "body_model": "anny (rest pose)"}
    if scene != "studio" or retakes > 1:
        config.update(scene=scene, retakes=retakes)
    if one_leg:
        config.update(one_leg=True)
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
        if scene != "studio":
            (out / "labels").mkdir(exist_ok=True)
        t_gen = time.perf_counter()
        for i in tqdm(range(n_subjects), desc="phantom", unit="subject", disable=not show):
            sid = subject_id(i, n_subjects)
            try:
                subj = build_subject(model, seed, i)
                if scene != "studio":
                    subj["scene_body"] = scene_mod.scene_body(model, subj["body"])
                rows = []
                for take in range(1, retakes + 1):
                    for view, rel, files, info in render_subject(
                            subj, seed=seed, scene=scene, views=views, take=take, retakes=retakes, width=width,
                            height=height, marker=marker, supersample=supersample, sid=sid, one_leg=one_leg):
                        for path, data in files.items():
                            atomic_write_bytes(out / path, data)
                        rows.append((take, view, rel, info))
            except Exception as exc:  # skip and report; never die halfway through a cohort
                failures[sid] = f"{type(exc).__name__}: {exc}"
                continue
            r = subj["row"]
            for take, view, rel, info in rows:
                m = {"subject_id": sid, "view": view, "image": rel, "sex": r["sex"], "age": int(r["age"]),
                     "height_cm": r["height_cm"], "weight_kg": r["weight_kg"], "smi": r["smi"], "side": r["side"],
                     "reference_device": REFERENCE_DEVICE}
                if retakes > 1:
                    m["take"] = take
                if scene != "studio":  # the true scale where no marker is in the photo
                    m["px_per_cm"] = "" if info["marker"] else round(float(info["px_per_cm_true"]), 4)
                manifest_rows.append(m)
                t_row = {"subject_id": sid, "view": view, "image": rel}
                if retakes > 1:
                    t_row["take"] = take
                truth_rows.append({**t_row, **info, **r})
        elapsed = time.perf_counter() - t_gen
        columns = MANIFEST_COLUMNS + (["take"] if retakes > 1 else []) + (["px_per_cm"] if scene != "studio" else [])
        manifest = pd.DataFrame(manifest_rows, columns=columns)
        truth_df = _round_floats(pd.DataFrame(truth_rows))
        if len(manifest):
            atomic_write_csv(manifest, out / "manifest.csv")
            atomic_write_csv(truth_df, out / "truth.csv")
        n_ok = n_subjects - len(failures)
        summary = {"subjects": n_ok, "images": len(manifest), "failures": failures,
                   "model_load_s": round(t_model, 2), "generation_s": round(elapsed, 2),
                   "s_per_subject": round(elapsed / max(n_subjects, 1), 3),
                   "s_per_image": round(elapsed / max(len(manifest), 1), 3),
                   "images_per_s": round(len(manifest) / elapsed, 3) if elapsed > 0 else None}
        if n_ok:
            sub = truth_df.drop_duplicates("subject_id")
            summary["smi_mean"] = round(float(sub["smi"].mean()), 3)
            summary["smi_sd"] = round(float(sub["smi"].std()), 3)
        if scene != "studio" and len(truth_df):
            summary["marker_share"] = round(float(truth_df["marker"].mean()), 3)
        rec.data["results"] = summary
        if not len(manifest):
            raise RuntimeError(f"no subject could be generated: {failures}")
    return summary
