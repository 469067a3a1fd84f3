"""Train the MOSTLY AI generator (TabularARGN, local SDK) and sample a pool of synthetic rows or groups.

Flat data is one table. Sequential data becomes a subject table of group ids and the rows, linked to it by the
context key, so that the model learns whole sequences. Numeric columns with missing values get an explicit
"is missing" indicator column; after sampling it blanks the value and is dropped.

Everything is cached under the run directory: the SDK's home (`sdk/`), the id of each trained generator
(`generator-<i>.json`) and each iteration's pool (`pool-<i>.parquet`). Running again on the same directory reuses
what is there, so a crashed run resumes where it stopped. The SDK trains on the GPU when torch sees one.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.io import conform_to_training, write_atomic

MISSING_SUFFIX = "__is_missing"


@dataclass(frozen=True)
class ModelSettings:
    """What the SDK's `tabular_model_configuration` gets (minutes and epochs: whichever ends training first)."""

    model: str = "MOSTLY_AI/Medium"
    max_epochs: float = 100
    max_training_minutes: float = 10
    batch_size: int | None = None
    max_sample_size: int | None = None  # train on at most this many rows (or groups); None: all
    value_protection: bool = False  # privacy is checked on the selection instead (common/privacy.py)
    enable_flexible_generation: bool = False  # a fixed column order trains a more accurate model

    def sdk_config(self) -> dict:
        config = asdict(self)
        config["max_training_time"] = config.pop("max_training_minutes")
        return {k: v for k, v in config.items() if v is not None} | {"enable_model_report": False}


def device_name() -> str:
    """'cuda' when torch sees a GPU (the SDK then trains and samples on it), else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def missing_indicator_columns(training: pd.DataFrame, context_key: str | None) -> list[str]:
    """Numeric columns (not the key) with missing values: each gets an "is missing" indicator for training."""
    return [c for c in training.columns
            if c != context_key and pd.api.types.is_numeric_dtype(training[c]) and training[c].isna().any()]


def add_missing_indicators(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return df.assign(**{c + MISSING_SUFFIX: np.where(df[c].isna(), "yes", "no") for c in columns})


def apply_missing_indicators(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Blank each value whose indicator says "yes" and drop the indicators."""
    df = df.copy()
    for c in columns:
        df.loc[(df[c + MISSING_SUFFIX] == "yes").to_numpy(), c] = np.nan
    return df.drop(columns=[c + MISSING_SUFFIX for c in columns])


def _training_tables(training: pd.DataFrame, context_key: str | None, settings: ModelSettings) -> list[dict]:
    model = {"tabular_model_configuration": settings.sdk_config()}
    if context_key is None:
        return [{"name": "data", "data": training} | model]
    subjects = pd.DataFrame({context_key: training[context_key].drop_duplicates().to_numpy()})
    link = [{"column": context_key, "referenced_table": "subjects", "is_context": True}]
    return [{"name": "subjects", "data": subjects, "primary_key": context_key},
            {"name": "data", "data": training, "foreign_keys": link} | model]


