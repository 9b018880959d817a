"""Amazon ML recipes: parse the JSON recipe, check it against the data schema, derive a default.

A recipe says which variables a model learns from and how they are transformed first::

    {"groups":      {"LONGTEXT": "group_remove(ALL_TEXT, title, subject)"},
     "assignments": {"binned_age": "quantile_bin(age,30)"},
     "outputs":     ["ALL_CATEGORICAL", "binned_age", "ngram(lowercase(no_punct(LONGTEXT)),2)"]}

Names: the attributes of the schema's inputs; the built-in groups ``ALL_TEXT``,
``ALL_NUMERIC``, ``ALL_CATEGORICAL``, ``ALL_BINARY`` and ``ALL_INPUTS``; the recipe's own groups
(``group(...)`` / ``group_remove(GROUP, ...)``) and assignments. A name starting with a letter or
``_`` needs no quotes unless it holds whitespace or one of ``, ' " ( ) \\``; any other name is
written in single or double quotes (``'2nd-name'``), as Amazon ML's suggested recipes do.

Transformations (Amazon ML's Data Transformations Reference) apply to a variable, a group
(element-wise: ``quantile_bin(ALL_NUMERIC,50)`` bins every numeric input) or another
transformation, and every result has a type that the next one checks:

    quantile_bin(NUMERIC, n 5..1000)      -> CATEGORICAL  (bins of equal training counts)
    normalize(NUMERIC)                    -> NUMERIC      (training mean 0, variance 1)
    lowercase(TEXT | CATEGORICAL)         -> same type
    no_punct(TEXT)                        -> TEXT         (punctuation at both ends of each word)
    ngram(TEXT, n 1..10)                  -> TOKENS       (all word n-grams of sizes 1..n)
    osb(TEXT, window 2..10)               -> TOKENS       (orthogonal sparse bigrams)
    cartesian(CATEGORICAL | TEXT, same)   -> CATEGORICAL (both categorical) or TOKENS

Parsing happens before any data is read, so every problem is reported with its place:
``recipe outputs[2] 'quantile_bin(ALL_NUMERIC 50)', character 25: expected ',' or ')'``.
The fitted side (:class:`FeaturePipeline`) lives in :mod:`stepml.tabular.transforms` and is
re-exported here.

Differences from Amazon ML (documented for users): ``ALL_INPUTS`` may be used inside a group;
``ngram(x, 1)`` is accepted (Amazon ML asked for 2..10, unigrams being implicit); ``osb`` yields
the pairs only (output the text itself for its words too); ``cartesian`` applied to two groups
makes every pair, and is missing when either side is; the same expression reached twice
(``ALL_CATEGORICAL`` and a group holding a categorical) is output once. Numeric outputs are
standardised, see :mod:`stepml.tabular.transforms`.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stepml.errors import DataError
from stepml.tabular.jsondoc import load_object

if TYPE_CHECKING:  # pragma: no cover
    from stepml.tabular.schema import DataSchema

__all__ = ["BUILTIN_GROUPS", "FUNCTIONS", "MAX_RECIPE_BYTES", "Expr", "FeaturePipeline",  # noqa: F822 (lazy)
           "Recipe", "RecipeError", "default_recipe", "parse_recipe"]

MAX_RECIPE_BYTES = 1024 * 1024
MAX_NAME_CHARS = 64                        # Amazon ML: group and assignment names are 1..64 characters
#: Transformations nested in one expression, through assignments too (``lowercase(no_punct(x))`` is 2).
MAX_DEPTH = 32
#: Expressions a recipe may build (a group expands to one per member, ``cartesian`` of two
#: groups to every pair): enough for 10,000 attributes each binned and normalised, small enough
#: that a recipe cannot exhaust the memory of the step that parses it.
MAX_EXPRESSIONS = 100_000
SECTIONS = ("groups", "assignments", "outputs")
BUILTIN_GROUPS = {"ALL_TEXT": "TEXT", "ALL_NUMERIC": "NUMERIC", "ALL_CATEGORICAL": "CATEGORICAL",
                  "ALL_BINARY": "BINARY", "ALL_INPUTS": None}
VALUE_TYPES = ("NUMERIC", "BINARY", "CATEGORICAL", "TEXT", "TOKENS")


class RecipeError(DataError):
    """The recipe is invalid for this schema; the message names the section, entry and character."""


def __getattr__(name: str):
    # FeaturePipeline lives in transforms.py, which imports this module: re-export it lazily.
    if name == "FeaturePipeline":
        from stepml.tabular.transforms import FeaturePipeline
        return FeaturePipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- transformations: signatures -------------------------------------------------------------

@dataclass(frozen=True)
class _Signature:
    inputs: tuple[tuple[str, ...], ...]      # accepted types of each variable argument
    param: tuple[str, int, int] | None       # (what, min, max) of a trailing integer argument
    usage: str


FUNCTIONS: dict[str, _Signature] = {
    "quantile_bin": _Signature((("NUMERIC",),), ("bin count", 5, 1000), "quantile_bin(NUMERIC, bins 5..1000)"),
    "normalize": _Signature((("NUMERIC",),), None, "normalize(NUMERIC)"),
    "lowercase": _Signature((("TEXT", "CATEGORICAL"),), None, "lowercase(TEXT or CATEGORICAL)"),
    "no_punct": _Signature((("TEXT",),), None, "no_punct(TEXT)"),
    "ngram": _Signature((("TEXT",),), ("n-gram size", 1, 10), "ngram(TEXT, size 1..10)"),
    "osb": _Signature((("TEXT",),), ("window size", 2, 10), "osb(TEXT, window 2..10)"),
    "cartesian": _Signature((("CATEGORICAL", "TEXT"), ("CATEGORICAL", "TEXT")), None,
                            "cartesian(CATEGORICAL or TEXT, CATEGORICAL or TEXT)"),
}
_GROUP_FUNCTIONS = ("group", "group_remove")


def _result_type(op: str, arg_types: list[str]) -> str:
    if op == "quantile_bin":
        return "CATEGORICAL"
    if op in ("normalize",):
        return "NUMERIC"
    if op in ("lowercase", "no_punct"):
        return arg_types[0]
    if op in ("ngram", "osb"):
        return "TOKENS"
    if op == "cartesian":
        return "CATEGORICAL" if arg_types == ["CATEGORICAL", "CATEGORICAL"] else "TOKENS"
    raise AssertionError(op)


# -- compiled expressions ----------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Za-z_][^\s,'\"()\\]*\Z")


def quote_name(name: str) -> str:
    """``name`` as written in a recipe: bare when it can be, else in single quotes."""
    if _PLAIN_NAME.match(name) and name not in FUNCTIONS and name not in _GROUP_FUNCTIONS:
        return name
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Expr:
    """One compiled, typed expression: an input attribute or a transformation of expressions.

    ``key`` is its canonical text (``quantile_bin(age,30)``): equal keys compute equal values,
    and the fitted state (bin edges, means, vocabularies) is stored under it.
    """
    op: str                                   # "attr" or a name in FUNCTIONS
    type: str                                 # one of VALUE_TYPES
    name: str = ""                            # the attribute, for op == "attr"
    args: tuple[Expr, ...] = ()
    param: int | None = None
    key: str = field(default="", compare=False)
    depth: int = field(default=0, compare=False)    # transformations nested, 0 for an attribute

    @staticmethod
    def attr(name: str, kind: str) -> Expr:
        return Expr("attr", kind, name=name, key=quote_name(name))

    @staticmethod
    def call(op: str, args: tuple[Expr, ...], param: int | None = None) -> Expr:
        inner = [a.key for a in args] + ([str(param)] if param is not None else [])
        return Expr(op, _result_type(op, [a.type for a in args]), args=args, param=param,
                    key=f"{op}({','.join(inner)})", depth=1 + max((a.depth for a in args), default=0))

    def walk(self):
        """This expression and all below it, children first."""
        for arg in self.args:
            yield from arg.walk()
        yield self


@dataclass(frozen=True)
class Recipe:
    """A recipe checked against its schema: each output's expressions, groups and assignments resolved."""
    schema: DataSchema
    raw: dict                                         # the recipe JSON (groups, assignments, outputs)
    groups: dict[str, tuple[str, ...]]                # user group -> attribute names
    assignments: dict[str, tuple[Expr, ...]]
    outputs: tuple[tuple[str, tuple[Expr, ...]], ...]  # (outputs[i] text, its expressions)

    @property
    def expressions(self) -> tuple[Expr, ...]:
        """Every output expression once, in recipe order (the first place an expression appears wins)."""
        seen: dict[str, Expr] = {}
        for _, exprs in self.outputs:
            for e in exprs:
                seen.setdefault(e.key, e)
        return tuple(seen.values())

    def to_json(self) -> dict:
        return json.loads(json.dumps(self.raw))


