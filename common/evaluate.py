"""Score a synthetic table with the MOSTLY AI Prize metric (mostlyai-qa's overall accuracy), fast.

    python -m common.evaluate --training T --synthetic S [--holdout H] [--context-key group_id]
                              [--seed N [N ...]] [--mode replicate|expected] [--json] [--official [--report PATH]]

Prints a table of accuracy aspects (with a holdout, also qa's "max" references); `--json` prints one JSON object
instead. Several seeds (qa's random draws) give the median of each aspect, as the prize reports it, with the mean and
its standard error beside it: on small tables one seed's draw moves the overall accuracy by more than most changes
worth measuring (demo SEQUENTIAL: 0.0006 a seed), so judge a change by the mean of many. `--official` also runs
mostlyai-qa's own `qa.report` (slow: minutes; the first seed only) and writes its HTML report.
Bad input gives a one-line error and exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common.io import ArgumentParser, DataError, align_to_training, check_context_key, exit_on_data_error, read_table
from common.metric import ASPECTS, evaluate


def load_tables(training: str, synthetic: str, holdout: str | None, context_key: str | None):
    """Read and validate the three tables: the synthetic and holdout ones take the training columns and types."""
    trn = read_table(training)
    check_context_key(trn, context_key, "training")
    out = [trn]
    for name, path in (("synthetic", synthetic), ("holdout", holdout)):
        if path is None:
            out.append(None)
            continue
        df = read_table(path)
        check_context_key(df, context_key, name)
        out.append(align_to_training(trn, df, name))
    return out


def official_scores(trn, syn, hol, context_key, seed, report_path) -> dict:
    """mostlyai-qa's own accuracy figures (and its HTML report) for the same inputs."""
    from mostlyai import qa

    qa.set_random_state(seed)
    _, metrics = qa.report(
        syn_tgt_data=syn, trn_tgt_data=trn, hol_tgt_data=hol, tgt_context_key=context_key, report_path=report_path
    )
    if metrics is None:
        raise DataError("mostlyai-qa skipped the report: the tables are too small")
    acc = metrics.accuracy
    out = {k: getattr(acc, k) for k in ("overall",) + ASPECTS}
    if hol is not None:
        out.update({f"{k}_max": getattr(acc, f"{k}_max") for k in ("overall",) + ASPECTS})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--training", required=True, help="training table (CSV, CSV.gz or parquet)")
    parser.add_argument("--synthetic", required=True, help="synthetic table to score")
    parser.add_argument("--holdout", help="holdout table: original = training + holdout, and the max references")
    parser.add_argument("--context-key", help="column that groups rows into sequences (sequential data)")
    parser.add_argument("--seed", type=int, nargs="+", default=[1], help="qa's random state (qa.set_random_state); "
                        "several: the median, mean and standard error over them")
    parser.add_argument("--mode", choices=["replicate", "expected"], default="replicate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--official", action="store_true", help="also run mostlyai-qa's qa.report")
    parser.add_argument("--report", default="qa-report.html", help="where --official writes qa's HTML report")
    with exit_on_data_error():
        args = parser.parse_args(argv)
        trn, syn, hol = load_tables(args.training, args.synthetic, args.holdout, args.context_key)
        start = time.perf_counter()
        per_seed = [evaluate(trn, syn, hol, args.context_key, args.mode, seed).as_dict(with_max=hol is not None)
                    for seed in args.seed]
        result = over_seeds(per_seed, args.seed)
        result["seconds"] = round(time.perf_counter() - start, 3)
        if args.official:
            start = time.perf_counter()
            result["official"] = official_scores(trn, syn, hol, args.context_key, args.seed[0], Path(args.report))
            result["official"]["seconds"] = round(time.perf_counter() - start, 3)

    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


def over_seeds(per_seed: list[dict], seeds: list[int]) -> dict:
    """One seed's figures as they are; for several, the median of each (None stays None), and with them the seeds,
    the mean and the standard error of the mean of every aspect."""
    if len(per_seed) == 1:
        return dict(per_seed[0])
    values = {name: np.array([scores[name] for scores in per_seed]) for name, first in per_seed[0].items() if first is not None}
    result = {name: float(np.median(values[name])) if name in values else None for name in per_seed[0]}
    aspects = [aspect for aspect in ("overall",) + ASPECTS if aspect in values]
    result["seeds"] = list(seeds)
    result["mean"] = {aspect: float(values[aspect].mean()) for aspect in aspects}
    result["standard_error"] = {aspect: float(values[aspect].std(ddof=1) / np.sqrt(len(per_seed))) for aspect in aspects}
    return result


def format_table(result: dict) -> str:
    """Aspects as rows; columns: ours (the median over seeds, then their mean and its standard error, when there are
    several), qa's max reference and qa's own figure, where present."""
    official = result.get("official", {})
    several = "seeds" in result
    rows = []
    for aspect in ("overall",) + ASPECTS:
        row = {"aspect": aspect, "median" if several else "accuracy": result[aspect]}
        if several:
            row["mean"] = result["mean"].get(aspect)
            row["s.e."] = result["standard_error"].get(aspect)
        if f"{aspect}_max" in result:
            row["max"] = result[f"{aspect}_max"]
        if official:
            row["qa.report"] = official.get(aspect)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("aspect")
    seeds = f"seeds {', '.join(map(str, result['seeds']))}; " if several else ""
    footer = f"\n{seeds}{result['seconds']:.2f} s" + (f" (qa.report: {official['seconds']:.0f} s)" if official else "")
    return table.to_string(float_format=lambda v: f"{v:.5f}", na_rep="-") + footer


if __name__ == "__main__":
    sys.exit(main())
