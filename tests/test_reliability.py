"""Test-retest reliability: ICC against Shrout & Fleiss 1979, the other statistics, the command on repeat photos."""

import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from benchmarks.reliability import icc, read_retakes, reliability_stats, ReliabilityError
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


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


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


def test_a_dataset_without_takes_is_refused(tmp_path):
    ds = make_toy_dataset(tmp_path / "one", 4, seed=1, views=("lateral",))
    with pytest.raises(ReliabilityError, match="no 'take' column"):
        read_retakes(ds)
    res = CliRunner().invoke(cli.main, ["reliability", str(ds), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "take" in res.output
