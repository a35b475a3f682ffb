"""cnn-geo: trunk shapes, the trunk file's checks, pretraining subjects disjoint from every
benchmark and test cohort, tiers at the head, determinism.

A tiny trunk is trained here on drawn toy photos (smi_data.toy) in a second or two; the
committed trunks are only read for their metadata and the subjects file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from smi_data.manifest import read_manifest, to_samples  # noqa: E402
from smi_data.toy import make_toy_dataset  # noqa: E402
from smi_deep import geo, pretrain  # noqa: E402
from smi_deep.nets import GeoNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COVARIATES = ("sex", "age", "height_cm", "weight_kg", "bmi")
#: Seeds that tests and docs render cohorts with (grep of tests/ and docs/), and more around them.
TEST_SEEDS = sorted(set(range(0, 32)) | {99, 101, 303, 1000, 1001, 1003, 2000, 4242})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A drawn cohort, its inputs and a tiny trunk per view trained on them (targets: truth widths)."""
    root = tmp_path_factory.mktemp("geo")
    ds = make_toy_dataset(root / "toy", n_subjects=12, seed=3, size=256)
    man = read_manifest(ds)
    wdir = root / "weights"
    for view in geo.GEO_VIEWS:
        s = to_samples(man, view)
        x = np.stack([geo.geo_input(p, px_per_cm=None, view=view, side=sd)
                      for p, sd in zip(s[f"image_{view}"], s["side"])])
        y = np.random.default_rng(0).normal(10, 2, size=(len(x), len(geo.GEO_TARGETS)))
        net, rec = pretrain.train_trunk(np.round(x * 255).astype(np.uint8), y, s["subject_id"].to_numpy(),
                                        seed=0, epochs=1, batch_size=8, holdout=0.0)
        geo.save_trunk(net, geo.trunk_path(view, wdir), {**rec, "view": view, "arch": pretrain.ARCH})
    geo.clear_embeddings()
    return ds, man, wdir


def test_shapes():
    net = GeoNet(len(geo.GEO_TARGETS), widths=pretrain.ARCH["widths"], hidden=64, image_size=geo.GEO_SIZE)
    x = torch.zeros(3, 1, geo.GEO_SIZE, geo.GEO_SIZE)
    assert net.embed(x).shape == (3, 64) and net(x).shape == (3, len(geo.GEO_TARGETS))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.zeros(3, 2, geo.GEO_SIZE, geo.GEO_SIZE))
    m = np.zeros((geo.CROP_PX, geo.CROP_PX), np.uint8)
    m[:, 90:101] = 255  # 11 px of 192 = 5.5 px of 96: the border column is half covered
    a = geo.mask_to_input(m)
    assert a.shape == (geo.GEO_SIZE, geo.GEO_SIZE) and a.dtype == np.float32
    assert np.isclose(a.sum(axis=1), 5.5).all() and 0 < a.max() <= 1


def test_inputs_are_masks_at_marker_scale(toy):
    ds, man, _ = toy
    s = to_samples(man, "lateral")
    x = geo.geo_input(s["image_lateral"].iloc[0], view="lateral", side=s["side"].iloc[0])
    assert x.shape == (geo.GEO_SIZE, geo.GEO_SIZE) and 0 <= x.min() and x.max() <= 1
    # the widest row of the drawn calf, in cm at the window's scale, matches the drawing
    truth = pd.read_csv(ds / "truth.csv").set_index(["subject_id", "view"])
    cm_per_px = geo.WINDOW_CM / geo.GEO_SIZE
    calf = truth.loc[(s["subject_id"].iloc[0], "lateral")]
    width_col = "calf_width_lateral_cm"
    rows = x.sum(axis=1)
    assert abs(rows[: int(0.8 * len(rows))].max() * cm_per_px - float(calf[width_col])) < 1.5


