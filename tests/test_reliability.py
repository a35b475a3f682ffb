"""Test-retest reliability: ICC against Shrout & Fleiss 1979, the other statistics, the command on repeat photos."""

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from benchmarks.reliability import (MEASURES, ReliabilityError, icc, read_retakes, reliability_stats,
                                    truth_decomposition, worst_takes)
from smi_data.toy import make_toy_dataset

# Shrout & Fleiss 1979 (Psychol Bull 86:420), Table 2: 6 targets rated by 4 judges
SF_RATINGS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
# their Table 4: ICC(2,1) = .29, ICC(3,1) = .71 (ICC(1,1) .17; ICC(2,4) .62; ICC(3,4) .91)


def sf_long():
    return pd.DataFrame([{"subject_id": f"t{i}", "take": j + 1, "value": v}
                         for i, row in enumerate(SF_RATINGS) for j, v in enumerate(row)])


def test_icc_matches_the_shrout_fleiss_worked_example():
    res = icc(sf_long())
    assert round(res["icc21"], 2) == 0.29
    assert round(res["icc31"], 2) == 0.71
    # the unrounded CIs are pingouin's, which rounds to two decimals
    assert ([round(res["icc21_lower"], 2), round(res["icc21_upper"], 2)]
            == pytest.approx(res["pingouin_ci21"], abs=0.006))
    assert ([round(res["icc31_lower"], 2), round(res["icc31_upper"], 2)]
            == pytest.approx(res["pingouin_ci31"], abs=0.006))
    assert res["icc21_lower"] < res["icc21"] < res["icc21_upper"]
    assert res["icc31_lower"] < res["icc31"] < res["icc31_upper"]


def test_sem_mdc_cv_and_bland_altman_on_known_numbers():
    # three subjects, two takes; take 2 is take 1 + (+0.2, -0.2, +0.2)
    long = pd.DataFrame({"subject_id": ["a", "a", "b", "b", "c", "c"], "take": [1, 2] * 3,
                         "value": [10.0, 10.2, 20.0, 19.8, 30.0, 30.2]})
    r = reliability_stats(long)
    # each subject's variance of two values differing by 0.2 is 0.02
    assert r["sem"] == pytest.approx(math.sqrt(0.02))
    assert r["mdc95"] == pytest.approx(1.96 * math.sqrt(2) * math.sqrt(0.02))
    cv = 100 * math.sqrt(np.mean([0.02 / 10.1 ** 2, 0.02 / 19.9 ** 2, 0.02 / 30.1 ** 2]))
    assert r["cv_within_pct"] == pytest.approx(cv)
    assert r["ba_bias"] == pytest.approx(0.2 / 3)
    sd = np.std([0.2, -0.2, 0.2], ddof=1)
    assert r["ba_loa_upper"] == pytest.approx(0.2 / 3 + 1.96 * sd)
    assert r["icc21"] > 0.99 and r["n_subjects"] == 3
    # a subject missing a take is left out, and counted
    r2 = reliability_stats(pd.concat([long, pd.DataFrame({"subject_id": ["d"], "take": [1], "value": [5.0]})]))
    assert r2["n_left_out"] == 1 and r2["sem"] == pytest.approx(r["sem"])


@pytest.fixture(scope="module")
def retakes(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("rt") / "ds", 8, seed=11, takes=2, views=("lateral",),
                            max_roll_deg=2)


pytestmark = pytest.mark.usefixtures("shared_cache")


def test_toy_retakes_share_the_body_and_differ_in_the_camera(retakes):
    man = pd.read_csv(retakes / "manifest.csv")
    truth = pd.read_csv(retakes / "truth.csv")
    assert sorted(man["take"].unique()) == [1, 2]
    body = ["sex", "age", "height_cm", "weight_kg", "smi"]
    assert (man.groupby("subject_id")[body].nunique() == 1).all().all()
    cam = truth.pivot_table(index="subject_id", columns="take", values="roll_deg")
    assert (cam[1] != cam[2]).all()
    assert (truth.groupby("subject_id")["calf_circ_cm"].nunique() == 1).all()


