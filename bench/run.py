"""Benchmark stepml's built-in models on the real MNIST against the scikit-learn peers.

    python -m bench.run                      # every built-in algorithm + both peers, 1 repeat
    python -m bench.run --repeats 3          # median of 3 runs per candidate (runs interleaved)
    python -m bench.run --only mlp           # mlp and its peer (sklearn MLPClassifier)
    python -m bench.run --only mlp --skip-peers

For each candidate -- every algorithm in ``stepml.models.ALGORITHMS`` at run time, plus
scikit-learn ``LogisticRegression()`` and ``MLPClassifier()`` with their defaults -- it
measures training seconds, prediction seconds for the 10,000 test images, peak memory,
test accuracy, and the GFLOP/s training reaches as a share of this machine's measured
float32 matrix-multiply speed. It prints one table (stdout; progress goes to stderr) and
writes everything to a JSON file (``bench/results.json`` unless ``--out``).

Every candidate runs in its own fresh interpreter (``python -m bench.run --one NAME``), so
its peak RSS is its own: the child loads MNIST, trains, predicts, and prints one JSON line.
BLAS threads are left at the machine default and recorded, with the BLAS kernel.

MNIST comes from ``$STEPML_MNIST_DIR``, else ``../shared/datasets/mnist`` next to the
project, else it is downloaded once (``stepml.mnist.fetch``) into a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first on sys.path, not the root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SCHEMA = "stepml.bench/1"
RESULT_MARK = "@@STEPML_BENCH_RESULT@@ "
DEFAULT_OUT = ROOT / "bench" / "results.json"
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "datasets" / "mnist"
MNIST_ENV = "STEPML_MNIST_DIR"

#: Peer candidates: name -> what it is.
PEER_LABELS = {
    "sklearn-logreg": "sklearn LogisticRegression",
    "sklearn-mlp": "sklearn MLPClassifier",
}
#: The peer a user would pick instead of each built-in algorithm.
PEER_OF = {"linear": "sklearn-logreg", "mlp": "sklearn-mlp"}

GB = 1e9
MB = 1e6

# Issue 3's targets. (candidate, metric, comparison, threshold, description)
TARGETS = [
    ("linear", "accuracy", ">=", 0.920, "linear test accuracy >= 92.0%"),
    ("linear", "train_s", "<=", 3.0, "linear trains in <= 3 s"),
    ("linear", "speedup_vs_peer", ">=", 5.0, "linear trains >= 5x faster than sklearn LogisticRegression"),
    ("mlp", "accuracy", ">=", 0.980, "mlp test accuracy >= 98.0%"),
    ("mlp", "train_s", "<=", 15.0, "mlp trains in <= 15 s"),
    ("mlp", "speedup_vs_peer", ">=", 2.0, "mlp trains >= 2x faster than sklearn MLPClassifier"),
    ("mlp", "delta_acc_vs_peer", ">=", 0.0, "mlp at least as accurate as sklearn MLPClassifier"),
    ("mlp", "pct_of_local_matmul", ">=", 60.0,
     "mlp training reaches >= 60% of the matmul GFLOP/s measured between its epochs"),
    ("cnn", "accuracy", ">=", 0.992, "cnn test accuracy >= 99.2%"),
    ("cnn", "train_s", "<=", 120.0, "cnn trains in <= 120 s"),
    ("*", "peak_mb", "<=", 1.5 * GB / MB, "peak memory <= 1.5 GB (1500 MB) for every candidate"),
]

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# Machine facts
# ----------------------------------------------------------------------------------------


def blas_info() -> list[dict]:
    """The BLAS / OpenMP pools loaded in this process (threadpoolctl), with kernel and threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "num_threads", "version", "architecture",
            "threading_layer", "prefix", "filepath")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]


def numpy_blas(pools: list[dict]) -> dict | None:
    """The BLAS pool numpy itself uses (the one under numpy's own package folder)."""
    blas = [p for p in pools if p.get("user_api") == "blas"]
    np_dir = str(Path(np.__file__).parent)
    for p in blas:
        if str(p.get("filepath") or "").startswith(np_dir):  # numpy/ or numpy.libs/ both match
            return p
    return blas[0] if blas else None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_facts() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        import sklearn
        sklearn_version = sklearn.__version__
    except ImportError:
        sklearn_version = None
    pools = blas_info()
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_total_bytes": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit_learn": sklearn_version,
        "numpy_blas": numpy_blas(pools),
        "mlp_kernels": mlp_kernels(),
        "threadpools": pools,
        "blas_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                "MKL_NUM_THREADS") if k in os.environ},
    }


