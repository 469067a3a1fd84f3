"""`--pool PATH`: the selection and the privacy guard on a pool from elsewhere (no training), here with known
copies of the training data in it."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from conftest import ROOT
from fixtures import flat_table, sequential_table


def run_with_pool(challenge: str, tmp_path, training: pd.DataFrame, pool: pd.DataFrame, holdout: pd.DataFrame | None = None,
                  *options: str) -> tuple[subprocess.CompletedProcess, dict, pd.DataFrame]:
    paths = {}
    for name, table in (("training", training), ("pool", pool), ("holdout", holdout)):
        if table is not None:  # parquet keeps the datetimes (as text, a column of unique timestamps would dominate qa's
            paths[name] = tmp_path / f"{name}.parquet"  # distances: every unseen value is one and the same "rare" point)
            table.to_parquet(paths[name])
    args = [f"--{name}={path}" for name, path in paths.items()]
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / challenge / f"run_{challenge}.py"), "--profile", "smoke", *args, "--out", str(out),
               "--set", "target_size=None", "--set", "max_dcr_share=0.52", *options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        return result, {}, pd.DataFrame()
    return result, json.loads((out / "metrics.json").read_text()), pd.read_csv(out / "submission.csv", low_memory=False)


def test_copies_under_fresh_ids_stay_out_without_a_holdout(tmp_path):
    training = flat_table(1_000, 1).assign(id=[f"t{i:05d}" for i in range(1_000)])
    unseen = flat_table(4_000, 2).assign(id=[f"u{i:05d}" for i in range(4_000)])
    copies = training.assign(id=[f"c{i:05d}" for i in range(1_000)])  # every training row, under a fresh id
    result, metrics, submission = run_with_pool("flat", tmp_path, training, pd.concat([copies, unseen], ignore_index=True))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no training" in result.stderr and "training MOSTLY_AI" not in result.stderr
    copied = submission["id"].str.startswith("c").mean()
    assert len(submission) == 1_000 and copied <= 0.01
    assert metrics["privacy"]["identifier_columns_left_out"] == ["id"]
    assert metrics["privacy"]["reference"].startswith("training half") and "dcr_share" not in metrics["privacy"]
    assert "no DCR share (needs a holdout" in result.stderr


def test_a_pool_nearer_training_than_the_holdout_is_repaired(tmp_path):
    training, holdout = sequential_table(300, 1, key_prefix="t"), sequential_table(300, 2, key_prefix="h")
    near = training.assign(value=training["value"] + 0.001, key="n" + training["key"])  # near copies of training groups
    pool = pd.concat([near, sequential_table(1_500, 3, key_prefix="p")], ignore_index=True)
    result, metrics, submission = run_with_pool("sequential", tmp_path, training, pool, holdout, "--set", "context_key=key",
                                                "--set", "group_lengths=None")
    assert result.returncode == 0, result.stderr[-3000:]
    privacy = metrics["privacy"]
    assert privacy["dcr_repairs"] and privacy["dcr_repairs"][0]["dcr_share"] > 0.52
    assert privacy["dcr_share_expected"] <= 0.52 and privacy["dcr_share"] < 0.55
    assert submission["key"].nunique() == 300
    assert np.isfinite(metrics["accuracy"]["overall"])


def test_a_pool_of_training_copies_only_stops_before_the_selection(tmp_path):
    training = flat_table(1_000, 1)
    result, _, _ = run_with_pool("flat", tmp_path, training, training, flat_table(1_000, 2))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "once training copies are left out: give a larger --pool" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "submission.csv").exists()
