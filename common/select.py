"""The selection recipe: IPF -> expectation rounding to an oversized subset -> trimming -> [coherence swaps] ->
swap refinement -> [annealing], all within one deadline. The steps live in `common/ipf.py` and `common/refine.py`;
this module only chains them and shares the time between them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from common.ipf import expectation_rounding, ipf
from common.refine import anneal, refine, trim
from common.targets import Problem


@dataclass(frozen=True)
class SelectionSettings:
    """The selection's knobs; their defaults live in the entry scripts' CONFIG blocks (see their comments)."""

    ipf_pairs: int  # bivariate tables IPF matches (top mutual information), besides all univariates
    ipf_passes: int
    ipf_triples: bool  # IPF matches the objective's trivariate tables too (first in each pass)
    ipf_time_share: float  # at most this share of the time for IPF ...
    oversize: float  # the IPF sample is this many times the target, then trimmed
    trim_batch_share: float  # units removed per ranking round, as a share of those still to remove
    trim_time_share: float  # ... and this share for trimming
    n_candidates: int  # pool candidates scored per swap
    screen_tables: tuple[str, ...]  # table kinds that pre-rank candidates (e.g. ("univariate",)); () for none
    refine_chunk: int  # swap attempts per numba call
    refine_patience: int  # chunks over which the acceptance rate decides convergence
    refine_finalists: int  # screened candidates scored on all tables
    anneal_sweeps: float = 0.0  # annealing swap attempts per selected unit after the refinement (0: none)
    anneal_temperature: float = 0.0  # its starting temperature, in units of 1 / n_target
    coherence_share: float = 0.0  # share of the refinement time for coherence-only swaps first (sequential data only)

    @classmethod
    def from_config(cls, config: dict) -> "SelectionSettings":
        return cls(**{name: config[name] for name in cls.__dataclass_fields__ if name in config})


def select_units(
    problem: Problem,
    settings: SelectionSettings,
    deadline: float,
    rng: np.random.Generator,
    on_step: Callable[[str, np.ndarray, float], None] | None = None,
    anneal_until: Callable[[np.ndarray], float] | None = None,
) -> np.ndarray:
    """Choose `problem.n_target` pool units (indices) before `deadline` (a `time.monotonic()` value).

    `on_step(name, units, seconds)` is called after each step ("random", "ipf", "trim", "coherence", "refine",
    "anneal"); "random" is a uniform random subset: what the raw pool would score. `anneal_until(units)`, given the
    refined selection, can end the annealing before `deadline` (to leave later steps the time they need); no time
    left: no annealing.
    """
    on_step = on_step or (lambda name, units, seconds: None)
    budget = max(deadline - time.monotonic(), 0.0)

    def until(share: float) -> float:
        return min(time.monotonic() + share * budget, deadline)

    clock = time.monotonic()

    def done(name: str, units: np.ndarray) -> np.ndarray:
        nonlocal clock
        on_step(name, units, time.monotonic() - clock)
        clock = time.monotonic()
        return units

    swaps = _swap_knobs(settings)
    done("random", np.sort(rng.choice(problem.n_units, problem.n_target, replace=False)))
    weights = ipf(problem, settings.ipf_pairs, settings.ipf_passes, until(settings.ipf_time_share), settings.ipf_triples)
    size = min(int(settings.oversize * problem.n_target), problem.n_units)
    units = done("ipf", expectation_rounding(weights, size, rng))
    units = done("trim", trim(problem, units, problem.n_target, until(settings.trim_time_share), settings.trim_batch_share))
    if settings.coherence_share and len(problem.coherence_kind):
        coherence_deadline = time.monotonic() + settings.coherence_share * max(deadline - time.monotonic(), 0.0)
        units = done("coherence", refine(problem, units, rng, coherence_deadline, candidate_weights=weights,
                                         table_beta=np.zeros_like(problem.table_beta), name="coherence", **swaps))
    screen = _screen(problem, settings)
    units = done("refine", refine(problem, units, rng, deadline, candidate_weights=weights, screen_tables=screen, **swaps))
    if settings.anneal_sweeps:
        anneal_deadline = min(deadline, anneal_until(units)) if anneal_until else deadline
        clock = time.monotonic()  # the annealing's time starts here, not with what `anneal_until` took
        if anneal_deadline > clock:
            units = done("anneal", anneal(problem, units, rng, anneal_deadline, settings.anneal_sweeps,
                                          settings.anneal_temperature, candidate_weights=weights, screen_tables=screen, **swaps))
    return units


def refine_among(problem: Problem, units: np.ndarray, candidates: np.ndarray, settings: SelectionSettings, deadline: float,
                 rng: np.random.Generator, rank: np.ndarray | None = None) -> np.ndarray:
    """Swap refinement of `units` whose candidates are only the given pool units (e.g. those the privacy guard allows),
    each swap bringing in a unit ranked no higher than the one it takes out (see `refine`)."""
    if not len(candidates):
        return units
    weights = np.zeros(problem.n_units)
    weights[candidates] = 1.0
    return refine(problem, units, rng, deadline, candidate_weights=weights, screen_tables=_screen(problem, settings),
                  rank=rank, name="polish", **_swap_knobs(settings))


def _swap_knobs(settings: SelectionSettings) -> dict:
    return dict(n_candidates=settings.n_candidates, chunk=settings.refine_chunk, patience=settings.refine_patience,
                n_finalists=settings.refine_finalists)


def _screen(problem: Problem, settings: SelectionSettings) -> np.ndarray | None:
    """The frame tables that pre-rank candidates (`screen_tables` kinds), or None."""
    return np.flatnonzero(np.isin(problem.table_kind, settings.screen_tables)) if settings.screen_tables else None