# -- the expression parser ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Name:
    text: str
    pos: int          # 0-based offset in the entry
    quoted: bool


@dataclass(frozen=True)
class _Number:
    text: str
    pos: int


@dataclass(frozen=True)
class _Call:
    fn: str
    args: tuple
    pos: int


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BARE = re.compile(r"[A-Za-z_][^\s,'\"()\\]*")


class _Entry:
    """One recipe string (``outputs[2]``) and the errors that point into it."""

    def __init__(self, place: str, text: str):
        self.place, self.text = place, text

    def error(self, pos: int | None, message: str) -> RecipeError:
        where = f"recipe {self.place} {self.text!r}"
        if pos is not None:
            where += f", character {pos + 1}"
        return RecipeError(f"{where}: {message}")

    def parse(self):
        self.i = 0
        self.depth = 0
        self.skip()
        if self.i == len(self.text):
            raise self.error(None, "is empty")
        node = self.expression()
        end = self.i
        self.skip()
        if self.i < len(self.text):
            raise self.error(end, f"expected the end of the expression; found {self.text[self.i:self.i + 12]!r}")
        return node

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def expression(self):
        self.skip()
        start, text = self.i, self.text
        if start == len(text):
            raise self.error(start, "expected a name, a number or a transformation; the expression ends here")
        ch = text[start]
        if ch in "'\"":
            return _Name(self.quoted(), start, True)
        m = _NUMBER.match(text, start)
        if m:
            if m.end() < len(text) and not (text[m.end()].isspace() or text[m.end()] in ",)"):
                raise self.error(start, "a name that does not start with a letter must be quoted "
                                        "('2nd-name')")
            self.i = m.end()
            return _Number(m.group(), start)
        m = _BARE.match(text, start)
        if not m:
            hint = "" if ch in "()," else "; a name that does not start with a letter must be quoted"
            raise self.error(start, f"expected a name, a number or a transformation; found {ch!r}{hint}")
        self.i = m.end()
        name = m.group()
        after = self.i
        self.skip()
        if self.i < len(text) and text[self.i] == "(":
            self.i += 1
            if self.depth >= MAX_DEPTH:
                raise self.error(start, f"transformations nest more than {MAX_DEPTH} deep (MAX_DEPTH)")
            self.depth += 1
            node = _Call(name, self.arguments(), start)
            self.depth -= 1
            return node
        self.i = after
        return _Name(name, start, False)

    def arguments(self) -> tuple:
        args = []
        self.skip()
        if self.i < len(self.text) and self.text[self.i] == ")":
            self.i += 1
            return ()
        while True:
            args.append(self.expression())
            here = self.i
            self.skip()
            if self.i < len(self.text) and self.text[self.i] == ",":
                self.i += 1
                continue
            if self.i < len(self.text) and self.text[self.i] == ")":
                self.i += 1
                return tuple(args)
            raise self.error(here, "expected ',' or ')'")

    def quoted(self) -> str:
        quote, start = self.text[self.i], self.i
        out = []
        self.i += 1
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch == "\\" and self.i + 1 < len(self.text):
                out.append(self.text[self.i + 1])
                self.i += 2
                continue
            if ch == quote:
                self.i += 1
                if not out:
                    raise self.error(start, "empty quoted name")
                return "".join(out)
            out.append(ch)
            self.i += 1
        raise self.error(start, f"unterminated quoted name (no closing {quote})")


