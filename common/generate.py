"""Train the MOSTLY AI generator (TabularARGN, local SDK) and sample a pool of synthetic rows or groups.

Flat data is one table. Sequential data becomes a subject table of group ids and the rows, linked to it by the
context key, so that the model learns whole sequences. Numeric columns with missing values get an explicit
"is missing" indicator column; after sampling it blanks the value and is dropped.

Everything is cached under the run directory: the SDK's home (`sdk/`), the id of each trained generator
(`generator-<i>.json`, with its seed and training seconds) and each part of the pool (`pool-<i>.parquet`). Running
again on the same directory reuses what is there, so a crashed run resumes where it stopped. The SDK trains on the
GPU when torch sees one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.binning import column_kind
from common.io import DataError, conform_to_training, count_units, unit_name, write_atomic

MISSING_SUFFIX = "__is_missing"


@dataclass(frozen=True)
class ModelSettings:
    """What the SDK's `tabular_model_configuration` gets (minutes and epochs: whichever ends training first)."""

    model: str
    max_epochs: float
    max_training_minutes: float
    batch_size: int | None = None
    max_sample_size: int | None = None  # train on at most this many rows (or groups); None: all
    value_protection: bool = False  # privacy is checked on the selection instead (common/privacy.py)
    enable_flexible_generation: bool = False  # a fixed column order trains a more accurate model

    def sdk_config(self) -> dict:
        config = asdict(self)
        config["max_training_time"] = config.pop("max_training_minutes")
        return {k: v for k, v in config.items() if v is not None} | {"enable_model_report": False}


@dataclass(frozen=True)
class GeneratorSettings:
    """Everything that shapes the trained models and the pool; a run directory's cache belongs to one of these."""

    model: str
    column_order: str  # "cardinality" or "training": see `model_column_order`
    discrete_max_values: int  # see `encoding_types`
    max_epochs: float
    train_minutes: float  # per model, at most
    batch_size: int | None
    max_training_samples: int | None
    iterations: int  # pool parts; each from a model of its own (seeds seed, seed + 1, ...) while the budget allows
    pool_size: int  # rows (flat) or groups (sequential) sampled in all
    temperature: float
    seed: int

    @classmethod
    def from_config(cls, config: dict) -> "GeneratorSettings":
        return cls(**{name: config[name] for name in cls.__dataclass_fields__})

    def model_settings(self, minutes: float) -> ModelSettings:
        return ModelSettings(self.model, self.max_epochs, minutes, self.batch_size, self.max_training_samples)


# Time estimates for a run's budget, before anything was measured: the seconds an SDK job needs besides its work
# (a process, imports, analysis, encoding: about 10 s on 2 CPU cores) and how many cells (rows x columns) the
# generator samples per second (on 2 CPU cores with the explicit encodings: 200,000 on the prize sequences and the
# demo flat table, 330,000-600,000 on the credit-card and census tables, but on a slow day 86,000 on the prize
# sequences; a GPU is faster). Below the slowest measured rate, for wider vocabularies and slower machines. Measured
# sampling replaces the rate once the first pool part exists.
JOB_OVERHEAD_SECONDS = 15.0
SAMPLED_CELLS_PER_SECOND = 75_000.0
MIN_TRAINING_SECONDS = 10.0


def encoding_types(training: pd.DataFrame, context_key: str | None, discrete_max_values: int = 0) -> dict[str, str]:
    """The SDK's encoding of each column, from its type in the training data, as the metric bins it: numbers ->
    numeric, true datetimes -> datetime, anything else (text, booleans, indicator flags) -> categorical. The SDK's
    own guess can take text for dates (month names such as 'may' parse as dates) and fail.

    A numeric column with at most `discrete_max_values` distinct values is learnt as a set of values (the SDK's
    discrete encoding): the model then samples only values the training data has, and learns lookups such as a
    route's distance. Otherwise the SDK chooses: values when there are fewer than 100, else digits (three
    significant digits at most) or 100 quantile bins, sampled uniformly inside the bin."""
    types = {}
    for col in training.columns:
        if col == context_key:
            types[col] = "AUTO"
        elif column_kind(training[col]) == "datetime":
            types[col] = "TABULAR_DATETIME"
        elif pd.api.types.is_numeric_dtype(training[col]) and not pd.api.types.is_bool_dtype(training[col]):
            discrete = discrete_max_values > 0 and training[col].nunique() <= discrete_max_values
            types[col] = "TABULAR_NUMERIC_DISCRETE" if discrete else "TABULAR_NUMERIC_AUTO"
        else:
            types[col] = "TABULAR_CATEGORICAL"
    return types