def sort_groups(df: pd.DataFrame, context_key: str, first_id: int) -> pd.DataFrame:
    """Rows of each group together (order inside a group kept), groups numbered first_id, first_id + 1, ..."""
    codes, _ = pd.factorize(df[context_key])
    order = np.argsort(codes, kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    df[context_key] = first_id + codes[order].astype(np.int64)
    return df


def generate_pool(
    training: pd.DataFrame,
    context_key: str | None,
    run_dir: Path,
    settings: ModelSettings,
    n_iterations: int,
    pool_size: int,
    temperature: float,
    seed: int,
    log: logging.Logger,
) -> pd.DataFrame:
    """Train `n_iterations` generators (seeds seed, seed + 1, ...) and sample `pool_size` rows (flat) or groups
    (sequential) from them in equal parts. Returns the pool with the training data's columns and dtypes; sequential
    pools have their rows grouped, integer group ids that are unique across iterations, and only groups whose
    length the training data has."""
    from mostlyai.sdk import MostlyAI

    run_dir.mkdir(parents=True, exist_ok=True)
    indicators = missing_indicator_columns(training, context_key)
    mostly = None
    parts = []
    for i in range(n_iterations):
        pool_file = run_dir / f"pool-{i}.parquet"
        if pool_file.exists():
            log.info(f"pool {i + 1}/{n_iterations}: reusing {pool_file}")
            parts.append(pd.read_parquet(pool_file))
            continue
        if mostly is None:
            mostly = MostlyAI(local=True, local_dir=run_dir / "sdk", quiet=True)
            if context_key is not None:  # the SDK's jobs run in processes of their own, whose logging we cannot filter
                log.info('model: the SDK\'s warnings about the subject table ("not enough data to train model", "using '
                         'untrained model", "no target columns to sample") are expected: that table holds only the group ids')
        generator = _trained_generator(mostly, training, context_key, indicators, settings, seed + i, run_dir / f"generator-{i}.json", log)
        size = pool_size // n_iterations + (i < pool_size % n_iterations)
        start = time.monotonic()
        log.info(f"pool {i + 1}/{n_iterations}: sampling {size:,} {'groups' if context_key else 'rows'} ...")
        sampling = {"sampling_temperature": temperature, "enable_data_report": False}
        tables = ([{"name": "subjects", "configuration": {"sample_size": size, "enable_data_report": False}},
                   {"name": "data", "configuration": sampling}] if context_key else
                  [{"name": "data", "configuration": {"sample_size": size} | sampling}])
        sd_config = {"random_state": seed + 1000 + i, "tables": tables}
        synthetic = mostly.generate(generator, config=sd_config, start=True, wait=False, progress_bar=False)
        _wait(synthetic.generation.progress, synthetic.id, f"pool {i + 1}/{n_iterations}", log)
        data = synthetic.data()
        pool = apply_missing_indicators(data["data"] if isinstance(data, dict) else data, indicators)
        if context_key is not None:
            pool = sort_groups(pool, context_key, first_id=i * 10**9)
        pool = conform_to_training(pool, training)
        write_atomic(pool_file, pool.to_parquet)
        log.info(f"pool {i + 1}/{n_iterations}: {len(pool):,} rows in {time.monotonic() - start:.0f} s")
        parts.append(pool)
    pool = pd.concat(parts, ignore_index=True)
    if context_key is not None:
        lengths = training.groupby(context_key, sort=False).size()
        pool_lengths = pool.groupby(context_key, sort=False)[context_key].transform("size")
        keep = pool_lengths.between(lengths.min(), lengths.max()).to_numpy()
        if not keep.all():
            log.info(f"pool: dropping {pool.loc[~keep, context_key].nunique():,} groups with lengths outside "
                     f"{lengths.min()}-{lengths.max()}")
            pool = pool.loc[keep].reset_index(drop=True)
    return pool


def _trained_generator(mostly, training, context_key, indicators, settings, seed, id_file: Path, log):
    """The generator recorded in `id_file` if the SDK still has it, else a newly trained one."""
    if id_file.exists():
        try:
            generator = mostly.generators.get(json.loads(id_file.read_text())["generator_id"])
            if generator.training_status == "DONE":
                log.info(f"model: reusing generator {generator.id}")
                return generator
        except Exception:  # the SDK home was removed or the training did not finish: train again
            pass
    start = time.monotonic()
    log.info(f"model: training {settings.model} on {device_name()} (seed {seed}, at most {settings.max_training_minutes:g} min, "
             f"{settings.max_epochs:g} epochs) ...")
    data = add_missing_indicators(training, indicators)
    config = {"name": id_file.stem, "random_state": seed, "tables": _training_tables(data, context_key, settings)}
    generator = mostly.train(config=config, start=True, wait=False, progress_bar=False)
    _wait(generator.training.progress, generator.id, "model", log)
    generator.reload()
    write_atomic(id_file, lambda path: Path(path).write_text(json.dumps({"generator_id": generator.id, "seed": seed})))
    log.info(f"model: trained in {time.monotonic() - start:.0f} s")
    return generator


def _wait(progress, job_id: str, what: str, log: logging.Logger, interval: float = 60.0) -> None:
    """Poll an SDK job (`progress()` returns its JobProgress) until it ends, logging the running steps every
    `interval` seconds (for training: epoch and validation loss); raise when the job failed. The local SDK runs
    the job in a process of its own: an interruption (Ctrl-C, an error here) stops that process too."""
    stop = []  # set by Ctrl-C or SIGTERM; checked between polls, as the SDK's client may swallow the interrupt
    handlers = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _poll(progress, what, log, interval, stop)
    except BaseException:
        _stop_job_processes(job_id)
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _stop_job_processes(job_id: str) -> None:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if job_id in " ".join(process.info["cmdline"] or []):
            process.kill()


def _poll(progress, what: str, log: logging.Logger, interval: float, stop: list) -> None:
    last = time.monotonic()
    while True:
        if stop:
            raise KeyboardInterrupt(f"{what}: interrupted")
        job = progress()
        if job.status in ("DONE", "FAILED", "CANCELED"):
            if job.status != "DONE":
                errors = [s.error_message for s in job.steps or [] if s.error_message]
                raise RuntimeError(f"{what}: the SDK job ended {job.status.lower()}" + (f": {errors[0]}" if errors else ""))
            return
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            for step in job.steps or []:
                if step.status == "IN_PROGRESS":
                    detail = step.messages[-1] if step.messages else {}
                    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in detail.items()
                                      if k in ("epoch", "trn_loss", "val_loss", "total_time"))
                    log.info(f"{what}: {step.step_code.value.lower()} {step.progress.value}/{step.progress.max}"
                             + (f" ({shown})" if shown else ""))
        time.sleep(2)

