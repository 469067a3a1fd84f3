"""The selection problem: pool units, what each contributes to the target histograms, and the targets.

A *unit* is what the engine selects: a row (flat data) or a whole sequence (sequential data). In the metric's
expected mode a unit contributes to every accuracy table through its *frame rows*: one row of weight 1 (flat),
or the `len - 1` consecutive pairs of a sequence, each of weight `1 / (len - 1)`, with the sequence length as a
column. Frame rows are stored once, as an int8 code matrix; kernels derive each table's cell on the fly
(`offset + sum(code * stride)`), so no units x cells matrix is ever built. Coherence cells of a sequence
(distinct categories per sequence, sequences per category) are few and stored as a scipy.sparse CSR matrix.

Targets come from the training data alone, scaled to the number of units to select. The objective is the
expected-mode accuracy, `sum_t alpha_t * (1 - L1_t / 2)`, with `alpha_t` spreading equal weight over the aspects
(univariate, bivariate, trivariate, coherence) and equally over each aspect's tables. For a selection of
`n_target` units it equals `sum(alpha) - sum_c beta_c * |h_c - target_c|`, with `beta = alpha / (2 n_target)`
(per table, divided by a table's mean total for sequences per category).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse

from common.binning import ColumnData, column_kind, fit_bins
from common.metric import (
    ASPECT_OF_KIND,
    MAX_COLUMNS,
    N_BINS,
    N_BINS_COHERENCE,
    aggregate,
    category_slots,
    code_masks,
    distinct_counts,
    sequences_per_slot,
)
from common.sampling import SEQUENCE_LENGTH, Groups, expected_coherence_rows, expected_frame, group_rows, prepared_frame
from common.tables import TableSet, n_triples, qa_tables, table_accuracies


@dataclass
class Problem:
    """Everything the engine needs; `U` units, `M` frame rows, `K` columns, `T` frame tables, `E` coherence cells."""

    codes: np.ndarray  # (M, K) int8, row-major: the frame rows of all units
    unit_ptr: np.ndarray  # (U + 1,) int64: unit u owns frame rows unit_ptr[u] : unit_ptr[u + 1]
    row_weight: np.ndarray  # (M,) float64
    tables: TableSet  # the frame tables (univariate, bivariate, trivariate, next-row)
    table_kind: np.ndarray  # (T,) str
    table_beta: np.ndarray  # (T,) float64, loss weight of a cell of each table
    coherence: scipy.sparse.csr_matrix  # (U, E) float32 coherence cells of each unit (no columns for flat data)
    coherence_offsets: np.ndarray  # (n_coherence_tables + 1,) cells of each coherence table
    coherence_kind: np.ndarray  # (n_coherence_tables,) str
    coherence_beta: np.ndarray  # (E,) float64
    target: np.ndarray  # (T cells + E,) float64, target counts for `n_target` units
    n_target: int
    pool_groups: Groups  # unit u is pool group u (a row, for flat data)

    @property
    def n_units(self) -> int:
        return len(self.unit_ptr) - 1

    @property
    def n_frame_cells(self) -> int:
        return self.tables.n_cells

    def rows_of(self, units: np.ndarray) -> np.ndarray:
        """The frame rows of the given units, unit after unit."""
        return _ranges(self.unit_ptr[units], self.unit_ptr[units + 1] - self.unit_ptr[units])

    def pool_rows(self, units: np.ndarray) -> np.ndarray:
        """The pool table's rows of the given units (a sequence's rows in their original order)."""
        return self.pool_groups.order[_ranges(self.pool_groups.start[units], self.pool_groups.length[units])]

    def histogram(self, units: np.ndarray) -> np.ndarray:
        """Counts of all cells (frame tables, then coherence cells) of the given units (repeats count twice)."""
        units = np.asarray(units, dtype=np.int64)
        rows = self.rows_of(units)
        frame = self.tables.histogram(self.codes[rows], self.row_weight[rows])
        coherence = np.asarray(self.coherence[units].sum(axis=0)).ravel().astype(np.float64)
        return np.concatenate([frame, coherence])

    def accuracy(self, hist: np.ndarray) -> dict[str, float | None]:
        """Expected-mode accuracy aspects of a histogram against the training targets (each table normalised)."""
        offsets = np.concatenate([self.tables.offsets, self.n_frame_cells + self.coherence_offsets[1:]])
        accuracy, accuracy_max = table_accuracies(offsets, self.target, hist)
        kinds = np.concatenate([self.table_kind, self.coherence_kind])
        detail = pd.DataFrame({"kind": kinds, "accuracy": accuracy, "accuracy_max": accuracy_max})
        return aggregate(detail).as_dict(with_max=False)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`starts[i] .. starts[i] + lengths[i] - 1` for every i, one after the other."""
    first_of_range = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + np.arange(int(lengths.sum())) - first_of_range


