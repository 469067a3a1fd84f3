"""Speed of our metric against mostlyai-qa's own accuracy computation, with the same numbers.

    python bench/metric_speed.py [--flat-rows 100000] [--skip-sequential] [--skip-flat] [--json]

- sequential: the real prize training + holdout and the winner's submission (skipped without ../shared/data);
- flat: a seeded prize-shaped table (60 numeric, 20 categorical columns) against a distorted copy of its
  generator's output, no holdout.
qa's side runs the accuracy and coherence steps of `qa.report` (data preparation, binning, univariate, bivariate,
trivariate and coherence tables), without the embeddings, similarity, distances and plots. Both sides use
replicate mode with seed 1; for the flat table, qa's trivariate sample is drawn from the random state that
`qa.report` would have at that point (after its embedding draws), so both sides score the same triples.
Also times a one-row update of all histograms (univariate, bivariate, up to 10,000 trivariate tables) of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.problems import prize_flat  # noqa: E402
from common.binning import fit_bins  # noqa: E402
from common.io import align_to_training, read_table  # noqa: E402
from common.metric import ASPECTS, evaluate  # noqa: E402
from common.sampling import QaDraws, group_rows  # noqa: E402
from common.tables import MAX_TRIVARIATES, TableSet, qa_ordered_triples  # noqa: E402

PRIZE = Path(__file__).resolve().parents[2] / "shared" / "data" / "prize-sequential"
SEED = 1


def qa_accuracy(trn, syn, hol, key, trivariate_state=None) -> dict:
    """The accuracy figures as qa.report computes them, from qa's own functions."""
    from mostlyai import qa
    from mostlyai.qa import _accuracy, _coherence, _sampling

    qa.set_random_state(SEED)
    setup = "1:N" if key is not None and not trn[key].is_unique else "1:1"
    t = _sampling.prepare_data_for_accuracy(df_tgt=trn, tgt_context_key=key, setup=setup)
    parts = [t]
    if hol is not None:
        parts.append(_sampling.prepare_data_for_accuracy(df_tgt=hol, tgt_context_key=key, setup=setup, ori_dtypes=t.dtypes.to_dict()))
    s = _sampling.prepare_data_for_accuracy(df_tgt=syn, tgt_context_key=key, setup=setup, ori_dtypes=t.dtypes.to_dict())
    ori = pd.concat(parts, ignore_index=True)
    if setup == "1:N":
        ori_coh, coh_bins = _sampling.prepare_data_for_coherence(df_tgt=pd.concat([trn, hol]) if hol is not None else trn, tgt_context_key=key)
        syn_coh, _ = _sampling.prepare_data_for_coherence(df_tgt=syn, tgt_context_key=key, bins=coh_bins)
    ori_bin, bins = _accuracy.bin_data(ori, 10)
    syn_bin, _ = _accuracy.bin_data(s, bins)
    uni = _accuracy.calculate_univariates(ori_bin, syn_bin)
    biv = _accuracy.calculate_bivariates(ori_bin, syn_bin)
    if trivariate_state is not None:
        np.random.set_state(trivariate_state)
    tri = _accuracy.calculate_trivariates(ori_bin, syn_bin)
    out = {"univariate": uni.accuracy.mean(), "bivariate": biv.loc[biv.type != "nxt"].accuracy.mean(),
           "trivariate": tri.accuracy.mean() if len(tri) else None, "coherence": None}
    if setup == "1:N":
        ori_cps = _coherence.calculate_distinct_categories_per_sequence(ori_coh, key)
        syn_cps = _coherence.calculate_distinct_categories_per_sequence(syn_coh, key)
        ori_cps_bin, cps_bins = _accuracy.bin_data(ori_cps, 10)
        syn_cps_bin, _ = _accuracy.bin_data(syn_cps, cps_bins)
        cps = _coherence.calculate_distinct_categories_per_sequence_accuracy(ori_cps_bin, syn_cps_bin)
        _, ori_top, top_cats, _ = _coherence.calculate_sequences_per_distinct_category(ori_coh, key)
        _, syn_top, _, _ = _coherence.calculate_sequences_per_distinct_category(syn_coh, key, top_cats=top_cats)
        spc = _coherence.calculate_sequences_per_distinct_category_accuracy(ori_seqs_per_top_cat_cnts=ori_top, syn_seqs_per_top_cat_cnts=syn_top)
        out["coherence"] = np.mean([biv.loc[biv.type == "nxt"].accuracy.mean(), cps.accuracy.mean(), spc.accuracy.mean()])
    out["overall"] = np.mean([v for v in out.values() if v is not None])
    return {k: None if v is None else round(float(v), 7) for k, v in out.items()}


