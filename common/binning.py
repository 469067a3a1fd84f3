"""The bins mostlyai-qa uses for accuracy, as integer codes.

`ColumnData` holds one column as arrays, converted once: float64 values (numeric, booleans too), int64
nanoseconds (datetime), or integer ids into a small vocabulary of strings (categorical, converted to strings as qa
does). Rows are picked and tables concatenated on these arrays, never on pandas objects.

`fit_bins` learns one column's bins from the original data (training, or training + holdout) with exactly the
rules of mostlyai-qa (`_accuracy.bin_numeric`, `bin_datetime`, `bin_categorical`):

- numeric: at most `n_bins` unique values -> one bin per value; else boundaries at evenly spaced positions of the
  sorted values (`search_bin_boundaries`), floored to the fewest decimals that keep them distinct; values outside
  are clipped into the first / last bin; missing values get their own code.
- datetime: the same boundary search (no flooring); a single value gets a one-day bin.
- categorical: the `n_bins` most frequent values seen at least 5 times (ties: first seen first); everything else
  is '(other)', the empty string '(empty)', missing '(n/a)'.

`ColumnBins.encode` maps any table's column (training, holdout, synthetic) to `int16` codes, one per row:
`0 .. n_codes-1`, the last code being the missing-value bin.

With `weights`, fitting uses the weighted empirical distribution instead of a sample (the expected mode of the
metric): positions are read off cumulative weights and category counts are summed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import pandas as pd

NA_BIN = "(n/a)"
OTHER_BIN = "(other)"
EMPTY_BIN = "(empty)"
RARE_BIN = "_RARE_"
SPECIAL_BINS = (EMPTY_BIN, OTHER_BIN, RARE_BIN, NA_BIN)  # qa's order, after the top categories
MIN_CATEGORY_COUNT = 5  # qa's MIN_RARE_CAT_PROTECTION
ONE_DAY_NS = 86_400 * 10**9
DEFAULT_DATETIME_BREAKS = (pd.Timestamp("1700").value, pd.Timestamp("2200").value)

Kind = Literal["numeric", "datetime", "categorical"]


def column_kind(values: pd.Series) -> Kind:
    """How qa treats a column: numeric (booleans too), datetime, or categorical (anything else)."""
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    return "categorical"


@dataclass(frozen=True)
class ColumnData:
    """One column as arrays. `values`: float64 (numeric), int64 ns (datetime) or int32 ids into `categories`."""

    kind: Kind
    values: np.ndarray
    missing: np.ndarray  # bool
    categories: np.ndarray | None = None  # object array of strings (categorical only)

    @staticmethod
    def of(series: pd.Series, kind: Kind | None = None) -> "ColumnData":
        """Convert a column, as the training column's `kind` (values that do not parse become missing)."""
        kind = kind or column_kind(series)
        if kind == "numeric":
            x = pd.to_numeric(series, errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
            return ColumnData(kind, x, np.isnan(x))
        if kind == "datetime":
            stamps = pd.to_datetime(pd.Series(series), errors="coerce")
            if stamps.dt.tz is not None:
                stamps = stamps.dt.tz_convert(None)
            missing = stamps.isna().to_numpy()
            ns = stamps.astype("datetime64[ns]").to_numpy().view(np.int64).copy()
            ns[missing] = 0
            return ColumnData(kind, ns, missing)
        series = pd.Series(series)
        if pd.api.types.is_numeric_dtype(series):  # qa turns numbers to Float64 before it makes strings of them
            series = series.astype("Float64")
        ids, uniques = pd.factorize(series, use_na_sentinel=True)
        strings = pd.Series(uniques).astype("string[pyarrow]").astype(object).to_numpy()
        # values that become the same string (1 and "1") are one category
        string_ids, categories = pd.factorize(strings) if len(strings) else (np.zeros(0, np.int64), np.array([], dtype=object))
        missing = ids < 0
        ids = np.where(missing, 0, string_ids[np.maximum(ids, 0)] if len(strings) else 0).astype(np.int32)
        return ColumnData(kind, ids, missing, np.asarray(categories, dtype=object))

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: np.ndarray) -> "ColumnData":
        """The rows `rows`; a row of -1 is missing."""
        outside = rows < 0
        rows = np.maximum(rows, 0)
        return ColumnData(self.kind, self.values[rows], self.missing[rows] | outside, self.categories)

    @staticmethod
    def concat(parts: list["ColumnData"]) -> "ColumnData":
        """Rows of several columns of one kind, one after the other (categories are merged)."""
        kind = parts[0].kind
        if kind != "categorical":
            return ColumnData(kind, np.concatenate([p.values for p in parts]), np.concatenate([p.missing for p in parts]))
        merged_ids, categories = pd.factorize(np.concatenate([p.categories for p in parts]))
        values, start = [], 0
        for p in parts:
            values.append(merged_ids[start : start + len(p.categories)][p.values] if len(p.categories) else p.values)
            start += len(p.categories)
        return ColumnData(kind, np.concatenate(values).astype(np.int32), np.concatenate([p.missing for p in parts]), categories)

    def bin_strings(self) -> tuple[np.ndarray, np.ndarray]:
        """Categorical: each row's id into the returned strings as qa bins them ('' -> '(empty)', missing -> '(n/a)')."""
        strings = np.append(self.categories, NA_BIN).astype(object)
        strings[strings == ""] = EMPTY_BIN
        return np.where(self.missing, len(self.categories), self.values), strings


