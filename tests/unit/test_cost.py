"""The cost estimate: each line is quantity x the price table's unit price, and engines add
their own service's bill from the figures the service reported."""

import pytest

from stepml import cost


def steps(*pairs):
    return [{"step": name, "seconds": seconds, "memory_mb": memory} for name, seconds, memory in pairs]


def line(report, prefix):
    [found] = [line for line in report["lines"] if line["item"].startswith(prefix)]
    return found


def test_lambda_gb_seconds_come_from_measured_durations_and_memory():
    report = cost.estimate(steps(("Train", 10.0, 3008), ("Score", 2.0, 1024)) + [{"step": "StartRun"}],
                           polls=0, s3_puts=0, s3_gets=0)
    compute = line(report, "Lambda compute")
    assert compute["quantity"] == pytest.approx(10 * 3008 / 1024 + 2)
    assert compute["usd"] == pytest.approx(compute["quantity"] * cost.PRICES["lambda_gb_second_arm64"])
    assert line(report, "Lambda requests")["quantity"] == 4


def test_every_poll_adds_three_transitions_and_a_small_lambda():
    quiet = cost.estimate([], polls=0, s3_puts=0, s3_gets=0)
    polled = cost.estimate([], polls=10, s3_puts=0, s3_gets=0)
    assert line(polled, "Step Functions")["quantity"] - line(quiet, "Step Functions")["quantity"] == 30
    assert line(polled, "Lambda compute")["quantity"] > line(quiet, "Lambda compute")["quantity"]


def test_the_total_is_the_sum_of_the_lines():
    report = cost.estimate(steps(("Train", 1.0, 1024)), polls=2, s3_puts=40, s3_gets=70)
    assert report["total_usd"] == pytest.approx(sum(line["usd"] for line in report["lines"]), abs=1e-6)
    assert report["complete"] and "us-east-1" in report["prices"]


def test_sagemaker_bills_instance_hours_of_training_and_transform():
    report = cost.estimate([], polls=0, s3_puts=0, s3_gets=0, engine="sagemaker",
                           training={"cost_facts": {"instance_type": "ml.m5.large", "instance_count": 2, "instance_seconds": 3600}},
                           prediction={"cost_facts": {"instance_type": "ml.m5.xlarge", "instance_count": 1, "instance_seconds": 360}})
    training = line(report, "SageMaker training")
    assert training["quantity"] == pytest.approx(1.0) and training["usd"] == pytest.approx(0.115)
    assert line(report, "SageMaker batch transform")["usd"] == pytest.approx(0.1 * 0.23)


def test_an_instance_type_without_a_price_leaves_the_estimate_incomplete_not_wrong():
    report = cost.estimate([], polls=0, s3_puts=0, s3_gets=0, engine="sagemaker",
                           training={"cost_facts": {"instance_type": "ml.p5.48xlarge", "instance_count": 1, "instance_seconds": 60}})
    assert line(report, "SageMaker training")["usd"] is None and not report["complete"]


def test_amazon_ml_bills_compute_hours_and_predictions_at_its_published_prices():
    report = cost.estimate([], polls=0, s3_puts=0, s3_gets=0, engine="amazonml",
                           training={"cost_facts": {"compute_time_ms": 2 * 3_600_000}},
                           prediction={"cost_facts": {"compute_time_ms": 0, "total_record_count": 10_000}})
    assert line(report, "Amazon ML compute")["usd"] == pytest.approx(0.84)
    assert line(report, "Amazon ML batch predictions")["usd"] == pytest.approx(1.00)