def model_column_order(training: pd.DataFrame, context_key: str | None, rule: str) -> list[str]:
    """The order in which the generator learns and samples the columns (flexible generation is off, so each column
    is predicted from the ones before it). "cardinality": the key, then the columns with the fewest distinct values
    first (ties as in the training data), so that the coarse columns that determine much come before the
    fine-grained ones that depend on them; "training": as the training data has them."""
    if rule == "training":
        return list(training.columns)
    distinct = training.nunique()
    data_cols = sorted((c for c in training.columns if c != context_key), key=lambda c: distinct[c])  # stable
    return ([context_key] if context_key is not None else []) + data_cols


def device_name() -> str:
    """'cuda' when torch sees a GPU (the SDK then trains and samples on it), else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_packages(train: bool) -> None:
    """Raise `DataError` (one line) when a package the run needs cannot be imported: mostlyai-qa (the guard and the
    scores) and, where the run trains, the SDK's local mode (`mostlyai[local]`: its server and engine), so that a
    partial install fails before any work instead of with a traceback after it."""
    try:
        import mostlyai.qa  # noqa: F401
        if train:
            import mostlyai.engine  # noqa: F401
            from mostlyai.sdk._local.server import LocalServer  # noqa: F401  (what MostlyAI(local=True) starts)
    except ImportError as err:
        raise DataError(f"a package of the MOSTLY AI SDK's local mode is missing ({err}): install the pinned "
                        "requirements with 'bash setup.sh'") from None


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


def _training_tables(training: pd.DataFrame, context_key: str | None, settings: ModelSettings,
                     discrete_max_values: int) -> list[dict]:
    types = encoding_types(training, context_key, discrete_max_values)
    model = {"tabular_model_configuration": settings.sdk_config(),
             "columns": [{"name": c, "model_encoding_type": t} for c, t in types.items()]}
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


def keep_training_lengths(pool: pd.DataFrame, training: pd.DataFrame, context_key: str, log: logging.Logger) -> pd.DataFrame:
    """The pool without groups whose length the training data does not have (shorter or longer than all)."""
    lengths = training.groupby(context_key, sort=False).size()
    pool_lengths = pool.groupby(context_key, sort=False)[context_key].transform("size")
    keep = pool_lengths.between(lengths.min(), lengths.max()).to_numpy()
    if not keep.all():
        log.info(f"pool: dropping {pool.loc[~keep, context_key].nunique():,} groups with lengths outside "
                 f"{lengths.min()}-{lengths.max()}")
        pool = pool.loc[keep].reset_index(drop=True)
    return pool


def sampled_cells(training: pd.DataFrame, context_key: str | None, units: int) -> float:
    """Cells (rows x columns) of a pool of `units` rows or groups, as the SDK samples them."""
    rows_per_unit = len(training) / count_units(training, context_key)
    columns = training.shape[1] + len(missing_indicator_columns(training, context_key))
    return units * rows_per_unit * columns


def pool_sizes(settings: GeneratorSettings) -> list[int]:
    """Rows (flat) or groups (sequential) sampled from each model: `pool_size` in equal parts."""
    n = settings.iterations
    return [settings.pool_size // n + (i < settings.pool_size % n) for i in range(n)]


def pool_size_within(training: pd.DataFrame, context_key: str | None, settings: GeneratorSettings, seconds: float,
                     share: float = 0.4) -> int:
    """The largest pool, up to `settings.pool_size`, whose sampling fits `share` of `seconds` (the time for training
    and sampling together)."""
    budget = share * seconds - settings.iterations * JOB_OVERHEAD_SECONDS
    per_unit = sampled_cells(training, context_key, 1) / SAMPLED_CELLS_PER_SECOND
    return min(settings.pool_size, max(int(budget / per_unit), 0))


def training_seconds(training: pd.DataFrame, context_key: str | None, sizes: list[int], seconds_left: float,
                     cells_per_second: float = SAMPLED_CELLS_PER_SECOND, models: int | None = None) -> float:
    """Seconds of training for each of `models` models still to train (default: one per entry of `sizes`), when
    `seconds_left` must cover their training and the sampling of the pool parts in `sizes` (units each)."""
    models = len(sizes) if models is None else models
    sampling = sum(JOB_OVERHEAD_SECONDS + sampled_cells(training, context_key, n) / cells_per_second for n in sizes)
    return (seconds_left - sampling) / models - JOB_OVERHEAD_SECONDS


def next_model_seconds(training: pd.DataFrame, context_key: str | None, sizes: list[int], seconds_left: float,
                       cells_per_second: float, first_model_seconds: float | None) -> float | None:
    """Seconds of training for the next model, when the pool parts in `sizes` are still to sample: for the first
    model (`first_model_seconds` None) all that their sampling leaves; for a later one an equal share with as many
    further models as get at least `first_model_seconds` each; None when not even one more does."""
    if first_model_seconds is None:
        return training_seconds(training, context_key, sizes, seconds_left, cells_per_second, models=1)
    for models in range(len(sizes), 0, -1):
        seconds = training_seconds(training, context_key, sizes, seconds_left, cells_per_second, models)
        if seconds >= first_model_seconds:
            return seconds
    return None


def generate_pool(
    training: pd.DataFrame,
    context_key: str | None,
    run_dir: Path,
    settings: GeneratorSettings,
    deadline: float,
    log: logging.Logger,
) -> pd.DataFrame:
    """Sample `settings.pool_size` rows (flat) or groups (sequential) in `settings.iterations` equal parts, each
    from a generator of its own (seeds seed, seed + 1, ...) while the budget allows, all before `deadline` (a
    `time.monotonic()` value). The first model trains at most `train_minutes`, less when the sampling to come needs
    the time. A further model is trained only when the budget gives it at least as long as the first one took (so
    that where the first stopped by itself, so does the next); the parts left without a model of their own are
    sampled from the models trained, in turn. Returns the pool with the training data's columns and dtypes;
    sequential pools have their rows grouped, integer group ids that are unique across parts, and only groups
    whose length the training data has."""
    from mostlyai.sdk import MostlyAI

    run_dir.mkdir(parents=True, exist_ok=True)
    indicators = missing_indicator_columns(training, context_key)
    n_parts, sizes = settings.iterations, pool_sizes(settings)
    cells_per_second = SAMPLED_CELLS_PER_SECOND
    mostly = None
    n_models = None  # models trained, once no further one fits the budget
    parts = []
    for i in range(n_parts):
        pool_file = run_dir / f"pool-{i}.parquet"
        if pool_file.exists():
            log.info(f"pool {i + 1}/{n_parts}: reusing {pool_file}")
            parts.append(pd.read_parquet(pool_file))
            continue
        if mostly is None:
            mostly = MostlyAI(local=True, local_dir=run_dir / "sdk", quiet=True)
            if context_key is not None:  # the SDK's jobs run in processes of their own, whose logging we cannot filter
                log.info('model: the SDK\'s warnings about the subject table ("not enough data to train model", "using '
                         'untrained model", "no target columns to sample") are expected: that table holds only the group ids')
        generator = _recorded_generator(mostly, run_dir / f"generator-{i}.json", log) if n_models is None else None
        if generator is None and n_models is None:
            generator = _next_generator(mostly, training, context_key, indicators, settings, i, sizes[i:], deadline,
                                        cells_per_second, run_dir, log)
            if generator is None:
                n_models = len(trained_models(run_dir))  # models 1 .. n_models (a resumed run's earlier parts may reuse them)
                parts_left = f"part {n_parts}" if i + 1 == n_parts else f"parts {i + 1}-{n_parts}"
                log.info(f"model: the time budget leaves model {i + 1} less time than model 1 took: pool {parts_left} "
                         f"sampled from {'model 1' if n_models == 1 else f'models 1-{n_models} in turn'}")
        if generator is None:
            generator = _recorded_generator(mostly, run_dir / f"generator-{i % n_models}.json", log) if n_models else None
            if generator is None:
                raise DataError(f"pool {i + 1}/{n_parts}: the run directory no longer holds the model that samples it: "
                                "start again in a new run directory")
        start = time.monotonic()
        log.info(f"pool {i + 1}/{n_parts}: sampling {sizes[i]:,} {unit_name(context_key)} ...")
        sampling = {"sampling_temperature": settings.temperature, "enable_data_report": False}
        tables = ([{"name": "subjects", "configuration": {"sample_size": sizes[i], "enable_data_report": False}},
                   {"name": "data", "configuration": sampling}] if context_key else
                  [{"name": "data", "configuration": {"sample_size": sizes[i]} | sampling}])
        sd_config = {"random_state": settings.seed + 1000 + i, "tables": tables}
        output = pool_file.with_suffix(".log")  # what the sampling process prints
        with _job_output_to(output):
            synthetic = mostly.generate(generator, config=sd_config, start=True, wait=False, progress_bar=False)
        _wait(synthetic.generation.progress, synthetic.id, f"pool {i + 1}/{n_parts}", output, log)
        data = synthetic.data()
        pool = apply_missing_indicators(data["data"] if isinstance(data, dict) else data, indicators)
        if context_key is not None:
            pool = sort_groups(pool, context_key, first_id=i * 10**9)
        pool = conform_to_training(pool, training)
        write_atomic(pool_file, pool.to_parquet)
        seconds = time.monotonic() - start
        cells_per_second = max(sampled_cells(training, context_key, sizes[i]) / max(seconds - JOB_OVERHEAD_SECONDS, 1.0), 1_000.0)
        log.info(f"pool {i + 1}/{n_parts}: {len(pool):,} rows in {seconds:.0f} s")
        parts.append(pool)
    pool = pd.concat(parts, ignore_index=True)
    return pool if context_key is None else keep_training_lengths(pool, training, context_key, log)


def _recorded_generator(mostly, id_file: Path, log: logging.Logger):
    """The generator recorded in `id_file` if the SDK still has it trained, else None."""
    if not id_file.exists():
        return None
    try:
        generator = mostly.generators.get(_model_record(id_file)["generator_id"])
    except Exception:  # the SDK home was removed: train again
        return None
    if generator.training_status != "DONE":
        return None
    log.info(f"model: reusing generator {generator.id}")
    return generator


def _next_generator(mostly, training, context_key, indicators, settings: GeneratorSettings, i: int, sizes: list[int],
                    deadline: float, cells_per_second: float, run_dir: Path, log: logging.Logger):
    """Model `i`, trained for as long as `next_model_seconds` gives it (at most `train_minutes`), or None when the
    budget leaves it less than the first model took."""
    first = None  # the first model's training seconds, which a later model must be given (none recorded: 0)
    if i > 0:
        models = trained_models(run_dir)
        first = min(models[0].get("seconds", 0.0) if models else 0.0, 60 * settings.train_minutes)
    seconds = next_model_seconds(training, context_key, sizes, deadline - time.monotonic(), cells_per_second, first)
    if seconds is None:
        return None
    if seconds < MIN_TRAINING_SECONDS:
        raise DataError(f"the time budget leaves no time to train a model and sample {sum(sizes):,} "
                        f"{unit_name(context_key)}: raise --time-budget, or lower pool_size")
    minutes = min(settings.train_minutes, seconds / 60)
    if minutes < settings.train_minutes:
        log.info(f"model: the time budget leaves {minutes:.1f} of the {settings.train_minutes:g} min of training")
    model = settings.model_settings(minutes)
    id_file = run_dir / f"generator-{i}.json"
    seed = settings.seed + i
    start = time.monotonic()
    log.info(f"model: training {model.model} on {device_name()} (seed {seed}, at most {model.max_training_minutes:.1f} min, "
             f"{model.max_epochs:g} epochs) ...")
    data = add_missing_indicators(training[model_column_order(training, context_key, settings.column_order)], indicators)
    config = {"name": id_file.stem, "random_state": seed, "tables": _training_tables(data, context_key, model, settings.discrete_max_values)}
    output = id_file.with_suffix(".log")  # what the training process prints
    with _job_output_to(output):
        generator = mostly.train(config=config, start=True, wait=False, progress_bar=False)
    _wait(generator.training.progress, generator.id, "model", output, log)
    generator.reload()
    seconds = time.monotonic() - start
    epochs = _trained_epochs(generator)
    stopped_by = stop_reason(seconds, minutes, epochs, model.max_epochs)
    record = {"generator_id": generator.id, "seed": seed, "seconds": round(seconds, 1), "limit_minutes": round(minutes, 2),
              "epochs": epochs, "stopped_by": stopped_by}
    write_atomic(id_file, lambda path: Path(path).write_text(json.dumps(record)))
    log.info(f"model: trained {epochs if epochs is not None else '?'} epochs in {seconds:.0f} s; " + {
        "time limit": f"its {minutes:.1f}-min time limit stopped it (so it is not reproducible bit for bit)",
        "max_epochs": f"it reached max_epochs={model.max_epochs:g} before its validation loss stopped falling (more epochs may "
                      "give a better model)",
        "early stopping": "it stopped when its validation loss stopped falling",
    }[stopped_by])
    return generator


def stop_reason(seconds: float, limit_minutes: float, epochs: float | None, max_epochs: float) -> str:
    """What ended a model's training: "time limit" (the only end that is not reproducible bit for bit), "max_epochs",
    or "early stopping" (its validation loss stopped falling; also where the SDK reports no epochs)."""
    if seconds >= 60 * limit_minutes:  # a model its time limit stops trains at least that long (its job, longer)
        return "time limit"
    return "max_epochs" if epochs is not None and epochs >= max_epochs else "early stopping"


def _trained_epochs(generator) -> float | None:
    """The epochs a finished training job reports in its last progress message (None where it reports none)."""
    for step in generator.training.progress().steps or []:
        if step.step_code.value.lower() == "train_model" and step.messages:
            epoch = step.messages[-1].get("epoch")
            return None if epoch is None else round(float(epoch), 2)
    return None


def trained_models(run_dir: Path) -> list[dict]:
    """What the run directory records of its models: seed, training seconds and limit, epochs, what stopped it."""
    paths = sorted(run_dir.glob("generator-*.json"), key=lambda path: int(path.stem.split("-")[1]))
    return [{k: v for k, v in _model_record(path).items() if k != "generator_id"} for path in paths]


def _model_record(id_file: Path) -> dict:
    """What `generator-<i>.json` records of model i: its generator id, and what `trained_models` lists."""
    return json.loads(id_file.read_text())


@contextlib.contextmanager
def _job_output_to(path: Path):
    """Send what an SDK job process prints (its traceback, when it fails) to `path` instead of the terminal: the
    local SDK starts each job as a child process, which inherits this process's stderr and stdout while it starts."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as target:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _wait(progress, job_id: str, what: str, output: Path, log: logging.Logger, interval: float = 60.0, grace: float = 20.0) -> None:
    """Poll an SDK job (`progress()` returns its JobProgress) until it ends, logging the running steps every
    `interval` seconds (for training: epoch and validation loss). A failed job, or one whose process is gone, is a
    one-line `DataError` with the SDK's own reason (from what its process printed, in `output`); a process is taken
    for gone when it has not been seen for `grace` seconds. The local SDK runs the job in a process of its own: an
    interruption (Ctrl-C, an error here) stops that process too."""
    stop = []  # set by Ctrl-C or SIGTERM; checked between polls, as the SDK's client may swallow the interrupt
    handlers = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _poll(progress, job_id, what, output, log, interval, grace, stop)
    except BaseException:
        _stop_job_processes(job_id)
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _job_processes(job_id: str) -> list:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if job_id in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _stop_job_processes(job_id: str) -> None:
    for process in _job_processes(job_id):
        with contextlib.suppress(Exception):
            process.kill()


