"""The report's charts: each one a pure function from numpy arrays (and label strings) to PNG bytes.

matplotlib draws them headless (the Agg renderer, no display, no pyplot global state). Every
chart is bounded whatever the data's size: scatter points are a seeded sample, the image grid
and the per-class bars are capped, histograms bin all values. Text from users (class labels)
is drawn literally: mathtext is off, so ``$`` is a dollar sign, and long labels are cut.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from typing import Sequence

# matplotlib writes a font cache under MPLCONFIGDIR (default ~/.config/matplotlib); a Lambda's
# home is read-only, so point it at a writable temporary folder before the first import.
if not os.environ.get("MPLCONFIGDIR"):
    os.environ["MPLCONFIGDIR"] = os.path.join(tempfile.gettempdir(), "stepml-matplotlib")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

#: Axis numbers as people write them: 600,000 rather than 6e5 or an offset.
PLAIN_NUMBERS = FuncFormatter(lambda x, _: f"{x:,.6g}")

#: At most this many points in a scatter plot (a seeded random sample beyond it).
MAX_SCATTER_POINTS = 5_000
#: At most this many images in the misclassified grid, this many per row.
MAX_IMAGES = 24
GRID_COLUMNS = 6
CELL_INCHES = 1.45
#: At most this many classes in the per-class bars (the ones with the lowest F1 beyond it).
MAX_BARS = 30
#: Confusion-matrix cells carry their count up to this many classes, tick labels up to MAX_TICKS.
MAX_ANNOTATED_CLASSES = 20
MAX_TICKS = 40
#: A ROC curve is thinned to about this many points (evenly along the curve).
MAX_CURVE_POINTS = 5_000
#: The score histograms turn to a log scale when their tallest bin is this many times the median one.
LOG_SCALE_RATIO = 30
LABEL_CHARS = 16
DPI = 100

INK = "#1d3557"
RIGHT = "#2a9d8f"
WRONG = "#e76f51"
TRAIN = "#264653"
VALIDATION = "#e76f51"
BARS = ("#264653", "#2a9d8f", "#e9c46a")      # precision, recall, F1

STYLE = {
    "text.parse_math": False,          # user text: "$x$" stays "$x$", never a formula
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.edgecolor": "#8d99ae",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d9dee5",
    "grid.linewidth": 0.7,
    "xtick.color": INK,
    "ytick.color": INK,
    "text.color": INK,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


def label_text(label: object, width: int = LABEL_CHARS) -> str:
    """A class label as a chart shows it: one line, printable, at most ``width`` characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(label)).strip() or "(blank)"
    return text if len(text) <= width else text[: width - 1] + "…"


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # e.g. "Glyph missing from font" for exotic labels
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _render(draw, width: float, height: float, layout: str | None = "constrained") -> bytes:
    with matplotlib.rc_context(STYLE):
        figure = _new_figure(width, height, layout)
        draw(figure)
        return _png(figure)


