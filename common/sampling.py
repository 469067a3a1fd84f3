"""Which rows mostlyai-qa's accuracy looks at.

For sequential data qa keeps one random pair of consecutive rows per group (`_sampling.sample_two_consecutive_rows`):
the first row, at index `floor((len-1) * u)`, is uniform over rows `0 .. len-2` (row 0 for groups of one row), the
second row is the one after it. Univariate, bivariate and trivariate tables use the first row (plus the group's
sequence length); the "next-row" coherence tables pair it with the second one. Flat data: every row, no second.

Two ways to pick those rows, both returned as a `Frame`:
- `QaDraws(seed)` replays qa.report's draws from numpy's global random state after `qa.set_random_state(seed)`,
  in qa's order (training, holdout, synthetic frames; coherence and embedding shuffles; the trivariate sample),
  so that the numbers equal qa's own;
- `expected_frame` takes every candidate pair with its probability as weight, the expectation over qa's draws.

Text-like columns (more than 5 % of the rows hold a value seen once) are replaced by one random token of each
value (`TextTokens`, qa's `sample_text_tokens`), drawn from Python's random state in qa's row order: frames and
coherence rows therefore come in that order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from common.binning import ColumnData

MAX_SEQUENCE_LENGTH_COHERENCE = 100  # qa keeps at most this many random rows per sequence for coherence
MAX_SEQUENCE_LENGTH_EMBEDDINGS = 100
SEQUENCE_LENGTH = "Sequence Length"  # the column qa adds to sequential data


@dataclass(frozen=True)
class Groups:
    """A table's sequences in qa's (sorted key) order: group `g` is rows `order[start[g] : start[g] + length[g]]`."""

    order: np.ndarray  # int64, row indices grouped, original row order within a group
    start: np.ndarray  # int64
    length: np.ndarray  # int64
    row_group: np.ndarray  # int64, the group of each row

    @property
    def n_groups(self) -> int:
        return len(self.length)


def group_rows(keys: pd.Series | np.ndarray | None, n_rows: int) -> Groups:
    """Groups of a table by its context key (sorted); without a key every row is a group of its own."""
    if keys is None:
        rows = np.arange(n_rows, dtype=np.int64)
        return Groups(rows, rows, np.ones(n_rows, dtype=np.int64), rows)
    row_group = pd.factorize(pd.Series(keys), sort=True)[0].astype(np.int64)
    length = np.bincount(row_group)
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    return Groups(_rows_by_group(row_group, start), start, length, row_group)


@numba.njit(cache=True)
def _rows_by_group(row_group, start):
    """Counting sort: the rows grouped, in their original order within a group."""
    order = np.empty(len(row_group), dtype=np.int64)
    fill = start.copy()
    for row in range(len(row_group)):
        g = row_group[row]
        order[fill[g]] = row
        fill[g] += 1
    return order


@dataclass(frozen=True)
class Frame:
    """qa's accuracy rows: `first` row, `second` row after it (-1: none), its group, and weight (None: 1 each)."""

    first: np.ndarray  # int64
    second: np.ndarray  # int64
    group: np.ndarray  # int64
    weight: np.ndarray | None


def _frame_at(groups: Groups, index_in_group: np.ndarray, group: np.ndarray, weight) -> Frame:
    first = groups.order[groups.start[group] + index_in_group]
    has_second = index_in_group + 1 < groups.length[group]
    second = np.where(has_second, groups.order[groups.start[group] + np.minimum(index_in_group + 1, groups.length[group] - 1)], -1)
    return Frame(first, second, group, weight)


def expected_frame(groups: Groups) -> Frame:
    """All candidate pairs: rows 0..len-2 of each group (row 0 alone for a single row), weight 1 / (len - 1)."""
    n_candidates = np.maximum(groups.length - 1, 1)
    group = np.repeat(np.arange(groups.n_groups), n_candidates)
    index_in_group = np.arange(len(group)) - np.repeat(np.cumsum(n_candidates) - n_candidates, n_candidates)
    weight = None if (n_candidates == 1).all() else (1.0 / n_candidates)[group]
    return _frame_at(groups, index_in_group, group, weight)


