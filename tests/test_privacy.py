"""The privacy guard: copies of training units are swapped out; a selection that hugs the training rows stops the run."""

import logging

import numpy as np
import pandas as pd
import pytest
from fixtures import flat_table, sequential_table

from common.io import DataError
from common.privacy import PrivacyGuard, nearest_distances, unit_hashes
from common.targets import build_problem

LOG = logging.getLogger("test")


def test_nearest_distances_mixes_numeric_and_categorical_parts():
    ref_num, ref_cat = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0], [1]], dtype=np.int32)
    d = nearest_distances(np.array([[0.1, 0.0], [1.0, 1.0], [0.0, 0.0]]), np.array([[0], [1], [1]], dtype=np.int32), ref_num, ref_cat)
    assert np.allclose(d, [[0.1, 2.9], [0.0, 3.0], [1.0, 2.0]])  # nearest and second nearest


def test_group_hashes_depend_on_row_order():
    df = pd.DataFrame({"g": [1, 1, 2, 2], "x": [1, 2, 2, 1]})
    h = unit_hashes(df, ["x"], "g")
    assert len(h) == 2 and h[0] != h[1]


def test_copies_of_training_rows_are_swapped_for_pool_rows():
    training, holdout = flat_table(300, 1), flat_table(300, 2)
    pool = pd.concat([training.iloc[:100], flat_table(900, 3)], ignore_index=True)  # 100 exact copies first
    problem = build_problem(training, pool, n_target=200)
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=1.0, seed=0)
    units = guard.enforce(problem, pool, np.arange(200), np.random.default_rng(0), LOG)
    assert len(units) == 200 and len(np.unique(units)) == 200
    assert (units < 100).sum() == guard.report["identical_allowed"] == 0
    assert guard.report["identical_training"] == 0 and guard.report["identical_reference"] == 0
    assert 0 < guard.report["nndr_ratio"] < 10


def test_a_selection_closer_to_training_than_the_holdout_stops_the_run():
    training, holdout = sequential_table(150, 1, key_prefix="t"), sequential_table(150, 2, key_prefix="h")
    noisy = training.assign(value=training["value"] + 0.01, key="p" + training["key"])  # near copies of training
    pool = pd.concat([noisy, sequential_table(150, 3, key_prefix="q")], ignore_index=True)
    problem = build_problem(training, pool, "key")
    guard = PrivacyGuard(training, holdout, "key", max_dcr_share=0.52, seed=0)
    with pytest.raises(DataError, match="DCR share"):
        guard.enforce(problem, pool, np.arange(problem.n_target), np.random.default_rng(0), LOG)  # the near copies
    assert guard.report["dcr_share"] > 0.9
