"""The fitted side of a recipe: learn bins, means and vocabularies from training rows, make features.

Every output expression of a :class:`~stepml.tabular.recipe.Recipe` becomes features by its type:

    NUMERIC      one dense column, standardised with the training mean and standard deviation
                 (missing -> 0, the mean). Amazon ML passed raw numbers through; SGD needs
                 scaled inputs, so here a plain numeric output and ``normalize(x)`` are the same
                 feature (and are output once).
    BINARY       one dense column, 0 / 1 (missing -> 0.5, halfway).
    CATEGORICAL  one-hot over the categories seen in training (missing is a category of its
                 own; a category not seen in training makes no feature). ``quantile_bin`` gives
                 one category per bin, plus one for missing values if training had any.
    TEXT         a bag of the whitespace-separated words seen in training (presence, 1.0).
    TOKENS       the same for n-grams, OSB pairs and text cartesian products.

Dense features come first, in output order; sparse columns are numbered output by output, each
output's categories in their natural order (bins low to high, other labels sorted), so the
numbering depends on the training data only. With ``max_sparse_columns`` (from Amazon ML's
``sgd.maxMLModelSizeInBytes``) the rarest sparse columns in training are dropped (ties: the
later name goes) until the rest fit, as Amazon ML shrank a model to its size limit.

The fitted state is plain JSON (bin edges, means and standard deviations, vocabularies), saved
with the model; :meth:`FeaturePipeline.from_json` rebuilds a pipeline that transforms identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from stepml.errors import DataError
from stepml.tabular.features import FeatureMatrix
from stepml.tabular.recipe import Expr, Recipe, RecipeError, parse_recipe

__all__ = ["FORMAT", "FeaturePipeline", "bin_labels", "cartesian_tokens", "ngrams", "no_punct", "osb",
           "quantile_edges"]

FORMAT = "stepml.feature-pipeline/1"
#: Limits that keep a recipe's features within a step's memory (each is an error naming the
#: output and, where one row is at fault, its place in the data):
#: tokens one row may make in one n-gram, OSB or cartesian output (before they are made);
MAX_TOKENS_PER_ROW = 10_000
#: tokens one such output may make over all the rows (each is a Python string while fitting);
MAX_TOKENS_PER_OUTPUT = 10_000_000
#: cells of the feature matrix, rows x (dense columns + sparse slots of the widest row): 8 bytes
#: each (a sparse slot is an int32 index and a float32 value), so about 1.2 GB at the limit.
MAX_FEATURE_CELLS = 150_000_000
BINARY_MISSING = 0.5
MISSING = ""                 # the label of the missing category ("" is never a real category)

# -- the transformations, on plain values -------------------------------------------------------

# Amazon ML's punctuation remover: strip the non-alphanumeric characters at both ends of each
# whitespace-separated word ("seat-belts!" -> "seat-belts"; a word of punctuation only goes).
_PUNCT = r"(?:[^\w\s]|_)+"
_EDGE_PUNCT = re.compile(rf"(?<!\S){_PUNCT}|{_PUNCT}(?!\S)")


def no_punct(text: str) -> str:
    return " ".join(_EDGE_PUNCT.sub("", text).split())


def ngrams(words: list[str], n: int) -> set[str]:
    """All runs of 1..n consecutive words, joined by a space (Amazon ML's ``ngram(x, n)``)."""
    return {" ".join(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1)}


def osb(words: list[str], window: int) -> set[str]:
    """Orthogonal sparse bigrams: each word paired with each of the next ``window - 1`` words,
    one ``_`` per step apart (``the_quick``, ``the__brown``, ``the___fox`` for window 4)."""
    return {words[i] + "_" * d + words[i + d]
            for i in range(len(words)) for d in range(1, window) if i + d < len(words)}


def cartesian_tokens(left: set[str], right: set[str]) -> set[str]:
    return {f"{a}_{b}" for a in left for b in right}


def quantile_edges(x: np.ndarray, bins: int) -> np.ndarray:
    """Cut points of ``bins`` equal-count bins of the non-missing values of ``x`` (float32).

    The cut points are data values (the inverted-CDF quantiles at 1/bins, 2/bins, ...) and bin
    ``i`` is ``(edges[i-1], edges[i]]``, so no bin is empty and 1..10 in 5 bins gives {1, 2},
    {3, 4}, ... Repeated values merge bins (a column that is 0 in 80% of rows has one bin for the
    zeros), and a constant column has a single bin.
    """
    return _edges_of_sorted(np.sort(x[~np.isnan(x)]), bins)


def _edges_of_sorted(v: np.ndarray, bins: int) -> np.ndarray:
    if v.size == 0:
        return np.zeros(0, dtype=np.float32)
    i = np.arange(1, bins, dtype=np.int64)
    q = v[(i * v.size + bins - 1) // bins - 1]          # smallest value with CDF >= i / bins
    edges = np.unique(q)
    return edges[edges < v[-1]].astype(np.float32)


def _fmt(value: float) -> str:
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def bin_labels(edges: np.ndarray) -> list[str]:
    """``(lo,hi]`` per bin, low to high (the last one ``(lo,inf)``), then the missing label."""
    bounds = ["-inf"] + [_fmt(e) for e in edges] + ["inf"]
    return [f"({lo},{hi}{')' if hi == 'inf' else ']'}" for lo, hi in pairwise(bounds)] + [MISSING]


@dataclass
class _Cat:
    """A categorical column as codes into its labels (one label per row; "" = missing)."""
    codes: np.ndarray        # intp (n,)
    labels: list[str]        # distinct

    @classmethod
    def from_strings(cls, values) -> _Cat:
        values = np.asarray(values)
        if values.size == 0:
            return cls(np.zeros(0, dtype=np.intp), [])
        labels, codes = np.unique(values.astype(str, copy=False), return_inverse=True)
        return cls(codes.reshape(-1), labels.tolist())

    def relabel(self, labels: list[str]) -> _Cat:
        """The same rows under new (possibly repeated) labels: equal labels merge."""
        if not labels:
            return _Cat(self.codes, [])
        merged, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        return _Cat(inverse.reshape(-1)[self.codes], merged.tolist())

    def tokens(self) -> list[set[str]]:
        sets = [set() if label == MISSING else {label} for label in self.labels]
        return [sets[c] for c in self.codes.tolist()]


# -- the pipeline ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Output:
    expr: Expr          # what is computed (a plain NUMERIC output is normalize(x))
    name: str           # the feature name (prefix): the expression as the recipe wrote it
    origin: int         # index in recipe.outputs of the first output that produced it


class FeaturePipeline:
    """A recipe's features: :meth:`fit` learns from training rows, :meth:`transform` applies."""

    def __init__(self, recipe: Recipe, *, max_sparse_columns: int | None = None):
        if max_sparse_columns is not None and (isinstance(max_sparse_columns, bool)
                                               or not isinstance(max_sparse_columns, (int, np.integer))
                                               or max_sparse_columns < 1):
            raise ValueError(f"max_sparse_columns must be a positive integer or None, not {max_sparse_columns!r}")
        self.recipe = recipe
        self.max_sparse_columns = None if max_sparse_columns is None else int(max_sparse_columns)
        self.dense: list[_Output] = []
        self.sparse: list[_Output] = []
        seen: set[str] = set()
        for origin, (_, exprs) in enumerate(recipe.outputs):
            for e in exprs:
                computed = e if e.type != "NUMERIC" or e.op == "normalize" else Expr.call("normalize", (e,))
                if computed.key in seen:
                    continue
                seen.add(computed.key)
                out = _Output(computed, e.key, origin)
                (self.dense if e.type in ("NUMERIC", "BINARY") else self.sparse).append(out)
        self._reset()

    def _reset(self) -> None:
        self.stats: dict[str, dict] = {}
        self.vocabularies: list[list[str]] = []     # per sparse output, its kept labels in column order
        self.dropped: list[int] = []                # per sparse output, columns dropped by the cap
        self._columns: list[dict[str, int]] = []
        self._bin_labels: dict[str, list[str]] = {}
        self.feature_names: list[str] = []
        self.fitted = False

    # -- properties --------------------------------------------------------------------------
    @property
    def n_dense(self) -> int:
        return len(self.dense)

    @property
    def n_sparse(self) -> int:
        return sum(len(v) for v in self.vocabularies)

    @property
    def dropped_sparse_columns(self) -> int:
        return sum(self.dropped)

    # -- fit --------------------------------------------------------------------------------
    def fit(self, table) -> FeaturePipeline:
        """Learn bin edges, means / standard deviations and vocabularies from ``table`` alone."""
        self._reset()
        for out in self.dense:
            self._evaluate(out.expr, table, fit=True)
        candidates: list[tuple[list[str], np.ndarray]] = []   # per sparse output: labels, training counts
        for out in self.sparse:
            if out.expr.op == "quantile_bin":       # the commonest output: counted from sorted values
                candidates.append(self._fit_bins(out.expr, table))
                continue
            value = self._evaluate(out.expr, table, fit=True)
            if out.expr.type == "TEXT":
                value = _token_sets(value)
            if isinstance(value, _Cat):
                counts = np.bincount(value.codes, minlength=len(value.labels))
                present = np.flatnonzero(counts)
                order = present[np.argsort(np.asarray(value.labels, dtype=str)[present], kind="stable")]
                candidates.append(([value.labels[i] for i in order.tolist()], counts[order]))
            else:
                tokens = [t for row in value for t in row]         # each row's tokens are distinct
                labels, counts = np.unique(np.array(tokens, dtype=str), return_counts=True) if tokens \
                    else (np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64))
                candidates.append((labels.tolist(), counts))
        keep = self._cap(candidates)
        for (labels, _), kept in zip(candidates, keep):
            vocab = [label for label, k in zip(labels, kept.tolist()) if k]
            self.vocabularies.append(vocab)
            self.dropped.append(len(labels) - len(vocab))
        self._index()
        self.fitted = True
        return self

    def _fit_bins(self, e: Expr, table) -> tuple[list[str], np.ndarray]:
        x = self._evaluate(e.args[0], table, fit=True)
        v = np.sort(x[~np.isnan(x)])
        edges = _edges_of_sorted(v, e.param)
        self.stats[e.key] = {"edges": edges}
        self._bin_labels[e.key] = labels = bin_labels(edges)
        ends = np.searchsorted(v, edges, side="right")
        counts = np.diff(np.concatenate([[0], ends, [v.size, len(x)]]))   # bins low to high, missing
        present = np.flatnonzero(counts)
        return [labels[i] for i in present.tolist()], counts[present]

    def _cap(self, candidates) -> list[np.ndarray]:
        """Which candidate columns stay: all, or the most frequent ``max_sparse_columns``."""
        sizes = [len(labels) for labels, _ in candidates]
        total = sum(sizes)
        if self.max_sparse_columns is None or total <= self.max_sparse_columns:
            return [np.ones(s, dtype=bool) for s in sizes]
        counts = np.concatenate([c for _, c in candidates])
        cap = self.max_sparse_columns
        threshold = np.partition(counts, total - cap)[total - cap]      # the cap-th largest count
        kept = counts > threshold
        ties = np.flatnonzero(counts == threshold)                      # some of these stay: by name
        owner = np.repeat(np.arange(len(sizes)), sizes)
        starts = np.cumsum(sizes) - sizes
        names = [self._name(self.sparse[o], candidates[o][0][i - starts[o]])
                 for i, o in zip(ties.tolist(), owner[ties].tolist())]
        order = np.argsort(np.array(names, dtype=str), kind="stable")
        kept[ties[order[:cap - int(kept.sum())]]] = True
        return np.split(kept, np.cumsum(sizes)[:-1])

    @staticmethod
    def _name(out: _Output, label: str) -> str:
        return f"{out.name}={'<missing>' if label == MISSING else label}"

    def _index(self) -> None:
        self._columns, start = [], 0
        for vocab in self.vocabularies:
            self._columns.append({label: start + i for i, label in enumerate(vocab)})
            start += len(vocab)
        self.feature_names = [out.name for out in self.dense] + [
            self._name(out, label) for out, vocab in zip(self.sparse, self.vocabularies) for label in vocab]

    # -- transform --------------------------------------------------------------------------
    def transform(self, table) -> FeatureMatrix:
        """The features of ``table`` (any table of the recipe's schema) under the fitted state."""
        if not self.fitted:
            raise RuntimeError("FeaturePipeline.transform before fit")
        n = len(table)
        if n * self.n_dense > MAX_FEATURE_CELLS:
            raise DataError(f"the features of {n:,} rows x {self.n_dense:,} dense columns would be "
                            f"{n * self.n_dense:,} cells; at most {MAX_FEATURE_CELLS:,} (MAX_FEATURE_CELLS): "
                            "use fewer numeric or binary outputs")
        dense = np.zeros((n, self.n_dense), dtype=np.float32)
        for j, out in enumerate(self.dense):
            x = self._evaluate(out.expr, table)
            if out.expr.type == "BINARY":
                x = np.where(np.isnan(x), np.float32(BINARY_MISSING), x)
            dense[:, j] = x
        one_hot: list[tuple[int, _Output]] = []
        bags: list[tuple[int, _Output]] = []
        for i, out in enumerate(self.sparse):
            (one_hot if out.expr.type == "CATEGORICAL" else bags).append((i, out))
        cat = np.empty((len(one_hot), n), dtype=np.int32)     # filled by rows: contiguous writes
        for j, (i, out) in enumerate(one_hot):
            value = self._evaluate(out.expr, table)
            columns = self._columns[i]
            lookup = np.array([columns.get(label, -1) for label in value.labels] or [-1], dtype=np.int32)
            cat[j] = lookup[value.codes]
        parts = []
        for i, out in bags:
            columns = self._columns[i]
            value = self._evaluate(out.expr, table)
            if out.expr.type == "TEXT":
                value = _token_sets(value)
            rows = [sorted(columns[t] for t in row if t in columns) for row in value]
            counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=n)
            flat = np.fromiter((c for r in rows for c in r), dtype=np.int32, count=int(counts.sum()))
            parts.append((counts, flat))
        _check_cells(cat, parts, self.n_dense, table)
        index, value = _assemble(cat, parts, n)
        return FeatureMatrix(dense, index, value, self.n_sparse)

    # -- evaluation -------------------------------------------------------------------------
    def _evaluate(self, e: Expr, table, fit: bool = False):
        """The value of ``e`` on ``table``: float32 array, _Cat, list of texts or list of token sets."""
        op = e.op
        if op == "attr":
            try:
                column = table.columns[e.name]
            except KeyError:
                raise DataError(f"the table has no column {e.name!r}, which the recipe uses") from None
            if e.type in ("NUMERIC", "BINARY"):
                return np.asarray(column, dtype=np.float32)
            if e.type == "CATEGORICAL":
                return _Cat.from_strings(column)
            return np.asarray(column).astype(str, copy=False).tolist()
        args = [self._evaluate(a, table, fit) for a in e.args]
        if op == "normalize":
            x = args[0]
            s = self._state(e, fit, lambda: _moments(x))
            out = (x - np.float32(s["mean"])) / np.float32(s["std"])
            out[np.isnan(out)] = 0.0
            return out.astype(np.float32, copy=False)
        if op == "quantile_bin":
            x = args[0]
            s = self._state(e, fit, lambda: {"edges": quantile_edges(x, e.param)})
            edges = s["edges"]
            codes = np.searchsorted(edges, x, side="left")
            codes[np.isnan(x)] = len(edges) + 1
            if e.key not in self._bin_labels:
                self._bin_labels[e.key] = bin_labels(edges)
            return _Cat(codes, self._bin_labels[e.key])
        if op == "lowercase":
            x = args[0]
            return x.relabel([label.lower() for label in x.labels]) if isinstance(x, _Cat) else [t.lower() for t in x]
        if op == "no_punct":
            return [no_punct(t) for t in args[0]]
        if op in ("ngram", "osb"):
            words = [t.split() for t in args[0]]
            count = _ngram_count if op == "ngram" else _osb_count
            _check_tokens([count(len(w), e.param) for w in words], e, table)
            make = ngrams if op == "ngram" else osb
            return [make(w, e.param) for w in words]
        if op == "cartesian":
            a, b = args
            if isinstance(a, _Cat) and isinstance(b, _Cat):
                return _cross(a, b)
            left, right = _token_sets(a), _token_sets(b)
            _check_tokens([len(x) * len(y) for x, y in zip(left, right)], e, table)
            return [cartesian_tokens(x, y) for x, y in zip(left, right)]
        raise AssertionError(op)  # pragma: no cover

    def _state(self, e: Expr, fit: bool, learn) -> dict:
        if e.key not in self.stats:
            if not fit:  # pragma: no cover - every stateful expression is fitted in fit()
                raise RuntimeError(f"{e.key} was not fitted")
            self.stats[e.key] = learn()
        return self.stats[e.key]

    # -- reporting and saving ----------------------------------------------------------------
    def summary(self) -> dict:
        """Columns per recipe output and in total, and what the sparse-column cap dropped."""
        rows = [{"output": text, "expressions": 0, "dense_columns": 0, "sparse_columns": 0,
                 "dropped_sparse_columns": 0} for text, _ in self.recipe.outputs]
        for out in self.dense:
            rows[out.origin]["expressions"] += 1
            rows[out.origin]["dense_columns"] += 1
        for out, vocab, dropped in zip(self.sparse, self.vocabularies or [[]] * len(self.sparse),
                                       self.dropped or [0] * len(self.sparse)):
            rows[out.origin]["expressions"] += 1
            rows[out.origin]["sparse_columns"] += len(vocab)
            rows[out.origin]["dropped_sparse_columns"] += dropped
        return {"fitted": self.fitted, "dense_columns": self.n_dense, "sparse_columns": self.n_sparse,
                "dropped_sparse_columns": self.dropped_sparse_columns,
                "max_sparse_columns": self.max_sparse_columns, "outputs": rows}

    def to_json(self) -> dict:
        if not self.fitted:
            raise RuntimeError("FeaturePipeline.to_json before fit")
        stats = {}
        for key, s in self.stats.items():
            stats[key] = {"edges": [float(v) for v in s["edges"]]} if "edges" in s else dict(s)
        return {
            "format": FORMAT,
            "schema": self.recipe.schema.to_json(),
            "recipe": self.recipe.to_json(),
            "max_sparse_columns": self.max_sparse_columns,
            "stats": stats,
            "vocabularies": [{"output": out.expr.key, "labels": list(vocab), "dropped": dropped}
                             for out, vocab, dropped in zip(self.sparse, self.vocabularies, self.dropped)],
        }

    @classmethod
    def from_json(cls, d: dict) -> FeaturePipeline:
        """The pipeline :meth:`to_json` saved; transforms exactly as the original did."""
        from stepml.tabular.schema import parse_schema

        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise RecipeError(f"feature pipeline: not a {FORMAT} object")
        try:
            pipeline = cls(parse_recipe(d["recipe"], parse_schema(d["schema"], name="feature pipeline schema")),
                           max_sparse_columns=d.get("max_sparse_columns"))
            vocabularies = d["vocabularies"]
            if [v["output"] for v in vocabularies] != [out.expr.key for out in pipeline.sparse]:
                raise RecipeError("feature pipeline: its vocabularies do not match its recipe's outputs")
            for key, s in d["stats"].items():
                pipeline.stats[key] = ({"edges": np.asarray(s["edges"], dtype=np.float32).reshape(-1)}
                                       if "edges" in s else {"mean": float(s["mean"]), "std": float(s["std"])})
            pipeline.vocabularies = [[str(label) for label in v["labels"]] for v in vocabularies]
            pipeline.dropped = [int(v.get("dropped", 0)) for v in vocabularies]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RecipeError(f"feature pipeline: malformed saved state ({type(err).__name__}: {err})") from None
        needed = {e.key for out in pipeline.dense + pipeline.sparse for e in out.expr.walk()
                  if e.op in ("normalize", "quantile_bin")}
        if needed - set(pipeline.stats):
            raise RecipeError(f"feature pipeline: no fitted state for {min(needed - set(pipeline.stats))}")
        pipeline._index()
        pipeline.fitted = True
        return pipeline


