#!/bin/bash
# Every figure of a candidate segmenter (docs/segmentation.md, "Branch seg5").
# usage: docs/scripts/seg/evalall.sh TAG WEIGHTS HELDOUT [REAL]
#   copies this checkout's tracked files to /tmp/segeval-TAG, puts WEIGHTS there as the shipped segmenter and
#   writes logs to /tmp/segeval-TAG.out: clinic and studio calf width vs truth, held-out wild IoU (HELDOUT: see
#   heldout.py), clinic IoU, the non-leg controls, `speed`; the real set's segeval only when REAL is given.
set -u
T=$1; W=$(realpath "$2"); H=$(realpath "$3"); E=/tmp/segeval-$T; L=/tmp/segeval-$T.out
S=$(cd "$(dirname "$0")" && pwd)
rm -rf "$E" "$L"; mkdir -p "$E" "$L"
git ls-files -z | xargs -0 cp --parents -t "$E"
cp "$W" "$E/smi_image/weights/segmenter.pt"
cd "$E"; export OMP_NUM_THREADS=1
TF="%U user %S sys %e wall"
for d in data/phantom-v2 data/phantom-v1; do
  /usr/bin/time -f "$TF" python -c "from smi_features.truthcheck import compare_with_truth as c; \
t = c('$d', cache=False); print(t.to_string()); print('refused', t.attrs['refused'])" > "$L/tc-$(basename $d).log" 2>&1
done
/usr/bin/time -f "$TF" python "$S/heldout.py" "$H" "$L/heldout.csv" > "$L/heldout.log" 2>&1
/usr/bin/time -f "$TF" python "$S/clinic_iou.py" data/phantom-v2 "$L/clinic.csv" > "$L/clinic.log" 2>&1
python -m pytest -q -p no:cacheprovider "tests/test_image_layer.py::test_non_leg_images_are_refused" > "$L/controls.log" 2>&1
python cli.py speed data/phantom-v2 --models "" --jobs 1 --limit 40 > "$L/speed.log" 2>&1
if [ $# -ge 4 ]; then
  /usr/bin/time -f "$TF" python cli.py segeval "$4" --out "$L/segeval" > "$L/segeval.log" 2>&1
fi
echo done > "$L/DONE"
