"""Ground truth of the phantom: calf geometry from the mesh and muscle mass from limb volumes.

Every constant here is written out with its source (or marked as a modelling choice) in
docs/phantom.md. Pure numpy; no anny.
"""

from __future__ import annotations

import numpy as np

from . import geometry

# ---------------------------------------------------------------- tissue densities (kg/L = g/cm^3)
#: Skeletal muscle, adipose tissue, cortical bone (Snyder et al. 1975, ICRP 23; shared/REFERENCE.md).
RHO_MUSCLE = 1.06
RHO_ADIPOSE = 0.92
RHO_BONE = 1.90
#: Whole body including lung gas, used to turn mesh volume into body weight (a person just floats
#: with full lungs; modelling choice, approximately 1.0).
RHO_BODY = 1.00

# ---------------------------------------------------------------- limb composition (volume fractions)
#: Bone (with marrow) as a fraction of limb volume, legs and arms (modelling choice; CT cross-sections
#: of thigh and calf show 4-8 % bone).
BONE_FRACTION = {"leg": 0.07, "arm": 0.08}
#: Limb fat mass fraction relative to whole-body fat, by sex (modelling choice: men carry their fat
#: more on the trunk, women more on the limbs, the legs above all).
LIMB_FAT_RATIO = {"M": 0.85, "F": 1.05}
#: The calibration constant: ASM = ASM_CALIBRATION x appendicular lean soft tissue mass. It stands in
#: for the reference device's calibration and for what the arm cut leaves out (the shoulder cap);
#: set once so that the cohort's mean SMI is near the study's 7.0 kg/m^2 (docs/phantom.md).
ASM_CALIBRATION = 1.03

# ---------------------------------------------------------------- fat
#: Deurenberg, Weststrate & Seidell 1991 (Br J Nutr 65:105): BF% = 1.2 BMI + 0.23 age - 10.8 sex - 5.4
#: (sex 1 = male), SEE 4.1 %.
DEURENBERG = (1.2, 0.23, -10.8, -5.4)
#: The part of a person's body fat that shows in the calf: a calf that, seen in profile, bulges more
#: than expected for the person's sex and BMI (ratio of the front-to-back calf width at the widest
#: level to the front-to-back ankle width, above the line ``a + b * BMI``) goes with less fat.
#: Percentage points of body fat per unit of ratio.
FAT_PER_SHAPE = -60.0
#: Expected profile ratio: ``(a, b)`` per sex, least squares on the Anny cohort of seed 0.
SHAPE_EXPECTED = {"M": (1.482, -0.0033), "F": (1.221, 0.0093)}
#: Person-to-person variation of body fat not explained by BMI, age, sex or calf shape (points, SD);
#: it does not show in the image.
FAT_RESIDUAL_SD = 0.8
FAT_LIMITS = (4.0, 55.0)
#: Person-to-person variation of the arms' lean mass that the legs do not share (training, work,
#: handedness; Janssen et al. 2000 find the largest differences between people in the upper body).
#: Relative SD; invisible in a photo of the lower leg.
ARM_LEAN_SD = 0.08
#: Coefficient of variation of the reference device (BIA) on SMI.
DEVICE_CV = 0.02

# ---------------------------------------------------------------- calf measurement bands
#: Levels searched for the maximum calf circumference, as fractions of knee->ankle from the knee.
CALF_BAND = (0.20, 0.60)
#: Levels searched for the minimum (ankle) circumference.
ANKLE_BAND = (0.70, 0.90)
BAND_STEP = 0.005


def deurenberg_body_fat_pct(bmi, age, male):
    """Body fat (%) from BMI (kg/m^2), age (years), sex (male: 1/True) — Deurenberg 1991."""
    a, b, c, d = DEURENBERG
    return a * np.asarray(bmi, float) + b * np.asarray(age, float) + c * np.asarray(male, float) + d


def adipose_volume_fraction(fat_mass_fraction, bone_fraction):
    """Adipose volume fraction of a limb with a given fat mass fraction.

    Limb = adipose tissue (volume fraction phi) + bone (beta) + lean soft tissue (the rest, at
    muscle density). With A = rho_b beta + rho_m (1 - beta), the mass per unit volume of the limb
    at phi = 0, F = rho_f phi / (rho_f phi + A - rho_m phi) solves to
    phi = F A / (rho_f (1 - F) + F rho_m).
    """
    F = np.asarray(fat_mass_fraction, float)
    beta = bone_fraction
    A = RHO_BONE * beta + RHO_MUSCLE * (1 - beta)
    return F * A / (RHO_ADIPOSE * (1 - F) + F * RHO_MUSCLE)


def limb_muscle_kg(volume_l, fat_mass_fraction, kind: str):
    """Lean soft tissue mass (kg) of a limb of ``volume_l`` litres with limb fat mass fraction
    ``fat_mass_fraction``; ``kind`` is 'leg' or 'arm'. This is what DXA and BIA report, summed over
    the four limbs, as appendicular skeletal muscle mass."""
    beta = BONE_FRACTION[kind]
    phi = adipose_volume_fraction(fat_mass_fraction, beta)
    lean_fraction = np.clip(1.0 - phi - beta, 0.0, None)
    return RHO_MUSCLE * np.asarray(volume_l, float) * lean_fraction


