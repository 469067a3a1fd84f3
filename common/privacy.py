"""Privacy guard on the selection, before the submission is written.

Two checks, each with a repair, so that a run writes a private submission rather than none:

- identical copies: selected units (rows, or whole groups) equal to any training unit, compared on every column
  but the identifier-like ones (see below). Copies beyond the reference's own rate (how often reference units
  equal a training unit) are swapped for clean pool units that cost the objective least.
- DCR share: of a sample of selected rows, the share closer to the training rows than to the reference rows
  (ties count half), computed as mostlyai-qa computes it, with its own code: rows embedded by qa's encoder
  (numbers through quantiles, text through its language embeddings, unit length), L2 nearest neighbours, and the
  highest share over qa's column groups (all columns, three correlated and three random subsets). qa's share is
  noisy (it samples 10,000 rows of each side), so the guard judges the chance that qa finds the selection over
  `max_dcr_share`: each column group's expected share (the chance, per row, that qa's draw finds it nearer training,
  worked out from its nearest neighbours among several times qa's sample of each side, averaged over the selection's
  rows, each scored once: the systematic part, which repairs can change) plus the binomial noise of qa's sample,
  summed over the groups and averaged over draws of qa's random groups.
  When that chance is above three standard errors' worth (0.13 %), the selected units nearest training (by
  expected closeness on draws no measurement uses, in the groups that most decide that chance) are
  swapped for pool units that sit nearer the reference, chosen by objective cost, and the share is measured again.
  Those swaps cost accuracy; once the share passes, the selection is polished: swap refinement whose candidates are
  only pool units nearer the reference than training (and no training copies), each swap bringing in a unit no
  nearer training than the one it takes out, which wins most of it back without lifting the share; the share is
  measured again (unless the polish, out of time, swapped nothing). Only when repairs fail does the run stop.

The reference is the holdout when one is given. Without one there is no DCR check: the share needs rows the model
never saw and the judge does not count as training, and a training file holds none. A random half of the training
units then stands in only for the rate of identical copies that unseen data shares with training; the copy check
always compares with every training unit. (A half of training reads about 0.5 whatever the model memorised, since
the model saw both halves; training units kept from the model miss the selection's pull toward every training unit,
the kept ones too: docs/privacy.md.) Identifier-like columns (text or integers unique to nearly every row) are
left out of both checks: a copied row under a fresh identifier is still a copy, and an identifier never makes two
rows close.

The holdout serves only these checks (and the candidates the repairs may use) and the final scores; it never steers
training or the selection's objective.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numba
import numpy as np
import pandas as pd
from scipy.stats import norm

from common.io import DataError, unit_name
from common.refine import replace_units
from common.targets import Problem

IDENTIFIER_SHARE = 0.95  # a column whose values are unique in at least this share of its rows names rows
MIN_DISTANCE_ROWS = 50  # fewer rows on either side: no DCR share (reported as such)
REPAIR_ROUNDS = 10
STALL_SHARE = 0.1  # a nearest repair that lowers the expected share by less than this share of what it aims at stalls:
STALLED_REPAIRS = 2  # this many in a row end the repairs (the pool holds too few units nearer the reference)
MEASURE_DRAWS = 3  # draws whose DCR shares are averaged for each measurement
SCORING_DRAWS = 3  # draws whose column groups a repair's closeness covers (qa's random groups differ by draw)
SCORING_ROWS = 8  # the rows of each side a scoring draw holds, in multiples of qa's sample (all, when fewer)
NEIGHBOURS = 64  # nearest rows of each side that decide a row's expected closeness
TIE = 1e-6  # distances this close count as a tie (qa counts exact ties half)
POLISH_DRAW = 100_000  # the draw that scores the polish's candidates (measurements and repairs use others)
RANK_DRAW = 150_000  # the draw that ranks the units the polish swaps
EXPECTED_DRAW = 200_000  # the draw whose expected shares judge the selection
PACE_DRAW = 250_000  # the draw of the selected units whose rows measure the judge's pace
JUDGED_ROWS = 50_000  # of a larger selection, a fixed random subset of about this many rows judges its expected share
ACCEPTED_RISK = float(norm.sf(3.0))  # the chance of qa's share reaching the limit that passes: three standard errors
POLISH_MIN_SECONDS = 60  # a polish needs at least this much time to swap before the run's end (besides its scoring)
REPAIR_MARGIN = 2.0  # a repair swaps enough to lower the expected share by this many times the excess: units are
# chosen by their closeness on draws of their own, whose random column groups are not those of the measurement
RESERVED_EXCESS = (0.01, 0.005, 0.005)  # the repairs the DCR check's time reserve plans for, by the excess each lowers
                                        # (the prize SEQUENTIAL data: 0.010-0.011, 0.005, 0.004; 1-4 elsewhere)
PACE_ROWS = 5_000  # rows the judge scores to measure its pace for that reserve (fewer: a slower pace per row)
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
    DCR share of a table's rows as qa computes it; `expected_closeness(rows, n_drawn)` gives, per row and column
    group, the chance that the row sits closer to training than to the reference when qa draws only `n_drawn` of the
    space's rows on each side. Its column groups are qa's (all columns, three correlated groups and three random ones,
    from `seed`), with `random_draws` draws of the random groups: `draws[k]` are the groups of the k-th."""

    def __init__(self, training_rows: pd.DataFrame, reference_rows: pd.DataFrame, seed: int, random_draws: int = 1):
        from mostlyai.qa._distances import split_columns_into_correlated_groups, split_columns_into_random_groups
        from sklearn.neighbors import NearestNeighbors

        self.seed = seed
        self.training_rows, self.reference_rows = training_rows, reference_rows
        trn, ref = self._encode(reference_rows, with_originals=True)
        np.random.seed(seed)  # qa draws its column groups from the global random state
        together = np.vstack([trn, ref])
        groups = [(np.arange(trn.shape[1]), None)]  # (columns, the draw of random groups it belongs to; None: every draw)
        if trn.shape[1] > 10:
            groups += [(g, None) for g in split_columns_into_correlated_groups(together, k=3)]
            groups += [(g, d) for d in range(random_draws) for g in split_columns_into_random_groups(together, k=3)]
        groups = [(np.asarray(g), d) for g, d in groups if len(g)]
        self.groups = [g for g, _ in groups]
        self.draws = [np.array([i for i, (_, d) in enumerate(groups) if d in (None, k)]) for k in range(random_draws)]
        self.index = [(NearestNeighbors(n_neighbors=2, n_jobs=-1).fit(trn[:, g]),  # queries on every core
                       NearestNeighbors(n_neighbors=2, n_jobs=-1).fit(ref[:, g])) for g in self.groups]

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

    def expected_closeness(self, rows: pd.DataFrame, n_drawn: int) -> np.ndarray:
        """Per row and column group (rows x groups), the chance that the row sits nearer training than the reference
        (a tie counting half) in qa's measurement on `n_drawn` rows drawn from each side of this space: worked out from
        the row's nearest rows on either side rather than sampled, so that a unit's score is its systematic closeness
        and not the luck of one draw (on the prize SEQUENTIAL data, a row's expected closeness correlates 0.17 with
        its closeness in a fresh draw, an average of three draws 0.04)."""
        embedded = self._encode(rows)
        k = min(NEIGHBOURS, len(self.training_rows), len(self.reference_rows))
        kept = (min(n_drawn / len(self.training_rows), 1.0), min(n_drawn / len(self.reference_rows), 1.0))
        return np.stack([_chance_nearer_training(trn.kneighbors(embedded[:, g], n_neighbors=k)[0],
                                                 ref.kneighbors(embedded[:, g], n_neighbors=k)[0], *kept)
                         for (trn, ref), g in zip(self.index, self.groups, strict=True)], axis=1)

    def measure(self, rows: pd.DataFrame) -> dict:
        """qa's figures for these rows: DCR share (the highest over the column groups, each row counting 1 when closer
        to training, 0 when closer to the reference, 0.5 at a tie) with the mean DCRs and NNDRs of that group."""
        distances = self.distances(rows)
        closeness = np.stack([(d_trn[:, 0] < d_ref[:, 0]) + 0.5 * (d_trn[:, 0] == d_ref[:, 0]) for d_trn, d_ref in distances], axis=1)
        shares = closeness.mean(axis=0)
        d_trn, d_ref = distances[int(np.argmax(shares))]
        return {"share": float(shares.max()),
                "dcr_training": float(d_trn[:, 0].mean()), "dcr_reference": float(d_ref[:, 0].mean()),
                "nndr_training": _nndr(d_trn), "nndr_reference": _nndr(d_ref)}


