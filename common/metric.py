"""mostlyai-qa's "overall accuracy", computed from integer bin codes.

Mirrors `qa.report` (mostlyai-qa 1.10.11): the original data is training + holdout when a holdout is given; bins
come from the original data; accuracy of a table is `1 - L1/2` between original and synthetic frequencies;

- univariate: every column (sorted names, at most 300) plus, for sequences, the sequence length;
- bivariate: every pair of those columns;
- trivariate: every triple, or a random 10,000 of them when there are more;
- coherence (sequences only): the mean of three means: next-row bivariates (each column against itself one row
  later), distinct categories per sequence (30 bins, then 10 bins of the counts), sequences per category (the 9
  categories found in most sequences, plus the rest);
- overall: the mean of the available ones of univariate, bivariate, trivariate, coherence.

`mode="replicate"` reproduces qa's random draws for `seed` (numbers equal `qa.report` after
`qa.set_random_state(seed)`); `mode="expected"` is the deterministic expectation over qa's row sampling (see
`common.sampling`), the objective the selection engine optimises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import pandas as pd

from common.binning import OTHER_BIN, ColumnBins, fit_bins
from common.io import DataError
from common.sampling import Frame, Groups, QaDraws, TextTokens, expected_coherence_rows, expected_frame, group_rows
from common.tables import TableSet, table_accuracies

MAX_COLUMNS = 300
MAX_TRIVARIATES = 10_000
N_BINS = 10
N_BINS_COHERENCE = 30
N_TOP_CATEGORIES = 9
MIN_SYNTHETIC, MIN_TRAINING, MIN_HOLDOUT = 100, 90, 10  # qa's minimum sample sizes (rows or sequences)
SEQUENCE_LENGTH = "Sequence Length"
ASPECTS = ("univariate", "bivariate", "trivariate", "coherence")

Mode = Literal["replicate", "expected"]


@dataclass
class Scores:
    """Accuracy aspects (None where an aspect does not apply), their "max" references, and per-table detail."""

    overall: float
    univariate: float
    bivariate: float | None
    trivariate: float | None
    coherence: float | None
    maximum: dict[str, float | None] = field(default_factory=dict)
    tables: pd.DataFrame = field(default_factory=pd.DataFrame)  # kind, columns, accuracy, accuracy_max

    def as_dict(self, with_max: bool) -> dict[str, float | None]:
        out = {k: _plain(getattr(self, k)) for k in ("overall",) + ASPECTS}
        if with_max:
            out.update({f"{k}_max": _plain(v) for k, v in self.maximum.items()})
        return out


def evaluate(
    training: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    context_key: str | None = None,
    mode: Mode = "replicate",
    seed: int = 1,
) -> Scores:
    """Score `synthetic` against `training` (and `holdout`), as qa.report does. Tables must share columns."""
    tables = {"training": training, "holdout": holdout, "synthetic": synthetic}
    tables = {name: df for name, df in tables.items() if df is not None}
    groups = {name: group_rows(df[context_key] if context_key else None, len(df)) for name, df in tables.items()}
    _check_sizes(groups)
    originals = [n for n in ("training", "holdout") if n in tables]
    data_cols = sorted(c for c in training.columns if c != context_key)[:MAX_COLUMNS]
    sequential = context_key is not None and groups["training"].n_groups < len(training)  # qa's "1:N" setup
    tgt_names = ([SEQUENCE_LENGTH] if sequential else []) + data_cols
    n_triples = _n_triples(len(tgt_names))
    tokens = TextTokens(seed)

    # the rows qa looks at (replayed draws, or all candidates weighted), as qa's prepared frames of values
    if mode == "replicate":
        draws = QaDraws(seed)
        frames = {name: draws.frame(groups[name]) for name in [*originals, "synthetic"]}
    else:
        frames = {name: expected_frame(groups[name]) for name in tables}
    prepared = {
        name: _prepared_frame(tables[name], frames[name], groups[name], data_cols, sequential, tokens)
        for name in [*originals, "synthetic"]
    }
    coherence = None
    if sequential and len(training.columns) > 1:
        original = pd.concat([tables[n] for n in originals], ignore_index=True)
        pick = draws.coherence_rows if mode == "replicate" else expected_coherence_rows
        coherence = [
            _coherence_values(df.iloc[pick(group_rows(df[context_key], len(df)))], context_key, tokens)
            for df in (original, synthetic)
        ]
    if mode == "replicate":
        chosen = None
        if n_triples > MAX_TRIVARIATES:
            q95 = float(np.quantile(groups["training"].length, 0.95))
            draws.skip_embedding_draws([groups[n] for n in ("synthetic", *originals)], context_key is not None, q95)
            chosen = draws.trivariate_order(n_triples)[:MAX_TRIVARIATES]
    else:
        chosen = None if n_triples <= MAX_TRIVARIATES else np.sort(np.random.default_rng(seed).choice(n_triples, MAX_TRIVARIATES, replace=False))

    # bins from the original frames, codes of every frame
    original = pd.concat([prepared[n] for n in originals], ignore_index=True)
    ori_weight = _concat_weights([frames[n] for n in originals])
    bins = [fit_bins(original[col], N_BINS, ori_weight) for col in original.columns]
    ori_codes = _encode(original, bins)
    syn_codes = _encode(prepared["synthetic"], bins)

    table_cols, kinds = _accuracy_tables(tgt_names, len(data_cols) if sequential else 0, chosen)
    table_set = TableSet.build(table_cols, np.array([b.n_codes for b in bins]))
    accuracy, accuracy_max = table_accuracies(
        table_set.offsets,
        table_set.histogram(ori_codes, ori_weight),
        table_set.histogram(syn_codes, frames["synthetic"].weight),
        round_to=_rounding(mode),
    )
    names = list(original.columns)
    detail = pd.DataFrame({
        "kind": kinds,
        "columns": [tuple(names[c] for c in cols) for cols in table_cols],
        "accuracy": accuracy,
        "accuracy_max": accuracy_max,
    })
    if coherence is not None:
        detail = pd.concat([detail, _coherence_tables(*coherence, context_key, mode)], ignore_index=True)
    return _aggregate(detail)


def _check_sizes(groups: dict[str, Groups]) -> None:
    for name, minimum in (("synthetic", MIN_SYNTHETIC), ("training", MIN_TRAINING), ("holdout", MIN_HOLDOUT)):
        if name in groups and groups[name].n_groups < minimum:
            raise DataError(f"{name}: at least {minimum} rows (or sequences) are needed, found {groups[name].n_groups}")


def _n_triples(k: int) -> int:
    return k * (k - 1) * (k - 2) // 6


def _prepared_frame(table, frame: Frame, groups: Groups, data_cols, sequential: bool, tokens: TextTokens) -> pd.DataFrame:
    """qa's prepared accuracy frame: [sequence length], the first rows' values, [the next rows' values]."""
    columns = {}
    if sequential:
        columns[SEQUENCE_LENGTH] = pd.Series(groups.length[frame.group])
    for col in data_cols:
        columns[col] = tokens(_values_at(table[col], frame.first))
    if sequential:
        for col in data_cols:
            columns[f"nxt::{col}"] = tokens(_values_at(table[col], frame.second))
    return pd.DataFrame(columns)


def _values_at(values: pd.Series, rows: np.ndarray) -> pd.Series:
    """`values` at `rows`, missing where a row is -1 (no next row)."""
    picked = values.iloc[np.maximum(rows, 0)].reset_index(drop=True)
    return picked.where(pd.Series(rows >= 0)) if (rows < 0).any() else picked


def _encode(frame: pd.DataFrame, bins: list[ColumnBins]) -> np.ndarray:
    """Codes of a prepared frame (rows x columns, int16, column-major)."""
    codes = np.empty((len(frame), len(bins)), dtype=np.int16, order="F")
    for j, col in enumerate(frame.columns):
        codes[:, j] = bins[j].encode(frame[col])
    return codes


def _concat_weights(frames: list[Frame]) -> np.ndarray | None:
    if all(f.weight is None for f in frames):
        return None
    return np.concatenate([f.weight if f.weight is not None else np.ones(len(f.first)) for f in frames])


def _accuracy_tables(tgt_names: list[str], n_next: int, chosen_triples: np.ndarray | None):
    """Column tuples and kinds of qa's tables; triples in qa's enumeration order, then `chosen_triples` of them."""
    k = len(tgt_names)
    uni = [(i,) for i in range(k)]
    bi = [(i, j) for i in range(k) for j in range(i + 1, k)]
    tri = _qa_ordered_triples(tgt_names)
    if chosen_triples is not None:
        tri = tri[chosen_triples]
    tri = [tuple(t) for t in tri.tolist()]
    # next-row pairs: each data column (after the sequence length) with its own next-row column
    nxt = [(k - n_next + j, k + j) for j in range(n_next)]
    kinds = ["univariate"] * len(uni) + ["bivariate"] * len(bi) + ["trivariate"] * len(tri) + ["next_row"] * len(nxt)
    return uni + bi + tri + nxt, kinds


def _qa_ordered_triples(tgt_names: list[str]) -> np.ndarray:
    """All triples (positions) in qa's order: a cross join in column order, kept where names are increasing."""
    k = len(tgt_names)
    by_name = np.argsort(np.array([f"tgt::{n}" for n in tgt_names], dtype=object), kind="stable")
    i, j = np.triu_indices(k, 1)  # rank pairs a < b, then every c > b
    repeats = k - 1 - j
    a, b = np.repeat(i, repeats), np.repeat(j, repeats)
    c = np.arange(len(a)) - np.repeat(np.cumsum(repeats) - repeats, repeats) + b + 1
    triples = np.stack([by_name[a], by_name[b], by_name[c]], axis=1).astype(np.int32)
    return triples[np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))]