def shape_excess(calf_width_lateral_cm, ankle_width_lateral_cm, bmi, sex: str):
    """Profile calf/ankle width ratio minus its expected value for the sex and BMI (dimensionless)."""
    a, b = SHAPE_EXPECTED[sex]
    ratio = np.asarray(calf_width_lateral_cm, float) / np.asarray(ankle_width_lateral_cm, float)
    return ratio - (a + b * np.asarray(bmi, float))


def body_fat_pct(bmi, age, sex: str, shape_excess_value, residual):
    """The phantom's body fat (%): Deurenberg + a term that shows in the calf + an invisible residual."""
    bf = (deurenberg_body_fat_pct(bmi, age, sex == "M") + FAT_PER_SHAPE * np.asarray(shape_excess_value, float)
          + residual)
    return np.clip(bf, *FAT_LIMITS)


def composition(limb_volumes_l: dict, *, height_m: float, body_fat: float, sex: str,
                arm_factor: float = 1.0) -> dict:
    """ASM (kg) and SMI (kg/m^2) from the four limb volumes and the body fat percentage.

    ``arm_factor`` scales the arms' lean mass (the upper-body variation the legs do not show).
    """
    F = LIMB_FAT_RATIO[sex] * body_fat / 100.0
    legs = [limb_muscle_kg(limb_volumes_l[f"leg_{s}"], F, "leg") for s in "LR"]
    arms = [limb_muscle_kg(limb_volumes_l[f"arm_{s}"], F, "arm") for s in "LR"]
    legs = [ASM_CALIBRATION * x for x in legs]
    arms = [ASM_CALIBRATION * arm_factor * x for x in arms]
    asm = float(sum(legs) + sum(arms))
    return {"asm_kg": asm, "leg_muscle_kg": float(sum(legs)), "arm_muscle_kg": float(sum(arms)),
            "smi_true": asm / height_m**2}


def _basis(axis: np.ndarray):
    a = axis / np.linalg.norm(axis)
    ap = np.array([0.0, 1.0, 0.0]) - a[1] * a  # front-to-back (Anny's y), square to the axis
    ap /= np.linalg.norm(ap)
    ml = np.cross(a, ap)
    return a, ap, ml


def slice_measures(leg_v, leg_f, knee, ankle, frac: float) -> dict:
    """Circumference (hull perimeter), widths and centre of the slice square to knee->ankle at ``frac``.

    Lengths in cm; ``center`` in metres (world).
    """
    knee, ankle = np.asarray(knee, float), np.asarray(ankle, float)
    a, ap, ml = _basis(ankle - knee)
    p = knee + frac * (ankle - knee)
    pts = geometry.slice_points(leg_v, leg_f, p, a)
    if len(pts) < 3:
        return {"circ_cm": np.nan, "width_ap_cm": np.nan, "width_ml_cm": np.nan, "center": p}
    q = np.stack([(pts - p) @ ap, (pts - p) @ ml], axis=1)
    circ = geometry.hull_perimeter(q) * 100.0
    lo, hi = q.min(0), q.max(0)
    center = p + 0.5 * (lo[0] + hi[0]) * ap + 0.5 * (lo[1] + hi[1]) * ml
    return {"circ_cm": circ, "width_ap_cm": (hi[0] - lo[0]) * 100.0, "width_ml_cm": (hi[1] - lo[1]) * 100.0,
            "center": center}


def calf_measures(leg_v, leg_f, knee, ankle) -> dict:
    """Maximum calf circumference and the widths at its level; the ankle's minimum.

    Returns a dict with ``calf_circ_cm``, ``calf_width_lateral_cm`` (front-to-back: what a lateral
    photo shows), ``calf_width_posterior_cm`` (side-to-side: what a posterior photo shows),
    ``calf_level_frac``, ``calf_center`` (m), ``ankle_circ_cm``, ``ankle_width_lateral_cm``,
    ``ankle_width_posterior_cm``, ``ankle_level_frac``, ``shank_length_cm``.
    """
    def scan(band, best):
        levels = np.arange(band[0], band[1] + 1e-9, BAND_STEP)
        res = [slice_measures(leg_v, leg_f, knee, ankle, float(t)) for t in levels]
        circ = np.array([r["circ_cm"] for r in res])
        i = int(best(np.where(np.isfinite(circ), circ, np.nan)))
        return float(levels[i]), res[i]

    tc, c = scan(CALF_BAND, np.nanargmax)
    ta, k = scan(ANKLE_BAND, np.nanargmin)
    return {
        "calf_circ_cm": c["circ_cm"], "calf_width_lateral_cm": c["width_ap_cm"],
        "calf_width_posterior_cm": c["width_ml_cm"], "calf_level_frac": tc, "calf_center": c["center"],
        "ankle_circ_cm": k["circ_cm"], "ankle_width_lateral_cm": k["width_ap_cm"],
        "ankle_width_posterior_cm": k["width_ml_cm"], "ankle_level_frac": ta,
        "shank_length_cm": float(np.linalg.norm(np.asarray(ankle) - np.asarray(knee)) * 100.0),
    }
