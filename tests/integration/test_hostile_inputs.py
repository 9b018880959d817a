"""A corpus of malformed and hostile triggers and data files, each run through the local stack.

Every case must end in a clear answer: a rejection record next to the trigger (StartRun refuses
it before any execution) or a failure record of the run naming the problem -- the field, the
file, the line or column. After the whole corpus the stack still serves a good run, and no
object version that existed before it (the good inputs and the hostile data alike) was modified
or deleted.
"""

from __future__ import annotations

import gzip
import json
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from stepml import mnist
from stepml.local.runner import run_trigger
from tests import tabular_data
from tests.integration.stacks import local_stack

GOOD_MNIST = "data/mnist/"
WINES, WINES_SCHEMA = "data/wines/wines.csv", "data/wines/wines.csv.schema"
BANKING, BANKING_SCHEMA = "data/banking/banking.csv", "data/banking/banking.csv.schema"
SYNTHETIC = mnist.synthetic_mnist(300, 100, seed=11)                   # raw IDX bytes
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = mnist.MNIST_FILES


# -- the good inputs and helpers to corrupt them ----------------------------------------------

def mnist_trigger(prefix: str = GOOD_MNIST, **model) -> dict:
    return {"version": "1", "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": prefix},
            "model": {"type": "MULTICLASS", "algorithm": "linear", "parameters": {"epochs": 2}, **model}}


def csv_trigger(data: str = WINES, schema: str = WINES_SCHEMA, model_type: str = "MULTICLASS", **model) -> dict:
    return {"version": "1", "dataset": {"kind": "csv", "schema": schema, "training": {"data": data}},
            "model": {"type": model_type, "parameters": {"sgd.maxPasses": "5"}, **model}}


def with_changes(trigger: dict, change) -> dict:
    change(trigger)
    return trigger


def idx_set(**replace: bytes | None) -> dict[str, bytes]:
    """The four synthetic files (gzip) with some replaced by raw bytes, or left out (None)."""
    files = {name: gzip.compress(body, mtime=0) for name, body in SYNTHETIC.items()}
    for short, body in replace.items():
        name = {"train_images": TRAIN_IMAGES, "train_labels": TRAIN_LABELS,
                "test_images": TEST_IMAGES, "test_labels": TEST_LABELS}[short]
        if body is None:
            del files[name]
        else:
            files[name] = body
    return files


def labels(values) -> bytes:
    return mnist.write_idx(np.asarray(values, dtype=np.uint8))


def wines_rows(n: int = 200) -> list[bytes]:
    return tabular_data.wines()[0].splitlines(keepends=True)[:n]


def spoil(rows: list[bytes], bad, every: int = 2) -> bytes:
    """Replace every ``every``-th row by ``bad(row, i)``: 1 in 2 rows is far above the 10 % share."""
    return b"".join(bad(r, i) if i % every == 0 else r for i, r in enumerate(rows))


def set_field(row: bytes, column: int, value: bytes) -> bytes:
    """The row with one of its leading (unquoted) fields replaced."""
    fields = row.split(b",", column + 1)
    return b",".join(fields[:column] + [value] + fields[column + 1:])


def wines_schema(**changes) -> bytes:
    _, data_schema = tabular_data.wines()
    return json.dumps({**data_schema, **changes}).encode()


# -- the corpus ------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    trigger: dict | bytes
    expect: str | tuple[str, ...]           # substrings of the reason / cause that name the problem
    objects: dict[str, bytes] = field(default_factory=dict)   # hostile data, put once before the corpus
    failed_step: str | None = None          # for failures: the step that must fail

    @property
    def kind(self) -> str:
        return "FAILED" if self.failed_step else "REJECTED"

    def body(self) -> bytes:
        return self.trigger if isinstance(self.trigger, bytes) else json.dumps(self.trigger).encode()


def nested(depth: int) -> bytes:
    return b'{"version": "1", "dataset": {"kind": "mnist"}, "model": {"type": "MULTICLASS"}, "description": ' \
        + b"[" * depth + b"]" * depth + b"}"


