"""The trigger contract: what is accepted, what is refused and why, and how runs are named."""

import json

import pytest

from stepml import trigger
from stepml.errors import TriggerRejected

VALID = {
    "version": "1",
    "dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "data/mnist/"},
    "model": {"type": "MULTICLASS", "algorithm": "linear", "seed": 3},
}


def parse(document) -> dict:
    return trigger.parse(json.dumps(document).encode())


def test_valid_trigger_gets_defaults_without_touching_the_input():
    document = json.loads(json.dumps(VALID))
    parsed = trigger.validate(document)
    assert parsed["model"]["engine"] == "builtin"
    assert parsed["model"]["parameters"] == {}
    assert document == VALID  # the caller's object is not modified


def test_download_is_the_default_source_and_mlp_the_default_algorithm():
    parsed = parse({"version": "1", "dataset": {"kind": "mnist"}, "model": {"type": "MULTICLASS"}})
    assert parsed["dataset"]["source"] == "download"
    assert parsed["model"]["algorithm"] == "mlp"


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"version": "1", "x": NaN}', "NaN"),
    (b"[]", "is not of type 'object'"),
    (b" " * (trigger.MAX_TRIGGER_BYTES + 1), "limit"),
])
def test_malformed_bytes_are_rejected_with_the_reason(raw, message):
    with pytest.raises(TriggerRejected, match=message):
        trigger.parse(raw)


