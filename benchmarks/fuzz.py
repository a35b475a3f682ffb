"""The fuzz campaign the project keeps: mutated photos and broken manifests, run through the tools.

:func:`run_fuzz` (the ``legsmi fuzz`` command) regenerates a corpus from the bundled
cohort, deterministically from a seed:

* **images**: every category of :data:`IMAGE_CATEGORIES` applied to photos of the
  cohort (truncations with and without the JPEG end marker put back, header and body
  byte flips, zeroed blocks, greyscale, mirrored, tiny, a header that claims a huge
  image, noise, non-images, ...), plus the unmutated photos as a control;
* **manifests**: named broken manifests (:func:`manifest_cases`: extra fields,
  duplicate headers, digits Python reads and pandas does not, formulas, paths that
  escape, a named pipe, encodings, ...) and random byte-level mutations of the
  bundled manifest.

Each image goes through what ``validate`` (:func:`smi_data.images.read_image`),
``features`` (:func:`smi_features.extractor.measure_image_file`) and ``predict``
(:class:`benchmarks.predict.Predictor`, a model trained on the bundled cohort) do
with it; each manifest through ``validate`` (the command, in process), the manifest
reader and ``features`` (the command: its CSV is checked for formula cells). Every
item runs in a worker process with a timeout, so a hang is counted, killed and the
campaign goes on.

Outcomes per item and stage: ``refused`` (a clear error or a refused row, with its
reason), ``accepted`` (measured / estimated), ``traceback`` (any other exception),
``hang`` (over the timeout). Estimates are checked: ``implausible`` counts estimates
printed outside 2-20 kg/m^2 or outside the model's training range (with its margin)
without a caution; ``far`` counts accepted estimates of a mutated photo that differ from
the same model's estimate of the unmutated photo by more than :data:`FAR_KG_M2` (a photo
measured wrong rather than refused: the unmutated photos are run through the same
workers once each, as references). The report (``fuzz.md``, ``fuzz.json``, ``results.csv``) is
written through the staged-output helper.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_CATEGORIES = (
    "truncated", "truncated+eoi", "header-flip", "body-flip", "zeroed-block", "greyscale", "mirrored",
    "tiny", "huge-header", "noise", "non-image", "recompressed-low", "rotated", "png-damaged",
)
#: Error classes (by name) that count as a clear refusal (the code before issue 14 had no common base).
REFUSAL_NAMES = {"ImageError", "ManifestError", "ModelFileError", "SplitsError", "OutputExistsError",
                 "UsageError", "OutputError", "BenchmarkError", "PredictInputError"}
PLAUSIBLE = (2.0, 20.0)
TRAINING_MARGIN = 0.10
#: An accepted estimate this far (kg/m^2) from the unmutated photo's counts as measured wrong
#: (about the cohort's SMI standard deviation, twice a good model's typical error).
FAR_KG_M2 = 1.0


# ----------------------------------------------------------------------------- image mutations
def _encode(img, ext=".jpg", quality=90) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError("encode failed")
    return buf.tobytes()


def mutate_image(data: bytes, category: str, rng: random.Random) -> tuple[bytes, str, str]:
    """``(bytes, file suffix, detail)`` of one mutation of the JPEG ``data``."""
    import cv2

    n = len(data)
    if category == "truncated":
        cut = rng.randrange(n // 10, n - 4)
        return data[:cut], ".jpg", f"cut at {cut}/{n}"
    if category == "truncated+eoi":
        cut = rng.randrange(n // 10, n - 8)
        return data[:cut] + b"\xff\xd9", ".jpg", f"cut at {cut}/{n}, end marker put back"
    if category == "header-flip":
        b = bytearray(data)
        k = rng.randint(1, 4)
        for _ in range(k):
            i = rng.randrange(2, min(620, n))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), ".jpg", f"{k} bit flip(s) in the first 620 bytes"
    if category == "body-flip":
        b = bytearray(data)
        k = rng.randint(1, 20)
        for _ in range(k):
            i = rng.randrange(620, n - 2)
            b[i] = rng.randrange(256)
        return bytes(b), ".jpg", f"{k} random byte(s) in the scan data"
    if category == "zeroed-block":
        b = bytearray(data)
        length = rng.choice([16, 64, 256, 1024])
        i = rng.randrange(2, max(3, n - length - 2))
        b[i:i + length] = bytes(min(length, n - 2 - i))
        return bytes(b), ".jpg", f"{length} bytes zeroed at {i}"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if category == "greyscale":
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if rng.random() < 0.5:
            return _encode(g), ".jpg", "1-channel JPEG"
        return _encode(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)), ".jpg", "3-channel grey JPEG"
    if category == "mirrored":
        return _encode(np.ascontiguousarray(img[:, ::-1])), ".jpg", "left-right mirror"
    if category == "tiny":
        side = rng.choice([16, 32, 48, 64, 72])
        return _encode(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)), ".jpg", f"{side}x{side}"
    if category == "huge-header":
        b = bytearray(data)
        i = data.find(b"\xff\xc0")
        if i < 0:
            i = data.find(b"\xff\xc2")
        h, w = rng.choice([(65000, 65000), (20000, 30000), (1, 65000), (65535, 1)])
        b[i + 5:i + 7] = h.to_bytes(2, "big")
        b[i + 7:i + 9] = w.to_bytes(2, "big")
        return bytes(b), ".jpg", f"frame header says {w}x{h}"
    if category == "noise":
        h, w = img.shape[:2]
        arr = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (h, w, 3), dtype=np.uint8)
        return _encode(arr), ".jpg", "uniform colour noise"
    if category == "non-image":
        kind = rng.choice(["text", "html", "zip", "empty", "pdf", "random", "png-sig-only", "jpeg-sig-only"])
        payload = {
            "text": b"subject_id,view\nP001,lateral\n",
            "html": b"<html><body>not a photo</body></html>",
            "zip": b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(200)),
            "empty": b"",
            "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            "random": bytes(rng.randrange(256) for _ in range(4096)),
            "png-sig-only": b"\x89PNG\r\n\x1a\n",
            "jpeg-sig-only": b"\xff\xd8\xff\xe0",
        }[kind]
        return payload, ".jpg", kind
    if category == "recompressed-low":
        q = rng.choice([5, 10, 20])
        return _encode(img, quality=q), ".jpg", f"JPEG quality {q}"
    if category == "rotated":
        k = rng.choice([1, 2, 3])
        return _encode(np.ascontiguousarray(np.rot90(img, k))), ".jpg", f"rotated {90 * k} degrees"
    if category == "png-damaged":
        png = bytearray(_encode(img, ".png"))
        mode = rng.choice(["crc", "cut", "cut+iend"])
        if mode == "crc":
            i = rng.randrange(64, len(png) - 16)
            png[i] ^= 0xFF
            return bytes(png), ".png", "one byte flipped inside IDAT"
        cut = rng.randrange(len(png) // 10, len(png) - 16)
        tail = b"\x00\x00\x00\x00IEND\xaeB`\x82" if mode == "cut+iend" else b""
        return bytes(png[:cut]) + tail, ".png", f"{mode} at {cut}"
    raise ValueError(f"unknown category {category!r}")


@dataclass
class CorpusItem:
    path: str
    category: str
    detail: str
    source: str
    view: str
    sex: str
    age: float
    height_cm: float
    smi: float


def make_image_corpus(cohort: Path, out: Path, *, n_images: int, seed: int,
                      categories=IMAGE_CATEGORIES, controls: int = 20) -> list[CorpusItem]:
    """Write ``n_images`` mutated photos (spread evenly over ``categories``) and ``controls`` originals."""
    import pandas as pd

    rng = random.Random(seed)
    man = pd.read_csv(cohort / "manifest.csv", dtype=str)
    rows = man.to_dict(orient="records")
    (out / "images").mkdir(parents=True, exist_ok=True)
    items: list[CorpusItem] = []
    for k in range(n_images + controls):
        control = k >= n_images
        cat = "control" if control else categories[k % len(categories)]
        row = rows[rng.randrange(len(rows))]
        src = cohort / row["image"]
        data = src.read_bytes()
        if control:
            blob, suffix, detail = data, ".jpg", "unchanged"
        else:
            blob, suffix, detail = mutate_image(data, cat, rng)
        name = f"images/{k:05d}_{cat}_{row['view']}{suffix}"
        (out / name).write_bytes(blob)
        items.append(CorpusItem(name, cat, detail, row["image"], row["view"], row["sex"], float(row["age"]),
                                float(row["height_cm"]), float(row["smi"])))
    manifest = pd.DataFrame([{"subject_id": f"F{k:05d}", "view": it.view, "image": it.path, "sex": it.sex,
                              "age": it.age, "height_cm": it.height_cm, "smi": it.smi}
                             for k, it in enumerate(items)])
    manifest.to_csv(out / "manifest.csv", index=False)
    return items


# ----------------------------------------------------------------------------- manifest mutations
def manifest_cases(cohort: Path, rng: random.Random, n_random: int = 60) -> list[tuple[str, bytes, dict]]:
    """``(name, manifest bytes, extra files)`` of broken manifests; extra files: ``{relpath: kind}``."""
    base_rows = [
        ["subject_id", "view", "image", "sex", "age", "height_cm", "smi"],
        ["P001", "lateral", "images/a.jpg", "M", "41", "170.7", "7.75"],
        ["P001", "posterior", "images/b.jpg", "M", "41", "170.7", "7.75"],
        ["P002", "lateral", "images/c.jpg", "F", "55", "158.2", "5.90"],
        ["P002", "posterior", "images/d.jpg", "F", "55", "158.2", "5.90"],
    ]

    def csv_bytes(rows, sep=",", nl="\n", enc="utf-8"):
        return (nl.join(sep.join(r) for r in rows) + nl).encode(enc)

    def with_cell(r, c, value):
        rows = [list(x) for x in base_rows]
        rows[r][c] = value
        return csv_bytes(rows)

    def with_col(name, values):
        rows = [list(x) for x in base_rows]
        rows[0].append(name)
        for i, v in enumerate(values, start=1):
            rows[i].append(v)
        return csv_bytes(rows)

    cases: list[tuple[str, bytes, dict]] = [("reference", csv_bytes(base_rows), {})]
    for c, name in enumerate(base_rows[0]):
        rows = [[v for j, v in enumerate(r) if j != c] for r in base_rows]
        cases.append((f"missing column {name}", csv_bytes(rows), {}))
    rows = [list(x) for x in base_rows]
    rows[1][4] = "40,5"
    cases.append(("extra field on the first row (decimal comma)", csv_bytes(rows), {}))
    rows = [list(x) for x in base_rows]
    rows[3][5] = "158,2"
    cases.append(("extra field on a later row", csv_bytes(rows), {}))
    cases.append(("duplicated header", with_col("height_cm", ["171"] * 4), {}))
    cases.append(("byte-order mark", b"\xef\xbb\xbf" + csv_bytes(base_rows), {}))
    cases.append(("CRLF line ends", csv_bytes(base_rows, nl="\r\n"), {}))
    cases.append(("blank lines", csv_bytes(base_rows[:2] + [[""]] + base_rows[2:]), {}))
    cases.append(("header only", csv_bytes(base_rows[:1]), {}))
    cases.append(("empty file", b"", {}))
    cases.append(("binary garbage", bytes(rng.randrange(256) for _ in range(600)), {}))
    cases.append(("Latin-1 encoding", csv_bytes([r[:] for r in base_rows[:1]] + [["Jos\xe9"] + base_rows[1][1:]],
                                                enc="latin-1"), {}))
    cases.append(("UTF-16 encoding", csv_bytes(base_rows, enc="utf-16"), {}))
    cases.append(("semicolon separated", csv_bytes(base_rows, sep=";"), {}))
    cases.append(("tab separated", csv_bytes(base_rows, sep="\t"), {}))
    for label, r, c, v in [
        ("age 4_0", 1, 4, "4_0"), ("height 1_70", 1, 5, "1_70"), ("Arabic-Indic digits", 1, 4, "\u0664\u0661"),
        ("full-width digits", 1, 5, "\uff11\uff17\uff10"), ("age inf", 1, 4, "inf"), ("height nan", 1, 5, "nan"),
        ("smi negative", 1, 6, "-3"), ("smi 1e308", 1, 6, "1e308"), ("age hex", 1, 4, "0x28"),
        ("unicode minus", 1, 6, "\u22127.5"), ("leading plus", 1, 4, "+41"), ("exponent", 1, 4, "4.1e1"),
        ("thousands comma (quoted)", 1, 5, '"1,707"'), ("unknown view", 1, 1, "sideways"),
        ("lower-case sex", 1, 3, "m"), ("unknown sex", 1, 3, "X"), ("empty subject", 1, 0, ""),
        ("empty image", 1, 2, ""), ("absolute path", 1, 2, "/etc/passwd"), ("dot-dot path", 1, 2, "../../x.jpg"),
        ("5,000-character path", 1, 2, "images/" + "y" * 5000 + ".jpg"), ("NUL in path", 1, 2, "images/a\x00.jpg"),
        ("missing image file", 1, 2, "images/nope.jpg"), ("formula in subject_id", 1, 0, "=cmd|' /C calc'!A0"),
        ("formula in subject_id (+)", 3, 0, "+SUM(1;2)"), ("at-sign cell", 1, 0, "@SUM(A1)"),
        ("unclosed quote", 1, 0, '"P001'), ("quoted newline", 1, 0, '"P0\n01"'),
        ("whitespace padded", 1, 4, "  41  "), ("inconsistent sex", 2, 3, "F"), ("inconsistent age", 2, 4, "42"),
        ("height 999", 1, 5, "999"), ("age -1", 1, 4, "-1"),
    ]:
        cases.append((label, with_cell(r, c, v), {}))
    cases.append(("px_per_cm 1e308", with_col("px_per_cm", ["1e308", "20", "20", "20"]), {}))
    cases.append(("px_per_cm 0", with_col("px_per_cm", ["0", "20", "20", "20"]), {}))
    cases.append(("px_per_cm text", with_col("px_per_cm", ["twenty", "20", "20", "20"]), {}))
    cases.append(("side X", with_col("side", ["X", "L", "L", "L"]), {}))
    cases.append(("reference_device CT", with_col("reference_device", ["CT", "BIA", "BIA", "BIA"]), {}))
    cases.append(("formula in an extra column", with_col("note", ["=HYPERLINK(\"http://x\")", "-1+1", "@x", "ok"]), {}))
    cases.append(("formula header", with_col("=1+1", ["a", "b", "c", "d"]), {}))
    cases.append(("1,000 extra columns", csv_bytes([r + [f"c{j}" if i == 0 else "1" for j in range(1000)]
                                                     for i, r in enumerate(base_rows)]), {}))
    cases.append(("1 MB cell", with_col("note", ["x" * (1 << 20), "", "", ""]), {}))
    rows = [list(x) for x in base_rows] + [list(base_rows[1])]
    cases.append(("duplicate row", csv_bytes(rows), {}))
    cases.append(("named pipe as image", csv_bytes(base_rows), {"images/a.jpg": "fifo"}))
    cases.append(("folder as image", csv_bytes(base_rows), {"images/a.jpg": "dir"}))
    cases.append(("symlink out of the folder", csv_bytes(base_rows), {"images/a.jpg": "symlink-out"}))
    cases.append(("corrupt photo", csv_bytes(base_rows), {"images/a.jpg": "truncated+eoi"}))
    text = csv_bytes(base_rows)
    for k in range(n_random):
        b = bytearray(text)
        for _ in range(rng.randint(1, 6)):
            op = rng.choice(["flip", "delete", "insert", "dup"])
            i = rng.randrange(len(b))
            if op == "flip":
                b[i] = rng.choice(b",\"\n\r;0123456789._-+eE \x00\xff=@") if rng.random() < 0.7 else rng.randrange(256)
            elif op == "delete":
                del b[i:i + rng.randint(1, 5)]
            elif op == "insert":
                b[i:i] = bytes([rng.choice(b",\"\n;_0=@ \t")])
            else:
                j = rng.randrange(len(b))
                b[i:i] = b[j:j + rng.randint(1, 20)]
        cases.append((f"random mutation {k}", bytes(b), {}))
    return cases


def _write_manifest_case(root: Path, k: int, content: bytes, extra: dict, cohort: Path) -> Path:
    ds = root / f"m{k:04d}"
    (ds / "images").mkdir(parents=True)
    photos = ["P001_lateral.jpg", "P001_posterior.jpg", "P002_lateral.jpg", "P002_posterior.jpg"]
    for name, src in zip(("a", "b", "c", "d"), photos):
        target = ds / "images" / f"{name}.jpg"
        kind = extra.get(f"images/{name}.jpg")
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "dir":
            target.mkdir()
        elif kind == "symlink-out":
            target.symlink_to((cohort / "images" / src).resolve())
        elif kind == "truncated+eoi":
            data = (cohort / "images" / src).read_bytes()
            target.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
        else:
            try:
                os.link(cohort / "images" / src, target)
            except OSError:
                shutil.copyfile(cohort / "images" / src, target)
    (ds / "manifest.csv").write_bytes(content)
    return ds


# ----------------------------------------------------------------------------- the worker
def _classify(exc: BaseException) -> tuple[str, str]:
    names = {c.__name__ for c in type(exc).__mro__}
    if names & (REFUSAL_NAMES | {"LegsmiError"}):
        return "refused", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return "traceback", tb[:300]


def _image_task(item: dict, model_dirs: dict, state: dict) -> list[dict]:
    """validate / features / predict on one image; one result row per stage."""
    out = []
    path = item["abs_path"]
    t0 = time.perf_counter()
    try:
        from smi_data.images import read_image

        read_image(path)
        out.append({"stage": "validate", "outcome": "accepted", "reason": ""})
    except Exception as exc:
        o, r = _classify(exc)
        out.append({"stage": "validate", "outcome": o, "reason": r})
    try:
        from smi_features.extractor import ExtractionSettings, sample_features

        # what `features --per VIEW` does; its cached records are what predict reads next
        _, reasons = sample_features(_sample_row(path, item), settings=ExtractionSettings(), cache=True)
        why = reasons.get(f"x:{item['view']}")
        out.append({"stage": "features", "outcome": "refused" if why else "accepted", "reason": str(why or "")[:300]})
    except Exception as exc:
        o, r = _classify(exc)
        out.append({"stage": "features", "outcome": o, "reason": r})
    view = item["view"]
    if view in model_dirs and view != "_bare":
        row = {"stage": "predict", "outcome": "", "reason": "", "smi_pred": None, "caution": ""}
        try:
            predictor = state.get(view)
            if predictor is None:
                predictor = state[view] = _load_predictor(model_dirs[view], bare=bool(model_dirs.get("_bare")))
            smi, status, reason, caution, tr = predictor(path, item)
            row.update(outcome="accepted" if status == "ok" else "refused", reason=(reason or "")[:300],
                       smi_pred=smi, caution=caution or "")
            if status == "ok":
                lo, hi = PLAUSIBLE
                out_plausible = not (lo <= smi <= hi)
                out_training = False
                if tr is not None:
                    margin = TRAINING_MARGIN * (tr[1] - tr[0])
                    out_training = not (tr[0] - margin <= smi <= tr[1] + margin)
                row["implausible"] = bool(out_plausible or (out_training and not caution))
                row["outside_training_flagged"] = bool(out_training and caution)
        except Exception as exc:
            o, r = _classify(exc)
            row.update(outcome=o, reason=r)
        out.append(row)
    for r in out:
        r["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _sample_row(path: str, item: dict):
    """The one-row sample table of a photo, as ``predict`` builds it."""
    import pandas as pd

    v = item["view"]
    rec = {"sample_id": "x:" + v, "subject_id": "x", "view": v, "sex": item["sex"], "age": item["age"],
           "height_cm": item["height_cm"], "image_lateral": None, "image_posterior": None,
           "px_per_cm_lateral": np.nan, "px_per_cm_posterior": np.nan}
    rec[f"image_{v}"] = str(Path(path).resolve())
    return pd.DataFrame([rec])


def _load_predictor(model_dir: str, bare: bool = False):
    """A callable ``(path, item) -> (smi, status, reason, caution, training_range)``.

    Uses :class:`benchmarks.predict.Predictor` (with its plausibility bound) where this
    checkout has it and ``bare`` is False; otherwise the bare model (how ``predict``
    worked before the bound).
    """
    Predictor = None
    if not bare:
        try:
            from benchmarks.predict import Predictor
        except ImportError:
            pass
    if Predictor is not None:
        pred = Predictor(model_dir)

        def run(path, item):
            est = pred.estimate({item["view"]: path}, sex=item["sex"], age=item["age"], height_cm=item["height_cm"],
                                annotate=False)
            return (est.smi, "ok" if est.ok else "refused", est.reason, est.caution, pred.training_range)

        return run
    from benchmarks.registry import load_any_model

    model = load_any_model(model_dir)

    def run_bare(path, item):
        v = item["view"]
        from smi_data.reasons import predict_with_reasons

        pred, reasons = predict_with_reasons(model, _sample_row(path, item))
        smi, fail = float(pred[0]), reasons.get("x:" + v)
        if not np.isfinite(smi):
            return None, "refused", fail or "no estimate", None, None
        return smi, "ok", None, None, None

    return run_bare


def _manifest_task(item: dict, model_dirs: dict, state: dict) -> list[dict]:
    from click.testing import CliRunner

    import cli
    from smi_data.manifest import read_manifest, to_samples

    ds = item["abs_path"]
    out = []
    runner = CliRunner()
    for stage, args in (("validate", ["validate", ds]),
                        ("features", ["features", ds, "--out", str(Path(item["work"]) / "f.csv"), "--overwrite"])):
        res = runner.invoke(cli.main, args)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            o, r = _classify(res.exception)
            out.append({"stage": stage, "outcome": "traceback" if o == "traceback" else "refused", "reason": r})
            continue
        if res.exit_code == 0:
            row = {"stage": stage, "outcome": "accepted", "reason": ""}
            if stage == "features":
                row["formula_cells"] = _formula_cells(Path(item["work"]) / "f.csv")
            out.append(row)
        else:
            last = [ln for ln in res.output.splitlines() if ln.strip()]
            out.append({"stage": stage, "outcome": "refused", "reason": (last[0] if last else "")[:300]})
    try:
        man = read_manifest(ds)
        bad = []
        for col in ("age", "height_cm", "smi"):
            if col in man and not np.isfinite(man[col].to_numpy(float)).all():
                bad.append(col)
        for v in ("lateral", "posterior", "both"):
            to_samples(man, v)
        out.append({"stage": "read_manifest", "outcome": "silently-wrong" if bad else "accepted",
                    "reason": f"NaN in {', '.join(bad)}" if bad else ""})
    except Exception as exc:
        o, r = _classify(exc)
        out.append({"stage": "read_manifest", "outcome": o, "reason": r})
    return out


def _formula_cells(csv_path: Path) -> int:
    import csv

    n = 0
    if not csv_path.is_file():
        return 0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            for cell in row:
                if cell.startswith(("=", "@", "\t", "\r", "\uff1d", "\uff20")) or (
                        cell.startswith(("-", "+")) and not _is_number(cell)):
                    n += 1
    return n


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _worker(conn, model_dirs: dict, cache_dir: str) -> None:
    os.environ["LEGSMI_CACHE_DIR"] = cache_dir
    logging.disable(logging.WARNING)
    import warnings

    warnings.simplefilter("ignore")
    state: dict = {}
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        kind, item = msg
        try:
            rows = (_image_task if kind == "image" else _manifest_task)(item, model_dirs, state)
        except BaseException as exc:  # the worker must answer whatever happened
            rows = [{"stage": "worker", "outcome": "traceback", "reason": repr(exc)[:300]}]
        conn.send(rows)


class _Pool:
    """One worker process; a task over its timeout is a hang: the worker is killed and restarted."""

    def __init__(self, model_dirs: dict, cache_dir: str):
        import multiprocessing as mp

        # spawn, not fork: a fork of a process whose OpenMP pool (XGBoost) has run can deadlock
        self.ctx = mp.get_context("spawn")
        self.model_dirs, self.cache_dir = model_dirs, cache_dir
        self.proc = None

    def _start(self):
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.model_dirs, self.cache_dir), daemon=True)
        self.proc.start()
        self.conn = parent

    def run(self, kind: str, item: dict, timeout: float) -> list[dict] | None:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((kind, item))
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.proc = None
                return [{"stage": "worker", "outcome": "traceback", "reason": "worker process died"}]
        self.proc.kill()
        self.proc.join(5)
        self.proc = None
        return None

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


# ----------------------------------------------------------------------------- the campaign
@dataclass
class FuzzConfig:
    out: str
    cohort: str | None = None
    n_images: int = 1000
    n_random_manifests: int = 60
    seed: int = 0
    timeout_s: float = 30.0
    model_dirs: dict = field(default_factory=dict)
    train_models: bool = True
    overwrite: bool = False
    manifests: bool = True
    #: Predict with the bare model, without the plausibility bound of benchmarks.predict (to see what it catches).
    bare_predict: bool = False


def _train_model(cohort: Path, view: str, out: Path, seed: int) -> Path:
    from smi_data.manifest import read_manifest, to_samples
    from smi_data.modelfile import write_model_meta  # noqa: F401 (model.json via save_model)
    from smi_features.estimators import XGBFeaturesRegressor
    from smi_features.modelio import save_model

    samples = to_samples(read_manifest(cohort), view)
    y = samples["smi"].to_numpy(float)
    est = XGBFeaturesRegressor(random_state=seed).fit(samples.drop(columns=["smi"]), y)
    save_model(est, out, extra_meta={"view": view, "model_name": "xgb-features",
                                     "training": {"dataset": str(cohort), "seed": seed, "n_samples": int(len(y)),
                                                  "smi_range": [float(y.min()), float(y.max())]}})
    return out


def _compare_with_unmutated(results: list[dict], items: list, cohort: Path, pool, timeout: float) -> None:
    """Set ``deviation`` (kg/m²) and ``far`` on every accepted ``predict`` row of a mutated photo.

    The reference is the same predictor's estimate of the unmutated cohort photo the
    mutation was made from (run once per source photo, through the same workers).
    """
    accepted = [r for r in results if r["kind"] == "image" and r["stage"] == "predict" and r["category"] != "control"
                and r["outcome"] == "accepted" and r.get("smi_pred") is not None]
    first = {}
    for it in items:
        first.setdefault(it.source, it)
    reference: dict[str, float] = {}
    for src in sorted({r["source"] for r in accepted}):
        task = dict(first[src].__dict__, abs_path=str(cohort / src), path=src, category="reference")
        rows = pool.run("image", task, timeout) or []
        pred = [x for x in rows if x.get("stage") == "predict" and x.get("outcome") == "accepted"]
        reference[src] = float(pred[0]["smi_pred"]) if pred and pred[0].get("smi_pred") is not None else float("nan")
    for r in accepted:
        dev = abs(float(r["smi_pred"]) - reference.get(r["source"], float("nan")))
        r["deviation"] = round(dev, 4) if np.isfinite(dev) else None
        r["far"] = bool(np.isfinite(dev) and dev > FAR_KG_M2)


def summarise(results: list[dict]) -> dict:
    """``{kind: {category or stage: {outcome: n}}}`` plus totals of tracebacks, hangs and implausible estimates."""
    summary: dict = {"images": {}, "manifests": {}, "totals": {}}
    for r in results:
        key = "images" if r["kind"] == "image" else "manifests"
        group = r["category"] if key == "images" else "all"
        cell = summary[key].setdefault(group, {}).setdefault(r["stage"], {})
        cell[r["outcome"]] = cell.get(r["outcome"], 0) + 1
        if r.get("implausible"):
            cell["implausible"] = cell.get("implausible", 0) + 1
        if r.get("outside_training_flagged"):
            cell["outside-training-flagged"] = cell.get("outside-training-flagged", 0) + 1
        if r.get("far"):
            cell["far"] = cell.get("far", 0) + 1
        if r.get("formula_cells"):
            cell["formula-cells"] = cell.get("formula-cells", 0) + int(r["formula_cells"])
    mutated = [r for r in results if r["category"] != "control"]
    summary["totals"] = {
        "images": len({r["item"] for r in results if r["kind"] == "image" and r["category"] != "control"}),
        "controls": len({r["item"] for r in results if r["category"] == "control"}),
        "manifests": len({r["item"] for r in results if r["kind"] == "manifest"}),
        "tracebacks": sum(r["outcome"] == "traceback" for r in mutated),
        "hangs": sum(r["outcome"] == "hang" for r in mutated),
        "implausible_estimates": sum(bool(r.get("implausible")) for r in mutated),
        "far_from_unmutated": sum(bool(r.get("far")) for r in mutated),
        "compared_with_unmutated": sum(r.get("deviation") is not None and np.isfinite(r["deviation"])
                                       for r in mutated),
        "silently_wrong_manifests": sum(r["outcome"] == "silently-wrong" for r in mutated),
        "formula_cells_written": sum(int(r.get("formula_cells") or 0) for r in mutated),
        "control_refusals": sum(r["outcome"] != "accepted" for r in results
                                if r["category"] == "control" and r["stage"] in ("validate", "features", "predict")),
    }
    return summary


def format_summary(summary: dict) -> str:
    """The summary as Markdown tables (one row per category and stage)."""
    outcomes = ["refused", "accepted", "traceback", "hang", "implausible", "outside-training-flagged", "far"]
    lines = ["| images: category | stage | " + " | ".join(outcomes) + " |",
             "|---|---|" + "---:|" * len(outcomes)]
    for cat, stages in summary["images"].items():
        for stage, cell in stages.items():
            lines.append(f"| {cat} | {stage} | " + " | ".join(str(cell.get(o, 0)) for o in outcomes) + " |")
    m_out = ["refused", "accepted", "traceback", "hang", "silently-wrong", "formula-cells"]
    lines += ["", "| manifests: stage | " + " | ".join(m_out) + " |", "|---|" + "---:|" * len(m_out)]
    for stage, cell in summary["manifests"].get("all", {}).items():
        lines.append(f"| {stage} | " + " | ".join(str(cell.get(o, 0)) for o in m_out) + " |")
    t = summary["totals"]
    lines += ["", f"{t['images']} mutated images (+{t['controls']} unmutated controls), {t['manifests']} manifests: "
              f"{t['tracebacks']} tracebacks, {t['hangs']} hangs, {t['implausible_estimates']} implausible "
              f"estimates, {t.get('far_from_unmutated', 0)} of {t.get('compared_with_unmutated', 0)} accepted "
              f"estimates more than {FAR_KG_M2:g} kg/m² from the unmutated photo's, "
              f"{t['silently_wrong_manifests']} silently wrong manifests, "
              f"{t['formula_cells_written']} formula cells written, {t['control_refusals']} refusals of controls"]
    return "\n".join(lines)


def run_fuzz(cfg: FuzzConfig, *, echo=None) -> dict:
    """Build the corpus, run it, write ``fuzz.md``, ``fuzz.json``, ``results.csv`` into ``cfg.out``."""
    import pandas as pd

    from smi_data.paths import BUNDLED_COHORT
    from smi_data import runs
    from smi_data.runs import RunRecord, atomic_write_csv, atomic_write_json, atomic_write_text

    echo = echo or (lambda s: None)
    cohort = Path(cfg.cohort or BUNDLED_COHORT)
    started = time.perf_counter()
    if hasattr(runs, "stage_output"):
        stage = runs.stage_output(cfg.out, overwrite=cfg.overwrite, protect=(cohort,))
        out, target, record = stage.path, stage.target, RunRecord(stage.path, "fuzz", dict(cfg.__dict__), cfg.seed,
                                                                   stage=stage)
    else:  # the code before issue 14 (to measure the 'before' figures)
        out = target = runs.prepare_output_dir(cfg.out, overwrite=cfg.overwrite)
        record = RunRecord(out, "fuzz", dict(cfg.__dict__), cfg.seed)
    with record as rec:
        work = out / "corpus"
        items = make_image_corpus(cohort, work / "images-ds", n_images=cfg.n_images, seed=cfg.seed)
        echo(f"fuzz: {len(items)} images written ({time.perf_counter() - started:.0f} s)")
        model_dirs = dict(cfg.model_dirs)
        if cfg.train_models and not model_dirs:
            for view in ("lateral", "posterior"):
                model_dirs[view] = str(_train_model(cohort, view, work / f"model-{view}", cfg.seed))
            echo(f"fuzz: trained xgb-features on {cohort.name} ({time.perf_counter() - started:.0f} s)")
        if cfg.bare_predict:
            model_dirs["_bare"] = "1"
        pool = _Pool(model_dirs, str(work / "cache"))
        results: list[dict] = []
        try:
            for k, it in enumerate(items):
                task = dict(it.__dict__, abs_path=str(work / "images-ds" / it.path))
                rows = pool.run("image", task, cfg.timeout_s)
                if rows is None:
                    rows = [{"stage": "any", "outcome": "hang", "reason": f"over {cfg.timeout_s:g} s"}]
                for r in rows:
                    results.append({"kind": "image", "item": it.path, "category": it.category, "detail": it.detail,
                                    "source": it.source, **r})
                if (k + 1) % 100 == 0:
                    echo(f"fuzz: {k + 1}/{len(items)} images ({time.perf_counter() - started:.0f} s)")
            _compare_with_unmutated(results, items, cohort, pool, cfg.timeout_s)
            echo(f"fuzz: unmutated references ({time.perf_counter() - started:.0f} s)")
            if cfg.manifests:
                cases = manifest_cases(cohort, random.Random(cfg.seed + 1), cfg.n_random_manifests)
                mroot = work / "manifests"
                for k, (name, content, extra) in enumerate(cases):
                    ds = _write_manifest_case(mroot, k, content, extra, cohort)
                    (mroot / f"w{k:04d}").mkdir()
                    rows = pool.run("manifest", {"abs_path": str(ds), "work": str(mroot / f"w{k:04d}")},
                                    cfg.timeout_s)
                    if rows is None:
                        rows = [{"stage": "any", "outcome": "hang", "reason": f"over {cfg.timeout_s:g} s"}]
                    for r in rows:
                        results.append({"kind": "manifest", "item": name, "category": "manifest",
                                        "detail": name, "source": "", **r})
                echo(f"fuzz: {len(cases)} manifests ({time.perf_counter() - started:.0f} s)")
        finally:
            pool.close()
        summary = summarise(results)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        table = pd.DataFrame(results)
        atomic_write_csv(table, out / "results.csv")
        atomic_write_json(out / "fuzz.json", summary)
        text = format_summary(summary)
        atomic_write_text(out / "fuzz.md", "# legsmi fuzz\n\n" + text + "\n")
        shutil.rmtree(work / "cache", ignore_errors=True)
        rec.data["results"] = summary["totals"]
    return {"out": target, "summary": summary, "text": text, "results": table}