# -- checking against the schema ------------------------------------------------------------------

def _suggest(name: str, candidates) -> str:
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    if name.lower() in by_lower:                     # only the case differs
        return f"; did you mean {by_lower[name.lower()]!r}?"
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?"


class _Compiler:
    def __init__(self, schema: DataSchema, groups: dict, assignments: dict):
        self.schema = schema
        self.attributes = {a.name: a for a in schema.attributes}
        self.inputs = {a.name: a for a in schema.inputs}
        self.builtin = {g: tuple(a.name for a in schema.inputs if kind is None or a.type == kind)
                        for g, kind in BUILTIN_GROUPS.items()}
        self.group_entries = {n: _Entry(f"groups.{n}", t) for n, t in groups.items()}
        self.assignment_entries = {n: _Entry(f"assignments.{n}", t) for n, t in assignments.items()}
        self.groups: dict[str, tuple[str, ...]] = {}
        self.assignments: dict[str, tuple[Expr, ...]] = {}
        self.resolving: list[str] = []
        self.built = 0                          # expressions built by transformations so far

    # names -----------------------------------------------------------------------------------
    def check_definition_names(self) -> None:
        for section, names in (("groups", self.group_entries), ("assignments", self.assignment_entries)):
            for name in names:
                where = f"recipe {section}.{name}"
                if not 1 <= len(name) <= MAX_NAME_CHARS:
                    raise RecipeError(f"{where}: a name must have 1 to {MAX_NAME_CHARS} characters, "
                                      f"not {len(name)}")
                if name in self.attributes:
                    raise RecipeError(f"{where}: {name!r} is already the name of an attribute; "
                                      f"choose another name")
                if name in BUILTIN_GROUPS:
                    raise RecipeError(f"{where}: {name!r} is a built-in group; choose another name")
                if section == "assignments" and name in self.group_entries:
                    raise RecipeError(f"{where}: {name!r} is already the name of a group; choose another name")
                if name in FUNCTIONS or name in _GROUP_FUNCTIONS:
                    raise RecipeError(f"{where}: {name!r} is a transformation; choose another name")

    def unusable(self, entry: _Entry, node: _Name) -> RecipeError:
        name = node.text
        role = self.schema.role(name)
        why = {"target": "is the target attribute (targetAttributeName); a model cannot learn from it",
               "rowId": "is the rowId; a model cannot learn from it",
               "excluded": "is in excludedAttributeNames"}[role]
        return entry.error(node.pos, f"{name!r} {why}")

    def unknown(self, entry: _Entry, node: _Name, *, expressions: bool) -> RecipeError:
        candidates = list(self.inputs) + list(BUILTIN_GROUPS) + list(self.group_entries)
        if expressions:
            candidates += list(self.assignment_entries)
        return entry.error(node.pos, f"unknown name {node.text!r}{_suggest(node.text, candidates)}")

    def cycle(self, entry: _Entry, node, name: str) -> RecipeError:
        loop = self.resolving[self.resolving.index(name):] + [name]
        return entry.error(node.pos, f"{name!r} is defined in terms of itself: {' -> '.join(loop)}")

    def check_chain(self, entry: _Entry) -> None:
        if len(self.resolving) >= MAX_DEPTH:
            raise entry.error(None, f"definitions nest more than {MAX_DEPTH} deep (MAX_DEPTH): "
                                    f"{' -> '.join(self.resolving[:3])} -> ... -> {self.resolving[-1]}")

    # groups ----------------------------------------------------------------------------------
    def group(self, name: str) -> tuple[str, ...]:
        if name in self.groups:
            return self.groups[name]
        entry = self.group_entries[name]
        self.check_chain(entry)
        self.resolving.append(name)
        node = entry.parse()
        if not isinstance(node, _Call) or node.fn not in _GROUP_FUNCTIONS:
            raise entry.error(getattr(node, "pos", 0),
                              "a group is defined by group(name, ...) or group_remove(GROUP, name, ...)")
        if not node.args:
            raise entry.error(node.pos, f"{node.fn}() needs at least one name")
        members = [self.group_member(entry, arg) for arg in node.args]
        if node.fn == "group":
            out = tuple(dict.fromkeys(m for ms in members for m in ms))
        else:
            first = node.args[0]
            if not (isinstance(first, _Name) and (first.text in BUILTIN_GROUPS or first.text in self.group_entries)):
                raise entry.error(first.pos, "group_remove's first argument must be a group")
            if len(node.args) < 2:
                raise entry.error(node.pos, "group_remove(GROUP, name, ...) needs at least one name to remove")
            removed = {m for ms in members[1:] for m in ms}
            out = tuple(m for m in members[0] if m not in removed)
        self.resolving.pop()
        self.groups[name] = out
        return out

    def group_member(self, entry: _Entry, node) -> tuple[str, ...]:
        if isinstance(node, _Number):
            raise entry.error(node.pos, f"expected an attribute or a group; found the number {node.text}")
        if isinstance(node, _Call):
            raise entry.error(node.pos, f"a group holds attributes and groups, not transformations "
                                        f"({node.fn}(...)); use an assignment for that")
        name = node.text
        if name in self.inputs:
            return (name,)
        if name in self.attributes:
            raise self.unusable(entry, node)
        if name in BUILTIN_GROUPS:
            return self.builtin[name]
        if name in self.group_entries:
            if name in self.resolving:
                raise self.cycle(entry, node, name)
            return self.group(name)
        if name in self.assignment_entries:
            raise entry.error(node.pos, f"{name!r} is an assignment; a group holds attributes and groups only")
        raise self.unknown(entry, node, expressions=False)

    # expressions ------------------------------------------------------------------------------
    def assignment(self, name: str) -> tuple[Expr, ...]:
        if name in self.assignments:
            return self.assignments[name]
        entry = self.assignment_entries[name]
        self.check_chain(entry)
        self.resolving.append(name)
        out = self.expression(entry, entry.parse())
        self.resolving.pop()
        self.assignments[name] = out
        return out

    def expression(self, entry: _Entry, node) -> tuple[Expr, ...]:
        """The expressions ``node`` stands for: one, or one per member of a group."""
        return self.expression_with_origin(entry, node)[0]

    def expression_with_origin(self, entry: _Entry, node) -> tuple[tuple[Expr, ...], str]:
        if isinstance(node, _Number):
            raise entry.error(node.pos, f"expected a variable, a group or a transformation; "
                                        f"found the number {node.text}")
        if isinstance(node, _Name):
            name = node.text
            if name in self.inputs:
                return (Expr.attr(name, self.inputs[name].type),), ""
            if name in self.attributes:
                raise self.unusable(entry, node)
            if name in BUILTIN_GROUPS or name in self.group_entries:
                if name in self.resolving:
                    raise self.cycle(entry, node, name)
                members = self.builtin[name] if name in BUILTIN_GROUPS else self.group(name)
                return tuple(Expr.attr(m, self.inputs[m].type) for m in members), f" (in group {name})"
            if name in self.assignment_entries:
                if name in self.resolving:
                    raise self.cycle(entry, node, name)
                return self.assignment(name), f" (assignment {name})"
            raise self.unknown(entry, node, expressions=True)
        return self.call(entry, node), ""

    def call(self, entry: _Entry, node: _Call) -> tuple[Expr, ...]:
        fn = node.fn
        if fn in _GROUP_FUNCTIONS:
            raise entry.error(node.pos, f"{fn}() defines a group; use it in the groups section")
        if fn not in FUNCTIONS:
            raise entry.error(node.pos, f"unknown transformation {fn!r}"
                                        f"{_suggest(fn, FUNCTIONS) or '; the transformations are ' + ', '.join(FUNCTIONS)}")
        sig = FUNCTIONS[fn]
        want = len(sig.inputs) + (1 if sig.param else 0)
        if len(node.args) != want:
            raise entry.error(node.pos, f"{fn} takes {want} argument{'s' if want > 1 else ''}: "
                                        f"{sig.usage}; got {len(node.args)}")
        param = None
        if sig.param:
            what, low, high = sig.param
            p = node.args[-1]
            if not isinstance(p, _Number):
                raise entry.error(p.pos, f"{fn}'s {what} must be a whole number from {low} to {high}")
            try:
                value = float(p.text)
            except ValueError:  # pragma: no cover - the tokenizer only accepts numbers
                value = float("nan")
            if not value.is_integer() or not low <= value <= high:
                raise entry.error(p.pos, f"{fn}'s {what} must be a whole number from {low} to {high}; got {p.text}")
            param = int(value)
        columns = []
        for arg, accepted in zip(node.args, sig.inputs):
            exprs, origin = self.expression_with_origin(entry, arg)
            for e in exprs:
                if e.type not in accepted:
                    raise entry.error(getattr(arg, "pos", node.pos),
                                      f"{fn} needs {' or '.join(accepted)}; {e.key!r}{origin} is {e.type}")
            columns.append(exprs)
        count = len(columns[0]) * (len(columns[1]) if len(columns) > 1 else 1)
        self.built += count
        if count > MAX_EXPRESSIONS or self.built > MAX_EXPRESSIONS:
            made = f"{fn} makes {count:,} expressions" + ("" if count == self.built else f" ({self.built:,} so far)")
            raise entry.error(node.pos, f"{made}; at most {MAX_EXPRESSIONS:,} in a recipe (MAX_EXPRESSIONS)")
        if len(columns) == 1:
            out = tuple(Expr.call(fn, (e,), param) for e in columns[0])
        else:
            out = tuple(Expr.call(fn, (a, b), param) for a in columns[0] for b in columns[1])
        if out and max(e.depth for e in out) > MAX_DEPTH:
            raise entry.error(node.pos, f"transformations nest more than {MAX_DEPTH} deep, counting those "
                                        f"of the assignments used (MAX_DEPTH)")
        return out