def build_problem(
    training: pd.DataFrame,
    pool: pd.DataFrame,
    context_key: str | None = None,
    n_target: int | None = None,
    max_triples: int = 2_000,
    seed: int = 0,
) -> Problem:
    """The problem of choosing `n_target` units (default: as many as the training data has) out of `pool`.

    Bins are learnt from the training data only (expected mode). `max_triples` caps the trivariate tables: a
    seeded random sample of all triples stands for them (the metric averages over a random 10,000 too).
    """
    data_cols = sorted(c for c in training.columns if c != context_key)[:MAX_COLUMNS]
    kinds = {c: column_kind(training[c]) for c in training.columns if c != context_key}
    trn_groups = group_rows(training[context_key] if context_key else None, len(training))
    pool_groups = group_rows(pool[context_key] if context_key else None, len(pool))
    sequential = context_key is not None and trn_groups.n_groups < len(training)
    n_target = n_target or trn_groups.n_groups
    trn_columns = {c: ColumnData.of(training[c], kinds[c]) for c in kinds}

    # training frame: bins (expected mode), codes, and the merge of codes the training data never takes
    trn_frame, pool_frame = expected_frame(trn_groups), expected_frame(pool_groups)
    trn_prepared = prepared_frame(trn_columns, trn_frame, trn_groups, data_cols, sequential)
    names = list(trn_prepared)
    bins = {c: fit_bins(trn_prepared[c], N_BINS, trn_frame.weight) for c in names}
    raw_codes = {c: bins[c].encode(trn_prepared[c]) for c in names}
    merged = {c: _merge_unseen(raw_codes[c], bins[c].n_codes) for c in names}
    trn_codes = np.stack([merged[c][raw_codes[c]] for c in names], axis=1)
    n_codes = np.array([merged[c].max() + 1 for c in names])
    # pool frame and coherence cells, one column at a time (bounded memory, each column converted once)
    pool_codes = np.empty((len(pool_frame.first), len(names)), dtype=np.int8)
    coherence = _Coherence(trn_groups, pool_groups, n_target)
    for col in data_cols:
        pool_column = ColumnData.of(pool[col], kinds[col])
        for name, column in prepared_frame({col: pool_column}, pool_frame, pool_groups, [col], sequential).items():
            pool_codes[:, names.index(name)] = merged[name][bins[name].encode(column)]
        if sequential:
            coherence.add_column(trn_columns[col], pool_column)

    tgt_names = ([SEQUENCE_LENGTH] if sequential else []) + data_cols
    chosen = None
    if n_triples(len(tgt_names)) > max_triples:
        chosen = np.sort(np.random.default_rng(seed).choice(n_triples(len(tgt_names)), max_triples, replace=False))
    table_cols, table_kind = qa_tables(tgt_names, len(data_cols) if sequential else 0, chosen)
    tables = TableSet.build(table_cols, n_codes)
    frame_target = tables.histogram(trn_codes, trn_frame.weight) * (n_target / trn_groups.n_groups)

    matrix, coh_offsets, coh_kind, coh_target, coh_norm = coherence.result()

    table_kind = np.array(table_kind, dtype=object)
    alpha_frame, alpha_coh = _alphas(table_kind, coh_kind)
    return Problem(
        codes=pool_codes,
        unit_ptr=_unit_pointer(pool_frame.group, pool_groups.n_groups),
        row_weight=np.ones(len(pool_codes)) if pool_frame.weight is None else pool_frame.weight,
        tables=tables,
        table_kind=table_kind,
        table_beta=alpha_frame / (2 * n_target),
        coherence=matrix,
        coherence_offsets=coh_offsets,
        coherence_kind=coh_kind,
        coherence_beta=np.repeat(alpha_coh / (2 * n_target * coh_norm), np.diff(coh_offsets)),
        target=np.concatenate([frame_target, coh_target]),
        n_target=n_target,
        pool_groups=pool_groups,
    )