def test_reliability_command_on_repeat_photos(retakes, tmp_path):
    out = tmp_path / "rel"
    res = CliRunner().invoke(cli.main, ["reliability", str(retakes), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "reliability.csv")
    row = table.set_index("column").loc["calf_circumference_cm"]
    assert row["n_subjects"] == 8 and row["n_takes"] == 2
    assert row["icc21"] > 0.9 and 0 < row["cv_within_pct"] < 5
    assert row["mdc95"] == pytest.approx(1.96 * math.sqrt(2) * row["sem"], rel=1e-5)
    assert "calf circumference: within-subject CV" in res.output
    assert (out / "report.html").is_file() and (out / "plots" / "bland_altman_takes.png").is_file()
    vals = pd.read_csv(out / "measurements.csv")
    assert len(vals) == 16 and set(vals["take"]) == {1, 2}
    assert set(vals["lat_silhouette_method"].dropna()) <= {"learned", "canny", "threshold", "classical"}
    worst = pd.read_csv(out / "worst_takes.csv")
    assert len(worst) > 0 and worst["deviation_pct"].abs().is_monotonic_decreasing
    # the toy truth has the true scale: the decomposition reports the marker's error and the measured CV
    dec = pd.read_csv(out / "truth_decomposition.csv").set_index("stage")
    assert abs(dec.loc["marker scale: measured over true px/cm − 1 (%)", "error_mean_pct"]) < 2
    assert dec.loc["measured calf width", "within_subject_cv_pct"] == pytest.approx(
        table.set_index("column").loc["lat_calf_max_width_cm", "cv_within_pct"], rel=1e-4)
    assert "Photo sessions furthest" in (out / "report.md").read_text()


def _three_takes(values):
    """subject a, b, c × takes 1-3 with the given per-take values of one measure."""
    return pd.DataFrame([{"subject": s, "take": t + 1, "lat_calf_max_width_cm": v[t],
                          "lat_knee_ankle_length_cm": 40.0, "lat_silhouette_method": "canny" if (s, t) == ("b", 1)
                          else "learned"} for s, v in values.items() for t in range(3)])


def test_worst_takes_points_at_the_outlying_photo():
    vals = _three_takes({"a": [10.0, 10.1, 9.9], "b": [12.0, 18.0, 12.0], "c": [11.0, 11.0, 11.2]})
    worst = worst_takes(vals, MEASURES, n=3)
    top = worst.iloc[0]
    assert (top["subject"], top["take"], top["silhouette_method"]) == ("b", 2, "canny")
    assert top["deviation_pct"] == pytest.approx(50.0)
    assert len(worst) == 3 and worst["deviation_pct"].abs().is_monotonic_decreasing
    # a measure identical at every take (derived from the covariates) is never listed
    assert "lat_knee_ankle_length_cm" not in set(worst_takes(vals, MEASURES, n=100)["column"])


def test_truth_decomposition_separates_camera_segmentation_and_scale():
    rng = np.random.default_rng(0)
    truth, vals = [], []
    for i in range(12):
        seen = 10.0 + 0.3 * i
        for t in (1, 2, 3):
            ppc = 10.0 * rng.uniform(0.9, 1.1)
            for view in ("lateral", "posterior"):
                mask_cm = seen * (1 + 0.01 * rng.standard_normal())  # perspective and row: ~1 %
                truth.append({"subject_id": f"s{i}", "view": view, "take": t, "calf_width_seen_cm": seen,
                              "mask_calf_width_px": mask_cm * ppc, "px_per_cm_true": ppc})
            blunder = 1.5 if (i, t) == (3, 2) else 1.0  # one photo takes in the other leg
            vals.append({"subject": f"s{i}", "take": t, "lat_calf_max_width_cm": truth[-2]["mask_calf_width_px"]
                         / ppc * blunder, "lat_px_per_cm": ppc * 1.02,
                         "post_calf_max_width_cm": truth[-1]["mask_calf_width_px"] / ppc})
    dec = truth_decomposition(pd.DataFrame(vals), pd.DataFrame(truth))
    lat = dec[dec["view"] == "lateral"].set_index("stage")
    assert lat.iloc[0]["within_subject_cv_pct"] == pytest.approx(0.0, abs=1e-9)  # the camera sees one width
    perfect = lat.iloc[1]["within_subject_cv_pct"]
    assert 0.4 < perfect < 2.0
    measured = lat.loc["measured calf width"]
    assert measured["within_subject_cv_pct"] > 3 * perfect and measured["photos_over_5pct"] == 1
    assert lat.loc["marker scale: measured over true px/cm − 1 (%)", "error_mean_pct"] == pytest.approx(2.0)
    post = dec[dec["view"] == "posterior"].set_index("stage")
    assert post.loc["measured calf width", "within_subject_cv_pct"] == pytest.approx(perfect, rel=0.6)
    both = dec[dec["view"] == "both"]
    assert len(both) == 1 and 0 < both["within_subject_cv_pct"].iloc[0] < perfect * 1.5
    # without truth columns there is nothing to decompose
    assert truth_decomposition(pd.DataFrame(vals), pd.DataFrame()).empty


def test_a_dataset_without_takes_is_refused(tmp_path):
    ds = make_toy_dataset(tmp_path / "one", 4, seed=1, views=("lateral",))
    with pytest.raises(ReliabilityError, match="no 'take' column"):
        read_retakes(ds)
    res = CliRunner().invoke(cli.main, ["reliability", str(ds), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "take" in res.output