def idx_case(case_id: str, expect, step: str = "CreateDataSource", **replace) -> Case:
    prefix = f"data/hostile/{case_id}/"
    objects = {f"{prefix}{name}.gz" if body[:2] == b"\x1f\x8b" else f"{prefix}{name}": body
               for name, body in idx_set(**replace).items()}
    return Case(f"idx-{case_id}", mnist_trigger(prefix), expect, objects, step)


def csv_case(case_id: str, expect, data: bytes | None = None, schema: bytes | None = None,
             model_type: str = "MULTICLASS", base: str = "wines", step: str = "CreateDataSource") -> Case:
    prefix = f"data/hostile/{case_id}/"
    good_data, good_schema = (WINES, WINES_SCHEMA) if base == "wines" else (BANKING, BANKING_SCHEMA)
    objects = {}
    if data is not None:
        objects[prefix + "data.csv"] = data
    if schema is not None:
        objects[prefix + "schema.json"] = schema
    trigger = csv_trigger(prefix + "data.csv" if data is not None else good_data,
                          prefix + "schema.json" if schema is not None else good_schema, model_type)
    return Case(f"csv-{case_id}", trigger, expect, objects, step)


_images = mnist.parse_idx(SYNTHETIC[TRAIN_IMAGES])
_labels = mnist.parse_idx(SYNTHETIC[TRAIN_LABELS])
_banking_rows = tabular_data.banking()[0].splitlines(keepends=True)

PREFIX_RULE = ("dataset/s3_prefix", "not under runs/ or triggers/; no '.', '..' or empty segments")
KEY_RULE = "not under runs/, triggers/ or cache/; no '.', '..' or empty segments"

