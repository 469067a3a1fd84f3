"""Greedy trimming and swap refinement of a selection of units, on residuals, with numba kernels.

The state of a selection is its residual `r = h - target` over all cells (frame tables, then coherence cells).
Adding (`sign=+1`) or removing (`sign=-1`) unit `u` changes the loss `sum_c beta_c |r_c|` by exactly
`sum_c beta_c (|r_c + sign a_uc| - |r_c|)` over the unit's cells (`unit_delta`; a sequence's frame rows that
fall into one cell are merged first), so only those cells are read and written.

- `trim`: from an oversized selection, remove the units whose removal helps most, in shrinking batches.
- `refine`: remove one selected unit, try a few pool candidates in its place (in parallel), keep the best swap if
  the loss goes down (or, with a temperature, sometimes if it goes up a little).

Both take a `deadline` (`time.monotonic()` value) and return the best selection they have when it comes.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np

from common.progress import Progress
from common.targets import Problem


def kernel_arrays(problem: Problem, table_beta: np.ndarray | None = None, coherence_beta: np.ndarray | None = None) -> tuple:
    """The arrays every kernel takes, in order; the betas can be replaced (e.g. coherence only)."""
    coherence = problem.coherence
    return (
        problem.codes, problem.unit_ptr, problem.row_weight,
        problem.tables.cols, problem.tables.strides, problem.tables.offsets,
        problem.table_beta if table_beta is None else table_beta,
        coherence.indptr.astype(np.int64), coherence.indices.astype(np.int64), coherence.data.astype(np.float64),
        problem.coherence_beta if coherence_beta is None else coherence_beta,
        problem.n_frame_cells,
    )


def residual_of(problem: Problem, units: np.ndarray) -> np.ndarray:
    return problem.histogram(units) - problem.target


def loss(problem: Problem, residual: np.ndarray, table_beta: np.ndarray | None = None, coherence_beta: np.ndarray | None = None) -> float:
    """`sum_c beta_c |r_c|`: the expected accuracy is `sum(alpha) - loss` when the selection has `n_target` units."""
    table_beta = problem.table_beta if table_beta is None else table_beta
    coherence_beta = problem.coherence_beta if coherence_beta is None else coherence_beta
    n = problem.n_frame_cells
    return float(np.add.reduceat(np.abs(residual[:n]), problem.tables.offsets[:-1]) @ table_beta + np.abs(residual[n:]) @ coherence_beta)


@numba.njit(cache=True)
def unit_delta(u, sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual):
    """Change of the loss if unit `u` is added (`sign` = 1.0) or removed (-1.0)."""
    start, stop = unit_ptr[u], unit_ptr[u + 1]
    cells = np.empty(stop - start, dtype=np.int64)
    amounts = np.empty(stop - start, dtype=np.float64)
    delta = 0.0
    for t in range(cols.shape[0]):
        beta = table_beta[t]
        if beta == 0.0:
            continue
        m = 0
        for row in range(start, stop):
            cell = offsets[t]
            for j in range(3):
                c = cols[t, j]
                if c >= 0:
                    cell += codes[row, c] * strides[t, j]
            amount = sign * row_weight[row]
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
            r = residual[cells[i]]
            delta += beta * (abs(r + amounts[i]) - abs(r))
    for k in range(coh_ptr[u], coh_ptr[u + 1]):
        e = coh_idx[k]
        r = residual[n_frame_cells + e]
        delta += coh_beta[e] * (abs(r + sign * coh_val[k]) - abs(r))
    return delta


@numba.njit(cache=True)
def apply_unit(u, sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual):
    """Add (`sign` = 1.0) or remove (-1.0) unit `u` from the residual, in place."""
    for t in range(cols.shape[0]):
        for row in range(unit_ptr[u], unit_ptr[u + 1]):
            cell = offsets[t]
            for j in range(3):
                c = cols[t, j]
                if c >= 0:
                    cell += codes[row, c] * strides[t, j]
            residual[cell] += sign * row_weight[row]
    for k in range(coh_ptr[u], coh_ptr[u + 1]):
        residual[n_frame_cells + coh_idx[k]] += sign * coh_val[k]


@numba.njit(parallel=True, cache=True)
def unit_deltas(units, sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual):
    """`unit_delta` of many units against the same residual, in parallel."""
    out = np.empty(len(units))
    for i in numba.prange(len(units)):
        out[i] = unit_delta(units[i], sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
    return out


@numba.njit(cache=True)
def apply_units(units, sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual):
    for u in units:
        apply_unit(u, sign, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)


def trim(problem: Problem, units: np.ndarray, n_keep: int, deadline: float, batch_share: float = 0.2, min_batch: int = 64) -> np.ndarray:
    """Remove units until `n_keep` remain, each round the `batch_share` of the excess whose removal helps most."""
    arrays = kernel_arrays(problem)
    residual = residual_of(problem, units)
    units = np.array(units, dtype=np.int64)
    excess0 = len(units) - n_keep
    with Progress("trim", total=excess0) as progress:
        progress.log(f"{len(units):,} -> {n_keep:,} units, loss {loss(problem, residual):.6f}")
        while len(units) > n_keep:
            deltas = unit_deltas(units, -1.0, *arrays, residual)
            excess = len(units) - n_keep
            batch = excess if time.monotonic() > deadline else min(excess, max(min_batch, math.ceil(batch_share * excess)))
            drop = np.argpartition(deltas, batch - 1)[:batch]
            apply_units(units[drop], -1.0, *arrays, residual)
            units = np.delete(units, drop)
            progress.update(excess0 - len(units) + n_keep, loss=loss(problem, residual))
        progress.log(f"done, loss {loss(problem, residual):.6f}")
    return units


@numba.njit(parallel=True, cache=True)
def _swap_chunk(units, selected, positions, candidates, accept_draws, temperature,
                codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual):
    """Swap attempts: take out `units[positions[i]]`, put in the best of `candidates[i]` if that pays."""
    n_candidates = candidates.shape[1]
    deltas = np.empty(n_candidates)
    accepted = 0
    for i in range(len(positions)):
        u = units[positions[i]]
        d_out = unit_delta(u, -1.0, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
        apply_unit(u, -1.0, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
        for k in numba.prange(n_candidates):
            v = candidates[i, k]
            if selected[v]:
                deltas[k] = np.inf
            else:
                deltas[k] = unit_delta(v, 1.0, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
        best = np.argmin(deltas)
        change = d_out + deltas[best]
        keep_swap = change < -1e-15 or (temperature > 0.0 and change < np.inf and accept_draws[i] < np.exp(-change / temperature))
        if keep_swap:
            v = candidates[i, best]
            apply_unit(v, 1.0, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
            selected[u] = False
            selected[v] = True
            units[positions[i]] = v
            accepted += 1
        else:
            apply_unit(u, 1.0, codes, unit_ptr, row_weight, cols, strides, offsets, table_beta, coh_ptr, coh_idx, coh_val, coh_beta, n_frame_cells, residual)
    return accepted


def refine(
    problem: Problem,
    units: np.ndarray,
    rng: np.random.Generator,
    deadline: float,
    n_candidates: int = 16,
    chunk: int = 2_000,
    temperature: float = 0.0,
    min_accept_rate: float = 0.002,
    max_attempts: int | None = None,
    table_beta: np.ndarray | None = None,
    coherence_beta: np.ndarray | None = None,
    name: str = "refine",
) -> np.ndarray:
    """Swap refinement until the deadline, `max_attempts`, or a chunk where fewer than `min_accept_rate` of the
    attempts pay off. The same seed gives the same selection unless the deadline cuts the run short.

    Without a temperature every accepted swap lowers the loss (monotone). Replacing the betas restricts the
    objective (e.g. to coherence tables only).
    """
    arrays = kernel_arrays(problem, table_beta, coherence_beta)
    units = np.array(units, dtype=np.int64)
    residual = residual_of(problem, units)
    selected = np.zeros(problem.n_units, dtype=bool)
    selected[units] = True
    objective = lambda: loss(problem, residual, table_beta, coherence_beta)  # noqa: E731
    attempts = accepted = 0
    with Progress(name) as progress:
        progress.log(f"{len(units):,} units of {problem.n_units:,}, loss {objective():.6f}")
        while time.monotonic() < deadline and (max_attempts is None or attempts < max_attempts):
            positions = rng.integers(0, len(units), chunk)
            candidates = rng.integers(0, problem.n_units, (chunk, n_candidates))
            draws = rng.random(chunk)
            n_accepted = _swap_chunk(units, selected, positions, candidates, draws, temperature, *arrays, residual)
            attempts, accepted = attempts + chunk, accepted + n_accepted
            progress.update(attempts=attempts, accepted=accepted, loss=objective())
            if temperature == 0.0 and n_accepted < min_accept_rate * chunk:
                break
        progress.log(f"done: {accepted:,} of {attempts:,} swaps kept, loss {objective():.6f}")
    return units

