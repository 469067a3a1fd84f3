"""The whole recipe for one challenge, shared by `flat/run_flat.py` and `sequential/run_sequential.py`:

    load and check the training data -> train the generator(s) and sample a pool (cached, resumable)
    -> build the selection problem -> IPF, trimming, [coherence], refinement -> privacy guard
    -> submission.csv, metrics.json, run.log (all written atomically) -> a summary table.

The entry scripts own the knobs (a CONFIG dict and profiles); `main` reads the command line on top of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from common.config import check_config, parse_value
from common.generate import (
    MIN_TRAINING_SECONDS,
    MISSING_SUFFIX,
    GeneratorSettings,
    check_packages,
    device_name,
    generate_pool,
    keep_training_lengths,
    pool_size_within,
    pool_sizes,
    sort_groups,
    trained_models,
    training_seconds,
)
from common.io import (
    ArgumentParser,
    DataError,
    align_to_training,
    check_context_key,
    check_training,
    conform_to_training,
    count_units,
    exit_on_data_error,
    read_table,
    unit_name,
    write_atomic,
)
from common.metric import evaluate, gap_closed
from common.privacy import PrivacyGuard, compared_columns, unit_hashes
from common.report import qa_report, step_plot, summary_table
from common.select import SelectionSettings, refine_among, select_units
from common.targets import build_problem

ROOT = Path(__file__).resolve().parents[1]


MIN_TRAINING_UNITS = 50  # rows (flat) or groups (sequential): fewer cannot be learnt, split and checked for privacy
MAX_HOLDOUT_COPIES = 0.5  # a holdout whose units repeat training units more often than this is not a holdout
FINISH_MINUTES_WITHOUT_HOLDOUT = 1.0  # at most this much of `finish_minutes` is kept without a holdout: no DCR check
# runs then, and what is left (scores and writing) took 10 s on the prize SEQUENTIAL data
FINAL_SCORE_MARGIN = 1.5  # the guard stops this many times one official score (as the raw pool's took) before the budget's
# end: the time the submission's own score and the writing need


def main(challenge: str, defaults: dict, profiles: dict[str, dict], argv: list[str] | None = None) -> int:
    """Command line of an entry script: `--training`, `--holdout`, `--pool`, `--profile`, `--time-budget`, `--out`,
    `--seed`, `--set key=value` (any CONFIG key); bad input gives a one-line error and exit code 2."""
    parser = ArgumentParser(description=f"{challenge} challenge: train, oversample, select, write the submission")
    parser.add_argument("--training", help="training table (CSV, CSV.gz or parquet)")
    parser.add_argument("--holdout", help="optional holdout table: only for the final scores and the privacy reference")
    parser.add_argument("--pool", help="optional pool to select from (the training data's columns): no training, no sampling")
    parser.add_argument("--profile", choices=["auto", *profiles], default="auto", help="auto: gpu when one is visible, else cpu")
    parser.add_argument("--time-budget", type=float, metavar="MIN", help="minutes for the whole run, up to the written submission")
    parser.add_argument("--out", help="run directory (default outputs/<challenge>/<profile>)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a CONFIG value")
    parser.add_argument("--check", action="store_true", help="check every input and the run directory, say what would "
                        "run, and stop: nothing is trained or written")
    with exit_on_data_error():
        args = parser.parse_args(argv)
        profile = args.profile if args.profile != "auto" else ("gpu" if device_name() == "cuda" else "cpu")
        config = {**defaults, **profiles[profile]}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep or key not in config:
                raise DataError(f"--set {item}: expected KEY=VALUE with one of {', '.join(sorted(config))}")
            config[key] = parse_value(value)
        for key, value in [("training", args.training), ("holdout", args.holdout), ("pool", args.pool),
                           ("time_budget_min", args.time_budget), ("seed", args.seed)]:
            if value is not None:
                config[key] = value
        config = check_config(config) | {"profile": profile, "out": args.out or str(ROOT / "outputs" / challenge / profile)}
        try:
            run(challenge, config, check_only=args.check)
        except KeyboardInterrupt:
            print(f"interrupted: the same command resumes from what {config['out']} holds", file=sys.stderr)
            return 130
    return 0


def exit_quietly(code: int) -> None:
    """Exit without the interpreter's teardown, after flushing the output: the SDK's duckdb prints pages of
    harmless "leaked instance" reports at teardown, which would bury the summary table."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass(frozen=True)