# -- public API ---------------------------------------------------------------------------------

def parse_recipe(raw: bytes | str | dict, schema: DataSchema) -> Recipe:
    """Parse a recipe (JSON bytes / text or a decoded dict) and check it against ``schema``.

    Raises :class:`RecipeError` naming the section, the entry and the character at fault.
    """
    d = load_object(raw, name="recipe", error=RecipeError, max_bytes=MAX_RECIPE_BYTES, what="a recipe",
                    expected='a JSON object with "outputs"')
    for key in d:
        if key not in SECTIONS:
            raise RecipeError(f"recipe: unknown section {key!r}{_suggest(str(key), SECTIONS)}; "
                              f"a recipe has {', '.join(SECTIONS)}")
    sections: dict[str, Any] = {}
    for key in ("groups", "assignments"):
        value = d.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise RecipeError(f"recipe {key}: must be an object of name: \"expression\", not {type(value).__name__}")
        for name, text in value.items():
            if not isinstance(text, str):
                raise RecipeError(f"recipe {key}.{name}: must be an expression string, not {type(text).__name__}")
        sections[key] = dict(value)
    outputs = d.get("outputs")
    if outputs is None or outputs == []:
        raise RecipeError("recipe outputs: missing or empty; list at least one variable, group or "
                          "transformation (e.g. \"ALL_INPUTS\")")
    if not isinstance(outputs, list):
        raise RecipeError(f"recipe outputs: must be an array of expression strings, not {type(outputs).__name__}")
    for i, text in enumerate(outputs):
        if not isinstance(text, str):
            raise RecipeError(f"recipe outputs[{i}]: must be an expression string, not {type(text).__name__}")

    compiler = _Compiler(schema, sections["groups"], sections["assignments"])
    compiler.check_definition_names()
    for name in compiler.group_entries:
        compiler.group(name)
    for name in compiler.assignment_entries:
        compiler.assignment(name)
    compiled = []
    for i, text in enumerate(outputs):
        entry = _Entry(f"outputs[{i}]", text)
        compiled.append((text, compiler.expression(entry, entry.parse())))
    recipe = Recipe(schema, {"groups": sections["groups"], "assignments": sections["assignments"],
                             "outputs": list(outputs)},
                    dict(compiler.groups), dict(compiler.assignments), tuple(compiled))
    if not recipe.expressions:
        raise RecipeError("recipe outputs: every output names an empty group, so the recipe makes no "
                          f"features (the schema's inputs: {_input_summary(schema)})")
    return recipe