@numba.njit(cache=True)
def _chance_nearer_training(d_trn: np.ndarray, d_ref: np.ndarray, kept_trn: float, kept_ref: float) -> np.ndarray:
    """Per row: the chance that the nearest of the training rows a draw keeps (each with chance `kept_trn`) is nearer
    than the nearest of the reference rows it keeps (`kept_ref`), a tie counting half, from the distances to each
    side's nearest rows (rows x k, ascending). Walks the distances upwards level by level; what the k nearest rows
    leave undecided counts half."""
    n, k = d_trn.shape
    out = np.empty(n)
    for i in range(n):
        a = b = 0
        undecided, chance = 1.0, 0.0
        while a < k and b < k and undecided > 1e-9:
            level = min(d_trn[i, a], d_ref[i, b])
            n_trn = n_ref = 0
            while a < k and d_trn[i, a] <= level + TIE:
                a += 1
                n_trn += 1
            while b < k and d_ref[i, b] <= level + TIE:
                b += 1
                n_ref += 1
            hit_trn, hit_ref = 1.0 - (1.0 - kept_trn) ** n_trn, 1.0 - (1.0 - kept_ref) ** n_ref
            chance += undecided * (hit_trn * (1.0 - hit_ref) + 0.5 * hit_trn * hit_ref)
            undecided *= (1.0 - hit_trn) * (1.0 - hit_ref)
        out[i] = chance + 0.5 * undecided
    return out


