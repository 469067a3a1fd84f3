"""The time budget: what each step gets, a pool that shrinks to what the budget can sample, a budget too small, what
stopped each model."""

import json
import time
from dataclasses import asdict, replace

import pytest
from fixtures import flat_table

from common.generate import JOB_OVERHEAD_SECONDS, GeneratorSettings, next_model_seconds, stop_reason, trained_models, training_seconds
from common.io import DataError
from common.pipeline import FINISH_MINUTES_WITHOUT_HOLDOUT, Budget, _fit_pool_to_budget, _recorded_pool_size
from common.report import models_line

SETTINGS = GeneratorSettings("MOSTLY_AI/Medium", "cardinality", 0, 100, 45, None, None, iterations=1, pool_size=500_000,
                             temperature=1.0, seed=0)


def test_the_budget_keeps_time_for_the_selection_and_the_finish():
    budget = Budget.of({"time_budget_min": 90, "finish_minutes": 2, "selection_minutes": 5, "holdout": "h.csv"}, start=0.0)
    assert (budget.generation, budget.selection, budget.end) == (90 * 60 - 7 * 60, 90 * 60 - 2 * 60, 90 * 60)
    small = Budget.of({"time_budget_min": 4, "finish_minutes": 2, "selection_minutes": 5, "holdout": "h.csv"}, start=0.0)
    assert small.end - small.selection == pytest.approx(0.25 * 240) and small.selection_seconds == pytest.approx(0.25 * 240)


def test_without_a_holdout_the_time_kept_for_the_privacy_check_goes_to_training():
    config = {"time_budget_min": 90, "finish_minutes": 15, "selection_minutes": 5}
    with_holdout, without = Budget.of(config | {"holdout": "h.csv"}, start=0.0), Budget.of(config, start=0.0)
    assert with_holdout.end - with_holdout.selection == 15 * 60
    assert without.end - without.selection == 60 * FINISH_MINUTES_WITHOUT_HOLDOUT < 15 * 60
    assert without.generation - with_holdout.generation == 15 * 60 - 60 * FINISH_MINUTES_WITHOUT_HOLDOUT


def test_a_short_budget_shrinks_the_pool_and_leaves_time_to_train():
    training = flat_table(15_000, 0, n_extra_numeric=15)
    budget = Budget.of({"time_budget_min": 4, "finish_minutes": 2, "selection_minutes": 5}, start=time.monotonic())
    settings = _fit_pool_to_budget(SETTINGS, training, None, 15_000, budget)
    assert 30_000 <= settings.pool_size < 500_000
    assert training_seconds(training, None, [settings.pool_size], budget.generation - budget.start) > 30
    roomy = Budget.of({"time_budget_min": 90, "finish_minutes": 2, "selection_minutes": 5}, start=time.monotonic())
    assert _fit_pool_to_budget(SETTINGS, training, None, 15_000, roomy).pool_size == 500_000


def test_a_budget_too_short_for_anything_is_refused():
    budget = Budget.of({"time_budget_min": 0.5, "finish_minutes": 2, "selection_minutes": 5}, start=time.monotonic())
    with pytest.raises(DataError, match="too short to train"):
        _fit_pool_to_budget(SETTINGS, flat_table(15_000, 0), None, 15_000, budget)


def test_a_resumed_run_keeps_its_pool_whatever_the_budget(tmp_path):
    smaller = replace(SETTINGS, pool_size=100_000)  # what an earlier, shorter run sampled
    (tmp_path / "run.json").write_text(json.dumps({"training": "abc", **asdict(smaller)}))
    assert _recorded_pool_size(tmp_path, SETTINGS) == 100_000
    assert _recorded_pool_size(tmp_path, replace(SETTINGS, seed=1)) is None  # other settings: the fingerprint refuses
    assert _recorded_pool_size(tmp_path / "new", SETTINGS) is None


def test_further_models_train_only_while_the_budget_gives_them_as_long_as_the_first_took():
    training, parts = flat_table(5_000, 0), [75_000] * 3  # three pool parts still to sample
    first = 15 * 60  # the first model stopped by itself after 15 minutes

    def share(seconds_left, models):
        return training_seconds(training, None, parts, seconds_left, 100_000.0, models)

    assert next_model_seconds(training, None, parts, 3 * 3600, 100_000.0, None) == share(3 * 3600, 1)  # the first: all
    assert next_model_seconds(training, None, parts, 3 * 3600, 100_000.0, first) == share(3 * 3600, 3)  # room for 3
    sampling = -share(0, 1) - JOB_OVERHEAD_SECONDS  # what the three parts take to sample
    two = sampling + 2 * (first + JOB_OVERHEAD_SECONDS) + 60  # enough for two more models of the first's length, not three
    assert next_model_seconds(training, None, parts, two, 100_000.0, first) == share(two, 2) >= first
    assert next_model_seconds(training, None, parts, 0.9 * first, 100_000.0, first) is None  # the parts come from earlier models


def test_the_models_of_a_run_directory_come_in_the_order_they_were_trained(tmp_path):
    for i in (0, 2, 10, 1):
        (tmp_path / f"generator-{i}.json").write_text(json.dumps({"generator_id": f"g{i}", "seed": i, "seconds": 60.0 + i}))
    assert [model["seed"] for model in trained_models(tmp_path)] == [0, 1, 2, 10]
    assert all("generator_id" not in model for model in trained_models(tmp_path))


def test_what_stopped_each_model_is_recorded_and_reported():
    assert stop_reason(1800.5, 30, 71.0, 100) == "time limit"  # not reproducible bit for bit
    assert stop_reason(1673.3, 30, 100.0, 100) == "max_epochs"  # more epochs may give a better model
    assert stop_reason(30.4, 45, 13.0, 100) == "early stopping"
    line = models_line([{"seed": 0, "seconds": 1673.3, "stopped_by": "max_epochs"},
                        {"seed": 1, "seconds": 900.0, "stopped_by": "early stopping"}])
    assert line == ("models: 2 (seeds 0, 1), trained 27.9, 15.0 min; seed 0 reached max_epochs before its validation loss "
                    "stopped falling (more epochs may help)")
    assert models_line([{"seed": 0, "seconds": 30.4, "stopped_by": "early stopping"}]).endswith(
        "each stopped when its validation loss stopped falling")
