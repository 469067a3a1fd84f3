"""`python -m common.evaluate`: a table or one JSON object; bad input is a one-line error with exit code 2."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from fixtures import flat_table, sequential_table


def run(*args):
    return subprocess.run([sys.executable, "-m", "common.evaluate", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    sequential_table(150, 1).to_csv(d / "trn.csv.gz", index=False)
    sequential_table(120, 2).to_parquet(d / "syn.parquet")
    sequential_table(40, 3, key_prefix="h").to_csv(d / "hol.csv", index=False)
    flat_table(200, 4).to_csv(d / "flat.csv", index=False)
    return d


def test_json_with_holdout(files):
    out = run("--training", str(files / "trn.csv.gz"), "--synthetic", str(files / "syn.parquet"),
              "--holdout", str(files / "hol.csv"), "--context-key", "key", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("overall", "univariate", "bivariate", "trivariate", "coherence"):
        assert 0 < result[key] <= 1 and 0 < result[f"{key}_max"] <= 1


def test_flat_table_output(files):
    out = run("--training", str(files / "flat.csv"), "--synthetic", str(files / "flat.csv"), "--mode", "expected")
    assert out.returncode == 0, out.stderr
    assert "overall" in out.stdout and "coherence" in out.stdout
    result = json.loads(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "flat.csv"), "--json").stdout)
    assert result["coherence"] is None and "overall_max" not in result


def one_line_error(out, *fragments):
    assert out.returncode == 2
    assert out.stdout == "" and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    for fragment in fragments:
        assert fragment in out.stderr


def test_bad_arguments(files):
    one_line_error(run("--training", str(files / "flat.csv")), "required", "--synthetic")
    one_line_error(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "flat.csv"), "--seed", "x"),
                   "--seed", "'x'")


def test_missing_file(files):
    one_line_error(run("--training", str(files / "nope.csv"), "--synthetic", str(files / "flat.csv")), "no such file")


def test_empty_file(files):
    (files / "empty.csv").write_text("")
    one_line_error(run("--training", str(files / "empty.csv"), "--synthetic", str(files / "flat.csv")), "empty")
    (files / "header.csv").write_text("a,b\n")
    one_line_error(run("--training", str(files / "header.csv"), "--synthetic", str(files / "flat.csv")), "no rows")


def test_columns_differ(files):
    one_line_error(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "trn.csv.gz")), "columns differ", "'key'")


def test_missing_context_key(files):
    one_line_error(run("--training", str(files / "trn.csv.gz"), "--synthetic", str(files / "syn.parquet"), "--context-key", "gid"),
                   "no context key column 'gid'")


def test_unreadable_value(files):
    bad = flat_table(200, 5)
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[3, "amount"] = "twelve"
    bad.to_csv(files / "bad.csv", index=False)
    one_line_error(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "bad.csv")), "'amount'", "'twelve'")


def test_unreadable_file(files):
    (files / "garbage.parquet").write_bytes(b"not a parquet file")
    one_line_error(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "garbage.parquet")), "cannot read")


def test_too_few_rows(files):
    flat_table(50, 6).to_csv(files / "small.csv", index=False)
    one_line_error(run("--training", str(files / "flat.csv"), "--synthetic", str(files / "small.csv")), "at least 100")


def test_several_seeds(files):
    args = ("--training", str(files / "trn.csv.gz"), "--synthetic", str(files / "syn.parquet"),
            "--holdout", str(files / "hol.csv"), "--context-key", "key", "--json", "--seed")
    one = [json.loads(run(*args, str(seed)).stdout) for seed in (1, 2, 3)]
    result = json.loads(run(*args, "1", "2", "3").stdout)
    assert result["seeds"] == [1, 2, 3]
    for aspect in ("overall", "trivariate", "coherence_max"):
        assert result[aspect] == sorted(r[aspect] for r in one)[1]  # the median of the three
    overall = [r["overall"] for r in one]
    assert result["mean"]["overall"] == pytest.approx(sum(overall) / 3)
    assert result["standard_error"]["overall"] > 0
    table = run(*[a for a in args if a != "--json"], "1", "2")
    assert table.returncode == 0 and "s.e." in table.stdout and "seeds 1, 2;" in table.stdout
