"""Privacy guard on the selection, before the submission is written.

Two checks, each with a repair, so that a run writes a private submission rather than none:

- identical copies: selected units (rows, or whole groups) equal to any training unit, compared on every column
  but the identifier-like ones (see below). Copies beyond the reference's own rate (how often reference units
  equal a training unit) are swapped for clean pool units that cost the objective least.
- DCR share: of a sample of selected rows, the share closer to the training rows than to the reference rows
  (ties count half), computed as mostlyai-qa computes it, with its own code: rows embedded by qa's encoder
  (numbers through quantiles, text through its language embeddings, unit length), L2 nearest neighbours, and the
  highest share over qa's column groups (all columns, three correlated and three random subsets). When the share
  is above `max_dcr_share` by more than its sampling noise allows, the selected units closest to training
  (relative to the reference) are swapped for pool units that sit nearer the reference, chosen by objective cost,
  and the share is measured again. Those swaps cost accuracy; once the share passes, the selection is polished:
  swap refinement whose candidates are only pool units nearer the reference than training (and no training
  copies), which wins most of it back; the share is measured again. Only when repairs fail does the run stop.
  "Within the limit" means three standard errors below it (qa measures on a sample of its own, whose noise adds to
  ours), or, for small submissions where that is out of reach, at most one standard error above 0.5. Each
  measurement averages three fresh draws of rows and of qa's random column groups, and repairs choose units by their
  closeness averaged over other draws, so that a repair cannot pass by fitting the noise of the draws that judge it.

The reference is the holdout when one is given, else a random half of the training units (both halves were seen
in training, so the DCR check then catches only gross copying; the identical-copy check always compares with
every training unit). Identifier-like columns (text or integers unique to nearly every row) are left out of both
checks: a copied row under a fresh identifier is still a copy, and an identifier never makes two rows close.

The holdout serves only these checks (and the candidates the repairs may use) and the final scores; it never steers
training or the selection's objective.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np
import pandas as pd

from common.io import DataError, unit_name
from common.refine import replace_units
from common.targets import Problem

IDENTIFIER_SHARE = 0.95  # a column whose values are unique in at least this share of its rows names rows
MIN_DISTANCE_ROWS = 50  # fewer rows on either side: no DCR share (reported as such)
REPAIR_ROUNDS = 10
MEASURE_DRAWS = 3  # draws whose DCR shares are averaged for each measurement
SCORING_DRAWS = 3  # draws whose closeness is averaged to choose the units a repair swaps
POLISH_DRAWS = 3  # draws whose closeness is averaged to choose the polish's candidates
POLISH_DRAW = 100_000  # the first of those draws (measurements and repairs use draws below it)
POLISH_MIN_SECONDS = 60  # a polish needs at least this much time before the run's end
REPAIR_MARGIN = 2.0  # a repair swaps enough to lower the share by this many times the excess, as measured in its
# draws: a unit's measured closeness is partly noise, so a swap lowers the share on a fresh draw by less
SEQUENCE_LENGTH_COLUMN = "Sequence Length"  # qa's name for the length column it adds to sequential rows


def identifier_columns(training: pd.DataFrame, key: str | None) -> list[str]:
    """Columns that name rows rather than describe them: text or integer values, nearly all distinct."""
    out = []
    for col in training.columns:
        values = training[col].dropna()
        if col == key or len(values) < 0.5 * len(training) or values.nunique() < IDENTIFIER_SHARE * len(values):
            continue
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values) and not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
            continue  # a continuous measure: distinct values describe the row
        out.append(col)
    return out


def compared_columns(training: pd.DataFrame, key: str | None) -> list[str]:
    """The columns two units are compared on: all but the key and the identifier-like columns."""
    identifiers = identifier_columns(training, key)
    return [c for c in training.columns if c != key and c not in identifiers]


def unit_hashes(df: pd.DataFrame, key: str | None, columns: list[str] | None = None) -> np.ndarray:
    """One uint64 per unit over `columns` (default: all but the key): a row's values, or (sequential) the values of
    all rows of the group, in order."""
    columns = [c for c in df.columns if c != key] if columns is None else columns
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in columns]
    values = pd.DataFrame({c: df[c].astype("float64" if is_num else "string") for c, is_num in zip(columns, numeric, strict=True)})
    rows = pd.util.hash_pandas_object(values, index=False).to_numpy()
    if key is None:
        return rows
    codes, _ = pd.factorize(df[key])
    position = pd.Series(codes).groupby(codes).cumcount().to_numpy().astype(np.uint64)
    mixed = rows * np.uint64(0x9E3779B97F4A7C15) ^ (position + np.uint64(1)) * np.uint64(0xC2B2AE3D27D4EB4F)
    out = np.zeros(codes.max() + 1 if len(codes) else 0, dtype=np.uint64)
    np.add.at(out, codes, mixed)
    return out


def _qa_rows(df: pd.DataFrame, key: str | None, columns: list[str], lengths: np.ndarray | None = None) -> pd.DataFrame:
    """Rows as qa prepares them for its embeddings: the compared columns, plus (sequential) the length of each
    row's group (`lengths`, or counted in `df`)."""
    from mostlyai.qa._sampling import harmonize_dtype

    rows = df[columns].reset_index(drop=True)
    if key is not None:
        lengths = df.groupby(key, sort=False)[key].transform("size").to_numpy() if lengths is None else lengths
        rows.insert(0, SEQUENCE_LENGTH_COLUMN, lengths)
    return rows.apply(harmonize_dtype)


