"""AWGS 2019 cut-offs for low muscle mass and calf-circumference screening.

Source
------
Chen L-K, Woo J, Assantachai P, et al. Asian Working Group for Sarcopenia: 2019
Consensus Update on Sarcopenia Diagnosis and Treatment. *J Am Med Dir Assoc*
2020; 21(3): 300-307.e2. doi:10.1016/j.jamda.2019.12.012

Low muscle mass is the skeletal muscle index (SMI = appendicular skeletal muscle
mass / height², kg/m²) **strictly below** the sex- and device-specific cut-off:

==========  ===========  ===========
device      men          women
==========  ===========  ===========
DXA         < 7.0        < 5.4
BIA         < 7.0        < 5.7
==========  ===========  ===========

Calf-circumference case finding: < 34 cm in men, < 33 cm in women.

Missing reference device
------------------------
The manifest's ``reference_device`` column is optional. Where it is absent or
empty (``None``, NaN, ``""``, or the strings ``"nan"``/``"None"`` that a typed
manifest may carry) the **BIA** cut-offs are used: the study we reproduce
measured SMI in a rehabilitation clinic, where BIA is the usual device, and the
BIA cut-off for women (5.7) is the more inclusive one. Men's cut-offs do not
depend on the device.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "AWGS2019_CITATION",
    "AWGS2019_DOI",
    "SMI_CUTOFFS_KG_M2",
    "CALF_CIRCUMFERENCE_CUTOFFS_CM",
    "DEFAULT_DEVICE",
    "SEXES",
    "DEVICES",
    "normalise_device",
    "smi_cutoff",
    "smi_cutoffs",
    "low_muscle_mass",
    "calf_cutoff_cm",
]

AWGS2019_DOI = "10.1016/j.jamda.2019.12.012"
AWGS2019_CITATION = (
    "Chen L-K, et al. Asian Working Group for Sarcopenia: 2019 Consensus Update on "
    "Sarcopenia Diagnosis and Treatment. J Am Med Dir Assoc 2020;21(3):300-307.e2. "
    f"doi:{AWGS2019_DOI}"
)

SEXES = ("M", "F")
DEVICES = ("BIA", "DXA")
DEFAULT_DEVICE = "BIA"

#: SMI cut-offs (kg/m²) keyed by (device, sex); low muscle mass is SMI < cut-off.
SMI_CUTOFFS_KG_M2: dict[tuple[str, str], float] = {
    ("DXA", "M"): 7.0,
    ("DXA", "F"): 5.4,
    ("BIA", "M"): 7.0,
    ("BIA", "F"): 5.7,
}

#: Calf-circumference screening cut-offs (cm) keyed by sex; positive screen is < cut-off.
CALF_CIRCUMFERENCE_CUTOFFS_CM: dict[str, float] = {"M": 34.0, "F": 33.0}

_MISSING_STRINGS = {"", "nan", "none", "<na>", "null"}


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip().lower() in _MISSING_STRINGS:
        return True
    try:
        import pandas as pd  # pandas is a core dependency; pd.NA needs this check

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def normalise_device(device) -> str:
    """Return ``"BIA"`` or ``"DXA"`` for a device value; missing values give BIA.

    Parameters
    ----------
    device : str or None
        Reference device, case-insensitive (``"bia"``, ``" DXA "``). ``None``, NaN,
        ``""``, ``"nan"`` and ``"None"`` mean *not recorded* and give
        :data:`DEFAULT_DEVICE` (BIA).

    Raises
    ------
    ValueError
        For any other value.
    """
    if _is_missing(device):
        return DEFAULT_DEVICE
    text = str(device).strip().upper()
    if text not in DEVICES:
        raise ValueError(
            f"unknown reference device {device!r}: expected one of {', '.join(DEVICES)} "
            "(or empty for the BIA default)"
        )
    return text


def _normalise_sex(sex) -> str:
    text = "" if _is_missing(sex) else str(sex).strip().upper()
    if text not in SEXES:
        raise ValueError(f"unknown sex {sex!r}: expected 'M' or 'F'")
    return text


def smi_cutoff(sex, device="BIA") -> float:
    """AWGS 2019 low-muscle-mass SMI cut-off for one person.

    Parameters
    ----------
    sex : {'M', 'F'}
        Case-insensitive.
    device : {'BIA', 'DXA'} or None, default 'BIA'
        Reference device of the SMI measurement; missing gives BIA.

    Returns
    -------
    float
        Cut-off in kg/m²; low muscle mass is ``SMI < cutoff``.

    Raises
    ------
    ValueError
        For an unknown sex or device.

    Examples
    --------
    >>> smi_cutoff("F", "DXA")
    5.4
    """
    return SMI_CUTOFFS_KG_M2[(normalise_device(device), _normalise_sex(sex))]


def smi_cutoffs(sex, device="BIA") -> np.ndarray:
    """Vectorised :func:`smi_cutoff`.

    Parameters
    ----------
    sex : str or array_like of str, shape (n,)
        'M' or 'F' per person; a scalar applies to everyone.
    device : str, None or array_like, shape (n,), default 'BIA'
        Device per person or one for all; missing entries give BIA.

    Returns
    -------
    ndarray of float, shape (n,)
        Cut-offs in kg/m² (shape () when both arguments are scalars).
    """
    sex_arr = np.asarray(sex, dtype=object)
    dev_arr = np.asarray(device, dtype=object)
    try:
        sex_b, dev_b = np.broadcast_arrays(sex_arr, dev_arr)
    except ValueError:
        raise ValueError(
            f"sex has shape {sex_arr.shape} but device has shape {dev_arr.shape}: "
            "give one device per person or a single device"
        ) from None
    out = np.empty(sex_b.shape, dtype=float)
    for idx in np.ndindex(sex_b.shape):
        try:
            out[idx] = smi_cutoff(sex_b[idx], dev_b[idx])
        except ValueError as err:
            where = f" at index {idx[0]}" if idx else ""
            raise ValueError(f"{err}{where}") from None
    return out


def low_muscle_mass(smi, sex, device="BIA") -> np.ndarray:
    """Flag low muscle mass by the AWGS 2019 cut-offs.

    Parameters
    ----------
    smi : array_like of float, shape (n,)
        Skeletal muscle index in kg/m².
    sex : str or array_like of str, shape (n,)
        'M' or 'F'.
    device : str, None or array_like, shape (n,), default 'BIA'
        Reference device; missing gives BIA.

    Returns
    -------
    ndarray of bool, shape (n,)
        ``smi < cutoff(sex, device)``. NaN SMI gives False.

    Examples
    --------
    >>> low_muscle_mass([6.9, 7.0, 5.5], ["M", "M", "F"], "DXA").tolist()
    [True, False, False]
    """
    smi_arr = np.asarray(smi, dtype=float)
    cut = smi_cutoffs(sex, device)
    try:
        return np.asarray(smi_arr < cut, dtype=bool)
    except ValueError:
        raise ValueError(
            f"smi has shape {smi_arr.shape} but the cut-offs have shape {cut.shape}: "
            "give one sex (and device) per SMI value or a single one"
        ) from None


def calf_cutoff_cm(sex) -> float:
    """AWGS 2019 calf-circumference case-finding cut-off (cm): 34 men, 33 women.

    A circumference strictly below the cut-off is a positive screen.
    """
    return CALF_CIRCUMFERENCE_CUTOFFS_CM[_normalise_sex(sex)]
