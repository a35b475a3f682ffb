"""Refusal reasons are counted per model, tier and view in the benchmark report."""

import pandas as pd
import pytest

from smi_image.quality import REASONS, reason_code

MESSAGES = {
    "no_leg": "refused: no leg found: the region found is 1.8 times as long as wide, not leg-shaped",
    "legs_merged": "refused: the two legs merge in the photo and cannot be told apart; stand with the feet apart",
    "unsure": "refused: segmentation unsure: certainty 0.41 along the leg's outline (< 0.5)",
    "too_dark": "refused: too dark: the leg's mean brightness is 5/255",
    "overexposed": "refused: overexposed: 80% of the leg is clipped white",
    "blurred": "refused: blurred: the leg's outline is soft (sharpness 0.050/px < 0.085)",
    "cut_by_frame": "refused: leg cut by the frame: it reaches the photo's bottom edge, so the sole is outside",
    "no_marker": "refused: marker expected but not found: place the printed ArUco card (5 cm) beside the leg",
    "tilted": "refused: the leg's axis is tilted 41.0 degrees from vertical (more than 30)",
    "upside_down": "refused: the photo looks upside down (the foot at the top: P = 0.998); turn it the right way up",
}


@pytest.mark.parametrize("code", sorted(REASONS))
def test_each_refusal_message_gives_its_code(code):
    assert reason_code(MESSAGES[code]) == code


def test_failures_that_are_not_refusals():
    assert reason_code("") == "" and reason_code(None) == ""
    assert reason_code("no lateral image") == "other"


def test_refusal_table_counts_reasons_per_model_and_view():
    from benchmarks.report import refusal_table

    rows = []
    for repeat in (0, 1):
        for i in range(10):
            fail = MESSAGES["no_leg"] if i < 2 else (MESSAGES["unsure"] if i == 2 else "")
            rows.append({"model": "xgb-features", "tier": "weight", "view": "lateral", "repeat": repeat,
                         "fold": 0, "sample_id": f"S{i}", "failure": fail})
            rows.append({"model": "xgb-features", "tier": "weight", "view": "posterior", "repeat": repeat,
                         "fold": 0, "sample_id": f"S{i}", "failure": "no posterior image" if i == 0 else ""})
    t = refusal_table(pd.DataFrame(rows), ["xgb-features"]).set_index("view")
    assert t.loc["lateral", "photos"] == 10 and t.loc["lateral", "refused"] == 3
    assert t.loc["lateral", "refused %"] == 30.0 and t.loc["lateral", "reasons"] == "no_leg 2, unsure 1"
    assert t.loc["posterior", "refused"] == 0 and t.loc["posterior", "reasons"] == "other 1"
