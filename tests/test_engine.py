"""The selection engine on small problems with known answers."""

import math
import time

import numpy as np
import pandas as pd
import pytest
from fixtures import flat_table, sequential_table

import common.refine
from common.ipf import expectation_rounding, ipf
from common.metric import evaluate
from common.refine import (
    SLICE_SECONDS,
    _swap_until,
    anneal,
    cell_cost,
    loss,
    objective_of,
    pool_units,
    refine,
    residual_of,
    trim,
    unit_delta,
)
from common.targets import build_problem

FOREVER = float("inf")


def noisy_pool(training: pd.DataFrame, n_noise: int, seed: int) -> pd.DataFrame:
    noise = flat_table(n_noise, seed)
    noise["amount"] = noise["amount"] * 4
    noise["color"] = "purple"
    return pd.concat([training, noise], ignore_index=True)


def test_selection_recovers_training_rows_from_noisy_pool():
    training = flat_table(400, 1).drop(columns=["city"])
    pool = noisy_pool(training, 400, 2)
    problem = build_problem(training, pool)
    units = trim(problem, np.arange(problem.n_units), 400, FOREVER)
    units = refine(problem, units, np.random.default_rng(0), FOREVER, max_attempts=20_000)
    assert (units < 400).mean() > 0.95  # the first 400 pool rows are the training rows
    assert problem.accuracy(problem.histogram(units))["overall"] > 0.99


def test_ipf_matches_univariate_targets():
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 900, p=[0.5, 0.3, 0.2]), "x": rng.integers(0, 3, 900)})
    pool = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 3000), "x": rng.integers(0, 3, 3000)})
    problem = build_problem(training, pool)
    weights = ipf(problem, n_pairs=1, passes=20, deadline=FOREVER)
    for t in np.flatnonzero(problem.table_kind == "univariate"):
        col = problem.tables.cols[t, 0]
        weighted = np.bincount(problem.codes[:, col], weights=weights, minlength=problem.tables.offsets[t + 1] - problem.tables.offsets[t])
        np.testing.assert_allclose(weighted, problem.target[problem.tables.offsets[t] : problem.tables.offsets[t + 1]], atol=1e-6)
    # the known answer: raking on the (c, x) table gives each pool row the target / pool count of its cell
    pair = np.flatnonzero(problem.table_kind == "bivariate")[0]
    cell = problem.codes[:, 0].astype(np.int64) * problem.tables.strides[pair, 0] + problem.codes[:, 1]
    target = problem.target[problem.tables.offsets[pair] : problem.tables.offsets[pair + 1]]
    np.testing.assert_allclose(weights, target[cell] / np.bincount(cell, minlength=len(target))[cell], rtol=1e-6)


def test_ipf_with_triples_matches_what_no_pair_shows():
    # c = a xor b: every univariate and bivariate table is uniform in training and pool alike; only the triple differs
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 600))
    training = pd.DataFrame({"a": a, "b": b, "c": a ^ b}).astype(str)
    pool = pd.DataFrame(rng.integers(0, 2, (4000, 3)), columns=["a", "b", "c"]).astype(str)
    problem = build_problem(training, pool)
    consistent = (pool["a"] != pool["b"]) == (pool["c"] == "1")
    share = {triples: ipf(problem, 3, 5, FOREVER, triples)[consistent].sum() / 600 for triples in (False, True)}
    assert share[False] == pytest.approx(0.5, abs=0.05) and share[True] > 0.99


def test_expectation_rounding_follows_weights():
    weights = np.r_[np.full(1000, 3.0), np.full(1000, 1.0)]
    chosen = expectation_rounding(weights, 800, np.random.default_rng(1))
    assert abs(len(chosen) - 800) <= 1 and len(np.unique(chosen)) == len(chosen)
    assert (chosen < 1000).mean() == pytest.approx(0.75, abs=0.05)


def test_trimming_does_not_worsen_accuracy():
    training = flat_table(300, 3)
    problem = build_problem(training, flat_table(1500, 4))
    start = np.random.default_rng(0).choice(problem.n_units, 375, replace=False)
    before = problem.accuracy(problem.histogram(start))["overall"]
    trimmed = trim(problem, start, 300, FOREVER)
    assert len(trimmed) == 300 and set(trimmed) <= set(start)
    assert problem.accuracy(problem.histogram(trimmed))["overall"] >= before


