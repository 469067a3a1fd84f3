"""Greedy trimming and swap refinement of a selection of units, on residuals, with numba kernels.

The state of a selection is its residual `r = h - target` over all cells (frame tables, then coherence cells).
Adding (`sign=+1`) or removing (`sign=-1`) unit `u` changes the loss `sum_c beta_c cost_c(r_c)` by exactly
`sum_c beta_c (cost_c(r_c + sign a_uc) - cost_c(r_c))` over the unit's cells (`unit_delta`; a sequence's frame rows
that fall into one cell are merged first), so only those cells are read and written. `cost_c` is `|r|`, or its
expectation under the noise the official metric adds to the cell (`cell_cost`, `Problem.cell_noise`). The kernels read each unit's
rows and coherence cells from a `PoolUnits`, and the tables and weights of the loss from an `Objective`.

- `trim`: from an oversized selection, remove the units whose removal helps most, in shrinking batches.
- `refine`: remove one selected unit, try a few pool candidates in its place (in parallel), keep the best swap if
  the loss goes down (or, with a temperature, sometimes if it goes up a little).
- `anneal`: from a converged selection, swaps at a temperature that falls to nearly zero, then `refine` again: it
  leaves the local optimum where no single swap pays.

All three take a `deadline` (`time.monotonic()` value) and return the best selection they have when it comes.
"""

from __future__ import annotations

import collections
import math
import time
from typing import NamedTuple

import numba
import numpy as np
import scipy.special

from common.progress import Progress
from common.tables import cell_in_table
from common.targets import Problem

SLICE_SECONDS = 0.5  # each kernel call of swap attempts lasts about this long: a deadline is missed by about as much at most
SLICE_FIRST = 50  # attempts of the first call, which also compiles the kernel when its cache is cold
NOISY_COST_STEPS = 256  # points of the `NOISY_COST` table per unit of z = |r| / s


def _expected_distances(z: np.ndarray) -> np.ndarray:
    """`E|z + Z|` for Z standard normal."""
    return z * scipy.special.erf(z / np.sqrt(2)) + np.sqrt(2 / np.pi) * np.exp(-0.5 * z**2)


NOISY_COST = _expected_distances(np.arange(8 * NOISY_COST_STEPS + 1) / NOISY_COST_STEPS)  # z in [0, 8]; beyond, |z|


class PoolUnits(NamedTuple):
    """What each pool unit adds to the residual, as the kernels read it."""

    codes: np.ndarray  # (M, K) int8: the frame rows of all units
    unit_ptr: np.ndarray  # (U + 1,) int64: unit u owns frame rows unit_ptr[u] : unit_ptr[u + 1]
    row_weight: np.ndarray  # (M,) float64
    coherence_ptr: np.ndarray  # (U + 1,) int64: unit u's coherence entries, CSR
    coherence_cell: np.ndarray  # int64: the coherence cell of each entry
    coherence_amount: np.ndarray  # float64: what the entry adds to its cell
    n_frame_cells: int  # coherence cell e is residual[n_frame_cells + e]


class Objective(NamedTuple):
    """The frame tables a kernel scores (all, or a subset whose cells keep their place in the residual) and the
    loss weight of their cells and of the coherence cells."""

    cols: np.ndarray  # (T, 3) int32, as in `TableSet`
    strides: np.ndarray  # (T, 3) int64
    offsets: np.ndarray  # (T + 1,) int64
    table_beta: np.ndarray  # (T,) float64
    coherence_beta: np.ndarray  # (E,) float64
    noise: np.ndarray  # (all cells,) float32: `Problem.cell_noise`


def pool_units(problem: Problem) -> PoolUnits:
    coherence = problem.coherence
    return PoolUnits(
        problem.codes, problem.unit_ptr, problem.row_weight, coherence.indptr.astype(np.int64),
        coherence.indices.astype(np.int64), coherence.data.astype(np.float64), problem.n_frame_cells,
    )


def objective_of(
    problem: Problem,
    table_beta: np.ndarray | None = None,
    coherence_beta: np.ndarray | None = None,
    tables: np.ndarray | None = None,
) -> Objective:
    """The problem's objective; the betas can be replaced (e.g. coherence only), `tables` restricts the frame
    tables to a subset."""
    table_beta = problem.table_beta if table_beta is None else table_beta
    coherence_beta = problem.coherence_beta if coherence_beta is None else coherence_beta
    tables = np.arange(problem.tables.n_tables) if tables is None else np.asarray(tables)
    frame = problem.tables
    return Objective(frame.cols[tables], frame.strides[tables], frame.offsets[tables], table_beta[tables], coherence_beta,
                     problem.cell_noise)


