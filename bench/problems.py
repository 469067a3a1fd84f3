"""Seeded, prize-shaped tables for benchmarks, built without external data.

`prize_flat(n_rows, seed)`: 60 numeric columns (skewed, with ties, 0-80 % missing) and 20 categorical ones (2-50
levels, some rare), correlated through a few latent factors, like the FLAT challenge's 100,000 x 80 table.
The column design (which factors, skew, missing share, levels) comes from `design_seed`, so tables drawn with
different `seed`s share one distribution; `distortion` > 0 perturbs it: an imperfect generator's pool.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL, N_FACTORS = 60, 20, 6


def prize_flat(n_rows: int, seed: int, design_seed: int = 0, distortion: float = 0.0) -> pd.DataFrame:
    """A table of `n_rows` rows; `distortion` scales the perturbation of the design (0: the true one)."""
    design = np.random.default_rng(design_seed)
    loadings = design.normal(size=(N_FACTORS, N_NUMERIC + N_CATEGORICAL)) * design.uniform(0.2, 1.0, N_NUMERIC + N_CATEGORICAL)
    skew = design.uniform(0, 1.5, N_NUMERIC)
    decimals = design.choice([0, 0, 1, 2, 3], N_NUMERIC)
    missing = design.choice([0.0, 0.0, 0.05, 0.2, 0.5, 0.8], N_NUMERIC)
    levels = design.integers(2, 51, N_CATEGORICAL)
    if distortion:
        wobble = np.random.default_rng(design_seed + 1)
        loadings = loadings * (1 + distortion * wobble.normal(size=loadings.shape))
        skew = skew * (1 + distortion * wobble.normal(size=N_NUMERIC))
        missing = np.clip(missing + distortion * 0.1 * wobble.normal(size=N_NUMERIC), 0, 0.9)

    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_rows, N_FACTORS)) @ loadings + rng.normal(size=(n_rows, N_NUMERIC + N_CATEGORICAL))
    columns = {}
    for j in range(N_NUMERIC):
        x = np.sinh(skew[j] * latent[:, j]) / max(skew[j], 1e-3) if skew[j] > 0.05 else latent[:, j]
        x = np.round(x * 10 ** (1 - decimals[j] // 2), decimals[j])  # coarse rounding gives ties
        x[rng.random(n_rows) < missing[j]] = np.nan
        columns[f"num{j:02d}"] = x
    for j in range(N_CATEGORICAL):
        z = latent[:, N_NUMERIC + j]
        # cut points at the quantiles of a Zipf-like law over the levels: the last levels are rare
        share = (np.arange(levels[j]) + 1.0) ** -1.3
        cuts = np.quantile(z, np.cumsum(share / share.sum())[:-1])
        codes = np.searchsorted(cuts, z)
        columns[f"cat{j:02d}"] = np.array([f"c{j:02d}_{k:02d}" for k in range(levels[j])], dtype=object)[codes]
    return pd.DataFrame(columns)