def job_failure_reason(output: Path) -> str:
    """The SDK's own reason for a failed job, on one line: the exception its process printed last (in `output`)."""
    lines = [line.strip() for line in output.read_text(errors="replace").splitlines() if line.strip()] if output.exists() else []
    exceptions = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b.*", line)]
    if exceptions:
        return exceptions[-1]
    return lines[-1] if lines else f"no reason recorded (the job's output is {output})"


def _poll(progress, job_id: str, what: str, output: Path, log: logging.Logger, interval: float, grace: float, stop: list) -> None:
    last = started = time.monotonic()
    missing_since = None  # when the job's process was last found missing
    while True:
        if stop:
            raise KeyboardInterrupt(f"{what}: interrupted")
        job = progress()
        if job.status in ("DONE", "FAILED", "CANCELED"):
            if job.status != "DONE":
                raise DataError(f"{what}: the SDK job ended {job.status.lower()}: {job_failure_reason(output)[:500]}")
            return
        if _job_processes(job_id):
            missing_since = None
        elif time.monotonic() - started > grace:
            missing_since = missing_since or time.monotonic()
            if time.monotonic() - missing_since > grace:
                raise DataError(f"{what}: the SDK job's process ended without a result: {job_failure_reason(output)[:500]}")
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            for step in job.steps or []:
                if step.status == "IN_PROGRESS":
                    detail = step.messages[-1] if step.messages else {}
                    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in detail.items()
                                      if k in ("epoch", "trn_loss", "val_loss", "total_time"))
                    log.info(f"{what}: {step.step_code.value.lower()} {step.progress.value}/{step.progress.max}"
                             + (f" ({shown})" if shown else ""))
        time.sleep(min(2.0, grace / 4))