def residual_of(problem: Problem, units: np.ndarray) -> np.ndarray:
    return problem.histogram(units) - problem.target


def loss(problem: Problem, residual: np.ndarray, table_beta: np.ndarray | None = None, coherence_beta: np.ndarray | None = None) -> float:
    """`sum_c beta_c cost(r_c)`; without cell noise the expected accuracy is `sum(alpha) - loss` when the selection has
    `n_target` units."""
    table_beta = problem.table_beta if table_beta is None else table_beta
    coherence_beta = problem.coherence_beta if coherence_beta is None else coherence_beta
    n = problem.n_frame_cells
    cost = _costs(residual, problem.cell_noise)
    return float(np.add.reduceat(cost[:n], problem.tables.offsets[:-1]) @ table_beta + cost[n:] @ coherence_beta)


@numba.njit(inline="always", cache=True)
def cell_cost(r, noise):
    """`|r|`, or with noise `s` > 0 its expectation `E|r + s Z|` (Z standard normal): what a residual costs in
    the official metric when that metric's own sampling adds noise to it. Smooth: a residual well inside the noise
    costs little more than none. Interpolated in `NOISY_COST` (to within 2e-6 s)."""
    if noise == 0.0:
        return abs(r)
    z = abs(r) / noise * NOISY_COST_STEPS
    k = int(z)
    if k >= len(NOISY_COST) - 1:
        return abs(r)
    return noise * (NOISY_COST[k] + (z - k) * (NOISY_COST[k + 1] - NOISY_COST[k]))


@numba.njit(cache=True)
def _costs(residual, noise):
    out = np.empty(len(residual))
    for c in range(len(residual)):
        out[c] = cell_cost(residual[c], noise[c])
    return out


@numba.njit(cache=True)
def unit_delta(u, sign, pool, objective, residual):
    """Change of the loss if unit `u` is added (`sign` = 1.0) or removed (-1.0)."""
    codes, cols, strides, offsets = pool.codes, objective.cols, objective.strides, objective.offsets
    start, stop = pool.unit_ptr[u], pool.unit_ptr[u + 1]
    cells = np.empty(stop - start, dtype=np.int64)
    amounts = np.empty(stop - start, dtype=np.float64)
    delta = 0.0
    for t in range(cols.shape[0]):
        beta = objective.table_beta[t]
        if beta == 0.0:
            continue
        m = 0
        for row in range(start, stop):
            cell = offsets[t] + cell_in_table(codes, row, t, cols, strides)
            amount = sign * pool.row_weight[row]
            merged = False
            for i in range(m):
                if cells[i] == cell:
                    amounts[i] += amount
                    merged = True
                    break
            if not merged:
                cells[m] = cell
                amounts[m] = amount
                m += 1
        for i in range(m):
            r, noise = residual[cells[i]], objective.noise[cells[i]]
            delta += beta * (cell_cost(r + amounts[i], noise) - cell_cost(r, noise))
    for k in range(pool.coherence_ptr[u], pool.coherence_ptr[u + 1]):
        e = pool.coherence_cell[k]
        r, noise = residual[pool.n_frame_cells + e], objective.noise[pool.n_frame_cells + e]
        delta += objective.coherence_beta[e] * (cell_cost(r + sign * pool.coherence_amount[k], noise) - cell_cost(r, noise))
    return delta


@numba.njit(cache=True)
def apply_unit(u, sign, pool, objective, residual):
    """Add (`sign` = 1.0) or remove (-1.0) unit `u` from the residual cells of `objective`'s tables, in place."""
    codes, cols, strides, offsets = pool.codes, objective.cols, objective.strides, objective.offsets
    for t in range(cols.shape[0]):
        for row in range(pool.unit_ptr[u], pool.unit_ptr[u + 1]):
            residual[offsets[t] + cell_in_table(codes, row, t, cols, strides)] += sign * pool.row_weight[row]
    for k in range(pool.coherence_ptr[u], pool.coherence_ptr[u + 1]):
        residual[pool.n_frame_cells + pool.coherence_cell[k]] += sign * pool.coherence_amount[k]


@numba.njit(parallel=True, cache=True)
def unit_deltas(units, sign, pool, objective, residual):
    """`unit_delta` of many units against the same residual, in parallel."""
    out = np.empty(len(units))
    for i in numba.prange(len(units)):
        out[i] = unit_delta(units[i], sign, pool, objective, residual)
    return out


