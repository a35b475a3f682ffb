"""The clinic's web page (smi_app): API, caps, refusals, storage under concurrency, load, a real browser."""

import base64
import csv
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import cli
from smi_data.paths import STUDIO_COHORT

pytest.importorskip("fastapi")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from fastapi.testclient import TestClient  # noqa: E402

from smi_app.models import ModelSet, default_model_dirs  # noqa: E402
from smi_app.server import BackgroundServer, create_app, is_loopback  # noqa: E402

TRAIN_SUBJECTS = [f"P{i:03d}" for i in range(1, 17)]
PERSON = "P050"  # not among the training subjects


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _cache(cache, monkeypatch):
    monkeypatch.setenv("LEGSMI_CACHE_DIR", str(cache))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, cache):
    """xgb-features for each view, trained on 16 people of the bundled cohort (a few seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEGSMI_CACHE_DIR", str(cache))
        return _train_views(tmp_path_factory.mktemp("app-models"))


def _train_views(root):
    ds = root / "few"
    (ds / "images").mkdir(parents=True)
    m = pd.read_csv(STUDIO_COHORT / "manifest.csv")
    m = m[m["subject_id"].isin(TRAIN_SUBJECTS)]
    for img in m["image"]:
        shutil.copy(STUDIO_COHORT / img, ds / img)
    m.to_csv(ds / "manifest.csv", index=False)
    dirs = {}
    for view in ("lateral", "posterior", "both"):
        dirs[view] = root / view
        res = CliRunner().invoke(cli.main, ["train", str(ds), "--view", view, "--out", str(dirs[view])])
        assert res.exit_code == 0, res.output
    return dirs


@pytest.fixture(scope="module")
def models(model_dirs):
    return ModelSet.from_dirs(model_dirs)


@pytest.fixture(scope="module")
def client(models):
    return TestClient(create_app(models))


def person():
    m = pd.read_csv(STUDIO_COHORT / "manifest.csv")
    rows = m[m["subject_id"] == PERSON]
    photos = {r["view"]: STUDIO_COHORT / r["image"] for _, r in rows.iterrows()}
    r = rows.iloc[0]
    return photos, {"sex": r["sex"], "age": str(r["age"]), "height_cm": str(r["height_cm"]),
                    "weight_kg": str(r["weight_kg"]), "reference_device": "BIA"}


def files_for(photos, views=("lateral", "posterior")):
    return {v: (f"patient-{v}.jpg", Path(photos[v]).read_bytes(), "image/jpeg") for v in views}


def blank_png(size=300) -> bytes:
    import cv2

    return cv2.imencode(".png", np.full((size, size, 3), 200, np.uint8))[1].tobytes()


def bomb_png(w=30000, h=30000) -> bytes:
    """A tiny PNG whose header declares w x h pixels (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- page and health
def test_page_and_health(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.json()["views"] == ["both", "lateral", "posterior"]
    r = client.get("/")
    assert r.status_code == 200
    page = r.text
    assert "not clinically validated" in page.lower() and "trained on the dataset few" in page
    assert 'accept="image/*"' in page and 'name="lateral"' in page and 'name="posterior"' in page
    # every asset is ours: no address elsewhere, and the browser is told to load nothing from elsewhere
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("/static/app.css", "/static/app.js", "/static/favicon.svg"):
        a = client.get(asset)
        text = a.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert a.status_code == 200 and "https://" not in text and "http://" not in text, asset
    css = client.get("/static/app.css").text
    assert "@media print" in css
    assert client.get("/docs").status_code == 404  # no Swagger page fetching scripts from a CDN


# ----------------------------------------------------------------------------- a full estimate
def test_full_estimate_with_two_photos(client):
    photos, fields = person()
    r = client.post("/api/estimate", data=fields, files=files_for(photos))
    assert r.status_code == 200, r.text
    j = r.json()
    for key in ("smi", "interval_95", "screening", "p_low", "photos", "model"):
        assert key in j
    assert j["status"] == "ok" and 3.0 < j["smi"] < 12.0 and j["model_view"] == "both"
    assert j["low_muscle_mass"] == (j["smi"] < j["awgs_cutoff"]) and j["awgs_cutoff"] in (5.7, 7.0)
    assert [(p["view"], p["status"], p["reason"]) for p in j["photos"]] == [("lateral", "ok", None),
                                                                           ("posterior", "ok", None)]
    for p in j["photos"]:
        head = base64.b64decode(p["annotated"].split(",", 1)[1])[:3]
        assert head == b"\xff\xd8\xff" and p["measurement"]["scale_mode"] == "marker"
    assert "patient-" not in r.text  # the client's file names are not used, not even echoed
    assert "not clinically validated" in j["notice"]
    row = next(csv.DictReader(io.StringIO(j["csv"])))
    assert float(row["smi_kg_m2"]) == pytest.approx(j["smi"], abs=1e-3) and row["lateral_status"] == "ok"
    # the API equals the library on the same photos
    from benchmarks.predict import load_predictor

    lib = load_predictor(client.app.state.models.predictors["both"].model_dir).estimate(
        photos, sex=fields["sex"], age=float(fields["age"]), height_cm=float(fields["height_cm"]),
        weight_kg=float(fields["weight_kg"]))
    assert lib.smi == pytest.approx(j["smi"])


def test_one_photo_uses_that_views_model(client):
    photos, fields = person()
    r = client.post("/api/estimate", data={k: v for k, v in fields.items() if k != "weight_kg"},
                    files=files_for(photos, ("posterior",)))
    j = r.json()
    assert r.status_code == 200 and j["model_view"] == "posterior" and j["smi"] is not None
    assert j["inputs"]["weight_kg"] is None and [p["view"] for p in j["photos"]] == ["posterior"]


# ----------------------------------------------------------------------------- field errors
BASE = {"sex": "F", "age": "70", "height_cm": "158"}


@pytest.mark.parametrize("change, field, words", [
    ({"sex": None}, "sex", "required"),
    ({"sex": "X"}, "sex", "M or F"),
    ({"age": None}, "age", "required"),
    ({"age": "abc"}, "age", "number"),
    ({"age": "10"}, "age", "from 18 to 120"),
    ({"age": "nan"}, "age", "from 18"),
    ({"height_cm": None}, "height_cm", "required"),
    ({"height_cm": "50"}, "height_cm", "from 100 to 230"),
    ({"weight_kg": "heavy"}, "weight_kg", "number"),
    ({"weight_kg": "5"}, "weight_kg", "from 20 to 300"),
    ({"reference_device": "MRI"}, "reference_device", "BIA or DXA"),
    ({"height": "158"}, "height", "unknown field"),
    ({"lateral": "/etc/passwd"}, "lateral", "photo file"),
])
def test_every_bad_field_is_a_422_naming_it(client, change, field, words):
    photos, _ = person()
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    files = {} if field == "lateral" else files_for(photos, ("lateral",))
    r = client.post("/api/estimate", data=data, files=files)
    assert r.status_code == 422, r.text
    j = r.json()
    assert j["field"] == field and j["error"].startswith(f"{field}:") and words in j["error"], j
    assert "Traceback" not in r.text


def test_no_photo_and_a_field_twice(client):
    r = client.post("/api/estimate", data=BASE)
    assert r.status_code == 422 and r.json()["field"] == "lateral" and "photo" in r.json()["error"]
    photos, _ = person()
    r = client.post("/api/estimate", data={**BASE, "age": ["70", "71"]}, files=files_for(photos, ("lateral",)))
    assert r.status_code == 422 and r.json()["field"] == "age" and "more than once" in r.json()["error"]
    # several problems at once are all named
    r = client.post("/api/estimate", data={"sex": "Q", "age": "x"})
    assert {e["field"] for e in r.json()["errors"]} >= {"sex", "age", "height_cm", "lateral"}


# ----------------------------------------------------------------------------- uploads: caps and sniffing
def test_oversize_photo_and_request_are_413(models):
    photos, _ = person()
    small = TestClient(create_app(models, max_photo_bytes=20_000))
    r = small.post("/api/estimate", data=BASE, files=files_for(photos, ("lateral",)))
    assert r.status_code == 413 and r.json()["field"] == "lateral" and "MB limit" in r.json()["error"]
    # a body over the request cap is refused from its Content-Length, before the form is parsed
    big = b"\xff\xd8\xff" + b"\0" * 200_000
    r = small.post("/api/estimate", data=BASE, files={"lateral": ("a.jpg", big, "image/jpeg"),
                                                      "posterior": ("b.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["field"] == "request"


def test_decompression_bomb_is_refused_before_decoding(client, monkeypatch):
    import smi_data.images

    def no_decoding(*a, **k):
        raise AssertionError("a bomb reached the decoder")

    monkeypatch.setattr(smi_data.images, "read_image", no_decoding)
    r = client.post("/api/estimate", data=BASE, files={"lateral": ("leg.png", bomb_png(), "image/png")})
    assert r.status_code == 413 and r.json()["field"] == "lateral"
    assert "30000x30000" in r.json()["error"] and "megapixel" in r.json()["error"]


@pytest.mark.parametrize("content, words", [
    (b"just some text, not a photo at all", "not a JPEG, PNG or WebP"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
    (b"%PDF-1.7 ...", "PDF"),
    (b"", "empty"),
])
def test_non_images_are_sniffed_and_refused(client, content, words):
    # named and typed as a JPEG: the name and the declared type are not trusted
    r = client.post("/api/estimate", data=BASE, files={"lateral": ("leg.jpg", content, "image/jpeg")})
    assert r.status_code == 415 and r.json()["field"] == "lateral" and words in r.json()["error"], r.text


def test_a_refused_photo_gives_its_reason_and_advice(client):
    r = client.post("/api/estimate", data=BASE, files={"lateral": ("leg.png", blank_png(), "image/png")})
    j = r.json()
    assert r.status_code == 200 and j["status"] == "refused" and j["smi"] is None and j["low_muscle_mass"] is None
    (p,) = j["photos"]
    assert p["status"] == "refused" and "leg" in p["reason"] and "leg" in p["advice"]
    # with a good posterior photo, the estimate comes from that photo and says so
    photos, _ = person()
    r = client.post("/api/estimate", data=BASE, files={"lateral": ("leg.png", blank_png(), "image/png"),
                                                       **files_for(photos, ("posterior",))})
    j = r.json()
    assert j["smi"] is not None and j["model_view"] == "posterior" and "lateral photo was refused" in j["caution"]
    assert {p["view"]: p["status"] for p in j["photos"]} == {"lateral": "refused", "posterior": "ok"}


def test_a_truncated_photo_is_refused_not_an_error(client):
    photos, _ = person()
    data = Path(photos["lateral"]).read_bytes()[:5000]
    r = client.post("/api/estimate", data=BASE, files={"lateral": ("leg.jpg", data, "image/jpeg")})
    j = r.json()
    assert r.status_code == 200 and j["status"] == "refused" and "truncated" in j["photos"][0]["reason"]


# ----------------------------------------------------------------------------- safety
def test_temporary_files_are_removed_and_nothing_is_stored(models, tmp_path, cache):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    c = TestClient(create_app(models, tmp_dir=tmp, max_photo_bytes=2_000_000))
    photos, fields = person()
    before = sorted(p.name for p in cache.rglob("*"))
    assert c.post("/api/estimate", data=fields, files=files_for(photos)).status_code == 200
    assert c.post("/api/estimate", data=BASE, files={"lateral": ("a.png", bomb_png(), "image/png")}).status_code == 413
    assert c.post("/api/estimate", data=BASE, files={"lateral": ("a.png", blank_png(), "image/png")}).status_code == 200
    assert list(tmp.iterdir()) == []
    # the models' feature cache is off in the app: nothing derived from a photo is written
    assert sorted(p.name for p in cache.rglob("*")) == before


def test_an_unexpected_error_is_json_without_a_traceback(models, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals /home/clinic/x.py line 3")

    c = TestClient(create_app(models), raise_server_exceptions=False)
    monkeypatch.setattr(models, "estimate", boom)
    photos, _ = person()
    r = c.post("/api/estimate", data=BASE, files=files_for(photos, ("lateral",)))
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
    assert "internal error" in r.json()["error"] and "secret" not in r.text and "Traceback" not in r.text


def test_only_loopback_host_names_when_bound_to_loopback(models):
    c = TestClient(create_app(models, allowed_hosts=["127.0.0.1", "localhost"]))
    assert c.get("/healthz").status_code == 400  # TestClient sends Host: testserver
    assert c.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_twenty_concurrent_requests_all_succeed_and_the_csv_stays_whole(models, tmp_path):
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    save = tmp_path / "saved"
    photos, fields = person()
    blobs = files_for(photos)
    with BackgroundServer(create_app(models, save_dir=save, max_concurrent=2)) as url:
        def one(_):
            with httpx.Client() as c:
                return c.post(f"{url}/api/estimate", data=fields, files=blobs, timeout=120)

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    smis = {round(a.json()["smi"], 6) for a in answers}
    assert len(smis) == 1  # the same photos give the same estimate under concurrency
    rows = list(csv.DictReader(io.StringIO((save / "results.csv").read_text())))
    assert len(rows) == 20 and len({r["id"] for r in rows}) == 20
    assert all(r["smi_kg_m2"] and r["status"] == "ok" for r in rows)
    ids = {a.json()["id"] for a in answers}
    assert {r["id"] for r in rows} == ids
    for rid in ids:
        kept = json.loads((save / f"{rid}.json").read_text())
        assert kept["smi"] is not None and all("annotated" not in p for p in kept["photos"])
        assert (save / f"{rid}_lateral.jpg").is_file()
    assert not list(save.glob("*.tmp")) and not list(save.glob(".*.tmp"))
    assert not list(save.glob("*.jpg.*")) and not any("patient-" in p.name for p in save.iterdir())


def test_load_benchmark_reports_throughput_latency_and_errors(models):
    from smi_app.load import run_load

    lines = []
    res = run_load(create_app(models), requests=6, concurrency=3, echo=lines.append, photos=person()[0],
                   fields=person()[1])
    assert res["errors"] == 0 and res["requests"] == 6 and res["throughput_rps"] > 0
    assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["max_ms"]
    assert "requests/s" in lines[0] and "p95" in lines[0]


# ----------------------------------------------------------------------------- the CLI
def test_default_model_is_trained_once_and_cached(tmp_path, model_dirs):
    calls, lines = [], []

    def fake_train(dataset, view, out):
        calls.append(view)
        shutil.copytree(model_dirs[view], out)

    dirs = default_model_dirs(fake_train, root=tmp_path, echo=lines.append)
    assert sorted(calls) == ["both", "lateral", "posterior"] and "training the default model" in lines[0]
    assert str(tmp_path / "app-models") in lines[0]
    again = default_model_dirs(fake_train, root=tmp_path, echo=lines.append)
    assert again == dirs and len(calls) == 3 and "cached in" in lines[-1]
    desc = ModelSet.from_dirs(dirs, default=True).describe()
    assert desc["default"] and desc["views"] == ["both", "lateral", "posterior"]


def test_cli_app_warns_for_other_hosts_and_serves_given_models(model_dirs, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: served.append(self.config))
    args = ["app", "--model", str(model_dirs["lateral"]), "--model", str(model_dirs["both"])]
    res = CliRunner().invoke(cli.main, args)
    assert res.exit_code == 0, res.output
    assert "WARNING" not in res.output and "http://127.0.0.1:8000/" in res.output and served[-1].host == "127.0.0.1"
    res = CliRunner().invoke(cli.main, args + ["--host", "0.0.0.0", "--port", "8123"])
    assert res.exit_code == 0 and "WARNING: listening on 0.0.0.0" in res.output and served[-1].port == 8123
    # two models for one view are refused by name
    res = CliRunner().invoke(cli.main, ["app", "--model", str(model_dirs["lateral"]), "--model",
                                        str(model_dirs["lateral"])])
    assert res.exit_code == 2 and "second model for the lateral view" in res.output


# ----------------------------------------------------------------------------- a real browser
def _browser():
    import importlib.util
    import os

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin or importlib.util.find_spec("selenium") is None:
        why = ("the browser test needs selenium (pip install -e '.[browser]'), Chromium and chromedriver "
               "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)")
        if os.environ.get("LEGSMI_REQUIRE_BROWSER"):  # CI: the browser test must run, not skip
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1500", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


def test_real_browser_fills_the_form_and_reads_the_estimate(models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    photos, fields = person()
    expected = TestClient(create_app(models)).post("/api/estimate", data=fields, files=files_for(photos)).json()
    driver = _browser()
    shot = tmp_path / "app-result.png"
    try:
        with BackgroundServer(create_app(models)) as url:
            driver.get(url + "/")
            assert "legsmi" in driver.title
            driver.find_element(By.ID, f"sex-{fields['sex']}").click()
            for name in ("age", "height_cm", "weight_kg"):
                driver.find_element(By.ID, name).send_keys(fields[name])
            for view in ("lateral", "posterior"):
                driver.find_element(By.ID, view).send_keys(str(Path(photos[view]).resolve()))
            driver.find_element(By.ID, "submit").click()
            wait = WebDriverWait(driver, 90)
            wait.until(EC.visibility_of_element_located((By.ID, "result")))
            wait.until(lambda d: d.find_element(By.ID, "smi-value").text not in ("", "–"))
            shown = float(driver.find_element(By.ID, "smi-value").text)
            verdict = driver.find_element(By.ID, "verdict").text
            photos_shown = driver.find_elements(By.CSS_SELECTOR, "#photos .photo img")
            loaded = driver.execute_script(
                "return Array.from(document.querySelectorAll('#photos img')).every(i => i.naturalWidth > 0)")
            driver.save_screenshot(str(shot))
            # a bad field comes back to the page as a named error
            driver.find_element(By.ID, "age").clear()
            driver.find_element(By.ID, "age").send_keys("7")
            driver.find_element(By.ID, "submit").click()
            wait.until(EC.visibility_of_element_located((By.ID, "form-error")))
            err = driver.find_element(By.ID, "form-error").text
            old_result_hidden = not driver.find_element(By.ID, "result").is_displayed()
            age_marked = "invalid" in driver.find_element(By.ID, "age").get_attribute("class")
    finally:
        driver.quit()
    assert shown == pytest.approx(expected["smi"], abs=0.006)
    if expected["screening"]:  # a model with calibrated intervals: the three-way result
        assert verdict == {"low": "Low muscle mass", "not low": "Not low",
                           "indeterminate": "Indeterminate"}[expected["screening"]]
    else:
        assert verdict == ("Low muscle mass" if expected["low_muscle_mass"] else "Not low")
    assert len(photos_shown) == 2 and loaded
    assert err.startswith("Age:") and "from 18 to 120" in err and age_marked and old_result_hidden
    assert shot.is_file() and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_a_chunked_upload_over_the_cap_is_cut_off_with_413(models):
    import httpx

    def body():
        yield b"--x\r\nContent-Disposition: form-data; name=\"lateral\"; filename=\"a.jpg\"\r\n\r\n\xff\xd8\xff"
        for _ in range(40):
            yield b"\0" * 10_000

    with BackgroundServer(create_app(models, max_photo_bytes=50_000)) as url:
        with httpx.Client() as c:
            r = c.post(f"{url}/api/estimate", content=body(),
                       headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.json()["field"] == "request"


def test_cli_app_refuses_a_taken_port_and_an_unusable_save_folder(model_dirs, tmp_path, monkeypatch):
    import socket

    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = CliRunner().invoke(cli.main, ["app", "--model", str(model_dirs["lateral"]), "--port", str(port)])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output
    afile = tmp_path / "file"
    afile.write_text("x")
    res = CliRunner().invoke(cli.main, ["app", "--model", str(model_dirs["lateral"]), "--save", str(afile / "sub")])
    assert res.exit_code == 2 and "--save" in res.output and "cannot keep results" in res.output


def test_ipv6_loopback_host_header_is_accepted(models):
    """A browser on http://[::1]:8000 sends ``Host: [::1]:8000``: the loopback check must accept it."""
    from smi_app.server import LOOPBACK_HOSTS, host_name

    c = TestClient(create_app(models, allowed_hosts=list(LOOPBACK_HOSTS)))
    for host in ("[::1]:8000", "[::1]", "127.0.0.1:8000", "localhost"):
        assert c.get("/healthz", headers={"host": host}).status_code == 200, host
    for host in ("[::2]:8000", "evil.example:8000", "[::1", "[::1]x", "::1", "localhost:80:80", "testserver"):
        assert c.get("/healthz", headers={"host": host}).status_code == 400, host
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1") is None and host_name("") is None


def test_each_photo_is_measured_once_per_request(client, monkeypatch):
    """The model's features and the annotated copy share one measurement per photo."""
    import smi_features.annotate as annotate
    import smi_features.extractor as extractor

    calls = []
    real = extractor.measure_leg

    def counting(*a, **k):
        calls.append(k.get("view"))
        return real(*a, **k)

    monkeypatch.setattr(extractor, "measure_leg", counting)
    monkeypatch.setattr(annotate, "measure_leg", counting)
    photos, fields = person()
    r = client.post("/api/estimate", data=fields, files=files_for(photos))
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert all(ph.get("annotated") for ph in r.json()["photos"]), r.json()["photos"]
    assert sorted(calls) == ["lateral", "posterior"]  # twice each before: features, then the annotated copy
