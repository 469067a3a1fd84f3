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
(per table, divided by a table's mean total for sequences per category). The engine may judge each cell with the
noise the official metric adds to it instead (`cell_noise`, see `common/refine.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse

from common.binning import ColumnBins, ColumnData, column_kind, fit_bins
from common.metric import ASPECT_OF_KIND, COHERENCE_KINDS, MAX_COLUMNS, N_BINS, CoherenceTables, aggregate
from common.sampling import (
    SEQUENCE_LENGTH,
    Frame,
    Groups,
    expected_coherence_rows,
    expected_frame,
    group_rows,
    prepared_columns,
    prepared_frame,
    sequence_length_column,
)
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
    cell_noise: np.ndarray  # (T cells + E,) float32: the standard deviation of the noise the official metric adds to a
                            # cell's residual (counts); 0: none (the cell costs its plain |residual|)

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
    metric_noise: float = 0.0,
) -> Problem:
    """The problem of choosing `n_target` units (default: as many as the training data has) out of `pool`.

    Bins are learnt from the training data only (expected mode). `max_triples` caps the trivariate tables: a
    seeded random sample of all triples stands for them (the metric averages over a random 10,000 too).
    `metric_noise` > 0: each frame cell's residual is judged as the official metric sees it, with noise of variance
    `metric_noise * target` added (`Problem.cell_noise`): the metric compares the selection with training AND
    holdout, whose difference from training alone is noise of variance about `target / 2` for a holdout as large
    as training (sequential data: more, from qa's draw of one row pair per sequence).
    """
    data_cols = sorted(c for c in training.columns if c != context_key)[:MAX_COLUMNS]
    kinds = {c: column_kind(training[c]) for c in training.columns if c != context_key}
    trn_groups = group_rows(training[context_key] if context_key else None, len(training))
    pool_groups = group_rows(pool[context_key] if context_key else None, len(pool))
    sequential = context_key is not None and trn_groups.n_groups < len(training)
    n_target = n_target or trn_groups.n_groups
    trn_columns = {c: ColumnData.of(training[c], kinds[c]) for c in kinds}

    frame_codes = FrameCodes.fit(trn_columns, trn_groups, data_cols, sequential)
    tables, table_kind = frame_tables(frame_codes, len(data_cols), sequential, max_triples, seed)
    frame_target = tables.histogram(frame_codes.training, frame_codes.training_weight) * (n_target / trn_groups.n_groups)
    # the pool, one column at a time (bounded memory, each column converted once): frame codes, coherence cells
    pool_frame = expected_frame(pool_groups)
    pool_codes = frame_codes.empty(len(pool_frame.first))
    if sequential:
        frame_codes.encode_sequence_length(pool_codes, pool_frame, pool_groups)
    coherence = CoherenceCells(trn_groups, pool_groups, n_target)
    for col in data_cols:
        pool_column = ColumnData.of(pool[col], kinds[col])
        frame_codes.encode_column(pool_codes, col, pool_column, pool_frame, sequential)
        if sequential:
            coherence.add_column(trn_columns[col], pool_column)
    coherence_matrix, coherence_offsets, coherence_kind, coherence_target, coherence_norm = coherence.result()

    alpha_frame, alpha_coherence = _alphas(table_kind, coherence_kind)
    return Problem(
        codes=pool_codes,
        unit_ptr=_unit_pointer(pool_frame.group, pool_groups.n_groups),
        row_weight=np.ones(len(pool_codes)) if pool_frame.weight is None else pool_frame.weight,
        tables=tables,
        table_kind=table_kind,
        table_beta=alpha_frame / (2 * n_target),
        coherence=coherence_matrix,
        coherence_offsets=coherence_offsets,
        coherence_kind=coherence_kind,
        coherence_beta=np.repeat(alpha_coherence / (2 * n_target * coherence_norm), np.diff(coherence_offsets)),
        target=np.concatenate([frame_target, coherence_target]),
        n_target=n_target,
        pool_groups=pool_groups,
        cell_noise=np.concatenate([np.sqrt(metric_noise * frame_target), np.zeros(len(coherence_target))]).astype(np.float32),
    )


@dataclass
class FrameCodes:
    """The columns of qa's prepared frame (`[sequence length], columns, [next-row columns]`), their bins learnt
    from the training frame, and the training frame's codes (int8; codes the training data never takes merged)."""

    names: list[str]
    bins: dict[str, ColumnBins]
    merge: dict[str, np.ndarray]  # per column, raw bin code -> code
    training: np.ndarray  # (training frame rows, columns) int8
    training_weight: np.ndarray | None

    @staticmethod
    def fit(trn_columns: dict[str, ColumnData], trn_groups: Groups, data_cols: list[str], sequential: bool) -> "FrameCodes":
        frame = expected_frame(trn_groups)
        prepared = prepared_frame(trn_columns, frame, trn_groups, data_cols, sequential)
        bins = {c: fit_bins(column, N_BINS, frame.weight) for c, column in prepared.items()}
        raw = {c: bins[c].encode(column) for c, column in prepared.items()}
        merge = {c: _merge_unseen(raw[c], bins[c].n_codes) for c in prepared}
        training = np.stack([merge[c][raw[c]] for c in prepared], axis=1)
        return FrameCodes(list(prepared), bins, merge, training, frame.weight)

    @property
    def n_codes(self) -> np.ndarray:
        return np.array([self.merge[c].max() + 1 for c in self.names])

    def empty(self, n_rows: int) -> np.ndarray:
        return np.empty((n_rows, len(self.names)), dtype=np.int8)

    def encode_sequence_length(self, codes: np.ndarray, frame: Frame, groups: Groups) -> None:
        """Fill the sequence-length column of `codes` (a frame of `groups`)."""
        self._encode(codes, {SEQUENCE_LENGTH: sequence_length_column(frame, groups)})

    def encode_column(self, codes: np.ndarray, col: str, column: ColumnData, frame: Frame, sequential: bool) -> None:
        """Fill the columns of `codes` that come from data column `col` (its value, and the next row's)."""
        self._encode(codes, prepared_columns({col: column}, frame, [col], sequential))

    def _encode(self, codes: np.ndarray, prepared: dict[str, ColumnData]) -> None:
        for name, column in prepared.items():
            codes[:, self.names.index(name)] = self.merge[name][self.bins[name].encode(column)]


def frame_tables(frame_codes: FrameCodes, n_data_cols: int, sequential: bool, max_triples: int, seed: int) -> tuple[TableSet, np.ndarray]:
    """The frame tables qa scores (a seeded sample of `max_triples` triples when there are more) and their kinds."""
    n_columns = n_data_cols + sequential
    chosen = None
    if n_triples(n_columns) > max_triples:
        chosen = np.sort(np.random.default_rng(seed).choice(n_triples(n_columns), max_triples, replace=False))
    table_cols, table_kind = qa_tables(frame_codes.names[:n_columns], n_data_cols if sequential else 0, chosen)
    return TableSet.build(table_cols, frame_codes.n_codes), np.array(table_kind, dtype=object)


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


class CoherenceCells:
    """Coherence cells of the pool's units and their targets, a column at a time (`CoherenceTables`, as the
    metric builds them, fitted on the training sequences). No column added (flat data): no cells."""

    def __init__(self, trn_groups: Groups, pool_groups: Groups, n_target: int):
        self.pool_groups, self.scale = pool_groups, n_target / trn_groups.n_groups
        self.trn_rows = expected_coherence_rows(trn_groups)
        self.trn_groups = group_rows(trn_groups.row_group[self.trn_rows], len(self.trn_rows))
        self.blocks, self.targets, self.norms, self.kinds = [], [], [], []

    def add_column(self, trn_column: ColumnData, pool_column: ColumnData) -> None:
        trn_column = trn_column.take(self.trn_rows)
        tables = CoherenceTables.fit(trn_column, self.trn_groups)
        count_cell, holds = tables.cells(pool_column, self.pool_groups)
        trn_counts, trn_holds = tables.histograms(trn_column, self.trn_groups)
        rows = np.arange(len(count_cell))
        ones = np.ones(len(count_cell), np.float32)
        count_block = scipy.sparse.csr_matrix((ones, (rows, count_cell)), shape=(len(count_cell), len(trn_counts)))
        slots_per_sequence = trn_holds.sum() / self.trn_groups.n_groups  # the norm of the sequences-per-category table
        blocks = (count_block, scipy.sparse.csr_matrix(holds.astype(np.float32)))
        for kind, block, counts, norm in zip(COHERENCE_KINDS, blocks, (trn_counts, trn_holds), (1.0, slots_per_sequence), strict=True):
            self.blocks.append(block)
            self.targets.append(counts * self.scale)
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
