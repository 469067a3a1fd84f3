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

from common.binning import OTHER_BIN, ColumnBins, ColumnData, column_kind, fit_bins
from common.io import DataError
from common.sampling import (
    Frame,
    Groups,
    QaDraws,
    SEQUENCE_LENGTH,
    TextTokens,
    expected_coherence_rows,
    expected_frame,
    group_rows,
    is_text_like,
    prepared_frame,
)
from common.tables import MAX_TRIVARIATES, TableSet, n_triples, qa_tables, table_accuracies

MAX_COLUMNS = 300
N_BINS = 10
N_BINS_COHERENCE = 30
N_TOP_CATEGORIES = 9
MIN_SYNTHETIC, MIN_TRAINING, MIN_HOLDOUT = 100, 90, 10  # qa's minimum sample sizes (rows or sequences)
ASPECTS = ("univariate", "bivariate", "trivariate", "coherence")
ASPECT_OF_KIND = {  # coherence is the mean of its three parts' means
    "univariate": "univariate",
    "bivariate": "bivariate",
    "trivariate": "trivariate",
    "next_row": "coherence",
    "categories_per_sequence": "coherence",
    "sequences_per_category": "coherence",
}

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
    frames_of = {"training": training, "holdout": holdout, "synthetic": synthetic}
    names = [n for n, df in frames_of.items() if df is not None]
    originals = [n for n in ("training", "holdout") if n in names]
    groups, original_groups = _groups(frames_of, originals, context_key)
    _check_sizes(groups)
    data_cols = sorted(c for c in training.columns if c != context_key)[:MAX_COLUMNS]
    sequential = context_key is not None and groups["training"].n_groups < len(training)  # qa's "1:N" setup
    coherence_cols = [c for c in training.columns if c != context_key] if sequential and len(training.columns) > 1 else []
    kinds = {c: column_kind(training[c]) for c in training.columns if c != context_key}
    columns = {n: {c: ColumnData.of(frames_of[n][c], kinds[c]) for c in dict.fromkeys(data_cols + coherence_cols)} for n in names}
    tgt_names = ([SEQUENCE_LENGTH] if sequential else []) + data_cols
    n_tgt_triples = n_triples(len(tgt_names))
    tokens = TextTokens(seed)

    # the rows qa looks at (replayed draws, or all candidates weighted), as qa's prepared frames
    if mode == "replicate":
        draws = QaDraws(seed)
        frames = {n: draws.frame(groups[n]) for n in [*originals, "synthetic"]}
    else:
        frames = {n: expected_frame(groups[n]) for n in names}
    prepared = {n: prepared_frame(columns[n], frames[n], groups[n], data_cols, sequential, tokens) for n in [*originals, "synthetic"]}
    coherence = None
    if coherence_cols:
        pick = draws.coherence_rows if mode == "replicate" else expected_coherence_rows
        original = {c: ColumnData.concat([columns[n][c] for n in originals]) for c in coherence_cols}
        coherence = [_coherence_values(cols, g, pick(g), tokens) for cols, g in ((original, original_groups), (columns["synthetic"], groups["synthetic"]))]
    if mode == "replicate":
        chosen = None
        if n_tgt_triples > MAX_TRIVARIATES:
            q95 = float(np.quantile(groups["training"].length, 0.95))
            draws.skip_embedding_draws([groups[n] for n in ("synthetic", *originals)], context_key is not None, q95)
            chosen = draws.trivariate_order(n_tgt_triples)[:MAX_TRIVARIATES]
    else:
        chosen = None if n_tgt_triples <= MAX_TRIVARIATES else np.sort(np.random.default_rng(seed).choice(n_tgt_triples, MAX_TRIVARIATES, replace=False))

    # bins from the original frames, codes of every frame
    frame_cols = list(prepared["training"])
    original = {c: ColumnData.concat([prepared[n][c] for n in originals]) for c in frame_cols}
    ori_weight = _concat_weights([frames[n] for n in originals])
    bins = [fit_bins(original[c], N_BINS, ori_weight) for c in frame_cols]
    ori_codes = _encode(original, bins)
    syn_codes = _encode(prepared["synthetic"], bins)

    table_cols, table_kinds = qa_tables(tgt_names, len(data_cols) if sequential else 0, chosen)
    table_set = TableSet.build(table_cols, np.array([b.n_codes for b in bins]))
    accuracy, accuracy_max = table_accuracies(
        table_set.offsets,
        table_set.histogram(ori_codes, ori_weight),
        table_set.histogram(syn_codes, frames["synthetic"].weight),
        round_to=_rounding(mode),
    )
    detail = pd.DataFrame({
        "kind": table_kinds,
        "columns": [tuple(frame_cols[c] for c in cols) for cols in table_cols],
        "accuracy": accuracy,
        "accuracy_max": accuracy_max,
    })
    if coherence is not None:
        detail = pd.concat([detail, _coherence_tables(*coherence, mode)], ignore_index=True)
    return aggregate(detail)


