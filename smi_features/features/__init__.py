"""Feature families, one module each (pyradiomics style): width profile, shape, curvature,
paired (two views), covariates and body-size indices. :func:`all_feature_docs` gathers their records.
"""

from __future__ import annotations

from . import covariates, curvature, indices, paired, shape, width_profile
from .base import FeatureDoc, LevelSettings

#: Prefixes of the per-view feature columns.
VIEW_PREFIX = {"lateral": "lat_", "posterior": "post_"}
#: Groups the regressor can switch on and off.
GROUPS = ("width", "area", "curvature", "covariates")


def view_feature_docs(levels: LevelSettings | None = None) -> dict[str, FeatureDoc]:
    """Per-view feature records, unprefixed (width profile, shape, curvature)."""
    n = (levels or LevelSettings()).n_levels
    docs = dict(width_profile.feature_docs(n))
    docs.update(shape.FEATURES)
    docs.update(curvature.FEATURES)
    return docs


def all_feature_docs(levels: LevelSettings | None = None) -> dict[str, FeatureDoc]:
    """Every model column's record, keyed by the column name (with ``_cm``-style unit suffixes)."""
    out: dict[str, FeatureDoc] = {}
    for _view, prefix in VIEW_PREFIX.items():
        for name, doc in view_feature_docs(levels).items():
            out[column_name(prefix, name, doc)] = doc
    for name, doc in paired.FEATURES.items():
        out[column_name("", name, doc)] = doc
    out["calf_circumference_cm"] = FeatureDoc(
        title="Calf circumference",
        measures="the tape-measure quantity: from the ellipse when both views exist, otherwise from the one "
                 "view's maximum calf width under a circular cross-section",
        formula="pair_calf_circ if both views, else pi * calf_max_width", unit="cm", dim=1, group="width",
        views="any")
    out.update(covariates.FEATURES)
    out.update(indices.FEATURES)
    return out


#: Family (feature module) of each column, for grouped SHAP: readable block names.
FAMILY_NAMES = {"width_profile": "width profile", "shape": "area and outline", "curvature": "curvature",
                "paired": "two-view (ellipse, volume)", "covariates": "covariates",
                "indices": "size indices (leg / height)"}


def feature_families(levels: LevelSettings | None = None) -> dict[str, str]:
    """``{column: family name}`` for every model column (:data:`FAMILY_NAMES`).

    Per-view columns of one family form one block whatever the view; the covariates are
    one block; the indices (leg dimension over height) are a block of their own.
    """
    n = (levels or LevelSettings()).n_levels
    per_view = [("width_profile", width_profile.feature_docs(n)), ("shape", shape.FEATURES),
                ("curvature", curvature.FEATURES)]
    out: dict[str, str] = {}
    for prefix in VIEW_PREFIX.values():
        for fam, docs in per_view:
            for name, doc in docs.items():
                out[column_name(prefix, name, doc)] = FAMILY_NAMES[fam]
    for name, doc in paired.FEATURES.items():
        out[column_name("", name, doc)] = FAMILY_NAMES["paired"]
    out["calf_circumference_cm"] = FAMILY_NAMES["width_profile"]
    out.update({c: FAMILY_NAMES["covariates"] for c in covariates.FEATURES})
    out.update({c: FAMILY_NAMES["indices"] for c in indices.FEATURES})
    return out


UNIT_SUFFIX = {"cm": "_cm", "cm^2": "_cm2", "cm^3": "_cm3", "1/cm": "_per_cm", "1/cm^2": "_per_cm2"}


def column_name(prefix: str, name: str, doc: FeatureDoc) -> str:
    """Column name of a feature: prefix + name + unit suffix (``lat_calf_max_width_cm``)."""
    return f"{prefix}{name}{UNIT_SUFFIX.get(doc.unit, '')}"


def reference_markdown(levels: LevelSettings | None = None) -> str:
    """Every model column as a markdown table: name, group, view, unit, what it measures, formula.

    ``python -c "from smi_features.features import reference_markdown as r; print(r())"``
    prints the feature reference for the documentation.
    """
    lines = ["| column | group | view | unit | measures | formula |", "|---|---|---|---|---|---|"]
    seen: set[str] = set()
    for col, d in all_feature_docs(levels).items():
        name = col
        for prefix in VIEW_PREFIX.values():
            if col.startswith(prefix):
                name = "{lat_,post_}" + col[len(prefix):]
        if name in seen:
            continue
        seen.add(name)
        cells = [f"`{name}`", d.group, d.views, d.unit, f"{d.title}: {d.measures}", f"`{d.formula}`"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"
