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
