"""The learned segmenter: shipped weights on fresh clinic renders, the side rule, training, the weights file."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_image.learned import WEIGHTS, SegmenterFileError, load_segmenter

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason="no shipped segmenter weights")


@pytest.fixture(scope="module")
def body_model():
    pytest.importorskip("anny")
    from smi_data.phantom.body import AnnyBody

    return AnnyBody(threads=1)


@pytest.fixture(scope="module")
def clinic(tmp_path_factory, body_model):
    from smi_data.phantom.generate import generate_cohort

    out = tmp_path_factory.mktemp("clinic") / "ds"
    # seed 4242: subjects no training render uses (the segmenter's scenes are seed 1000, wild)
    generate_cohort(out, n_subjects=2, seed=4242, size=(300, 400), scene="clinic", model=body_model, progress=False)
    return out


def _photographed(labels):
    return (labels == 1) | (labels == 6)


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def _clinic_ious(clinic):
    from smi_image.segment import segment_leg

    man = pd.read_csv(clinic / "manifest.csv")
    ious = []
    for r in man.itertuples():
        img = cv2.imread(str(clinic / r.image))
        labels = cv2.imread(str(clinic / "labels" / (r.image.split("/")[-1].rsplit(".", 1)[0] + ".png")), 0)
        seg = segment_leg(img, method="learned", view=r.view, side=r.side)
        ious.append(_iou(seg.full_mask(), _photographed(labels)))
    return ious


@needs_weights
@pytest.mark.phantom
def test_shipped_weights_find_the_leg_in_fresh_clinic_scenes(clinic):
    ious = _clinic_ious(clinic)
    assert np.mean(ious) >= 0.75 and min(ious) >= 0.6, ious  # regression guard (0.848-0.961, mean 0.905)


@needs_weights
@pytest.mark.phantom
def test_shipped_weights_reach_the_target_iou_on_fresh_clinic_scenes(clinic):
    assert np.mean(_clinic_ious(clinic)) >= 0.9  # issue 9's target; measured 0.905 (docs/segmentation.md)


@needs_weights
@pytest.mark.phantom
def test_side_rule_picks_the_photographed_leg_in_a_posterior_render(clinic):
    from smi_image.segment import segment_leg

    man = pd.read_csv(clinic / "manifest.csv")
    r = man[man["view"] == "posterior"].iloc[0]
    img = cv2.imread(str(clinic / r["image"]))
    labels = cv2.imread(str(clinic / "labels" / (r["image"].split("/")[-1].rsplit(".", 1)[0] + ".png")), 0)
    other = {"L": "R", "R": "L"}[r["side"]]
    right = segment_leg(img, method="learned", view="posterior", side=r["side"]).full_mask()
    wrong = segment_leg(img, method="learned", view="posterior", side=other).full_mask()
    assert _iou(right, _photographed(labels)) > 0.8
    assert _iou(wrong, labels == 2) > 0.6 and _iou(wrong, _photographed(labels)) < 0.2


@pytest.mark.phantom
def test_segmenter_training_runs_one_epoch_on_a_handful_of_renders(tmp_path, body_model, monkeypatch):
    import smi_data.phantom.body as body

    monkeypatch.setattr(body, "AnnyBody", lambda *a, **k: body_model)  # reuse the loaded model
    out = tmp_path / "run"
    res = CliRunner().invoke(cli.main, ["segmenter", "train", "--out", str(out), "--scenes", "2", "--epochs", "1",
                                        "--batch-size", "2", "--threads", "1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    model, meta = load_segmenter(str(out / "segmenter.pt"))
    assert meta["config"]["epochs"] == 1 and "--scene wild --subjects 2 --seed 1003" in meta["data_command"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok" and run["seed"] == 3 and run["results"]["epochs_done"] == 1
    assert (out / "scenes" / "labels").is_dir()


def test_weights_file_is_checked(tmp_path):
    torch = pytest.importorskip("torch")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(SegmenterFileError, match="not a legsmi segmenter"):
        load_segmenter(str(bad))
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SegmenterFileError, match="not a readable"):
        load_segmenter(str(bad))


@needs_weights
def test_shipped_weights_are_small_and_fast():
    import time

    import torch

    from smi_image.learned import leg_probabilities

    assert WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    model, meta = load_segmenter()
    assert meta["input_long_px"] >= 96 and "data_command" in meta
    img = np.full((400, 300, 3), 128, np.uint8)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        leg_probabilities(img)
        t = time.perf_counter()
        for _ in range(5):
            p = leg_probabilities(img)
        ms = (time.perf_counter() - t) / 5 * 1000
    finally:
        torch.set_num_threads(old)
    assert p.shape[0] == model.head.out_channels in (2, 3) and p.shape[1] == meta["input_long_px"]
    assert ms < 200  # the 20 ms target is a benchmark (legsmi speed), not a timed test; this catches a blow-up


def test_behind_target_follows_the_camera_turn():
    """The far leg of a side view is the behind target: the other leg from outside, the photographed leg from
    inside (a wild camera turned round); none in a back view; not trained where the camera is turned half-way."""
    from smi_image.train import Scene, targets

    lab = np.zeros((40, 30), np.uint8)
    lab[5:35, 5:12], lab[5:35, 18:25], lab[2:5, 5:12] = 1, 2, 6
    photo, other = (lab == 1) | (lab == 6), lab == 2
    cases = {("P001_lateral", None): ("other", other), ("P001_lateral", 3.0): ("other", other),
             ("P001_lateral", 185.0): ("photo", photo), ("P001_lateral", -170.0): ("photo", photo),
             ("P001_lateral", 45.0): ("unknown", None), ("P001_posterior", 170.0): ("none", np.zeros_like(photo)),
             ("P001_posterior", 0.0): ("none", np.zeros_like(photo)), ("P001_posterior", 40.0): ("unknown", None)}
    for (name, turn), (want, far) in cases.items():
        scene = Scene(np.zeros((40, 30, 3), np.uint8), lab, name, {} if turn is None else {"turn_deg": turn})
        assert scene.behind == want, (name, turn)
        leg, _split, behind, valid, behind_valid = targets(lab, scene.behind)
        if want == "unknown":
            assert behind_valid.max() == 0 and valid.min() == 1
        else:
            assert behind_valid.min() == 1 and ((behind > 0) == far).all()
    with pytest.raises(ValueError, match="behind"):
        targets(lab, "lateral")


def test_one_leg_scenes_train_no_leg_behind(tmp_path):
    """A `phantom --one-leg` photo has nothing behind the leg, however the camera turned; truth.csv says which."""
    import cv2

    from smi_image.train import Scene, load_scenes

    for turn in (0.0, 45.0, 185.0):
        assert Scene(np.zeros((4, 3, 3), np.uint8), np.zeros((4, 3), np.uint8), "P001_lateral",
                     {"turn_deg": turn, "one_leg": True}).behind == "none"
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    lab = np.zeros((40, 30), np.uint8)
    lab[5:35, 5:12] = 1
    for stem in ("P001_lateral", "P002_lateral"):
        cv2.imwrite(str(tmp_path / "images" / f"{stem}.jpg"), np.full((40, 30, 3), 128, np.uint8))
        cv2.imwrite(str(tmp_path / "labels" / f"{stem}.png"), lab)
    pd.DataFrame({"image": ["images/P001_lateral.jpg", "images/P002_lateral.jpg"], "turn_deg": [180.0, 180.0],
                  "one_leg": [True, np.nan]}).to_csv(tmp_path / "truth.csv", index=False)
    pairs = [(tmp_path / "images" / f"{s}.jpg", tmp_path / "labels" / f"{s}.png") for s in ("P001_lateral",
                                                                                           "P002_lateral")]
    scenes = {s.name: s.behind for s in load_scenes(pairs, 64)}
    assert scenes == {"P001_lateral": "none", "P002_lateral": "photo"}


def test_negative_samples_are_leg_free_windows_of_other_photos():
    from smi_image.train import NEGATIVE_PHOTOS, SceneAugmenter, TrainConfig, negative_photos

    assert not {"astronaut", "coffee", "text"} & set(NEGATIVE_PHOTOS)  # the quality gate's controls stay unseen
    photos = negative_photos(("chelsea", "camera"), long_px=128)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and max(p.shape[:2]) <= 128 for p in photos)
    lab = np.zeros((40, 30), np.uint8)
    lab[5:35, 10:18] = 1
    from smi_image.train import Scene

    scene = Scene(np.full((40, 30, 3), 90, np.uint8), lab, "P001_lateral")
    aug = SceneAugmenter(TrainConfig(negative_p=1.0, input_hw=(32, 24)), seed=0)
    img, leg, split, behind, valid, behind_valid = aug(scene, photos)
    assert img.shape == (32, 24, 3) and leg.max() == 0 and split.max() == 0 and valid.min() == 1
    img, leg, *_ = SceneAugmenter(TrainConfig(negative_p=0.0, input_hw=(32, 24)), seed=0)(scene, photos)
    assert leg.max() == 1  # without negatives the scene itself


@pytest.mark.parametrize("shoe_target,label", [("not_leg", 3), ("ignore", 255)])
def test_painted_shoes_are_not_leg_or_left_out(shoe_target, label):
    from smi_image.train import Scene, SceneAugmenter, TrainConfig, targets

    lab = np.zeros((80, 60), np.uint8)
    lab[5:75, 20:32] = 1
    scene = Scene(np.full((80, 60, 3), 90, np.uint8), lab, "P001_posterior")
    aug = SceneAugmenter(TrainConfig(shoe_p=1.0, crop_p=0.0, rotate_deg=0.0, shoe_target=shoe_target,
                                     input_hw=(80, 60)), seed=1)
    _img, out = aug.sample(scene)
    assert (out == label).any() and not (out == (255 if label == 3 else 3)).any()
    leg, _split, _behind, valid, _bv = targets(out, "none")
    assert leg[out == label].max() == 0 and (valid[out == label].max() == (1 if label == 3 else 0))
    with pytest.raises(ValueError, match="shoe_target"):
        from smi_image.train import train_segmenter

        train_segmenter("/nonexistent", "/tmp/x", TrainConfig(shoe_target="shoe"))


def test_input_size_is_portrait_a_multiple_of_the_stride_and_loaded_finer():
    from smi_image.nets import TinyUNet
    from smi_image.train import TrainConfig, input_size

    c = TrainConfig()
    assert input_size(128) == {"input_hw": tuple(c.input_hw), "load_long_px": c.load_long_px}  # the default
    assert input_size(160) == {"input_hw": (160, 128), "load_long_px": 320}
    assert input_size(192) == {"input_hw": (192, 144), "load_long_px": 384}
    stride = TinyUNet(TrainConfig().widths).stride
    for px in (64, 160, 176, 192, 256):
        h, w = input_size(px)["input_hw"]
        assert h == px and h % stride == 0 and w % stride == 0 and 0.7 <= w / h <= 0.85
    with pytest.raises(ValueError, match="multiple of 16"):
        input_size(150)


def test_segmenter_train_rejects_an_input_size_off_the_stride(tmp_path):
    res = CliRunner().invoke(cli.main, ["segmenter", "train", "--out", str(tmp_path / "run"), "--data", str(tmp_path),
                                        "--input-px", "150"])
    assert res.exit_code != 0 and "multiple of 16" in res.output and not (tmp_path / "run").exists()


def test_segmenter_train_takes_one_time_budget_not_two(tmp_path):
    res = CliRunner().invoke(cli.main, ["segmenter", "train", "--out", str(tmp_path / "run"), "--data", str(tmp_path),
                                        "--minutes", "1", "--cpu-minutes", "1"])
    assert res.exit_code == 2 and "not both" in res.output and not (tmp_path / "run").exists()


def test_a_cpu_time_budget_stops_training_and_is_recorded(tmp_path, monkeypatch):
    import smi_image.train as train_mod
    from smi_image.train import TrainConfig, input_size, train_segmenter

    for sub in ("images", "labels"):
        (tmp_path / "scenes" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):  # drawn scenes: a leg (label 1) and the other leg (2) on a noisy wall
        lab = np.zeros((80, 60), np.uint8)
        lab[10:75, 18 + i:28 + i], lab[12:75, 36:44] = 1, 2
        img = rng.integers(60, 120, (80, 60, 3), dtype=np.uint8)
        img[lab > 0] = (120, 150, 200)
        cv2.imwrite(str(tmp_path / "scenes" / "images" / f"P00{i}_posterior.png"), img)
        cv2.imwrite(str(tmp_path / "scenes" / "labels" / f"P00{i}_posterior.png"), lab)
    # The budget is read off the CPU clock, not the wall clock: a CPU clock that runs 100 s a call spends
    # a 150 s budget after the first epoch; the wall clock alone would never spend it.
    ticks = iter(range(0, 10**6, 100))

    class Clock:
        perf_counter = staticmethod(train_mod.time.perf_counter)
        strftime, gmtime = staticmethod(train_mod.time.strftime), staticmethod(train_mod.time.gmtime)

        @staticmethod
        def process_time():
            return float(next(ticks))

    monkeypatch.setattr(train_mod, "time", Clock)
    cfg = TrainConfig(epochs=5, batch_size=2, threads=1, negative_p=0.0, time_budget_s=150, budget_clock="cpu",
                      **input_size(32))
    lines = []
    res = train_segmenter(tmp_path / "scenes", tmp_path / "run", cfg, echo=lines.append)
    assert res["epochs_done"] < 5 and res["clock"] == "cpu" and "train_wall_s" in res and "train_cpu_s" in res
    assert any("time budget of 150 s (cpu) spent" in ln for ln in lines)
    assert any(ln.startswith("warning: the scenes are at most 80 px") for ln in lines)  # 32 px input, 80 px scenes
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].endswith("wall_s,cpu_s") and len(log) == 1 + res["epochs_done"]
    monkeypatch.undo()
    wall = train_segmenter(tmp_path / "scenes", tmp_path / "run_wall",
                           TrainConfig(epochs=2, batch_size=2, threads=1, negative_p=0.0, time_budget_s=1e6,
                                       budget_clock="wall", **input_size(32)), echo=lambda s: None)
    assert wall["epochs_done"] == 2 and wall["clock"] == "wall"
    _model, meta = load_segmenter(str(tmp_path / "run" / "segmenter.pt"))
    assert meta["input_long_px"] == 32 and meta["config"]["budget_clock"] == "cpu"
    with pytest.raises(ValueError, match="budget_clock"):
        train_segmenter(tmp_path / "scenes", tmp_path / "run2", TrainConfig(budget_clock="gpu"))
