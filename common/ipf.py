"""IPF weights on pool units, and expectation rounding of the weights to an (oversized) selection.

`ipf` rakes one weight per pool unit so that the weighted pool matches the training targets of the univariate
tables, of the `n_pairs` bivariate tables with the highest mutual information and, with `triples`, of the objective's
trivariate tables: table after table, each unit's weight is multiplied by the ratio target / current of the
cells it falls in (averaged over its frame rows for a sequence). The trivariate tables come first in each pass, so
that the univariate and bivariate ones, matched last, stay the closest. `expectation_rounding` turns weights into
a selection whose expected composition follows them.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from common.progress import Progress
from common.tables import cell_in_table
from common.targets import Problem

MAX_FACTOR = 10.0  # one raking step moves a weight by at most this factor either way


def top_pairs(problem: Problem, n_pairs: int) -> np.ndarray:
    """Indices of the `n_pairs` bivariate tables with the highest mutual information in the training targets."""
    tables = np.flatnonzero(problem.table_kind == "bivariate")
    info = np.empty(len(tables))
    for i, t in enumerate(tables):
        a, b = problem.tables.cols[t, :2]
        n_b = int(problem.tables.strides[t, 0])
        p = problem.target[problem.tables.offsets[t] : problem.tables.offsets[t + 1]].reshape(-1, n_b)
        p = p / p.sum()
        outer = p.sum(axis=1, keepdims=True) * p.sum(axis=0, keepdims=True)
        nonzero = p > 0
        info[i] = float((p[nonzero] * np.log(p[nonzero] / outer[nonzero])).sum())
    return tables[np.argsort(-info, kind="stable")[:n_pairs]]


@numba.njit(cache=True)
def _weighted_table(t, weights, row_unit, codes, row_weight, cols, strides, offsets):
    out = np.zeros(offsets[t + 1] - offsets[t])
    for row in range(codes.shape[0]):
        out[cell_in_table(codes, row, t, cols, strides)] += weights[row_unit[row]] * row_weight[row]
    return out


@numba.njit(parallel=True, cache=True)
def _rescale(t, factor, weights, unit_ptr, codes, row_weight, cols, strides):
    for u in numba.prange(len(weights)):
        scale = 0.0
        for row in range(unit_ptr[u], unit_ptr[u + 1]):
            scale += row_weight[row] * factor[cell_in_table(codes, row, t, cols, strides)]
        weights[u] *= scale


def ipf(problem: Problem, n_pairs: int, passes: int, deadline: float, triples: bool = False) -> np.ndarray:
    """Weights (one per pool unit, summing to `n_target`) raked to the targets of the trivariate tables (with
    `triples`), the univariate ones and the top-MI bivariate ones, in that order."""
    kinds = ("trivariate", "univariate") if triples else ("univariate",)
    tables = np.concatenate([*(np.flatnonzero(problem.table_kind == kind) for kind in kinds), top_pairs(problem, n_pairs)])
    codes = np.asfortranarray(problem.codes)  # a table reads two or three columns of every row: column-major is faster
    row_unit = np.repeat(np.arange(problem.n_units), np.diff(problem.unit_ptr))
    weights = np.full(problem.n_units, problem.n_target / problem.n_units)
    t_args = (problem.tables.cols, problem.tables.strides, problem.tables.offsets)
    with Progress("ipf", total=passes * len(tables)) as progress:
        progress.log(f"{len(tables)} tables, {problem.n_units:,} units, {passes} passes")
        for p in range(passes):
            for i, t in enumerate(tables):
                if time.monotonic() > deadline:
                    progress.log("deadline reached")
                    return weights
                current = _weighted_table(t, weights, row_unit, codes, problem.row_weight, *t_args)
                target = problem.target[problem.tables.offsets[t] : problem.tables.offsets[t + 1]]
                with np.errstate(over="ignore"):  # a cell with next to no weight yet: the factor is clipped below
                    factor = np.divide(target, current, out=np.ones_like(current), where=current > 0)
                _rescale(t, np.clip(factor, 1 / MAX_FACTOR, MAX_FACTOR), weights, problem.unit_ptr, codes, problem.row_weight, *t_args[:2])
                progress.update(p * len(tables) + i + 1)
        progress.log("done")
    return weights


def expectation_rounding(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """About `size` distinct units, unit `u` chosen with probability `min(1, c * weights[u])` (systematic
    sampling in a random order). Returns the chosen unit indices, sorted."""
    p = weights * (size / weights.sum())
    for _ in range(50):  # cap at 1 and hand the excess to the others
        over = p > 1
        if not over.any():
            break
        excess = (p[over] - 1).sum()
        p[over] = 1
        p[~over] *= 1 + excess / p[~over].sum()
    p = np.minimum(p, 1.0)
    order = rng.permutation(len(p))
    ticks = np.floor(np.cumsum(p[order]) + rng.random())
    chosen = order[np.diff(np.concatenate([[0.0], ticks])) > 0]
    return np.sort(chosen)