def _coherence_values(table: pd.DataFrame, context_key: str, tokens: TextTokens) -> pd.DataFrame:
    """qa's prepared coherence data: the kept rows, text-like columns as tokens (in qa's row order)."""
    table = table.reset_index(drop=True)
    return pd.DataFrame({c: table[c] if c == context_key else tokens(table[c]) for c in table.columns})


def _coherence_tables(original: pd.DataFrame, synthetic: pd.DataFrame, context_key: str, mode: Mode) -> pd.DataFrame:
    """Distinct-categories-per-sequence and sequences-per-category accuracies, one table per column each."""
    ori_groups = group_rows(original[context_key], len(original))
    syn_groups = group_rows(synthetic[context_key], len(synthetic))
    rows = []
    for col in [c for c in original.columns if c != context_key]:
        bins = fit_bins(original[col], N_BINS_COHERENCE)
        ori_codes, syn_codes = bins.encode(original[col]), bins.encode(synthetic[col])
        identity = np.arange(bins.n_codes, dtype=np.int64)
        ori_distinct, ori_with_code = _distinct_per_group(ori_codes, ori_groups.order, ori_groups.start, ori_groups.length, identity, bins.n_codes)
        # sequences per category: the 9 categories in most sequences, all others pooled into one slot
        top = np.argsort(-ori_with_code, kind="stable")[:N_TOP_CATEGORIES]
        other = bins.breaks.index(OTHER_BIN) if bins.kind == "categorical" else bins.n_codes
        slots = np.full(bins.n_codes, other, dtype=np.int64)
        slots[top] = top
        n_slots = bins.n_codes + 1
        _, ori_with_slot = _distinct_per_group(ori_codes, ori_groups.order, ori_groups.start, ori_groups.length, slots, n_slots)
        syn_distinct, syn_with_slot = _distinct_per_group(syn_codes, syn_groups.order, syn_groups.start, syn_groups.length, slots, n_slots)
        acc, acc_max = table_accuracies(np.array([0, n_slots]), ori_with_slot.astype(float), syn_with_slot.astype(float), _rounding(mode))
        rows.append(("sequences_per_category", (col,), acc[0], acc_max[0]))
        # distinct categories per sequence: the counts binned in 10 bins
        count_bins = fit_bins(pd.Series(ori_distinct), N_BINS)
        ori_hist = np.bincount(count_bins.encode(pd.Series(ori_distinct)), minlength=count_bins.n_codes).astype(float)
        syn_hist = np.bincount(count_bins.encode(pd.Series(syn_distinct)), minlength=count_bins.n_codes).astype(float)
        acc, acc_max = table_accuracies(np.array([0, count_bins.n_codes]), ori_hist, syn_hist, _rounding(mode))
        rows.append(("categories_per_sequence", (col,), acc[0], acc_max[0]))
    return pd.DataFrame(rows, columns=["kind", "columns", "accuracy", "accuracy_max"])


