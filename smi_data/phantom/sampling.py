"""Who is in the phantom cohort: demographics and body-model parameters, drawn per subject.

Each subject ``i`` has its own generator seeded with ``(seed, i, 0)`` (each view with
``(seed, i, 1 + view index)``), so subject ``i`` is the same person whatever the cohort size.
Distributions and sources: docs/phantom.md.
"""

from __future__ import annotations

import numpy as np

#: Age quantiles (years): the study's median 37.5 and IQR 28-44, adult range 20-65.
AGE_QUANTILES = ((0.0, 20.0), (0.25, 28.0), (0.5, 37.5), (0.75, 44.0), (1.0, 65.0))
#: Standing height, cm, mean and SD: Japanese adults aged 20-49 (National Health and Nutrition Survey).
HEIGHT_CM = {"M": (171.5, 5.8), "F": (158.3, 5.4)}
#: BMI, kg/m^2, mean and SD, and the range kept (same survey, rounded).
BMI = {"M": (23.6, 3.3), "F": (21.4, 3.1)}
BMI_RANGE = {"M": (17.5, 34.0), "F": (16.5, 32.0)}
#: Probability that the non-dominant (photographed) leg is the left one (most people kick with the right).
P_LEFT_NON_DOMINANT = 0.8
#: Anny ``proportions`` range; ``muscle`` is drawn over its whole range [0, 1].
PROPORTIONS_RANGE = (0.25, 0.75)


def subject_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(stream)])


def age_from_quantile(u):
    q, a = zip(*AGE_QUANTILES)
    return np.interp(u, q, a)


def sample_subject(seed: int, index: int) -> dict:
    """Demographics, targets and hidden variation of subject ``index`` (sexes alternate M, F, ...)."""
    rng = subject_rng(seed, index, 0)
    sex = "M" if index % 2 == 0 else "F"
    age = float(np.round(age_from_quantile(rng.uniform())))
    mu, sd = HEIGHT_CM[sex]
    height = float(np.clip(rng.normal(mu, sd), mu - 2.5 * sd, mu + 2.5 * sd))
    mu, sd = BMI[sex]
    bmi = float(np.clip(rng.normal(mu, sd), *BMI_RANGE[sex]))
    return {
        "index": index,
        "sex": sex,
        "age": age,
        "target_height_cm": height,
        "target_bmi": bmi,
        "muscle": float(rng.uniform(0.0, 1.0)),
        "proportions": float(rng.uniform(*PROPORTIONS_RANGE)),
        "side": "L" if rng.uniform() < P_LEFT_NON_DOMINANT else "R",
        "fat_residual_z": float(rng.normal()),
        "device_error_z": float(rng.normal()),
        # drawn last so that adding it left every earlier draw (and every image) unchanged
        "arm_muscle_z": float(rng.normal()),
    }
