"""The bins mostlyai-qa uses for accuracy, as integer codes.

`fit_bins` learns one column's bins from the original data (training, or training + holdout) with exactly the
rules of mostlyai-qa (`_accuracy.bin_numeric`, `bin_datetime`, `bin_categorical`):

- numeric: at most `n_bins` unique values -> one bin per value; else boundaries at evenly spaced positions of the
  sorted values (`search_bin_boundaries`), floored to the fewest decimals that keep them distinct; values outside
  are clipped into the first / last bin; missing values get their own code.
- datetime: the same boundary search (no flooring); a single value gets a one-day bin.
- categorical: the `n_bins` most frequent values seen at least 5 times; everything else is '(other)', the empty
  string '(empty)', missing '(n/a)'.

`ColumnBins.encode` maps any table's column (training, holdout, synthetic) to `int16` codes, one per row:
`0 .. n_codes-1`, the last code of numeric and datetime columns being the missing-value bin.

With `weights`, fitting uses the weighted empirical distribution instead of a sample (the expected mode of the
metric): positions are read off cumulative weights and category counts are summed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
class ColumnBins:
    """One column's bins. `breaks`: qa's boundaries (numeric/datetime, datetimes as int64 ns) or categories."""

    kind: Kind
    breaks: tuple
    labels: tuple[str, ...]

    @property
    def n_codes(self) -> int:
        return len(self.labels)

    def encode(self, values: pd.Series) -> np.ndarray:
        """Codes (int16, one per row) of `values` in these bins."""
        if self.kind == "categorical":
            strings = _as_category_strings(values)
            codes = pd.Index(self.breaks).get_indexer(strings).astype(np.int16)
            codes[codes < 0] = self.breaks.index(OTHER_BIN)
            return codes
        x, missing = _as_float(values) if self.kind == "numeric" else _as_ns(values)
        lower = np.asarray(self.breaks[:-1], dtype=x.dtype)
        clipped = np.clip(np.where(missing, self.breaks[0], x), self.breaks[0], self.breaks[-1])
        codes = np.searchsorted(lower, clipped, side="right") - 1
        codes[missing] = self.n_codes - 1
        return codes.astype(np.int16)


def fit_bins(values: pd.Series, n_bins: int = 10, weights: np.ndarray | None = None) -> ColumnBins:
    """Learn qa's bins of one column from the original data (optionally weighted rows)."""
    kind = column_kind(values)
    if kind == "categorical":
        return _fit_categorical(values, n_bins, weights)
    if kind == "numeric":
        return _fit_numeric(*_as_float(values), n_bins, weights)
    return _fit_datetime(*_as_ns(values), n_bins, weights)


def _fit_numeric(x: np.ndarray, missing: np.ndarray, n_bins: int, weights: np.ndarray | None) -> ColumnBins:
    values, w = _sorted_present(x, ~missing, weights)
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


def _fit_datetime(x: np.ndarray, missing: np.ndarray, n_bins: int, weights: np.ndarray | None) -> ColumnBins:
    values, w = _sorted_present(x, ~missing, weights)
    unique = np.unique(values)
    if len(unique) == 1:
        breaks = [unique[0], unique[0] + ONE_DAY_NS]
    else:
        breaks = _search_bin_boundaries(values, w, n_bins)
    breaks = sorted(set(breaks)) or list(DEFAULT_DATETIME_BREAKS)
    labels = [f"⪰ {pd.Timestamp(int(b))}" for b in breaks[:-1]]
    return ColumnBins("datetime", tuple(int(b) for b in breaks), tuple(labels) + (NA_BIN,))


def _fit_categorical(values: pd.Series, n_bins: int, weights: np.ndarray | None) -> ColumnBins:
    strings = _as_category_strings(values)
    if weights is None:
        counts = strings.value_counts().head(n_bins)
    else:
        counts = pd.Series(weights).groupby(strings.to_numpy()).sum().sort_values(ascending=False, kind="stable")
        counts = counts.head(n_bins)
    top = sorted(c for c in counts[counts >= MIN_CATEGORY_COUNT].index if c not in SPECIAL_BINS)
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


def _sorted_present(x: np.ndarray, present: np.ndarray, weights: np.ndarray | None):
    values = x[present]
    if weights is None:
        return np.sort(values), None
    w = np.asarray(weights, dtype=np.float64)[present]
    order = np.argsort(values, kind="stable")
    keep = w[order] > 0
    return values[order][keep], w[order][keep]


def _floor(number: float, precision: int) -> float:
    return np.true_divide(np.floor(number * 10**precision), 10**precision)


def _as_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """float64 values and the missing mask."""
    x = pd.to_numeric(values, errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return x, np.isnan(x)


def _as_ns(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 nanoseconds since the epoch (UTC for time-zone aware values) and the missing mask."""
    stamps = pd.to_datetime(pd.Series(values), errors="coerce")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(None)
    missing = stamps.isna().to_numpy()
    ns = stamps.astype("datetime64[ns]").to_numpy().view(np.int64).copy()
    ns[missing] = 0
    return ns, missing


def _as_category_strings(values: pd.Series) -> pd.Series:
    strings = pd.Series(values).astype("string[pyarrow]").fillna(NA_BIN)
    return strings.replace("", EMPTY_BIN)
