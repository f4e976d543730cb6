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
