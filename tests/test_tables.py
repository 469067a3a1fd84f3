"""Histograms of many tables in one pass, and one-row updates."""

import numpy as np
import pandas as pd

from common.tables import TableSet, table_accuracies


def random_codes(n_rows, n_codes, seed):
    rng = np.random.default_rng(seed)
    return np.asfortranarray(np.stack([rng.integers(0, k, n_rows) for k in n_codes], axis=1).astype(np.int16))


def test_histogram_equals_crosstab():
    n_codes = np.array([3, 5, 4])
    codes = random_codes(500, n_codes, 0)
    tables = TableSet.build([(0,), (0, 1), (0, 1, 2)], n_codes)
    hist = tables.histogram(codes)
    pair = pd.crosstab(codes[:, 0], codes[:, 1]).reindex(index=range(3), columns=range(5), fill_value=0)
    np.testing.assert_array_equal(hist[tables.offsets[1] : tables.offsets[2]], pair.to_numpy().ravel())
    assert hist[tables.offsets[2] :].sum() == 500


def test_add_row_matches_recomputing():
    n_codes = np.array([4, 6, 3, 5])
    codes = random_codes(300, n_codes, 1)
    tables = TableSet.build([(0, 1), (1, 2, 3), (3,), (0, 2, 3)], n_codes)
    weights = np.random.default_rng(2).random(300)
    hist = tables.histogram(codes, weights)
    tables.add_row(hist, codes[7], -weights[7])
    tables.add_row(hist, codes[0], 2.5)
    weights[7], weights[0] = 0.0, weights[0] + 2.5
    np.testing.assert_allclose(hist, tables.histogram(codes, weights))


def test_accuracy_of_identical_and_disjoint_tables():
    offsets = np.array([0, 2, 4])
    acc, _ = table_accuracies(offsets, np.array([1.0, 3.0, 5.0, 0.0]), np.array([2.0, 6.0, 0.0, 7.0]))
    np.testing.assert_allclose(acc, [1.0, 0.0])
