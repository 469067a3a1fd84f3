"""Bad input to the entry scripts: one line on stderr, exit code 2, nothing written, before any training."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from fixtures import flat_table

from common.config import check_config, parse_value
from common.io import DataError


def run_script(challenge: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / challenge / f"run_{challenge}.py"), "--profile", "smoke", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def sequential_rows(n_groups: int, length: int) -> pd.DataFrame:
    return pd.DataFrame({"group_id": [g for g in range(n_groups) for _ in range(length)], "x": range(n_groups * length)})


def written(path, table: pd.DataFrame | None = None):
    """`path` holding `table` as CSV (an empty file for None)."""
    path.write_text("") if table is None else table.to_csv(path, index=False)
    return path


def nested_parquet(d):
    path = d / "t.parquet"
    pd.DataFrame({"x": range(100), "tags": [[1, 2]] * 100}).to_parquet(path)
    return path


GOOD = flat_table(200, 0)
CASES = {
    "wrong path": ("flat", lambda d: d / "nowhere.csv", "no such file"),
    "empty file": ("flat", lambda d: written(d / "t.csv"), "the file is empty"),
    "no group_id": ("sequential", lambda d: written(d / "t.csv", flat_table(50, 0)), "no context key column 'group_id'"),
    "short groups": ("sequential", lambda d: written(d / "t.csv", sequential_rows(60, 3)), "fewer than 5 or more than 10"),
    "text among numbers": ("flat", lambda d: written(d / "t.csv", pd.DataFrame({"x": [str(i) for i in range(200)] + ["12 kg"]})),
                           "column 'x' holds numbers but also the value '12 kg'"),
    "10 rows": ("flat", lambda d: written(d / "t.csv", flat_table(10, 0)), "10 rows; at least 50 are needed"),
    "1 row": ("flat", lambda d: written(d / "t.csv", flat_table(1, 0)), "1 rows; at least 50 are needed"),
    "nested values": ("flat", nested_parquet, "column 'tags' holds nested values"),
    "infinite value": ("flat", lambda d: written(d / "t.csv", GOOD.assign(amount=GOOD["amount"].replace(GOOD["amount"][3], np.inf))),
                       "column 'amount' holds an infinite value"),
    "reserved column name": ("flat", lambda d: written(d / "t.csv", GOOD.assign(amount__is_missing="no")), "ends with '__is_missing'"),
    "repeated column names": ("flat", lambda d: written(d / "t.csv", GOOD.rename(columns={"count": "amount"})),
                              "repeated column names 'amount'"),
    "all empty": ("flat", lambda d: written(d / "t.csv", pd.DataFrame({"a": [None] * 100, "b": [None] * 100})), "no values"),
    "semicolons": ("flat", lambda d: (GOOD.to_csv(d / "t.csv", sep=";", index=False), d / "t.csv")[1], "looks ';'-separated"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_training_data_gives_one_line_error_and_no_output(case, tmp_path):
    challenge, make, message = CASES[case]
    out = tmp_path / "run"
    result = run_script(challenge, "--training", str(make(tmp_path)), "--out", str(out))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert message in result.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def good_training(tmp_path_factory):
    return written(tmp_path_factory.mktemp("good") / "training.csv", GOOD)


OPTION_CASES = {
    "seed below 0": (["--seed", "-1"], "seed=-1: expected an integer from 0 to"),
    "budget 0": (["--time-budget", "0"], "time_budget_min=0.0: expected a number > 0"),
    "budget below 0": (["--time-budget", "-5"], "expected a number > 0"),
    "budget not a number": (["--time-budget", "nan"], "time_budget_min=nan: expected a number > 0"),
    "budget text": (["--time-budget", "soon"], "invalid float value: 'soon'"),
    "budget too short": (["--time-budget", "0.2"], "too short to train"),
    "pool_size text": (["--set", "pool_size=lots"], "pool_size='lots': expected an integer >= 1"),
    "pool_size 0": (["--set", "pool_size=0"], "pool_size=0: expected an integer >= 1"),
    "pool below target": (["--set", "pool_size=500"], "pool_size=500 is below the 1,000 rows to select"),
    "temperature below 0": (["--set", "temperature=-1"], "temperature=-1: expected a number > 0"),
    "unknown model": (["--set", "model=MOSTLY_AI/Huge"], "model='MOSTLY_AI/Huge': expected one of MOSTLY_AI/Small"),
    "unknown column order": (["--set", "column_order=random"], "column_order='random': expected one of cardinality, training"),
    "unknown table kind": (["--set", "screen_tables=univariate,bivariates"], "screen_tables=('univariate', 'bivariates')"),
    "annealing without a temperature": (["--set", "anneal_sweeps=50", "--set", "anneal_temperature=0"],
                                        "anneal_sweeps needs anneal_temperature"),
    "unknown setting": (["--set", "no_such_knob=1"], "no_such_knob"),
    "switch": (["--set", "qa_report=maybe"], "qa_report='maybe': expected true or false"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_bad_options_give_one_line_error_and_no_output(case, good_training, tmp_path):
    options, message = OPTION_CASES[case]
    out = tmp_path / "run"
    result = run_script("flat", "--training", str(good_training), "--out", str(out), *options)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert message in result.stderr
    assert not out.exists()


def test_a_missing_package_of_the_local_mode_is_named_before_any_work(good_training, tmp_path):
    """As on a machine with `mostlyai` but without its local extras (seen: no uvicorn): one line, exit 2, no run
    directory, before any training."""
    shadow = tmp_path / "shadow" / "uvicorn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'uvicorn'\")\n")
    out = tmp_path / "run"
    result = run_script("flat", "--training", str(good_training), "--out", str(out),
                        env={**os.environ, "PYTHONPATH": str(shadow.parent)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1 and "No module named 'uvicorn'" in result.stderr
    assert "bash setup.sh" in result.stderr and not out.exists()


def test_unusable_run_directories_are_refused(good_training, tmp_path):
    a_file = written(tmp_path / "taken", GOOD)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text("{")
    for out, message in ((a_file, "a file of that name exists"), (a_file / "run", "cannot write there"),
                         (broken, "run.json: unreadable")):
        result = run_script("flat", "--training", str(good_training), "--out", str(out))
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_check_says_what_would_run_and_writes_nothing(good_training, tmp_path):
    out = tmp_path / "new" / "run"
    result = run_script("flat", "--training", str(good_training), "--out", str(out), "--check")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("flat: ok: 200 training rows x ") and "to select from" in result.stdout
    assert not out.parent.exists()
    result = run_script("flat", "--training", str(good_training), "--out", str(out), "--check", "--set", "pool_size=10")
    assert result.returncode == 2 and "pool_size=10 is below" in result.stderr and not out.parent.exists()


@pytest.mark.parametrize("fresh_ids", [False, True])
def test_a_holdout_that_repeats_the_training_data_is_refused(tmp_path, fresh_ids):
    training = GOOD.assign(row_id=[f"id-{i}" for i in range(len(GOOD))])
    holdout = training.assign(row_id=[f"other-{i}" for i in range(len(GOOD))]) if fresh_ids else training
    paths = [written(tmp_path / name, table) for name, table in (("trn.csv", training), ("hol.csv", holdout))]
    result = run_script("flat", "--training", str(paths[0]), "--holdout", str(paths[1]), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "100% of its rows are also in the training data" in result.stderr
    assert not (tmp_path / "run").exists()


def test_set_values_take_the_type_of_their_knob():
    config = check_config({"pool_size": parse_value("1e6"), "screen_tables": parse_value("univariate,bivariate"),
                           "temperature": parse_value("1"), "qa_report": parse_value("FALSE"), "batch_size": parse_value("none")})
    assert config == {"pool_size": 1_000_000, "screen_tables": ("univariate", "bivariate"), "temperature": 1.0,
                      "qa_report": False, "batch_size": None}
    with pytest.raises(DataError, match="pool_size=1.5"):
        check_config({"pool_size": 1.5})


def test_every_knob_of_the_entry_scripts_has_a_rule():
    from flat.run_flat import CONFIG as FLAT
    from flat.run_flat import PROFILES as FLAT_PROFILES
    from sequential.run_sequential import CONFIG as SEQUENTIAL
    from sequential.run_sequential import PROFILES as SEQUENTIAL_PROFILES

    for defaults, profiles in ((FLAT, FLAT_PROFILES), (SEQUENTIAL, SEQUENTIAL_PROFILES)):
        for profile in profiles.values():
            check_config({**defaults, **profile})  # raises on an unknown knob or a default out of range


def test_every_setting_the_recipe_reads_is_a_checked_knob():
    """The settings dataclasses take their fields from CONFIG by name: each field must be a knob with a rule."""
    import dataclasses

    from common.config import RULES
    from common.generate import GeneratorSettings
    from common.select import SelectionSettings
    from flat.run_flat import CONFIG as FLAT
    from sequential.run_sequential import CONFIG as SEQUENTIAL

    for settings in (GeneratorSettings, SelectionSettings):
        for field in dataclasses.fields(settings):
            assert field.name in RULES, field.name
            if field.default is dataclasses.MISSING:
                assert field.name in FLAT and field.name in SEQUENTIAL, field.name
