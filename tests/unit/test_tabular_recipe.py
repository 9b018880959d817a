"""Specification of stepml.tabular.recipe (the recipe language) and stepml.tabular.transforms
(the fitted features), checked against the Amazon ML developer guide's examples and small
hand-computed tables."""

import json
import math

import numpy as np
import pytest

from stepml.errors import DataError
from stepml.tabular.features import FeatureMatrix
from stepml.tabular.recipe import FeaturePipeline, RecipeError, default_recipe, parse_recipe
from stepml.tabular.schema import parse_schema
from stepml.tabular.table import Table
from stepml.tabular.transforms import bin_labels, ngrams, no_punct, osb, quantile_edges

NAN = float("nan")


def make_schema(attributes, target="y", row_id=None, excluded=()):
    return parse_schema({"targetAttributeName": target, "rowId": row_id,
                         "excludedAttributeNames": list(excluded),
                         "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes]})


# The schema of the Amazon ML guide's example recipe (an adult-census-like table with text).
GUIDE_SCHEMA = make_schema([
    ("id", "CATEGORICAL"), ("age", "NUMERIC"), ("hours-per-week", "NUMERIC"), ("country", "CATEGORICAL"),
    ("gender", "CATEGORICAL"), ("title", "TEXT"), ("subject", "TEXT"), ("body", "TEXT"),
    ("member", "BINARY"), ("secret", "NUMERIC"), ("y", "BINARY")],
    target="y", row_id="id", excluded=["secret"])

GUIDE_RECIPE = {
    "groups": {"LONGTEXT": "group_remove(ALL_TEXT, title, subject)",
               "SPECIALTEXT": "group(title, subject)",
               "BINCAT": "group(ALL_CATEGORICAL, ALL_BINARY)"},
    "assignments": {"binned_age": "quantile_bin(age,30)",
                    "country_gender_interaction": "cartesian(country, gender)"},
    "outputs": ["lowercase(no_punct(LONGTEXT))",
                "ngram(lowercase(no_punct(SPECIALTEXT)),3)",
                "quantile_bin(hours-per-week, 10)",
                "hours-per-week",
                "cartesian(binned_age, quantile_bin(hours-per-week,10))",
                "country_gender_interaction",
                "BINCAT"],
}


def guide_table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = ["Great", "offer", "now!", "free", "cash", "meeting", "tomorrow,", "agenda"]
    text = lambda: " ".join(rng.choice(words, size=rng.integers(0, 6)))
    return Table(GUIDE_SCHEMA, {
        "id": [f"r{i}" for i in range(n)],
        "age": rng.integers(18, 90, n).astype(np.float32),
        "hours-per-week": rng.integers(1, 80, n).astype(np.float32),
        "country": rng.choice(["US", "FR", "DE", ""], n),
        "gender": rng.choice(["F", "M"], n),
        "title": [text() for _ in range(n)], "subject": [text() for _ in range(n)],
        "body": [text() for _ in range(n)],
        "member": rng.choice([0.0, 1.0, NAN], n).astype(np.float32),
        "y": rng.choice([0.0, 1.0], n).astype(np.float32)})


def pipeline(outputs, schema, table=None, **kw):
    recipe = parse_recipe({"outputs": outputs, **kw.pop("sections", {})}, schema)
    p = FeaturePipeline(recipe, **kw)
    return p.fit(table) if table is not None else p


def active(fm: FeatureMatrix, names, row):
    """The names of the sparse features active in ``row``."""
    sparse_names = names[fm.n_dense:]
    return {sparse_names[i] for i, v in zip(fm.index[row], fm.value[row]) if v}


# -- the guide's example recipe ------------------------------------------------------------------

def test_the_guides_example_recipe_compiles_to_these_expressions():
    r = parse_recipe(GUIDE_RECIPE, GUIDE_SCHEMA)
    assert r.groups == {"LONGTEXT": ("body",), "SPECIALTEXT": ("title", "subject"),
                        "BINCAT": ("country", "gender", "member")}
    assert [e.key for e in r.assignments["binned_age"]] == ["quantile_bin(age,30)"]
    assert [[e.key for e in exprs] for _, exprs in r.outputs] == [
        ["lowercase(no_punct(body))"],
        ["ngram(lowercase(no_punct(title)),3)", "ngram(lowercase(no_punct(subject)),3)"],
        ["quantile_bin(hours-per-week,10)"],
        ["hours-per-week"],
        ["cartesian(quantile_bin(age,30),quantile_bin(hours-per-week,10))"],
        ["cartesian(country,gender)"],
        ["country", "gender", "member"]]
    assert [e.type for e in r.expressions] == ["TEXT", "TOKENS", "TOKENS", "CATEGORICAL", "NUMERIC",
                                               "CATEGORICAL", "CATEGORICAL", "CATEGORICAL", "CATEGORICAL",
                                               "BINARY"]
    # the recipe also comes as JSON text or bytes, and round-trips
    assert parse_recipe(json.dumps(GUIDE_RECIPE).encode(), GUIDE_SCHEMA).to_json() == r.to_json()


def test_the_guides_example_recipe_fits_and_transforms():
    train, test = guide_table(60, seed=1), guide_table(25, seed=2)
    p = FeaturePipeline(parse_recipe(GUIDE_RECIPE, GUIDE_SCHEMA)).fit(train)
    fm = p.transform(test)
    assert fm.n_dense == 2 and p.feature_names[:2] == ["hours-per-week", "member"]
    assert fm.n_sparse == len(p.feature_names) - 2 == p.summary()["sparse_columns"]
    assert fm.dense.flags.c_contiguous and fm.dense.dtype == np.float32
    assert fm.index.dtype == np.int32 and fm.value.dtype == np.float32
    assert fm.index.shape[1] == int((fm.value > 0).sum(axis=1).max())        # width = most active
    assert ((fm.index == 0) & (fm.value == 0) | (fm.value == 1)).all()        # padding is (0, 0.0)
    assert len(set(p.feature_names)) == len(p.feature_names)
    summary = p.summary()
    assert [row["output"] for row in summary["outputs"]] == GUIDE_RECIPE["outputs"]
    assert summary["outputs"][1]["expressions"] == 2 and summary["outputs"][6]["dense_columns"] == 1


# -- the transformations, on tiny inputs ----------------------------------------------------------

def test_quantile_edges_make_equal_count_bins_of_data_values():
    x = np.arange(1, 11, dtype=np.float32)
    assert quantile_edges(x, 5).tolist() == [2, 4, 6, 8]                      # (-inf,2] (2,4] ... (8,inf)
    assert quantile_edges(np.array([3, 3, 3], np.float32), 10).size == 0      # constant: one bin
    zeros = np.array([0] * 8 + [5, 9], np.float32)                             # repeated cut points merge
    assert quantile_edges(zeros, 5).tolist() == [0]
    assert quantile_edges(np.array([NAN, NAN], np.float32), 5).size == 0
    assert bin_labels(np.array([2, 4.5], np.float32)) == ["(-inf,2]", "(2,4.5]", "(4.5,inf)", ""]


def test_quantile_bin_one_hot_has_a_bin_for_missing_values():
    schema = make_schema([("x", "NUMERIC"), ("y", "BINARY")])
    train = Table(schema, {"x": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, NAN, NAN], "y": [0] * 12})
    p = pipeline(["quantile_bin(x,5)"], schema, train)
    assert p.feature_names == ["quantile_bin(x,5)=(-inf,2]", "quantile_bin(x,5)=(2,4]", "quantile_bin(x,5)=(4,6]",
                               "quantile_bin(x,5)=(6,8]", "quantile_bin(x,5)=(8,inf)",
                               "quantile_bin(x,5)=<missing>"]
    test = Table(schema, {"x": [-100, 2, 2.5, 8.01, 1e9, NAN], "y": [0] * 6})
    fm = p.transform(test)
    assert fm.index[:, 0].tolist() == [0, 0, 1, 4, 4, 5] and fm.value.tolist() == [[1]] * 6
    # without missing values in training there is no missing bin: a missing value makes no feature
    p = pipeline(["quantile_bin(x,5)"], schema, Table(schema, {"x": [1, 2, 3], "y": [0] * 3}))
    assert p.transform(test).value[5].tolist() == [0.0]


def test_normalize_and_plain_numeric_outputs_are_standardised_with_training_moments():
    schema = make_schema([("x", "NUMERIC"), ("c", "NUMERIC"), ("y", "BINARY")])
    train = Table(schema, {"x": [1, 2, 3, NAN], "c": [7, 7, 7, 7], "y": [0] * 4})
    p = pipeline(["normalize(x)", "x", "c"], schema, train)
    assert p.feature_names == ["normalize(x)", "c"]                 # x is normalize(x): output once
    std = math.sqrt(2 / 3)
    fm = p.transform(Table(schema, {"x": [1, 3, 5, NAN], "c": [7, 8, NAN, 7], "y": [0] * 4}))
    np.testing.assert_allclose(fm.dense[:, 0], [-1 / std, 1 / std, 3 / std, 0], rtol=1e-6)
    assert fm.dense[:, 1].tolist() == [0, 1, 0, 0]                   # constant column: std taken as 1
    assert fm.n_sparse == 0 and fm.index.shape == (4, 0)


def test_binary_outputs_are_dense_with_missing_halfway():
    schema = make_schema([("b", "BINARY"), ("y", "NUMERIC")])
    p = pipeline(["ALL_BINARY"], schema, Table(schema, {"b": [0, 1], "y": [0, 0]}))
    assert p.transform(Table(schema, {"b": [1, 0, NAN], "y": [0] * 3})).dense[:, 0].tolist() == [1, 0, 0.5]


def test_ngram_and_osb_match_the_guides_examples():
    words = "I really enjoyed reading this book".split()
    assert ngrams(words, 1) == set(words)
    assert ngrams(words, 3) == set(words) | {
        "I really", "really enjoyed", "enjoyed reading", "reading this", "this book",
        "I really enjoyed", "really enjoyed reading", "enjoyed reading this", "reading this book"}
    assert ngrams("red, green, blue".split(), 2) == {"red,", "green,", "blue", "red, green,", "green, blue"}
    assert osb("The quick brown fox jumps over the lazy dog".split(), 4) == {
        "The_quick", "The__brown", "The___fox", "quick_brown", "quick__fox", "quick___jumps",
        "brown_fox", "brown__jumps", "brown___over", "fox_jumps", "fox__over", "fox___the",
        "jumps_over", "jumps__the", "jumps___lazy", "over_the", "over__lazy", "over___dog",
        "the_lazy", "the__dog", "lazy_dog"}
    assert osb(["one"], 5) == set()


def test_no_punct_strips_punctuation_at_word_ends_only():
    assert no_punct("Welcome to AML - please fasten your seat-belts!") == \
        "Welcome to AML please fasten your seat-belts"
    assert no_punct("  \"Hello,\"   (world)... e.g. C++ __init__ ") == "Hello world e.g C init"
    assert no_punct("") == ""


def test_text_transformations_nest_and_make_bags_of_tokens():
    schema = make_schema([("body", "TEXT"), ("y", "BINARY")])
    train = Table(schema, {"body": ["The cat, the HAT!", "a cat", ""], "y": [0, 1, 0]})
    p = pipeline(["ngram(lowercase(no_punct(body)),2)", "body"], schema, train)
    names = p.feature_names
    fm = p.transform(Table(schema, {"body": ["the Cat hat", "", "zebra"], "y": [0] * 3}))
    assert active(fm, names, 0) == {"ngram(lowercase(no_punct(body)),2)=" + t
                                    for t in ["the", "cat", "hat", "the cat"]} | {"body=the"}
    assert "ngram(lowercase(no_punct(body)),2)=cat the" in names            # "cat hat" was never seen
    assert active(fm, names, 1) == set() and active(fm, names, 2) == set()   # missing, unseen words
    assert fm.index.shape[1] == 5


def test_lowercase_merges_categories_and_categorical_outputs_are_one_hot():
    schema = make_schema([("c", "CATEGORICAL"), ("y", "BINARY")])
    train = Table(schema, {"c": ["US", "us", "FR", ""], "y": [0] * 4})
    p = pipeline(["lowercase(c)", "c"], schema, train)
    assert p.feature_names == ["lowercase(c)=<missing>", "lowercase(c)=fr", "lowercase(c)=us",
                               "c=<missing>", "c=FR", "c=US", "c=us"]
    fm = p.transform(Table(schema, {"c": ["Us", "DE", "", "us"], "y": [0] * 4}))
    names = p.feature_names
    assert active(fm, names, 0) == {"lowercase(c)=us"}                # "Us" unseen as is
    assert active(fm, names, 1) == set()                              # unseen category: no feature
    assert active(fm, names, 2) == {"lowercase(c)=<missing>", "c=<missing>"}
    assert active(fm, names, 3) == {"lowercase(c)=us", "c=us"}
    assert fm.index[1].tolist() == [0, 0] and fm.value[1].tolist() == [0, 0]


def test_cartesian_crosses_categories_bins_and_words():
    schema = make_schema([("a", "CATEGORICAL"), ("b", "CATEGORICAL"), ("x", "NUMERIC"), ("t", "TEXT"),
                          ("y", "BINARY")])
    train = Table(schema, {"a": ["p", "q", "p", ""], "b": ["1", "2", "2", "1"], "x": [1, 2, 3, 4],
                           "t": ["Data Structures", "", "Java", "x"], "y": [0] * 4})
    p = pipeline(["cartesian(a,b)", "cartesian(quantile_bin(x,5),a)", "cartesian(t,a)"], schema, train)
    assert [n for n in p.feature_names if n.startswith("cartesian(a,b)")] == [
        "cartesian(a,b)=<missing>", "cartesian(a,b)=p_1", "cartesian(a,b)=p_2", "cartesian(a,b)=q_2"]
    assert "cartesian(quantile_bin(x,5),a)=(-inf,1]_p" in p.feature_names
    fm = p.transform(Table(schema, {"a": ["p"], "b": ["2"], "x": [1], "t": ["Data Java"], "y": [0]}))
    assert active(fm, p.feature_names, 0) == {
        "cartesian(a,b)=p_2", "cartesian(quantile_bin(x,5),a)=(-inf,1]_p",
        "cartesian(t,a)=Data_p", "cartesian(t,a)=Java_p"}


# -- groups and assignments -------------------------------------------------------------------------

def test_groups_group_remove_and_builtin_groups():
    r = parse_recipe({"groups": {"G": "group(country, ALL_BINARY, age, country)",
                                 "H": "group_remove(ALL_INPUTS, G, body)",
                                 "E": "group_remove(ALL_NUMERIC, age, hours-per-week)"},
                      "outputs": ["H", "E", "G"]}, GUIDE_SCHEMA)
    assert r.groups == {"G": ("country", "member", "age"),
                        "H": ("hours-per-week", "gender", "title", "subject"), "E": ()}
    assert [[e.key for e in ex] for _, ex in r.outputs] == [
        ["hours-per-week", "gender", "title", "subject"], [], ["country", "member", "age"]]


def test_assignments_chain_and_apply_to_groups_element_wise():
    r = parse_recipe({"groups": {"TXT": "group(title, body)"},
                      "assignments": {"clean": "no_punct(TXT)", "low": "lowercase(clean)",
                                      "bins": "quantile_bin(ALL_NUMERIC, 50)"},
                      "outputs": ["osb(low, 3)", "bins"]}, GUIDE_SCHEMA)
    assert [[e.key for e in ex] for _, ex in r.outputs] == [
        ["osb(lowercase(no_punct(title)),3)", "osb(lowercase(no_punct(body)),3)"],
        ["quantile_bin(age,50)", "quantile_bin(hours-per-week,50)"]]


def test_quoted_and_dashed_names():
    schema = make_schema([("2nd value", "NUMERIC"), ("hours-per-week", "NUMERIC"), ("Var001", "NUMERIC"),
                          ("y", "BINARY")])
    r = parse_recipe({"groups": {"NUM": "group('2nd value', \"hours-per-week\", Var001)"},
                      "outputs": ["quantile_bin( NUM , 5 )"]}, schema)
    assert [e.key for e in r.expressions] == ["quantile_bin('2nd value',5)", "quantile_bin(hours-per-week,5)",
                                              "quantile_bin(Var001,5)"]


def test_empty_groups_are_fine_as_long_as_something_is_output():
    schema = make_schema([("Var001", "NUMERIC"), ("Var002", "NUMERIC"), ("prediction", "CATEGORICAL")],
                         target="prediction")
    recipe = {"groups": {}, "assignments": {},
              "outputs": ["ALL_BINARY", "ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,50)", "lowercase(ALL_TEXT)"]}
    r = parse_recipe(recipe, schema)
    assert [e.key for e in r.expressions] == ["quantile_bin(Var001,50)", "quantile_bin(Var002,50)"]
    with pytest.raises(RecipeError, match=r"recipe outputs: every output names an empty group"):
        parse_recipe({"outputs": ["ALL_TEXT", "lowercase(ALL_CATEGORICAL)"]}, schema)


def test_default_recipe_names_only_non_empty_groups():
    assert default_recipe(GUIDE_SCHEMA) == {"groups": {}, "assignments": {}, "outputs": [
        "ALL_BINARY", "ALL_CATEGORICAL", "normalize(ALL_NUMERIC)", "quantile_bin(ALL_NUMERIC,10)",
        "ngram(lowercase(no_punct(ALL_TEXT)),2)"]}
    numeric = make_schema([("a", "NUMERIC"), ("y", "CATEGORICAL")])
    assert default_recipe(numeric)["outputs"] == ["normalize(ALL_NUMERIC)", "quantile_bin(ALL_NUMERIC,10)"]
    parse_recipe(default_recipe(GUIDE_SCHEMA), GUIDE_SCHEMA)
    with pytest.raises(RecipeError, match="no input attributes"):
        default_recipe(make_schema([("y", "NUMERIC")]))


# -- errors name the place ---------------------------------------------------------------------------

@pytest.mark.parametrize("output, message", [
    ("quantile_bin(ALL_NUMERIC 50)",
     "recipe outputs[1] 'quantile_bin(ALL_NUMERIC 50)', character 25: expected ',' or ')'"),
    ("quantile_bin(title,10)",
     "recipe outputs[1] 'quantile_bin(title,10)', character 14: quantile_bin needs NUMERIC; 'title' is TEXT"),
    ("normalize(BINCAT)",
     "character 11: normalize needs NUMERIC; 'country' (in group BINCAT) is CATEGORICAL"),
    ("lowercase(ngram(body,2))", "character 11: lowercase needs TEXT or CATEGORICAL; 'ngram(body,2)' is TOKENS"),
    ("quantile_bin(agee,10)", "character 14: unknown name 'agee'; did you mean 'age'"),
    ("all_numeric", "character 1: unknown name 'all_numeric'; did you mean 'ALL_NUMERIC'?"),
    ("quantil_bin(age,10)", "character 1: unknown transformation 'quantil_bin'; did you mean 'quantile_bin'?"),
    ("y", "character 1: 'y' is the target attribute"),
    ("lowercase(id)", "character 11: 'id' is the rowId"),
    ("normalize(secret)", "character 11: 'secret' is in excludedAttributeNames"),
    ("quantile_bin(age)", "character 1: quantile_bin takes 2 arguments: quantile_bin(NUMERIC, bins 5..1000); got 1"),
    ("normalize(age, 3)", "character 1: normalize takes 1 argument: normalize(NUMERIC); got 2"),
    ("quantile_bin(age, 4)", "character 19: quantile_bin's bin count must be a whole number from 5 to 1000; got 4"),
    ("quantile_bin(age, 1001)", "from 5 to 1000; got 1001"),
    ("ngram(body, 2.5)", "character 13: ngram's n-gram size must be a whole number from 1 to 10; got 2.5"),
    ("ngram(body, 11)", "from 1 to 10; got 11"),
    ("osb(body, 1)", "character 11: osb's window size must be a whole number from 2 to 10; got 1"),
    ("osb(body, title)", "character 11: osb's window size must be a whole number from 2 to 10"),
    ("cartesian(age, country)", "character 11: cartesian needs CATEGORICAL or TEXT; 'age' is NUMERIC"),
    ("50", "character 1: expected a variable, a group or a transformation; found the number 50"),
    ("group(age)", "character 1: group() defines a group; use it in the groups section"),
    ("age)", "character 4: expected the end of the expression; found ')'"),
    ("lowercase(body", "character 15: expected ',' or ')'"),
    ("lowercase(", "character 11: expected a name, a number or a transformation; the expression ends here"),
    ("'unterminated", "character 1: unterminated quoted name"),
    ("2nd", "character 1: a name that does not start with a letter must be quoted"),
    ("  ", "recipe outputs[1] '  ': is empty"),
])
def test_output_errors_name_the_entry_and_character(output, message):
    recipe = {**GUIDE_RECIPE, "outputs": ["age", output]}
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe, GUIDE_SCHEMA)
    assert message in str(err.value)
    assert str(err.value).startswith(f"recipe outputs[1] {output!r}")