class DistanceSpace:
    """qa's distance space, fitted on equally sized samples of training and reference rows: `measure(rows)` gives the
    DCR share of a table's rows as qa computes it, and per row and column group whether the row sits closer to
    training (1), to the reference (0) or at a tie (0.5)."""

    def __init__(self, training_rows: pd.DataFrame, reference_rows: pd.DataFrame, seed: int):
        from mostlyai.qa._distances import split_columns_into_correlated_groups, split_columns_into_random_groups
        from sklearn.neighbors import NearestNeighbors

        self.seed = seed
        self.training_rows, self.reference_rows = training_rows, reference_rows
        trn, ref = self._encode(reference_rows, with_originals=True)
        np.random.seed(seed)  # qa draws its column groups from the global random state
        together = np.vstack([trn, ref])
        self.groups = [np.arange(trn.shape[1])]
        if trn.shape[1] > 10:
            self.groups += split_columns_into_correlated_groups(together, k=3) + split_columns_into_random_groups(together, k=3)
        self.groups = [np.asarray(g) for g in self.groups if len(g)]
        self.index = [(NearestNeighbors(n_neighbors=2, algorithm="brute").fit(trn[:, g]),
                       NearestNeighbors(n_neighbors=2, algorithm="brute").fit(ref[:, g])) for g in self.groups]

    def _encode(self, rows: pd.DataFrame, with_originals: bool = False):
        from mostlyai.qa._embeddings import encode_data

        np.random.seed(self.seed)  # qa's PCA of text embeddings may draw from the global random state
        syn, trn, ref = encode_data(rows, self.training_rows, self.reference_rows)
        return (trn, ref) if with_originals else syn

    def distances(self, rows: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per column group: (distances to the 2 nearest training rows, to the 2 nearest reference rows)."""
        embedded = self._encode(rows)
        return [(trn.kneighbors(embedded[:, g])[0], ref.kneighbors(embedded[:, g])[0])
                for (trn, ref), g in zip(self.index, self.groups, strict=True)]

    def measure(self, rows: pd.DataFrame) -> dict:
        """qa's figures for these rows: DCR share (the highest over the column groups) with the mean DCRs and NNDRs of
        that group, each group's share, and each row's closeness to training in each group (rows x groups: 1 closer to
        training, 0 closer to the reference, 0.5 a tie)."""
        distances = self.distances(rows)
        closeness = np.stack([(d_trn[:, 0] < d_ref[:, 0]) + 0.5 * (d_trn[:, 0] == d_ref[:, 0]) for d_trn, d_ref in distances], axis=1)
        shares = closeness.mean(axis=0)
        d_trn, d_ref = distances[int(np.argmax(shares))]
        return {"share": float(shares.max()), "group_shares": shares, "closeness": closeness,
                "dcr_training": float(d_trn[:, 0].mean()), "dcr_reference": float(d_ref[:, 0].mean()),
                "nndr_training": _nndr(d_trn), "nndr_reference": _nndr(d_ref)}


def _nndr(distances: np.ndarray) -> float:
    """qa's NNDR figure: the 10th smallest ratio of nearest to second-nearest distance (smoothed as qa does)."""
    ratios = np.sort((distances[:, 0] + 1e-8) / (distances[:, 1] + 1e-8))
    return float(ratios[min(9, len(ratios) - 1)])


class PrivacyGuard:
    """`enforce` returns the selection with training copies swapped out and its DCR share within the limit (repaired
    where needed); `report` holds the figures for metrics.json."""

    def __init__(self, training: pd.DataFrame, holdout: pd.DataFrame | None, key: str | None, max_dcr_share: float,
                 seed: int, n_sample: int = 10_000, polish_rows: int = 60_000):
        self.key, self.max_dcr_share, self.seed, self.polish_rows = key, max_dcr_share, seed, polish_rows
        self.repairs: list[dict] = []  # one entry per DCR repair: the share it started from, units swapped
        self.n_measured = 0  # DCR measurements made (each on draws of its own)
        self.far: np.ndarray | None = None  # the polish's candidates, once scored
        self.rng = np.random.default_rng(seed)
        self.columns = compared_columns(training, key)
        identifiers = [c for c in training.columns if c != key and c not in self.columns]
        self.training_hashes = np.unique(unit_hashes(training, key, self.columns))
        if holdout is None:  # half of the training units stand in for the holdout, for the distances only
            units = training[key].unique() if key else np.arange(len(training))
            is_reference = np.isin(training[key] if key else np.arange(len(training)), self.rng.permutation(units)[: len(units) // 2])
            near, reference = training[~is_reference], training[is_reference]
        else:
            near, reference = training, holdout
        reference_hashes = unit_hashes(reference, key, self.columns)
        other_hashes = self.training_hashes if holdout is not None else np.unique(unit_hashes(near, key, self.columns))
        self.reference_hashes = np.unique(reference_hashes)
        self.reference_rate = float(np.mean(np.isin(reference_hashes, other_hashes)))
        self.report: dict = {
            "reference": "holdout" if holdout is not None else "training half (no holdout given: only gross copying shows)",
            "compared_columns": len(self.columns), "identifier_columns_left_out": identifiers,
            "reference_copy_rate": round(self.reference_rate, 4), "max_dcr_share": max_dcr_share,
        }
        self.n_sample = min(n_sample, len(near), len(reference))  # equal sizes, as qa draws them
        self.near_rows, self.reference_rows = _qa_rows(near, key, self.columns), _qa_rows(reference, key, self.columns)
        if not self.columns:
            self.report["dcr_note"] = "no columns to compare besides identifiers and the key"
        elif self.n_sample < MIN_DISTANCE_ROWS:
            self.report["dcr_note"] = f"too few rows for distances ({self.n_sample} on the smaller side, {MIN_DISTANCE_ROWS} needed)"

    def _space(self, draw: int) -> DistanceSpace:
        """A distance space on a fresh draw of training and reference rows (and of qa's random column groups): each
        measurement gets one the repairs before it did not see, so that a repair cannot fit one draw's noise."""
        rng = np.random.default_rng([self.seed, draw])
        samples = [rows.iloc[np.sort(rng.choice(len(rows), self.n_sample, replace=False))].reset_index(drop=True)
                   for rows in (self.near_rows, self.reference_rows)]
        return DistanceSpace(*samples, seed=self.seed * 1_000 + draw)

    def is_copy(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, of: np.ndarray | None = None) -> np.ndarray:
        """Which of the (sorted) `units` equal a training unit (or a unit whose hash is in `of`)."""
        hashes = unit_hashes(pool.iloc[problem.pool_rows(units)], self.key, self.columns)
        return np.isin(hashes, self.training_hashes if of is None else of)

    def _rows(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, n: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """qa rows of the given units (a random `n` of them when given) and, per row, the position of its unit."""
        length = problem.pool_groups.length[units]
        rows, owner = problem.pool_rows(units), np.repeat(np.arange(len(units)), length)
        pick = np.arange(len(rows)) if n is None or n >= len(rows) else np.sort(self.rng.choice(len(rows), n, replace=False))
        return _qa_rows(pool.iloc[rows[pick]], self.key, self.columns, length[owner[pick]]), owner[pick]

    def _unit_closeness(self, spaces: list[DistanceSpace], problem: Problem, pool: pd.DataFrame,
                        units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (sorted) units and how close each one's rows sit to training rather than the reference (1: nearer
        training, 0: nearer the reference), averaged over every column group of several draws: one draw's closeness
        of a row is mostly the noise of which rows that draw holds."""
        units = np.sort(units)
        rows, owner = self._rows(problem, pool, units)
        closeness = np.mean([space.measure(rows)["closeness"].mean(axis=1) for space in spaces], axis=0)
        return units, np.bincount(owner, closeness, len(units)) / np.bincount(owner, minlength=len(units))

    def drop_copies(self, pool: pd.DataFrame, log: logging.Logger) -> pd.DataFrame:
        """The pool without most of its units that copy a training unit, before the selection sees it: it keeps a
        random few, as many as the reference's own rate of copies allows, so that common rows stay as common as in
        data the model never saw."""
        hashes = unit_hashes(pool, self.key, self.columns)
        copies = np.flatnonzero(np.isin(hashes, self.training_hashes))
        kept = self.rng.choice(copies, min(len(copies), int(self.reference_rate * len(hashes))), replace=False)
        dropped = np.setdiff1d(copies, kept)
        self.report["pool_copies_dropped"] = int(len(dropped))
        if not len(dropped):
            return pool
        log.info(f"privacy: {len(dropped):,} of the pool's {len(hashes):,} {unit_name(self.key)} copy a training "
                 f"unit; left out of the selection (kept {len(kept):,}, the reference's rate)")
        if self.key is None:
            return pool.drop(index=pool.index[dropped]).reset_index(drop=True)
        codes, _ = pd.factorize(pool[self.key])
        return pool.loc[~np.isin(codes, dropped)].reset_index(drop=True)

    def enforce(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, log: logging.Logger,
                polish: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, until: float = math.inf) -> np.ndarray:
        """`units` without training copies beyond the reference's rate and with a DCR share within the limit (both
        repaired by swaps where needed); raises `DataError` when the pool cannot provide a private selection.

        `polish(units, candidates)` is swap refinement among the given pool units: once swaps of the units nearest
        training (which cost accuracy) have brought the share within the limit, it wins back accuracy with candidates
        nearer the reference than training, while `until` (`time.monotonic()`) leaves time; the share is then
        measured again (and repaired, should the polish have raised it)."""
        units = self._without_copies(problem, pool, np.sort(units), log)
        if "dcr_note" not in self.report:
            units = self._within_dcr_limit(problem, pool, units, log, polish, until)
        self.report["identical_training"] = int(self.is_copy(problem, pool, units).sum())
        self.report["identical_reference"] = int(self.is_copy(problem, pool, units, self.reference_hashes).sum())
        return units

    def _polish(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, polish, log: logging.Logger) -> tuple[np.ndarray, int]:
        """`polish` among free pool units, of `polish_rows` rows in all, that sit nearer the reference than training
        (closeness averaged over draws no measurement uses) and copy no training unit (scored once); returns the
        units and how many were swapped."""
        if self.far is None:
            free = self.rng.permutation(np.setdiff1d(np.arange(problem.n_units), units))
            free = free[: max(int(np.searchsorted(np.cumsum(problem.pool_groups.length[free]), self.polish_rows)), 1)]
            spaces = [self._space(POLISH_DRAW + k) for k in range(POLISH_DRAWS)]
            candidates, closeness = self._unit_closeness(spaces, problem, pool, free)
            candidates = candidates[closeness < 0.5]
            self.far = candidates[~self.is_copy(problem, pool, candidates)]
            self.report["polish_candidates"] = {"scored": int(len(free)), "nearer_the_reference": int(len(self.far))}
            log.info(f"privacy: {len(self.far):,} of {len(free):,} pool {unit_name(self.key)} scored sit nearer the "
                     "reference than training: the candidates of the polish")
        polished = np.sort(polish(units, self.far))
        swapped = int(len(np.setdiff1d(polished, units)))
        log.info(f"privacy: polished the selection: {swapped:,} {unit_name(self.key)} swapped for candidates nearer the reference")
        return polished, swapped

    def _without_copies(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, log: logging.Logger) -> np.ndarray:
        is_copy = self.is_copy(problem, pool, units)
        allowed = int(np.floor(self.reference_rate * len(units)))
        excess = int(is_copy.sum()) - allowed
        self.report.update({"identical_allowed": allowed, "copies_swapped": max(excess, 0)})
        if excess <= 0:
            return units
        free = np.setdiff1d(np.arange(problem.n_units), units)
        candidates = np.sort(self.rng.permutation(free)[: 8 * excess + 1_000])
        candidates = candidates[~self.is_copy(problem, pool, candidates)]
        if len(candidates) < excess:
            raise DataError(f"privacy: {excess:,} selected units copy training units and the pool has too few others "
                            "to replace them; no submission written")
        drop = self.rng.choice(units[is_copy], excess, replace=False)
        log.info(f"privacy: swapping {excess:,} selected units that copy a training unit for other pool units")
        return replace_units(problem, units, drop, candidates)

    def _repair(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, excess: float, draws: list[int]) -> tuple[np.ndarray, int]:
        """Swap selected units nearest training for pool units nearest the reference (clean of copies, chosen by
        objective cost), enough to lower the DCR share by `excess`; returns the units and how many were swapped."""
        spaces = [self._space(draw) for draw in draws]
        estimate = math.ceil(2 * REPAIR_MARGIN * excess * len(units))  # units to swap if each lowers the share by half a unit
        selected, near = self._unit_closeness(spaces, problem, pool, self.rng.permutation(units)[: 4 * estimate + 200])
        free = np.setdiff1d(np.arange(problem.n_units), units)
        candidates, far = self._unit_closeness(spaces, problem, pool, self.rng.permutation(free)[: 12 * estimate + 500])
        candidates, far = candidates[far < 0.5], far[far < 0.5]
        candidates = candidates[~self.is_copy(problem, pool, candidates)]
        order = np.argsort(-near, kind="stable")
        order = order[near[order] > 0.5]  # the selected units nearer training, nearest first
        if not len(candidates) or not len(order):
            return units, 0
        lowered = np.cumsum(near[order] - far.mean())  # how far the swaps lower the share, in units
        n = min(int(np.searchsorted(lowered, REPAIR_MARGIN * excess * len(units))) + 1, len(order), len(candidates))
        return replace_units(problem, units, selected[order[:n]], candidates), n

    def _within_dcr_limit(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, log: logging.Logger,
                          polish, until: float) -> np.ndarray:
        n_rows = min(self.n_sample, int(problem.pool_groups.length[units].sum()))
        se = math.sqrt(0.25 / n_rows)  # the standard error of a share measured on n_rows rows
        # The share (the mean of MEASURE_DRAWS draws) must stay 3 standard errors below the limit, as qa's own sample
        # adds its noise to ours. Where that is below 0.5 + se (small submissions), 0.5 + se passes: such a share is
        # as near the reference as training within its noise, and pushing it lower would only fit noise.
        bar = min(max(self.max_dcr_share - 3 * se, 0.5 + se), self.max_dcr_share)
        target = bar - se  # where repairs aim
        last, passed = None, None  # the last repair ("nearest" or "polish"); the last selection that passed, its figures
        for round_ in range(REPAIR_ROUNDS + 1):
            share, figures = self._measure(problem, pool, units)
            log.info(f"privacy: DCR share {share:.3f} on {n_rows:,} rows (mean of {MEASURE_DRAWS} draws; passes at {bar:.3f}: "
                     f"the limit {self.max_dcr_share} less sampling noise), NNDR {figures['nndr_training']:.3f} to training, "
                     f"{figures['nndr_reference']:.3f} to the reference")
            if share <= bar:
                passed = units, share, figures
                if polish is None or last != "nearest" or round_ == REPAIR_ROUNDS or until - time.monotonic() < POLISH_MIN_SECONDS:
                    break
                (units, n), last = self._polish(problem, pool, units, polish, log), "polish"  # measured next round
            elif round_ == REPAIR_ROUNDS:
                break
            else:
                scoring = [1_000 * (len(self.repairs) + 1) + k for k in range(SCORING_DRAWS)]  # draws no measurement uses
                units, n = self._repair(problem, pool, units, share - target, scoring)
                if n == 0:
                    break
                last = "nearest"
                log.info(f"privacy: swapped {n:,} selected units nearer training than the reference for pool units nearer "
                         "the reference (chosen by objective cost)")
            self.repairs.append({"dcr_share": round(share, 4), "by": last, "swapped": int(n)})
        if share > bar and passed is not None:
            units, share, figures = passed
            log.info(f"privacy: the polish lifted the share again and the repairs did not bring it back: keeping the last "
                     f"selection that passed (DCR share {share:.3f})")
        self.report.update({
            "dcr_share": round(share, 4), "dcr_sample_rows": n_rows, "dcr_passes_at": round(bar, 4),
            "dcr_training": round(figures["dcr_training"], 4), "dcr_reference": round(figures["dcr_reference"], 4),
            "nndr_ratio": round(figures["nndr_training"] / figures["nndr_reference"], 4) if figures["nndr_reference"] > 1e-6 else None,
            "dcr_repairs": self.repairs, "distance_rows": self.n_sample, "dcr_draws": MEASURE_DRAWS,
        })
        if self.report["nndr_ratio"] is None:
            self.report["nndr_note"] = "the reference's own NNDR is 0 (exact row matches are common in this data)"
        if share > bar:
            raise DataError(f"privacy: the selection's DCR share is {share:.3f} after {len(self.repairs)} repairs, above {bar:.3f} "
                            f"(the limit {self.max_dcr_share} less sampling noise): the pool holds too few units nearer the "
                            "reference than training; no submission written (sample a larger pool, raise the temperature, "
                            "or train fewer epochs)")
        return units

    def _measure(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray) -> tuple[float, dict]:
        """The DCR share of the selection, the mean over MEASURE_DRAWS draws of its own, and the first draw's figures."""
        draws = [self._space(MEASURE_DRAWS * self.n_measured + k).measure(self._rows(problem, pool, units, self.n_sample)[0])
                 for k in range(MEASURE_DRAWS)]
        self.n_measured += 1
        return float(np.mean([d["share"] for d in draws])), draws[0]
