"""Privacy guard on the selection, before the submission is written.

Two checks, against a reference that the model never copied from: the holdout when one is given, else half of
the training rows (then both halves were seen in training, so the DCR check only catches gross copying):
- identical matches: selected units (rows, or whole groups) equal to a training unit. The guard swaps them for
  pool units that match no training unit, down to the reference's rate (the reference's own identical matches
  with the rest of the training data).
- DCR share: of a sample of selected rows, the share closer to the training rows than to the reference rows
  (ties count half, as in mostlyai-qa). Distances are L1 over training-quantile ranks of numeric values plus one
  per differing category or missing flag. When the share exceeds `max_dcr_share` by more than its sampling noise
  (two standard errors), the run stops with a clear message. Reported beside it, as in mostlyai-qa: the NNDR
  ratio (10th smallest nearest/second-nearest distance ratio, to training over to the reference) and the
  selected units identical to a reference unit.

The holdout serves only these checks and the final scores; it never steers training or selection otherwise.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd

from common.io import DataError
from common.targets import Problem


@numba.njit(parallel=True, cache=True)
def nearest_distances(queries_num, queries_cat, ref_num, ref_cat):
    """L1 distances of each query row to its nearest and second-nearest reference rows, (n, 2): numeric part
    plus category mismatches."""
    out = np.empty((len(queries_num), 2))
    for i in numba.prange(len(queries_num)):
        best, second = np.inf, np.inf
        for j in range(len(ref_num)):
            d = 0.0
            for k in range(queries_cat.shape[1]):
                d += queries_cat[i, k] != ref_cat[j, k]
            if d >= second:
                continue
            for k in range(queries_num.shape[1]):
                d += abs(queries_num[i, k] - ref_num[j, k])
                if d >= second:
                    break
            if d < best:
                best, second = d, best
            elif d < second:
                second = d
        out[i, 0], out[i, 1] = best, second
    return out


def nndr(distances: np.ndarray) -> float:
    """qa's NNDR figure: the 10th smallest ratio of nearest to second-nearest distance (0/0 counts as 1)."""
    ratios = np.divide(distances[:, 0], distances[:, 1], out=np.ones(len(distances)), where=distances[:, 1] > 0)
    return float(np.sort(ratios)[min(9, len(ratios) - 1)])


def _ratio(a: float, b: float) -> float:
    """a / b, with 0 / 0 = 1 (both sets hold exact row matches)."""
    return a / b if b > 0 else (1.0 if a == 0 else float("inf"))


class RowFeatures:
    """Rows as (numeric ranks in [0, 1], category codes) for distances, fitted on the training data."""

    def __init__(self, training: pd.DataFrame, columns: list[str]):
        self.numeric = [c for c in columns if pd.api.types.is_numeric_dtype(training[c]) and not pd.api.types.is_bool_dtype(training[c])]
        self.categorical = [c for c in columns if c not in self.numeric]
        self.sorted = {c: np.sort(training[c].dropna().to_numpy(dtype=float)) for c in self.numeric}
        self.levels = {c: pd.Index(training[c].astype("string").dropna().unique()) for c in self.categorical}

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        num = np.zeros((len(df), len(self.numeric)))
        cat = np.zeros((len(df), len(self.categorical) + len(self.numeric)), dtype=np.int32)
        for k, c in enumerate(self.numeric):
            values = df[c].to_numpy(dtype=float, na_value=np.nan)
            ref = self.sorted[c]
            num[:, k] = np.searchsorted(ref, values) / max(len(ref), 1)
            num[np.isnan(values), k] = 0.0
            cat[:, len(self.categorical) + k] = np.isnan(values)  # a missing value differs from any number by one
        for k, c in enumerate(self.categorical):
            cat[:, k] = self.levels[c].get_indexer(df[c].astype("string"))  # -1: unseen or missing
        return num, cat


def unit_hashes(df: pd.DataFrame, columns: list[str], key: str | None) -> np.ndarray:
    """One uint64 per unit: a row's values, or (sequential) the values of all rows of the group, in order."""
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in columns]
    values = pd.DataFrame({c: df[c].astype("float64" if is_num else "string") for c, is_num in zip(columns, numeric, strict=True)})
    rows = pd.util.hash_pandas_object(values, index=False).to_numpy()
    if key is None:
        return rows
    codes, _ = pd.factorize(df[key])
    position = pd.Series(codes).groupby(codes).cumcount().to_numpy().astype(np.uint64)
    mixed = rows * np.uint64(0x9E3779B97F4A7C15) ^ (position + np.uint64(1)) * np.uint64(0xC2B2AE3D27D4EB4F)
    out = np.zeros(codes.max() + 1, dtype=np.uint64)
    np.add.at(out, codes, mixed)
    return out