@pytest.mark.parametrize("recipe, message", [
    ({"output": ["age"]}, "recipe: unknown section 'output'; did you mean 'outputs'?"),
    ({"outputs": []}, "recipe outputs: missing or empty"),
    ({"groups": {}}, "recipe outputs: missing or empty"),
    ({"outputs": "age"}, "recipe outputs: must be an array"),
    ({"outputs": ["age", 3]}, "recipe outputs[1]: must be an expression string, not int"),
    ({"groups": ["age"], "outputs": ["age"]}, "recipe groups: must be an object"),
    ({"groups": {"age": "group(country)"}, "outputs": ["age"]},
     "recipe groups.age: 'age' is already the name of an attribute"),
    ({"groups": {"y": "group(country)"}, "outputs": ["age"]}, "recipe groups.y: 'y' is already the name of an attribute"),
    ({"assignments": {"ALL_TEXT": "lowercase(body)"}, "outputs": ["age"]},
     "recipe assignments.ALL_TEXT: 'ALL_TEXT' is a built-in group"),
    ({"groups": {"G": "group(age)"}, "assignments": {"G": "normalize(age)"}, "outputs": ["age"]},
     "recipe assignments.G: 'G' is already the name of a group"),
    ({"groups": {"G": "lowercase(body)"}, "outputs": ["G"]},
     "recipe groups.G 'lowercase(body)', character 1: a group is defined by group(name, ...)"),
    ({"groups": {"G": "group(age, normalize(age))"}, "outputs": ["G"]},
     ("recipe groups.G 'group(age, normalize(age))', character 12: a group holds attributes and groups, "
      "not transformations")),
    ({"groups": {"G": "group_remove(age, hours-per-week)"}, "outputs": ["G"]},
     "character 14: group_remove's first argument must be a group"),
    ({"groups": {"A": "group(B, age)", "B": "group(A)"}, "outputs": ["A"]},
     "recipe groups.B 'group(A)', character 7: 'A' is defined in terms of itself: A -> B -> A"),
    ({"assignments": {"a": "lowercase(b)", "b": "lowercase(a)"}, "outputs": ["a"]},
     "recipe assignments.b 'lowercase(a)', character 11: 'a' is defined in terms of itself: a -> b -> a"),
    ({"groups": {"G": "group(y)"}, "outputs": ["G"]}, "recipe groups.G 'group(y)', character 7: 'y' is the target"),
    ({"groups": {"G": "group(agge)"}, "outputs": ["G"]}, "character 7: unknown name 'agge'; did you mean 'age'"),
    ({"assignments": {"x": "quantile_bin(title, 10)"}, "outputs": ["age"]},
     "recipe assignments.x 'quantile_bin(title, 10)', character 14: quantile_bin needs NUMERIC; 'title' is TEXT"),
])
def test_section_errors_name_the_place(recipe, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe, GUIDE_SCHEMA)
    assert message in str(err.value)


