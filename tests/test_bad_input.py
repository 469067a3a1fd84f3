"""Bad input to the entry scripts: one line on stderr, exit code 2, nothing written."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT
from fixtures import flat_table


def run_script(challenge: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / challenge / f"run_{challenge}.py"), "--profile", "smoke", *args],
                          capture_output=True, text=True, timeout=300)


def sequential_rows(n_groups: int, length: int) -> pd.DataFrame:
    return pd.DataFrame({"group_id": [g for g in range(n_groups) for _ in range(length)], "x": range(n_groups * length)})


def written(path, table: pd.DataFrame | None = None):
    """`path` holding `table` as CSV (an empty file for None)."""
    path.write_text("") if table is None else table.to_csv(path, index=False)
    return path


CASES = {
    "wrong path": ("flat", lambda d: d / "nowhere.csv", "no such file"),
    "empty file": ("flat", lambda d: written(d / "t.csv"), "the file is empty"),
    "no group_id": ("sequential", lambda d: written(d / "t.csv", flat_table(50, 0)), "no context key column 'group_id'"),
    "short groups": ("sequential", lambda d: written(d / "t.csv", sequential_rows(10, 3)), "fewer than 5 or more than 10"),
    "text among numbers": ("flat", lambda d: written(d / "t.csv", pd.DataFrame({"x": [str(i) for i in range(200)] + ["12 kg"]})),
                           "column 'x' holds numbers but also the value '12 kg'"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_training_data_gives_one_line_error_and_no_output(case, tmp_path):
    challenge, make, message = CASES[case]
    out = tmp_path / "run"
    result = run_script(challenge, "--training", str(make(tmp_path)), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert not (out / "submission.csv").exists()


def test_unknown_setting_is_refused(tmp_path):
    result = run_script("flat", "--training", str(tmp_path / "t.csv"), "--set", "no_such_knob=1")
    assert result.returncode == 2 and "no_such_knob" in result.stderr and "max_dcr_share" in result.stderr


def test_a_switch_takes_only_true_or_false(tmp_path):
    result = run_script("flat", "--training", str(tmp_path / "t.csv"), "--set", "qa_report=maybe")
    assert result.returncode == 2 and "qa_report=maybe: expected true or false" in result.stderr