CASES = [
    # ---- triggers: StartRun rejects them before any execution ----
    Case("trigger-not-utf8", b'{"version": "1", "name": "caf\xe9"}', "not UTF-8"),
    Case("trigger-not-json", b'{"version": "1", "dataset": ', ("not valid JSON", "line 1 column 29")),
    Case("trigger-nan-constant", b'{"version": "1", "dataset": {"kind": "mnist"}, "model": {"type": "MULTICLASS",'
                                 b' "parameters": {"learning_rate": NaN}}}', "NaN"),
    Case("trigger-nested-10000", nested(10_000), "nests too deeply"),
    Case("trigger-over-64kib", json.dumps({**mnist_trigger(), "description": "x" * 70_000}).encode(),
         ("bytes; the limit is 65,536")),
    Case("trigger-top-level-array", b"[1, 2, 3]", "(top level)"),
    Case("trigger-missing-model", with_changes(mnist_trigger(), lambda t: t.pop("model")), "'model' is a required"),
    Case("trigger-unknown-top-level-field", {**mnist_trigger(), "callback": "http://x"}, "callback"),
    Case("trigger-unknown-dataset-field", with_changes(mnist_trigger(), lambda t: t["dataset"].update(path="/etc")),
         ("dataset", "path")),
    Case("trigger-version-2", {**mnist_trigger(), "version": "2"}, "version"),
    Case("trigger-bad-name", {**mnist_trigger(), "name": "../../etc/passwd"}, "name"),
    Case("trigger-prefix-dotdot", mnist_trigger("data/../runs/"), PREFIX_RULE),
    Case("trigger-prefix-under-runs", mnist_trigger("runs/other-run/datasource/"), PREFIX_RULE),
    Case("trigger-prefix-under-triggers", mnist_trigger("triggers/"), PREFIX_RULE),
    Case("trigger-prefix-absolute", mnist_trigger("/etc/"), PREFIX_RULE),
    Case("trigger-prefix-other-bucket", mnist_trigger("s3://other-bucket/data/"), PREFIX_RULE),
    Case("trigger-csv-key-double-slash", csv_trigger("data//wines.csv"), ("dataset/training/data", KEY_RULE)),
    Case("trigger-csv-key-dotdot", csv_trigger("data/wines/../../runs/x/predictions.csv"),
         ("dataset/training/data", KEY_RULE)),
    Case("trigger-schema-under-cache", csv_trigger(schema="cache/mnist/schema.json"), ("dataset/schema", KEY_RULE)),
    Case("trigger-recipe-under-runs", csv_trigger(recipe="runs/another-run-0123/recipe.json"),
         ("model/recipe", "not under runs/")),
    Case("trigger-unknown-parameter", mnist_trigger(parameters={"epochs": 2, "rm_rf": 1}), "rm_rf"),
    Case("trigger-epochs-zero", mnist_trigger(parameters={"epochs": 0}), "epochs"),
    Case("trigger-epochs-huge", mnist_trigger(parameters={"epochs": 10 ** 9}), "epochs"),
    Case("trigger-epochs-string", mnist_trigger(parameters={"epochs": "12"}), "epochs"),
    Case("trigger-epochs-boolean", mnist_trigger(parameters={"epochs": True}), "epochs"),
    Case("trigger-seed-negative", mnist_trigger(seed=-1), "model/seed"),
    Case("trigger-preset-conflicts-algorithm", mnist_trigger(preset="accurate"), "preset 'accurate'"),
    Case("trigger-cnn-on-csv", csv_trigger(algorithm="cnn", parameters={}), "cnn is for image datasets"),
    Case("trigger-amazonml-on-mnist", with_changes(mnist_trigger(engine="amazonml"),
                                                   lambda t: t["model"].pop("algorithm")), "model/engine"),
    Case("trigger-rmse-gate-on-multiclass", {**mnist_trigger(), "quality_gate": {"max_rmse": 0.5}},
         "quality_gate/max_rmse"),
    Case("trigger-time-budget-zero", mnist_trigger(time_budget_seconds=0), "model/time_budget_seconds"),
    Case("trigger-fan-out-concurrency-zero", {**mnist_trigger(), "batch_prediction": {"max_concurrency": 0}},
         "batch_prediction/max_concurrency"),
    Case("trigger-fan-out-tolerance-over-100",
         {**mnist_trigger(), "batch_prediction": {"tolerated_failure_percentage": 101}},
         "batch_prediction/tolerated_failure_percentage"),
    Case("trigger-fan-out-shard-rows-not-a-number", {**mnist_trigger(), "batch_prediction": {"shard_rows": "all"}},
         "batch_prediction/shard_rows"),
    Case("trigger-sgd-max-passes-1000", csv_trigger(parameters={"sgd.maxPasses": "1000"}), "sgd.maxPasses"),
    Case("trigger-sgd-l1-and-l2", csv_trigger(parameters={"sgd.l1RegularizationAmount": "1e-6",
                                                          "sgd.l2RegularizationAmount": "1e-6"}),
         ("sgd.l1RegularizationAmount", "sgd.l2RegularizationAmount")),
    Case("trigger-engine-set-parameter", mnist_trigger(parameters={"n_classes": 3}), "model.parameters.n_classes"),
    Case("trigger-split-out-of-range", with_changes(csv_trigger(), lambda t: t["dataset"]["training"].update(
        rearrangement={"splitting": {"percentBegin": 0, "percentEnd": 150}})), "percentEnd"),

    # ---- IDX data: the run fails with a record naming the file ----
    idx_case("wrong-magic", (TRAIN_IMAGES, "0x00000801"),
             train_images=b"\x00\x00\x08\x01" + SYNTHETIC[TRAIN_IMAGES][4:]),
    idx_case("not-idx-at-all", (TRAIN_LABELS, "bad magic"), train_labels=b"PK\x03\x04 this is a zip file"),
    idx_case("truncated", (TRAIN_IMAGES, "truncated"), train_images=SYNTHETIC[TRAIN_IMAGES][:-1000]),
    idx_case("trailing-bytes", (TEST_LABELS, "trailing bytes"), test_labels=SYNTHETIC[TEST_LABELS] + b"\0" * 7),
    idx_case("truncated-gzip", (TEST_IMAGES, "corrupt gzip"),
             test_images=gzip.compress(SYNTHETIC[TEST_IMAGES])[:500]),
    idx_case("empty-file", (TRAIN_LABELS, "too short"), train_labels=b""),
    idx_case("gzip-bomb", (TRAIN_IMAGES, "decompresses to more than"),
             train_images=gzip.compress(bytes(101 * 1024 * 1024), compresslevel=1, mtime=0)),
    idx_case("hostile-dimensions", (TRAIN_IMAGES, "truncated"),
             train_images=struct.pack(">HBB3I", 0, 8, 3, 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1) + b"\0" * 64),
    idx_case("labels-count-mismatch", "300 images but 299 labels", train_labels=labels(_labels[:-1])),
    idx_case("labels-out-of-range", ("train", "outside 0..9", "42"),
             train_labels=labels(np.where(np.arange(300) % 50 == 0, 42, _labels))),
    idx_case("single-class", "single class", train_labels=labels(np.full(300, 3))),
    idx_case("missing-file", ("lacks", TEST_LABELS), step="PrepareData", test_labels=None),
    idx_case("test-shape-differs", ("test images", "[20, 20]"),
             test_images=mnist.write_idx(np.zeros((100, 20, 20), np.uint8))),
    idx_case("huge-images", (TRAIN_IMAGES, "largest side"),
             train_images=mnist.write_idx(np.zeros((2, 300, 300), np.uint8)), train_labels=labels([0, 1])),

    # ---- CSV data and schemas: the run fails with a record naming line, column or field ----
    csv_case("wrong-width", ("line 1", "3 columns, the schema has 4"),
             data=spoil(wines_rows(), lambda r, _: r.rsplit(b",", 1)[0] + b"\n")),
    csv_case("numeric-nan-inf", ("line 1, column 2 (sugar)", "not a finite number"),
             data=spoil(wines_rows(), lambda r, i: set_field(r, 1, (b"NaN", b"inf", b"-Infinity")[i % 3]))),
    csv_case("numeric-overflow", ("column 1 (acidity)", "1e999"),
             data=spoil(wines_rows(), lambda r, _: set_field(r, 0, b"1e999"))),
    csv_case("binary-garbage", ("column 4 (housing)", "maybe", "BINARY"), base="banking", model_type="BINARY",
             schema=json.dumps(tabular_data.banking()[1]).encode(),
             data=_banking_rows[0] + spoil(_banking_rows[1:], lambda r, _: set_field(r, 3, b"maybe"))),
    csv_case("too-many-classes", ("colour", "more than 100"),
             data=b"".join(b"3.1,2.0,rioja,class-%d\n" % i for i in range(300))),
    csv_case("empty-object", "no valid rows", data=b""),
    csv_case("schema-not-json", ("schema-not-json/schema.json", "not JSON", "line 1, column 2"),
             schema=b"{'version': '1.0', attributes: [}", step="PrepareData"),
    csv_case("schema-array", ("schema-array/schema.json", "must be a JSON object"), schema=b"[1, 2]",
             step="PrepareData"),
    csv_case("schema-unknown-type", ("attributes[1].attributeType", "FLOAT"), step="PrepareData",
             schema=wines_schema(attributes=[{"attributeName": "acidity", "attributeType": "NUMERIC"},
                                             {"attributeName": "sugar", "attributeType": "FLOAT"},
                                             {"attributeName": "region", "attributeType": "CATEGORICAL"},
                                             {"attributeName": "colour", "attributeType": "CATEGORICAL"}])),
    csv_case("schema-target-missing", ("targetAttributeName", "grape"), step="PrepareData",
             schema=wines_schema(targetAttributeName="grape")),
    csv_case("schema-target-wrong-type", ("targetAttributeName", "REGRESSION"), model_type="REGRESSION",
             step="PrepareData"),
    csv_case("header-mismatch", ("line 1", "column 2 is 'sweetness'", "dataFileContainsHeader"),
             schema=wines_schema(dataFileContainsHeader=True),
             data=b"acidity,sweetness,region,colour\n" + b"".join(wines_rows())),
    csv_case("unclosed-quote", ("line 101", "never closed", "101 lines"),
             data=b"".join(wines_rows(100)) + b'3.1,2.0,"rioja,red\n' + b"".join(wines_rows(100))),
    csv_case("invalid-utf8", ("line 1", "not valid UTF-8"),
             data=spoil(wines_rows(), lambda r, i: set_field(r, 2, (b"rio\xffja", b"mo\xc3sel", b"pro\x80")[i % 3]))),
    csv_case("field-too-long", ("line 1", "column 3 (region)", "a field has at most 100,000"),
             data=spoil(wines_rows(30), lambda r, _: set_field(r, 2, b"r" * 100_001), every=1)),
    Case("csv-data-missing", csv_trigger("data/hostile/no-such-object.csv"),
         ("dataset/training/data", "does not exist"), failed_step="PrepareData"),
    Case("csv-recipe-object-not-json", csv_trigger(recipe="data/hostile/recipe/recipe.json"), "model/recipe",
         {"data/hostile/recipe/recipe.json": b"\x00\x01 not a recipe"}, "PrepareData"),
]