def git_facts() -> dict:
    """Commit and dirtiness of the project (read-only git calls; no index refresh)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True,
                                 text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


class CpuMeter:
    """Whole-machine CPU use from /proc/stat vs our own children's, to spot contention.

    ``other_cpu_s`` is the CPU time spent by processes other than the benchmark's children
    (and the parent) between ``start`` and ``stop``; ``steal_s`` is time the hypervisor gave
    to other virtual machines. Both None where /proc/stat is unavailable.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _stat(self) -> tuple[float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        v = [int(x) for x in fields[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice
        busy = v[0] + v[1] + v[2] + v[5] + v[6]
        steal = v[7] if len(v) > 7 else 0
        return busy / self.tick, steal / self.tick

    @staticmethod
    def _own() -> float:
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return ch.ru_utime + ch.ru_stime + me.ru_utime + me.ru_stime

    def start(self) -> tuple:
        return self._stat(), self._own(), time.perf_counter()

    def stop(self, started: tuple) -> dict:
        stat0, own0, t0 = started
        stat1, own1, t1 = self._stat(), self._own(), time.perf_counter()
        wall = t1 - t0
        if stat0 is None or stat1 is None:
            return {"wall_s": wall, "own_cpu_s": own1 - own0, "other_cpu_s": None, "steal_s": None}
        busy = stat1[0] - stat0[0]
        own = own1 - own0
        return {"wall_s": round(wall, 3), "own_cpu_s": round(own, 2),
                "other_cpu_s": round(max(busy - own, 0.0), 2),
                "steal_s": round(stat1[1] - stat0[1], 2)}


def wait_for_quiet(max_wait_s: float, window_s: float = 5.0, busy_limit: float = 0.10) -> dict:
    """Wait (up to ``max_wait_s``) for a ``window_s`` window in which the machine is at most
    ``busy_limit`` busy (all processes: nothing of ours is running). Returns what happened."""
    meter = CpuMeter()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    t0 = time.perf_counter()
    last = None
    while True:
        stat0 = meter._stat()
        time.sleep(window_s)
        stat1 = meter._stat()
        if stat0 is None or stat1 is None:
            return {"quiet": None, "waited_s": round(time.perf_counter() - t0, 1), "busy_share": None}
        last = (stat1[0] - stat0[0] + stat1[1] - stat0[1]) / (window_s * cores)
        waited = time.perf_counter() - t0
        if last <= busy_limit or waited >= max_wait_s:
            return {"quiet": last <= busy_limit, "waited_s": round(waited, 1), "busy_share": round(last, 3)}


# ----------------------------------------------------------------------------------------
# Matrix-multiply speed
# ----------------------------------------------------------------------------------------

def _mlp_shapes(d: int = 784) -> list[tuple]:
    """The mlp's two big products at its default minibatch and width, on MNIST's d pixels."""
    from stepml.models import default_params
    params = default_params("mlp")
    m, h = params["batch_size"], params["hidden_units"]
    return [(f"mlp forward {m}x{d} @ {d}x{h}", m, d, h, False),
            (f"mlp weight grad ({m}x{d})^T @ {m}x{h}", d, m, h, True)]


#: (label, m, k, n, transpose A): C(m, n) = A(m, k) @ B(k, n), float32.
MATMUL_SHAPES = [("2048x2048 @ 2048x2048", 2048, 2048, 2048, False), *_mlp_shapes()]


#: The quick check the parent runs right before and after each candidate (~0.5 s, in the
#: parent's own process so it does not touch the candidate's peak memory).
LOCAL_CHECK_SHAPES = MATMUL_SHAPES[:2]


def measure_matmul(repeats: int = 7, min_seconds: float = 0.05, shapes=MATMUL_SHAPES) -> dict:
    """Best-of-``repeats`` float32 GEMM GFLOP/s per shape; ``peak_gflops`` is the best of all.

    Each timing runs enough back-to-back products to last ``min_seconds``, into a
    preallocated output (as training loops do).
    """
    rng = np.random.default_rng(0)
    results = []
    for label, m, k, n, trans_a in shapes:
        a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
        a = a.T if trans_a else a  # the transposed view is what `Xb.T @ dH` hands BLAS
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # warm up: thread pool, page faults
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        single = max(time.perf_counter() - t, 1e-6)
        calls = max(1, math.ceil(min_seconds / single))
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(calls):
                np.matmul(a, b, out=out)
            rates.append(2.0 * m * k * n * calls / (time.perf_counter() - t) / 1e9)
        results.append({"shape": label, "m": m, "k": k, "n": n, "calls_per_timing": calls,
                        "gflops_best": round(max(rates), 1),
                        "gflops_median": round(statistics.median(rates), 1)})
    return {"repeats": repeats, "shapes": results,
            "peak_gflops": max(r["gflops_best"] for r in results)}


#: The GEMM read between a built-in model's epochs: 1024^3 runs at the same rate as 2048^3 on
#: these machines, and its three 4 MB matrices weigh little on the candidate's peak memory.
PROBE_N = 1024
#: How long one reading lasts (best of the back-to-back products in that time, at least 3).
PROBE_SECONDS = 0.15


class GemmProbe:
    """The machine's float32 GEMM rate, read at the moments the caller chooses.

    On a shared host the rate moves by half within seconds (other tenants on the same
    cores), so a training loop's share of "the machine's matmul speed" is only meaningful
    against a rate read at the same time. The built-in models are read between epochs:
    before the first, then after each (``on_epoch``), with ``seconds_spent`` taken out of the
    training time by the caller.
    """

    def __init__(self, n: int = PROBE_N, seconds: float = PROBE_SECONDS):
        rng = np.random.default_rng(1)
        self._a = rng.standard_normal((n, n), dtype=np.float32)
        self._b = rng.standard_normal((n, n), dtype=np.float32)
        self._out = np.empty((n, n), dtype=np.float32)
        self._flops = 2.0 * n ** 3
        self.seconds = seconds
        self.shape = f"{n}x{n} @ {n}x{n}"
        self.readings: list[float] = []
        self.seconds_spent = 0.0
        np.matmul(self._a, self._b, out=self._out)  # warm up: thread pool, page faults

    def read(self) -> float:
        """Best GFLOP/s of back-to-back products over ``seconds`` (at least 3 of them)."""
        start = time.perf_counter()
        best, calls = 0.0, 0
        while calls < 3 or time.perf_counter() - start < self.seconds:
            t = time.perf_counter()
            np.matmul(self._a, self._b, out=self._out)
            best = max(best, self._flops / (time.perf_counter() - t) / 1e9)
            calls += 1
        self.seconds_spent += time.perf_counter() - start
        self.readings.append(best)
        return best


def interleaved_share(history: list[dict], readings: list[float], flops_per_sample: float,
                      gflops: float) -> dict:
    """Training GFLOP/s against the GEMM rate read between the epochs.

    ``readings`` are the probe's: one before the first epoch and one after each, so epoch
    ``i`` lies between ``readings[i - 1]`` and ``readings[i]``. The whole run's share is its
    GFLOP/s over the mean reading; each epoch's is its own GFLOP/s (its rows over its
    seconds, validation included) over the mean of the two readings around it.
    """
    epochs = []
    for i, h in enumerate(history[:len(readings) - 1]):
        around = (readings[i] + readings[i + 1]) / 2
        rate = flops_per_sample * h["rows"] / h["seconds"] / 1e9 if h.get("seconds") else None
        epochs.append({"epoch": i + 1, "gflops": rate, "matmul_gflops": around,
                       "pct": None if rate is None else 100 * rate / around})
    mean = statistics.fmean(readings) if readings else None
    return {
        "readings_gflops": [round(r, 1) for r in readings],
        "mean_gflops": mean,
        "min_gflops": min(readings, default=None),
        "max_gflops": max(readings, default=None),
        "pct": 100 * gflops / mean if gflops and mean else None,
        "epochs": epochs,
    }


# ----------------------------------------------------------------------------------------
# The child: one candidate in one fresh process
# ----------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MB if sys.platform == "darwin" else rss * 1024 / MB


def load_mnist(mnist_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from stepml import mnist
    splits = mnist.load_splits(mnist.load_local_dir(mnist_dir))
    out = []
    for name in ("train", "test"):
        s = splits[name]
        X = s.images.reshape(len(s), -1).astype(np.float32)
        X /= 255  # in place: same values as `X / 255`, without a second copy
        out += [X, s.labels.astype(np.int64)]
    return tuple(out)


def trained_rows(model: Any, n: int) -> tuple[int, int | None, str]:
    """(rows trained on per epoch, samples processed in total or None, how we know).

    A model may hold out a validation slice; we count only the rows it trained on. In order:
    an explicit fitted attribute, per-epoch row counts in ``history_``, the
    ``validation_fraction`` parameter, else every row.
    """
    for attr in ("n_train_rows_", "n_samples_trained_", "n_train_samples_", "train_rows_"):
        v = getattr(model, attr, None)
        if isinstance(v, (int, np.integer)) and v > 0:
            return int(v), None, f"model.{attr} = {int(v)} rows per epoch"
    history = getattr(model, "history_", None) or []
    for key in ("train_rows", "n_train_rows", "rows", "n_rows", "samples", "n_samples"):
        if history and all(isinstance(h.get(key), (int, np.integer)) for h in history):
            total = sum(int(h[key]) for h in history)
            return int(history[-1][key]), total, f"history_[*]['{key}'] summed over epochs"
    summary = getattr(model, "training_summary_", None)
    if isinstance(summary, dict) and isinstance(summary.get("training_rows"), int):
        rows = summary["training_rows"]
        return rows, None, f"training_summary()['training_rows'] = {rows} rows per epoch"
    vf = getattr(model, "validation_fraction", None)
    if isinstance(vf, (int, float)) and vf > 0:
        rows = n - int(round(n * vf))
        return rows, None, (f"validation_fraction={vf}: assumed n - round(n * {vf}) = {rows} rows "
                            "trained per epoch (the model does not report it)")
    return n, None, "all rows every epoch (the model has no validation hold-out)"


def analytic_flops_per_sample(name: str, model: Any, d: int, k: int) -> dict | None:
    """FLOPs per training sample of the matrix products the code runs, and by the 6 x MACs rule.

    ``executed`` counts the products in the training loop: the linear model runs ``X W``
    and ``X^T G``; the mlp ``X W1``, ``H W2``, ``H^T dZ``, ``dZ W2^T`` and ``X^T dH`` -- no
    gradient with respect to the input is ever formed. ``convention`` is the usual
    2 x 3 x (multiply-adds of a forward pass), which assumes that gradient is formed too.
    """
    if name == "linear":
        return {"executed": 2 * 2 * d * k, "convention": 2 * 3 * d * k,
                "formula_executed": "2*(d*k [XW] + d*k [X^T G])"}
    if name == "mlp":
        h = int(model.hidden_units)
        return {"executed": 2 * (2 * d * h + 3 * h * k), "convention": 2 * 3 * (d * h + h * k),
                "formula_executed": "2*(2*d*h [XW1, X^T dH] + 3*h*k [HW2, H^T dZ, dZ W2^T])"}
    return None


def run_builtin(name: str, Xtr, ytr, Xte, yte, seed: int) -> dict:
    from stepml.models import ALGORITHMS, make_model
    cls = ALGORITHMS[name]
    params = {"image_shape": [28, 28]} if "image_shape" in cls._param_specs else {}
    model = make_model(name, params, seed)

    probe = GemmProbe()

    def on_epoch(epoch: int, info: dict) -> None:
        gemm = probe.read()
        print(f"    {name}: epoch {epoch}/{info.get('epochs', '?')} loss {info.get('loss', float('nan')):.4f} "
              f"({info.get('seconds', 0):.1f} s; GEMM now {gemm:.0f} GFLOP/s)", file=sys.stderr, flush=True)

    probe.read()                        # the machine's GEMM rate right before the first epoch
    probe_before_fit = probe.seconds_spent
    t = time.perf_counter()
    model.fit(Xtr, ytr, on_epoch=on_epoch)
    probe_s = probe.seconds_spent - probe_before_fit
    train_s = time.perf_counter() - t - probe_s     # the readings between epochs are not training
    peak_after_fit = peak_rss_mb()

    t = time.perf_counter()
    pred = model.predict(Xte)
    predict_s = time.perf_counter() - t
    accuracy = float(np.mean(np.asarray(pred) == yte))

    n, d = Xtr.shape
    k = int(getattr(model, "n_classes_", 10))
    history = list(getattr(model, "history_", []) or [])
    epochs_run = len(history)
    rows, samples, rows_note = trained_rows(model, n)
    if samples is None:
        samples = epochs_run * rows

    analytic = analytic_flops_per_sample(name, model, d, k)
    model_flops, model_flops_error = None, None
    if hasattr(model, "train_flops_per_sample"):
        try:
            model_flops = int(model.train_flops_per_sample())
        except Exception as exc:  # noqa: BLE001 - report, fall back to our own count
            model_flops_error = f"{type(exc).__name__}: {exc}"
    if model_flops is not None:
        flops, source = model_flops, "model.train_flops_per_sample()"
    elif analytic is not None:
        flops, source = analytic["executed"], "bench analytic count of executed matmuls"
    else:
        flops, source = None, "unknown (no model.train_flops_per_sample())"
    flops_note = None
    if model_flops is not None and analytic is not None and \
            abs(model_flops - analytic["executed"]) > 0.05 * analytic["executed"]:
        flops_note = (f"model.train_flops_per_sample() = {model_flops} differs from the executed-matmul "
                      f"count {analytic['executed']} by {model_flops / analytic['executed'] - 1:+.0%}")

    gflops = (flops * samples / train_s / 1e9) if flops else None
    interleaved = interleaved_share(history, probe.readings, flops, gflops) if flops else {}
    interleaved.update({"shape": probe.shape, "seconds_per_reading": probe.seconds,
                        "seconds_between_epochs": probe_s})
    return {
        "kind": "builtin",
        "params": model.get_params(),
        "train_s": train_s,
        # The model's own fit clock, less the GEMM readings its on_epoch callback took (as train_s).
        "model_fit_seconds": getattr(model, "fit_seconds_", probe_s) - probe_s,
        "interleaved_matmul": interleaved,
        "predict_s": predict_s,
        "accuracy": accuracy,
        "peak_rss_mb_after_fit": peak_after_fit,
        "epochs_run": epochs_run,
        "rows_per_epoch": rows,
        "rows_assumption": rows_note,
        "samples_processed": samples,
        "flops_per_sample": flops,
        "flops_source": source,
        "flops_per_sample_model": model_flops,
        "flops_per_sample_model_error": model_flops_error,
        "flops_per_sample_analytic": analytic,
        "flops_note": flops_note,
        "gflops": gflops,
        "gflops_is_lower_bound": False,
        "validation_rows_per_epoch": (getattr(model, "training_summary_", None) or {}).get("validation_rows"),
        "training_summary": getattr(model, "training_summary_", None),
        "history": [{k_: v for k_, v in h.items() if isinstance(v, (int, float, str))} for h in history],
    }


def run_peer(name: str, Xtr, ytr, Xte, yte, seed: int) -> dict:
    import sklearn
    if name == "sklearn-logreg":
        from sklearn.linear_model import LogisticRegression
        model = LogisticRegression()
        setup_note = "LogisticRegression() with all defaults (lbfgs, max_iter=100)"
    elif name == "sklearn-mlp":
        from sklearn.neural_network import MLPClassifier
        model = MLPClassifier(random_state=seed)
        setup_note = (f"MLPClassifier(random_state={seed}); every other argument at its default "
                      "(hidden_layer_sizes=(100,), adam, max_iter=200, tol=1e-4, n_iter_no_change=10)")
    else:
        raise ValueError(f"unknown peer {name!r}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        model.fit(Xtr, ytr)
        train_s = time.perf_counter() - t
    peak_after_fit = peak_rss_mb()
    messages = []
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())}"
        if text not in messages:
            messages.append(text)
    converged = not any(m.startswith("ConvergenceWarning") for m in messages)

    t = time.perf_counter()
    pred = model.predict(Xte)
    predict_s = time.perf_counter() - t
    accuracy = float(np.mean(pred == yte))

    n, d = Xtr.shape
    k = len(model.classes_)
    n_iter = int(np.max(model.n_iter_))
    if name == "sklearn-logreg":
        # Each lbfgs iteration evaluates loss + gradient at least once: X W and X^T G.
        flops = 2 * 2 * d * k
        rows, lower = n, True
        flops_formula = "2*(d*k [XW] + d*k [X^T G]) per sample per loss+gradient evaluation; " \
                        "counted once per lbfgs iteration (line searches may evaluate more: lower bound)"
    else:
        h = int(model.hidden_layer_sizes[0]) if len(model.hidden_layer_sizes) == 1 else None
        if h is None:
            flops, flops_formula = None, "not computed for more than one hidden layer"
        else:
            flops = 2 * (2 * d * h + 3 * h * k)
            flops_formula = "2*(2*d*h + 3*h*k) per sample per epoch (no input gradient, as in stepml's mlp)"
        rows = n - int(round(n * model.validation_fraction)) if model.early_stopping else n
        lower = False
    samples = n_iter * rows
    return {
        "kind": "peer",
        "setup": setup_note,
        "params": {k_: v for k_, v in model.get_params().items()
                   if isinstance(v, (int, float, str, bool, type(None), tuple, list))},
        "scikit_learn": sklearn.__version__,
        "train_s": train_s,
        "predict_s": predict_s,
        "accuracy": accuracy,
        "peak_rss_mb_after_fit": peak_after_fit,
        "n_iter": n_iter,
        "converged": converged,
        "warnings": messages,
        "rows_per_epoch": rows,
        "samples_processed": samples,
        "flops_per_sample": flops,
        "flops_source": flops_formula,
        "gflops": (flops * samples / train_s / 1e9) if flops else None,
        "gflops_is_lower_bound": lower,
    }


def model_sources_sha256() -> dict[str, str]:
    """SHA-256 of each stepml/models/*.py and *.c this child imported: the tree may be uncommitted."""
    import hashlib
    import stepml.models
    folder = Path(stepml.models.__file__).parent
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted([*folder.glob("*.py"), *folder.glob("*.c")])}


def mlp_kernels() -> str:
    """Which code ran the mlp's element-wise work: the compiled library's file, or numpy."""
    from stepml.models import kernels
    return Path(kernels.NATIVE.path).name if kernels.NATIVE else "numpy (library not built or STEPML_KERNELS=numpy)"


def child_main(name: str, mnist_dir: str, seed: int) -> int:
    t = time.perf_counter()
    Xtr, ytr, Xte, yte = load_mnist(mnist_dir)
    load_s = time.perf_counter() - t
    peak_after_load = peak_rss_mb()
    if name in PEER_LABELS:
        res = run_peer(name, Xtr, ytr, Xte, yte, seed)
    else:
        res = run_builtin(name, Xtr, ytr, Xte, yte, seed)
    res.update({
        "candidate": name,
        "seed": seed,
        "n_train": int(Xtr.shape[0]),
        "n_test": int(Xte.shape[0]),
        "load_s": load_s,
        "peak_rss_mb_after_load": peak_after_load,
        "peak_rss_mb": peak_rss_mb(),  # before the matmul check below allocates anything
        "threadpools": blas_info(),
    })
    if name not in PEER_LABELS:
        res["model_sources_sha256"] = model_sources_sha256()
        res["mlp_kernels"] = mlp_kernels()
    print(RESULT_MARK + json.dumps(res, default=_json_default), flush=True)
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------------------
# The parent: select, run children, summarise, print, write
# ----------------------------------------------------------------------------------------


def builtin_algorithms() -> list[str]:
    from stepml.models import ALGORITHMS
    return list(ALGORITHMS)


def select_candidates(only: str | None, skip_peers: bool) -> list[str]:
    builtins = builtin_algorithms()
    known = builtins + list(PEER_LABELS)
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise SystemExit(f"--only: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(known)}")
    else:
        wanted = list(builtins)
    chosen = [c for c in known if c in wanted]
    if not skip_peers:
        chosen += [PEER_OF[c] for c in chosen if c in PEER_OF and PEER_OF[c] not in chosen]
    else:
        chosen = [c for c in chosen if c not in PEER_LABELS or (only and c in wanted)]
    # Each built-in followed by its peer, so the table reads in pairs.
    paired = []
    for c in builtins:
        paired += [c] + ([PEER_OF[c]] if c in PEER_OF else [])
    paired += [p for p in PEER_LABELS if p not in paired]
    order = {c: i for i, c in enumerate(paired)}
    return sorted(dict.fromkeys(chosen), key=order.get)


def resolve_mnist_dir(arg: str | None) -> tuple[str, str, str | None]:
    """(folder, where it came from, temporary folder to delete afterwards or None)."""
    if arg:
        return str(Path(arg).resolve()), "--mnist-dir", None
    env = os.environ.get(MNIST_ENV)
    if env:
        return str(Path(env).resolve()), f"${MNIST_ENV}", None
    if DEFAULT_MNIST_DIR.is_dir():
        return str(DEFAULT_MNIST_DIR.resolve()), "default ../shared/datasets/mnist", None
    from stepml import mnist
    log(f"no MNIST folder ({DEFAULT_MNIST_DIR} missing, ${MNIST_ENV} unset): downloading")
    files = mnist.fetch(progress=lambda m: log("  " + m))
    tmp = tempfile.mkdtemp(prefix="stepml-bench-mnist-")
    for name, data in files.items():
        Path(tmp, name).write_bytes(data)
    return tmp, "downloaded with stepml.mnist.fetch()", tmp


def run_child(name: str, mnist_dir: str, seed: int, timeout: float, label: str,
              wait_quiet_s: float = 0) -> dict:
    quiet = None
    if wait_quiet_s > 0:
        log(f"{label}: waiting up to {wait_quiet_s:.0f} s for the machine to be quiet")
        quiet = wait_for_quiet(wait_quiet_s)
        if quiet["quiet"] is False:
            log(f"{label}: still {quiet['busy_share']:.0%} busy after {quiet['waited_s']:.0f} s; running anyway")
    cmd = [sys.executable, "-m", "bench.run", "--one", name, "--mnist-dir", mnist_dir, "--seed", str(seed)]
    check_before = measure_matmul(repeats=3, shapes=LOCAL_CHECK_SHAPES)
    log(f"{label}: starting ({' '.join(cmd[1:])})")
    meter = CpuMeter()
    started = meter.start()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True)
    stdout = ""
    while True:
        try:
            stdout, _ = proc.communicate(timeout=30)
            break
        except subprocess.TimeoutExpired:
            elapsed = time.perf_counter() - t
            if elapsed > timeout:
                proc.kill()
                proc.communicate()
                log(f"{label}: killed after {elapsed:.0f} s (--timeout {timeout:.0f})")
                return {"candidate": name, "error": f"timed out after {timeout:.0f} s"}
            log(f"{label}: still running ({elapsed:.0f} s)")
    wall = time.perf_counter() - t
    cpu = meter.stop(started)
    check_after = measure_matmul(repeats=3, shapes=LOCAL_CHECK_SHAPES)
    local = {"before": check_before["peak_gflops"], "after": check_after["peak_gflops"],
             "best": max(check_before["peak_gflops"], check_after["peak_gflops"])}
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        log(f"{label}: FAILED (exit code {proc.returncode})")
        return {"candidate": name, "error": f"child exited with code {proc.returncode}",
                "stdout_tail": stdout[-2000:], "child_wall_s": wall, "cpu": cpu, "local_matmul_gflops": local}
    res = json.loads(lines[-1][len(RESULT_MARK):])
    res["child_wall_s"] = wall
    res["cpu"] = cpu
    res["local_matmul_gflops"] = local
    res["wait_for_quiet"] = quiet
    # "Local": the GEMM rate at the same time as the training. Read between the epochs where
    # the candidate has them (the built-ins), else right before and after its process.
    between = (res.get("interleaved_matmul") or {}).get("pct")
    if between is not None:
        res["pct_of_local_matmul"], res["local_basis"] = between, "between epochs"
    elif res.get("gflops"):
        res["pct_of_local_matmul"], res["local_basis"] = 100 * res["gflops"] / local["best"], "before/after"
    gf = f", {res['gflops']:.0f} GFLOP/s" if res.get("gflops") else ""
    log(f"{label}: done in {wall:.1f} s -- train {res['train_s']:.2f} s, predict {res['predict_s']:.3f} s, "
        f"acc {res['accuracy']:.2%}, peak {res['peak_rss_mb']:.0f} MB{gf}")
    return res


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(name: str, runs: list[dict], matmul_peak: float) -> dict:
    ok = [r for r in runs if "error" not in r]
    s: dict[str, Any] = {
        "label": PEER_LABELS.get(name, name),
        "kind": "peer" if name in PEER_LABELS else "builtin",
        "runs_ok": len(ok),
        "runs_failed": len(runs) - len(ok),
    }
    if not ok:
        s["error"] = runs[-1].get("error") if runs else "not run"
        return s
    train = [r["train_s"] for r in ok]
    s.update({
        "train_s": _median(train),
        "train_s_all": train,
        "train_s_min": min(train),
        "train_s_max": max(train),
        "predict_s": _median([r["predict_s"] for r in ok]),
        "predict_s_all": [r["predict_s"] for r in ok],
        "peak_mb": max(r["peak_rss_mb"] for r in ok),
        "accuracy": _median([r["accuracy"] for r in ok]),
        "accuracy_all": [r["accuracy"] for r in ok],
        "gflops": _median([r.get("gflops") for r in ok]),
        "gflops_is_lower_bound": bool(ok[0].get("gflops_is_lower_bound")),
    })
    s["pct_of_matmul_peak"] = 100 * s["gflops"] / matmul_peak if s["gflops"] and matmul_peak else None
    s["pct_of_local_matmul"] = _median([r.get("pct_of_local_matmul") for r in ok])
    s["local_basis"] = ok[0].get("local_basis")
    s["local_matmul_gflops"] = [r["local_matmul_gflops"]["best"] for r in ok]
    between = [r["interleaved_matmul"] for r in ok if (r.get("interleaved_matmul") or {}).get("pct")]
    if between:
        epochs = [e for b in between for e in b["epochs"] if e["pct"] is not None]
        s["between_epochs"] = {
            "shape": between[0]["shape"],
            "pct_runs": [b["pct"] for b in between],
            "matmul_gflops_range": [min(b["min_gflops"] for b in between), max(b["max_gflops"] for b in between)],
            "epoch_pct_range": [min(e["pct"] for e in epochs), max(e["pct"] for e in epochs)] if epochs else None,
        }
    for key in ("params", "epochs_run", "rows_per_epoch", "rows_assumption", "validation_rows_per_epoch",
                "samples_processed",
                "flops_per_sample", "flops_source", "flops_note", "n_iter", "converged", "warnings", "setup"):
        if key in ok[0]:
            s[key] = ok[0][key]
    return s


def compare(summaries: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for ours, peer in PEER_OF.items():
        a, b = summaries.get(ours), summaries.get(peer)
        if not a or not b or a.get("train_s") is None or b.get("train_s") is None:
            continue
        out[ours] = {
            "peer": peer,
            "peer_label": PEER_LABELS[peer],
            "speedup_train": b["train_s"] / a["train_s"],          # peer train s / ours
            "speedup_predict": b["predict_s"] / a["predict_s"],
            "delta_acc_pp": 100 * (a["accuracy"] - b["accuracy"]),  # ours - peer, percentage points
            "memory_ratio": a["peak_mb"] / b["peak_mb"],             # ours / peer
        }
    return out


def check_targets(summaries: dict[str, dict], comparisons: dict[str, dict]) -> list[dict]:
    results = []
    for cand, metric, op, threshold, text in TARGETS:
        names = [c for c in summaries] if cand == "*" else [cand]
        for name in names:
            s = summaries.get(name)
            if s is None:
                continue  # candidate not selected (or not in ALGORITHMS yet)
            if metric == "speedup_vs_peer":
                value = comparisons.get(name, {}).get("speedup_train")
            elif metric == "delta_acc_vs_peer":
                value = comparisons.get(name, {}).get("delta_acc_pp")
            else:
                value = s.get(metric)
            passed = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
            if cand == "*":
                text_ = f"{name}: " + text.replace(" for every candidate", "")
            else:
                text_ = text
            results.append({"candidate": name, "target": text_,
                            "metric": metric, "op": op, "threshold": threshold, "value": value,
                            "passed": passed})
    return results


def run_matmul_peak(matmul_before: dict, matmul_after: dict, runs: dict[str, list[dict]]) -> float:
    """The best float32 GEMM rate seen anywhere in the run (full measurements, the checks
    around each candidate and the readings between the built-ins' epochs)."""
    local = [r["local_matmul_gflops"]["best"] for rs in runs.values() for r in rs if r.get("local_matmul_gflops")]
    between = [(r.get("interleaved_matmul") or {}).get("max_gflops") for rs in runs.values() for r in rs]
    return max([matmul_before["peak_gflops"], matmul_after["peak_gflops"], *local, *filter(None, between)])


def contention_report(matmul_before: dict, matmul_after: dict,
                      runs: dict[str, list[dict]], cores: int) -> dict:
    """Two kinds of evidence that timings are not clean.

    ``notes`` (``contended``): other processes in this machine used CPU, or the hypervisor
    stole it, while we measured. ``gemm_variability``: the GEMM rate itself moved (checks
    >= 20% below the run's peak, or before/after differing by > 15%) -- on shared hosts this
    happens with nothing else running in the VM (turbo, other tenants on the same cores).
    """
    notes, variability = [], []

    def other_share(cpu: dict) -> float | None:
        if cpu.get("other_cpu_s") is None or not cpu.get("wall_s"):
            return None
        return cpu["other_cpu_s"] / (cpu["wall_s"] * cores)

    def steal_share(cpu: dict) -> float:
        return (cpu.get("steal_s") or 0) / (cpu["wall_s"] * cores) if cpu.get("wall_s") else 0.0

    for when, mm in (("before", matmul_before), ("after", matmul_after)):
        share = other_share(mm.get("cpu") or {})
        if share is not None and share > 0.10:
            notes.append(f"other processes used {share:.0%} of the machine during the matmul "
                         f"measurement {when} the candidates")
    b, a = matmul_before["peak_gflops"], matmul_after["peak_gflops"]
    if abs(a / b - 1) > 0.15:
        variability.append(f"matmul peak {b:.0f} GFLOP/s before the candidates, {a:.0f} after ({a / b - 1:+.0%})")
    peak = run_matmul_peak(matmul_before, matmul_after, runs)
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            if "error" in r:
                continue
            cpu = r.get("cpu") or {}
            share = other_share(cpu)
            if share is not None and share > 0.10:
                notes.append(f"{name} run {i + 1}: other processes used {cpu['other_cpu_s']:.0f} CPU-s "
                             f"({share:.0%} of the machine) while it ran")
            if steal_share(cpu) > 0.05:
                notes.append(f"{name} run {i + 1}: hypervisor steal {cpu['steal_s']:.0f} CPU-s "
                             f"({steal_share(cpu):.0%}) while it ran")
            chk = (r.get("local_matmul_gflops") or {}).get("best")
            if chk and chk < 0.8 * peak:
                variability.append(f"{name} run {i + 1}: matmul right before/after it reached only {chk:.0f} "
                                   f"GFLOP/s ({chk / peak:.0%} of the run's peak)")
            between = r.get("interleaved_matmul") or {}
            lo, hi = between.get("min_gflops"), between.get("max_gflops")
            if lo and hi and lo < 0.8 * hi:
                variability.append(f"{name} run {i + 1}: matmul read between its epochs ranged {lo:.0f}-{hi:.0f} "
                                   "GFLOP/s")
    return {"contended": bool(notes), "notes": notes, "gemm_variability": variability}


# -- output ------------------------------------------------------------------------------


def _fmt(v: Any, spec: str, dash: str = "-") -> str:
    return dash if v is None else format(v, spec)


def render(report: dict) -> str:
    m, mm, settings = report["machine"], report["matmul"], report["settings"]
    blas = m.get("numpy_blas") or {}
    lines = [
        f"stepml benchmark -- real MNIST ({settings['n_train']:,} train / {settings['n_test']:,} test images), "
        f"seed {settings['seed']}, {settings['repeats']} repeat(s), median train time shown",
        f"machine : {m['usable_cpus']} cores ({m['cpu_model']}), Python {m['python']}, numpy {m['numpy']}, "
        f"scikit-learn {m['scikit_learn']}",
        f"BLAS    : {blas.get('internal_api')} {blas.get('version')} kernel {blas.get('architecture')}, "
        f"{blas.get('num_threads')} threads ({blas.get('threading_layer')}); "
        f"mlp kernels {m.get('mlp_kernels', 'not recorded')}",
        f"matmul  : peak {mm['peak_gflops']:.0f} GFLOP/s float32 = best seen in this run; full measurement "
        f"before / after the candidates: "
        + ", ".join(f"{b['shape']} {b['gflops_best']:.0f} / {a['gflops_best']:.0f}"
                    for b, a in zip(mm["before"]["shapes"], mm["after"]["shapes"])),
        "",
    ]
    header = ["candidate", "train s", "predict s (10k)", "peak MB", "test acc", "GFLOP/s",
              "% matmul peak", "% local", "vs peer", "speed x", "d acc (pp)"]
    rows = []
    for name, s in report["candidates"].items():
        if s.get("train_s") is None:
            rows.append([s["label"], "FAILED: " + str(s.get("error"))[:40]] + [""] * (len(header) - 2))
            continue
        train = f"{s['train_s']:.2f}"
        if s["runs_ok"] > 1:
            train += f" [{s['train_s_min']:.2f}-{s['train_s_max']:.2f}]"
        lb = ">=" if s.get("gflops_is_lower_bound") else ""
        cmp_ = report["comparisons"].get(name)
        acc = f"{100 * s['accuracy']:.2f}%"
        if s.get("converged") is False:
            acc += " *"
        rows.append([
            s["label"], train, f"{s['predict_s']:.3f}", f"{s['peak_mb']:.0f}", acc,
            lb + _fmt(s.get("gflops"), ".0f"), lb + _fmt(s.get("pct_of_matmul_peak"), ".0f"),
            lb + _fmt(s.get("pct_of_local_matmul"), ".0f"),
            cmp_["peer_label"] if cmp_ else "", f"{cmp_['speedup_train']:.1f}x" if cmp_ else "",
            f"{cmp_['delta_acc_pp']:+.2f}" if cmp_ else "",
        ])
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    right = set(range(1, 8)) | {9, 10}

    def line(cells):
        return " | ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                          for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    lines += [line(header), "-+-".join("-" * w for w in widths), *map(line, rows)]

    notes = []
    if any(s.get("converged") is False for s in report["candidates"].values()):
        notes.append("* did not converge within its default iteration limit (ConvergenceWarning); "
                     "kept at defaults on purpose: that is what a user gets")
    if any(s.get("gflops_is_lower_bound") for s in report["candidates"].values()):
        notes.append(">= lbfgs: one loss+gradient evaluation counted per iteration (line searches may do more)")
    notes.append("% matmul peak = GFLOP/s / the best GEMM rate seen anywhere in the run; % local = GFLOP/s / "
                 "the GEMM rate measured at the same time: between the epochs for the built-ins (mean of "
                 f"{PROBE_N}^3 readings before the first epoch and after each, their time not counted as "
                 "training), right before and after the run for the peers (no epoch hook)")
    for name, s in report["candidates"].items():
        b = s.get("between_epochs")
        if b and b.get("epoch_pct_range"):
            notes.append(f"{s['label']}: GEMM read between epochs {b['matmul_gflops_range'][0]:.0f}-"
                         f"{b['matmul_gflops_range'][1]:.0f} GFLOP/s; each epoch ran at "
                         f"{b['epoch_pct_range'][0]:.0f}-{b['epoch_pct_range'][1]:.0f}% of the readings around it")
    notes.append("speed x = peer train s / ours; d acc = our test accuracy - peer's, in percentage points")
    lines += [""] + [f"note: {n}" for n in notes]

    if report["targets"]:
        lines += ["", "targets (issue 3):"]
        for t in report["targets"]:
            mark = {True: "PASS", False: "MISS", None: "n/a "}[t["passed"]]
            v = t["value"]
            if v is None:
                shown = "not measured"
            elif t["metric"] == "accuracy":
                shown = f"{100 * v:.2f}%"
            elif t["metric"] == "delta_acc_vs_peer":
                shown = f"{v:+.2f} pp"
            elif t["metric"] == "speedup_vs_peer":
                shown = f"{v:.1f}x"
            elif t["metric"] in ("pct_of_matmul_peak", "pct_of_local_matmul"):
                shown = f"{v:.0f}%"
                s = report["candidates"][t["candidate"]]
                if t["metric"] == "pct_of_local_matmul" and s.get("pct_of_matmul_peak") is not None:
                    shown += f" (of the best GEMM rate seen anywhere in the run: {s['pct_of_matmul_peak']:.0f}%)"
            elif t["metric"] == "peak_mb":
                shown = f"{v:.0f} MB"
            else:
                shown = f"{v:.2f} s"
            lines.append(f"  [{mark}] {t['target']}: {shown}")
    c = report["contention"]
    if c["contended"]:
        lines += ["", "WARNING: timings look contended -- rerun on a quiet machine (--wait-quiet 300, "
                  "--repeats 3):"]
        lines += [f"  - {n}" for n in c["notes"]]
    else:
        lines += ["", "contention: none detected (no other process used > 10% of the machine, no hypervisor "
                  "steal, during any measurement)"]
    if c.get("gemm_variability"):
        why = "host-level: turbo, other tenants" if not c["contended"] else "see above"
        lines += [f"GEMM rate varied during the run ({why}), so read % matmul peak as approximate and "
                  "compare with % local:"]
        lines += [f"  - {n}" for n in c["gemm_variability"]]
    return "\n".join(lines)


def rerender(report: dict) -> dict:
    """Recompute the derived parts of a results file (targets, contention) with this code."""
    report = dict(report)
    report["targets"] = check_targets(report["candidates"], report["comparisons"])
    report["contention"] = contention_report(report["matmul"]["before"], report["matmul"]["after"],
                                             report["runs"], report["machine"]["usable_cpus"] or 1)
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark stepml's built-in models on real MNIST against scikit-learn peers.")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per candidate (interleaved); the median train time is reported (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every model (default 0)")
    p.add_argument("--only", help="comma-separated candidates, e.g. linear,mlp (their peers are added unless "
                                  "--skip-peers); peers by name: " + ", ".join(PEER_LABELS))
    p.add_argument("--skip-peers", action="store_true", help="do not run the scikit-learn peers")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--mnist-dir", help=f"MNIST folder (default ${MNIST_ENV}, else ../shared/datasets/mnist)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a candidate is killed (default 1800)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each run, wait up to SECONDS for 5 s in which the machine is <= 10%% busy "
                        "(for shared machines; default 0 = do not wait)")
    p.add_argument("--check", action="store_true", help="exit with status 1 if a measured target is missed")
    p.add_argument("--render", metavar="JSON", help="print the table of an earlier results file and exit")
    p.add_argument("--one", metavar="NAME", help=argparse.SUPPRESS)  # internal: run one candidate
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        if not args.mnist_dir:
            raise SystemExit("--one needs --mnist-dir")
        return child_main(args.one, args.mnist_dir, args.seed)
    if args.render:
        print(render(rerender(json.loads(Path(args.render).read_text()))))
        return 0

    load_start = os.getloadavg()
    candidates = select_candidates(args.only, args.skip_peers)
    if not candidates:
        raise SystemExit("nothing to run")
    if any(c in PEER_LABELS for c in candidates):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise SystemExit("scikit-learn is not installed: pip install -e '.[bench]' (or use --skip-peers)")
    mnist_dir, mnist_source, tmp_dir = resolve_mnist_dir(args.mnist_dir)
    if not Path(mnist_dir).is_dir():
        raise SystemExit(f"MNIST folder {mnist_dir} ({mnist_source}) does not exist")
    log(f"candidates: {', '.join(candidates)}; {args.repeats} repeat(s); MNIST from {mnist_dir} ({mnist_source})")
    machine = machine_facts()
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    if args.wait_quiet > 0:
        log(f"waiting up to {args.wait_quiet:.0f} s for the machine to be quiet")
        wait_for_quiet(args.wait_quiet)
    log("measuring float32 matmul speed (before)")
    meter = CpuMeter()
    started = meter.start()
    matmul_before = measure_matmul()
    matmul_before["cpu"] = meter.stop(started)
    log(f"matmul peak {matmul_before['peak_gflops']:.0f} GFLOP/s")

    whole = meter.start()
    runs: dict[str, list[dict]] = {c: [] for c in candidates}
    try:
        for r in range(args.repeats):
            for c in candidates:
                label = f"{PEER_LABELS.get(c, c)} (run {r + 1}/{args.repeats})"
                runs[c].append(run_child(c, mnist_dir, args.seed, args.timeout, label, args.wait_quiet))
    finally:
        if tmp_dir:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    cpu_whole = meter.stop(whole)

    log("measuring float32 matmul speed (after)")
    started = meter.start()
    matmul_after = measure_matmul()
    matmul_after["cpu"] = meter.stop(started)
    peak = run_matmul_peak(matmul_before, matmul_after, runs)
    load_end = os.getloadavg()

    summaries = {c: summarise(c, runs[c], peak) for c in candidates}
    comparisons = compare(summaries)
    targets = check_targets(summaries, comparisons)
    first_ok = next((r for rs in runs.values() for r in rs if "error" not in r), {})
    report = {
        "schema": SCHEMA,
        "started_at": started_at,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {
            "seed": args.seed, "repeats": args.repeats, "candidates": candidates, "wait_quiet_s": args.wait_quiet,
            "mnist_dir": mnist_dir, "mnist_source": mnist_source,
            "n_train": first_ok.get("n_train", 60000), "n_test": first_ok.get("n_test", 10000),
            "input": "pixels.reshape(n, 784).astype(float32) / 255",
            "builtin_params": "defaults; image_shape=[28, 28] where the algorithm accepts it; seed from --seed",
            "isolation": "each run in a fresh `python -m bench.run --one NAME` process; peak_mb is its ru_maxrss "
                         "(interpreter + imports + MNIST + training + prediction; for a built-in also the "
                         "12 MB of the GEMM readings between its epochs)",
            "blas_threads": "machine default (not set by the benchmark)",
        },
        "machine": machine,
        "git": git_facts(),
        "matmul": {"peak_gflops": peak, "before": matmul_before, "after": matmul_after},
        "candidates": summaries,
        "comparisons": comparisons,
        "targets": targets,
        "assumptions": [
            "train s is wall time of model.fit(X, y) alone (data already loaded and scaled); "
            "predict s is model.predict on the 10,000 test images",
            "GFLOP/s = flops_per_sample x samples processed (epochs run x rows trained per epoch) / train s; "
            "only matrix products are counted (softmax, ReLU, augmentation and updates are not)",
            "flops_per_sample: model.train_flops_per_sample() when the model has it, else the bench's count of "
            "the matmuls the training loop executes (linear 4*d*k, mlp 2*(2*d*h + 3*h*k): no input gradient "
            "is formed); the 2*3*MACs convention is kept alongside in runs[].flops_per_sample_analytic",
            "rows trained per epoch: see candidates[*].rows_assumption; a model's validation hold-out is "
            "scored inside fit (its time is in train s) but its forward passes are not counted as FLOPs",
            "both peers get the same float32 X as the built-in models (in a side check LogisticRegression ran "
            "faster on float32 than on float64, 16 s vs 32 s, so this does not handicap the peer)",
            "% matmul peak = GFLOP/s / the best float32 GEMM rate measured anywhere in this run (full "
            "measurements before and after all candidates, quick checks of 2048^3 and the mlp's forward product in "
            "the parent right before and after each candidate, and the readings between the built-ins' epochs). "
            "% local = GFLOP/s / the GEMM rate at the same time: for a built-in, the mean of 1024^3 readings "
            "(best of >= 3 products over 0.15 s) taken in its own process before the first epoch and after "
            "each one, their time taken out of train s; for a peer, the best of its before/after checks. "
            "The machine's GEMM rate moves by half within seconds (other tenants of the host's cores), so "
            "the local figure is the efficiency of the code and the peak one a bound no run is promised",
            "peak MB = ru_maxrss x 1024 / 1e6 (decimal MB); the 1.5 GB target is 1500 MB",
            "sklearn MLPClassifier gets random_state=seed for reproducibility; otherwise both peers use defaults",
        ],
        "contention": contention_report(matmul_before, matmul_after, runs,
                                        machine["usable_cpus"] or 1),
        "load_average": {"start": load_start, "end": load_end},
        "cpu_whole_run": cpu_whole,
        "runs": runs,
    }
    table = render(report)
    report["table"] = table
    print(table, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    log(f"wrote {out}")

    failed = [c for c, s in summaries.items() if s.get("train_s") is None]
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    if args.check and any(t["passed"] is False for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
