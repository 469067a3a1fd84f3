"""Post-processing benchmark on seeded prize-shaped problems (no external data).

    python bench/postprocess.py [--challenge flat|sequential] [--size 1.0] [--budget SECONDS] [--json]

flat: training 100,000 x 80 (`bench.problems.prize_flat`), a holdout from the same generator, and a pool of
2.5 M rows (x `--size`) from a deliberately imperfect generator (a distorted design); sequential: 20,000 groups,
300,000 pool groups (x `--size`). The engine chooses a training-sized subset of the pool: IPF -> expectation
rounding (1.25 x) -> trimming -> [coherence swaps] -> swap refinement, within `--budget` seconds.

Prints per step: seconds, peak RSS, accuracy in expected mode (against training) and in replicate mode (the
official metric, seed 1, training + holdout); the holdout's reference is qa's "max" accuracy. `--json` prints one
object with `seconds_total`, `peak_rss_gb`, `accuracy_raw`, `accuracy_final`, `accuracy_holdout` and the steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.problems import prize_flat, prize_sequential  # noqa: E402
from common.metric import evaluate  # noqa: E402
from common.select import SelectionSettings, select_units  # noqa: E402
from common.targets import build_problem  # noqa: E402
from flat.run_flat import CONFIG as FLAT  # noqa: E402  (the entry scripts' selection knobs, cpu profile)
from sequential.run_sequential import CONFIG as SEQUENTIAL  # noqa: E402


@dataclass(frozen=True)
class Settings:
    n_training: int  # rows (flat) or groups (sequential)
    n_pool: int
    budget: float  # seconds for the whole post-processing
    max_triples: int
    metric_noise: float
    selection: SelectionSettings


SETTINGS = {
    "flat": Settings(100_000, 2_500_000, 300, max_triples=FLAT["max_triples"], metric_noise=FLAT["metric_noise"],
                     selection=SelectionSettings.from_config(FLAT)),
    "sequential": Settings(20_000, 300_000, 180, max_triples=SEQUENTIAL["max_triples"], metric_noise=SEQUENTIAL["metric_noise"],
                           selection=SelectionSettings.from_config(SEQUENTIAL)),
}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_data(challenge: str, settings: Settings, size: float):
    n_pool = int(settings.n_pool * size)
    if challenge == "flat":
        return prize_flat(settings.n_training, 1), prize_flat(settings.n_training, 2), prize_flat(n_pool, 3, distortion=0.1), None
    training = prize_sequential(settings.n_training, 1, key_prefix="t")
    holdout = prize_sequential(settings.n_training, 2, key_prefix="h")
    return training, holdout, prize_sequential(n_pool, 3, distortion=0.5, key_prefix="p"), "group_id"


def run(challenge: str, size: float, budget: float | None, seed: int = 0) -> dict:
    settings = SETTINGS[challenge]
    budget = budget or settings.budget
    start = time.perf_counter()
    training, holdout, pool, key = make_data(challenge, settings, size)
    print(f"# {challenge}: data made in {time.perf_counter() - start:.0f} s; pool {len(pool):,} rows", file=sys.stderr)

    start = time.monotonic()
    problem = build_problem(training, pool, key, max_triples=settings.max_triples, seed=seed, metric_noise=settings.metric_noise)
    build_seconds = time.monotonic() - start
    selections = []  # (step, units, seconds), scored after the selection so that scoring takes no budget
    select_units(problem, settings.selection, time.monotonic() + budget - build_seconds, np.random.default_rng(seed),
                 on_step=lambda step, units, seconds: selections.append((step, units.copy(), seconds)))
    steps = []
    for step, units, seconds in selections:
        expected = problem.accuracy(problem.histogram(units))["overall"]
        selection = pool.iloc[problem.pool_rows(units)].reset_index(drop=True)
        official = evaluate(training, selection, holdout, key, "replicate", 1).as_dict(with_max=True)
        seconds += build_seconds if step == "random" else 0.0
        steps.append({"step": "build" if step == "random" else step, "seconds": round(seconds, 1), "expected": round(expected, 5),
                      "official": official["overall"], "official_max": official["overall_max"]})
        print(f"# {steps[-1]}", file=sys.stderr)
    return {
        "challenge": challenge,
        "pool_units": problem.n_units,
        "seconds_total": round(sum(s["seconds"] for s in steps), 1),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "accuracy_raw": steps[0]["official"],
        "accuracy_final": steps[-1]["official"],
        "accuracy_holdout": steps[-1]["official_max"],
        "steps": steps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--challenge", choices=["flat", "sequential"], default="flat")
    parser.add_argument("--size", type=float, default=1.0, help="pool size factor (1.0: 2.5 M rows / 300 k groups)")
    parser.add_argument("--budget", type=float, help="seconds of post-processing (default 300 flat, 180 sequential)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.challenge, args.size, args.budget)
    if args.json:
        print(json.dumps(result))
    else:
        print(pd.DataFrame(result["steps"]).set_index("step").to_string())
        print({k: v for k, v in result.items() if k != "steps"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