@pytest.mark.parametrize("change, message", [
    ({"version": "2"}, "version"),
    ({"surprise": 1}, "Additional properties"),
    ({"dataset": {"kind": "cifar"}}, "dataset/kind"),
    ({"dataset": {"kind": "mnist", "source": "s3"}}, "s3_prefix"),
    ({"dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "../etc/"}}, "s3_prefix"),
    ({"dataset": {"kind": "mnist", "source": "s3", "s3_prefix": "runs/other/"}}, "s3_prefix"),
    ({"dataset": {"kind": "mnist", "source": "download", "mirrors": ["http://insecure/"]}}, "mirrors"),
    ({"model": {"type": "MULTICLASS", "algorithm": "svm"}}, "algorithm"),
    ({"model": {"type": "MULTICLASS", "seed": -1}}, "seed"),
    ({"model": {"type": "MULTICLASS", "algorithm": "linear", "parameters": {"epochs": -5}}}, "epochs"),
    ({"model": {"type": "MULTICLASS", "algorithm": "linear", "parameters": {"bogus": 1}}}, "bogus"),
    ({"quality_gate": {"min_accuracy": 1.5}}, "min_accuracy"),
    ({"quality_gate": {"min_coverage": -0.1}}, "min_coverage"),
    ({"model": {"type": "MULTICLASS", "algorithm": "mlp", "parameters": {"n_classes": 10**6}}}, "n_classes"),
    ({"model": {"type": "MULTICLASS", "algorithm": "mlp", "parameters": {"seed": 1}}}, "model.seed"),
])
def test_invalid_fields_are_rejected_naming_the_field(change, message):
    with pytest.raises(TriggerRejected, match=message):
        parse({**VALID, **change})


def test_run_id_is_deterministic_and_a_valid_execution_name():
    a = trigger.run_id_for("bucket", "triggers/my demo.json", "v1")
    assert a == trigger.run_id_for("bucket", "triggers/my demo.json", "v1")
    assert a != trigger.run_id_for("bucket", "triggers/my demo.json", "v2")
    assert a.startswith("my-demo-") and len(a) <= 80
    assert trigger.run_id_for("b", "triggers/x.json", "v", label="mnist").startswith("mnist-")


def test_s3_record_keys_are_url_decoded():
    record = {"s3": {"bucket": {"name": "b"}, "object": {"key": "triggers/a+b%21.json", "eTag": "e"}}}
    assert trigger.object_from_s3_record(record) == ("b", "triggers/a b!.json", None, "e")


def test_the_version_id_names_the_run_when_the_bucket_is_versioned():
    record = {"s3": {"bucket": {"name": "b"}, "object": {"key": "k", "eTag": "e", "versionId": "v"}}}
    assert trigger.object_from_s3_record(record)[2:] == ("v", "v")


@pytest.mark.parametrize("record", [{}, {"s3": {}}, {"s3": {"bucket": {"name": "b"}, "object": {}}}, "x"])
def test_records_that_are_not_s3_object_events_are_refused(record):
    with pytest.raises(ValueError, match="not an S3 object event"):
        trigger.object_from_s3_record(record)


def test_deeply_nested_json_is_a_rejection_not_a_crash():
    with pytest.raises(TriggerRejected, match="nests too deeply"):
        trigger.parse(b"[" * 30_000 + b"]" * 30_000)  # under the size limit, over the recursion limit


def test_rejection_records_cannot_trigger_a_run_themselves():
    assert not trigger.is_trigger_key(trigger.rejection_key("triggers/x.json"))


@pytest.mark.parametrize("preset, algorithm", [("fast", "linear"), ("balanced", "mlp")])
def test_a_preset_names_its_algorithm(preset, algorithm):
    parsed = parse({**VALID, "model": {"type": "MULTICLASS", "preset": preset}})
    assert parsed["model"]["algorithm"] == algorithm


def test_no_preset_and_no_algorithm_means_balanced():
    parsed = parse({**VALID, "model": {"type": "MULTICLASS"}})
    assert (parsed["model"]["preset"], parsed["model"]["algorithm"]) == ("balanced", "mlp")


def test_preset_parameters_are_overridable_one_by_one_within_their_ranges():
    parsed = parse({**VALID, "model": {"type": "MULTICLASS", "preset": "fast", "parameters": {"epochs": 2}}})
    assert parsed["model"]["parameters"] == {"epochs": 2}
    with pytest.raises(TriggerRejected, match="epochs"):
        parse({**VALID, "model": {"type": "MULTICLASS", "preset": "fast", "parameters": {"epochs": 10**6}}})


def test_a_preset_that_contradicts_the_algorithm_is_rejected():
    with pytest.raises(TriggerRejected, match="preset 'fast' means algorithm 'linear'"):
        parse({**VALID, "model": {"type": "MULTICLASS", "preset": "fast", "algorithm": "mlp"}})


@pytest.mark.parametrize("budget", [0, -1, 901, "10"])
def test_time_budget_must_be_a_sane_number_of_seconds(budget):
    with pytest.raises(TriggerRejected, match="time_budget_seconds"):
        parse({**VALID, "model": {"type": "MULTICLASS", "time_budget_seconds": budget}})


def sagemaker_trigger(**options) -> dict:
    return {"version": "1", "dataset": {"kind": "mnist"},
            "model": {"type": "MULTICLASS", "engine": "sagemaker", "sagemaker": options}}


def test_a_managed_engine_gets_its_default_algorithm_and_options():
    model = trigger.validate(sagemaker_trigger())["model"]
    assert model["algorithm"] == "linear-learner" and "preset" not in model
    assert model["sagemaker"] == {"instance_type": "ml.m5.large", "instance_count": 1, "volume_size_gb": 10,
                                  "max_runtime_seconds": 3600, "transform_instance_type": "ml.m5.large"}


@pytest.mark.parametrize("document, message", [
    (sagemaker_trigger(max_runtime_seconds=30_000), "max_runtime_seconds"),        # beyond the poll window
    ({"version": "1", "dataset": {"kind": "mnist"}, "model": {"type": "MULTICLASS", "engine": "amazonml"}},
     "use dataset kind csv"),
    ({"version": "1", "dataset": {"kind": "mnist"},
      "model": {"type": "MULTICLASS", "engine": "sagemaker", "preset": "fast"}}, "presets name builtin algorithms"),
    ({"version": "1", "dataset": {"kind": "mnist"},
      "model": {"type": "MULTICLASS", "engine": "sagemaker", "algorithm": "mlp"}}, "runs linear-learner, xgboost"),
    ({"version": "1", "dataset": {"kind": "mnist"},
      "model": {"type": "MULTICLASS", "sagemaker": {}}}, "options for engine 'sagemaker'"),
])
def test_engine_settings_that_cannot_work_are_rejected(document, message):
    with pytest.raises(TriggerRejected, match=message):
        trigger.validate(document)