def test_trunk_file_checks(toy, tmp_path):
    _, _, wdir = toy
    net, meta = geo.load_trunk("lateral", wdir)
    assert meta["view"] == "lateral" and len(meta["sha256"]) == 64
    with pytest.raises(geo.GeoTrunkError, match="'posterior' view"):
        geo.load_trunk("lateral", path=geo.trunk_path("posterior", wdir))
    torch.save({"format": "legsmi-segmenter", "format_version": 1}, tmp_path / "seg.pt")
    with pytest.raises(geo.GeoTrunkError, match="not a legsmi cnn-geo trunk"):
        geo.load_trunk("lateral", path=tmp_path / "seg.pt")
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(geo.GeoTrunkError, match="not a legsmi cnn-geo trunk"):
        geo.load_trunk("lateral", path=tmp_path / "bare.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(geo.GeoTrunkError, match="not a readable"):
        geo.load_trunk("lateral", path=tmp_path / "text.pt")
    blob = torch.load(geo.trunk_path("lateral", wdir), weights_only=True)
    for change in ({"format_version": 99}, {"input": {**blob["input"], "window_cm": 40.0}}):
        torch.save({**blob, **change}, tmp_path / "changed.pt")
        with pytest.raises(geo.GeoTrunkError, match="version|input"):
            geo.load_trunk("lateral", path=tmp_path / "changed.pt")
    with pytest.raises(geo.GeoTrunkError, match="no cnn-geo trunk"):
        geo.load_trunk("lateral", tmp_path / "empty")


def test_committed_trunks_are_small_and_checked():
    for view in geo.GEO_VIEWS:
        p = geo.trunk_path(view)
        assert p.is_file() and p.stat().st_size <= 5 * 2 ** 20
        _, meta = geo.load_trunk(view)
        assert meta["view"] == view and meta["cohorts"] and meta["holdout_error"]
        # pretraining never saw SMI: the targets are the geometry only
        assert "smi" not in " ".join(geo.GEO_TARGETS)


def test_pretraining_subjects_are_not_benchmark_or_test_subjects():
    rec = json.loads((geo.WEIGHTS_DIR / pretrain.SUBJECTS_FILE).read_text())
    body = set(rec["body_fingerprints"])
    sample = set(rec["sample_fingerprints"])
    n = sum(c["n_subjects"] for c in rec["cohorts"])
    assert len(sample) == n >= 2000 and len(body) >= 0.9 * n  # the issue asks for at least 2,000 (docs/cnn-geo.md)
    # the stored fingerprints are those of the recorded seeds (so the seeds are the record)
    assert sample == {f for c in rec["cohorts"] for f in pretrain.seed_fingerprints(c["seed"], c["n_subjects"])}
    # the trunks name the same cohorts
    _, meta = geo.load_trunk("lateral")
    assert sorted(c["seed"] for c in meta["cohorts"]) == sorted(c["seed"] for c in rec["cohorts"])
    # the bundled cohorts' bodies (their truth.csv), and a positive control that the test can fail
    for ds in ("data/phantom-v1", "data/phantom-v2"):
        bundled = pretrain.cohort_body_fingerprints(ROOT / ds)
        assert len(bundled) == 100 and not bundled & body, ds
    # every seed tests and docs render with, over more subjects than any of them draws
    for seed in TEST_SEEDS:
        assert not set(pretrain.seed_fingerprints(seed, 400)) & sample, seed
    first = rec["cohorts"][0]
    assert set(pretrain.seed_fingerprints(first["seed"], 3)) <= sample


def test_fingerprints_tell_people_apart():
    a, b = pretrain.seed_fingerprints(0, 50), pretrain.seed_fingerprints(1, 50)
    assert len(set(a)) == 50 and not set(a) & set(b)
    assert pretrain.seed_fingerprints(0, 3) == a[:3]  # subject i is the same whatever the cohort size
    row = {"sex": "M", "age": 40, "anny_gender": 0.0, "anny_age": 0.5, "anny_muscle": 0.3, "anny_proportions": 0.5,
           "anny_weight": 0.4, "anny_height": 0.6}
    assert pretrain.body_fingerprint(row) == pretrain.body_fingerprint({**row, "anny_muscle": 0.300001})
    assert pretrain.body_fingerprint(row) != pretrain.body_fingerprint({**row, "anny_muscle": 0.31})


def _fit(man, wdir, view, tier_cov, X=None):
    s = to_samples(man, view)
    X = s.drop(columns=["smi"]) if X is None else X
    return geo.GeoCNNRegressor(covariates=tier_cov, weights_dir=str(wdir)).fit(X, s["smi"].to_numpy()), X


def test_head_at_each_tier_and_photo_tier_ignores_covariates(toy):
    _, man, wdir = toy
    s = to_samples(man, "lateral")
    s["weight_kg"] = 60.0 + s["height_cm"] - 160
    X = s.drop(columns=["smi"])  # a careless caller hands every covariate over
    photo, _ = _fit(man, wdir, "lateral", "photo", X)
    assert not any(c in COVARIATES or c.endswith(("height_cm", "weight_kg")) for c in photo.head_columns_)
    weight, _ = _fit(man, wdir, "lateral", "weight", X)
    assert {"sex", "age", "log_height_cm", "log_weight_kg"} <= set(weight.head_columns_)
    pred = weight.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all() and (pred > 0).all()
    basic, _ = _fit(man, wdir, "lateral", "basic", X)
    with pytest.raises(ValueError, match="needs column 'weight_kg'"):
        geo.GeoCNNRegressor(covariates="weight", weights_dir=str(wdir)).fit(X.drop(columns=["weight_kg"]), s["smi"])


def test_harness_gives_the_photo_tier_no_covariate(toy):
    """The registry's cnn-geo under the harness: a photo-tier fit that sees a covariate raises."""
    from benchmarks import registry
    from benchmarks.harness import Task, fold_table, run_folds
    from benchmarks.registry import ModelSpec
    from smi_data.splits import make_splits

    _, man, wdir = toy

    class Strict(geo.GeoCNNRegressor):
        def fit(self, X, y):
            if self.covariates in (False, "photo") and any(c in X.columns for c in COVARIATES):
                raise AssertionError(f"photo tier received {[c for c in X.columns if c in COVARIATES]}")
            return super().fit(X, y)

    real = registry.get_spec("cnn-geo")
    assert real.tiers == ("photo", "basic", "weight") and real.tier_params("photo") == {"covariates": False}
    spec = ModelSpec("cnn-geo", "deep", lambda random_state=0, **kw: Strict(weights_dir=str(wdir), **kw),
                     tiers=real.tiers, tier_setup=real.tier_setup)
    folds = fold_table(make_splits(man, n_folds=3, seeds=[0]), 1)
    tasks = [Task("cnn-geo", "lateral", 0, f, tier=t) for t in ("photo", "basic") for _, f, _, _ in folds]
    preds, records, _ = run_folds(man, folds, tasks, seed=0, specs={"cnn-geo": spec}, progress=False)
    assert (records["status"] == "ok").all(), records[["status"]].to_dict()
    assert np.isfinite(preds["pred"] if "pred" in preds else preds.filter(like="pred").iloc[:, 0]).all()
    with pytest.raises(AssertionError, match="photo tier received"):
        Strict(weights_dir=str(wdir)).fit(to_samples(man, "lateral"), np.ones(12))


def test_same_seed_same_trunk_and_predictions(toy):
    _, man, wdir = toy
    s = to_samples(man, "posterior")
    x = np.stack([np.round(geo.geo_input(p, view="posterior") * 255).astype(np.uint8) for p in s["image_posterior"]])
    y = np.random.default_rng(1).normal(size=(len(x), len(geo.GEO_TARGETS)))
    subj = s["subject_id"].to_numpy()
    n1, r1 = pretrain.train_trunk(x, y, subj, seed=5, epochs=1, batch_size=4, holdout=0.25)
    n2, r2 = pretrain.train_trunk(x, y, subj, seed=5, epochs=1, batch_size=4, holdout=0.25)
    assert all(torch.equal(a, b) for a, b in zip(n1.state_dict().values(), n2.state_dict().values()))
    assert r1["holdout_error"] == r2["holdout_error"] and r1["n_holdout_subjects"] == 3
    a, X = _fit(man, wdir, "posterior", "basic")
    geo.clear_embeddings()
    b, _ = _fit(man, wdir, "posterior", "basic")
    assert np.array_equal(a.predict(X), b.predict(X))


def test_save_load_round_trip_checks_the_trunk(toy, tmp_path):
    from smi_data.modelfile import ModelFileError
    from smi_deep.modelio import load_model, save_model

    _, man, wdir = toy
    est, X = _fit(man, wdir, "lateral", "basic")
    save_model(est, tmp_path / "m", extra_meta={"view": "lateral"})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["model"] == "cnn-geo" and meta["family"] == "deep" and len(meta["geo"]["coef"]) == len(est.coef_)
    loaded = load_model(tmp_path / "m")
    assert np.array_equal(loaded.predict(X), est.predict(X))
    # another trunk in the same place: the head no longer fits it, refused
    other = tmp_path / "w2"
    other.mkdir()
    net, tmeta = geo.load_trunk("lateral", wdir)
    torch.nn.init.zeros_(net.out.bias)
    geo.save_trunk(net, geo.trunk_path("lateral", other), {**tmeta, "arch": pretrain.ARCH, "seed": 9})
    meta["config"]["weights_dir"] = str(other)
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="retrain"):
        load_model(tmp_path / "m")


def test_trunk_outputs_do_not_depend_on_the_company_or_the_threads():
    """An image's embedding is the same whichever images a process embeds with it and whatever its
    thread count (two runs of one seed give byte-identical cnn-geo predictions)."""
    import torch

    from smi_deep.geo import GEO_SIZE, load_trunk, trunk_outputs

    net, meta = load_trunk("lateral")
    x = (np.random.default_rng(0).random((6, GEO_SIZE, GEO_SIZE)) > 0.5).astype(np.float32)
    alone = np.concatenate([trunk_outputs(net, meta, x[i:i + 1]) for i in range(len(x))])
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = trunk_outputs(net, meta, x)
        assert torch.get_num_threads() == 2  # restored after the call
    finally:
        torch.set_num_threads(saved)
    np.testing.assert_array_equal(alone, together)
