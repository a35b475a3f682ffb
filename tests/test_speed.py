"""The speed work keeps every output: fast paths give the same pixels and numbers as the plain ones."""

import cv2
import numpy as np
import pytest

from smi_data import images
from smi_deep.transforms import RandomBrightnessContrast


def _per_pixel(crop, p):
    x = crop.astype(np.float32)
    mean = float(x.mean())
    x = (x - mean) * p["c"] + mean + p["b"] * 255.0
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def test_brightness_table_equals_per_pixel_arithmetic():
    rng = np.random.default_rng(0)
    t = RandomBrightnessContrast(brightness=0.3, contrast=0.5, seed=1)
    for shape in [(224, 224, 3), (96, 96, 3), (40, 30)]:
        crop = rng.integers(0, 256, shape, dtype=np.uint8)
        for _ in range(20):
            p = t.draw()
            out, _ = RandomBrightnessContrast.apply(crop, None, p)
            assert out.dtype == np.uint8 and out.shape == crop.shape
            np.testing.assert_array_equal(out, _per_pixel(crop, p))


def _photo(h=120, w=160):
    rng = np.random.default_rng(3)
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (40, 90, 160)
    cv2.circle(img, (w // 2, h // 2), h // 3, (200, 180, 150), -1)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def test_fast_jpeg_decode_equals_opencv(tmp_path):
    p = tmp_path / "a.jpg"
    cv2.imwrite(str(p), _photo(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert not images._jpeg_has_exif(p.read_bytes()[:65536])
    np.testing.assert_array_equal(images.read_image(p), cv2.imread(str(p), cv2.IMREAD_COLOR))


def test_jpeg_with_exif_orientation_is_turned_as_before(tmp_path):
    from PIL import Image

    p = tmp_path / "turned.jpg"
    im = Image.fromarray(_photo()[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    im.save(p, quality=90, exif=exif.tobytes())
    assert images._jpeg_has_exif(p.read_bytes()[:65536])
    out = images.read_image(p)
    assert out.shape[:2] == (160, 120)  # turned, as OpenCV turns it
    np.testing.assert_array_equal(out, cv2.imread(str(p), cv2.IMREAD_COLOR))


def test_corrupt_jpeg_still_refused_on_the_fast_path(tmp_path):
    p = tmp_path / "bad.jpg"
    cv2.imwrite(str(p), _photo(), [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = bytes(200)
    p.write_bytes(bytes(data))
    with pytest.raises(images.ImageError, match="corrupt"):
        images.read_image(p)


def test_greyscale_rule_unchanged():
    rng = np.random.default_rng(5)
    grey = np.repeat(rng.integers(0, 256, (200, 300, 1), dtype=np.uint8), 3, axis=2)
    assert images.is_greyscale(grey)
    assert not images.is_greyscale(_photo())
    assert not images.is_greyscale(np.full((100, 100, 3), 128, np.uint8))  # flat: not called greyscale


def test_mirrored_photo_refused_and_straight_one_kept():
    from smi_data.scale import marker_image

    img = np.full((600, 500, 3), 235, np.uint8)
    m = marker_image(60)
    img[100:160, 80:140] = m[..., None]
    assert not images.is_mirrored(img)
    assert images.is_mirrored(np.ascontiguousarray(img[:, ::-1]))


def test_mirror_search_after_a_failed_marker_search_gives_the_same_answer(monkeypatch):
    """marker_found=False (the detector searched and found none) skips only the detector's quick pass."""
    import cv2

    from smi_data.scale import detect_marker_px_per_cm, marker_image

    straight = np.full((600, 500, 3), 235, np.uint8)
    straight[100:160, 80:140] = marker_image(60)[..., None]
    straight[200:560, 220:300] = (90, 120, 170)  # a leg-coloured bar: a colour photo
    mirrored = np.ascontiguousarray(straight[:, ::-1])
    plain = _photo(600, 500)
    assert detect_marker_px_per_cm(mirrored) is None and detect_marker_px_per_cm(plain) is None
    for img in (mirrored, plain):
        assert images.is_mirrored(img, quick_pass=False) == images.is_mirrored(img)
        assert images.photo_problem(img, marker_found=False) == images.photo_problem(img)
    assert "mirrored" in images.photo_problem(mirrored, marker_found=False)
    calls = []
    real = cv2.aruco.ArucoDetector

    class Counting:
        def __init__(self, *a):
            self.d = real(*a)

        def detectMarkers(self, im):
            calls.append(im.shape)
            return self.d.detectMarkers(im)

    monkeypatch.setattr(cv2.aruco, "ArucoDetector", Counting)
    images.photo_problem(plain)
    with_quick = len(calls)
    calls.clear()
    images.photo_problem(plain, marker_found=False)
    assert len(calls) == with_quick - 1  # the half-size quick pass is not run again


def test_one_thread_restores_thread_counts():
    from smi_features.extractor import one_thread

    before = cv2.getNumThreads()
    with one_thread():
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from smi_data.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy", n_subjects=10, seed=3, size=192,
                            views=("lateral",))


def test_crop_store_gives_the_crop_made_and_the_failure_reason(toy, tmp_path):
    from smi_data.manifest import read_manifest
    from smi_deep import cropstore, preprocess

    settings = preprocess.CropSettings(size=48)

    def _crop_or_none(p):
        try:
            return preprocess.cached_crop(p, settings)
        except preprocess.PreprocessError:  # a drawn leg the segmenter refuses: not what this test is about
            return None

    made = [(str(p), _crop_or_none(str(p))) for p in read_manifest(toy)["image_path"]]
    made = [(p, c) for p, c in made if c is not None][:3]
    assert len(made) == 3
    paths, fresh = [p for p, _ in made], [c for _, c in made]
    store = tmp_path / "store"
    assert cropstore.warm(store, [(p, settings.to_dict(), None, None, None) for p in paths]) == 3
    assert len(list(store.glob("*.crop.npy"))) == 3
    preprocess.clear_cache()
    with cropstore.using(store):
        for p, (crop, mask) in zip(paths, fresh):
            c2, m2 = cropstore.shared_crop(p, settings)
            np.testing.assert_array_equal(c2, crop)
            np.testing.assert_array_equal(m2, mask)
        assert preprocess.cache_info()["items"] == 0  # read from the store, not made again
        junk = tmp_path / "junk.jpg"
        junk.write_bytes(b"not an image")
        for _ in range(2):  # the second time from the store
            with pytest.raises(preprocess.PreprocessError, match="junk.jpg"):
                cropstore.shared_crop(str(junk), settings)


def test_parallel_benchmark_with_a_cnn_equals_the_serial_one(toy, tmp_path):
    import pandas as pd

    from benchmarks.harness import BenchmarkConfig, run_benchmark

    def bench(out, jobs):
        cfg = BenchmarkConfig(dataset=str(toy), out=str(out), models=["mean", "cnn-lite"], views="lateral",
                              tiers="photo", folds=2, seed=5, progress=False, report=False, ceiling=False,
                              overrides={"cnn-lite": {"epochs": 2, "image_size": 48, "n_threads": 1}}, jobs=jobs)
        return run_benchmark(cfg)

    bench(tmp_path / "serial", 1)
    bench(tmp_path / "parallel", 2)
    a = (tmp_path / "serial" / "metrics.csv").read_bytes()
    assert a == (tmp_path / "parallel" / "metrics.csv").read_bytes()
    assert pd.read_csv(tmp_path / "serial" / "predictions.csv")["y_pred"].notna().sum() > 0


def test_extractor_refuses_a_mirrored_photo_as_read_image_does(tmp_path):
    from smi_data.scale import marker_image
    from smi_features.extractor import measure_image_file

    img = np.full((600, 500, 3), 235, np.uint8)
    img[100:160, 80:140] = marker_image(60)[..., None]
    img[200:560, 220:300] = (90, 120, 170)
    p = tmp_path / "mirrored.png"
    cv2.imwrite(str(p), np.ascontiguousarray(img[:, ::-1]))
    with pytest.raises(images.ImageError) as exc:
        images.read_image(p)
    rec = measure_image_file(p)
    assert not rec["ok"] and rec["read_error"] and rec["reason"] == str(exc.value)
    assert "mirrored" in rec["reason"]
    assert images.photo_problem(img[:, ::-1], marker_found=True) is None  # the caller found it straight


def test_feature_records_kept_in_memory_and_a_rewritten_photo_looked_up_again(tmp_path, monkeypatch):
    from test_features_draw import drawn_leg

    from smi_features import extractor

    p = str(tmp_path / "leg.png")
    cv2.imwrite(p, drawn_leg()[0])
    store = extractor.FeatureCache(tmp_path / "c")
    first = extractor.measure_files([p], cache=store, contexts=[(2.5, 170.0)])[0]
    assert first["ok"]
    with monkeypatch.context() as mp:  # the second time neither hashes the file nor reads the cache
        mp.setattr(extractor, "file_sha256", lambda *a: pytest.fail("hashed again"))
        mp.setattr(extractor.FeatureCache, "get", lambda *a: pytest.fail("read from disk again"))
        assert extractor.measure_files([p], cache=store, contexts=[(2.5, 170.0)])[0] is first
    cv2.imwrite(p, drawn_leg(calf_cm=14.0)[0])  # same path, new content: measured afresh
    again = extractor.measure_files([p], cache=store, contexts=[(2.5, 170.0)])[0]
    assert again["features_px"] != first["features_px"]
    fresh = extractor.measure_files([p], cache=False, contexts=[(2.5, 170.0)])[0]
    assert again["features_px"] == fresh["features_px"]


def test_plain_background_photo_models_its_background_once(monkeypatch):
    from test_features_draw import drawn_leg

    from smi_image import classical
    from smi_image.segment import segment_leg

    calls = []
    real = classical.background_distance
    monkeypatch.setattr(classical, "background_distance", lambda *a, **k: calls.append(1) or real(*a, **k))
    seg = segment_leg(drawn_leg()[0], method="auto")
    assert seg.method in ("canny", "otsu") and "plain background" in " ".join(seg.notes)
    assert len(calls) == 1