def _merge_unseen(trn_codes: np.ndarray, n_codes: int) -> np.ndarray:
    """A renumbering of a column's codes that merges those the training data never takes into one code.

    Every cell that holds such a code has a target of 0, so merging them leaves the L1 distance of every table
    unchanged, while the tables get smaller."""
    seen = np.bincount(trn_codes, minlength=n_codes) > 0
    mapping = np.full(n_codes, seen.sum(), dtype=np.int8)
    mapping[seen] = np.arange(seen.sum())
    return mapping


def _unit_pointer(frame_group: np.ndarray, n_units: int) -> np.ndarray:
    """Frame rows come grouped by unit: the start of each unit's rows."""
    return np.concatenate([[0], np.cumsum(np.bincount(frame_group, minlength=n_units))]).astype(np.int64)


def _alphas(table_kind: np.ndarray, coherence_kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weight of each table in the overall accuracy: equal over aspects, then over each aspect's tables
    (coherence: equal over its three parts)."""
    kinds = np.concatenate([table_kind, coherence_kind])
    aspects = np.array([ASPECT_OF_KIND[k] for k in kinds])
    present = sorted(set(aspects))
    alpha = np.zeros(len(kinds))
    for aspect in present:
        parts = sorted({k for k, a in zip(kinds, aspects) if a == aspect})
        for kind in parts:
            mask = kinds == kind
            alpha[mask] = 1 / len(present) / len(parts) / mask.sum()
    return alpha[: len(table_kind)], alpha[len(table_kind) :]


class _Coherence:
    """Coherence cells, a column at a time. Per column, two tables: the binned number of distinct categories in a
    sequence (one cell per unit), and the categories a sequence holds (top 9 by training sequences, plus one slot
    for the rest). No column added (flat data): no cells."""

    def __init__(self, trn_groups: Groups, pool_groups: Groups, n_target: int):
        self.trn_groups, self.pool_groups, self.scale = trn_groups, pool_groups, n_target / trn_groups.n_groups
        self.trn_rows = expected_coherence_rows(trn_groups)
        self.blocks, self.targets, self.norms, self.kinds = [], [], [], []

    def add_column(self, trn_column: ColumnData, pool_column: ColumnData) -> None:
        trn_groups, pool_groups = self.trn_groups, self.pool_groups
        trn_column = trn_column.take(self.trn_rows)
        bins = fit_bins(trn_column, N_BINS_COHERENCE)
        trn_masks = code_masks(bins.encode(trn_column), trn_groups.row_group[self.trn_rows], trn_groups.n_groups)
        pool_masks = code_masks(bins.encode(pool_column), pool_groups.row_group, pool_groups.n_groups)
        # distinct categories per sequence
        trn_counts, pool_counts = distinct_counts(trn_masks), distinct_counts(pool_masks)
        count_bins = fit_bins(trn_counts, N_BINS)
        pool_cell = count_bins.encode(pool_counts).astype(np.int64)
        ones = np.ones(len(pool_cell), np.float32)
        self._add(
            scipy.sparse.csr_matrix((ones, (np.arange(len(pool_cell)), pool_cell)), shape=(len(pool_cell), count_bins.n_codes)),
            np.bincount(count_bins.encode(trn_counts), minlength=count_bins.n_codes), 1.0, "categories_per_sequence",
        )
        # sequences per category: top 9 slots, and the rest pooled
        slot_bits = category_slots(trn_masks, bins)
        holds = np.stack([(pool_masks & bits) != 0 for bits in slot_bits], axis=1)
        trn_holds = sequences_per_slot(trn_masks, slot_bits)
        slots_per_sequence = trn_holds.sum() / trn_groups.n_groups  # the table's norm
        self._add(scipy.sparse.csr_matrix(holds.astype(np.float32)), trn_holds, slots_per_sequence, "sequences_per_category")

    def _add(self, block, trn_counts, norm, kind) -> None:
        self.blocks.append(block)
        self.targets.append(trn_counts * self.scale)
        self.norms.append(norm)
        self.kinds.append(kind)

    def result(self) -> tuple:
        """(units x cells CSR matrix, table offsets, table kinds, target counts, table norms)."""
        if not self.blocks:
            empty = scipy.sparse.csr_matrix((self.pool_groups.n_groups, 0), dtype=np.float32)
            return empty, np.zeros(1, np.int64), np.array([], dtype=object), np.zeros(0), np.zeros(0)
        matrix = scipy.sparse.hstack(self.blocks, format="csr", dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum([block.shape[1] for block in self.blocks])]).astype(np.int64)
        targets = np.concatenate(self.targets).astype(np.float64)
        return matrix, offsets, np.array(self.kinds, dtype=object), targets, np.array(self.norms)