def _nndr(distances: np.ndarray) -> float:
    """qa's NNDR figure: the 10th smallest ratio of nearest to second-nearest distance (smoothed as qa does)."""
    ratios = np.sort((distances[:, 0] + 1e-8) / (distances[:, 1] + 1e-8))
    return float(ratios[min(9, len(ratios) - 1)])


def _repair_sample(excess: float, n_units: int) -> tuple[int, int]:
    """How many selected units, and free pool units, a repair scores to lower the expected share of a selection of
    `n_units` by `excess`: the former enough for REPAIR_MARGIN x the excess if each swap lowers the share by half a
    unit; the latter three times as many, of which those nearer the reference are its candidates."""
    estimate = math.ceil(2 * REPAIR_MARGIN * excess * n_units)
    return 4 * estimate + 200, 12 * estimate + 500


class PrivacyGuard:
    """`enforce` returns the selection with training copies swapped out and its DCR share within the limit (repaired
    where needed); `report` holds the figures for metrics.json."""

    def __init__(self, training: pd.DataFrame, holdout: pd.DataFrame | None, key: str | None, max_dcr_share: float,
                 seed: int, n_sample: int = 10_000, polish_rows: int = 60_000):
        self.key, self.max_dcr_share, self.seed, self.polish_rows = key, max_dcr_share, seed, polish_rows
        self.repairs: list[dict] = []  # one entry per DCR repair: the share it started from, units swapped
        self.n_measured = 0  # DCR measurements made (each on draws of its own)
        self.far: np.ndarray | None = None  # the polish's candidates, once scored
        self.ranking: tuple[np.ndarray, DistanceSpace] | None = None  # the polish's ranks of the pool units, and their draw
        self.judge: DistanceSpace | None = None  # the space whose expected shares judge every measurement
        self.closeness: np.ndarray | None = None  # per pool row and judge column group, its expected closeness (once scored)
        self.judged: np.ndarray | None = None  # per pool row, a uniform draw: rows below the share JUDGED_ROWS allows are judged
        self.seconds_per_row: float | None = None  # the judge's pace: seconds to score one row in a space of one draw
        self.rng = np.random.default_rng(seed)
        self.columns = compared_columns(training, key)
        identifiers = [c for c in training.columns if c != key and c not in self.columns]
        self.training_hashes = np.unique(unit_hashes(training, key, self.columns))
        if holdout is None:  # half of the training units stand in for unseen data, for the rate of copies only
            units = training[key].unique() if key else np.arange(len(training))
            is_reference = np.isin(training[key] if key else np.arange(len(training)), self.rng.permutation(units)[: len(units) // 2])
            reference, other_hashes = training[is_reference], np.unique(unit_hashes(training[~is_reference], key, self.columns))
        else:
            reference, other_hashes = holdout, self.training_hashes
        reference_hashes = unit_hashes(reference, key, self.columns)
        self.reference_hashes = np.unique(reference_hashes)
        self.reference_rate = float(np.mean(np.isin(reference_hashes, other_hashes)))
        self.report: dict = {
            "reference": "holdout" if holdout is not None else "training half (copies only; no holdout given)",
            "compared_columns": len(self.columns), "identifier_columns_left_out": identifiers,
            "reference_copy_rate": round(self.reference_rate, 4), "max_dcr_share": max_dcr_share,
        }
        self.n_sample = min(n_sample, len(training), len(reference))  # equal sizes, as qa draws them
        if holdout is None:
            self.report["dcr_note"] = "needs a holdout: rows the model never saw that qa does not count as training"
        elif not self.columns:
            self.report["dcr_note"] = "no columns to compare besides identifiers and the key"
        elif self.n_sample < MIN_DISTANCE_ROWS:
            self.report["dcr_note"] = f"too few rows for distances ({self.n_sample} on the smaller side, {MIN_DISTANCE_ROWS} needed)"
        else:
            self.training_rows, self.holdout_rows = _qa_rows(training, key, self.columns), _qa_rows(holdout, key, self.columns)

    def _space(self, draw: int, scale: int = 1, random_draws: int = 1) -> DistanceSpace:
        """A distance space on a fresh draw of `scale` times qa's sample of training and reference rows (all of them,
        when fewer), and of qa's random column groups (`random_draws` of them): each measurement gets one the repairs
        before it did not see, so that a repair cannot fit one draw's noise."""
        rng = np.random.default_rng([self.seed, draw, scale])
        samples = [rows.iloc[np.sort(rng.choice(len(rows), min(scale * self.n_sample, len(rows)), replace=False))].reset_index(drop=True)
                   for rows in (self.training_rows, self.holdout_rows)]
        return DistanceSpace(*samples, seed=self.seed * 1_000 + draw, random_draws=random_draws)

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

    def _group_closeness(self, spaces: list[DistanceSpace], problem: Problem, pool: pd.DataFrame,
                         units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (sorted) units, how close each one's rows sit to training rather than the reference in each column
        group of each space (units x groups; 1: nearer training, 0: nearer the reference; their expected closeness in
        qa's measurement), and each unit's rows."""
        units = np.sort(units)
        rows, owner = self._rows(problem, pool, units)
        n_rows = np.bincount(owner, minlength=len(units))
        closeness = np.hstack([space.expected_closeness(rows, self.n_sample) for space in spaces])
        return units, np.stack([np.bincount(owner, c, len(units)) for c in closeness.T], axis=1) / n_rows[:, None], n_rows

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

        `polish(units, candidates, rank)` is swap refinement among the given pool units, each swap bringing in a unit
        ranked no higher than the one it takes out: once swaps of the units nearest training (which cost accuracy)
        have brought the share within the limit, it wins back accuracy with candidates nearer the reference than
        training, ranked by their closeness to training so that it does not lift the share again, while `until`
        (`time.monotonic()`) leaves time; the share is then measured again (and repaired, should it still be over),
        unless the polish swapped nothing."""
        units = self._without_copies(problem, pool, np.sort(units), log)
        if "dcr_note" not in self.report:
            units = self._within_dcr_limit(problem, pool, units, log, polish, until)
        else:
            log.info(f"privacy: no DCR check ({self.report['dcr_note']})")
        self.report["identical_training"] = int(self.is_copy(problem, pool, units).sum())
        self.report["identical_reference"] = int(self.is_copy(problem, pool, units, self.reference_hashes).sum())
        return units

    def _polish(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, polish, log: logging.Logger) -> tuple[np.ndarray, int]:
        """`polish` among free pool units, of `polish_rows` rows in all, that sit nearer the reference than training
        (closeness averaged over the column groups of a draw no measurement uses) and copy no training unit (scored
        once), each swap bringing in a unit no nearer training than the one it takes out (`_rank`); returns the units
        and how many were swapped."""
        if self.far is None:
            free = self.rng.permutation(np.setdiff1d(np.arange(problem.n_units), units))
            free = free[: max(int(np.searchsorted(np.cumsum(problem.pool_groups.length[free]), self.polish_rows)), 1)]
            candidates, closeness, _ = self._group_closeness([self._space(POLISH_DRAW, SCORING_ROWS)], problem, pool, free)
            candidates = candidates[closeness.mean(axis=1) < 0.5]
            self.far = candidates[~self.is_copy(problem, pool, candidates)]
            self.report["polish_candidates"] = {"scored": int(len(free)), "nearer_the_reference": int(len(self.far))}
            log.info(f"privacy: {len(self.far):,} of {len(free):,} pool {unit_name(self.key)} scored sit nearer the "
                     "reference than training: the candidates of the polish")
        polished = np.sort(polish(units, self.far, self._rank(problem, pool, np.concatenate([self.far, units]))))
        swapped = int(len(np.setdiff1d(polished, units)))
        log.info(f"privacy: polished the selection: {swapped:,} {unit_name(self.key)} swapped for candidates nearer the reference")
        return polished, swapped

    def _polish_seconds(self, problem: Problem, units: np.ndarray) -> float:
        """The least time a polish needs before the run's end: POLISH_MIN_SECONDS to swap, plus, at the pace the judge
        scored its rows, scoring its candidates and ranking them with the selection (once; a polish that got no time
        to swap spent minutes on that on the prize SEQUENTIAL data)."""
        rows = (self.polish_rows if self.far is None else 0) + (int(problem.pool_groups.length[units].sum()) if self.ranking is None else 0)
        return POLISH_MIN_SECONDS + rows * self.seconds_per_row

    def reserve_seconds(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray) -> float:
        """The seconds the DCR check is expected to need for a selection like `units` (the run keeps them from the
        annealing), at the pace this machine's judge scores rows (measured here on PACE_ROWS of them, once): the
        judge's reading of every selected row, then a repair at each excess of RESERVED_EXCESS with a reading after
        it; no polish. 0 without a DCR check."""
        if "dcr_note" in self.report:
            return 0.0
        length = problem.pool_groups.length[units]
        if self.seconds_per_row is None:
            sample = np.random.default_rng([self.seed, PACE_DRAW]).permutation(units)
            self._expected_shares(problem, pool, sample[: np.searchsorted(np.cumsum(problem.pool_groups.length[sample]), PACE_ROWS) + 1])
        judged = min(JUDGED_ROWS, int(length.sum())) * len(self.judge.groups) / len(self.judge.draws[0])
        reading = MEASURE_DRAWS * self.n_sample  # rows a reading scores besides the judge's (in smaller spaces: an upper bound)
        repairs = SCORING_DRAWS * float(length.mean()) * sum(sum(_repair_sample(e, len(units))) for e in RESERVED_EXCESS)
        return (judged + reading * (len(RESERVED_EXCESS) + 1) + repairs) * self.seconds_per_row

    def _rank(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray) -> np.ndarray:
        """Per pool unit, its closeness to training (averaged over the column groups) on a draw of its own, for the
        given units (each scored once; others rank infinitely near). The candidates were picked on another draw,
        where their closeness is low partly by luck: ranked on that one, a polish would lift the share."""
        if self.ranking is None:
            self.ranking = np.full(problem.n_units, np.inf), self._space(RANK_DRAW, SCORING_ROWS)
        rank, space = self.ranking
        units = units[np.isinf(rank[units])]
        if len(units):
            ranked, closeness, _ = self._group_closeness([space], problem, pool, units)
            rank[ranked] = closeness.mean(axis=1)
        return rank

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

    def _repair(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, excess: float, noise: float,
                draw: int) -> tuple[np.ndarray, int]:
        """Swap selected units nearest training for pool units nearest the reference (clean of copies, chosen by
        objective cost), enough to lower the DCR share by `excess`; returns the units and how many were swapped.
        Closeness is judged on the column groups of SCORING_DRAWS draws of `SCORING_ROWS` times qa's sample where the
        selection sits nearer training, each weighted by how far and by how much its share moves the chance that qa
        finds the selection over the limit (the density of qa's `noise` there): qa keeps the highest group's share, so
        swaps that lower the others help little."""
        spaces = [self._space(draw + k, SCORING_ROWS) for k in range(SCORING_DRAWS)]
        n_selected, n_free = _repair_sample(excess, len(units))
        selected, near, n_rows = self._group_closeness(spaces, problem, pool, self.rng.permutation(units)[:n_selected])
        shares = n_rows @ near / n_rows.sum()
        weights = np.clip(shares - 0.5, 0, None) * norm.pdf((self.max_dcr_share - shares) / noise)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(shares), 1 / len(shares))
        near = near @ weights
        free = np.setdiff1d(np.arange(problem.n_units), units)
        candidates, far, _ = self._group_closeness(spaces, problem, pool, self.rng.permutation(free)[:n_free])
        far = far @ weights
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
        last, passed = None, None  # the last repair ("nearest" or "polish"); the last selection that passed, its figures
        headway, stalled = math.inf, 0  # the expected share a nearest repair must get below not to stall; stalls in a row
        for round_ in range(REPAIR_ROUNDS + 1):
            m = self._measure(problem, pool, units, n_rows)
            if last == "nearest":
                stalled = stalled + 1 if m["expected"] > headway else 0
            log.info(f"privacy: DCR share {m['share']:.3f} on {n_rows:,} rows (as qa measures it, mean of {MEASURE_DRAWS} "
                     f"draws), expected {m['expected']:.3f} in the nearest column group; with qa's noise ({m['noise']:.4f}) "
                     f"the chance that qa finds it over the limit {self.max_dcr_share} is {m['risk']:.2%} (passes at "
                     f"{ACCEPTED_RISK:.2%}); NNDR {m['nndr_training']:.3f} to training, {m['nndr_reference']:.3f} to the reference")
            if m["passes"]:
                passed = units, m
                if polish is None or last != "nearest" or round_ == REPAIR_ROUNDS:
                    break
                needed, left = self._polish_seconds(problem, units), until - time.monotonic()
                if left < needed:
                    log.info(f"privacy: no polish: it needs about {needed:.0f} s and the time budget leaves {max(left, 0):.0f} s")
                    break
                (units, n), last = self._polish(problem, pool, units, polish, log), "polish"  # measured next round
            elif round_ == REPAIR_ROUNDS or stalled == STALLED_REPAIRS:
                break
            else:
                scoring = 1_000 * (len(self.repairs) + 1)  # the first of SCORING_DRAWS draws no measurement uses
                units, n = self._repair(problem, pool, units, m["excess"], m["noise"], scoring)
                if n == 0:
                    break
                last, headway = "nearest", m["expected"] - STALL_SHARE * REPAIR_MARGIN * m["excess"]  # it aims at REPAIR_MARGIN x the excess
                log.info(f"privacy: swapped {n:,} selected units nearer training than the reference for pool units nearer "
                         "the reference (chosen by objective cost)")
            self.repairs.append({"dcr_share": round(m["share"], 4), "expected": round(m["expected"], 4),
                                 "risk": round(m["risk"], 5), "by": last, "swapped": int(n)})
            if last == "polish" and n == 0:  # (out of time) the selection that passed stands: a fresh reading of it
                break                        # would add only noise, and repairs prompted by noise cost accuracy
        if not m["passes"] and passed is not None:
            units, m = passed
            log.info(f"privacy: the polish lifted the share again and the repairs did not bring it back: keeping the last "
                     f"selection that passed (expected DCR share {m['expected']:.3f})")
        self.report.update({
            "dcr_share": round(m["share"], 4), "dcr_share_expected": round(m["expected"], 4), "dcr_noise": round(m["noise"], 5),
            "dcr_risk": round(m["risk"], 5), "dcr_accepted_risk": round(ACCEPTED_RISK, 5), "dcr_sample_rows": n_rows,
            "dcr_training": round(m["dcr_training"], 4), "dcr_reference": round(m["dcr_reference"], 4),
            "nndr_ratio": round(m["nndr_training"] / m["nndr_reference"], 4) if m["nndr_reference"] > 1e-6 else None,
            "dcr_repairs": self.repairs, "distance_rows": self.n_sample, "dcr_draws": MEASURE_DRAWS,
        })
        if self.report["nndr_ratio"] is None:
            self.report["nndr_note"] = "the reference's own NNDR is 0 (exact row matches are common in this data)"
        if not m["passes"]:
            raise DataError(f"privacy: after {len(self.repairs)} repairs the selection's expected DCR share is {m['expected']:.3f} "
                            f"and qa would find it over the limit {self.max_dcr_share} with a chance of {m['risk']:.2%}: the "
                            "pool holds too few units nearer the reference than training; no submission written (sample a "
                            "larger pool, raise the temperature, or train fewer epochs)")
        return units

    def _measure(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, n_rows: int) -> dict:
        """The selection's DCR share as qa measures it ("share": the mean over MEASURE_DRAWS draws of its own, each on
        a fresh sample of rows, as qa draws it) and whether it passes.

        It passes when the chance that qa's share reaches the limit is at most ACCEPTED_RISK, or when no column group's
        expected share exceeds 0.5 by more than one standard error of the rows that judge it (small data, whose share
        is mostly noise: the selection then sits as near the reference as training). qa's share is the highest of its
        column groups' shares; each is the group's expected share (its systematic part, the part a repair can change:
        the mean over the selection's rows, see `_expected_shares`, not over a sample of them, whose luck the binomial
        noise already covers: on the demo flat table a 10,000-row sample moved the expected share by 0.0016, the chance
        of failing by a factor of 3) plus the binomial noise of qa's sample. The chance is bounded by the sum over the
        groups ("risk", averaged over the draws of qa's random groups). The bound counts the groups as independent,
        which they are not, and the noise leaves out what qa's draw of training and reference rows adds: on the prize
        SEQUENTIAL data the two roughly cancel (a selection passed at 0.13 % measured 0.5086 on average over 20 of qa's draws, with a
        standard deviation of 0.0038: three of them below the limit). "expected": the nearest group's expected share;
        "excess": how far to lower it to pass."""
        spaces = [self._space(MEASURE_DRAWS * self.n_measured + k) for k in range(MEASURE_DRAWS)]
        draws = [space.measure(self._rows(problem, pool, units, self.n_sample)[0]) for space in spaces]
        self.n_measured += 1
        shares = self._expected_shares(problem, pool, units)
        expected = [shares[groups] for groups in self.judge.draws]
        noise = math.sqrt(0.25 / n_rows)
        risk = float(np.mean([min(norm.sf((self.max_dcr_share - e) / noise).sum(), 1.0) for e in expected]))
        highest = max(float(e.max()) for e in expected)
        floor = 0.5 + math.sqrt(0.25 / min(len(self.judge.training_rows), len(self.judge.reference_rows)))
        n_groups = max(len(e) for e in expected)
        bar = max(self.max_dcr_share - norm.isf(ACCEPTED_RISK / n_groups) * noise, floor)  # every group below: passes
        return draws[0] | {"share": float(np.mean([d["share"] for d in draws])), "expected": float(np.mean([e.max() for e in expected])),
                           "noise": noise, "risk": risk, "passes": risk <= ACCEPTED_RISK or highest <= floor,
                           "excess": highest - bar + 0.5 * math.sqrt(0.25 / n_rows)}

    def _expected_shares(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray) -> np.ndarray:
        """Per column group of the judge (one space of `SCORING_ROWS` times qa's sample, with MEASURE_DRAWS draws of
        qa's random groups), the expected DCR share of the selection: the mean expected closeness of its rows (at most
        JUDGED_ROWS of them: a fixed random share of the pool's rows beyond). Each pool row is scored once, so that a
        measurement after a repair scores only the rows it brought in."""
        if self.judge is None:
            self.judge = self._space(EXPECTED_DRAW, SCORING_ROWS, MEASURE_DRAWS)
            self.closeness = np.full((len(pool), len(self.judge.groups)), np.nan, dtype=np.float32)
            self.judged = np.random.default_rng([self.seed, EXPECTED_DRAW]).random(len(pool))
        length = problem.pool_groups.length[units]
        rows, row_length = problem.pool_rows(units), np.repeat(length, length)
        kept = self.judged[rows] < JUDGED_ROWS / len(rows)
        rows, row_length = rows[kept], row_length[kept]
        new = np.isnan(self.closeness[rows, 0])
        if new.any():
            clock = time.monotonic()
            scored = _qa_rows(pool.iloc[rows[new]], self.key, self.columns, row_length[new])
            self.closeness[rows[new]] = self.judge.expected_closeness(scored, self.n_sample)
            if self.seconds_per_row is None:  # in a space of one draw of qa's random groups (the judge holds MEASURE_DRAWS)
                self.seconds_per_row = (time.monotonic() - clock) / new.sum() * len(self.judge.draws[0]) / len(self.judge.groups)
        return self.closeness[rows].mean(axis=0, dtype=np.float64)