@pytest.mark.parametrize("metric_noise", [0.0, 0.5])
def test_refinement_without_annealing_is_monotone(metric_noise):
    problem = build_problem(flat_table(300, 5), flat_table(2000, 6), metric_noise=metric_noise)
    rng = np.random.default_rng(2)
    units = rng.choice(problem.n_units, 300, replace=False)
    losses = [loss(problem, residual_of(problem, units))]
    for _ in range(5):
        units = refine(problem, units, rng, FOREVER, chunk=200, max_attempts=200, min_accept_rate=0)
        losses.append(loss(problem, residual_of(problem, units)))
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0]


def test_a_ranked_refinement_never_brings_in_a_unit_ranked_above_the_one_it_takes_out():
    problem = build_problem(flat_table(300, 5), flat_table(2000, 6))
    rng = np.random.default_rng(2)
    start = rng.choice(problem.n_units, 300, replace=False)
    rank = rng.random(problem.n_units)
    units = refine(problem, start, rng, FOREVER, chunk=200, max_attempts=4_000, rank=rank)
    brought_in = np.setdiff1d(units, start)
    assert len(brought_in) > 20 and (np.sort(rank[units]) <= np.sort(rank[start]) + 1e-12).all()
    above_all = np.ones(problem.n_units)
    above_all[start] = 0.0  # every unit outside the selection ranks above every selected one: no swap is allowed
    np.testing.assert_array_equal(refine(problem, start, rng, FOREVER, chunk=200, max_attempts=2_000, rank=above_all), start)


def test_a_refinement_with_metric_noise_stops_by_itself():
    """Nearly every swap pays a little under a smooth cost: the refinement stops when the loss stops falling, so the
    same seed gives the same selection (the deadline is only a guard)."""
    problem = build_problem(flat_table(200, 5), flat_table(1000, 6), metric_noise=0.5)
    start = np.random.default_rng(1).choice(problem.n_units, 200, replace=False)
    first, second = (refine(problem, start, np.random.default_rng(2), time.monotonic() + 300, chunk=100) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert loss(problem, residual_of(problem, first)) < loss(problem, residual_of(problem, start))


def test_a_noisy_cell_costs_the_expected_distance():
    """With noise `s`, a residual `r` costs E|r + s Z| (closed form: s (z erf(z / sqrt 2) + sqrt(2 / pi) exp(-z^2 / 2)),
    z = r / s); without noise, |r|."""
    for r in (-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 12.0, 1e6):
        assert cell_cost(r, 0.0) == abs(r)
        for s in (0.5, 2.0, 9.0):
            z = r / s
            exact = s * (z * math.erf(z / math.sqrt(2)) + math.sqrt(2 / math.pi) * math.exp(-z * z / 2))
            assert cell_cost(r, s) == pytest.approx(exact, abs=1e-5 * s)
    assert cell_cost(0.0, 2.0) == pytest.approx(2.0 * math.sqrt(2 / math.pi), rel=1e-6)  # a perfect cell still costs the noise


@pytest.mark.parametrize("metric_noise", [0.0, 1.0])
def test_a_unit_delta_is_the_change_of_the_loss(metric_noise):
    training, pool = sequential_table(150, 1), sequential_table(600, 2, key_prefix="p")
    problem = build_problem(training, pool, context_key="key", metric_noise=metric_noise)
    assert (problem.cell_noise > 0).any() == (metric_noise > 0)
    units = np.random.default_rng(0).choice(problem.n_units, 150, replace=False)
    residual = residual_of(problem, units)
    for v in np.setdiff1d(np.arange(problem.n_units), units)[:20]:
        change = loss(problem, residual_of(problem, np.append(units, v))) - loss(problem, residual)
        assert unit_delta(v, 1.0, pool_units(problem), objective_of(problem), residual) == pytest.approx(change, abs=1e-12)


def test_annealing_leaves_the_local_optimum_of_single_swaps():
    problem = build_problem(flat_table(300, 5), flat_table(2000, 6))
    rng = np.random.default_rng(2)
    units = refine(problem, rng.choice(problem.n_units, 300, replace=False), rng, FOREVER, chunk=200)  # converged
    converged = loss(problem, residual_of(problem, units))
    annealed = anneal(problem, units, rng, FOREVER, sweeps=200, temperature=0.1, chunk=200)
    assert len(set(annealed)) == 300 and loss(problem, residual_of(problem, annealed)) < converged
    # a run that cannot improve hands back the selection it was given
    np.testing.assert_array_equal(anneal(problem, units, rng, 0.0, sweeps=200, temperature=0.1), units)


def test_the_annealing_ends_when_the_steps_after_the_selection_need_the_time():
    from common.select import SelectionSettings, select_units
    from flat.run_flat import CONFIG

    problem = build_problem(flat_table(300, 5), flat_table(2000, 6))
    settings = SelectionSettings.from_config(CONFIG | {"anneal_sweeps": 100.0})
    for until, annealed in ((lambda units: 0.0, False), (lambda units: math.inf, True)):
        steps = []
        select_units(problem, settings, time.monotonic() + 20, np.random.default_rng(0), lambda name, *_: steps.append(name), until)
        assert ("anneal" in steps) == annealed and steps[-2 if annealed else -1] == "refine"


def run_pipeline(problem, seed):
    rng = np.random.default_rng(seed)
    weights = ipf(problem, n_pairs=10, passes=2, deadline=FOREVER)
    units = expectation_rounding(weights, int(1.25 * problem.n_target), rng)
    units = trim(problem, units, problem.n_target, FOREVER)
    return refine(problem, units, rng, FOREVER, max_attempts=4_000)


def test_same_seed_same_selection():
    problem = build_problem(flat_table(300, 7), flat_table(2000, 8))
    first, second = run_pipeline(problem, 3), run_pipeline(problem, 3)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, run_pipeline(problem, 4))


