"""Our SEQUENTIAL submission against the five finalists of the MOSTLY AI Prize.

    python bench/leaderboard.py SUBMISSION.csv [--metrics-json PATH] [--seeds 1 2 3] [--qa] [--json]
        [--data ../shared/data/prize-sequential]

Scores the submission against the real training and holdout data for each seed and prints the median next to
the finalists' official medians (six runs each, `stage2-results.csv`) and the training data itself scored as
synthetic (the copy, the metric's ceiling): overall, univariate, bivariate, trivariate, coherence, the share of the
gap between the holdout and the copy closed, DCR share, runtime, machine. Accuracy comes from `common.metric` in replicate mode, which
equals `qa.report` to all 7 printed decimals on the finalists (bench/calibrate_finalists.py). With `--qa` the
official `qa.report` runs too (its DCR share needs qa's embeddings: about 15 min a seed on 2 cores) and writes
`leaderboard-report-seed<k>.html` beside the submission. Without `--qa` the DCR share is the one our privacy guard
measured (from `metrics.json`). Skips (exit 0) without the prize data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.io import align_to_training, exit_on_data_error, read_table  # noqa: E402
from common.metric import evaluate, gap_closed  # noqa: E402
from common.report import qa_report  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "prize-sequential"
COLUMNS = ["overall", "univariate", "bivariate", "trivariate", "coherence", "dcr_share", "runtime_s", "machine", "profile"]


def finalists(data: Path) -> pd.DataFrame:
    """The official medians over the six runs of each finalist."""
    results = pd.read_csv(data / "stage2-results.csv")
    results = results[results.task.str.startswith("SEQU")]
    rows = []
    for task, runs in results.groupby("task"):
        row = {"entry": f"{task} ({runs.participant.iloc[0]})"}
        row |= {a: runs[f"accuracy_{a}"].median() for a in COLUMNS[:5]}
        row |= {"dcr_share": runs.distances_dcr_share.median(), "runtime_s": runs.runtime_s.median(),
                "machine": runs.server_type.iloc[0], "profile": ""}
        rows.append(row)
    holdout = {"entry": "holdout (max)"} | {a: results[f"accuracy_{a}_max"].median() for a in COLUMNS[:5]}
    return pd.DataFrame(rows + [holdout])


def score(submission_path: Path, data: Path, seeds: list[int], with_qa: bool) -> tuple[dict, dict]:
    """Medians over `seeds` for the submission and for the training data itself scored as synthetic (the copy)."""
    training = read_table(data / "sequential-training.csv.gz")
    holdout = align_to_training(training, read_table(data / "sequential-holdout.csv.gz"), "holdout")
    submission = align_to_training(training, read_table(submission_path), "submission")
    per_seed, copies = [], []
    for seed in seeds:
        scores = evaluate(training, submission, holdout, "group_id", "replicate", seed).as_dict(with_max=False)
        copies.append(evaluate(training, training, holdout, "group_id", "replicate", seed).as_dict(with_max=False))
        if with_qa:
            report = submission_path.parent / f"leaderboard-report-seed{seed}.html"
            scores["dcr_share"] = qa_report(training, submission, holdout, "group_id", report, seed=seed)["dcr_share"]
        per_seed.append(scores)
        print(f"# seed {seed}: {scores}", file=sys.stderr)

    def median(runs: list[dict]) -> dict:
        return {a: float(np.median([r[a] for r in runs if r.get(a) is not None])) if any(r.get(a) is not None for r in runs)
                else None for a in COLUMNS[:6]}

    return median(per_seed), median(copies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submission", type=Path)
    parser.add_argument("--metrics-json", type=Path, help="the run's metrics.json (default: beside the submission)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--qa", action="store_true", help="also run the official qa.report (DCR share, HTML report)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    args = parser.parse_args()
    if not (args.data / "stage2-results.csv").is_file():
        print(f"skipped: no prize data at {args.data}")
        return 0
    with exit_on_data_error():
        ours, copy = score(args.submission, args.data, args.seeds, args.qa)
    metrics_path = args.metrics_json or args.submission.parent / "metrics.json"
    run = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if ours["dcr_share"] is None and run:
        ours["dcr_share"] = run["privacy"]["dcr_share"]
    ours |= {"entry": "ours", "runtime_s": run.get("seconds_total"), "profile": run.get("profile", ""),
             "machine": f"{platform.machine()} {run.get('device', '')} ({len(os.sched_getaffinity(0))} cores)"}
    copy |= {"entry": "copy of training (ceiling)", "dcr_share": None}
    table = pd.concat([finalists(args.data), pd.DataFrame([ours, copy])], ignore_index=True).sort_values("overall", ascending=False)
    holdout_max = float(table.loc[table.entry == "holdout (max)", "overall"].iloc[0])
    table["gap_closed"] = [gap_closed(v, holdout_max, copy["overall"]) for v in table["overall"]]
    if args.json:
        for row in table.to_dict(orient="records"):
            print(json.dumps({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}))
    else:
        shown = table[["entry", *COLUMNS[:5], "gap_closed", *COLUMNS[5:]]]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