@dataclass(frozen=True)
class ColumnBins:
    """One column's bins. `breaks`: qa's boundaries (numeric/datetime, datetimes as int64 ns) or categories."""

    kind: Kind
    breaks: tuple
    labels: tuple[str, ...]

    @property
    def n_codes(self) -> int:
        return len(self.labels)

    def encode(self, column: ColumnData | pd.Series) -> np.ndarray:
        """Codes (int16, one per row) of `column` in these bins."""
        column = _as_column(column, self.kind)
        if self.kind == "categorical":
            ids, strings = column.bin_strings()
            code_of_string = pd.Index(self.breaks).get_indexer(strings)
            code_of_string[code_of_string < 0] = self.breaks.index(OTHER_BIN)
            return code_of_string[ids].astype(np.int16)
        lower = np.asarray(self.breaks[:-1], dtype=column.values.dtype)
        return _bin_codes(column.values, column.missing, lower, self.n_codes - 1)


@numba.njit(parallel=True, cache=True)
def _bin_codes(values, missing, lower, missing_code):
    """Index of the last lower boundary <= value (values below the first fall in bin 0), or the missing code."""
    codes = np.empty(len(values), dtype=np.int16)
    n = len(lower)
    for i in numba.prange(len(values)):
        if missing[i]:
            codes[i] = missing_code
            continue
        lo, hi = 1, n  # binary search over lower[1:]
        while lo < hi:
            mid = (lo + hi) // 2
            if lower[mid] <= values[i]:
                lo = mid + 1
            else:
                hi = mid
        codes[i] = lo - 1
    return codes


def fit_bins(column: ColumnData | pd.Series, n_bins: int = 10, weights: np.ndarray | None = None) -> ColumnBins:
    """Learn qa's bins of one column from the original data (optionally weighted rows)."""
    column = _as_column(column)
    if column.kind == "categorical":
        return _fit_categorical(column, n_bins, weights)
    values, w = _sorted_present(column, weights)
    if column.kind == "numeric":
        return _fit_numeric(values, w, n_bins)
    return _fit_datetime(values, w, n_bins)


def _as_column(column: ColumnData | pd.Series, kind: Kind | None = None) -> ColumnData:
    return column if isinstance(column, ColumnData) else ColumnData.of(column, kind)


