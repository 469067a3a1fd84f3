"""The whole recipe for one challenge, shared by `flat/run_flat.py` and `sequential/run_sequential.py`:

    load and check the training data -> train the generator(s) and sample a pool (cached, resumable)
    -> build the selection problem -> IPF, trimming, [coherence], refinement -> privacy guard
    -> submission.csv, metrics.json, run.log (all written atomically) -> a summary table.

The entry scripts own the knobs (a CONFIG dict and profiles); `main` reads the command line on top of them.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common.generate import ModelSettings, device_name, generate_pool
from common.io import DataError, align_to_training, check_training, conform_to_training, exit_on_data_error, read_table, write_atomic
from common.metric import evaluate
from common.privacy import PrivacyGuard
from common.report import qa_report, step_plot, summary_table
from common.select import SelectionSettings, select_units
from common.targets import build_problem

ROOT = Path(__file__).resolve().parents[1]


def main(challenge: str, defaults: dict, profiles: dict[str, dict], argv: list[str] | None = None) -> int:
    """Command line of an entry script: `--training`, `--holdout`, `--profile`, `--time-budget`, `--out`, `--seed`,
    `--set key=value` (any CONFIG key); bad input gives a one-line error and exit code 2."""
    parser = argparse.ArgumentParser(description=f"{challenge} challenge: train, oversample, select, write the submission")
    parser.add_argument("--training", help="training table (CSV, CSV.gz or parquet)")
    parser.add_argument("--holdout", help="optional holdout table: only for the final scores and the privacy reference")
    parser.add_argument("--profile", choices=["auto", *profiles], default="auto", help="auto: gpu when one is visible, else cpu")
    parser.add_argument("--time-budget", type=float, metavar="MIN", help="minutes for the whole run")
    parser.add_argument("--out", help="run directory (default outputs/<challenge>/<profile>)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a CONFIG value")
    args = parser.parse_args(argv)
    with exit_on_data_error():
        profile = args.profile if args.profile != "auto" else ("gpu" if device_name() == "cuda" else "cpu")
        config = {**defaults, **profiles[profile], "profile": profile}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep or key not in config:
                raise DataError(f"--set {item}: expected KEY=VALUE with one of {', '.join(sorted(config))}")
            config[key] = _parse_value(key, value, config[key])
        for key, value in [("training", args.training), ("holdout", args.holdout), ("time_budget_min", args.time_budget),
                           ("seed", args.seed), ("out", args.out)]:
            if value is not None:
                config[key] = value
        config["out"] = config.get("out") or str(ROOT / "outputs" / challenge / profile)
        try:
            run(challenge, config)
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


def _parse_value(key: str, text: str, default):
    """A `--set` value as Python (numbers, tuples, None; anything else stays a string); true/false in any case."""
    words = {"true": True, "false": False, "none": None}
    try:
        value = words[text.lower()] if text.lower() in words else ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(default, bool) and not isinstance(value, bool):
        raise DataError(f"--set {key}={text}: expected true or false")
    return value


def run(challenge: str, config: dict) -> dict:
    """Run the recipe under `config` (see the entry scripts for the keys); returns the metrics it writes."""
    start = time.monotonic()
    deadline = start + 60 * config["time_budget_min"]
    key = config.get("context_key")
    out = Path(config["out"])
    training = _load(config["training"], key, config.get("group_lengths"), "training")
    holdout = None if not config.get("holdout") else align_to_training(training, _load(config["holdout"], key, None, "holdout"), "holdout")
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out / "run.log")
    n_target = config.get("target_size") or (training[key].nunique() if key else len(training))
    log.info(f"{challenge}: {len(training):,} training rows x {training.shape[1]} columns; profile {config['profile']}, "
             f"seed {config['seed']}, device {device_name()}, budget {config['time_budget_min']:g} min -> {out}")
    _check_run_dir(out, training, config)

    seconds = {}
    clock = time.monotonic()
    model = ModelSettings(config["model"], config["max_epochs"], config["train_minutes"], config.get("batch_size"),
                          max_sample_size=config.get("max_training_samples"))
    pool = generate_pool(training, key, out, model, config["iterations"], config["pool_size"], config["temperature"], config["seed"], log)
    seconds["generate"] = time.monotonic() - clock
    unit, n_pool_units = ("groups", pool[key].nunique()) if key else ("rows", len(pool))
    log.info(f"pool: {n_pool_units:,} {unit} ({len(pool):,} rows); target {n_target:,} {unit}")
    if n_pool_units < n_target:
        raise DataError(f"the pool has fewer {unit} than the target ({n_target:,}): raise pool_size")

    clock = time.monotonic()
    problem = build_problem(training, pool, key, n_target, config["max_triples"], config["seed"])
    seconds["build"] = time.monotonic() - clock
    steps, raw_units = [], []  # raw_units: the "random" step's selection, what the raw pool scores

    def on_step(step: str, units: np.ndarray, step_seconds: float) -> None:
        if step == "random":
            raw_units.append(units)
        seconds[step] = step_seconds
        expected = problem.accuracy(problem.histogram(units))["overall"]
        steps.append({"step": step, "seconds": round(step_seconds, 1), "accuracy_expected": round(expected, 5)})
        log.info(f"{step}: expected accuracy {expected:.5f} ({step_seconds:.0f} s)")

    rng = np.random.default_rng(config["seed"])
    finish = 60 * config["finish_minutes"]  # kept for the privacy check, the scores and the writing
    units = select_units(problem, _selection_settings(config), deadline - finish, rng, on_step)
    clock = time.monotonic()
    guard = PrivacyGuard(training, holdout, key, config["max_dcr_share"], config["seed"], config["privacy_sample_rows"])
    units = guard.enforce(problem, pool, units, rng, log)
    on_step("privacy", units, time.monotonic() - clock)

    submission = _submission(pool, problem, units, training, key)
    write_atomic(out / "submission.csv", lambda tmp: submission.to_csv(tmp, index=False))
    metrics = _metrics(challenge, config, training, holdout, pool, problem, raw_units[0], submission, steps, seconds, guard, key)
    metrics["seconds_total"] = round(time.monotonic() - start, 1)
    _write_metrics(out, metrics)
    write_atomic(out / "steps.png", lambda tmp: step_plot(metrics, tmp))
    log.info(f"wrote {out / 'submission.csv'} ({len(submission):,} rows), metrics.json and steps.png")
    if config.get("qa_report"):
        metrics["qa_report"] = _official_report(out / "report.html", training, submission, holdout, key, config["qa_embedding_rows"], log)
        _write_metrics(out, metrics)
    print(summary_table(metrics), file=sys.stderr)
    return metrics


def _write_metrics(out: Path, metrics: dict) -> None:
    write_atomic(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(metrics, indent=2)))


def _official_report(path: Path, training, submission, holdout, key, embedding_rows, log) -> dict:
    """report.html from mostlyai-qa, after the submission; qa's own overall accuracy and DCR share for metrics.json."""
    log.info(f"writing the official qa report ({path.name}; --set qa_report=False skips it) ...")
    clock = time.monotonic()
    figures = {}
    write_atomic(path, lambda tmp: figures.update(qa_report(training, submission, holdout, key, tmp, embedding_rows)))
    figures["seconds"] = round(time.monotonic() - clock, 1)
    log.info(f"wrote {path}: qa's overall accuracy {figures['overall']}, DCR share {figures['dcr_share']} ({figures['seconds']:.0f} s)")
    return figures


