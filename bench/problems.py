"""Seeded, prize-shaped tables for benchmarks, built without external data.

`prize_flat(n_rows, seed)`: 60 numeric columns (skewed, with ties, 0-80 % missing) and 20 categorical ones (2-50
levels, some rare), correlated through a few latent factors, like the FLAT challenge's 100,000 x 80 table.
The column design (which factors, skew, missing share, levels) comes from `design_seed`, so tables drawn with
different `seed`s share one distribution; `distortion` > 0 perturbs it: an imperfect generator's pool.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

N_NUMERIC, N_CATEGORICAL, N_FACTORS = 60, 20, 6
CHUNK = 200_000  # rows generated at a time (bounded memory for multi-million-row pools)


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

    scale = np.sqrt((loadings**2).sum(axis=0) + 1)  # each latent column is normal with this deviation
    chunks = [_flat_chunk(min(CHUNK, n_rows - start), np.random.default_rng([seed, i]), loadings, scale, skew, decimals, missing, levels)
              for i, start in enumerate(range(0, n_rows, CHUNK))]
    return pd.concat(chunks, ignore_index=True)


def _flat_chunk(n_rows, rng, loadings, scale, skew, decimals, missing, levels) -> pd.DataFrame:
    latent = rng.normal(size=(n_rows, N_FACTORS)) @ loadings + rng.normal(size=(n_rows, N_NUMERIC + N_CATEGORICAL))
    columns = {}
    for j in range(N_NUMERIC):
        x = np.sinh(skew[j] * latent[:, j]) / max(skew[j], 1e-3) if skew[j] > 0.05 else latent[:, j]
        x = np.round(x * 10 ** (1 - decimals[j] // 2), decimals[j])  # coarse rounding gives ties
        x[rng.random(n_rows) < missing[j]] = np.nan
        columns[f"num{j:02d}"] = x
    for j in range(N_CATEGORICAL):
        # cut points at the quantiles of a Zipf-like law over the levels: the last levels are rare
        share = (np.arange(levels[j]) + 1.0) ** -1.3
        cuts = scipy.stats.norm.ppf(np.cumsum(share / share.sum())[:-1]) * scale[N_NUMERIC + j]
        codes = np.searchsorted(cuts, latent[:, N_NUMERIC + j])
        columns[f"cat{j:02d}"] = np.array([f"c{j:02d}_{k:02d}" for k in range(levels[j])], dtype=object)[codes]
    return pd.DataFrame(columns)


def prize_sequential(n_groups: int, seed: int, design_seed: int = 0, distortion: float = 0.0, key_prefix: str = "g") -> pd.DataFrame:
    """Sequences of 5-10 rows with the SEQUENTIAL challenge's shape: `group_id`, 3 categorical and 7 numeric
    columns (one 80 % empty, one 15 %), persistent categories and trending values within a sequence."""
    design = np.random.default_rng(design_seed)
    persistence = design.uniform(0.6, 0.95, 3)
    trend = design.normal(0, 0.3, 7)
    levels = [8, 5, 4]
    if distortion:
        wobble = np.random.default_rng(design_seed + 1)
        persistence = np.clip(persistence * (1 - distortion * wobble.uniform(0, 0.5, 3)), 0.05, 0.99)
        trend = trend * (1 + distortion * wobble.normal(size=7))

    rng = np.random.default_rng(seed)
    lengths = rng.choice(np.arange(5, 11), n_groups, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    group = np.repeat(np.arange(n_groups), lengths)
    step = np.arange(len(group)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    z = rng.normal(size=(n_groups, 2))[group]
    noise = rng.normal(size=(len(group), 7))
    out = {"group_id": np.array([f"{key_prefix}{g:06d}" for g in range(n_groups)], dtype=object)[group]}
    for j, (name, k) in enumerate(zip(["alice", "emily", "john"], levels)):
        start = np.clip((z[:, j % 2] * 1.5 + k / 2).astype(int), 0, k - 1)
        change = rng.random(len(group)) > persistence[j]
        drawn = rng.integers(0, k, len(group))
        value = np.where(change, drawn, start)
        out[name] = np.array([f"{name[0].upper()}{i}" for i in range(k)], dtype=object)[value]
    numeric = {
        "david": np.round(4 + z[:, 0] + trend[0] * step + 0.3 * noise[:, 0], 1),
        "jacob": np.where(rng.random(len(group)) < 0.8, np.nan, np.round(10 + 5 * z[:, 1] + 3 * noise[:, 1])),
        "james": np.round(np.clip(25 + 6 * z[:, 0] + trend[2] * step + 4 * noise[:, 2], 5, 60)),
        "mike": np.where(noise[:, 3] < -0.5, -1, np.round(np.exp(1 + 0.5 * z[:, 1] + 0.5 * noise[:, 3]))),
        "lucas": np.round(np.abs(2 + 0.5 * z[:, 1] + trend[4] * step + 0.4 * noise[:, 4]), 1),
        "mary": np.round(np.abs(1.5 + z[:, 0] * 0.8 + 0.6 * noise[:, 5]), 1),
        "sarah": np.where(rng.random(len(group)) < 0.15, np.nan, np.maximum(0, np.round(noise[:, 6] + trend[6] * step - 0.8, 1))),
    }
    out.update(numeric)
    return pd.DataFrame(out)