class PrivacyGuard:
    """`enforce` swaps identical training copies out of a selection and checks its DCR share; `report` holds the
    figures for metrics.json."""

    def __init__(self, training: pd.DataFrame, holdout: pd.DataFrame | None, key: str | None, max_dcr_share: float,
                 seed: int, n_sample: int = 5_000):
        self.key, self.max_dcr_share, self.n_sample = key, max_dcr_share, n_sample
        self.columns = [c for c in training.columns if c != key]
        rng = np.random.default_rng(seed)
        self.report: dict = {"reference": "holdout" if holdout is not None else "training half"}
        if holdout is None:  # half of the training units stand in for the holdout
            units = training[key].unique() if key else np.arange(len(training))
            reference_units = rng.permutation(units)[: len(units) // 2]
            is_ref = training[key].isin(reference_units).to_numpy() if key else np.isin(np.arange(len(training)), reference_units)
            training, holdout = training[~is_ref], training[is_ref]
        self.training_hashes = set(unit_hashes(training, self.columns, key).tolist())
        ref_hashes = unit_hashes(holdout, self.columns, key)
        self.reference_hashes = set(ref_hashes.tolist())
        self.reference_rate = float(np.mean([h in self.training_hashes for h in ref_hashes.tolist()]))
        n = min(len(training), len(holdout))  # equal sizes, as qa does
        self.features = RowFeatures(training, self.columns)
        self.trn = self.features.transform(training.sample(n, random_state=seed) if len(training) > n else training)
        self.ref = self.features.transform(holdout.sample(n, random_state=seed) if len(holdout) > n else holdout)

    def copies(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, of: set | None = None) -> np.ndarray:
        """Which of the (sorted) `units` equal a training unit (or a unit whose hash is in `of`)."""
        of = self.training_hashes if of is None else of
        hashes = unit_hashes(pool.iloc[problem.pool_rows(units)], self.columns, self.key)
        return np.fromiter((h in of for h in hashes.tolist()), dtype=bool, count=len(hashes))

    def enforce(self, problem: Problem, pool: pd.DataFrame, units: np.ndarray, rng: np.random.Generator, log) -> np.ndarray:
        """`units` with copies of training units beyond the reference's rate swapped for other pool units; raises
        `DataError` when the DCR share is clearly above the limit."""
        units = np.sort(units)
        is_copy = self.copies(problem, pool, units)
        allowed = int(np.floor(self.reference_rate * len(units)))
        excess = int(is_copy.sum()) - allowed
        if excess > 0:
            drop = rng.choice(units[is_copy], excess, replace=False)
            free = np.sort(rng.permutation(np.setdiff1d(np.arange(problem.n_units), units))[: 4 * excess + 100])
            free = free[~self.copies(problem, pool, free)]
            if len(free) < excess:
                raise DataError(f"privacy: {excess:,} selected units copy training units and the pool has too few others")
            units = np.sort(np.concatenate([np.setdiff1d(units, drop), rng.choice(free, excess, replace=False)]))
            log.info(f"privacy: swapped {excess:,} selected units that copy a training unit for other pool units")
        rows = problem.pool_rows(units)
        sample = pool.iloc[np.sort(rng.choice(rows, min(self.n_sample, len(rows)), replace=False))]
        num, cat = self.features.transform(sample)
        to_trn, to_ref = nearest_distances(num, cat, *self.trn), nearest_distances(num, cat, *self.ref)
        d_trn, d_ref = to_trn[:, 0], to_ref[:, 0]
        share = float(np.mean(d_trn < d_ref) + np.mean(d_trn == d_ref) / 2)
        self.report.update({
            "dcr_share": round(share, 4), "max_dcr_share": self.max_dcr_share, "sample_rows": len(sample),
            "identical_training": int(is_copy.sum()) - max(excess, 0), "identical_allowed": allowed,  # replacements are clean
            "dcr_training": round(float(np.mean(d_trn)), 4), "dcr_reference": round(float(np.mean(d_ref)), 4),
            "nndr_ratio": round(_ratio(nndr(to_trn), nndr(to_ref)), 4),
            "identical_reference": int(self.copies(problem, pool, units, self.reference_hashes).sum()),
        })
        log.info(f"privacy: DCR share {share:.3f} (limit {self.max_dcr_share}), NNDR ratio {self.report['nndr_ratio']:.3f}, "
                 f"identical to training {self.report['identical_training']:,} (allowed {allowed:,})")
        if share - 2 * np.sqrt(0.25 / len(sample)) > self.max_dcr_share:
            raise DataError(f"privacy: the selection's DCR share is {share:.3f}, above the limit {self.max_dcr_share}: it sits "
                            "closer to the training rows than the reference does; no submission written (lower the "
                            "generator's epochs, raise the temperature, or raise max_dcr_share knowingly)")
        return units
