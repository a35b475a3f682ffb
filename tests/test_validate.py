"""legsmi validate: every problem reported, one line each naming row and column/file.

Each bad case is a small function that writes its files into a generated dataset and
returns its manifest rows with the problems it must produce. Every case runs alone,
and all of them run together in one dataset where each must still be reported.
"""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from smi_data.images import image_size
from smi_data.validate import format_summary, validate_dataset

COLUMNS = ["subject_id", "view", "image", "sex", "age", "height_cm", "smi", "px_per_cm", "site"]


# ----------------------------------------------------------------------------- file makers
def write_png(path: Path, h: int = 96, w: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def write_jpeg(path: Path, h: int = 96, w: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def write_fake_png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose IHDR declares ``width x height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def write_real_bomb(path: Path) -> Path:
    """A real, fully valid 1-bit PNG of 8000 x 6000 = 48 M pixels: a few kB on disk."""
    from PIL import Image

    Image.new("1", (8000, 6000), 0).save(path, optimize=True)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def row(sid: str, view: str = "lateral", image: str = "good.png", **kw) -> dict:
    r = {"subject_id": sid, "view": view, "image": image, "sex": "M", "age": "50",
         "height_cm": "170", "smi": "7.5", "px_per_cm": "", "site": "A"}
    r.update(kw)
    return r


def write_manifest(ds: Path, rows: list[dict], columns: list[str] = COLUMNS) -> None:
    with open(ds / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# ----------------------------------------------------------------------------- bad cases
# Each case: f(ds, outside) -> (rows, expected), expected = [(row offsets within the case, text)].
def case_missing_file(ds, out):
    return [row("MF", image="missing.png")], [((0,), "file not found")]


def case_zero_byte(ds, out):
    (ds / "empty.png").write_bytes(b"")
    return [row("ZB", image="empty.png")], [((0,), "empty (0 bytes)")]


def case_truncated_png(ds, out):
    truncate(write_png(ds / "trunc.png", 64, 64))
    return [row("TP", image="trunc.png")], [((0,), "truncated")]


def case_truncated_jpeg(ds, out):
    truncate(write_jpeg(ds / "trunc.jpg", 64, 64))
    return [row("TJ", image="trunc.jpg")], [((0,), "truncated")]


def case_not_image(ds, out):
    (ds / "notes.png").write_text("this is not a picture\n")
    return [row("NI", image="notes.png")], [((0,), "not a readable image")]


def case_bomb_header(ds, out):
    write_fake_png_header(ds / "bomb.png", 100_000, 100_000)
    return [row("BH", image="bomb.png")], [((0,), "over the safety limit")]


def case_bomb_real(ds, out):
    write_real_bomb(ds / "bomb1bit.png")
    return [row("BR", image="bomb1bit.png")], [((0,), "48,000,000 pixels, over the safety limit")]


def case_dotdot(ds, out):
    write_png(out / "outside.png")
    return [row("DD", image="../outside/outside.png")], [((0,), "leaves the dataset folder")]


def case_absolute(ds, out):
    p = write_png(out / "abs.png")
    return [row("AB", image=str(p.resolve()))], [((0,), "absolute paths are not allowed")]


def case_symlink_out(ds, out):
    target = write_png(out / "target.png")
    os.symlink(target, ds / "link.png")
    return [row("SL", image="link.png")], [((0,), "leaves the dataset folder")]


def case_duplicate(ds, out):
    return ([row("DU", image="good.png"), row("DU", image="good.jpg")],
            [((0, 1), "duplicate (subject_id, view) = (DU, lateral)")])


def case_unknown_view(ds, out):
    return [row("UV", view="front")], [((0,), "view 'front' is not one of lateral, posterior")]


def case_unknown_sex(ds, out):
    return [row("US", sex="X")], [((0,), "sex 'X' is not one of M, F")]


def case_height(ds, out):
    return [row("HT", height_cm="250")], [((0,), "height_cm 250 cm is outside the plausible range 100-230")]


def case_height_low(ds, out):
    return [row("HL", height_cm="95")], [((0,), "height_cm 95 cm is outside")]


def case_age(ds, out):
    return [row("AG", age="130")], [((0,), "age 130 years is outside the plausible range 0-120")]


def case_age_negative(ds, out):
    return [row("AN", age="-1")], [((0,), "age -1 years is outside")]


def case_smi_high(ds, out):
    return [row("SH", smi="25")], [((0,), "smi 25 kg/m^2 is outside the plausible range 2-20")]


def case_smi_low(ds, out):
    return [row("SO", smi="1.5")], [((0,), "smi 1.5 kg/m^2 is outside")]


def case_px_zero(ds, out):
    return [row("PZ", px_per_cm="0")], [((0,), "px_per_cm 0 must be greater than 0")]


def case_px_negative(ds, out):
    return [row("PN", px_per_cm="-2.5")], [((0,), "px_per_cm -2.5 must be greater than 0")]


def case_sex_differs(ds, out):
    return ([row("SD", sex="M"), row("SD", view="posterior", image="good.jpg", sex="F")],
            [((0, 1), "subject SD has different sex values (F, M)")])


def case_age_differs(ds, out):
    return ([row("AD", age="40"), row("AD", view="posterior", image="good.jpg", age="41")],
            [((0, 1), "subject AD has different age values (40, 41)")])


def case_height_differs(ds, out):
    return ([row("HD", height_cm="170"), row("HD", view="posterior", image="good.jpg", height_cm="172.5")],
            [((0, 1), "subject HD has different height_cm values (170, 172.5)")])


def case_empty_age(ds, out):
    return [row("EA", age="")], [((0,), "age is empty; a number is required")]


def case_empty_height(ds, out):
    return [row("EH", height_cm="")], [((0,), "height_cm is empty; a number is required")]


def case_empty_smi(ds, out):
    return [row("ES", smi="")], [((0,), "smi is empty; a number is required")]


def case_not_number(ds, out):
    return [row("NN", age="fifty")], [((0,), "age 'fifty' is not a number")]


CASES = {name[5:]: f for name, f in sorted(globals().items()) if name.startswith("case_")}


def make_base(tmp_path: Path) -> tuple[Path, Path]:
    ds, outside = tmp_path / "ds", tmp_path / "outside"
    ds.mkdir()
    outside.mkdir()
    write_png(ds / "good.png", seed=1)
    write_jpeg(ds / "good.jpg", seed=2)
    return ds, outside


def clean_rows() -> list[dict]:
    return [row("C1"), row("C1", view="posterior", image="good.jpg"),
            row("C2", sex="F", smi="6.0", age="70", height_cm="155"),
            row("C2", view="posterior", image="good.jpg", sex="F", smi="6.0", age="70", height_cm="155")]


def expected_lines(expected, first_row: int) -> list[tuple[str, str]]:
    out = []
    for offsets, text in expected:
        out.append((", ".join(f"row {first_row + o}" for o in offsets) + ": ", text))
    return out


def assert_reported(problems: list[str], wanted: list[tuple[str, str]]) -> None:
    for prefix, text in wanted:
        hits = [p for p in problems if p.startswith(prefix) and text in p]
        assert len(hits) == 1, f"expected one line '{prefix}...{text}...', got {hits}\nall:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- tests
def test_clean_dataset_passes_with_summary(tmp_path):
    ds, _ = make_base(tmp_path)
    write_manifest(ds, clean_rows())
    report = validate_dataset(ds)
    assert report.problems == []
    assert report.images_checked == 4
    s = report.summary
    assert s["n_subjects"] == 2 and s["subjects_with_both_views"] == 2
    assert s["images_per_view"] == {"lateral": 2, "posterior": 2}
    assert s["subjects_by_sex"] == {"M": 1, "F": 1}
    # One SMI value per subject, not per image: mean of 7.5 and 6.0, SD (ddof=1) of the two.
    assert s["smi"]["all"]["mean"] == pytest.approx(6.75)
    assert s["smi"]["all"]["sd"] == pytest.approx(np.std([7.5, 6.0], ddof=1))
    assert s["smi"]["M"]["mean"] == pytest.approx(7.5) and s["smi"]["F"]["n"] == 1
    text = format_summary(report)
    assert "subjects: 2" in text and "lateral 2, posterior 2" in text
    assert "SMI kg/m^2 (mean ± SD): all 6.75 ± 1.06 (n=2); M 7.50 (n=1); F 6.00 (n=1)" in text

    result = CliRunner().invoke(main, ["validate", str(ds)])
    assert result.exit_code == 0, result.output
    assert "OK (4 rows, 4 images decoded)" in result.output


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_case_alone(tmp_path, name):
    ds, outside = make_base(tmp_path)
    rows, expected = CASES[name](ds, outside)
    write_manifest(ds, clean_rows() + rows)
    report = validate_dataset(ds)
    assert len(report.problems) == len(expected), report.problems
    assert_reported(report.problems, expected_lines(expected, first_row=2 + len(clean_rows())))


def test_all_bad_cases_at_once(tmp_path):
    ds, outside = make_base(tmp_path)
    rows, wanted = clean_rows(), []
    for name in sorted(CASES):
        case_rows, expected = CASES[name](ds, outside)
        wanted += expected_lines(expected, first_row=2 + len(rows))
        rows += case_rows
    write_manifest(ds, rows)
    report = validate_dataset(ds)
    assert_reported(report.problems, wanted)
    assert len(report.problems) == len(wanted)  # nothing reported twice, nothing spurious
    assert len(wanted) >= 28
    # Lines come in row order, and the clean rows produce nothing.
    firsts = [int(p.split(":")[0].split(",")[0].split()[1]) for p in report.problems]
    assert firsts == sorted(firsts) and min(firsts) == 2 + len(clean_rows())

    result = CliRunner().invoke(main, ["validate", str(ds)])
    assert result.exit_code == 1
    printed = [line for line in result.output.splitlines() if line.startswith("row")]
    assert printed == report.problems
    assert f"{len(wanted)} problem(s) found" in result.output


def test_missing_columns_reported_with_other_problems(tmp_path):
    ds, outside = make_base(tmp_path)
    rows = clean_rows() + case_zero_byte(ds, outside)[0] + case_unknown_view(ds, outside)[0]
    write_manifest(ds, rows, columns=[c for c in COLUMNS if c not in ("height_cm", "smi")])
    problems = validate_dataset(ds).problems
    assert problems[0] == ("missing required column(s) height_cm, smi; "
                           "required: subject_id, view, image, sex, age, height_cm, smi")
    assert_reported(problems, [("row 6: ", "empty (0 bytes)"), ("row 7: ", "view 'front'")])
    assert len(problems) == 3


def test_predict_only_allows_missing_or_empty_smi(tmp_path):
    ds, _ = make_base(tmp_path)
    rows = clean_rows()
    rows[2]["smi"] = rows[3]["smi"] = ""
    write_manifest(ds, rows)
    assert len([p for p in validate_dataset(ds).problems if "smi is empty" in p]) == 2
    report = validate_dataset(ds, require_label=False)
    assert report.problems == []
    assert report.summary["smi"]["all"]["n"] == 1

    write_manifest(ds, rows, columns=[c for c in COLUMNS if c != "smi"])
    result = CliRunner().invoke(main, ["validate", "--predict-only", str(ds)])
    assert result.exit_code == 0, result.output
    assert "SMI: no labels" in result.output
    result = CliRunner().invoke(main, ["validate", str(ds)])
    assert result.exit_code == 1 and "missing required column(s) smi" in result.output


def test_no_images_skips_decoding_but_keeps_path_checks(tmp_path):
    ds, outside = make_base(tmp_path)
    rows = clean_rows() + case_zero_byte(ds, outside)[0] + case_dotdot(ds, outside)[0]
    write_manifest(ds, rows)
    result = CliRunner().invoke(main, ["validate", "--no-images", str(ds)])
    assert result.exit_code == 1
    assert "row 7: image '../outside/outside.png': path leaves the dataset folder" in result.output
    assert "0 bytes" not in result.output


def test_no_manifest_or_no_folder(tmp_path):
    report = validate_dataset(tmp_path / "nope")
    assert len(report.problems) == 1 and "not a folder" in report.problems[0]
    report = validate_dataset(tmp_path)
    assert len(report.problems) == 1 and "no manifest.csv" in report.problems[0]


def test_spreadsheet_row_numbers_survive_blank_lines_and_bom(tmp_path):
    ds, _ = make_base(tmp_path)
    text = ("\ufeffsubject_id,view,image,sex,age,height_cm,smi\n"
            "A,lateral,good.png,M,50,170,7\n"
            "\n"
            "B,lateral,good.png,M,50,999,7\n"
            "C,lateral,good.png,F\n")  # short row: missing cells count as empty
    (ds / "manifest.csv").write_text(text, encoding="utf-8")
    problems = validate_dataset(ds).problems
    assert problems == [
        "row 4: height_cm 999 cm is outside the plausible range 100-230",
        "row 5: age is empty; a number is required",
        "row 5: height_cm is empty; a number is required",
        "row 5: smi is empty; a number is required",
    ]


def test_image_size_reads_headers_without_decoding(tmp_path):
    assert image_size(write_fake_png_header(tmp_path / "h.png", 70_000, 50_000)) == (70_000, 50_000)
    assert image_size(write_jpeg(tmp_path / "j.jpg", h=21, w=13)) == (13, 21)
    assert image_size(write_real_bomb(tmp_path / "r.png")) == (8000, 6000)
    assert (tmp_path / "r.png").stat().st_size < 100_000