@numba.njit(cache=True)
def apply_units(units, sign, pool, objective, residual):
    for u in units:
        apply_unit(u, sign, pool, objective, residual)


@numba.njit(cache=True)
def _greedy_removals(order, stale, batch, units, pool, objective, residual):
    """Walk the units by stale removal delta (best first), re-score each against the current residual, and remove
    it if its removal still lowers the loss, up to `batch` units. Returns a mask of the removed positions."""
    removed = np.zeros(len(units), dtype=np.bool_)
    n_removed = 0
    for i in range(len(order)):
        if n_removed == batch:
            break
        u = units[order[i]]
        if stale[order[i]] >= 0.0:
            break
        fresh = unit_delta(u, -1.0, pool, objective, residual)
        if fresh < 0.0:
            apply_unit(u, -1.0, pool, objective, residual)
            removed[order[i]] = True
            n_removed += 1
    return removed


def trim(
    problem: Problem,
    units: np.ndarray,
    n_keep: int,
    deadline: float,
    batch_share: float = 0.5,
) -> np.ndarray:
    """Remove units until `n_keep` remain. Each round ranks all units by removal delta (in parallel), then walks
    that ranking and removes up to `batch_share` of the excess, re-scoring each unit first (so batched removals do
    not overshoot). When no removal helps any more, or at the deadline, the rest goes by the last ranking."""
    pool, objective = pool_units(problem), objective_of(problem)
    residual = residual_of(problem, units)
    units = np.array(units, dtype=np.int64)
    excess0 = len(units) - n_keep
    with Progress("trim", total=excess0) as progress:
        progress.log(f"{len(units):,} -> {n_keep:,} units, loss {loss(problem, residual):.6f}")
        while len(units) > n_keep:
            stale = unit_deltas(units, -1.0, pool, objective, residual)
            order = np.argsort(stale, kind="stable")
            excess = len(units) - n_keep
            drop = np.zeros(len(units), dtype=bool)
            if time.monotonic() < deadline:
                drop = _greedy_removals(order, stale, max(1, math.ceil(batch_share * excess)), units, pool, objective, residual)
            if not drop.any():
                drop[order[:excess]] = True
                apply_units(units[drop], -1.0, pool, objective, residual)
            units = units[~drop]
            progress.update(excess0 - len(units) + n_keep, loss=loss(problem, residual))
        progress.log(f"done, loss {loss(problem, residual):.6f}")
    return units


@numba.njit(cache=True)
def _entry_delta(v, u, selected, rank, pool, tables, residual):
    """The delta of putting unit `v` in for `u` (already taken out) under `tables`, or inf when `v` may not come in:
    it is selected already, or ranked above `u`."""
    if selected[v] or rank[v] > rank[u]:
        return np.inf
    return unit_delta(v, 1.0, pool, tables, residual)


def _swap_until(deadline: float, units, selected, positions, candidates, accept_draws, *args) -> tuple[int, int]:
    """`_swap_chunk` over the attempts in slices of about SLICE_SECONDS each (at the pace of the last slice), until
    the deadline comes: (attempts made, swaps kept). A run that the deadline does not cut makes the same swaps as one
    call; slices keep one chunk from overrunning the deadline when the machine slows down (parallel kernels wait for
    every thread at each candidate search, and a busy machine keeps threads waiting)."""
    done = accepted = 0
    size = SLICE_FIRST
    while done < len(positions) and time.monotonic() < deadline:
        clock = time.monotonic()
        part = slice(done, done + size)
        accepted += _swap_chunk(units, selected, positions[part], candidates[part], accept_draws[part], *args)
        done += len(positions[part])
        size = int(np.clip(SLICE_SECONDS / max(time.monotonic() - clock, 1e-6) * size, SLICE_FIRST, len(positions)))
    return done, accepted


