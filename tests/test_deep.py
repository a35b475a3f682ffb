"""smi_deep: preprocessing, augmentation, networks, the regressor, model files.

Small drawn data (smi_data.toy) and tiny inputs keep the whole file well under a minute
on two CPU cores.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402

from smi_data.manifest import read_manifest, to_samples  # noqa: E402
from smi_data.modelfile import ModelFileError  # noqa: E402
from smi_data.toy import make_toy_dataset  # noqa: E402
from smi_deep import preprocess as pp  # noqa: E402
from smi_deep.modelio import load_model, save_model  # noqa: E402
from smi_deep.nets import VARIANTS, build_net, regression_loss  # noqa: E402
from smi_deep.regressor import CNNRegressor, resolve_device, sample_views  # noqa: E402
from smi_deep.transforms import Augment, AugmentSettings  # noqa: E402

FAST = dict(variant="cnn-lite", image_size=48, epochs=6, batch_size=8, n_threads=1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    # 256 px: the smallest toy size whose 5 cm marker OpenCV still finds (the default crop needs the scale)
    d = make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", n_subjects=12, seed=0, size=256)
    return read_manifest(d)


@pytest.fixture(scope="module")
def lateral(toy):
    s = to_samples(toy, "lateral")
    return s, s["smi"].to_numpy(float)


@pytest.fixture(scope="module")
def fitted(lateral):
    X, y = lateral
    return CNNRegressor(**FAST, random_state=3).fit(X, y)


# ----------------------------------------------------------------------------- preprocessing
def test_leg_mask_and_crop_find_the_drawn_leg(toy):
    from smi_data.images import read_image

    img = read_image(toy["image_path"].iloc[0])
    crop, mask = pp.prepare_crop(img, pp.CropSettings(size=64))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    # the leg fills the crop's height (5 % margin) and is much narrower than tall
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[-1] - rows[0] + 1 >= 0.85 * 64
    assert 3 <= mask[rows[0] + 10].astype(bool).sum() < 0.5 * 64  # calf region: narrow band


def _rectangle_photo(width_cm: float, ppc: float, size: int = 300) -> np.ndarray:
    img = np.full((size, size, 3), 220, np.uint8)
    h = int(round(30 * ppc))
    w = int(round(width_cm * ppc))
    x0, y0 = size // 2 - w // 2, size // 2 - h // 2
    img[y0:y0 + h, x0:x0 + w] = (60, 90, 140)
    return img


@pytest.mark.parametrize("ppc", [4.0, 8.0])
def test_scale_crop_keeps_absolute_width(ppc):
    # a 10 cm wide "leg": in a 50 cm window drawn at 200 px it must be 40 px wide, whatever the photo's scale
    # (within 2 px: the segmentation's blur widens a step edge by up to a pixel a side)
    settings = pp.CropSettings(size=200, crop="scale", window_cm=50.0)
    _, mask = pp.prepare_crop(_rectangle_photo(10.0, ppc), settings, px_per_cm=ppc)
    rows = np.flatnonzero(mask.any(axis=1))
    width = mask[(rows[0] + rows[-1]) // 2].astype(bool).sum()
    assert abs(width - 40) <= 2
    # the window stands on the sole: the rectangle's bottom is 5 % of the window above the crop's bottom
    assert abs((200 - 1 - rows[-1]) - 0.05 * 200) <= 2
    # the 'leg' crop normalises size away: the same width fraction at both scales
    _, mask_leg = pp.prepare_crop(_rectangle_photo(10.0, ppc), pp.CropSettings(size=100))
    assert abs(mask_leg[50].astype(bool).sum() - 100 * 10 / (30 * 1.1)) <= 2


def _soft_rectangle_photo(x0: float, x1: float, ppc: float, size: int = 400) -> np.ndarray:
    """A 30 cm tall dark band from x0 to x1 (photo px, sub-pixel) on a light wall, its edges anti-aliased."""
    xs = np.arange(size) + 0.5
    cover = np.clip(np.minimum(xs, x1) - np.maximum(xs - 1, x0), 0, 1)  # share of each pixel column inside
    h = int(round(30 * ppc))
    y0 = size // 2 - h // 2
    img = np.full((size, size, 3), 220.0)
    img[y0:y0 + h] = 220.0 + cover[None, :, None] * (np.array([60.0, 90.0, 140.0]) - 220.0)
    return np.round(img).astype(np.uint8)


def test_photo_outline_with_soft_mask_keeps_the_sub_pixel_width():
    # 10.3 cm at 6 px/cm is 61.8 photo px, 41.2 px of a 50 cm window drawn at 200 px
    ppc, width_cm = 6.0, 10.3
    img = _soft_rectangle_photo(170.35, 170.35 + width_cm * ppc, ppc)
    hard = pp.CropSettings(size=200, crop="scale", window_cm=50.0)
    soft = pp.CropSettings(size=200, crop="scale", window_cm=50.0, outline="photo", soft_mask=True)
    _, m_hard = pp.prepare_crop(img, hard, px_per_cm=ppc)
    _, m_soft = pp.prepare_crop(img, soft, px_per_cm=ppc)
    assert set(np.unique(m_hard)) <= {0, 255}
    rows = np.flatnonzero(m_soft.max(axis=1) == 255)
    mid = rows[len(rows) // 4: 3 * len(rows) // 4]
    partial = ((m_soft[mid] > 0) & (m_soft[mid] < 255)).any(axis=1)
    assert partial.all()  # every row's border pixels carry the leg's share of them
    truth = width_cm * 200 / 50.0
    err_soft = np.abs(m_soft[mid].sum(axis=1) / 255.0 - truth).mean()
    err_hard = np.abs(m_hard[mid].sum(axis=1) / 255.0 - truth).mean()
    assert err_soft < 0.05 and err_soft < err_hard, (err_soft, err_hard)
    with pytest.raises(ValueError, match="outline"):
        pp.CropSettings(outline="sharp")


def test_scale_crop_without_scale_fails_clearly():
    with pytest.raises(pp.PreprocessError, match="no scale"):
        pp.prepare_crop(_rectangle_photo(10.0, 5.0), pp.CropSettings(size=64, crop="scale"))


def test_blank_photo_has_no_leg():
    with pytest.raises(pp.PreprocessError, match="no leg"):
        pp.prepare_crop(np.full((100, 100, 3), 128, np.uint8))


@pytest.mark.parametrize("mode,n", sorted(pp.MODE_CHANNELS.items()))
def test_channels_per_mode(mode, n):
    crop, mask = pp.prepare_crop(_rectangle_photo(10.0, 5.0), pp.CropSettings(size=64))
    ch = pp.make_channels(crop, mask, pp.ChannelSettings(mode=mode))
    assert ch.shape == (n, 64, 64) and ch.dtype == np.float32
    assert 0.0 <= ch.min() and ch.max() <= 1.0


def test_canny_draws_the_outline_only():
    crop, mask = pp.prepare_crop(_rectangle_photo(10.0, 5.0), pp.CropSettings(size=64))
    edges = pp.make_channels(crop, mask, pp.ChannelSettings(mode="canny"))[0]
    assert set(np.unique(edges)) == {0.0, 1.0}
    inner = mask.copy()
    import cv2

    inner = cv2.erode(inner, np.ones((5, 5), np.uint8))
    assert edges[inner > 0].sum() == 0  # flat inside: no edges
    assert edges.sum() > 2 * 50  # the outline of a tall rectangle


def test_cache_decodes_each_image_once(toy, monkeypatch):
    import smi_data.images as images

    calls = []
    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    pp.clear_cache()
    path = toy["image_path"].iloc[0]
    s = pp.CropSettings(size=40)
    a = pp.cached_crop(path, s)
    b = pp.cached_crop(path, s)
    assert a[0] is b[0] and len(calls) == 1
    pp.cached_crop(path, pp.CropSettings(size=41))  # other settings: another entry
    assert len(calls) == 2
    assert not a[0].flags.writeable


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_replays_for_a_seed(toy):
    crop, mask = pp.cached_crop(toy["image_path"].iloc[0], pp.CropSettings(size=48))
    aug = Augment(AugmentSettings(scale=0.05), seed=11)
    first = [aug(crop, mask) for _ in range(5)]
    aug.reset()
    again = [aug(crop, mask) for _ in range(5)]
    for (c1, m1), (c2, m2) in zip(first, again):
        assert np.array_equal(c1, c2) and np.array_equal(m1, m2)
    assert not all(np.array_equal(first[0][0], c) for c, _ in first[1:])  # it does change the image
    other = Augment(AugmentSettings(scale=0.05), seed=12)
    assert other.draw() != Augment(AugmentSettings(scale=0.05), seed=11).draw()


def test_each_transform_owns_its_generator():
    # switching the flip off must not change the affine or brightness draws
    a = Augment(AugmentSettings(flip_p=0.5), seed=5)
    b = Augment(AugmentSettings(flip_p=0.0), seed=5)
    for _ in range(5):
        da, db = a.draw(), b.draw()
        assert da[0] == db[0] and da[2] == db[2]


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("pool", ["flatten", "avg"])
def test_network_output_shapes(variant, pool):
    size = 64
    net = build_net(variant, in_channels=2, n_covariates=3, pool=pool, image_size=size).eval()
    out = net(torch.zeros(5, 2, size, size), torch.zeros(5, 3))
    assert out.shape == (5, 1)
    with pytest.raises(ValueError, match="covariates"):
        net(torch.zeros(5, 2, size, size))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.zeros(5, 3, size, size), torch.zeros(5, 3))


def test_loss_refuses_a_1d_target_against_a_2d_output():
    pred, target = torch.zeros(4, 1), torch.arange(4.0)
    with pytest.raises(ValueError, match="shape"):
        regression_loss(pred, target)
    # what the guard prevents: mse_loss would broadcast (4, 1) against (4,) to (4, 4)
    assert (pred - target).shape == (4, 4)
    assert float(regression_loss(pred[:, 0], target)) == pytest.approx(np.mean(np.arange(4.0) ** 2))


# ----------------------------------------------------------------------------- regressor
def test_predict_shape_and_failures(fitted, lateral, tmp_path):
    X, _ = lateral
    p = fitted.predict(X)
    assert p.shape == (len(X),) and p.dtype == np.float64 and np.isfinite(p).all()
    bad = X.iloc[:3].copy()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((80, 80, 3), 200, np.uint8))
    bad.loc[bad.index[0], "image_lateral"] = str(broken)
    bad.loc[bad.index[1], "image_lateral"] = str(blank)
    p, reasons = fitted.predict_with_reasons(bad)
    assert np.isnan(p[:2]).all() and np.isfinite(p[2])
    ids = bad["sample_id"].tolist()
    assert set(reasons) == set(ids[:2])
    assert "broken.jpg" in reasons[ids[0]] and "no leg" in reasons[ids[1]]
    np.testing.assert_array_equal(fitted.predict(bad), p)


def test_training_learns(lateral):
    X, y = lateral
    est = CNNRegressor(variant="cnn-lite", image_size=48, epochs=25, batch_size=6, augment=False, lr=3e-3,
                       n_threads=1, random_state=0).fit(X, y)
    losses = [h["train_loss"] for h in est.history_]
    assert losses[0] > 2 * losses[-1], losses
    p = est.predict(X)  # it fits its own (tiny) training set
    assert np.corrcoef(p, y)[0, 1] > 0.8


def test_same_seed_same_predictions(lateral, fitted):
    X, y = lateral
    again = CNNRegressor(**FAST, random_state=3).fit(X, y)
    assert np.array_equal(again.predict(X), fitted.predict(X))
    other = CNNRegressor(**FAST, random_state=4).fit(X, y)
    assert not np.array_equal(other.predict(X), fitted.predict(X))


def test_target_as_column_and_bad_targets(lateral):
    X, y = lateral
    est = CNNRegressor(**{**FAST, "epochs": 1})
    with pytest.raises(ValueError, match="1-D"):
        est.fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X, np.where(np.arange(len(y)) == 0, np.nan, y))
    a = CNNRegressor(**{**FAST, "epochs": 2}).fit(X, y[:, None]).predict(X)
    b = CNNRegressor(**{**FAST, "epochs": 2}).fit(X, y).predict(X)
    assert np.array_equal(a, b)


def test_clone_and_params():
    est = CNNRegressor(variant="cnn-lite", input_mode="canny+grey", epochs=3, random_state=7)
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params and c is not est
    c.set_params(input_mode="mask", covariates=True)
    assert c.input_mode == "mask" and est.input_mode == "canny+grey"
    with pytest.raises(ValueError, match="input mode"):
        CNNRegressor(input_mode="edges")._resolved()
    with pytest.raises(ValueError, match="variant"):
        CNNRegressor(variant="resnet")._resolved()


def test_no_hidden_validation_split_unless_asked(lateral):
    X, y = lateral
    est = CNNRegressor(**FAST).fit(X, y)
    assert est.n_train_ == len(X) and all(h["val_loss"] is None for h in est.history_)
    es = CNNRegressor(**{**FAST, "epochs": 8}, validation_fraction=0.25, patience=3).fit(X, y)
    assert es.n_train_ == len(X) - 3  # 3 of 12 subjects held out, drawn from the training data
    assert all(h["val_loss"] is not None for h in es.history_)
    assert 1 <= es.best_epoch_ <= len(es.history_)


def test_both_views_stack_channels_and_covariates(toy):
    X = to_samples(toy, "both")
    y = X["smi"].to_numpy(float)
    assert sample_views(X) == ("lateral", "posterior")
    est = CNNRegressor(**{**FAST, "epochs": 2}, input_mode="canny+grey", covariates=True).fit(X, y)
    assert est.in_channels_ == 4 and est.n_covariates_ == 3
    assert est.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="view"):
        est.predict(to_samples(toy, "lateral"))


def test_weight_tier_covariates_reach_the_head(toy):
    X = to_samples(toy, "lateral")
    y = X["smi"].to_numpy(float)
    est = CNNRegressor(**{**FAST, "epochs": 1}, covariates="weight").fit(X, y)
    assert est.n_covariates_ == 4 and est.cov_mean_.shape == (4,)
    assert est.cov_mean_[3] == pytest.approx(X["weight_kg"].mean(), rel=0.2)
    with pytest.raises(ValueError, match="weight_kg"):
        est.predict(X.drop(columns=["weight_kg"]))
    assert CNNRegressor(covariates="photo").covariate_columns() == ()
    with pytest.raises(ValueError, match="covariates must be"):
        CNNRegressor(covariates="everything").covariate_columns()


def test_device_auto_prefers_an_accelerator():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == expected
    with pytest.raises(ValueError):
        resolve_device("tpu")


# ----------------------------------------------------------------------------- model files
def test_save_load_identical_predictions(fitted, lateral, tmp_path):
    X, _ = lateral
    save_model(fitted, tmp_path / "m", extra_meta={"view": "lateral"})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["family"] == "deep" and meta["model"] == "cnn-lite" and meta["view"] == "lateral"
    assert meta["deep"]["target_scaling"]["mean"] == fitted.y_mean_
    loaded = load_model(tmp_path / "m")
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    assert clone(loaded).get_params() == fitted.get_params()
    from smi_data.runs import OutputExistsError

    with pytest.raises(OutputExistsError):
        save_model(fitted, tmp_path / "m")


def _edit_meta(d, fn):
    p = d / "model.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["deep"].__setitem__("deep_format_version", 99), "format version"),
    (lambda m: m["config"].__setitem__("fancy_new_option", 1), "unknown"),
    (lambda m: m["deep"]["input"]["channels"].__setitem__("mode", "sobel"), "do not match"),
    (lambda m: m["deep"]["architecture"].__setitem__("widths", [8, 16, 32, 128]), "do not fit"),
    (lambda m: m["deep"]["weights"].__setitem__("sha256", "0" * 64), "checksum"),
    (lambda m: m["deep"]["weights"].__setitem__("file", "../weights.pt"), "inside the model folder"),
    (lambda m: m.__setitem__("family", "features"), "family"),
    (lambda m: m["deep"]["normalisation"].__setitem__("input_mean", [0.0, 0.0]), "normalisation"),
])
def test_metadata_mismatch_is_refused(fitted, tmp_path, edit, message):
    d = tmp_path / "m"
    save_model(fitted, d)
    _edit_meta(d, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(d)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_in_weights_is_refused(fitted, tmp_path):
    import hashlib
    import pickle

    d = tmp_path / "m"
    save_model(fitted, d)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    data = pickle.dumps({"x": Evil()})
    (d / "weights.pt").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    def forge(m):  # forge both checksums, so that the torch.load(weights_only=True) guard is what is tested
        m["deep"]["weights"]["sha256"] = digest
        m["files"]["weights.pt"] = {"sha256": digest, "bytes": len(data)}

    _edit_meta(d, forge)
    with pytest.raises(ModelFileError, match="state_dict"):
        load_model(d)


def test_scale_crop_uses_the_table_scale_when_there_is_no_marker(fitted, tmp_path):
    # seed 2: both drawings cropped once given the scale (with seed 1 one is refused since auto's outline rule)
    d = make_toy_dataset(tmp_path / "nomarker", n_subjects=2, seed=2, size=256, marker=False,
                         views=("lateral",))
    X = to_samples(read_manifest(d), "lateral")
    keys, fit_failures = set(fitted.__dict__), dict(fitted.failures_)
    p, reasons = fitted.predict_with_reasons(X)
    assert set(fitted.__dict__) == keys and fitted.failures_ == fit_failures  # predict sets no attribute
    assert np.isnan(p).all() and len(reasons) == len(X)
    assert all("no scale" in why for why in reasons.values())
    truth = pd.read_csv(d / "truth.csv")
    X["px_per_cm_lateral"] = truth["px_per_cm_true"].to_numpy()
    p, reasons = fitted.predict_with_reasons(X)
    assert np.isfinite(p).all() and reasons == {}
