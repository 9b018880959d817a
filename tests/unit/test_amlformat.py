"""Specification of stepml.amlformat: Amazon ML's batch prediction output layout.

Expected texts come from the Amazon ML developer guide ("Reading the Batch Prediction Output
Files", "Creating a Data Schema for Amazon ML") and from a real 2016 Amazon ML MULTICLASS
result file (MNIST, header ``5,6,7,2,8,3,9,0,1,4``).
"""

import gzip
import json

import numpy as np
import pytest

from stepml import amlformat
from stepml.amlformat import (
    accuracy_like_2016,
    format_score,
    manifest_json,
    manifest_key,
    read_result,
    result_key,
    write_result,
)
from stepml.metrics import classification_report


def text(raw_gz: bytes) -> str:
    return gzip.decompress(raw_gz).decode("utf-8")


def gz(s: str) -> bytes:
    return gzip.compress(s.encode("utf-8"), mtime=0)


# ----------------------------------------------------------------------------- keys and manifest

def test_keys_follow_the_developer_guide_example():
    assert manifest_key("s3://examplebucket/output/", "bp-example") == \
        "s3://examplebucket/output/batch-prediction/bp-example.manifest"
    assert result_key("s3://examplebucket/output/", "bp-example", "s3://examplebucket/input/data.csv") == \
        "s3://examplebucket/output/batch-prediction/result/bp-example-data.csv.gz"


def test_keys_work_with_or_without_a_trailing_slash_and_at_the_bucket_root():
    assert result_key("runs/r1/out", "bp-1", "data/in/part1.csv") == \
        "runs/r1/out/batch-prediction/result/bp-1-part1.csv.gz"
    assert result_key("runs/r1/out/", "bp-1", "part1.csv") == \
        "runs/r1/out/batch-prediction/result/bp-1-part1.csv.gz"
    assert manifest_key("", "bp-1") == "batch-prediction/bp-1.manifest"


@pytest.mark.parametrize("bp_id", ["", "bp 1", "bp/1", "x" * 65, None])
def test_batch_prediction_ids_follow_the_api_pattern(bp_id):
    with pytest.raises(ValueError, match="batch prediction id"):
        manifest_key("out", bp_id)


def test_result_key_needs_a_file_not_a_folder():
    with pytest.raises(ValueError, match="folder"):
        result_key("out", "bp-1", "s3://b/input/")


def test_manifest_maps_each_input_to_its_result_in_order():
    mapping = {f"s3://examplebucket/input/data{i}.csv":
               result_key("s3://examplebucket/output/", "bp-example", f"s3://examplebucket/input/data{i}.csv")
               for i in (3, 1, 2)}
    raw = manifest_json(mapping)
    assert json.loads(raw) == mapping
    assert list(json.loads(raw)) == list(mapping)          # input order kept
    assert raw.decode().splitlines()[0] == \
        '{"s3://examplebucket/input/data3.csv":"s3://examplebucket/output/batch-prediction/result/bp-example-data3.csv.gz",'
    assert len(raw.decode().splitlines()) == 3              # one mapping line per pair


@pytest.mark.parametrize("mapping", [{}, {"a": 1}, [("a", "b")]])
def test_manifest_rejects_bad_mappings(mapping):
    with pytest.raises(ValueError, match="manifest"):
        manifest_json(mapping)


# ----------------------------------------------------------------------------- score notation

@pytest.mark.parametrize("value, written", [
    (0.0087642, "8.7642E-3"), (0.7899012, "7.899012E-1"), (0.006323061, "6.323061E-3"),
    (0.02143189, "2.143189E-2"), (0.8944209, "8.944209E-1"),            # guide, BINARY
    (-15.26385, "-1.526385E1"), (-6.188034, "-6.188034E0"), (8.359159, "8.359159E0"),  # REGRESSION
    (5.294719e-7, "5.294719E-7"), (0.9999157, "9.999157E-1"), (0.0018863, "1.8863E-3"),  # 2016 file
    (0.123456789, "1.234568E-1"), (1.0, "1E0"), (0.0, "0E0"), (1234567.0, "1.234567E6"),
    (np.float32(0.7899012), "7.899012E-1"),
])
def test_scores_are_written_in_amazon_ml_notation(value, written):
    assert format_score(value) == written
    assert float(written) == pytest.approx(float(value), rel=5e-7)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_scores_are_refused(value):
    with pytest.raises(ValueError, match="non-finite"):
        format_score(value)