@numba.njit(parallel=True, cache=True)
def _swap_chunk(units, selected, positions, candidates, accept_draws, temperature, n_finalists, pool, full, screen, residual, rank):
    """Swap attempts: take out `units[positions[i]]`, put in the best of `candidates[i]` if that pays.

    Candidates are ranked by their delta under `screen` (cheap tables); the best `n_finalists` are scored under
    `full`, the objective. With `n_finalists` = 0 the screening score is the objective (`screen` is `full`).
    A candidate already selected, or whose `rank` is above that of the unit taken out, is not eligible.
    """
    n_candidates = candidates.shape[1]
    screened = np.empty(n_candidates)
    finalists = np.empty(max(n_finalists, 1))
    accepted = 0
    for i in range(len(positions)):
        u = units[positions[i]]
        d_out = unit_delta(u, -1.0, pool, full, residual)
        apply_unit(u, -1.0, pool, full, residual)
        for k in numba.prange(n_candidates):
            v = candidates[i, k]
            screened[k] = _entry_delta(v, u, selected, rank, pool, screen, residual)
        if n_finalists > 0:
            order = np.argsort(screened)[:n_finalists]
            for k in numba.prange(len(order)):
                v = candidates[i, order[k]]
                finalists[k] = _entry_delta(v, u, selected, rank, pool, full, residual)
            pick = np.argmin(finalists[: len(order)])
            best, d_in = order[pick], finalists[pick]
        else:
            best = np.argmin(screened)
            d_in = screened[best]
        change = d_out + d_in
        keep_swap = change < -1e-15 or (temperature > 0.0 and change < np.inf and accept_draws[i] < np.exp(-change / temperature))
        if keep_swap:
            v = candidates[i, best]
            apply_unit(v, 1.0, pool, full, residual)
            selected[u] = False
            selected[v] = True
            units[positions[i]] = v
            accepted += 1
        else:
            apply_unit(u, 1.0, pool, full, residual)
    return accepted


def refine(
    problem: Problem,
    units: np.ndarray,
    rng: np.random.Generator,
    deadline: float,
    n_candidates: int = 16,
    chunk: int = 2_000,
    temperature: tuple[float, float] = (0.0, 0.0),
    min_accept_rate: float = 0.0005,
    min_loss_drop: float = 0.00005,
    patience: int = 10,
    max_attempts: int | None = None,
    candidate_weights: np.ndarray | None = None,
    screen_tables: np.ndarray | None = None,
    n_finalists: int = 2,
    table_beta: np.ndarray | None = None,
    coherence_beta: np.ndarray | None = None,
    rank: np.ndarray | None = None,
    name: str = "refine",
) -> np.ndarray:
    """Swap refinement until the deadline, `max_attempts`, or until fewer than `min_accept_rate` of the attempts
    of the last `patience` chunks pay off (acceptance comes in bursts: one idle chunk does not mean convergence);
    with cell noise, where nearly every swap pays a little, also once those chunks lower the loss by less than
    `min_loss_drop` of itself.
    The same seed gives the same selection unless the deadline cuts the run short.

    Candidates are pool units drawn uniformly, or in proportion to `candidate_weights` (e.g. IPF weights). With
    `screen_tables` (frame table indices) candidates are ranked on those tables first, and only the best
    `n_finalists` are scored on the whole objective: many more candidates for the same time on wide tables.
    Without a temperature every accepted swap lowers the loss (monotone). With `temperature` = (start, end) a swap
    that raises the loss by `d` is kept with probability `exp(-d / T)`, `T` falling geometrically from start to end
    over `max_attempts` or the time to the deadline, whichever runs out first; the run then ends there, not at
    convergence. Replacing the betas restricts the objective (e.g. to coherence tables only). With `rank` (a value
    per pool unit) a swap may bring in only a unit ranked no higher than the one it takes out, so the selection's
    total rank never rises (the privacy guard's polish ranks units by their closeness to training).
    """
    pool, full = pool_units(problem), objective_of(problem, table_beta, coherence_beta)
    screen = full if screen_tables is None else objective_of(problem, table_beta, coherence_beta, screen_tables)
    n_finalists = 0 if screen_tables is None else n_finalists
    units = np.array(units, dtype=np.int64)
    residual = residual_of(problem, units)
    selected = np.zeros(problem.n_units, dtype=bool)
    selected[units] = True
    rank = np.zeros(problem.n_units) if rank is None else np.asarray(rank, dtype=np.float64)
    cumulative = None if candidate_weights is None else np.cumsum(candidate_weights) / np.sum(candidate_weights)
    objective = lambda: loss(problem, residual, table_beta, coherence_beta)  # noqa: E731
    attempts = accepted = 0
    recent = collections.deque(maxlen=patience)  # swaps kept in each of the last chunks
    losses = collections.deque([objective()], maxlen=patience + 1)  # the loss before each of them, and now
    smooth = bool(problem.cell_noise.any())
    start, end = temperature
    if start > 0 and max_attempts is None:
        raise ValueError("a temperature needs max_attempts")
    begin = time.monotonic()
    with Progress(name) as progress:
        progress.log(f"{len(units):,} units of {problem.n_units:,}, loss {objective():.6f}")
        while time.monotonic() < deadline and (max_attempts is None or attempts < max_attempts):
            positions = rng.integers(0, len(units), chunk)
            if cumulative is None:
                candidates = rng.integers(0, problem.n_units, (chunk, n_candidates))
            else:
                candidates = np.minimum(np.searchsorted(cumulative, rng.random((chunk, n_candidates))), problem.n_units - 1)
            draws = rng.random(chunk)
            if start > 0:  # the share of the schedule gone by, in attempts or in time
                elapsed = max(attempts / max_attempts, (time.monotonic() - begin) / max(deadline - begin, 1e-9))
                current = start * (end / start) ** elapsed
            else:
                current = 0.0
            n_attempts, n_accepted = _swap_until(deadline, units, selected, positions, candidates, draws, current, n_finalists,
                                                 pool, full, screen, residual, rank)
            attempts, accepted = attempts + n_attempts, accepted + n_accepted
            if n_attempts < chunk:
                stop = "deadline"
                break
            recent.append(n_accepted)
            losses.append(objective())
            progress.update(attempts=attempts, accepted=accepted, loss=losses[-1])
            if start == 0.0 and len(recent) == patience and sum(recent) < min_accept_rate * chunk * patience:
                stop = f"converged: {sum(recent)} of the last {chunk * patience:,} swaps paid"
                break
            if start == 0.0 and smooth and len(recent) == patience and losses[0] - losses[-1] < min_loss_drop * losses[0]:
                stop = f"converged: the last {chunk * patience:,} attempts lowered the loss by {1 - losses[-1] / losses[0]:.3%}"
                break
        else:
            stop = "deadline" if time.monotonic() >= deadline else "attempts done"
        progress.log(f"{stop}; {accepted:,} of {attempts:,} swaps kept, loss {objective():.6f}")
    return units


