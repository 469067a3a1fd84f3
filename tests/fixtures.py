"""Small seeded tables with the awkward cases of qa's binning: missing values, a constant column, rare and
high-cardinality categories, empty strings, datetimes, booleans; flat and sequential; narrow and wide."""

from __future__ import annotations

import numpy as np
import pandas as pd


def flat_table(n_rows: int, seed: int, n_extra_numeric: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n_rows)
    df = pd.DataFrame({
        "amount": np.round(np.exp(latent + rng.normal(scale=0.5, size=n_rows)), 3),
        "count": rng.poisson(2 + (latent > 0), size=n_rows),
        "constant": np.full(n_rows, 5),
        "ratio": np.where(rng.random(n_rows) < 0.2, np.nan, np.round(rng.beta(2, 5, size=n_rows), 2)),
        "flag": latent + rng.normal(size=n_rows) > 0,
        "color": rng.choice(["red", "green", "blue", "teal", "plum"], size=n_rows, p=[0.4, 0.3, 0.2, 0.07, 0.03]),
        # 60 levels, each used several times (not text-like), plus a few values seen once or twice
        "city": np.array([f"city_{i:02d}" for i in range(60)])[np.minimum(rng.geometric(0.06, size=n_rows), 59)],
        "note": rng.choice(["", "a", "b", None], size=n_rows, p=[0.2, 0.4, 0.3, 0.1]),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 24, size=n_rows), unit="h"),
    })
    df.loc[rng.random(n_rows) < 0.1, "when"] = pd.NaT
    df.loc[: max(2, n_rows // 100), "color"] = "rare_one"
    for i in range(n_extra_numeric):
        df[f"x{i:02d}"] = np.round(latent * rng.normal() + rng.normal(size=n_rows), 1)
    return df


def sequential_table(n_groups: int, seed: int, n_extra_numeric: int = 0, key_prefix: str = "g") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lengths = rng.choice([1, 2, 3, 5, 8, 12], size=n_groups, p=[0.05, 0.15, 0.2, 0.3, 0.2, 0.1])
    rows = []
    for g, length in enumerate(lengths):
        level = rng.normal()
        kind = rng.choice(["A", "B", "C", "D"], p=[0.5, 0.3, 0.15, 0.05])
        for i in range(length):
            rows.append({
                "key": f"{key_prefix}{g:05d}",
                "kind": kind if rng.random() < 0.8 else rng.choice(["A", "B", "C", "D", "E"]),
                "value": np.nan if rng.random() < 0.15 else round(level + 0.3 * i + rng.normal(scale=0.3), 2),
                "step": int(i + rng.integers(0, 2)),
                "when": pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(7 * g % 300 + i)),
            })
    df = pd.DataFrame(rows)
    for i in range(n_extra_numeric):
        df[f"x{i:02d}"] = np.round(rng.normal(size=len(df)), 1)
    return df
