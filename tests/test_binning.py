"""Our codes are qa's bins (`mostlyai.qa._accuracy.bin_data`), column by column."""

import numpy as np
import pandas as pd
import pytest
from fixtures import flat_table
from mostlyai.qa._accuracy import bin_data
from mostlyai.qa._sampling import harmonize_dtype

from common.binning import NA_BIN, OTHER_BIN, fit_bins


def awkward_columns(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = flat_table(n, seed)
    df["floors"] = rng.choice([0.29, 0.57, 0.58, 1.15, 2.3, 7.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], n)  # needs flooring
    df["few"] = rng.choice([3.5, 4.5, np.nan], n)
    df["empty"] = np.nan
    df["single_day"] = pd.Timestamp("2020-05-05")
    df["specials"] = rng.choice(["(other)", "_RARE_", "x", "y", ""], n)
    df["ints"] = rng.integers(-50, 1000, n)
    return df


@pytest.mark.parametrize("n_bins", [10, 30])
def test_codes_equal_qa_bins(n_bins):
    original, other = awkward_columns(500, 1), awkward_columns(400, 2)
    other.loc[:5, "ints"] = 10**6  # beyond the training range: clipped into the last bin
    ori, oth = original.apply(harmonize_dtype), other.apply(harmonize_dtype)
    qa_ori, qa_bins = bin_data(ori, n_bins)
    qa_oth, _ = bin_data(oth, qa_bins)
    for col in ori.columns:
        bins = fit_bins(ori[col], n_bins)
        assert bins.n_codes == len(qa_ori[col].cat.categories), col
        np.testing.assert_array_equal(bins.encode(ori[col]), qa_ori[col].cat.codes, err_msg=col)
        np.testing.assert_array_equal(bins.encode(oth[col]), qa_oth[col].cat.codes, err_msg=col)


def test_missing_and_unknown_values_get_their_codes():
    bins = fit_bins(pd.Series(["a"] * 6 + ["b"] * 6 + ["rare"]))
    codes = bins.encode(pd.Series(["a", "zzz", None]))
    assert [bins.breaks[c] for c in codes] == ["a", OTHER_BIN, NA_BIN]
    numeric = fit_bins(pd.Series([1.0, 2.0, 3.0]))
    assert numeric.encode(pd.Series([np.nan]))[0] == numeric.n_codes - 1


def test_weighted_fit_equals_repeated_rows():
    values = pd.Series(np.round(np.random.default_rng(3).normal(size=300), 2))
    repeats = np.random.default_rng(4).integers(1, 4, size=300)
    expanded = fit_bins(pd.Series(np.repeat(values.to_numpy(), repeats)))
    weighted = fit_bins(values, weights=repeats.astype(float))
    assert weighted.breaks == expanded.breaks
