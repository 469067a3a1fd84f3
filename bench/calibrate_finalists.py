"""Score the five finalists' stage-2 SEQUENTIAL submissions and compare with the official results.

    python bench/calibrate_finalists.py [--data ../shared/data/prize-sequential] [--json]

Uses the real training and holdout data, replicate mode with seed 1 (the official run 1 was scored after
`qa.set_random_state(1)`), and prints ours next to the official run-1 row of `stage2-results.csv`. Exits 1 when a
figure is more than 0.0005 away from the official one or the ranking differs; skips (exit 0) without the data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.io import align_to_training, read_table  # noqa: E402
from common.metric import ASPECTS, evaluate  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "prize-sequential"
TOLERANCE = 0.0005
FINALISTS = [f"SEQU{k}" for k in range(1, 6)]


def calibrate(data: Path, seed: int = 1) -> dict:
    training = read_table(data / "sequential-training.csv.gz")
    holdout = align_to_training(training, read_table(data / "sequential-holdout.csv.gz"), "holdout")
    official = pd.read_csv(data / "stage2-results.csv")
    rows = []
    for task in FINALISTS:
        synthetic = align_to_training(training, read_table(data / "finalists" / f"synthetic-{task}-run1.csv.gz"), task)
        start = time.perf_counter()
        ours = evaluate(training, synthetic, holdout, "group_id", "replicate", seed).as_dict(with_max=True)
        reference = official[(official.task == task) & (official.run_id == seed)].iloc[0]
        row = {"task": task, "seconds": round(time.perf_counter() - start, 2)}
        for aspect in ("overall",) + ASPECTS:
            row[aspect] = ours[aspect]
            row[f"official_{aspect}"] = float(reference[f"accuracy_{aspect}"])
        row["official_overall_max"] = float(reference["accuracy_overall_max"])
        row["overall_max"] = ours["overall_max"]
        rows.append(row)
    table = pd.DataFrame(rows)
    diffs = [abs(table[a] - table[f"official_{a}"]).max() for a in ("overall",) + ASPECTS + ("overall_max",)]
    return {
        "rows": rows,
        "max_abs_diff": float(max(diffs)),
        "same_ranking": list(table.sort_values("overall").task) == list(table.sort_values("official_overall").task),
        "seconds_per_submission": float(table.seconds.mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.data / "stage2-results.csv").is_file():
        print(f"skipped: no prize data at {args.data}")
        return 0
    result = calibrate(args.data)
    if args.json:
        print(json.dumps(result))
    else:
        table = pd.DataFrame(result["rows"]).set_index("task")
        print(table[["overall", "official_overall", "univariate", "bivariate", "trivariate", "coherence", "overall_max", "official_overall_max", "seconds"]]
              .to_string(float_format=lambda v: f"{v:.7f}"))
        print(f"max |ours - official| = {result['max_abs_diff']:.2e}; same ranking: {result['same_ranking']}")
    ok = result["max_abs_diff"] <= TOLERANCE and result["same_ranking"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
