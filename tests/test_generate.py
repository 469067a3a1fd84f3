"""Generation helpers around the SDK: missing indicators, grouped pools, training dtypes, encodings, failed jobs."""

import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from common.generate import (
    ModelSettings,
    _wait,
    add_missing_indicators,
    apply_missing_indicators,
    encoding_types,
    missing_indicator_columns,
    model_column_order,
    sort_groups,
)
from common.io import DataError, conform_to_training


def test_missing_indicators_round_trip():
    df = pd.DataFrame({"key": [1, 1, 2], "x": [1.0, np.nan, 3.0], "y": [1, 2, 3], "c": ["a", None, "b"]})
    columns = missing_indicator_columns(df, "key")
    assert columns == ["x"]  # numeric with missing values only; not the key, not categorical
    with_flags = add_missing_indicators(df, columns)
    assert list(with_flags["x__is_missing"]) == ["no", "yes", "no"]
    # a generated row that says "missing" loses its value; the indicator columns go
    generated = with_flags.assign(x=[5.0, 6.0, 7.0], x__is_missing=["yes", "no", "no"])
    back = apply_missing_indicators(generated, columns)
    assert list(back.columns) == list(df.columns)
    assert np.isnan(back["x"][0]) and back["x"][1] == 6.0


def test_sort_groups_keeps_order_inside_groups_and_numbers_them():
    df = pd.DataFrame({"g": ["u", "v", "u", "w", "v"], "i": [0, 0, 1, 0, 1]})
    out = sort_groups(df, "g", first_id=100)
    assert list(out["g"]) == [100, 100, 101, 101, 102]
    assert list(out["i"]) == [0, 1, 0, 1, 0]


def test_conform_to_training_restores_dtypes():
    training = pd.DataFrame({"n": [1, 2], "f": [0.5, 1.5], "b": [True, False], "s": ["a", "b"], "k": ["g1", "g2"]})
    generated = pd.DataFrame({"s": pd.array(["x", None], dtype="string"), "n": pd.array([1.6, 2.2], dtype="Float64"),
                              "b": ["False", "True"], "f": pd.array([1, 2], dtype="Int64"), "k": [7, 8], "extra": [0, 0]})
    out = conform_to_training(generated, training, skip=("k",))
    assert list(out.columns) == list(training.columns)
    assert list(out["n"]) == [2, 2] and out["n"].dtype == training["n"].dtype
    assert out["f"].dtype == np.float64 and out["b"].dtype == bool and list(out["b"]) == [False, True]
    assert list(out["k"]) == [7, 8]


def test_model_settings_map_to_the_sdk_configuration():
    config = ModelSettings("MOSTLY_AI/Small", max_epochs=2, max_training_minutes=0.5).sdk_config()
    assert config["max_training_time"] == 0.5 and config["max_epochs"] == 2 and "batch_size" not in config
    assert config["value_protection"] is False and config["enable_model_report"] is False


def test_encodings_follow_the_training_types_not_the_sdk_guess():
    df = pd.DataFrame({"g": [1, 1], "month": ["may", "jun"], "n": [1.0, 2.0], "b": [True, False],
                       "t": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    assert encoding_types(df, "g") == {"g": "AUTO", "month": "TABULAR_CATEGORICAL", "n": "TABULAR_NUMERIC_AUTO",
                                       "b": "TABULAR_CATEGORICAL", "t": "TABULAR_DATETIME"}


def test_numbers_with_few_distinct_values_can_be_learnt_as_their_values():
    df = pd.DataFrame({"g": [1, 1, 2], "few": [1.0, 2.0, 2.0], "many": [1.5, 2.5, 3.5], "m": ["a", "b", "a"]})
    assert encoding_types(df, "g", discrete_max_values=2) == {
        "g": "AUTO", "few": "TABULAR_NUMERIC_DISCRETE", "many": "TABULAR_NUMERIC_AUTO", "m": "TABULAR_CATEGORICAL"}
    assert encoding_types(df, "g", discrete_max_values=0)["few"] == "TABULAR_NUMERIC_AUTO"  # the SDK decides


def test_the_model_learns_coarse_columns_first():
    df = pd.DataFrame({"fine": [1.5, 2.5, 3.5, np.nan], "g": [9, 9, 8, 8], "two": ["a", "b", "a", "b"],
                       "one": [0, 0, 0, 0], "also_two": [1, 2, 1, 1]})
    assert model_column_order(df, None, "cardinality") == ["one", "g", "two", "also_two", "fine"]  # ties as given
    assert model_column_order(df, "g", "cardinality") == ["g", "one", "two", "also_two", "fine"]  # the key first
    assert model_column_order(df, "g", "training") == list(df.columns)


def test_a_failed_job_is_one_line_with_the_sdk_reason(tmp_path):
    output = tmp_path / "generator-0.log"
    output.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                      "pandas._libs.tslibs.np_datetime.OutOfBoundsDatetime: Out of bounds nanosecond timestamp: 1-06-01\n")
    failed = SimpleNamespace(status="FAILED", steps=[])
    with pytest.raises(DataError, match=r"model: the SDK job ended failed: .*OutOfBoundsDatetime: Out of bounds"):
        _wait(lambda: failed, "no-such-job", "model", output, logging.getLogger("test"))


def test_a_job_whose_process_is_gone_is_noticed(tmp_path):
    running = SimpleNamespace(status="IN_PROGRESS", steps=[])
    with pytest.raises(DataError, match="process ended without a result"):
        _wait(lambda: running, "no-such-job-7f3a", "pool 1/1", tmp_path / "pool-0.log", logging.getLogger("test"), grace=0.2)
