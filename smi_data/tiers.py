"""Information tiers: what a model is told about the person besides the photos.

A fair comparison puts models side by side only when they know the same things:

=======  ==========================================  =====================================
tier     covariates (sample-table columns)           the setting
=======  ==========================================  =====================================
photo    none                                        the study's: the photos and nothing else
basic    ``sex``, ``age``, ``height_cm``             what every clinic records
weight   basic + ``weight_kg``                       a clinic with a scale
=======  ==========================================  =====================================

:func:`restrict_to_tier` is how the benchmark enforces a tier: it keeps only the
image columns, the identifiers and the tier's covariates of a sample table, so a
model cannot use what its tier does not give it, whatever its own settings say.
"""

from __future__ import annotations

from typing import Iterable

#: Tiers in order of information.
TIERS = ("photo", "basic", "weight")
#: Covariate columns of the sample table that each tier gives a model.
TIER_COVARIATES: dict[str, tuple[str, ...]] = {
    "photo": (),
    "basic": ("sex", "age", "height_cm"),
    "weight": ("sex", "age", "height_cm", "weight_kg"),
}
#: Columns every tier keeps: identifiers and what the photos themselves give.
PHOTO_COLUMNS = ("sample_id", "subject_id", "view", "side", "image_lateral", "image_posterior",
                 "px_per_cm_lateral", "px_per_cm_posterior")
#: ``--tiers`` words besides tier names.
AUTO, ALL = "auto", "all"


class TierError(ValueError):
    """An unknown tier name."""


def check_tier(tier: str) -> str:
    """``tier`` if it names a tier, else :class:`TierError` listing the tiers."""
    if tier not in TIER_COVARIATES:
        raise TierError(f"unknown tier {tier!r}; choose from {', '.join(TIERS)}")
    return tier


def tier_covariates(tier: str) -> tuple[str, ...]:
    """Sample-table covariate columns a model at ``tier`` receives."""
    return TIER_COVARIATES[check_tier(tier)]


def tier_columns(tier: str) -> tuple[str, ...]:
    """Every sample-table column a model at ``tier`` may see (labels excluded)."""
    return PHOTO_COLUMNS + tier_covariates(tier)


def restrict_to_tier(samples, tier: str):
    """The sample table with only the columns a model at ``tier`` may see.

    Everything else (other covariates, the label ``smi``, pass-through extra columns
    that might carry information about the person) is dropped. Column order is kept.
    """
    allowed = set(tier_columns(tier))
    return samples[[c for c in samples.columns if c in allowed]]


def parse_tiers(value: str | Iterable[str]) -> list[str] | str:
    """``'photo,weight'`` -> ``['photo', 'weight']``; ``'auto'`` and ``'all'`` stay as they are."""
    from .params import parse_name_list

    return parse_name_list(value, TIERS, keywords=(AUTO, ALL), error=TierError, what="tier")