# -- classification ------------------------------------------------------------------------
def confusion_matrix(matrix: np.ndarray, labels: Sequence[str]) -> bytes:
    """Heatmap of ``matrix[true, predicted]`` counts, coloured by the share of each true class."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = float(np.clip(3.0 + 0.42 * k, 5.0, 10.0))

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.grid(False)
        image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
        colorbar.set_label("share of the true class")
        if k <= MAX_TICKS:
            names = [label_text(x, 12) for x in labels]
            ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right"
                          if max(map(len, names)) > 2 else "center", fontsize=9 if k <= 20 else 7)
            ax.set_yticks(range(k), names, fontsize=9 if k <= 20 else 7)
        else:
            ax.set_xlabel("predicted class (index)")
        if k <= MAX_ANNOTATED_CLASSES:
            size = 9 if k <= 12 else 7
            for i in range(k):
                for j in range(k):
                    if counts[i, j]:
                        ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=size,
                                color="white" if share[i, j] > 0.55 else INK)
        ax.set_xlabel("predicted class" + (" (index)" if k > MAX_TICKS else ""))
        ax.set_ylabel("true class" + (" (index)" if k > MAX_TICKS else ""))
        ax.set_title(f"Confusion matrix ({int(counts.sum()):,} rows)")

    return _render(draw, side + 1.2, side)


def per_class_scores(precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, support: np.ndarray,
                     labels: Sequence[str]) -> bytes:
    """Horizontal bars of precision, recall and F1 per class; past MAX_BARS classes, the
    MAX_BARS with the lowest F1 (the classes the model finds hardest)."""
    precision, recall, f1 = (np.asarray(a, dtype=np.float64) for a in (precision, recall, f1))
    support = np.asarray(support, dtype=np.int64)
    k = f1.size
    shown = np.arange(k)
    if k > MAX_BARS:
        shown = np.sort(np.argsort(f1, kind="stable")[:MAX_BARS])
    n = shown.size
    height = float(np.clip(1.4 + 0.42 * n, 3.0, 14.0))

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        positions = np.arange(n)[::-1]                 # the first class on top
        bar = 0.26
        for offset, values, name, colour in ((-bar, precision, "precision", BARS[0]),
                                             (0.0, recall, "recall", BARS[1]),
                                             (bar, f1, "F1", BARS[2])):
            ax.barh(positions - offset, values[shown], height=bar, color=colour, label=name)
        ax.set_yticks(positions, [f"{label_text(labels[c])} (n={support[c]:,})" for c in shown], fontsize=9)
        ax.set_xlim(0, 1.0)
        ax.set_xlabel("score")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize=9)
        title = "Precision, recall and F1 per class"
        if n < k:
            title += f" ({n} of {k} classes: lowest F1)"
        ax.set_title(title, pad=24)

    return _render(draw, 8.0, height)


def confidence(scores: np.ndarray, correct: np.ndarray, xlabel: str) -> bytes:
    """Histograms of the model's score for its right and its wrong answers, one panel each
    (wrong answers are few; a shared axis would flatten them)."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    bins = np.linspace(0.0, 1.0, 41)

    def draw(figure: Figure) -> None:
        top, bottom = figure.subplots(2, 1, sharex=True)
        for ax, mask, name, colour in ((top, correct, "right", RIGHT), (bottom, ~correct, "wrong", WRONG)):
            values = scores[mask]
            counts, _, _ = ax.hist(values, bins=bins, color=colour, edgecolor="white", linewidth=0.5)
            mean = f", mean {values.mean():.3f}" if values.size else ""
            # A good model's right answers pile up in the last bin; a log scale keeps the rest visible.
            typical = float(np.median(counts[counts > 0])) if values.size else 1.0
            skewed = bool(values.size) and counts.max() > LOG_SCALE_RATIO * max(1.0, typical)
            if skewed:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(PLAIN_NUMBERS)      # 1,000, not 10^3 as mathtext
            ax.set_title(f"{name} answers: {values.size:,}{mean}" + (" (log scale)" if skewed else ""), fontsize=10)
            ax.set_ylabel("rows")
        bottom.set_xlabel(xlabel)
        bottom.set_xlim(0.0, 1.0)
        figure.suptitle("Score distribution of right and wrong answers", x=0.02, ha="left",
                        fontweight="bold", fontsize=11)

    return _render(draw, 8.0, 5.0)