def test_swaps_in_slices_are_the_swaps_of_one_kernel_call(monkeypatch):
    problem = build_problem(flat_table(300, 7), flat_table(2000, 8))
    start = np.random.default_rng(0).choice(problem.n_units, 300, replace=False)
    monkeypatch.setattr(common.refine, "SLICE_FIRST", 2_000)  # each chunk in one kernel call
    whole = refine(problem, start, np.random.default_rng(1), FOREVER, chunk=2_000, max_attempts=4_000, min_accept_rate=0)
    monkeypatch.setattr(common.refine, "SLICE_FIRST", 50)
    monkeypatch.setattr(common.refine, "SLICE_SECONDS", 0.0)  # each chunk in kernel calls of 50 attempts
    sliced = refine(problem, start, np.random.default_rng(1), FOREVER, chunk=2_000, max_attempts=4_000, min_accept_rate=0)
    np.testing.assert_array_equal(whole, sliced)


def test_a_chunk_of_swaps_stops_at_the_deadline_on_a_slow_machine(monkeypatch):
    monkeypatch.setattr(common.refine, "_swap_chunk", lambda units, selected, positions, *args: time.sleep(1e-3 * len(positions)) or 0)
    positions = np.zeros(100_000, dtype=np.int64)  # 100 s in one call
    clock = time.monotonic()
    attempts, _ = _swap_until(clock + 1.0, None, None, positions, positions, positions)
    assert attempts < len(positions) and time.monotonic() - clock < 1.0 + 2 * SLICE_SECONDS


def test_sequential_units_and_coherence():
    training = sequential_table(150, 1)
    pool = sequential_table(900, 2, key_prefix="p")
    problem = build_problem(training, pool, context_key="key")
    assert problem.n_units == 900 and problem.coherence.shape[0] == 900
    assert set(problem.coherence_kind) == {"categories_per_sequence", "sequences_per_category"}
    rng = np.random.default_rng(0)
    units = rng.choice(900, 150, replace=False)
    before = problem.accuracy(problem.histogram(units))
    # coherence first (frame tables off), then everything
    units = refine(problem, units, rng, FOREVER, max_attempts=3_000, table_beta=np.zeros_like(problem.table_beta))
    after_coherence = problem.accuracy(problem.histogram(units))
    assert after_coherence["coherence"] > before["coherence"]
    units = refine(problem, units, rng, FOREVER, max_attempts=6_000)
    after = problem.accuracy(problem.histogram(units))
    assert after["overall"] > before["overall"] and len(set(units)) == 150


def test_the_problem_scores_a_selection_as_the_metric_does():
    training = sequential_table(150, 1)
    pool = sequential_table(600, 2, key_prefix="p")
    problem = build_problem(training, pool, context_key="key")
    units = np.sort(np.random.default_rng(0).choice(problem.n_units, 150, replace=False))
    selection = pool.iloc[problem.pool_rows(units)].reset_index(drop=True)
    expected = evaluate(training, selection, None, "key", "expected").as_dict(with_max=False)
    assert problem.accuracy(problem.histogram(units)) == pytest.approx(expected, abs=1e-9)


def test_codes_the_training_data_never_takes_share_one_code():
    training = pd.DataFrame({"c": ["a", "b"] * 50, "x": np.arange(100.0)})
    pool = pd.DataFrame({"c": ["a", "b", "z", "y"] * 25, "x": np.arange(100.0)})
    problem = build_problem(training, pool)
    codes = problem.codes[:, 0]  # "c" comes first by name
    assert codes[0] != codes[1] and codes[2] == codes[3] and codes[2] not in (codes[0], codes[1])
    assert problem.tables.offsets[1] == 3  # a, b and the unseen