def test_recipe_text_that_is_not_json_is_reported():
    with pytest.raises(RecipeError, match=r"recipe: not JSON: .* line 1, column"):
        parse_recipe('{"outputs": [age]}', GUIDE_SCHEMA)
    with pytest.raises(RecipeError, match="must be a JSON object"):
        parse_recipe("[1]", GUIDE_SCHEMA)
    assert issubclass(RecipeError, DataError)


# -- the sparse-column cap, saving, tables ----------------------------------------------------------

def test_max_sparse_columns_keeps_the_most_frequent_columns():
    schema = make_schema([("c", "CATEGORICAL"), ("d", "CATEGORICAL"), ("y", "BINARY")])
    # training counts: c=a 4, c=b 2, c=z 1; d=k 3, d=m 2, d=n 2
    train = Table(schema, {"c": list("aaaabbz"), "d": list("kkkmmnn"), "y": [0] * 7})
    p = pipeline(["c", "d"], schema, train, max_sparse_columns=4)
    # most frequent: c=a (4), d=k (3), then c=b / d=m / d=n at 2: ties by name keep c=b, d=m
    assert p.feature_names == ["c=a", "c=b", "d=k", "d=m"]
    assert p.summary()["dropped_sparse_columns"] == 2
    assert [row["dropped_sparse_columns"] for row in p.summary()["outputs"]] == [1, 1]
    fm = p.transform(Table(schema, {"c": ["z", "a"], "d": ["n", "m"], "y": [0, 0]}))
    assert fm.n_sparse == 4 and fm.index.shape == (2, 2)
    assert fm.index[0].tolist() == [0, 0] and fm.value[0].tolist() == [0, 0]   # both dropped: padding
    assert fm.index[1].tolist() == [0, 3] and fm.value[1].tolist() == [1, 1]
    assert pipeline(["c", "d"], schema, train, max_sparse_columns=6).dropped_sparse_columns == 0
    with pytest.raises(ValueError):
        FeaturePipeline(p.recipe, max_sparse_columns=0)


