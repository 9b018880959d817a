"""Helpers shared by the model tests: synthetic digits as the models see them, artefact surgery."""

from __future__ import annotations

import io
import json

import numpy as np

from stepml import mnist


def synthetic_digits(n_train: int, n_test: int, seed: int):
    """(X_train, y_train, X_test, y_test): flattened float32 pixels in [0, 1], int64 labels."""
    splits = mnist.load_splits(mnist.synthetic_mnist(n_train=n_train, n_test=n_test, seed=seed))

    def scaled(split):
        return split.images.reshape(len(split), -1).astype(np.float32) / 255

    return (scaled(splits["train"]), splits["train"].labels.astype(np.int64),
            scaled(splits["test"]), splits["test"].labels.astype(np.int64))


def quadrant_squares(n: int, seed: int = 0):
    """(X, y): n 8x8 images (flattened, float32) of one bright 3x3 square; the class is the
    quadrant it sits in, which a one-pixel shift keeps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    images = np.zeros((n, 8, 8), np.float32)
    rows = 4 * (y // 2) + rng.integers(0, 2, size=n)
    cols = 4 * (y % 2) + rng.integers(0, 2, size=n)
    for dr in range(3):
        for dc in range(3):
            images[np.arange(n), rows + dr - (rows + dr >= 8), cols + dc - (cols + dc >= 8)] = 1.0
    return images.reshape(n, 64), y


def rewrite(blob: bytes, change) -> bytes:
    """Load an artefact's entries, let ``change(entries, meta)`` edit them, and save them again."""
    with np.load(io.BytesIO(blob)) as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["__meta__"]))
    change(entries, meta)
    entries["__meta__"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()
