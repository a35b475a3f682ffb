#!/bin/bash
# Retake reliability of the measurements and of xgb-features (default and `repeatable`) and cnn-geo per view,
# weight tier, trained on the bundled cohort (docs/reliability.md, "Session 6").
# usage: docs/scripts/intervals/retake_models.sh RETAKES PREFIX    (then reliability_tables.py PREFIX)
set -u
R=$1; P=$2; TF="%U user %S sys %e wall"
export OMP_NUM_THREADS=1
/usr/bin/time -f "meas: $TF" python cli.py reliability "$R" --out "$P-meas" > "$P-meas.log" 2>&1
for v in lateral posterior both; do
  for m in xgb xgbrep geo; do
    case $m in
      xgb) args=(--model xgb-features) ;;
      xgbrep) args=(--model xgb-features --set xgb-features.feature_set=repeatable) ;;
      geo) args=(--model cnn-geo) ;;
    esac
    /usr/bin/time -f "train $m $v: $TF" python cli.py train data/phantom-v2 "${args[@]}" --tier weight --view $v \
      --out "$P-m-$m-$v" > "$P-m-$m-$v.log" 2>&1
    /usr/bin/time -f "rel $m $v: $TF" python cli.py reliability "$R" --model "$P-m-$m-$v" --out "$P-$m-$v" \
      > "$P-$m-$v.log" 2>&1
  done
done
