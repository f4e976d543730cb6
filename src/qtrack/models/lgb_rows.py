"""A segment's training rows handed to LightGBM a batch at a time.

LightGBM bins its input: the constructed set holds one small integer per value. Given a matrix, it needs the
whole matrix in memory first, and the matrix a DataFrame gives it is a copy of the segment's rows (the rows
with a label, in C order). Given a `lightgbm.Sequence`, it samples the rows that set the bins, then pushes the
rows in batches, so only one batch is ever copied out of the handler's frame. The sample indices, the bins and
the pushed values are those of the matrix path (LightGBM's Sequence follows `LGBM_DatasetCreateFromMats`), so
the model is the same to the byte (tested), once `StreamedDataset` gives the sampling every parameter.
"""

from __future__ import annotations

import numbers
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm.basic import ZERO_THRESHOLD


class SelectedRows(lgb.Sequence):
    """Rows `positions` of a 2-D float array (a view into the handler's frame)."""

    batch_size = 16384

    def __init__(self, matrix: np.ndarray, positions: np.ndarray) -> None:
        self.matrix = matrix
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, numbers.Integral):  # one sampled row: LightGBM's sampler takes doubles only
            return self.matrix[self.positions[index]].astype(np.float64)
        rows = self.positions[index] if isinstance(index, slice) else self.positions[np.asarray(index)]
        return np.ascontiguousarray(self.matrix[rows])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.matrix.shape[1]


class StreamedDataset(lgb.Dataset):
    """A training set built from `SelectedRows`, binned with every parameter, as the matrix path bins.

    LightGBM's Sequence path samples and bins with `get_params()`, which keeps the dataset parameters only; its
    matrix path passes every parameter, so a `seed` (which sets the sampling seed) changed which rows set the
    bins. While a training set (no reference) is constructed, `get_params()` here returns every parameter."""

    _binning = False

    def construct(self) -> lgb.Dataset:
        self._binning = self._handle is None and self.reference is None
        try:
            return super().construct()
        finally:
            self._binning = False

    def get_params(self) -> dict[str, Any]:
        if self._binning and self.params:
            return dict(self.params)
        return super().get_params()

    def _Dataset__sample(self, *, seqs: list, total_nrow: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """LightGBM's `Dataset.__sample`, a column at a time: the same sampled values, as doubles, with the same
        rows dropped, in the same order. LightGBM's own reads the sampled rows one Python call each (200,000 by
        default) and holds the sample twice, as a list of rows and as a matrix, beside the columns it keeps: on
        500 stocks that was the run's peak."""
        if len(seqs) != 1 or not isinstance(seqs[0], SelectedRows):
            return super()._Dataset__sample(seqs=seqs, total_nrow=total_nrow)  # type: ignore[misc]
        rows = seqs[0]
        positions = rows.positions[self._create_sample_indices(total_nrow=total_nrow)]
        sampled_rows = np.arange(len(positions), dtype=np.int32)
        kept_values, kept_rows = [], []
        for column in range(rows.matrix.shape[1]):
            values = rows.matrix[positions, column].astype(np.float64)
            kept = (np.abs(values) > ZERO_THRESHOLD) | np.isnan(values)
            kept_values.append(values[kept])
            kept_rows.append(sampled_rows[kept])
        return kept_values, kept_rows
