"""How the local runner follows an execution (stepml.local.runner.follow_execution): every
new event printed once, and polls that back off while nothing happens, since each one takes
the GIL from the Lambdas running in the same process."""

import datetime as dt

import pytest

import stepml.local.runner as runner


class ScriptedExecution:
    """A Step Functions client whose execution's history grows by a script: one list of new
    events per poll; the execution ends after the last."""

    def __init__(self, script):
        self.script, self.polls, self.events = script, 0, []

    def describe_execution(self, executionArn):
        if self.polls < len(self.script):
            self.events += self.script[self.polls]
        self.polls += 1
        return {"status": "RUNNING" if self.polls < len(self.script) else "SUCCEEDED"}

    def get_execution_history(self, executionArn, maxResults, nextToken=None):
        return {"events": list(self.events)}


def entered(name, second):
    return {"type": "TaskStateEntered", "timestamp": dt.datetime.fromtimestamp(second, dt.timezone.utc),
            "stateEnteredEventDetails": {"name": name}}


def exited(name, second):
    return {"type": "TaskStateExited", "timestamp": dt.datetime.fromtimestamp(second, dt.timezone.utc),
            "stateExitedEventDetails": {"name": name}}


def test_polls_back_off_while_a_state_runs_and_speed_up_after_each_event(monkeypatch):
    waits, said = [], []
    monkeypatch.setattr(runner.time, "sleep", waits.append)
    script = [[entered("Train", 0)], [], [], [], [], [], [], [exited("Train", 9), entered("Score", 9)], [],
              [exited("Score", 12)]]
    events = runner.follow_execution(ScriptedExecution(script), "arn", said.append)
    assert said == ["  -> Train", "  <- Train    9.00 s", "  -> Score", "  <- Score    3.00 s"]
    assert len(events) == 4
    first = runner.POLL_SECONDS
    assert waits[0] == first                                    # after a new event: soon
    assert waits[1:4] == pytest.approx([1.5 * first, 1.5 ** 2 * first, 1.5 ** 3 * first])  # quiet: longer
    assert waits[4:7] == [runner.POLL_MAX_SECONDS] * 3           # ... up to the cap
    assert waits[7] == first and waits[8] == pytest.approx(1.5 * first)  # Score entered: soon again
    assert len(waits) == len(script) - 1                        # none after the end