class Inputs:
    """The checked input tables of a run (pool: a given pool, or None when the generator makes one)."""

    training: pd.DataFrame
    holdout: pd.DataFrame | None
    pool: pd.DataFrame | None
    n_target: int


def check_inputs(config: dict) -> Inputs:
    """Read and check every input before anything is trained or written; raises `DataError` (one line)."""
    key = config.get("context_key")
    training = _load(config["training"], "training")
    check_training(training, key, config.get("group_lengths"), "training", MIN_TRAINING_UNITS)
    reserved = [c for c in training.columns if str(c).endswith(MISSING_SUFFIX)]
    if reserved:
        raise DataError(f"training: column '{reserved[0]}' ends with '{MISSING_SUFFIX}', which the generator's missing "
                        "indicators use: rename it")
    n_target = config.get("target_size") or count_units(training, key)
    holdout = None
    if config.get("holdout"):
        holdout = align_to_training(training, _load(config["holdout"], "holdout"), "holdout")
        check_training(holdout, key, None, "holdout")
        columns = compared_columns(training, key)  # as the privacy guard compares units
        copied = float(np.mean(np.isin(unit_hashes(holdout, key, columns), unit_hashes(training, key, columns))))
        if copied > MAX_HOLDOUT_COPIES:
            raise DataError(f"holdout: {copied:.0%} of its {unit_name(key)} are also in the training data: "
                            "a holdout must be data the model never sees")
    pool = None
    if config.get("pool"):
        pool = align_to_training(training, _load(config["pool"], "pool"), "pool")
        check_context_key(pool, key, "pool")
        if key is not None:
            pool = sort_groups(pool, key, first_id=0)
        n_pool = count_units(pool, key)
        if n_pool < n_target:
            raise DataError(f"pool: {n_pool:,} {unit_name(key)}, fewer than the {n_target:,} to select")
    elif config["pool_size"] < n_target:
        raise DataError(f"pool_size={config['pool_size']:,} is below the {n_target:,} {unit_name(key)} to select")
    return Inputs(training, holdout, pool, n_target)


def _load(path, name) -> pd.DataFrame:
    if not path:
        raise DataError(f"no {name} table given (--{name} PATH)")
    return read_table(path)


