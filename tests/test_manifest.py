"""The dataset format: reading and typing the manifest, the sample table, safe image reading."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest

from smi_data.images import ImageError, read_image, resolve_inside
from smi_data.manifest import ManifestError, read_manifest, to_samples

HEADER = "subject_id,view,image,sex,age,height_cm,smi,px_per_cm,weight_kg,site\n"


def make(tmp_path, body: str, header: str = HEADER):
    for name, (h, w) in {"a.png": (10, 20), "b.png": (12, 30), "c.jpg": (16, 16)}.items():
        cv2.imwrite(str(tmp_path / name), np.full((h, w, 3), 128, np.uint8))
    (tmp_path / "manifest.csv").write_text(header + body)
    return tmp_path


GOOD = (
    "S2,lateral,a.png,F,61,152.5,5.9,40,50,north\n"
    "S2,posterior,b.png,F,61,152.5,5.9,,50,north\n"
    "S1,lateral,c.jpg,M,45,171,7.8,38.5,,south\n"
)


def test_read_manifest_types_and_absolute_paths(tmp_path):
    m = read_manifest(make(tmp_path, GOOD))
    assert list(m["subject_id"]) == ["S2", "S2", "S1"]
    assert m["age"].dtype == float and m["height_cm"].tolist() == [152.5, 152.5, 171.0]
    assert np.isnan(m.loc[1, "px_per_cm"]) and m.loc[0, "px_per_cm"] == 40.0
    assert np.isnan(m.loc[2, "weight_kg"])
    assert m.loc[2, "image_path"] == str((tmp_path / "c.jpg").resolve())
    assert m["site"].tolist() == ["north", "north", "south"]  # extra column kept


def test_read_manifest_lists_every_problem(tmp_path):
    body = GOOD + "S3,front,a.png,M,45,300,7,,,x\nS1,posterior,../x.png,F,45,171,7.8,,,south\n"
    with pytest.raises(ManifestError) as info:
        read_manifest(make(tmp_path, body))
    problems = info.value.problems
    text = "\n".join(problems)
    assert "row 5: view 'front'" in text and "row 5: height_cm 300 cm" in text
    assert "row 6: image '../x.png': path leaves the dataset folder" in text
    assert "row 4, row 6: subject S1 has different sex values (F, M)" in text
    assert len(problems) == 4
    assert all(p.startswith(str(tmp_path / "manifest.csv")) for p in problems)


def test_read_manifest_label_optional_for_prediction(tmp_path):
    body = GOOD.replace(",5.9,", ",,")
    with pytest.raises(ManifestError, match="smi is empty"):
        read_manifest(make(tmp_path, body))
    m = read_manifest(tmp_path, require_label=False)
    assert m["smi"].isna().sum() == 2


def test_to_samples_single_view_and_both(tmp_path):
    m = read_manifest(make(tmp_path, GOOD))
    lat = to_samples(m, "lateral")
    assert lat["sample_id"].tolist() == ["S1:lateral", "S2:lateral"]  # sorted by subject
    assert lat["image_posterior"].isna().all()
    assert lat.loc[0, "image_lateral"].endswith("c.jpg") and lat.loc[0, "px_per_cm_lateral"] == 38.5
    assert lat["site"].tolist() == ["south", "north"]
    post = to_samples(m, "posterior")
    assert post["subject_id"].tolist() == ["S2"] and np.isnan(post.loc[0, "px_per_cm_posterior"])
    both = to_samples(m, "both")  # S1 has no posterior image: dropped
    assert both["sample_id"].tolist() == ["S2:both"]
    assert both.loc[0, "image_lateral"].endswith("a.png") and both.loc[0, "image_posterior"].endswith("b.png")
    assert both.loc[0, "smi"] == pytest.approx(5.9) and both.loc[0, "sex"] == "F"
    with pytest.raises(ValueError, match="view must be one of"):
        to_samples(m, "front")
    with pytest.raises(ValueError, match="read_manifest"):
        to_samples(pd.DataFrame({"subject_id": ["a"]}), "lateral")


def test_resolve_inside(tmp_path):
    (tmp_path / "sub").mkdir()
    assert resolve_inside(tmp_path, "sub/../a.png") == (tmp_path / "a.png").resolve()
    for bad in ("../a.png", "sub/../../a.png", "/etc/passwd"):
        with pytest.raises(ImageError):
            resolve_inside(tmp_path, bad)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "sub" / "out")
    with pytest.raises(ImageError, match="symbolic link"):
        resolve_inside(tmp_path, "sub/out/x.png")
    with pytest.raises(ImageError, match="not a usable path"):
        resolve_inside(tmp_path, "a\x00.png")


def test_read_image_shapes_and_refusals(tmp_path):
    make(tmp_path, GOOD)
    # check_photo=False: these are tiny flat test images, not photos (the photo rule is tested in test_robust)
    assert read_image(tmp_path / "b.png", check_photo=False).shape == (12, 30, 3)
    assert read_image(tmp_path / "b.png", color=False).shape == (12, 30)
    with pytest.raises(ImageError, match="over the safety limit"):
        read_image(tmp_path / "b.png", max_pixels=359)  # 12 x 30 = 360 pixels
    assert read_image(tmp_path / "b.png", max_pixels=360, check_photo=False).shape[:2] == (12, 30)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "zzz.png")