def _groups(frames_of: dict, originals: list[str], context_key: str | None) -> tuple[dict[str, Groups], Groups | None]:
    """Each table's groups, and those of training + holdout together (coherence pools their sequences)."""
    if context_key is None:
        return {n: group_rows(None, len(df)) for n, df in frames_of.items() if df is not None}, None
    keys = pd.concat([frames_of[n][context_key] for n in originals], ignore_index=True)
    ids = pd.factorize(keys, sort=True)[0]  # one factorisation; sorted ids keep each table's key order
    original_groups = group_rows(ids, len(ids))
    groups = {"synthetic": group_rows(frames_of["synthetic"][context_key], len(frames_of["synthetic"]))}
    start = 0
    for n in originals:
        groups[n] = group_rows(ids[start : start + len(frames_of[n])], len(frames_of[n]))
        start += len(frames_of[n])
    return groups, original_groups


def _check_sizes(groups: dict[str, Groups]) -> None:
    for name, minimum in (("synthetic", MIN_SYNTHETIC), ("training", MIN_TRAINING), ("holdout", MIN_HOLDOUT)):
        if name in groups and groups[name].n_groups < minimum:
            raise DataError(f"{name}: at least {minimum} rows (or sequences) are needed, found {groups[name].n_groups}")


def _encode(frame: dict[str, ColumnData], bins: list[ColumnBins]) -> np.ndarray:
    """Codes of a prepared frame (rows x columns, int16, column-major)."""
    columns = list(frame.values())
    codes = np.empty((len(columns[0]), len(bins)), dtype=np.int16, order="F")
    for j, column in enumerate(columns):
        codes[:, j] = bins[j].encode(column)
    return codes


def _concat_weights(frames: list[Frame]) -> np.ndarray | None:
    if all(f.weight is None for f in frames):
        return None
    return np.concatenate([f.weight if f.weight is not None else np.ones(len(f.first)) for f in frames])


def _coherence_values(columns: dict[str, ColumnData], groups: Groups, rows: np.ndarray, tokens: TextTokens):
    """qa's prepared coherence data: the kept rows (in qa's order; text-like columns as tokens) and their groups."""
    if len(rows) == len(groups.row_group) and not any(is_text_like(c) for c in columns.values()):
        return columns, groups  # all rows kept, and their order only matters for drawing tokens
    kept = {c: tokens(column.take(rows)) for c, column in columns.items()}
    return kept, group_rows(groups.row_group[rows], len(rows))


def _coherence_tables(original, synthetic, mode: Mode) -> pd.DataFrame:
    """Distinct-categories-per-sequence and sequences-per-category accuracies, one table per column each."""
    (ori_columns, ori_groups), (syn_columns, syn_groups) = original, synthetic
    rows = []
    for col, ori_column in ori_columns.items():
        tables = CoherenceTables.fit(ori_column, ori_groups)
        ori_hist, syn_hist = tables.histograms(ori_column, ori_groups), tables.histograms(syn_columns[col], syn_groups)
        for kind, ori, syn in zip(COHERENCE_KINDS, ori_hist, syn_hist):
            acc, acc_max = table_accuracies(np.array([0, len(ori)]), ori, syn, _rounding(mode))
            rows.append((kind, (col,), acc[0], acc_max[0]))
    return pd.DataFrame(rows, columns=["kind", "columns", "accuracy", "accuracy_max"])


COHERENCE_KINDS = ("categories_per_sequence", "sequences_per_category")


