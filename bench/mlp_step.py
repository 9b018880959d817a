"""The mlp's training step on real MNIST, compiled kernels against numpy, in one process.

    .venv/bin/python -m bench.mlp_step [--steps 400] [--mnist-dir DIR]

Steps alternate between the two paths (the kernels of stepml/models/_kernels.c, and the
numpy code the mlp falls back to), so both see the same host: this VM's GEMM rate moves by
half within seconds, far more than the difference measured here. Each step is the real one
(a shuffled minibatch of the default size, the default model), timed in its parts: the
gather and translation, the first product, the output layer, the second product and the
momentum step. Prints one table, medians over the steps in microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stepml import mnist  # noqa: E402
from stepml.models import MLPClassifier, kernels  # noqa: E402

PARTS = ("gather + shift", "X W1", "output layer", "X^T dH", "momentum")


def timed_step(model, X, y, idx, rng, lr=0.01):
    """One training step as MLPClassifier._train_batch runs it, with a clock between parts."""
    t = [time.perf_counter()]
    Xb = model._batch_inputs(X, idx, rng)
    t.append(time.perf_counter())
    state, work, m = model._state, model._work, idx.size
    v, grads = state.params(), state.grads()
    H = np.matmul(Xb, v["W1aug"], out=work["H"][:m])
    t.append(time.perf_counter())
    dH = model._output_layer(H, y[idx], lr, v, grads, work)[2]
    t.append(time.perf_counter())
    np.matmul(Xb.T, dH, out=grads["W1aug"])
    t.append(time.perf_counter())
    state.step(float(model.momentum), 1.0 - lr * float(model.l2))
    model._bind_weights()
    t.append(time.perf_counter())
    return np.diff(t) * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per path (default 400)")
    parser.add_argument("--mnist-dir", default=os.environ.get("STEPML_MNIST_DIR", str(ROOT.parent / "shared/datasets/mnist")))
    args = parser.parse_args(argv)
    native = kernels.NATIVE
    if native is None:
        print("the kernels are not built (pip install -e . with a C compiler), or STEPML_KERNELS=numpy is set",
              file=sys.stderr)
        return 2
    train = mnist.load_splits(mnist.fetch(args.mnist_dir))["train"]
    X = train.images.reshape(len(train.images), -1).astype(np.float32) / 255
    y = train.labels.astype(np.int64)
    model = MLPClassifier(image_shape=(28, 28), epochs=1)
    model.fit(X[:2000], y[:2000])                     # fitted attributes, then fresh weights
    rng = np.random.default_rng(0)
    model._init_weights(X.shape[1], 10, rng)
    batch = model.batch_size
    order = rng.permutation(len(X))
    times = {"kernels": [], "numpy": []}
    for step in range(2 * (args.steps + 10)):
        path = "kernels" if step % 2 == 0 else "numpy"
        kernels.NATIVE = native if path == "kernels" else None
        lo = (step * batch) % (len(X) - batch)
        parts = timed_step(model, X, y, order[lo:lo + batch], rng)
        if step >= 20:                                 # warm caches and buffers first
            times[path].append(parts)
    kernels.NATIVE = native
    print(f"mlp training step, {batch} rows, hidden {model.hidden_units}, medians of {args.steps} steps per path (us)")
    print(f"{'part':16s} | {'kernels':>8s} | {'numpy':>8s}")
    medians = {path: np.median(np.array(rows), axis=0) for path, rows in times.items()}
    for i, part in enumerate(PARTS):
        print(f"{part:16s} | {medians['kernels'][i]:8.0f} | {medians['numpy'][i]:8.0f}")
    totals = {path: statistics.median(float(np.sum(r)) for r in rows) for path, rows in times.items()}
    print(f"{'step':16s} | {totals['kernels']:8.0f} | {totals['numpy']:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
