"""What one PredictShard worker costs, measured here, and what that makes batch prediction of
100 million MNIST-sized rows cost on AWS through the PredictShards Distributed Map.

    python -m bench.fanout                      # linear, mlp, cnn; concurrency 100
    python -m bench.fanout --concurrency 1000 --rows 100000000

For each built-in algorithm it builds a model of the real shape (weights barely trained: the
work of predicting does not depend on them), writes one default-size shard of real MNIST test
images (``stepml.shards.rows_per_shard``: about 8 MiB), and times on ONE thread what a worker
does: load the model artefact, read the shard, scale it, predict. A Lambda function at 1,024 MB
gets about 0.58 of a vCPU (a full one at 1,769 MB), so a worker's time is the one-thread time
divided by that share. The estimate then prices 100 million rows with ``stepml.cost.PRICES``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # one thread, before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from stepml import mnist, models, shards  # noqa: E402
from stepml.cost import CHILD_TRANSITIONS, PRICES  # noqa: E402

WORKER_MEMORY_MB = 1024                 # template.yaml: PredictShardFunction
VCPU_SHARE = WORKER_MEMORY_MB / 1769    # Lambda: one full vCPU at 1,769 MB
ROW_BYTES = 28 * 28                     # an MNIST image, uint8
REPEATS = 5


def measure(algorithm: str, images: np.ndarray, labels: np.ndarray) -> dict:
    params = {"epochs": 1}
    if algorithm == "cnn":
        params["image_shape"] = [28, 28]
    model = models.make_model(algorithm, {**params, "n_classes": 10}, seed=0)
    model.fit(images[:2000].reshape(2000, -1).astype(np.float32) / 255, labels[:2000])
    artefact = io.BytesIO()
    models.save_model(model, artefact, input_scale=1 / 255)
    rows = shards.rows_per_shard(100_000_000, ROW_BYTES)
    block = np.resize(images.reshape(len(images), -1), (rows, ROW_BYTES))
    shard = io.BytesIO()
    np.save(shard, block)

    def load() -> object:
        return models.load_model(io.BytesIO(artefact.getvalue()))

    def predict(loaded) -> None:
        pixels = np.load(io.BytesIO(shard.getvalue()))
        features = pixels.astype(np.float32)
        features *= np.float32(1 / 255)
        loaded.predict_proba(features)

    loaded = load()
    predict(loaded)                                      # warm up
    load_s = min(_timed(load) for _ in range(REPEATS))
    predict_s = min(_timed(lambda: predict(loaded)) for _ in range(REPEATS))
    return {"algorithm": algorithm, "rows": rows, "shard_mib": len(shard.getvalue()) / 2**20,
            "load_s": load_s, "predict_s": predict_s,
            "worker_s": (load_s + predict_s) / VCPU_SHARE, "rows_per_s": rows / predict_s}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def estimate(measured: dict, total_rows: int, concurrency: int) -> dict:
    """Batch prediction of ``total_rows`` through the Map: wall time and cost, line by line.
    Every worker is billed as if cold (it loads the model for each shard): an upper bound."""
    per_shard = measured["rows"]
    count = math.ceil(total_rows / per_shard)
    worker_s = measured["worker_s"] + 0.2                # + reading 8 MiB from S3 and writing the part
    gb_seconds = count * worker_s * WORKER_MEMORY_MB / 1024
    lines = {
        "Lambda compute": gb_seconds * PRICES["lambda_gb_second_arm64"],
        "Lambda requests": count * PRICES["lambda_request"],
        "Step Functions transitions": (1 + CHILD_TRANSITIONS * count) * PRICES["sfn_transition"],
        "S3 GET (shard, model)": 2 * count * PRICES["s3_get"],
        "S3 PUT/LIST (parts, listing)": (count + math.ceil(count / 1000)) * PRICES["s3_put"],
    }
    return {"shards": count, "wall_s": math.ceil(count / concurrency) * worker_s, "usd": lines,
            "total_usd": sum(lines.values())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--only", choices=models.ALGORITHMS)
    args = parser.parse_args(argv)
    folder = os.environ.get(mnist.ENV_DIR) or str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist")
    files = mnist.load_local_dir(Path(folder))
    images = mnist.parse_idx(files["t10k-images-idx3-ubyte"], name="t10k-images-idx3-ubyte")
    labels = mnist.parse_idx(files["t10k-labels-idx1-ubyte"], name="t10k-labels-idx1-ubyte").astype(np.int64)

    print(f"one PredictShard worker (1 thread here; Lambda {WORKER_MEMORY_MB} MB = {VCPU_SHARE:.2f} vCPU), "
          f"and {args.rows:,} rows at MaxConcurrency {args.concurrency}\n")
    print(f"{'algorithm':<10}{'shard rows':>11}{'MiB':>6}{'load s':>8}{'predict s':>10}{'rows/s':>10}"
          f"{'worker s':>10}{'shards':>8}{'wall':>9}{'cost $':>9}")
    for algorithm in [args.only] if args.only else models.ALGORITHMS:
        m = measure(algorithm, images, labels)
        e = estimate(m, args.rows, args.concurrency)
        print(f"{algorithm:<10}{m['rows']:>11,}{m['shard_mib']:>6.1f}{m['load_s']:>8.3f}{m['predict_s']:>10.3f}"
              f"{m['rows_per_s']:>10,.0f}{m['worker_s']:>10.2f}{e['shards']:>8,}{e['wall_s'] / 60:>7.1f} m"
              f"{e['total_usd']:>9.2f}")
        print("          " + ", ".join(f"{k} ${v:.3f}" for k, v in e["usd"].items()))


if __name__ == "__main__":
    main()