@dataclass(frozen=True)
class CoherenceTables:
    """The two coherence tables of one column, fitted on the original sequences: the column's 30 bins; the
    distinct categories per sequence, in 10 bins of their counts; the sequences per category, over slots (the 9
    categories held by most sequences, and the rest)."""

    bins: ColumnBins
    count_bins: ColumnBins
    slots: list[np.uint64]

    @staticmethod
    def fit(column: ColumnData, groups: Groups) -> "CoherenceTables":
        bins = fit_bins(column, N_BINS_COHERENCE)
        masks = code_masks(bins.encode(column), groups.row_group, groups.n_groups)
        return CoherenceTables(bins, fit_bins(distinct_counts(masks), N_BINS), category_slots(masks, bins))

    def cells(self, column: ColumnData, groups: Groups) -> tuple[np.ndarray, np.ndarray]:
        """Per sequence: its cell of the distinct-categories table (int64), and the slots it holds (bool,
        sequences x slots)."""
        masks = code_masks(self.bins.encode(column), groups.row_group, groups.n_groups)
        count_cell = self.count_bins.encode(distinct_counts(masks)).astype(np.int64)
        return count_cell, np.stack([(masks & bits) != 0 for bits in self.slots], axis=1)

    def histograms(self, column: ColumnData, groups: Groups) -> tuple[np.ndarray, np.ndarray]:
        """The counts of both tables (float64), in the order of `COHERENCE_KINDS`."""
        count_cell, holds = self.cells(column, groups)
        return np.bincount(count_cell, minlength=self.count_bins.n_codes).astype(np.float64), holds.sum(axis=0).astype(np.float64)


@numba.njit(cache=True)
def code_masks(codes, row_group, n_groups):
    """Per group, the set of codes its rows hold, as bits of a uint64 (codes < 64)."""
    masks = np.zeros(n_groups, dtype=np.uint64)
    for row in range(len(codes)):
        masks[row_group[row]] |= np.uint64(1) << np.uint64(codes[row])
    return masks


def sequences_with_codes(masks: np.ndarray, n_codes: int) -> np.ndarray:
    """For each code, the number of groups holding it."""
    return np.array([np.count_nonzero(masks & np.uint64(1 << c)) for c in range(n_codes)], dtype=np.float64)


def category_slots(masks: np.ndarray, bins: ColumnBins) -> list[np.uint64]:
    """Sequences per category: the 9 categories held by most of these sequences, one slot (bit mask) each, and
    one slot for all the others (pooled with '(other)' when that is on top)."""
    top = np.argsort(-sequences_with_codes(masks, bins.n_codes), kind="stable")[:N_TOP_CATEGORIES]
    other = bins.breaks.index(OTHER_BIN) if bins.kind == "categorical" else None
    top_bits = np.uint64(sum(1 << int(c) for c in top))
    rest = ~top_bits | (np.uint64(1 << other) if other is not None else np.uint64(0))
    return [np.uint64(1 << int(c)) for c in top if c != other] + [rest]


def distinct_counts(masks: np.ndarray) -> ColumnData:
    """The number of distinct codes of each group, as a numeric column."""
    return ColumnData("numeric", np.bitwise_count(masks).astype(np.float64), np.zeros(len(masks), dtype=bool))


def _rounding(mode: Mode) -> int | None:
    return 5 if mode == "replicate" else None


def gap_closed(accuracy: float, holdout_max: float, copy: float) -> float | None:
    """The share of the way from the holdout's score ("max") to the training data's own score (the copy, the
    metric's ceiling) that `accuracy` covers: 0 at the holdout, 1 at the copy, negative below the holdout."""
    return round((accuracy - holdout_max) / (copy - holdout_max), 4) if copy > holdout_max else None


def aggregate(detail: pd.DataFrame) -> Scores:
    """qa's aspects from per-table accuracies (`detail`: kind, accuracy, accuracy_max): means per kind, the
    kinds' means per aspect (`ASPECT_OF_KIND`), overall = mean of the aspects present."""

    def aspects(column):
        per_kind = detail.groupby("kind")[column].mean()
        out = {}
        for aspect in ASPECTS:
            parts = [per_kind[k] for k, a in ASPECT_OF_KIND.items() if a == aspect and k in per_kind]
            out[aspect] = float(np.mean(parts)) if parts else None
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