@numba.njit(cache=True)
def _distinct_per_group(codes, order, start, length, slot_of_code, n_slots):
    """Per group, the number of distinct codes; per slot, the number of groups holding a code of that slot."""
    n_groups = len(length)
    distinct = np.zeros(n_groups, dtype=np.int64)
    groups_with = np.zeros(n_slots, dtype=np.int64)
    last_code = np.full(len(slot_of_code), -1, dtype=np.int64)
    last_slot = np.full(n_slots, -1, dtype=np.int64)
    for g in range(n_groups):
        for i in range(start[g], start[g] + length[g]):
            code = codes[order[i]]
            if last_code[code] != g:
                last_code[code] = g
                distinct[g] += 1
            slot = slot_of_code[code]
            if last_slot[slot] != g:
                last_slot[slot] = g
                groups_with[slot] += 1
    return distinct, groups_with


def _rounding(mode: Mode) -> int | None:
    return 5 if mode == "replicate" else None


def _aggregate(detail: pd.DataFrame) -> Scores:
    """qa's aspects: means of per-table accuracies; coherence is the mean of its three parts' means."""

    def mean(kinds, column):
        values = detail.loc[detail.kind.isin(kinds), column]
        return float(values.mean()) if len(values) else None

    def aspects(column):
        out = {k: mean([k], column) for k in ("univariate", "bivariate", "trivariate")}
        parts = [mean([k], column) for k in ("next_row", "categories_per_sequence", "sequences_per_category")]
        parts = [p for p in parts if p is not None]
        out["coherence"] = float(np.mean(parts)) if parts else None
        out["overall"] = float(np.mean([v for v in out.values() if v is not None]))
        return out

    value, maximum = aspects("accuracy"), aspects("accuracy_max")
    return Scores(
        overall=value["overall"], univariate=value["univariate"], bivariate=value["bivariate"],
        trivariate=value["trivariate"], coherence=value["coherence"],
        maximum={k: maximum[k] for k in ("overall",) + ASPECTS}, tables=detail,
    )


def _plain(value):
    return None if value is None else round(float(value), 7)
