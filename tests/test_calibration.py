"""On the real prize data (when present): our scores of the five finalists equal the official ones."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_DATA

DATA = SHARED_DATA / "prize-sequential"


@pytest.mark.skipif(not (DATA / "stage2-results.csv").is_file(), reason="prize data not available")
def test_finalists_match_official_results():
    out = subprocess.run([sys.executable, "bench/calibrate_finalists.py", "--data", str(DATA), "--json"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["max_abs_diff"] <= 0.0005 and result["same_ranking"]
    assert len(result["rows"]) == 5


def test_skips_cleanly_without_data(tmp_path):
    out = subprocess.run([sys.executable, "bench/calibrate_finalists.py", "--data", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("skipped")