def _check_run_dir_writable(out: Path) -> None:
    """Say in one line why the run directory cannot be used, without creating it: a file of that name, or a folder
    that cannot be written (itself, or the nearest one above it that exists)."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: a file of that name exists; choose a directory")
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"--out {out}: cannot write there ({existing} is not a writable folder)")


def _prepare_run_dir(out: Path) -> None:
    """Create the run directory, or say in one line why it cannot be used."""
    _check_run_dir_writable(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise DataError(f"--out {out}: cannot write there ({err.strerror or err})") from None


@dataclass(frozen=True)
class Budget:
    """The run's time budget in `time.monotonic()` values: the pool is ready by `generation`, the selection ends
    at `selection`, the submission and metrics are written by `end`."""

    start: float
    generation: float
    selection: float
    end: float
    selection_seconds: float  # kept for the selection
    minutes: float  # the whole budget

    @classmethod
    def of(cls, config: dict, start: float) -> "Budget":
        """`finish_minutes` are kept for the privacy guard's DCR check, which needs a holdout: without one, training
        gets all but FINISH_MINUTES_WITHOUT_HOLDOUT of them."""
        total = 60 * config["time_budget_min"]
        finish_minutes = config["finish_minutes"] if config.get("holdout") else min(config["finish_minutes"], FINISH_MINUTES_WITHOUT_HOLDOUT)
        finish = min(60 * finish_minutes, 0.25 * total)
        selection = min(60 * config["selection_minutes"], 0.25 * total)
        return cls(start, start + total - finish - selection, start + total - finish, start + total, selection,
                   config["time_budget_min"])


def _fit_pool_to_budget(settings: GeneratorSettings, training: pd.DataFrame, key: str | None, n_target: int,
                        budget: Budget) -> GeneratorSettings:
    """The generator settings with a pool small enough to sample within the budget (at least twice the target);
    raises `DataError` when the budget cannot hold training, sampling and the selection."""
    seconds = budget.generation - time.monotonic()
    pool_size = max(pool_size_within(training, key, settings, seconds), min(2 * n_target, settings.pool_size))
    settings = replace(settings, pool_size=pool_size)
    if training_seconds(training, key, pool_sizes(settings), seconds, models=1) < MIN_TRAINING_SECONDS:
        raise DataError(f"--time-budget {budget.minutes:g}: too short to train, sample {pool_size:,} "
                        f"{unit_name(key)} and select; raise it, or lower pool_size")
    return settings


def _recorded_pool_size(out: Path, settings: GeneratorSettings) -> int | None:
    """The pool size of the run directory's models and pool when its other generator settings are these: a resumed
    run keeps its pool, even where its budget alone would sample a smaller one."""
    recorded = _recorded_run(out)
    if recorded is None:
        return None
    recorded = {k: v for k, v in recorded.items() if k != "training"}
    try:
        previous = GeneratorSettings(**recorded)
    except TypeError:  # a run directory of an older layout: the fingerprint check decides
        return None
    return previous.pool_size if replace(previous, pool_size=settings.pool_size) == settings else None


def run(challenge: str, config: dict, check_only: bool = False) -> dict | None:
    """Run the recipe under `config` (checked by `check_config`; see the entry scripts for the keys); returns the
    metrics it writes. `check_only`: check the inputs, the budget and the run directory, print what would run, and
    return None before anything is trained or written."""
    budget = Budget.of(config, time.monotonic())
    key = config.get("context_key")
    out = Path(config["out"])
    inputs = check_inputs(config)
    check_packages(train=inputs.pool is None)
    training, holdout, n_target = inputs.training, inputs.holdout, inputs.n_target
    generator = GeneratorSettings.from_config(config)
    if inputs.pool is None:
        resumed = _recorded_pool_size(out, generator)
        generator = replace(generator, pool_size=resumed) if resumed else _fit_pool_to_budget(generator, training, key, n_target, budget)
        fingerprint = _run_fingerprint(out, training, generator)
    if check_only:
        _check_run_dir_writable(out)
        source = f"the pool {config['pool']}" if inputs.pool is not None else f"{generator.pool_size:,} to sample"
        print(f"{challenge}: ok: {len(training):,} training rows x {training.shape[1]} columns; {n_target:,} {unit_name(key)} "
              f"to select from {source}; profile {config['profile']}, seed {config['seed']}, budget "
              f"{config['time_budget_min']:g} min -> {out}")
        return None
    _prepare_run_dir(out)
    log = _logger(out / "run.log")
    log.info(f"{challenge}: {len(training):,} training rows x {training.shape[1]} columns; profile {config['profile']}, "
             f"seed {config['seed']}, device {device_name()}, budget {config['time_budget_min']:g} min -> {out}")
    if generator.pool_size < config["pool_size"]:
        log.info(f"pool: {generator.pool_size:,} {unit_name(key)} instead of {config['pool_size']:,}, so that "
                 f"sampling fits the time budget")

    seconds = {}
    clock = time.monotonic()
    if inputs.pool is None:
        write_atomic(out / "run.json", lambda tmp: Path(tmp).write_text(json.dumps(fingerprint, indent=2)))
        pool = generate_pool(training, key, out, generator, budget.generation, log)
    else:
        log.info(f"pool: {config['pool']} (no training)")
        pool = inputs.pool if key is None else keep_training_lengths(inputs.pool, training, key, log)
    seconds["generate"] = time.monotonic() - clock
    unit, n_pool_units = unit_name(key), count_units(pool, key)
    log.info(f"pool: {n_pool_units:,} {unit} ({len(pool):,} rows); target {n_target:,} {unit}")
    larger_pool = "give a larger --pool" if inputs.pool is not None else "raise pool_size"
    if n_pool_units < n_target:
        raise DataError(f"the pool has fewer {unit} than the target ({n_target:,}): {larger_pool}")
    left = budget.selection - time.monotonic()
    if left < 0.5 * budget.selection_seconds:
        log.warning(f"warning: the selection gets {max(left, 0):.0f} s of the {budget.selection_seconds:.0f} s kept for it: "
                    "training and sampling took longer than estimated; the submission may be weak")

    clock = time.monotonic()
    guard = PrivacyGuard(training, holdout, key, config["max_dcr_share"], config["seed"], config["privacy_sample_rows"],
                         config["privacy_polish_rows"])
    pool = guard.drop_copies(pool, log)
    if count_units(pool, key) < n_target:
        raise DataError(f"privacy: the pool has fewer {unit} than the target ({n_target:,}) once training copies are left out: "
                        f"{larger_pool}")
    seconds["copies"] = time.monotonic() - clock
    clock = time.monotonic()
    problem = build_problem(training, pool, key, n_target, config["max_triples"], config["seed"], config["metric_noise"])
    seconds["build"] = time.monotonic() - clock
    steps, raw_units = [], []  # raw_units: the "random" step's selection, what the raw pool scores

    def on_step(step: str, units: np.ndarray, step_seconds: float) -> None:
        if step == "random":
            raw_units.append(units)
        seconds[step] = step_seconds
        expected = problem.accuracy(problem.histogram(units))["overall"]
        steps.append({"step": step, "seconds": round(step_seconds, 1), "accuracy_expected": round(expected, 5)})
        log.info(f"{step}: expected accuracy {expected:.5f} ({step_seconds:.0f} s)")

    def anneal_until(units: np.ndarray) -> float:  # the annealing leaves the DCR check the time it needs on this machine
        clock = time.monotonic()
        seconds = guard.reserve_seconds(problem, pool, units)
        until = budget.end - seconds
        if not seconds:  # no DCR check
            return until
        early = (": no time for the annealing" if until <= time.monotonic() else
                 f": the annealing ends {budget.selection - until:.0f} s early" if until < budget.selection else "")
        log.info(f"privacy: the DCR check is expected to need about {seconds:.0f} s at this machine's pace "
                 f"(measured in {time.monotonic() - clock:.0f} s){early}")
        return until

    rng = np.random.default_rng(config["seed"])
    selection = SelectionSettings.from_config(config)
    units = select_units(problem, selection, budget.selection, rng, on_step, anneal_until)

    # the scores that do not depend on the submission come first: their time tells the guard how long to leave for its own
    clock = time.monotonic()
    raw = pool.iloc[problem.pool_rows(np.sort(raw_units[0]))].reset_index(drop=True)
    scores = {"accuracy_raw": _official(inputs, key, raw)} | ({"copy": _official(inputs, key, training)} if holdout is not None else {})
    seconds["scores"] = time.monotonic() - clock
    guard_end = budget.end - FINAL_SCORE_MARGIN * seconds["scores"] / len(scores)

    clock = time.monotonic()

    def polish(units: np.ndarray, candidates: np.ndarray, rank: np.ndarray) -> np.ndarray:  # half of what is left of the budget at most
        return refine_among(problem, units, candidates, selection, time.monotonic() + 0.5 * (guard_end - time.monotonic()), rng, rank)

    units = guard.enforce(problem, pool, units, log, polish, guard_end)
    on_step("privacy", units, time.monotonic() - clock)

    submission = _submission(pool, problem, units, training, key)
    write_atomic(out / "submission.csv", lambda tmp: submission.to_csv(tmp, index=False))
    scores["accuracy"] = _official(inputs, key, submission)
    metrics = {
        "challenge": challenge, "profile": config["profile"], "seed": config["seed"], "device": device_name(),
        "training": str(config["training"]), "holdout": str(config["holdout"]) if holdout is not None else None,
        **_accuracy(scores), "privacy": guard.report,
        "models": trained_models(out) if inputs.pool is None else [],
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "steps": steps, "submission": str(out / "submission.csv"),
        "config": {k: v for k, v in config.items() if k not in ("training", "holdout", "out")},
    }
    metrics["seconds_total"] = round(time.monotonic() - budget.start, 1)
    metrics["budget_used"] = round(metrics["seconds_total"] / (60 * config["time_budget_min"]), 3)
    _write_metrics(out, metrics)
    write_atomic(out / "steps.png", lambda tmp: step_plot(metrics, tmp))
    log.info(f"wrote {out / 'submission.csv'} ({len(submission):,} rows), metrics.json and steps.png in "
             f"{metrics['seconds_total'] / 60:.1f} min ({metrics['budget_used']:.0%} of the time budget)")
    if config.get("qa_report"):
        metrics["qa_report"] = _official_report(out / "report.html", training, submission, holdout, key, config["qa_embedding_rows"], log)
        _write_metrics(out, metrics)
    print(summary_table(metrics), file=sys.stderr)
    return metrics


def _write_metrics(out: Path, metrics: dict) -> None:
    write_atomic(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))


def _official_report(path: Path, training, submission, holdout, key, embedding_rows, log) -> dict:
    """report.html from mostlyai-qa, after the submission; qa's own overall accuracy and DCR share for metrics.json."""
    log.info(f"writing the official qa report ({path.name}; outside the time budget; --set qa_report=False skips it) ...")
    clock = time.monotonic()
    figures = {}
    write_atomic(path, lambda tmp: figures.update(qa_report(training, submission, holdout, key, tmp, embedding_rows)))
    figures["seconds"] = round(time.monotonic() - clock, 1)
    log.info(f"wrote {path}: qa's overall accuracy {figures['overall']}, DCR share {figures['dcr_share']} ({figures['seconds']:.0f} s)")
    return figures