def test_to_json_round_trip_transforms_identically():
    train, test = guide_table(50, seed=3), guide_table(30, seed=4)
    p = FeaturePipeline(parse_recipe(GUIDE_RECIPE, GUIDE_SCHEMA), max_sparse_columns=40).fit(train)
    saved = json.loads(json.dumps(p.to_json()))
    q = FeaturePipeline.from_json(saved)
    a, b = p.transform(test), q.transform(test)
    assert q.feature_names == p.feature_names and q.summary() == p.summary()
    for name in ("dense", "index", "value"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.n_sparse == b.n_sparse == 40
    with pytest.raises(RecipeError, match="vocabularies do not match"):
        FeaturePipeline.from_json({**saved, "vocabularies": saved["vocabularies"][1:]})
    with pytest.raises(RecipeError, match=r"no fitted state for normalize\(hours-per-week\)"):
        FeaturePipeline.from_json({**saved, "stats": {}})
    with pytest.raises(RecipeError, match="malformed saved state"):
        FeaturePipeline.from_json({k: v for k, v in saved.items() if k != "stats"})


def test_the_cap_matches_a_brute_force_ranking():
    rng = np.random.default_rng(11)
    schema = make_schema([("a", "CATEGORICAL"), ("b", "CATEGORICAL"), ("t", "TEXT"), ("y", "BINARY")])
    words = [f"w{i}" for i in range(30)]
    train = Table(schema, {"a": rng.choice(list("pqrstuv"), 200, p=[.4, .2, .1, .1, .1, .05, .05]),
                           "b": rng.choice(list("pqrs"), 200),
                           "t": [" ".join(rng.choice(words, 3)) for _ in range(200)], "y": np.zeros(200)})
    full = pipeline(["a", "b", "t"], schema, train)
    fm = full.transform(train)
    counts = dict(zip(full.feature_names, np.bincount(fm.index[fm.value > 0], minlength=fm.n_sparse), strict=True))
    for cap in (1, 5, 13, 20, len(counts) - 1):
        capped = pipeline(["a", "b", "t"], schema, train, max_sparse_columns=cap)
        best = sorted(counts, key=lambda name: (-counts[name], name))[:cap]
        assert set(capped.feature_names) == set(best)
        assert capped.feature_names == [n for n in full.feature_names if n in best]   # order kept
        assert capped.dropped_sparse_columns == len(counts) - cap


def test_fit_learns_from_training_rows_only_and_transform_handles_any_rows():
    schema = make_schema([("x", "NUMERIC"), ("c", "CATEGORICAL"), ("y", "BINARY")])
    p = pipeline(["x", "quantile_bin(x,5)", "c"], schema,
                 Table(schema, {"x": [0, 10], "c": ["a", "b"], "y": [0, 1]}))
    fm = p.transform(Table(schema, {"x": [20, 30], "c": ["c", "a"], "y": [0, 0]}))
    assert fm.dense[:, 0].tolist() == [3, 5]                 # (x - 5) / 5: training moments
    empty = p.transform(Table(schema, {"x": np.zeros(0, np.float32), "c": np.zeros(0, "U1"),
                                        "y": np.zeros(0, np.float32)}))
    assert empty.dense.shape == (0, 1) and empty.index.shape[0] == 0
    with pytest.raises(RuntimeError):
        FeaturePipeline(p.recipe).transform(Table(schema, {"x": [1], "c": ["a"], "y": [0]}))


def test_many_numeric_columns_bin_like_a_brute_force_count():
    rng = np.random.default_rng(7)
    names = [f"Var{i:03d}" for i in range(1, 21)]
    schema = make_schema([(n, "NUMERIC") for n in names] + [("prediction", "CATEGORICAL")], target="prediction")
    pixels = rng.integers(0, 256, (500, 20)).astype(np.float32) * (rng.random((500, 20)) < 0.3)
    pixels[:, 0] = 0                                           # a constant column: one bin
    cols = {n: pixels[:, i].copy() for i, n in enumerate(names)}
    table = Table(schema, {**cols, "prediction": rng.integers(0, 10, 500).astype(str)})
    p = pipeline(["ALL_BINARY", "ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,50)", "lowercase(ALL_TEXT)"],
                 schema, table)
    fm = p.transform(table)
    assert fm.index.shape == (500, 20) and (fm.value == 1).all()
    assert p.feature_names[0] == "quantile_bin(Var001,50)=(-inf,inf)"
    start = 0
    for i, n in enumerate(names):
        edges = quantile_edges(cols[n], 50)
        k = len(edges) + 1
        assert (fm.index[:, i] - start).tolist() == np.searchsorted(edges, cols[n], side="left").tolist()
        counts = np.bincount(fm.index[:, i] - start, minlength=k)
        assert (counts > 0).all() and counts.max() <= max(500 // 50 * 2, (cols[n] == 0).sum())
        start += k
    assert fm.n_sparse == start


def test_sparse_rows_are_compacted_to_the_most_active_row():
    rng = np.random.default_rng(5)
    names = ["a", "b", "c", "d"]
    schema = make_schema([(n, "CATEGORICAL") for n in names] + [("t", "TEXT"), ("y", "BINARY")])
    train = Table(schema, {**{n: rng.choice(list("pq"), 30) for n in names},
                           "t": rng.choice(["x y", "y", ""], 30), "y": np.zeros(30)})
    test_cols = {n: rng.choice(list("pqr"), 200, p=[.3, .3, .4]) for n in names}     # r: never seen
    test = Table(schema, {**test_cols, "t": rng.choice(["x y z", "z", "y"], 200), "y": np.zeros(200)})
    for outputs in (["a", "b", "c", "d"], ["a", "b", "c", "d", "t"]):
        p = pipeline(outputs, schema, train)
        fm = p.transform(test)
        expected = np.zeros((200, fm.n_sparse), dtype=np.float32)
        for i in range(200):
            for n in names:
                if f"{n}={test_cols[n][i]}" in p.feature_names:
                    expected[i, p.feature_names.index(f"{n}={test_cols[n][i]}")] = 1
            if "t" in outputs:
                for word in set(test.columns["t"][i].split()):
                    if f"t={word}" in p.feature_names:
                        expected[i, p.feature_names.index(f"t={word}")] = 1
        assert np.array_equal(fm.to_dense(), expected)
        assert fm.index.shape[1] == int(expected.sum(axis=1).max())
        assert (fm.index[fm.value == 0] == 0).all()


# -- limits: a hostile recipe or text fails with a clear error instead of exhausting memory ----------

def test_deep_nesting_and_long_definition_chains_are_errors_not_crashes():
    schema = make_schema([("t", "TEXT"), ("y", "BINARY")])
    deep = "lowercase(" * 5000 + "t" + ")" * 5000
    with pytest.raises(RecipeError, match=r"outputs\[0\].*nest"):
        parse_recipe({"outputs": [deep]}, schema)
    chain = {"a0": "lowercase(t)", **{f"a{i}": f"lowercase(a{i - 1})" for i in range(1, 3000)}}
    with pytest.raises(RecipeError, match="assignments.*nest"):
        parse_recipe({"assignments": chain, "outputs": ["a2999"]}, schema)


def test_a_recipe_with_too_many_expressions_fails_at_parse_time():
    from stepml.tabular.recipe import MAX_EXPRESSIONS
    n = int(MAX_EXPRESSIONS ** 0.5) + 2
    schema = make_schema([(f"c{i}", "CATEGORICAL") for i in range(n)] + [("y", "BINARY")])
    with pytest.raises(RecipeError, match=r"outputs\[0\].*cartesian.*expressions; at most"):
        parse_recipe({"outputs": ["cartesian(ALL_CATEGORICAL, ALL_CATEGORICAL)"]}, schema)


def test_a_row_with_too_many_tokens_is_an_error_naming_the_output_and_the_row():
    from stepml.tabular.transforms import MAX_TOKENS_PER_ROW
    schema = make_schema([("t", "TEXT"), ("y", "BINARY")])
    long_text = " ".join(f"w{i}" for i in range(MAX_TOKENS_PER_ROW // 5))
    table = Table(schema, {"t": ["short text", long_text], "y": [0.0, 1.0]}, sources=["data.csv"])
    for output in ("ngram(t,10)", "osb(t,10)", "cartesian(t,t)"):
        recipe = parse_recipe({"outputs": [output]}, schema)
        with pytest.raises(DataError, match=rf"{output.replace('(', '.').replace(')', '.')}.*data.csv line 2.*at most"):
            FeaturePipeline(recipe).fit(table)


def test_the_feature_matrix_size_is_capped(monkeypatch):
    from stepml.tabular import transforms
    monkeypatch.setattr(transforms, "MAX_FEATURE_CELLS", 1000)
    schema = make_schema([("t", "TEXT"), ("y", "BINARY")])
    texts = ["a"] * 199 + [" ".join(f"w{i}" for i in range(50))]
    table = Table(schema, {"t": texts, "y": [0.0] * 200}, sources=["data.csv"])
    pipeline = FeaturePipeline(parse_recipe({"outputs": ["t"]}, schema)).fit(table)
    with pytest.raises(DataError, match=r"200 rows .* 50 .*at most 1,000.*data.csv line 200"):
        pipeline.transform(table)


def test_definitions_used_before_they_are_defined_may_not_chain_without_end():
    schema = make_schema([("t", "TEXT"), ("y", "BINARY")])
    groups = {f"g{i}": f"group(g{i + 1})" for i in range(3000)} | {"g3000": "group(t)"}
    with pytest.raises(RecipeError, match="groups.*nest more than"):
        parse_recipe({"groups": groups, "outputs": ["g0"]}, schema)
    assignments = {f"a{i}": f"lowercase(a{i + 1})" for i in range(3000)} | {"a3000": "t"}
    with pytest.raises(RecipeError, match="assignments.*nest more than"):
        parse_recipe({"assignments": assignments, "outputs": ["a0"]}, schema)
