"""The privacy guard: every training copy is found (with or without a holdout, under fresh identifiers) and
swapped out; a selection that hugs the training rows is repaired, or stops the run when the pool cannot help."""

import logging
import time

import numpy as np
import pandas as pd
import pytest
from fixtures import flat_table, sequential_table

from common.io import DataError
from common.privacy import (
    POLISH_MIN_SECONDS,
    REPAIR_ROUNDS,
    STALLED_REPAIRS,
    PrivacyGuard,
    _chance_nearer_training,
    identifier_columns,
    unit_hashes,
)
from common.targets import build_problem

LOG = logging.getLogger("test")


def test_group_hashes_depend_on_row_order():
    df = pd.DataFrame({"g": [1, 1, 2, 2], "x": [1, 2, 2, 1]})
    h = unit_hashes(df, "g")
    assert len(h) == 2 and h[0] != h[1]


def test_expected_closeness_is_the_chance_over_qa_draws():
    rng = np.random.default_rng(0)
    d_trn, d_ref = (np.sort(rng.integers(0, 40, size=(30, 64)) / 10, axis=1) for _ in range(2))  # ties included
    every = _chance_nearer_training(d_trn, d_ref, 1.0, 1.0)  # a draw of all rows: the plain comparison
    assert np.array_equal(every, (d_trn[:, 0] < d_ref[:, 0]) + 0.5 * (d_trn[:, 0] == d_ref[:, 0]))
    kept = rng.random((4_000, 2, 64)) < 0.3  # draws that keep each row with chance 0.3
    nearest = [np.where(kept[:, 0], d_trn[i], np.inf).min(axis=1) - np.where(kept[:, 1], d_ref[i], np.inf).min(axis=1)
               for i in range(30)]
    simulated = np.array([np.mean((n < 0) + 0.5 * (n == 0)) for n in nearest])
    assert np.abs(_chance_nearer_training(d_trn, d_ref, 0.3, 0.3) - simulated).max() < 0.03


def test_identifier_columns_are_text_or_integers_unique_per_row():
    df = flat_table(500, 0).assign(id=[f"u{i}" for i in range(500)], number=np.arange(500), measure=np.linspace(0, 1, 500) ** 2)
    assert identifier_columns(df, None) == ["id", "number"]  # the continuous measure describes rows


def test_copies_of_training_rows_are_swapped_for_pool_rows():
    training, holdout = flat_table(300, 1), flat_table(300, 2)
    pool = pd.concat([training.iloc[:100], flat_table(900, 3)], ignore_index=True)  # 100 exact copies first
    problem = build_problem(training, pool, n_target=200)
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=1.0, seed=0)
    units = guard.enforce(problem, pool, np.arange(200), LOG)
    assert len(units) == 200 and len(np.unique(units)) == 200
    assert (units < 100).sum() == guard.report["identical_allowed"] == 0
    assert guard.report["identical_training"] == 0 and guard.report["copies_swapped"] == 100
    assert guard.report["reference"] == "holdout"


def test_without_a_holdout_copies_of_every_training_row_are_found():
    training = flat_table(400, 1)
    pool = pd.concat([training, flat_table(2_000, 3)], ignore_index=True)  # all training rows, then fresh ones
    problem = build_problem(training, pool, n_target=400)
    guard = PrivacyGuard(training, None, None, max_dcr_share=1.0, seed=0)
    units = guard.enforce(problem, pool, np.arange(400), LOG)  # a selection of nothing but copies
    assert (units < 400).sum() <= guard.report["identical_allowed"] <= 4
    assert guard.report["reference"].startswith("training half")


def test_without_a_holdout_no_dcr_share_is_claimed():
    """A half of training, which the model saw as much as the other half, reads about 0.5 whatever the model
    memorised: without a holdout the guard neither reports nor repairs a DCR share, and says why."""
    training, _, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, None, None, max_dcr_share=0.52, seed=0)
    units = guard.enforce(problem, pool, selection, LOG)
    assert np.array_equal(units, np.sort(selection)) and not guard.report.get("dcr_repairs")
    assert "dcr_share" not in guard.report and guard.report["dcr_note"].startswith("needs a holdout")