def compare(name, trn, syn, hol, key, trivariate_state=None) -> dict:
    start = time.perf_counter()
    ours = evaluate(trn, syn, hol, key, "replicate", SEED).as_dict(with_max=False)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = qa_accuracy(trn, syn, hol, key, trivariate_state)
    qa_s = time.perf_counter() - start
    diff = max(abs(ours[a] - theirs[a]) for a in ("overall",) + ASPECTS if theirs[a] is not None)
    row = {"data": name, "ours_s": round(ours_s, 2), "qa_s": round(qa_s, 1), "speedup": round(qa_s / ours_s, 1),
           "max_abs_diff": diff, "overall": ours["overall"], "qa_overall": theirs["overall"]}
    print(f"# {name}: ours {ours_s:.2f} s, qa {qa_s:.1f} s, x{qa_s / ours_s:.0f}, max |diff| {diff:.1e}", file=sys.stderr)
    return row


def flat_trivariate_state(trn, syn) -> dict:
    """qa.report's random state just before it samples the triples (flat, no holdout, no context key)."""
    draws = QaDraws(SEED)
    groups = [group_rows(None, len(trn)), group_rows(None, len(syn))]
    for g in groups:
        draws.frame(g)
    draws.skip_embedding_draws([groups[1], groups[0]], sequential=False, q95_length=1.0)
    return draws.random.get_state()


def row_update_microseconds(table: pd.DataFrame, repeats: int = 20_000) -> tuple[float, int]:
    """Median cost of adding one row to the histograms of all univariate, bivariate and (at most 10,000) trivariate tables."""
    cols = sorted(table.columns)
    codes = np.asfortranarray(np.stack([fit_bins(table[c]).encode(table[c]) for c in cols], axis=1))
    n_codes = codes.max(axis=0).astype(np.int64) + 1
    k = len(cols)
    triples = qa_ordered_triples(cols)
    chosen = triples[np.random.default_rng(0).choice(len(triples), min(len(triples), MAX_TRIVARIATES), replace=False)]
    tables = TableSet.build([(i,) for i in range(k)] + [(i, j) for i in range(k) for j in range(i + 1, k)] + [tuple(t) for t in chosen.tolist()], n_codes)
    hist = tables.histogram(codes)
    tables.add_row(hist, codes[0], 1.0)  # compile
    times = []
    for r in range(repeats):
        start = time.perf_counter_ns()
        tables.add_row(hist, codes[r % len(codes)], 1.0)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1000, tables.n_tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flat-rows", type=int, default=100_000)
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    evaluate(*(prize_flat(200, s) for s in (1, 2)), mode="replicate")  # compile the numba kernels first
    rows = []
    result = {"rows": rows}
    if not args.skip_sequential and (PRIZE / "sequential-training.csv.gz").is_file():
        trn = read_table(PRIZE / "sequential-training.csv.gz")
        hol = align_to_training(trn, read_table(PRIZE / "sequential-holdout.csv.gz"), "holdout")
        syn = align_to_training(trn, read_table(PRIZE / "finalists" / "synthetic-SEQU1-run1.csv.gz"), "synthetic")
        rows.append(compare("sequential (prize, with holdout)", trn, syn, hol, "group_id"))
        result["row_update_sequential_us"], result["row_update_sequential_tables"] = row_update_microseconds(trn.drop(columns="group_id"))
    if not args.skip_flat:
        trn, syn = prize_flat(args.flat_rows, seed=1), prize_flat(args.flat_rows, seed=2, distortion=0.3)
        rows.append(compare(f"flat {args.flat_rows:,} x 80 (seeded)", trn, syn, None, None, flat_trivariate_state(trn, syn)))
        result["row_update_flat_us"], result["row_update_flat_tables"] = row_update_microseconds(trn)
    if args.json:
        print(json.dumps(result))
    else:
        print(pd.DataFrame(rows).set_index("data").to_string())
        for shape in ("sequential", "flat"):
            if f"row_update_{shape}_us" in result:
                print(f"{shape}: one-row update of all {result[f'row_update_{shape}_tables']:,} tables: "
                      f"{result[f'row_update_{shape}_us']:.1f} µs (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