# ----------------------------------------------------------------------------- the three layouts

def test_binary_layout_is_the_guide_example():
    scores = [0.0087642, 0.7899012, 0.006323061, 0.02143189, 0.8944209]
    raw = write_result("BINARY", scores=scores, threshold=0.75)
    assert text(raw) == ("bestAnswer,score\n0,8.7642E-3\n1,7.899012E-1\n0,6.323061E-3\n"
                         "0,2.143189E-2\n1,8.944209E-1\n")


def test_binary_best_answer_uses_score_at_least_threshold():
    assert text(write_result("BINARY", scores=[0.5, 0.4999999])) == "bestAnswer,score\n1,5E-1\n0,4.999999E-1\n"


def test_binary_accepts_two_column_probabilities():
    p = np.array([[0.8, 0.2], [0.1, 0.9]], dtype=np.float32)
    assert text(write_result("BINARY", scores=p)) == "bestAnswer,score\n0,2E-1\n1,9E-1\n"


def test_multiclass_layout_names_each_score_column_by_its_class():
    labels = ["1_star", "2_stars", "3_stars", "4_stars", "5_stars"]
    scores = [[8.7642e-3, 2.7195e-1, 4.77781e-1, 1.75411e-1, 6.6094e-2],
              [5.59931e-1, 3.10e-4, 2.48e-4, 1.99871e-1, 2.39640e-1]]
    lines = text(write_result("MULTICLASS", scores=scores, class_labels=labels)).splitlines()
    assert lines == ["1_star,2_stars,3_stars,4_stars,5_stars",
                     "8.7642E-3,2.7195E-1,4.77781E-1,1.75411E-1,6.6094E-2",
                     "5.59931E-1,3.1E-4,2.48E-4,1.99871E-1,2.3964E-1"]


def test_regression_layout_is_the_guide_example():
    raw = write_result("REGRESSION", scores=np.array([-15.26385, -6.188034, -12.71108, -22.00578, 8.359159]))
    assert text(raw) == "score\n-1.526385E1\n-6.188034E0\n-1.271108E1\n-2.200578E1\n8.359159E0\n"


def test_true_label_comes_first_then_the_row_id():
    raw = write_result("BINARY", scores=[0.46317, 0.89625], true_labels=np.array([0, 1]),
                       row_ids=["55", "102"], row_id_name="customerId")
    assert text(raw) == "trueLabel,customerId,bestAnswer,score\n0,55,0,4.6317E-1\n1,102,1,8.9625E-1\n"
    raw = write_result("REGRESSION", scores=[2.5], row_ids=[7], row_id_name="id")
    assert text(raw) == "id,score\n7,2.5E0\n"
    raw = write_result("MULTICLASS", scores=[[0.25, 0.75]], class_labels=["0", "1"],
                       true_labels=np.array(["1"]))
    assert text(raw) == "trueLabel,0,1\n1,2.5E-1,7.5E-1\n"


def test_labels_with_commas_and_quotes_are_quoted_per_rfc_4180():
    raw = write_result("MULTICLASS", scores=[[0.5, 0.25, 0.25]],
                       class_labels=["New York, NY", 'say "hi"', "plain"], true_labels=['say "hi"'])
    assert text(raw) == ('trueLabel,"New York, NY","say ""hi""",plain\n'
                         '"say ""hi""",5E-1,2.5E-1,2.5E-1\n')
    back = read_result(raw, "MULTICLASS")
    assert back["class_labels"] == ["New York, NY", 'say "hi"', "plain"]
    assert back["true_labels"] == ['say "hi"'] and back["predicted"] == ["New York, NY"]


def test_failed_rows_become_blank_lines():
    raw = write_result("REGRESSION", scores=[1.0, np.nan, 3.0], failed=[False, True, False])
    assert text(raw) == "score\n1E0\n\n3E0\n"


def test_output_is_deterministic_gzip():
    args = {"scores": np.random.default_rng(0).dirichlet(np.ones(3), size=50), "class_labels": ["a", "b", "c"]}
    first, second = write_result("MULTICLASS", **args), write_result("MULTICLASS", **args)
    assert first == second
    assert first[:2] == b"\x1f\x8b" and first[4:8] == b"\x00\x00\x00\x00"   # gzip mtime 0


