"""A result as one CSV row, and the ``--save DIR`` store: atomic files and one CSV that stays whole.

Nothing is kept unless the app was started with ``--save DIR``. Then each result is
written as ``DIR/<id>.json`` (and its annotated photos as ``DIR/<id>_<view>.jpg``)
through a temporary name and a rename, and a row is added to ``DIR/results.csv``
under an exclusive lock (a thread lock within the process and ``fcntl.flock``
between processes) by rewriting the file to a temporary name and renaming it, so a
reader or a crash never sees a half-written CSV and concurrent requests never
interleave their rows. The photos themselves are never stored.
"""

from __future__ import annotations

import base64
import csv
import io
import threading
from pathlib import Path

from smi_data.manifest import VIEWS

#: Columns of the CSV download and of ``results.csv``, in order.
CSV_COLUMNS = (
    "id", "created", "sex", "age", "height_cm", "weight_kg", "reference_device",
    "smi_kg_m2", "interval_95_low", "interval_95_high", "screening", "p_low", "low_muscle_mass",
    "awgs_cutoff_kg_m2", "status", "reason", "caution",
    "lateral_status", "lateral_reason", "posterior_status", "posterior_reason",
    "model", "model_views_used", "model_trained_on", "not_clinically_validated",
)


def csv_row(result: dict) -> dict:
    """The flat row of one API result (the dict ``POST /api/estimate`` answers)."""
    inp = result.get("inputs") or {}
    iv = result.get("interval_95") or [None, None]
    photos = {p["view"]: p for p in result.get("photos") or []}
    row = {
        "id": result.get("id"), "created": result.get("created"),
        **{k: inp.get(k) for k in ("sex", "age", "height_cm", "weight_kg", "reference_device")},
        "smi_kg_m2": None if result.get("smi") is None else round(float(result["smi"]), 3),
        "interval_95_low": iv[0], "interval_95_high": iv[1],
        "screening": result.get("screening"), "p_low": result.get("p_low"),
        "low_muscle_mass": result.get("low_muscle_mass"), "awgs_cutoff_kg_m2": result.get("awgs_cutoff"),
        "status": result.get("status"), "reason": result.get("reason"), "caution": result.get("caution"),
        "model": (result.get("model") or {}).get("name"), "model_views_used": result.get("model_view"),
        "model_trained_on": (result.get("model") or {}).get("trained_on"),
        "not_clinically_validated": True,
    }
    for v in VIEWS:
        row[f"{v}_status"] = photos.get(v, {}).get("status", "not given")
        row[f"{v}_reason"] = photos.get(v, {}).get("reason")
    return {k: row.get(k) for k in CSV_COLUMNS}


def csv_text(rows: list[dict], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in CSV_COLUMNS})
    return buf.getvalue()


class ResultStore:
    """Keeps results in a folder (``--save DIR``); see the module docstring."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.folder / "results.csv"
        self._lock = threading.Lock()

    def save(self, result: dict) -> None:
        import json

        from smi_data.runs import atomic_write_bytes, atomic_write_text

        rid = str(result["id"])
        kept = dict(result)
        kept["photos"] = []
        for ph in result.get("photos") or []:
            ph = dict(ph)
            data = ph.pop("annotated", None)
            if data and data.startswith("data:image/jpeg;base64,"):
                name = f"{rid}_{ph['view']}.jpg"
                atomic_write_bytes(self.folder / name, base64.b64decode(data.split(",", 1)[1]))
                ph["annotated_file"] = name
            kept["photos"].append(ph)
        kept.pop("csv", None)
        atomic_write_text(self.folder / f"{rid}.json", json.dumps(kept, indent=2, default=str) + "\n")
        self._append(csv_row(result))

    def _append(self, row: dict) -> None:
        import fcntl

        from smi_data.runs import atomic_write_text

        with self._lock, open(self.folder / ".results.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                old = self.csv_path.read_text(encoding="utf-8") if self.csv_path.exists() else ""
                atomic_write_text(self.csv_path, (old or csv_text([], header=True)) + csv_text([row], header=False))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
