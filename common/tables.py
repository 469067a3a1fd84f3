"""Contingency tables over integer bin codes, as one flat histogram, with numba kernels.

A `TableSet` is a list of tables of 1, 2 or 3 columns of a code matrix (rows x columns, int16, column-major).
Table `t` owns the cells `offsets[t] : offsets[t+1]` of one flat float64 histogram; a row falls into the cell
`offsets[t] + sum_j codes[row, cols[t, j]] * strides[t, j]`. Building all histograms is one parallel numba pass
over the tables; changing one row touches one cell per table (`add_row`), a few microseconds for thousands of
tables.

`table_accuracies` turns two histograms into qa's per-table accuracy, `1 - L1 / 2` between the normalised
tables, and qa's "max" accuracy (the expected accuracy of two samples of the original distribution).
`qa_tables` lists the tables qa scores: every column, every pair, every triple (or a sample of 10,000, in qa's
enumeration order) and, for sequences, each column against itself one row later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

MAX_TRIVARIATES = 10_000  # qa samples this many triples when there are more


@dataclass(frozen=True)
class TableSet:
    """Tables over the columns of a code matrix. `cols`: (T, 3) int32, -1 where a table has fewer columns."""

    cols: np.ndarray  # int32 (T, 3)
    strides: np.ndarray  # int64 (T, 3), 0 where unused
    offsets: np.ndarray  # int64 (T + 1,)

    @staticmethod
    def build(columns: list[tuple[int, ...]], n_codes: np.ndarray) -> "TableSet":
        """Tables for the given column tuples; `n_codes[c]` is the number of codes of column `c`."""
        n_tables = len(columns)
        cols = np.full((n_tables, 3), -1, dtype=np.int32)
        strides = np.zeros((n_tables, 3), dtype=np.int64)
        sizes = np.ones(n_tables, dtype=np.int64)
        for t, table in enumerate(columns):
            stride = 1
            for j in range(len(table) - 1, -1, -1):
                cols[t, j] = table[j]
                strides[t, j] = stride
                stride *= int(n_codes[table[j]])
            sizes[t] = stride
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return TableSet(cols, strides, offsets)

    @property
    def n_tables(self) -> int:
        return len(self.cols)

    @property
    def n_cells(self) -> int:
        return int(self.offsets[-1])

    def histogram(self, codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """All tables' (weighted) counts of the rows of `codes` (n_rows x n_columns, int8/int16)."""
        if weights is None:
            weights = np.ones(len(codes), dtype=np.float64)
        out = np.zeros(self.n_cells, dtype=np.float64)
        _accumulate(np.asfortranarray(codes), np.asarray(weights, dtype=np.float64), self.cols, self.strides, self.offsets, out)
        return out

    def add_row(self, hist: np.ndarray, codes_row: np.ndarray, weight: float) -> None:
        """Add one row (its codes, `weight` may be negative to remove it) to `hist` in place."""
        _add_row(hist, codes_row.reshape(1, -1), weight, self.cols, self.strides, self.offsets)


@numba.njit(parallel=True, cache=True)
def _accumulate(codes, weights, cols, strides, offsets, out):
    for t in numba.prange(cols.shape[0]):
        c0, c1, c2 = cols[t, 0], cols[t, 1], cols[t, 2]
        s0, s1, s2 = strides[t, 0], strides[t, 1], strides[t, 2]
        base = offsets[t]
        for r in range(codes.shape[0]):
            cell = base + codes[r, c0] * s0
            if c1 >= 0:
                cell += codes[r, c1] * s1
            if c2 >= 0:
                cell += codes[r, c2] * s2
            out[cell] += weights[r]


@numba.njit(inline="always", cache=True)
def cell_in_table(codes, row, t, cols, strides):
    """Cell of `codes[row]` within table `t` (add `offsets[t]` for its place among all tables' cells)."""
    cell = 0
    for j in range(3):
        c = cols[t, j]
        if c >= 0:
            cell += codes[row, c] * strides[t, j]
    return cell


@numba.njit(cache=True)
def _add_row(hist, codes, weight, cols, strides, offsets):
    for t in range(cols.shape[0]):
        hist[offsets[t] + cell_in_table(codes, 0, t, cols, strides)] += weight


def table_accuracies(
    offsets: np.ndarray, ori: np.ndarray, syn: np.ndarray, round_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-table accuracy `1 - L1/2` of the normalised histograms, and qa's expected ("max") accuracy.

    `ori` and `syn` are flat histograms split into tables by `offsets`. As in qa, each table is normalised by its
    own total, and the "max" is the expected accuracy of two samples of those sizes drawn from the original
    distribution (normal approximation of each cell's |difference|). qa rounds each table's figures to 5 decimals:
    pass `round_to=5` to match it.
    """
    starts, sizes = offsets[:-1], np.diff(offsets)
    n_ori, n_syn = np.add.reduceat(ori, starts), np.add.reduceat(syn, starts)
    p_ori, p_syn = ori / np.repeat(n_ori, sizes), syn / np.repeat(n_syn, sizes)
    l1 = np.add.reduceat(np.abs(p_ori - p_syn), starts)
    variance = p_ori * (1 - p_ori) * np.repeat(1 / n_ori + 1 / n_syn, sizes)
    expected_l1 = np.add.reduceat(np.sqrt(variance * 2 / np.pi), starts)
    accuracy, accuracy_max = 1 - l1 / 2, 1 - expected_l1 / 2
    if round_to is not None:
        accuracy, accuracy_max = accuracy.round(round_to), accuracy_max.round(round_to)
    return accuracy, accuracy_max


def n_triples(k: int) -> int:
    return k * (k - 1) * (k - 2) // 6


def qa_tables(tgt_names: list[str], n_next: int, chosen_triples: np.ndarray | None):
    """Column tuples and kinds of qa's tables; triples in qa's enumeration order, then `chosen_triples` of them."""
    k = len(tgt_names)
    uni = [(i,) for i in range(k)]
    bi = [(i, j) for i in range(k) for j in range(i + 1, k)]
    tri = qa_ordered_triples(tgt_names)
    if chosen_triples is not None:
        tri = tri[chosen_triples]
    tri = [tuple(t) for t in tri.tolist()]
    # next-row pairs: each data column (after the sequence length) with its own next-row column
    nxt = [(k - n_next + j, k + j) for j in range(n_next)]
    kinds = ["univariate"] * len(uni) + ["bivariate"] * len(bi) + ["trivariate"] * len(tri) + ["next_row"] * len(nxt)
    return uni + bi + tri + nxt, kinds


def qa_ordered_triples(tgt_names: list[str]) -> np.ndarray:
    """All triples (positions) in qa's order: a cross join in column order, kept where names are increasing."""
    k = len(tgt_names)
    by_name = np.argsort(np.array([f"tgt::{n}" for n in tgt_names], dtype=object), kind="stable")
    i, j = np.triu_indices(k, 1)  # rank pairs a < b, then every c > b
    repeats = k - 1 - j
    a, b = np.repeat(i, repeats), np.repeat(j, repeats)
    c = np.arange(len(a)) - np.repeat(np.cumsum(repeats) - repeats, repeats) + b + 1
    triples = np.stack([by_name[a], by_name[b], by_name[c]], axis=1).astype(np.int32)
    return triples[np.lexsort((triples[:, 2], triples[:, 1], triples[:, 0]))]