def test_copies_under_fresh_identifiers_are_copies():
    training = flat_table(400, 1).assign(id=[f"t{i}" for i in range(400)])
    fresh = flat_table(2_000, 3).assign(id=[f"p{i}" for i in range(2_000)])
    copies = training.assign(id=[f"copy{i}" for i in range(400)])
    pool = pd.concat([copies, fresh], ignore_index=True)
    problem = build_problem(training, pool, n_target=400)
    guard = PrivacyGuard(training, None, None, max_dcr_share=1.0, seed=0)
    units = guard.enforce(problem, pool, np.arange(400), LOG)
    assert guard.report["identifier_columns_left_out"] == ["id"]
    assert (units < 400).sum() <= 4


def near_copies(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return df.assign(amount=df["amount"] * (1 + rng.normal(scale=0.001, size=len(df))))


def hugging_selection():
    """Training and holdout tables of 600 rows, a pool of 5 near copies of each training row then 3,000 fresh rows, its
    selection problem, and a selection of 300 near copies and 300 fresh rows (DCR share about 0.75)."""
    training, holdout = flat_table(600, 1), flat_table(600, 2)
    pool = pd.concat([near_copies(training, 5), flat_table(3_000, 3)], ignore_index=True)
    problem = build_problem(training, pool, n_target=600)
    return training, holdout, pool, problem, np.concatenate([np.arange(300), 600 + np.arange(300)])


def test_a_selection_that_hugs_training_is_repaired_from_the_pool():
    training, holdout, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0)
    units = guard.enforce(problem, pool, selection, LOG)
    report = guard.report
    assert report["dcr_repairs"] and report["dcr_repairs"][0]["dcr_share"] > 0.6
    assert report["dcr_share_expected"] <= 0.52 and report["dcr_share"] < 0.55
    assert len(units) == 600 and (units < 600).sum() < 150


def test_after_repairs_a_polish_among_units_nearer_the_reference_wins_back_accuracy():
    from common.select import SelectionSettings, refine_among
    from flat.run_flat import CONFIG

    training, holdout, pool, problem, selection = hugging_selection()
    repaired = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0).enforce(problem, pool, selection, LOG)
    swapped_in, offered, ranks = [], [], []

    def polish(units, candidates, rank):
        settings = SelectionSettings.from_config(CONFIG)
        polished = refine_among(problem, units, candidates, settings, float("inf"), np.random.default_rng(0), rank)
        swapped_in.append(np.setdiff1d(polished, units))
        offered.append(candidates)
        ranks.append(np.sort(rank[units]) - np.sort(rank[polished]))
        return polished

    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0, polish_rows=2_000)
    polished = guard.enforce(problem, pool, selection, LOG, polish)
    report = guard.report
    assert [r["by"] for r in report["dcr_repairs"]][-1] == "polish" and report["dcr_share_expected"] <= 0.52
    assert all(np.isin(units, candidates).all() for units, candidates in zip(swapped_in, offered, strict=True))
    assert not np.isin(offered[0], np.arange(600)).any()  # no near copy of a training row is a candidate
    assert all((drop >= -1e-12).all() for drop in ranks)  # no swap brought in a unit nearer training than the one it took out
    accuracy = [problem.accuracy(problem.histogram(units))["overall"] for units in (repaired, polished)]
    assert accuracy[1] > accuracy[0]


def test_a_polish_that_swaps_nothing_leaves_the_selection_that_passed_without_another_reading():
    training, holdout, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0, polish_rows=2_000)
    guard.enforce(problem, pool, selection, LOG, lambda units, candidates, rank: units)  # a polish out of time
    repairs = guard.report["dcr_repairs"]
    assert repairs[-1]["by"] == "polish" and repairs[-1]["swapped"] == 0
    assert guard.n_measured == len(repairs)  # every reading was followed by a repair or the polish: none after it