@pytest.mark.parametrize("model_type, kwargs, message", [
    ("TEXT", {"scores": [0.5]}, "model type"),
    ("MULTICLASS", {"scores": [[0.5, 0.5]]}, "class label"),
    ("MULTICLASS", {"scores": [[0.5, 0.5]], "class_labels": ["a", "a"]}, "distinct"),
    ("MULTICLASS", {"scores": [0.5, 0.5], "class_labels": ["a", "b"]}, "rows, classes"),
    ("REGRESSION", {"scores": [[1.0, 2.0]]}, "one value per row"),
    ("REGRESSION", {"scores": [1.0, np.nan]}, "non-finite"),
    ("BINARY", {"scores": [0.5], "threshold": 2}, "threshold"),
    ("BINARY", {"scores": [0.5, 0.5], "true_labels": [1]}, "true_labels has 1"),
    ("BINARY", {"scores": [0.5], "row_ids": [1]}, "row_id_name"),
    ("BINARY", {"scores": [0.5], "failed": [True, False]}, "failed"),
])
def test_bad_writes_are_rejected(model_type, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_result(model_type, **kwargs)


# ----------------------------------------------------------------------------- reading

def test_round_trip_multiclass():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), size=30).astype(np.float32)
    labels = ["cat", "dog", "eel", "fox"]
    truth = [labels[i] for i in rng.integers(0, 4, size=30)]
    raw = write_result("MULTICLASS", scores=p, class_labels=labels, true_labels=truth,
                       row_ids=[f"r{i}" for i in range(30)], row_id_name="rid")
    back = read_result(raw, "MULTICLASS", row_id_name="rid")
    assert back["columns"] == ["trueLabel", "rid"] + labels
    assert back["rows"] == 30 and back["invalid_records"] == 0 and back["valid"].all()
    np.testing.assert_allclose(back["scores"], p, rtol=1e-6)
    assert back["predicted"] == [labels[i] for i in p.argmax(axis=1)]
    assert back["true_labels"] == truth
    assert back["row_ids"] == [f"r{i}" for i in range(30)]


def test_round_trip_binary_and_regression():
    s = np.array([0.1, 0.7, 0.5], dtype=np.float32)
    back = read_result(write_result("BINARY", scores=s, true_labels=[0, 1, 0]), "BINARY")
    assert back["predicted"] == [0, 1, 1] and back["true_labels"] == ["0", "1", "0"]
    np.testing.assert_allclose(back["scores"], s, rtol=1e-6)
    assert back["class_labels"] is None and back["row_ids"] is None
    v = np.array([-1.5e3, 0.0, 42.125])
    back = read_result(write_result("REGRESSION", scores=v, row_ids=[1, 2, 3], row_id_name="id"), "REGRESSION")
    assert back["predicted"] == pytest.approx(v.tolist())
    assert back["row_ids"] == ["1", "2", "3"]            # the lone extra column is the row id


def test_blank_and_malformed_lines_are_invalid_records_in_place():
    raw = gz("trueLabel,bestAnswer,score\n1,1,9E-1\n\n0,0,x\n0,2,1E-1\n1,1\n0,0,nan\n1,0,3E-1\n\n")
    back = read_result(raw, "BINARY")
    assert back["rows"] == 8
    assert back["invalid_records"] == 6
    assert back["valid"].tolist() == [True, False, False, False, False, False, True, False]
    assert back["predicted"] == [1, None, None, None, None, None, 0, None]
    assert back["true_labels"] == ["1", None, None, None, None, None, "1", None]
    assert np.isnan(back["scores"][1:6]).all() and back["scores"][6] == pytest.approx(0.3)


def test_reader_tolerates_crlf_bom_quoted_headers_spaces_and_plain_bytes():
    body = '\ufeff"trueLabel", "0", "1"\r\n1, 2.5E-1, 7.5E-1\r\n0,9E-1,1E-1\r\n'
    for raw in (gz(body), body.encode("utf-8")):
        back = read_result(raw, "MULTICLASS")
        assert back["columns"] == ["trueLabel", "0", "1"]
        assert back["predicted"] == ["1", "0"] and back["invalid_records"] == 0


