"""The expected mode is deterministic, sees no sampling noise, and ranks like the official metric."""

import pytest
from fixtures import flat_table, sequential_table

from common.metric import evaluate


def test_identical_data_scores_one():
    trn = sequential_table(150, 1)
    scores = evaluate(trn, trn, None, "key", "expected")
    assert scores.overall == pytest.approx(1.0)
    assert evaluate(trn, trn, None, "key", "replicate", 1).overall < 1.0  # one random pair per group differs


def test_deterministic_and_seed_free_for_narrow_tables():
    trn, syn = sequential_table(150, 1), sequential_table(120, 2)
    a = evaluate(trn, syn, None, "key", "expected", seed=1)
    b = evaluate(trn, syn, None, "key", "expected", seed=2)
    assert a.as_dict(True) == b.as_dict(True)


def test_better_synthetic_scores_higher():
    trn = flat_table(600, 1)
    close, far = flat_table(500, 2), flat_table(500, 3)
    far["amount"] = far["amount"] * 3
    assert evaluate(trn, close, None, None, "expected").overall > evaluate(trn, far, None, None, "expected").overall


def test_at_most_300_columns_first_by_name():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    names = [f"c{i:03d}" for i in range(302)][::-1]
    trn = pd.DataFrame(rng.integers(0, 3, (150, 302)), columns=names)
    tables = evaluate(trn, trn, None, None, "expected").tables
    univariate = [cols[0] for cols in tables.loc[tables.kind == "univariate", "columns"]]
    assert univariate == sorted(names)[:300]
