"""Load tables (CSV, CSV.gz, parquet) and validate them, with one-line errors.

Every problem with the user's input raises `DataError`, whose message is a single line; command-line entry
points print it and exit with code 2 (`exit_on_data_error`).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


class DataError(Exception):
    """Bad input: a missing or unreadable file, an empty table, mismatching columns, an unreadable value."""


@contextmanager
def exit_on_data_error():
    """Turn a `DataError` into `error: <message>` on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one-line `DataError`s (exit code 2 under `exit_on_data_error`, no usage block)."""

    def error(self, message):
        raise DataError(message)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or parquet file into a DataFrame, as pandas reads it by default; refuse
    what pandas would read silently wrong: duplicate column names (renamed 'x.1'), a file separated by something
    other than commas (one column), nested values."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            header = list(df.columns)
        else:
            df = pd.read_csv(path, low_memory=False)
            header = list(pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0])
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except Exception as err:  # parser, codec and I/O errors all mean the same to the user
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read the table ({message})") from None
    if len(df) == 0 or len(df.columns) == 0:
        raise DataError(f"{path}: the table has no rows")
    repeated = sorted({str(c) for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{path}: repeated column names {_names(repeated)}")
    if len(df.columns) == 1 and any(sep in str(df.columns[0]) for sep in ";\t|"):
        sep = next(sep for sep in ";\t|" if sep in str(df.columns[0]))
        raise DataError(f"{path}: one column named {str(df.columns[0])[:60]!r}: the file looks {sep!r}-separated; "
                        "save it with commas as separators")
    for col in df.columns[[pd.api.types.is_object_dtype(t) for t in df.dtypes]]:
        nested = df[col].map(lambda v: isinstance(v, (list, tuple, dict, set, np.ndarray)))
        if nested.any():
            raise DataError(f"{path}: column '{col}' holds nested values ({type(df[col][nested].iloc[0]).__name__}); "
                            "flatten them into columns of their own")
    return df


def count_units(df: pd.DataFrame, context_key: str | None) -> int:
    """The units of a table: its rows (flat data) or its groups (sequential data)."""
    return df[context_key].nunique() if context_key else len(df)


def unit_name(context_key: str | None) -> str:
    return "groups" if context_key else "rows"


def check_context_key(df: pd.DataFrame, context_key: str | None, name: str) -> None:
    """Require the context key column (sequential data) to be present and complete."""
    if context_key is None:
        return
    if context_key not in df.columns:
        raise DataError(f"{name}: no context key column '{context_key}'")
    if df[context_key].isna().any():
        raise DataError(f"{name}: the context key column '{context_key}' has empty values")


def check_training(df: pd.DataFrame, context_key: str | None, group_lengths: tuple[int, int] | None, name: str,
                   min_units: int = 1) -> None:
    """Require a complete context key, at least `min_units` rows (flat) or groups (sequential), groups of allowed
    lengths (sequential), some values, no infinite numbers and no text among numbers.

    A column counts as numeric when at least 99 % of its non-empty values are numbers; any other value in it is
    an error (a typo, a unit, a stray header), rather than a silently categorical column."""
    check_context_key(df, context_key, name)
    n_units = count_units(df, context_key)
    if n_units < min_units:
        raise DataError(f"{name}: {n_units:,} {unit_name(context_key)}; at least {min_units:,} are needed")
    if context_key is not None and group_lengths is not None:
        sizes = df.groupby(context_key, sort=False).size()
        bad = sizes[(sizes < group_lengths[0]) | (sizes > group_lengths[1])]
        if len(bad):
            raise DataError(f"{name}: {len(bad):,} groups have fewer than {group_lengths[0]} or more than {group_lengths[1]} "
                            f"rows (e.g. {context_key} {bad.index[0]!r} with {bad.iloc[0]})")
    data = df.drop(columns=[context_key]) if context_key else df
    if data.shape[1] == 0 or data.isna().all().all():
        raise DataError(f"{name}: no values besides {'the context key' if context_key else 'empty cells'}")
    for col in data.columns:
        if pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
            infinite = np.isinf(df[col].to_numpy(dtype=float, na_value=np.nan))
            if infinite.any():
                raise DataError(f"{name}: column '{col}' holds an infinite value ({df[col][infinite].iloc[0]}); "
                                "use an empty cell or a number")
            continue
        if pd.api.types.is_bool_dtype(df[col]):
            continue
        values = df[col].dropna()
        values = values[values.astype("string").str.strip() != ""]
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().mean() >= 0.99 and numbers.isna().any():
            raise DataError(f"{name}: column '{col}' holds numbers but also the value {values[numbers.isna()].iloc[0]!r}")


def align_to_training(training: pd.DataFrame, other: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return `other` with the training data's columns, in its order, and numeric where training is numeric.

    Raises `DataError` when the column sets differ or a numeric column holds text that is not a number.
    """
    missing = [c for c in training.columns if c not in other.columns]
    extra = [c for c in other.columns if c not in training.columns]
    if missing or extra:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"unexpected {_names(extra)}"] if extra else [])
        raise DataError(f"{name}: columns differ from training ({'; '.join(parts)})")
    other = other[list(training.columns)].copy()
    for col in training.columns:
        if pd.api.types.is_numeric_dtype(training[col]) and not pd.api.types.is_numeric_dtype(other[col]):
            values = other[col]
            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna() & values.notna() & (values.astype("string").str.strip() != "")
            if bad.any():
                raise DataError(f"{name}: column '{col}' is numeric in training but has the value {values[bad].iloc[0]!r}")
            other[col] = numbers
    return other



def conform_to_training(df: pd.DataFrame, training: pd.DataFrame, skip: tuple = ()) -> pd.DataFrame:
    """`df` with the training data's columns, order and dtypes (integers rounded; columns in `skip` left as they are)."""
    out = {}
    for col in training.columns:
        values, dtype = df[col], training[col].dtype
        if col in skip:
            out[col] = values
        elif pd.api.types.is_bool_dtype(dtype):
            out[col] = values.map({True: True, False: False, "True": True, "False": False}).astype(bool)
        elif pd.api.types.is_integer_dtype(dtype):
            numbers = pd.to_numeric(values).round().astype("Int64")
            out[col] = numbers if numbers.isna().any() else numbers.astype(dtype)
        elif pd.api.types.is_float_dtype(dtype):
            out[col] = pd.to_numeric(values).astype(dtype)
        else:
            out[col] = values.astype(dtype)
    return pd.DataFrame(out, index=df.index)


def write_atomic(path: str | os.PathLike, write) -> None:
    """Call `write(temporary_path)`, then rename the result to `path`: readers never see a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _names(cols: list) -> str:
    shown = ", ".join(repr(c) for c in cols[:5])
    return shown + (f" and {len(cols) - 5} more" if len(cols) > 5 else "")