# -- the stack, the snapshot, the runs --------------------------------------------------------

def versions(stack) -> dict[str, str]:
    s3 = stack.client("s3")
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=stack.bucket)
    return {f"{v['Key']}@{v['VersionId']}": v["ETag"] for p in pages for v in p.get("Versions", [])}


@pytest.fixture(scope="module")
def stack():
    with local_stack() as local:
        s3 = local.client("s3")
        for name, body in mnist.synthetic_mnist(600, 200, seed=7, gzip=True).items():
            s3.put_object(Bucket=local.bucket, Key=f"{GOOD_MNIST}{name}.gz", Body=body)
        for (data_key, schema_key), make in (((WINES, WINES_SCHEMA), tabular_data.wines),
                                             ((BANKING, BANKING_SCHEMA), tabular_data.banking)):
            body, data_schema = make()
            s3.put_object(Bucket=local.bucket, Key=data_key, Body=body)
            s3.put_object(Bucket=local.bucket, Key=schema_key, Body=json.dumps(data_schema).encode())
        for case in CASES:
            for key, body in case.objects.items():
                s3.put_object(Bucket=local.bucket, Key=key, Body=body)
        local.before_corpus = versions(local)
        yield local


def test_the_corpus_is_large_and_its_names_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_input_ends_in_a_record_naming_the_problem(stack, tmp_path, case):
    body = case.body()
    outcome = run_trigger(stack, body, f"{case.id}.json", tmp_path, say=lambda _: None)

    assert outcome.status == case.kind, (outcome.status, outcome.rejection, outcome.failure)
    if case.kind == "REJECTED":
        message = outcome.rejection["reason"]
    else:
        assert outcome.failure["failed_step"] == case.failed_step, outcome.failure
        assert outcome.failure["error"] in ("DataError", "SchemaError", "RecipeError"), outcome.failure
        message = outcome.failure["cause"]
    for expected in (case.expect,) if isinstance(case.expect, str) else case.expect:
        assert expected in message, message
    assert len(message) < 2000                 # a message, not a dump of the input
    # the trigger itself is left as uploaded
    s3 = stack.client("s3")
    assert s3.get_object(Bucket=stack.bucket, Key=f"triggers/{case.id}.json")["Body"].read() == body


def test_after_the_corpus_the_stack_still_serves_and_no_input_changed(stack, tmp_path):
    mnist_run = run_trigger(stack, json.dumps(mnist_trigger()).encode(), "after-corpus.json", tmp_path,
                            say=lambda _: None)
    csv_run = run_trigger(stack, json.dumps(csv_trigger()).encode(), "after-corpus-csv.json", tmp_path,
                          say=lambda _: None)

    assert mnist_run.status == "SUCCEEDED", mnist_run.failure
    assert csv_run.status == "SUCCEEDED", csv_run.failure
    after = versions(stack)
    changed = {k: (etag, after.get(k)) for k, etag in stack.before_corpus.items() if after.get(k) != etag}
    assert not changed, changed               # nothing modified or deleted
