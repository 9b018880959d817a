"""The feature matrix a recipe produces and the models consume: a dense block plus sparse columns.

Numeric transformations (``normalize``, raw numeric values) give dense columns; one-hot ones
(``quantile_bin``, categories, n-grams, OSB pairs, cartesian products) give sparse columns.
Every row has at most ``width`` sparse entries, so the sparse part is two (n, width) arrays
instead of a general CSR matrix: a linear model computes ``sum_j W[index[i, j]] * value[i, j]``
with one gather, and its gradient with one scatter-add. Unused slots are padding:
``index`` 0 and ``value`` 0.0, which add nothing forward and nothing to any gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FeatureMatrix"]


@dataclass
class FeatureMatrix:
    dense: np.ndarray    # (n, n_dense) float32, C-contiguous; n_dense may be 0
    index: np.ndarray    # (n, width) int32, sparse column ids in [0, n_sparse); width may be 0
    value: np.ndarray    # (n, width) float32; padding slots hold 0.0
    n_sparse: int        # number of sparse columns (the model's sparse weight rows)

    def __post_init__(self) -> None:
        n = self.dense.shape[0]
        if self.dense.ndim != 2 or self.index.ndim != 2 or self.value.shape != self.index.shape \
                or self.index.shape[0] != n:
            raise ValueError(f"inconsistent feature blocks: dense {self.dense.shape}, "
                             f"index {self.index.shape}, value {self.value.shape}")
        if self.dense.dtype != np.float32 or self.value.dtype != np.float32 or self.index.dtype != np.int32:
            raise ValueError("feature blocks must be float32 (dense, value) and int32 (index)")

    def __len__(self) -> int:
        return self.dense.shape[0]

    @property
    def n_dense(self) -> int:
        return self.dense.shape[1]

    @property
    def n_features(self) -> int:
        return self.n_dense + self.n_sparse

    def rows(self, idx) -> FeatureMatrix:
        """The rows ``idx`` (an index array, slice or boolean mask), as a new matrix."""
        return FeatureMatrix(np.ascontiguousarray(self.dense[idx]), np.ascontiguousarray(self.index[idx]),
                             np.ascontiguousarray(self.value[idx]), self.n_sparse)

    def to_dense(self) -> np.ndarray:
        """All features as one (n, n_dense + n_sparse) float32 array (for the MLP; mind the size)."""
        n = len(self)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        out[:, :self.n_dense] = self.dense
        if self.index.shape[1]:
            rows = np.repeat(np.arange(n), self.index.shape[1])
            np.add.at(out, (rows, self.n_dense + self.index.ravel()), self.value.ravel())
        return out
