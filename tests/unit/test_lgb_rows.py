"""LightGBM's sets read a batch at a time (qtrack.models.lgb_rows) give the model the matrix path gives, byte for
byte, including when LightGBM samples the rows that set the bins."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from qtrack.models.lgb_rows import SelectedRows, StreamedDataset


def frame_like(rows: int, columns: int, seed: int) -> np.ndarray:
    """float32 in F order, as a DataFrame's single block gives it, with missing values and exact zeros."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((rows, columns)).astype(np.float32)
    values[rng.random((rows, columns)) < 0.05] = np.nan
    values[rng.random((rows, columns)) < 0.05] = 0.0
    return np.asfortranarray(values)


@pytest.mark.parametrize("sample_count", [200000, 700], ids=["every-row-binned", "rows-sampled-for-bins"])
def test_streamed_rows_train_the_matrix_model(sample_count, monkeypatch):
    matrix = frame_like(6000, 12, seed=1)
    label = np.nan_to_num(matrix[:, 0] * 0.5 + matrix[:, 3] ** 2) + np.random.default_rng(2).standard_normal(6000)
    train, valid = np.arange(0, 4000, 1), np.arange(4200, 6000, 2)  # gaps, as the learn processors leave
    params = {"objective": "regression", "learning_rate": 0.1, "num_leaves": 15, "verbose": -1, "seed": 3,
              "bin_construct_sample_cnt": sample_count, "num_threads": 1}
    monkeypatch.setattr(SelectedRows, "batch_size", 512)  # several batches, the last one short

    def model(make, kind):
        train_set = kind(make(train), label=label[train])
        valid_set = kind(make(valid), label=label[valid], reference=train_set)
        return lgb.train(params, train_set, num_boost_round=30, valid_sets=[train_set, valid_set],
                         callbacks=[lgb.early_stopping(5, verbose=False)])

    streamed = model(lambda rows: SelectedRows(matrix[:, 1:], rows), StreamedDataset)
    copied = model(lambda rows: np.ascontiguousarray(matrix[rows, 1:]), lgb.Dataset)
    assert streamed.model_to_string() == copied.model_to_string()
    assert streamed.num_trees() > 5
    test = np.ascontiguousarray(matrix[4001:4200, 1:])
    np.testing.assert_array_equal(streamed.predict(test), copied.predict(test))


def test_selected_rows_read_the_positions_asked_for():
    matrix = frame_like(50, 3, seed=4)
    rows = SelectedRows(matrix, np.array([3, 7, 9, 20]))
    assert len(rows) == 4 and rows.shape == (4, 3)
    np.testing.assert_array_equal(rows[1], matrix[7].astype(np.float64))
    assert rows[1].dtype == np.float64
    batch = rows[1:3]
    assert batch.flags["C_CONTIGUOUS"] and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, matrix[[7, 9]])
    np.testing.assert_array_equal(rows[[0, 3]], matrix[[3, 20]])


def test_plain_sequence_sets_bin_other_rows_than_the_matrix():
    """Why StreamedDataset exists: with a seed, LightGBM's own Sequence path samples other rows for the bins."""
    matrix = frame_like(3000, 6, seed=5)
    label = np.nan_to_num(matrix[:, 0])
    rows = np.arange(3000)
    params = {"objective": "regression", "verbose": -1, "seed": 3, "bin_construct_sample_cnt": 500, "num_threads": 1}

    def bins(kind, data):
        return lgb.train(params, kind(data, label=label), num_boost_round=1).model_to_string().split("tree_sizes")[0]

    matrix_bins = bins(lgb.Dataset, np.ascontiguousarray(matrix[:, 1:]))
    assert bins(lgb.Dataset, SelectedRows(matrix[:, 1:], rows)) != matrix_bins
    assert bins(StreamedDataset, SelectedRows(matrix[:, 1:], rows)) == matrix_bins


def test_the_rows_that_set_the_bins_are_read_a_column_at_a_time(monkeypatch):
    """LightGBM's own sampling reads each sampled row with one Python call; the streamed set reads none."""
    matrix = frame_like(5000, 8, seed=6)
    single_rows = []
    read = SelectedRows.__getitem__

    def counted(self, index):
        if isinstance(index, (int, np.integer)):
            single_rows.append(index)
        return read(self, index)

    monkeypatch.setattr(SelectedRows, "__getitem__", counted)
    params = {"verbose": -1, "bin_construct_sample_cnt": 900, "num_threads": 1}
    rows = SelectedRows(matrix, np.arange(0, 5000, 2))
    StreamedDataset(rows, label=np.zeros(2500), params=params).construct()
    assert single_rows == []
    lgb.Dataset(rows, label=np.zeros(2500), params=params).construct()
    assert len(single_rows) == 900
