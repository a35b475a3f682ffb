"""The image layer (smi_image): one segmentation under both families, the quality gate, segment/segeval."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_data.toy import make_toy_dataset
from smi_image.errors import SegmentationError
from smi_image.settings import SilhouetteSettings

CLASSICAL = SilhouetteSettings(segmenter="classical")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "ds", 6, seed=5, size=256)


@pytest.fixture(scope="module")
def toy_unmarked(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "nomarker", 1, seed=6, size=256, marker=False)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _photo(ds, name="T001_lateral.jpg"):
    return cv2.imread(str(ds / "images" / name))


def _clipped_leg(img):
    """The photo with its leg burnt out white (and the rest dimmed so the leg still stands out)."""
    from smi_image.segment import segment_leg

    leg = segment_leg(img, method="classical").full_mask()
    out = (img * 0.6).astype(np.uint8)
    out[leg] = 255
    return out


def _measure(img, **kw):
    from smi_features.extractor import ExtractionSettings, measure_leg

    s = ExtractionSettings(silhouette=CLASSICAL, **kw)
    return measure_leg(img, settings=s, height_cm=165.0)


def test_both_families_call_the_one_segmentation(toy, monkeypatch):
    import smi_deep.preprocess as pp
    import smi_features.silhouette as fs
    import smi_image.segment as seg
    import smi_image.silhouette as isil

    calls = []
    real = seg.segment_leg

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(seg, "segment_leg", spy)
    img = _photo(toy)
    assert _measure(img).ok
    n_features = len(calls)
    pp.prepare_crop(img, pp.CropSettings(size=64))
    assert n_features >= 1 and len(calls) > n_features
    # the steps live in one place: nothing of the old copies is left in the families
    for name in ("leg_mask", "background_distance", "border_colour", "paint_out_marker"):
        assert not hasattr(pp, name), name
    assert fs.leg_silhouette is isil.leg_silhouette
    import smi_features.extractor as ex

    assert not hasattr(ex, "leg_silhouette")


@pytest.mark.parametrize("make,needle", [
    (lambda im: (im * 0.04).astype(np.uint8), "too dark"),
    (lambda im: _clipped_leg(im), "overexposed"),
    (lambda im: cv2.GaussianBlur(im, (0, 0), 9.0), "blurred"),
    (lambda im: np.ascontiguousarray(im[: int(im.shape[0] * 0.8)]), "sole is outside"),
])
def test_each_photo_problem_is_refused_with_its_reason(toy, make, needle):
    m = _measure(make(_photo(toy)))
    assert not m.ok and m.reason.startswith("refused:") and needle in m.reason, m.reason
    assert _measure(_photo(toy)).ok  # the untouched photo passes


def test_tilted_leg_is_refused(toy):
    img = _photo(toy)
    h, w = img.shape[:2]
    big = cv2.copyMakeBorder(img, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_REPLICATE)
    rot = cv2.warpAffine(big, cv2.getRotationMatrix2D((big.shape[1] / 2, big.shape[0] / 2), 50, 1.0),
                         big.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    m = _measure(rot)
    assert not m.ok and ("tilted" in m.reason or "no leg" in m.reason), m.reason


def test_marker_expected_but_not_found(toy_unmarked, toy):
    assert _measure(_photo(toy_unmarked)).ok
    m = _measure(_photo(toy_unmarked), require_marker=True)
    assert not m.ok and "marker expected but not found" in m.reason
    assert _measure(_photo(toy), require_marker=True).ok


def test_knee_cut_by_the_frame_from_the_mask():
    from smi_image.quality import protocol_problems

    mask = np.zeros((200, 150), bool)
    mask[0:120, 50:90] = True  # reaches the top, 3 x as long as wide: the knee is outside
    assert [c for c, _ in protocol_problems(mask)] == ["cut_by_frame"]
    mask[:] = False
    mask[0:180, 60:90] = True  # 6 x: the top edge cuts the thigh, the knee is in frame
    assert protocol_problems(mask) == []
    mask[0:40, 40:110] = True  # a wide thigh up to the top edge: the calf below decides, the knee is in frame
    assert protocol_problems(mask) == []
    mask[:] = False
    mask[0:60, 30:120] = True  # a calf cut near its widest (90 px) with 60 px below: the knee is outside
    mask[60:120, 50:100] = True
    assert [c for c, _ in protocol_problems(mask)] == ["cut_by_frame"]


def test_no_leg_merged_and_unsure_from_the_learned_maps(monkeypatch):
    import smi_image.learned as learned
    from smi_image.segment import segment_leg

    img = np.full((160, 120, 3), 128, np.uint8)
    with pytest.raises(SegmentationError) as e:
        segment_leg(img, method="classical")
    assert e.value.code == "no_leg"

    def fake(p_leg, p_split):
        monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([p_leg, p_split]))

    leg = np.zeros((128, 96), np.float32)
    split = np.zeros_like(leg)
    fake(leg, split)
    with pytest.raises(SegmentationError) as e:
        segment_leg(img, method="learned")
    assert e.value.code == "no_leg"
    leg[10:120, 30:66] = 0.99  # one wide region with a short meeting line inside that does not cut it
    split[58:64, 38:58] = 0.9  # (a long one would: the rows it crosses split the region, test_seg_separation)
    fake(leg, split)
    with pytest.raises(SegmentationError) as e:
        segment_leg(img, method="learned", view="posterior", side="L")
    assert e.value.code == "legs_merged"
    leg[:] = 0.4  # a leg, but hardly more likely than the background around it
    leg[10:120, 30:66] = 0.6
    split[:] = 0
    fake(leg, split)
    with pytest.raises(SegmentationError) as e:
        segment_leg(img, method="learned")
    assert e.value.code == "unsure"
    leg[:] = 0.0
    leg[10:120, 30:66] = 0.99
    fake(leg, split)
    seg = segment_leg(img, method="learned")
    assert seg.method == "learned" and seg.confidence > 0.7


def test_the_side_rule_picks_the_leg():
    from smi_image.learned import leg_instances, pick_instance

    p = np.zeros((100, 100), np.float32)
    p[10:90, 20:35] = 1.0   # image left
    p[10:90, 55:70] = 1.0   # image right, nearer the centre
    inst = leg_instances(p, np.zeros_like(p))
    assert inst.max() == 2
    def xs(k):
        return np.nonzero(inst == k)[1].mean()
    assert xs(pick_instance(inst, view="posterior", side="L")) < 50
    assert xs(pick_instance(inst, view="posterior", side="R")) > 50
    assert xs(pick_instance(inst)) > 50  # no side: nearest the centre
    assert xs(pick_instance(inst, view="lateral", side="L")) > 50


def _non_leg_images():
    import skimage.data as d

    rng = np.random.default_rng(0)
    return {
        "noise": rng.integers(0, 256, (400, 300, 3), dtype=np.uint8),
        "black": np.zeros((400, 300, 3), np.uint8),
        "white": np.full((400, 300, 3), 255, np.uint8),
        "astronaut": np.ascontiguousarray(d.astronaut()[..., ::-1]),
        "coffee": np.ascontiguousarray(d.coffee()[..., ::-1]),
        "text": cv2.cvtColor(d.text(), cv2.COLOR_GRAY2BGR),
    }


_COFFEE_TAKEN = pytest.mark.xfail(
    strict=True, reason="issue 9 regression with the weights of branch seg2: the segmenter sees the red saucer's "
    "rim on the wooden table as a leg (outline certainty 0.76, inside 0.71, 2.9 x as long as wide), above every "
    "threshold; weights trained with no-leg samples refuse it but are not shipped (branch seg3); docs/segmentation.md")


@pytest.mark.parametrize("name", [pytest.param(n, marks=_COFFEE_TAKEN) if n == "coffee" else n
                                  for n in sorted(_non_leg_images())])
def test_non_leg_images_are_refused(name):
    from smi_features.extractor import measure_leg

    m = measure_leg(_non_leg_images()[name], height_cm=165.0)  # default segmenter (learned when shipped)
    assert not m.ok and m.reason.startswith("refused:"), m.reason


def test_segment_command_writes_masks_and_refuses_noise(toy, tmp_path):
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), _non_leg_images()["noise"])
    photo = toy / "images" / "T001_lateral.jpg"
    out = tmp_path / "seg"
    res = CliRunner().invoke(cli.main, ["segment", str(photo), str(noise), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "segment.csv").fillna("")
    assert list(table.columns) == ["photo", "status", "reason", "ms"]
    st = dict(zip(table["photo"].map(lambda p: Path(p).stem), table["status"]))
    assert st == {"T001_lateral": "ok", "noise": "refused"}
    m = cv2.imread(str(out / "T001_lateral.png"), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and m.shape == cv2.imread(str(photo)).shape[:2] and set(np.unique(m)) == {0, 1}
    n = cv2.imread(str(out / "noise.png"), cv2.IMREAD_UNCHANGED)
    assert n.shape == (400, 300) and n.max() == 0
    assert (out / "run.json").is_file()


def test_segeval_scores_a_drawn_set(tmp_path):
    ds = tmp_path / "set"
    (ds / "images").mkdir(parents=True)
    (ds / "masks").mkdir()
    for i, (w, h) in enumerate([(30, 150), (40, 170)]):
        img = np.full((240, 180, 3), 200, np.uint8)
        lab = np.zeros((240, 180), np.uint8)
        cv2.ellipse(lab, (90, 110), (w // 2, h // 2), 0, 0, 360, 1, -1)
        lab[190:, :][lab[190:, :] == 1] = 3  # the "shoe": left out of the score
        img[lab > 0] = (90, 120, 170)
        cv2.imwrite(str(ds / "images" / f"p{i}.jpg"), img)
        cv2.imwrite(str(ds / "masks" / f"p{i}.png"), lab)
    out = tmp_path / "ev"
    res = CliRunner().invoke(cli.main, ["segeval", str(ds), "--out", str(out), "--segmenter", "classical"])
    assert res.exit_code == 0, res.output
    assert "accepted 100.0%" in res.output and "IoU >= 0.8 100.0%" in res.output
    t = pd.read_csv(out / "segeval.csv")
    assert len(t) == 2 and (t["iou"] > 0.9).all() and (t["calf_width_err_px"] <= 2).all()
    assert (out / "worst.png").is_file() and (out / "summary.json").is_file()


def test_predict_refuses_noise(toy, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    res = runner.invoke(cli.main, ["train", str(toy), "--model", "xgb-features", "--out", str(model_dir)])
    assert res.exit_code == 0, res.output
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), _non_leg_images()["noise"])
    res = runner.invoke(cli.main, ["predict", str(model_dir), str(noise), "--sex", "F", "--age", "70",
                                   "--height", "158", "--out", str(tmp_path / "p")])
    assert res.exit_code != 0
    assert "no estimate" in res.output and "refused" in res.output and "SMI" not in res.output


def test_speed_prints_the_stages(toy):
    from benchmarks.speed import STAGES, stage_speed

    lines = []
    out = stage_speed(toy, limit=2, echo=lines.append)
    assert set(out["stages_ms"]) == set(STAGES) and out["total_ms"] > 0
    assert any("segmentation" in s for s in lines)