def _input_summary(schema: DataSchema) -> str:
    counts: dict[str, int] = {}
    for a in schema.inputs:
        counts[a.type] = counts.get(a.type, 0) + 1
    return ", ".join(f"{n} {t}" for t, n in counts.items()) or "none"


def default_recipe(schema: DataSchema) -> dict:
    """The recipe used when the trigger names none: every input, transformed by type.

    BINARY and CATEGORICAL inputs as they are; NUMERIC ones both standardised and in 10
    quantile bins (a linear trend plus a non-linear shape); TEXT as lowercase words and
    word pairs without the punctuation. Only groups with members are named.
    """
    kinds = {a.type for a in schema.inputs}
    if not kinds:
        raise RecipeError("recipe: the schema has no input attributes (all are the target, the rowId "
                          "or excluded), so there is nothing to learn from")
    outputs = []
    if "BINARY" in kinds:
        outputs.append("ALL_BINARY")
    if "CATEGORICAL" in kinds:
        outputs.append("ALL_CATEGORICAL")
    if "NUMERIC" in kinds:
        outputs += ["normalize(ALL_NUMERIC)", "quantile_bin(ALL_NUMERIC,10)"]
    if "TEXT" in kinds:
        outputs.append("ngram(lowercase(no_punct(ALL_TEXT)),2)")
    return {"groups": {}, "assignments": {}, "outputs": outputs}