# -- helpers ------------------------------------------------------------------------------------

def _ngram_count(words: int, n: int) -> int:
    """How many n-grams of sizes 1..n ``words`` words have (with repeats: an upper bound)."""
    return sum(words - k + 1 for k in range(1, min(n, words) + 1))


def _osb_count(words: int, window: int) -> int:
    return sum(words - d for d in range(1, min(window, words)))


def _place(table, row: int) -> str:
    sources = getattr(table, "sources", None) or ["<memory>"]
    return f"{sources[int(table.source_index[row])]} line {int(table.line_numbers[row])}"


def _check_tokens(counts: list[int], e: Expr, table) -> None:
    """Refuse, before making them, more tokens than MAX_TOKENS_PER_ROW / _PER_OUTPUT allow."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.max() > MAX_TOKENS_PER_ROW:
        row = int(counts.argmax())
        raise DataError(f"recipe output {e.key}: the row at {_place(table, row)} makes {int(counts[row]):,} "
                        f"tokens; at most {MAX_TOKENS_PER_ROW:,} per row (MAX_TOKENS_PER_ROW): use a "
                        "smaller n-gram size or window, or shorter text")
    if counts.sum() > MAX_TOKENS_PER_OUTPUT:
        raise DataError(f"recipe output {e.key}: {int(counts.sum()):,} tokens over {counts.size:,} rows; at most "
                        f"{MAX_TOKENS_PER_OUTPUT:,} (MAX_TOKENS_PER_OUTPUT): use a smaller n-gram size or "
                        "window, or fewer rows")


def _check_cells(cat: np.ndarray, parts: list, n_dense: int, table) -> None:
    n = cat.shape[1] if cat.ndim == 2 and cat.shape[0] else len(table)
    total = (cat >= 0).sum(axis=0, dtype=np.int64) if cat.shape[0] else np.zeros(n, dtype=np.int64)
    for counts, _ in parts:
        total = total + counts
    width = int(total.max()) if n else 0
    cells = n * (n_dense + width)
    if cells > MAX_FEATURE_CELLS:
        raise DataError(f"the features of {n:,} rows x {n_dense + width:,} columns ({n_dense:,} dense + "
                        f"{width:,} sparse slots, set by the widest row) would be {cells:,} cells; at most "
                        f"{MAX_FEATURE_CELLS:,} (MAX_FEATURE_CELLS); the widest row: "
                        f"{_place(table, int(total.argmax()))}; use fewer or narrower outputs")

def _moments(x: np.ndarray) -> dict:
    v = x[~np.isnan(x)].astype(np.float64)
    if v.size == 0:
        return {"mean": 0.0, "std": 1.0}
    mean, std = float(v.mean()), float(v.std())
    return {"mean": mean, "std": std if std > 0 and np.isfinite(std) else 1.0}


def _cross(a: _Cat, b: _Cat) -> _Cat:
    """Categorical x categorical: the label ``a_b``; missing when either side is."""
    if not a.labels or not b.labels:
        return _Cat(np.zeros(len(a.codes), dtype=np.intp), [MISSING])
    pair = a.codes.astype(np.int64) * len(b.labels) + b.codes
    pairs, codes = np.unique(pair, return_inverse=True)
    labels = []
    for p in pairs.tolist():
        la, lb = a.labels[p // len(b.labels)], b.labels[p % len(b.labels)]
        labels.append(MISSING if MISSING in (la, lb) else f"{la}_{lb}")
    return _Cat(codes.reshape(-1), labels).relabel(labels)


def _token_sets(value) -> list[set[str]]:
    if isinstance(value, _Cat):
        return value.tokens()
    return [set(t.split()) for t in value]     # TEXT: its words


def _assemble(cat: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], n: int):
    """The fixed-width sparse block of one-hot outputs and bags of tokens.

    ``cat`` is (one-hot outputs, n): the column of each output in each row, -1 for none (an
    unseen or dropped category); ``parts`` are the bags, as (count per row, columns row by row).
    The width is the most columns any row has; unused slots are padding (index 0, value 0.0).
    The first ``width`` one-hot outputs keep their slot; every other entry (the one-hot
    outputs beyond the width, the bags) goes, row by row and in order, into its row's holes.
    """
    k = cat.shape[0]
    valid = cat >= 0
    complete = bool(valid.all())
    total = np.full(n, k, dtype=np.int64) if complete else valid.sum(axis=0, dtype=np.int64)
    for counts, _ in parts:
        total += counts
    width = int(total.max()) if n else 0
    if complete and not parts:
        return np.ascontiguousarray(cat.T), np.ones((n, k), dtype=np.float32)
    index = np.zeros((n, width), dtype=np.int32)
    value = np.zeros((n, width), dtype=np.float32)
    fixed = min(k, width)
    if fixed:
        index[:, :fixed] = np.where(valid[:fixed], cat[:fixed], 0).T
        value[:, :fixed] = valid[:fixed].T
    rows, cols = [], []
    if fixed < k:
        r, j = np.nonzero(valid[fixed:].T)                     # by row, then output
        rows.append(r)
        cols.append(cat[fixed + j, r])
    for counts, flat in parts:
        rows.append(np.repeat(np.arange(n), counts))
        cols.append(flat)
    rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
    if rows.size:
        order = np.argsort(rows, kind="stable")
        rows, cols = rows[order], np.concatenate(cols)[order]
        hole_rows, hole_slots = np.nonzero(value == 0)          # by row, then slot
        rank = np.arange(hole_rows.size) - np.searchsorted(hole_rows, hole_rows)
        take = rank < np.bincount(rows, minlength=n)[hole_rows]
        index[hole_rows[take], hole_slots[take]] = cols
        value[hole_rows[take], hole_slots[take]] = 1.0
    return index, value
