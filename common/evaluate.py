"""Score a synthetic table with the MOSTLY AI Prize metric (mostlyai-qa's overall accuracy), fast.

    python -m common.evaluate --training T --synthetic S [--holdout H] [--context-key group_id]
                              [--seed N] [--mode replicate|expected] [--json] [--official [--report PATH]]

Prints a table of accuracy aspects (with a holdout, also qa's "max" references); `--json` prints one JSON object
instead. `--official` also runs mostlyai-qa's own `qa.report` (slow: minutes) and writes its HTML report.
Bad input gives a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from common.io import DataError, align_to_training, check_context_key, exit_on_data_error, read_table
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
    parser = argparse.ArgumentParser(prog="python -m common.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--training", required=True, help="training table (CSV, CSV.gz or parquet)")
    parser.add_argument("--synthetic", required=True, help="synthetic table to score")
    parser.add_argument("--holdout", help="holdout table: original = training + holdout, and the max references")
    parser.add_argument("--context-key", help="column that groups rows into sequences (sequential data)")
    parser.add_argument("--seed", type=int, default=1, help="qa's random state (qa.set_random_state)")
    parser.add_argument("--mode", choices=["replicate", "expected"], default="replicate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--official", action="store_true", help="also run mostlyai-qa's qa.report")
    parser.add_argument("--report", default="qa-report.html", help="where --official writes qa's HTML report")
    args = parser.parse_args(argv)

    with exit_on_data_error():
        trn, syn, hol = load_tables(args.training, args.synthetic, args.holdout, args.context_key)
        start = time.perf_counter()
        scores = evaluate(trn, syn, hol, args.context_key, args.mode, args.seed)
        result = scores.as_dict(with_max=hol is not None)
        result["seconds"] = round(time.perf_counter() - start, 3)
        if args.official:
            start = time.perf_counter()
            result["official"] = official_scores(trn, syn, hol, args.context_key, args.seed, Path(args.report))
            result["official"]["seconds"] = round(time.perf_counter() - start, 3)

    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


def format_table(result: dict) -> str:
    """Aspects as rows; columns: ours, qa's max reference and qa's own figure, where present."""
    official = result.get("official", {})
    rows = []
    for aspect in ("overall",) + ASPECTS:
        row = {"aspect": aspect, "accuracy": result[aspect]}
        if f"{aspect}_max" in result:
            row["max"] = result[f"{aspect}_max"]
        if official:
            row["qa.report"] = official.get(aspect)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("aspect")
    footer = f"\n{result['seconds']:.2f} s" + (f" (qa.report: {official['seconds']:.0f} s)" if official else "")
    return table.to_string(float_format=lambda v: f"{v:.5f}", na_rep="-") + footer


if __name__ == "__main__":
    sys.exit(main())