class QaDraws:
    """Replays qa.report's draws from numpy's global random state, after `qa.set_random_state(seed)`.

    Call the methods in qa's order: `frame` for training, holdout (if any), synthetic; then, for sequential data,
    `coherence_rows` for original (training + holdout) and synthetic; then `skip_embedding_draws`; then
    `trivariate_order`. Draws that only shuffle rows are made (to advance the state) and discarded.
    """

    def __init__(self, seed: int):
        self.random = np.random.RandomState(seed)

    def frame(self, groups: Groups) -> Frame:
        """`prepare_data_for_accuracy`: shuffle the groups, then one random pair of consecutive rows per group.

        The frame lists the groups in qa's shuffled order (groups by first appearance, permuted); the draw `u`
        of each group is taken in sorted key order, as qa's `groupby` does.
        """
        shuffle = self.random.permutation(groups.n_groups)
        u = self.random.random_sample(groups.n_groups)
        index_in_group = ((groups.length - 1) * u).astype(np.int64)
        by_appearance = np.argsort(groups.order[groups.start], kind="stable")
        group = by_appearance[shuffle]
        return _frame_at(groups, index_in_group[group], group, None)

    def coherence_rows(self, groups: Groups) -> np.ndarray:
        """`prepare_data_for_coherence`: the rows kept (at most 100 random rows per sequence), in qa's order."""
        self.random.permutation(groups.n_groups)
        shuffled = self.random.permutation(len(groups.row_group))
        return _first_per_group(shuffled, groups.row_group, MAX_SEQUENCE_LENGTH_COHERENCE)

    def skip_embedding_draws(self, tables: list[Groups], sequential: bool, q95_length: float) -> None:
        """`prepare_data_for_embeddings` for synthetic, training, holdout (in that order): draws only."""
        sizes = []
        for groups in tables:
            if sequential:
                for length in groups.length:  # groupby(key).sample(frac=1), groups in key order
                    self.random.permutation(length)
                cap = np.ceil(min(q95_length, MAX_SEQUENCE_LENGTH_EMBEDDINGS))
                sizes.append(int(np.minimum(groups.length, cap).sum()))
            else:
                sizes.append(len(groups.row_group))
        for size in sizes:  # .sample(n=min(sizes)) draws a full permutation
            self.random.permutation(size)

    def trivariate_order(self, n_triples: int) -> np.ndarray:
        """`calculate_trivariate_columns`: the shuffle of all column triples (qa keeps the first 10,000)."""
        return self.random.permutation(n_triples)


def _first_per_group(rows_in_order: np.ndarray, row_group: np.ndarray, cap: int) -> np.ndarray:
    """Rows whose rank within their group, in the given order, is below `cap`; in the given order."""
    if np.bincount(row_group).max(initial=0) <= cap:
        return rows_in_order
    group = row_group[rows_in_order]
    by_group = np.argsort(group, kind="stable")
    sorted_group = group[by_group]
    first_of_group = np.searchsorted(sorted_group, sorted_group, side="left")
    rank = np.empty(len(group), dtype=np.int64)
    rank[by_group] = np.arange(len(group)) - first_of_group
    return rows_in_order[rank < cap]


def expected_coherence_rows(groups: Groups) -> np.ndarray:
    """Deterministic stand-in for `QaDraws.coherence_rows`: the first 100 rows of each sequence."""
    return _first_per_group(np.arange(len(groups.row_group)), groups.row_group, MAX_SEQUENCE_LENGTH_COHERENCE)


def is_text_like(column: ColumnData) -> bool:
    """qa's text heuristic: a categorical column where more than 5 % of the (non-missing) rows hold a unique value."""
    if column.kind != "categorical":
        return False
    ids = column.values[~column.missing]
    return len(ids) > 0 and bool((np.bincount(ids)[ids] == 1).mean() > 0.05)


class TextTokens:
    """qa's `sample_text_tokens`: each value of a text-like column becomes one random token of it (GPT-2 tokens).

    Draws come from `random.Random(seed)`, as Python's global random state after `qa.set_random_state(seed)`;
    call it on the columns in qa's order. qa's own tokenizer (shipped with mostlyai-qa) is loaded on first use.
    """

    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self._tokenizer = None

    def __call__(self, column: ColumnData) -> ColumnData:
        if not is_text_like(column):
            return column
        if self._tokenizer is None:
            from mostlyai.qa.assets import load_tokenizer

            self._tokenizer = load_tokenizer()
        tokens_of = [[t.replace("Ġ", "▁") for t in self._tokenizer.tokenize(str(text))] for text in column.categories]
        picked = [
            None if missing or column.categories[i] == "" else self.random.choice(tokens_of[i])
            for i, missing in zip(column.values.tolist(), column.missing.tolist())
        ]
        return ColumnData.of(pd.Series(picked, dtype=object), "categorical")


def prepared_frame(columns: dict[str, ColumnData], frame: Frame, groups: Groups, data_cols, sequential: bool, tokens=None) -> dict[str, ColumnData]:
    """qa's prepared accuracy frame: [sequence length], the first rows' values, [the next rows' values].

    `tokens` (a `TextTokens`) turns text-like columns into tokens, as qa does; None keeps the values.
    """
    prepared = {SEQUENCE_LENGTH: sequence_length_column(frame, groups)} if sequential else {}
    return prepared | prepared_columns(columns, frame, data_cols, sequential, tokens)


def sequence_length_column(frame: Frame, groups: Groups) -> ColumnData:
    """The prepared frame's sequence length: the length of each frame row's group."""
    lengths = groups.length[frame.group].astype(np.float64)
    return ColumnData("numeric", lengths, np.zeros(len(lengths), dtype=bool))


def prepared_columns(columns: dict[str, ColumnData], frame: Frame, data_cols, sequential: bool, tokens=None) -> dict[str, ColumnData]:
    """The prepared frame's columns from the data: the first rows' values, [then the next rows' values]."""
    tokens = tokens or (lambda column: column)
    prepared = {col: tokens(columns[col].take(frame.first)) for col in data_cols}
    if sequential:
        prepared |= {f"nxt::{col}": tokens(columns[col].take(frame.second)) for col in data_cols}
    return prepared
