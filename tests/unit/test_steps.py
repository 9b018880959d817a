"""The poll loops are bounded: the check step itself ends a job that never finishes."""

import pytest

from stepml import steps
from stepml.errors import PollTimeout


def test_an_unfinished_job_is_polled_again_with_a_wait():
    state = steps._poll_state({"job_id": "j", "status": "IN_PROGRESS"}, polls=3)
    assert state["polls"] == 3 and state["wait_seconds"] > 0


def test_an_unfinished_job_fails_after_the_last_allowed_poll():
    with pytest.raises(PollTimeout, match="j not finished after"):
        steps._poll_state({"job_id": "j", "status": "IN_PROGRESS"}, polls=steps.MAX_POLLS)


def test_a_finished_job_is_never_a_timeout():
    assert steps._poll_state({"job_id": "j", "status": "COMPLETED"}, polls=steps.MAX_POLLS)["status"] == "COMPLETED"


def test_training_budget_is_the_lambda_clock_minus_a_reserve_capped_by_the_trigger():
    reserve = steps.TRAINING_RESERVE_SECONDS
    assert steps.training_budget(None, None) is None
    assert steps.training_budget(None, 900) == 900 - reserve
    assert steps.training_budget(30, 900) == 30
    assert steps.training_budget(600, reserve + 5) == 5
    assert steps.training_budget(None, 10) == 1.0  # almost out of time: one short try, not a crash


def test_poll_waits_grow_by_half_to_a_cap_and_the_longest_wait_is_bounded():
    waits = [steps.poll_wait_seconds(p) for p in range(steps.MAX_POLLS)]
    assert waits[:4] == [10, 15, 22, 33]
    assert all(b >= a for a, b in zip(waits, waits[1:])) and max(waits) == steps.POLL_MAX_SECONDS
    assert 6 * 3600 < sum(waits) < 12 * 3600       # a managed job may take hours, not days


def test_a_poll_timeout_stops_the_engines_job_before_failing(monkeypatch):
    """The run fails at the timeout; a managed job must not keep running (and billing) after it."""
    stopped = []

    class Engine:
        def describe_training(self, job):
            return {"job_id": job["job_id"], "status": "IN_PROGRESS"}

        def stop_training(self, job):
            stopped.append(job["job_id"])

    monkeypatch.setattr(steps, "get_engine", lambda name, storage: Engine())
    monkeypatch.setattr(steps, "load_run_trigger", lambda storage, run_id: {"model": {"engine": "sagemaker"}})
    event = {"run_id": "r1", "training": {"job_id": "j", "status": "IN_PROGRESS", "polls": steps.MAX_POLLS - 1}}
    with pytest.raises(PollTimeout):
        steps.check_training(event, storage=None)
    assert stopped == ["j"]
    # an engine without a stop (builtin, amazonml) just times out
    monkeypatch.setattr(Engine, "stop_training", None)
    with pytest.raises(PollTimeout):
        steps.check_training(event, storage=None)