def test_reader_takes_the_guide_multiclass_example_verbatim():
    # The guide prints the multiclass file with a space after each comma.
    body = ("1_star, 2_stars, 3_stars, 4_stars, 5_stars\n"
            "8.7642E-3, 2.7195E-1, 4.77781E-1, 1.75411E-1, 6.6094E-2\n"
            "3.129E-3, 8.944209E-1, 3.902E-3, 7.2191E-2, 2.6357E-2\n")
    back = read_result(gz(body), "MULTICLASS")
    assert back["predicted"] == ["3_stars", "2_stars"]
    assert back["true_labels"] is None


def test_reader_uses_the_header_order_of_a_real_2016_file():
    # Amazon ML did not sort the class columns: the header of a 2016 MNIST result.
    body = ("5,6,7,2,8,3,9,0,1,4\n"
            "5.294719E-7,1.480147E-6,9.132762E-8,9.999157E-1,3.575134E-6,5.441478E-6,7.266163E-7,"
            "7.241058E-5,5.739153E-9,5.568685E-8\n"
            "1.8863E-3,1.366111E-5,9.215208E-6,6.254149E-5,2.124213E-5,1.340667E-5,7.837096E-7,"
            "9.979928E-1,4.651098E-8,6.97361E-9\n")
    back = read_result(gz(body), "MULTICLASS")
    assert back["class_labels"] == list("5672839014")
    assert back["predicted"] == ["2", "0"]


@pytest.mark.parametrize("body, model_type, kwargs, message", [
    ("", "BINARY", {}, "no header"),
    ("\nscore\n", "REGRESSION", {}, "no header"),
    ("bestAnswer\n1\n", "BINARY", {}, "lacks score"),
    ("trueLabel,a\nx,1E0\n", "MULTICLASS", {}, "score column per class"),
    ("a,b,bestAnswer,score\n", "BINARY", {}, "does not"),
    ("score,score\n", "REGRESSION", {}, "repeats"),
    ("score\n", "REGRESSION", {"row_id_name": "id"}, "no row id column 'id'"),
    ("score\n", "TEXT", {}, "model type"),
])
def test_unreadable_headers_are_rejected(body, model_type, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_result(gz(body), model_type, **kwargs)


def test_corrupt_gzip_is_a_value_error():
    with pytest.raises(ValueError, match="gzipped CSV"):
        read_result(gz("score\n1E0\n")[:-6], "REGRESSION")


# ----------------------------------------------------------------------------- the 2016 check

def test_2016_reading_scores_the_same_accuracy_as_ours():
    rng = np.random.default_rng(4)
    labels = [str(d) for d in range(10)]
    truth = rng.integers(0, 10, size=400)
    logits = rng.normal(size=(400, 10))
    logits[np.arange(400), truth] += 1.5          # a model that is right most of the time
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    raw = write_result("MULTICLASS", scores=p.astype(np.float32), class_labels=labels,
                       true_labels=[labels[t] for t in truth])
    ours = classification_report(truth, p.argmax(axis=1), 10)["accuracy"]
    assert 0.3 < ours < 0.95
    assert accuracy_like_2016(raw) == ours
    back = read_result(raw, "MULTICLASS")
    index = {c: i for i, c in enumerate(back["class_labels"])}
    read_back = classification_report([index[t] for t in back["true_labels"]],
                                      [index[c] for c in back["predicted"]], 10)["accuracy"]
    assert read_back == ours


def test_2016_reading_counts_blank_lines_as_wrong_and_needs_the_true_label():
    raw = write_result("MULTICLASS", scores=[[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], class_labels=["a", "b"],
                       true_labels=["a", "a", "b"], failed=[False, True, False])
    assert accuracy_like_2016(raw) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="column 0"):
        accuracy_like_2016(write_result("MULTICLASS", scores=[[0.9, 0.1]], class_labels=["a", "b"]))


def test_module_exports():
    assert set(amlformat.__all__) >= {"write_result", "read_result", "accuracy_like_2016", "manifest_json",
                                      "manifest_key", "result_key", "format_score"}


def test_bulk_score_writing_agrees_with_format_score():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(size=300) * 10.0 ** rng.integers(-12, 12, size=300),
                             [0.0, -0.0, 1.0, -1.0, 1e10, 9.9999999e-1, 123456789.0, 1e-300]])
    lines = text(write_result("REGRESSION", scores=values)).splitlines()[1:]
    assert lines == [format_score(v) for v in values]