def anneal(problem: Problem, units: np.ndarray, rng: np.random.Generator, deadline: float, sweeps: float,
           temperature: float, cooling: float = 300.0, **swap_knobs) -> np.ndarray:
    """Simulated annealing from a (converged) selection: `sweeps` swap attempts per selected unit, the temperature
    falling from `temperature` to `temperature / cooling`, then `refine` without one until it converges; returns the
    better of the selection given and the one reached. The temperature is in units of `1 / n_target`, what one unit
    can change the loss by at most, so the same setting suits tables of any size. The annealing gets two thirds of
    the time to the deadline at most, the final refinement the rest."""
    scale = temperature / problem.n_target
    before = loss(problem, residual_of(problem, units))
    hot_deadline = time.monotonic() + 2 / 3 * max(deadline - time.monotonic(), 0.0)
    annealed = refine(problem, units, rng, hot_deadline, temperature=(scale, scale / cooling),
                      max_attempts=math.ceil(sweeps * len(units)), name="anneal", **swap_knobs)
    annealed = refine(problem, annealed, rng, deadline, name="anneal: cool", **swap_knobs)
    return annealed if loss(problem, residual_of(problem, annealed)) < before else np.asarray(units)


def replace_units(problem: Problem, units: np.ndarray, drop: np.ndarray, candidates: np.ndarray, rounds: int = 8) -> np.ndarray:
    """`units` without `drop`, and as many `candidates` (not already selected) in their place: those that cost the
    objective least, chosen greedily in `rounds` batches, each re-scored against the selection as it stands."""
    pool, objective = pool_units(problem), objective_of(problem)
    keep = np.setdiff1d(units, drop)
    residual = residual_of(problem, keep)
    free = np.setdiff1d(candidates, units).astype(np.int64)
    if len(free) < len(units) - len(keep):
        raise ValueError(f"{len(free)} candidates for {len(units) - len(keep)} places")
    chosen = []
    need = len(units) - len(keep)
    for round_ in range(rounds):
        if need == 0:
            break
        deltas = unit_deltas(free, 1.0, pool, objective, residual)
        order = np.argsort(deltas, kind="stable")[: need if round_ == rounds - 1 else math.ceil(need / (rounds - round_))]
        best = free[order]
        apply_units(best, 1.0, pool, objective, residual)
        chosen.append(best)
        free = np.delete(free, order)
        need -= len(best)
    return np.sort(np.concatenate([keep, *chosen]))