def misclassified(images: np.ndarray, true_labels: Sequence[str], predicted_labels: Sequence[str],
                  scores: np.ndarray | None = None) -> bytes:
    """A grid of (at most MAX_IMAGES) images, each under its true and predicted label.

    The images are tiled into one mosaic drawn once (24 small axes would cost a second of
    layout), with the labels written above each tile."""
    images = np.asarray(images)[:MAX_IMAGES]
    n = len(images)
    if n == 0:
        raise ValueError("no images to draw")
    h, w = images.shape[1:3]
    columns = min(GRID_COLUMNS, n)
    rows = -(-n // columns)
    gap = max(2, w // 7)
    cell_w = w + gap
    caption = int(np.ceil(0.36 * cell_w / CELL_INCHES))        # two lines of 8.5 pt text
    cell_h = h + caption + gap
    mosaic = np.zeros((rows * cell_h, columns * cell_w), dtype=images.dtype)   # 0 draws as white
    for i in range(n):
        top, left = (i // columns) * cell_h + caption, (i % columns) * cell_w + gap // 2
        mosaic[top: top + h, left: left + w] = images[i]
    width = CELL_INCHES * columns + 0.3
    title = 0.45
    height = (width - 0.3) * mosaic.shape[0] / mosaic.shape[1] + title

    def draw(figure: Figure) -> None:
        ax = figure.add_axes((0.15 / width, 0.0, 1 - 0.3 / width, 1 - title / height))
        ax.set_axis_off()
        ax.imshow(mosaic, cmap="gray_r", interpolation="nearest", aspect="equal",
                  vmin=0, vmax=255 if mosaic.dtype == np.uint8 else None)
        for i in range(n):
            r, c = divmod(i, columns)
            text = f"true {label_text(true_labels[i], 10)}\npred {label_text(predicted_labels[i], 10)}"
            if scores is not None:
                text += f" ({float(scores[i]):.2f})"
            ax.text(c * cell_w + cell_w / 2 - 0.5, r * cell_h + caption - 1.5, text, ha="center", va="bottom",
                    fontsize=8.5, color=INK, linespacing=1.15)
        figure.text(0.15 / width, 1 - 0.12 / height, f"Misclassified examples ({n} shown, most confident "
                    "mistakes first)", va="top", fontweight="bold", fontsize=11)

    return _render(draw, width, height, layout=None)


def roc_curve(false_positive_rate: np.ndarray, true_positive_rate: np.ndarray, auc: float | None) -> bytes:
    """The ROC curve with the chance diagonal and its AUC."""
    fpr = np.asarray(false_positive_rate, dtype=np.float64)
    tpr = np.asarray(true_positive_rate, dtype=np.float64)
    if fpr.size > MAX_CURVE_POINTS:                     # evenly along the curve, ends kept
        keep = np.unique(np.linspace(0, fpr.size - 1, MAX_CURVE_POINTS).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle="--", color="#8d99ae", linewidth=1, label="chance (AUC 0.5)")
        ax.plot(fpr, tpr, color=TRAIN, linewidth=2, label="model" + ("" if auc is None else f" (AUC {auc:.4f})"))
        ax.fill_between(fpr, tpr, step=None, alpha=0.08, color=TRAIN)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
        ax.set_title("ROC curve" + ("" if auc is None else f", AUC {auc:.4f}"))

    return _render(draw, 5.6, 5.4)


# -- regression ----------------------------------------------------------------------------
def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, seed: int = 0) -> bytes:
    """Scatter of predicted against actual values (a seeded sample of MAX_SCATTER_POINTS),
    with the line of perfect predictions; the axes span all the data, sampled or not."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    n = actual.size
    shown = np.arange(n)
    if n > MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(seed).choice(n, MAX_SCATTER_POINTS, replace=False))
    low = float(min(actual.min(), predicted.min())) if n else 0.0
    high = float(max(actual.max(), predicted.max())) if n else 1.0
    pad = 0.03 * (high - low or 1.0)

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.plot([low - pad, high + pad], [low - pad, high + pad], linestyle="--", color="#8d99ae",
                linewidth=1, label="predicted = actual")
        ax.scatter(actual[shown], predicted[shown], s=9, alpha=0.45 if shown.size > 500 else 0.7,
                   color=TRAIN, edgecolors="none", label="rows")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.xaxis.set_major_formatter(PLAIN_NUMBERS)
        ax.yaxis.set_major_formatter(PLAIN_NUMBERS)
        ax.legend(loc="upper left")
        sample = f"{shown.size:,} of {n:,} rows, sampled" if shown.size < n else f"{n:,} rows"
        ax.set_title(f"Predicted against actual ({sample})")

    return _render(draw, 6.4, 6.0)


def residuals(residual: np.ndarray) -> bytes:
    """Histogram of residuals (actual - predicted: positive means the model underestimates)."""
    residual = np.asarray(residual, dtype=np.float64)

    def draw(figure: Figure) -> None:
        ax = figure.add_subplot()
        ax.hist(residual, bins=50, color=RIGHT, edgecolor="white", linewidth=0.5)
        ax.axvline(0.0, color=INK, linewidth=1, linestyle="--", label="0")
        if residual.size:
            ax.axvline(float(residual.mean()), color=WRONG, linewidth=1.5,
                       label=f"mean {residual.mean():,.6g}")
        ax.set_xlabel("residual = actual - predicted")
        ax.xaxis.set_major_formatter(PLAIN_NUMBERS)
        ax.set_ylabel("rows")
        ax.legend(loc="upper right")
        ax.set_title(f"Residuals ({residual.size:,} rows)")

    return _render(draw, 8.0, 4.2)


# -- training ------------------------------------------------------------------------------
def training_curves(epochs: np.ndarray, loss: np.ndarray, val_loss: np.ndarray | None = None,
                    metric: np.ndarray | None = None, val_metric: np.ndarray | None = None,
                    metric_name: str = "accuracy", best_epoch: int | None = None) -> bytes:
    """Training (and validation, where held out) loss and a second figure of merit by epoch.
    Missing values are NaN; a panel with nothing to show is left out."""
    epochs = np.asarray(epochs, dtype=np.float64)

    def series(values):
        if values is None:
            return None
        values = np.asarray(values, dtype=np.float64)
        return values if np.isfinite(values).any() else None

    panels = []
    for name, train, validation in (("loss", series(loss), series(val_loss)),
                                    (metric_name, series(metric), series(val_metric))):
        if train is not None or validation is not None:
            panels.append((name, train, validation))

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, max(1, len(panels)), squeeze=False).ravel()
        for ax, (name, train, validation) in zip(axes, panels):
            marker = "o" if epochs.size <= 30 else None
            if train is not None:
                ax.plot(epochs, train, color=TRAIN, marker=marker, markersize=3.5, linewidth=1.8, label="training")
            if validation is not None:
                ax.plot(epochs, validation, color=VALIDATION, marker=marker, markersize=3.5, linewidth=1.8,
                        label="validation")
            if best_epoch is not None:
                ax.axvline(best_epoch, color="#8d99ae", linestyle=":", linewidth=1.2, label=f"kept: epoch {best_epoch}")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        figure.suptitle("Training and validation by epoch", x=0.02, ha="left", fontweight="bold", fontsize=11)

    return _render(draw, 5.0 * max(1, len(panels)) + 0.5, 4.0)
