"""Replicate mode equals mostlyai-qa's own qa.report (after qa.set_random_state(seed))."""

import pytest
from fixtures import flat_table, sequential_table
from mostlyai import qa
from mostlyai.qa import _accuracy, reporting

from common.metric import ASPECTS, evaluate

TOLERANCE = 1e-4  # the observed differences are 0 (qa rounds each table to 5 decimals, so do we)


def qa_accuracy(trn, syn, hol, key, seed, tmp_path):
    qa.set_random_state(seed)
    _, metrics = qa.report(syn_tgt_data=syn, trn_tgt_data=trn, hol_tgt_data=hol, tgt_context_key=key, report_path=tmp_path / "r.html")
    return metrics.accuracy


def assert_same(ours, theirs, with_max):
    for aspect in ("overall",) + ASPECTS:
        expected = getattr(theirs, aspect)
        got = getattr(ours, aspect)
        assert (got is None) == (expected is None), aspect
        if expected is not None:
            assert got == pytest.approx(expected, abs=TOLERANCE), aspect
        if with_max and expected is not None:
            assert ours.maximum[aspect] == pytest.approx(getattr(theirs, f"{aspect}_max"), abs=TOLERANCE), f"{aspect}_max"


def test_flat_with_holdout(tmp_path):
    # missing values, a constant column, rare and high-cardinality (text-like) categories, '' values, datetimes, booleans
    trn, syn, hol = flat_table(400, 1), flat_table(300, 2), flat_table(150, 3)
    assert_same(evaluate(trn, syn, hol, None, "replicate", 7), qa_accuracy(trn, syn, hol, None, 7, tmp_path), True)


def test_flat_without_holdout(tmp_path):
    trn, syn = flat_table(300, 4), flat_table(250, 5)
    assert_same(evaluate(trn, syn, None, None, "replicate", 3), qa_accuracy(trn, syn, None, None, 3, tmp_path), False)


def test_sequential_with_holdout(tmp_path):
    # groups of 1 to 12 rows: the next-row tables see missing next rows; coherence on every column
    trn, syn, hol = sequential_table(150, 1), sequential_table(120, 2), sequential_table(40, 3, key_prefix="h")
    assert_same(evaluate(trn, syn, hol, "key", "replicate", 11), qa_accuracy(trn, syn, hol, "key", 11, tmp_path), True)


class _Captured(Exception):
    pass


@pytest.mark.parametrize("sequential", [False, True], ids=["flat", "sequential"])
def test_trivariate_sample_of_wide_tables(tmp_path, monkeypatch, sequential):
    """With more than 10,000 triples, qa samples them from the global random state after all earlier draws
    (frames, coherence, embeddings): we pick the same triples. qa.report is stopped once it has drawn them."""
    if sequential:
        trn, syn, hol, key = sequential_table(100, 1, 37), sequential_table(100, 2, 37), sequential_table(20, 3, 37, "h"), "key"
    else:
        trn, syn, hol, key = flat_table(150, 1, 33), flat_table(120, 2, 33), flat_table(40, 3, 33), None
    drawn = []

    def capture(ori_bin, syn_bin):
        drawn.append(_accuracy.calculate_trivariate_columns(ori_bin))
        raise _Captured

    monkeypatch.setattr(reporting, "calculate_trivariates", capture)
    with pytest.raises(_Captured):
        qa_accuracy(trn, syn, hol, key, 5, tmp_path)
    theirs = {tuple(c[len("tgt::"):] for c in row) for row in drawn[0][["col1", "col2", "col3"]].itertuples(index=False)}
    tables = evaluate(trn, syn, hol, key, "replicate", 5).tables
    ours = set(tables.loc[tables.kind == "trivariate", "columns"])
    assert len(theirs) == 10_000 and ours == theirs