def test_no_polish_starts_without_the_time_to_score_its_candidates_and_swap(caplog):
    training, holdout, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0, polish_rows=2_000)
    polished = []
    with caplog.at_level(logging.INFO):
        guard.enforce(problem, pool, selection, LOG, lambda units, candidates, rank: polished.append(units) or units,
                      until=time.monotonic() + POLISH_MIN_SECONDS)
    assert not polished and guard.far is None and guard.report["dcr_repairs"][-1]["by"] == "nearest"
    assert "no polish: it needs about" in caplog.text


def test_the_time_kept_for_the_dcr_check_follows_the_pace_of_the_machine():
    training, holdout, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0)
    reserve = guard.reserve_seconds(problem, pool, selection)
    assert reserve > 0 and guard.seconds_per_row > 0
    assert not np.isnan(guard.closeness[np.sort(selection), 0]).any()  # the rows it scored are kept for the first reading
    slower = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0)
    slower.seconds_per_row = 10 * guard.seconds_per_row  # a machine ten times slower, its pace measured already
    slower._expected_shares(problem, pool, selection[:10])  # (the judge exists)
    assert slower.reserve_seconds(problem, pool, selection) == pytest.approx(10 * reserve)
    without_holdout = PrivacyGuard(training, None, None, max_dcr_share=0.52, seed=0)
    assert without_holdout.reserve_seconds(problem, pool, selection) == 0


def test_readings_of_one_selection_agree_and_score_each_row_once():
    training, holdout, pool, problem, selection = hugging_selection()
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0)
    first = guard._measure(problem, pool, selection, len(selection))
    scored = np.flatnonzero(~np.isnan(guard.closeness[:, 0]))
    second = guard._measure(problem, pool, selection, len(selection))
    assert np.array_equal(scored, np.sort(selection))  # every selected row, and nothing else
    assert np.array_equal(np.flatnonzero(~np.isnan(guard.closeness[:, 0])), scored)  # the second reading scored nothing
    assert (first["expected"], first["risk"]) == (second["expected"], second["risk"])


def test_a_pool_of_near_copies_stops_the_run():
    training, holdout = sequential_table(150, 1, key_prefix="t"), sequential_table(150, 2, key_prefix="h")
    noisy = pd.concat([training.assign(value=training["value"] + shift, key=f"p{shift}" + training["key"])
                       for shift in (0.001, 0.002)], ignore_index=True)  # near copies of training only
    problem = build_problem(training, noisy, "key", n_target=150)
    guard = PrivacyGuard(training, holdout, "key", max_dcr_share=0.52, seed=0)
    with pytest.raises(DataError, match="DCR share"):
        guard.enforce(problem, noisy, np.arange(problem.n_target), LOG)
    assert guard.report["dcr_share"] > 0.7


def test_repairs_that_make_no_headway_stop_the_run_early():
    """A pool of near copies of training rows, of which qa's sample (100 rows of 2,000) holds few: each unit sits
    only a little nearer training, and repairs swap near copies for near copies that look farther by luck alone."""
    training, holdout = flat_table(2_000, 1), flat_table(2_000, 2)
    pool = pd.concat([near_copies(training, seed) for seed in range(4)], ignore_index=True)
    problem = build_problem(training, pool, n_target=1_000)
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0, n_sample=100)
    with pytest.raises(DataError, match="DCR share"):
        guard.enforce(problem, pool, np.arange(problem.n_target), LOG)
    assert len(guard.repairs) == STALLED_REPAIRS < REPAIR_ROUNDS  # without the stall rule: 10 rounds, 4x the time


def test_figures_that_cannot_be_computed_say_why():
    training, holdout = flat_table(60, 1), flat_table(30, 2)
    problem = build_problem(training, flat_table(200, 3), n_target=60)
    guard = PrivacyGuard(training, holdout, None, max_dcr_share=0.52, seed=0)
    guard.enforce(problem, flat_table(200, 3), np.arange(60), LOG)
    assert "dcr_share" not in guard.report and "too few rows" in guard.report["dcr_note"]