def _load(path, key, group_lengths, name) -> pd.DataFrame:
    if not path:
        raise DataError(f"no {name} table given (--{name} PATH)")
    df = read_table(path)
    check_training(df, key, group_lengths, name)
    return df


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


def _check_run_dir(out: Path, training: pd.DataFrame, config: dict) -> None:
    """A run directory caches models and pools for one training table and generator setting: refuse another."""
    keys = ("model", "max_epochs", "train_minutes", "batch_size", "max_training_samples", "iterations", "pool_size", "temperature", "seed")
    fingerprint = {"training": hashlib.sha1(pd.util.hash_pandas_object(training, index=False).to_numpy().tobytes()).hexdigest(),
                   **{k: config.get(k) for k in keys}}
    path = out / "run.json"
    if path.exists() and json.loads(path.read_text()) != fingerprint:
        raise DataError(f"{out} holds the models and pool of other data or generator settings: choose another --out or delete it")
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(fingerprint, indent=2)))


def _selection_settings(config: dict) -> SelectionSettings:
    fields = SelectionSettings.__dataclass_fields__
    return SelectionSettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in fields})


def _submission(pool, problem, units, training, key) -> pd.DataFrame:
    """The selected rows with the training data's columns and dtypes; groups numbered 0, 1, ... (sequential)."""
    rows = problem.pool_rows(np.sort(units))
    submission = pool.iloc[rows].reset_index(drop=True)
    if key is not None:
        submission[key] = pd.factorize(submission[key])[0]
    return conform_to_training(submission, training, skip=(key,))


def _metrics(challenge, config, training, holdout, pool, problem, random_units, submission, steps, seconds, guard, key) -> dict:
    """Accuracy of the raw pool (a random subset) and of the submission with the official metric (against the
    holdout when there is one, which adds its "max" reference), the expected accuracy after each step, times."""
    raw = pool.iloc[problem.pool_rows(np.sort(random_units))].reset_index(drop=True)
    official = {name: evaluate(training, table, holdout, key, "replicate", 1).as_dict(with_max=holdout is not None)
                for name, table in (("random", raw), ("privacy", submission))}
    return {
        "challenge": challenge, "profile": config["profile"], "seed": config["seed"], "device": device_name(),
        "training": str(config["training"]), "holdout": str(config["holdout"]) if holdout is not None else None,
        "accuracy_raw": official["random"], "accuracy": official["privacy"], "privacy": guard.report,
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "steps": steps,
        "submission": str(Path(config["out"]) / "submission.csv"),
        "config": {k: v for k, v in config.items() if k not in ("training", "holdout", "out")},
    }
