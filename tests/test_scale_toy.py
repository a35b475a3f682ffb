"""ArUco scale measurement and the drawn toy dataset."""

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

from smi_data.images import read_image
from smi_data.scale import MARKER_SIZE_CM, detect_marker_px_per_cm, marker_image
from smi_data.toy import ellipse_perimeter, make_toy_dataset


@pytest.mark.parametrize("side_px", [21, 30, 45, 80])
@pytest.mark.parametrize("angle", [0.0, 7.0, -4.0])
def test_marker_side_measured_to_subpixel(side_px, angle):
    img = np.full((300, 300), 230, np.uint8)
    img[100:100 + side_px, 100:100 + side_px] = marker_image(side_px)
    if angle:
        rot = cv2.getRotationMatrix2D((150.0, 150.0), angle, 1.0)
        img = cv2.warpAffine(img, rot, (300, 300), flags=cv2.INTER_LINEAR, borderValue=230)
    ppc, corners = detect_marker_px_per_cm(img)
    assert ppc == pytest.approx(side_px / MARKER_SIZE_CM, rel=0.005)
    assert corners.shape == (4, 2)


@pytest.mark.parametrize("nothing", [None, np.zeros((0, 1), np.int32)], ids=["opencv4", "opencv5"])
def test_a_pass_that_finds_nothing_lets_the_next_one_run(monkeypatch, nothing):
    """OpenCV 4 says "no marker" with None, OpenCV 5 with an empty array: either way the search goes on."""
    img = np.full((600, 450), 230, np.uint8)
    img[200:240, 150:190] = marker_image(40)
    real, calls = cv2.aruco.ArucoDetector, []

    class FirstPassBlind:
        def __init__(self, *a):
            self.d = real(*a)

        def detectMarkers(self, im):
            calls.append(im.shape)
            if len(calls) == 1:  # the half-size quick pass sees nothing
                return (), nothing, ()
            return self.d.detectMarkers(im)

    monkeypatch.setattr(cv2.aruco, "ArucoDetector", FirstPassBlind)
    ppc, _ = detect_marker_px_per_cm(img)
    assert ppc == pytest.approx(40 / MARKER_SIZE_CM, rel=0.005)
    assert calls[0] == (300, 225) and calls[1] == (600, 450)


def test_no_marker_gives_none():
    assert detect_marker_px_per_cm(np.full((100, 100, 3), 128, np.uint8)) is None


def test_ramanujan_perimeter_of_circle_and_flat_ellipse():
    assert ellipse_perimeter(3.0, 3.0) == pytest.approx(2 * np.pi * 3.0)
    assert ellipse_perimeter(1.0, 0.0) == pytest.approx(4.0, rel=1e-3)


def test_toy_dataset_is_deterministic_and_marker_matches_truth(tmp_path):
    a = make_toy_dataset(tmp_path / "a", 4, seed=3)
    b = make_toy_dataset(tmp_path / "b", 4, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 + 8
    for f in files:
        assert hashlib.sha256((a / f).read_bytes()).digest() == hashlib.sha256((b / f).read_bytes()).digest()
    truth = pd.read_csv(a / "truth.csv")
    for _, row in truth.iterrows():
        ppc, _ = detect_marker_px_per_cm(read_image(a / row["image"]))
        assert ppc == pytest.approx(row["px_per_cm_true"], rel=0.01)