def _logger(path: Path) -> logging.Logger:
    log = logging.getLogger(f"synth.{path}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
        for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(path)):
            handler.setFormatter(fmt)
            log.addHandler(handler)
    return log


def _recorded_run(out: Path) -> dict | None:
    """The run directory's `run.json` (None when there is none); raises `DataError` when it cannot be read."""
    path = out / "run.json"
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err.__class__.__name__}): choose another --out or delete it") from None
    if not isinstance(recorded, dict):
        raise DataError(f"{path}: not a run record: choose another --out or delete it")
    return recorded


def _run_fingerprint(out: Path, training: pd.DataFrame, settings: GeneratorSettings) -> dict:
    """What `run.json` records of a run directory: it caches models and pools for one training table and generator
    setting. Raises `DataError` when it already holds another's."""
    fingerprint = {"training": hashlib.sha1(pd.util.hash_pandas_object(training, index=False).to_numpy().tobytes()).hexdigest(),
                   **asdict(settings)}
    recorded = _recorded_run(out)
    if recorded is not None and recorded != fingerprint:
        raise DataError(f"{out} holds the models and pool of other data or generator settings: choose another --out or delete it")
    return fingerprint


def _submission(pool, problem, units, training, key) -> pd.DataFrame:
    """The selected rows with the training data's columns and dtypes; groups numbered 0, 1, ... (sequential)."""
    rows = problem.pool_rows(np.sort(units))
    submission = pool.iloc[rows].reset_index(drop=True)
    if key is not None:
        submission[key] = pd.factorize(submission[key])[0]
    return conform_to_training(submission, training, skip=(key,))


def _official(inputs: Inputs, key: str | None, table: pd.DataFrame) -> dict:
    """The official accuracy of `table`, against the holdout when there is one (which adds qa's "max" references)."""
    holdout = inputs.holdout
    return evaluate(inputs.training, table, holdout, key, "replicate", 1).as_dict(with_max=holdout is not None)


def _accuracy(scores: dict) -> dict:
    """The official scores of the raw pool (a random subset) and of the submission; with a holdout also the training
    data's own score (the copy, the metric's ceiling) and the share of the way from the holdout's "max" to it that the
    submission covers."""
    if "copy" not in scores:
        return scores
    accuracy, copy = scores["accuracy"], scores["copy"]["overall"]
    return {k: v for k, v in scores.items() if k != "copy"} | {
        "accuracy_copy": copy, "gap_closed": gap_closed(accuracy["overall"], accuracy["overall_max"], copy)}
