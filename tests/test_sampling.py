"""Which rows qa looks at: replayed draws equal qa's own sampling; expected frames weight every candidate."""

import numpy as np
from fixtures import sequential_table
from mostlyai.qa._sampling import sample_two_consecutive_rows

from common.sampling import QaDraws, expected_frame, group_rows


def test_replayed_pairs_equal_qa_sample_two_consecutive_rows():
    df = sequential_table(200, 1).sample(frac=1, random_state=0).reset_index(drop=True)  # rows not sorted by key
    df["row"] = np.arange(len(df))
    np.random.seed(42)
    np.random.permutation(df["key"].nunique())  # qa shuffles the context keys first
    first, second = sample_two_consecutive_rows(df[["key", "row"]].copy(), "key")
    frame = QaDraws(42).frame(group_rows(df["key"], len(df)))
    assert sorted(frame.first) == sorted(first["row"])
    ours = {int(a): int(b) for a, b in zip(frame.first, frame.second) if b >= 0}
    pairs = first.merge(second, on="key")
    assert ours == dict(zip(pairs["row_x"], pairs["row_y"]))


def test_expected_frame_weights_each_group_once():
    df = sequential_table(100, 2)
    groups = group_rows(df["key"], len(df))
    frame = expected_frame(groups)
    per_group = np.bincount(frame.group, weights=frame.weight)
    np.testing.assert_allclose(per_group, 1.0)
    # first rows are rows 0..len-2 of their group, each followed by the next row of the same group
    has_next = frame.second >= 0
    assert (groups.row_group[frame.second[has_next]] == frame.group[has_next]).all()
    assert (frame.second[has_next] == frame.first[has_next] + 1).all()  # the fixture's groups are contiguous
    assert (~has_next).sum() == (groups.length == 1).sum()


def test_flat_frames_take_every_row_once():
    groups = group_rows(None, 50)
    assert sorted(QaDraws(1).frame(groups).first) == list(range(50))
    frame = expected_frame(groups)
    assert frame.weight is None and (frame.second == -1).all()