def _fit_numeric(values: np.ndarray, w: np.ndarray | None, n_bins: int) -> ColumnBins:
    unique = np.unique(values)
    if len(unique) <= n_bins:
        breaks = list(unique) + ([unique[-1] + 1] if len(unique) else [])
    else:
        breaks = _search_bin_boundaries(values, w, n_bins)
    breaks = sorted(set(breaks))
    if not breaks:
        breaks = [-1e10, 1e10]
    for precision in range(20):  # floor to the fewest decimals that keep all boundaries distinct
        if len({_floor(b, precision) for b in breaks}) == len(breaks):
            breaks = [_floor(b, precision) for b in breaks[:-1]] + [breaks[-1]]
            break
    lower = breaks[:-1]
    if all(float(b).is_integer() for b in lower):
        labels = [f"⪰ {int(b)}" for b in lower]
    else:
        labels = [f"⪰ {float(b)}" for b in lower]
    return ColumnBins("numeric", tuple(float(b) for b in breaks), tuple(labels) + (NA_BIN,))


def _fit_datetime(values: np.ndarray, w: np.ndarray | None, n_bins: int) -> ColumnBins:
    unique = np.unique(values)
    if len(unique) == 1:
        breaks = [unique[0], unique[0] + ONE_DAY_NS]
    else:
        breaks = _search_bin_boundaries(values, w, n_bins)
    breaks = sorted(set(breaks)) or list(DEFAULT_DATETIME_BREAKS)
    labels = [f"⪰ {pd.Timestamp(int(b))}" for b in breaks[:-1]]
    return ColumnBins("datetime", tuple(int(b) for b in breaks), tuple(labels) + (NA_BIN,))


def _fit_categorical(column: ColumnData, n_bins: int, weights: np.ndarray | None) -> ColumnBins:
    ids, strings = column.bin_strings()
    counts = np.bincount(ids, weights=weights, minlength=len(strings))
    first_seen = np.full(len(strings), len(ids))
    np.minimum.at(first_seen, ids, np.arange(len(ids)))
    seen = counts > 0
    # as pandas' value_counts: counts per string in order of first appearance, stable sort, largest first
    per_string = pd.Series(counts[seen]).groupby(strings[seen], sort=False).sum()
    first = pd.Series(first_seen[seen]).groupby(strings[seen], sort=False).min()
    per_string = per_string.loc[first.sort_values(kind="stable").index]
    top_counts = per_string.sort_values(ascending=False, kind="stable").head(n_bins)
    top = sorted(c for c in top_counts[top_counts >= MIN_CATEGORY_COUNT].index if c not in SPECIAL_BINS)
    categories = tuple(top) + SPECIAL_BINS
    labels = tuple(c if len(c) <= 20 else c[:17] + "..." for c in categories)
    return ColumnBins("categorical", categories, labels)


def _search_bin_boundaries(values: np.ndarray, weights: np.ndarray | None, n_bins: int) -> list:
    """qa's greedy search: values at `i` evenly spaced positions, for the smallest `i` giving `n_bins`+1 breaks."""
    n = len(values)
    if n == 0:
        return []
    total = n if weights is None else weights.sum()
    cumulative = None if weights is None else np.cumsum(weights)
    breaks: list = []
    for i in range(n_bins, max(n_bins + 1, min(1000, int(total) + 1))):
        positions = np.linspace(0, total - 1, i).astype(int)
        if cumulative is not None:  # the value at a position of the weighted sample
            positions = np.minimum(np.searchsorted(cumulative, positions, side="right"), n - 1)
        breaks = sorted(set(values[positions]))
        if len(breaks) >= n_bins + 1:
            break
    return breaks


def _sorted_present(column: ColumnData, weights: np.ndarray | None):
    present = ~column.missing
    values = column.values[present]
    if weights is None:
        return np.sort(values), None
    w = np.asarray(weights, dtype=np.float64)[present]
    order = np.argsort(values, kind="stable")
    keep = w[order] > 0
    return values[order][keep], w[order][keep]


def _floor(number: float, precision: int) -> float:
    return np.true_divide(np.floor(number * 10**precision), 10**precision)
