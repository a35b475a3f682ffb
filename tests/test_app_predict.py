"""benchmarks.predict: the library behind `legsmi predict` and the app; every estimate bounded."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from benchmarks.predict import (PLAUSIBLE_SMI_KG_M2, Estimate, PredictInputError, advice_for, bound_estimate,
                                load_predictor, samples_from_photos)
from smi_data.toy import make_toy_dataset


pytestmark = pytest.mark.usefixtures("shared_cache")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", 12, seed=3, size=256)


@pytest.fixture(scope="module")
def model_dir(toy, tmp_path_factory, cache_env):
    out = tmp_path_factory.mktemp("model") / "xgb"
    with cache_env():
        res = CliRunner().invoke(cli.main, ["train", str(toy), "--model", "xgb-features", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_train_records_the_training_smi_range(model_dir, toy):
    import pandas as pd

    meta = json.loads((model_dir / "model.json").read_text())
    lo, hi = meta["training"]["smi_range"]
    smi = pd.read_csv(toy / "manifest.csv").query("view == 'lateral'")["smi"]
    assert lo == pytest.approx(smi.min()) and hi == pytest.approx(smi.max())
    assert load_predictor(model_dir).training_range == (lo, hi)


def test_bound_estimate_refuses_implausible_and_flags_extrapolation():
    lo, hi = PLAUSIBLE_SMI_KG_M2
    for smi in (lo - 0.1, hi + 0.1, float("nan")):
        refusal, outside, _ = bound_estimate(smi, (5.0, 9.0))
        assert refusal and "plausible range" in refusal and outside is None
    assert bound_estimate(7.0, (5.0, 9.0)) == (None, False, None)
    assert bound_estimate(9.35, (5.0, 9.0))[1] is False  # inside the 10 % margin
    refusal, outside, caution = bound_estimate(9.5, (5.0, 9.0))
    assert refusal is None and outside is True and "training range" in caution
    assert bound_estimate(3.0, (5.0, 9.0))[1] is True
    refusal, outside, caution = bound_estimate(7.0, None)
    assert refusal is None and outside is None and "does not record" in caution


def test_estimate_one_person_with_annotation(model_dir, toy, tmp_path):
    pred = load_predictor(model_dir, cache=False)
    assert pred.model.get_params()["cache"] is False
    est = pred.estimate({"lateral": toy / "images" / "T001_lateral.jpg"}, sex="F", age=70, height_cm=158,
                        out_dir=tmp_path)
    assert isinstance(est, Estimate) and est.ok and est.status == "ok"
    assert 3 < est.smi < 12 and est.awgs_cutoff == 5.7 and est.low_muscle_mass == (est.smi < 5.7)
    # fields for the intervals work exist and are None until a model carries intervals
    d = est.to_dict()
    for key in ("interval_90", "interval_95", "screening", "p_low"):
        assert key in d and d[key] is None
    (photo,) = est.photos
    assert photo.view == "lateral" and photo.status == "ok" and photo.reason is None
    assert photo.annotated_path and (tmp_path / "T001_lateral_annotated.png").is_file()
    assert np.isfinite(photo.measurement["calf_max_width_cm"])
    assert pred.info()["trained_on"] == str(toy) and pred.info()["view"] == "lateral"


def test_refused_photos_carry_reason_and_advice(model_dir, toy, tmp_path):
    pred = load_predictor(model_dir)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    est = pred.estimate({"lateral": broken, "posterior": toy / "images" / "T001_posterior.jpg"}, sex="M", age=50,
                        height_cm=170)
    assert not est.ok and est.smi is None and est.low_muscle_mass is None
    by_view = {p.view: p for p in est.photos}
    assert by_view["lateral"].status == "refused" and "broken.jpg" in by_view["lateral"].reason
    assert "JPEG or PNG" in by_view["lateral"].advice
    # a photo of a view this model does not use is reported, not silently dropped
    assert by_view["posterior"].status == "refused" and "not posterior" in by_view["posterior"].reason
    # no photo of the model's view at all
    est = pred.estimate({"posterior": toy / "images" / "T001_posterior.jpg"}, sex="M", age=50, height_cm=170)
    assert not est.ok and "needs a lateral photo" in est.reason
    # a blank photo: the leg cannot be found, the reason says so and the advice says to retake it
    import cv2

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 200, np.uint8))
    est = pred.estimate({"lateral": blank}, sex="M", age=50, height_cm=170)
    assert not est.ok and est.photos[0].status == "refused" and est.photos[0].advice
    assert est.photos[0].advice.split()[0] in ("retake", "photograph", "place"), est.photos[0]


def test_implausible_output_is_refused_and_extrapolation_flagged(model_dir, toy, tmp_path, monkeypatch):
    pred = load_predictor(model_dir)
    photo = {"lateral": toy / "images" / "T002_lateral.jpg"}
    monkeypatch.setattr(pred.model, "predict_with_reasons", lambda X: (np.full(len(X), 31.0), {}))
    est = pred.estimate(photo, sex="F", age=70, height_cm=158)
    assert not est.ok and "plausible range" in est.reason and est.photos[0].status == "refused"
    samples = samples_from_photos(list(photo.items()), "lateral", sex="F", age=70, height_cm=158)
    res = pred.predict(samples)
    assert np.isnan(res.table.loc[0, "smi_pred"]) and "plausible range" in res.table.loc[0, "failure"]

    hi = pred.training_range[1]
    monkeypatch.setattr(pred.model, "predict_with_reasons", lambda X: (np.full(len(X), hi + 2.0), {}))
    est = pred.estimate(photo, sex="F", age=70, height_cm=158)
    assert est.ok and est.outside_training_range is True and "caution" in est.summary()
    res = pred.predict(samples)
    assert res.table.loc[0, "failure"] == "" and bool(res.table.loc[0, "outside_training_range"])


def test_cli_predict_prints_the_caution_and_refusal(model_dir, toy, tmp_path):
    meta_path = model_dir.parent / "narrow" / "model.json"
    import shutil

    shutil.copytree(model_dir, meta_path.parent)
    meta = json.loads(meta_path.read_text())
    meta["training"]["smi_range"] = [20.0, 20.0]  # every estimate is then an extrapolation
    meta_path.write_text(json.dumps(meta))
    res = CliRunner().invoke(cli.main, ["predict", str(meta_path.parent), str(toy / "images" / "T001_lateral.jpg"),
                                        "--sex", "F", "--age", "70", "--height", "158", "--out", str(tmp_path / "p"),
                                        "--no-annotate"])
    assert res.exit_code == 0 and "caution: outside the model's training range" in res.output, res.output


def test_sample_building_errors():
    with pytest.raises(PredictInputError, match="age"):
        samples_from_photos([("lateral", "a.jpg")], "lateral", sex="F", age=None, height_cm=158)
    with pytest.raises(PredictInputError, match="both views"):
        samples_from_photos([("lateral", "a.jpg")], "both", sex="F", age=70, height_cm=158)
    with pytest.raises(PredictInputError, match="not posterior"):
        samples_from_photos([("posterior", "a.jpg")], "lateral", sex="F", age=70, height_cm=158)
    assert advice_for("no leg-shaped region: nothing spans 45% of the image height").startswith("retake")
    assert "knee" in advice_for("the knee is not in the photo")
    assert advice_for(None) is None
    # a reason that says what to do keeps its words; one that does not gets advice by keyword
    assert advice_for("blurred: the leg's outline is soft; hold the camera still and focus on the leg") == \
        "hold the camera still and focus on the leg"
    assert advice_for("blurred: the leg's outline is soft") == "hold the camera still and focus on the leg"
    assert advice_for("too dark: mean brightness 20/255").startswith("add light")
    assert "JPEG or PNG" in advice_for("x.jpg: could not decode the image; re-export it as JPEG or PNG")


def test_a_two_view_refusal_is_given_to_the_photo_it_names():
    from benchmarks.predict import PhotoStatus, _attribute

    est = Estimate("p:both", "p", "both", "F", "BIA", 5.7,
                   photos=[PhotoStatus("lateral", "/a.jpg"), PhotoStatus("posterior", "/b.jpg")])
    _attribute(est, "lateral: no leg-shaped region (edges); photograph the lower leg from knee to foot")
    lat, post = est.photos
    assert lat.status == "refused" and lat.reason.endswith("knee to foot") and post.status == "ok"
    _attribute(est, "lateral: knee not found; posterior: ankle not found")
    assert est.photos[1].status == "refused" and est.photos[1].reason == "posterior: ankle not found"
    assert est.photos[0].reason == "lateral: knee not found"
