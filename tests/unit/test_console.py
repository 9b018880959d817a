"""The console's pure parts: folding status.json into step rows, the event table, pagination,
tables, and where the stack is looked for."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from stepml import console

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def at(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat()


def test_step_rows_fold_polls_and_retries_into_one_row_each():
    status = {"state": "SUCCEEDED", "steps": [
        {"step": "StartRun", "state": "RUNNING", "at": at(0), "done": True},
        {"step": "Train", "state": "RUNNING", "at": at(1)},
        {"step": "Train", "state": "RUNNING", "at": at(2)},  # a retry: started twice
        {"step": "Train", "state": "RUNNING", "at": at(9), "done": True, "seconds": 7.0, "memory_mb": 3008},
        *[record for poll in range(3) for record in (
            {"step": "CheckTraining", "state": "RUNNING", "at": at(10 + poll)},
            {"step": "CheckTraining", "state": "RUNNING", "at": at(10.1 + poll), "done": True, "seconds": 0.1,
             "memory_mb": 256})],
        {"step": "Score", "state": "SUCCEEDED", "at": at(20)},
    ]}
    rows = {r["step"]: r for r in console.step_rows(status)}
    assert list(rows) == ["StartRun", "Train", "CheckTraining"]
    assert rows["Train"] == {"step": "Train", "status": "DONE", "started_at": at(1), "seconds": 7.0,
                             "memory_mb": 3008, "calls": 2}
    assert rows["CheckTraining"]["calls"] == 3 and rows["CheckTraining"]["seconds"] == pytest.approx(0.3)
    text = console.format_status({"run_id": "r", "state": "SUCCEEDED", "step": "Score", "started_at": at(0),
                                  "code_version": "0.1.0", "steps": list(rows.values()), "failure": None})
    train = next(line for line in text.splitlines() if line.startswith("Train"))
    assert "+1.00 s" in train and "7.00 s" in train and "3008 MB" in train and train.endswith("2")


def test_step_rows_mark_the_failed_step():
    status = {"state": "FAILED", "step": "Train", "steps": [
        {"step": "PrepareData", "state": "RUNNING", "at": at(0)},
        {"step": "PrepareData", "state": "RUNNING", "at": at(1), "done": True, "seconds": 1.0},
        {"step": "Train", "state": "RUNNING", "at": at(1)},
        {"step": "Train", "state": "FAILED", "at": at(5), "failure": "runs/r/failure.json"},
    ]}
    rows = console.step_rows(status, {"failed_step": "Train", "error": "TrainingFailed"})
    assert [(r["step"], r["status"]) for r in rows] == [("PrepareData", "DONE"), ("Train", "FAILED")]


class Pages:
    """A client method that answers page by page and records what it was asked."""

    def __init__(self, key, pages):
        self.key, self.pages, self.calls = key, pages, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        index = int(kwargs.get("nextToken", 0))
        page = {self.key: self.pages[index]}
        if index + 1 < len(self.pages):
            page["nextToken"] = str(index + 1)
        return page


def event(event_id, kind, seconds, previous=0, **details):
    return {"id": event_id, "type": kind, "timestamp": T0 + dt.timedelta(seconds=seconds),
            "previousEventId": previous, **details}


def target_with(sfn=None, s3=None):
    return console.Target(s3=s3, sfn=sfn, bucket="b",
                          state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:m")


def test_history_follows_next_tokens_and_names_each_events_step():
    events = [
        event(1, "ExecutionStarted", 0, executionStartedEventDetails={
            "input": '{"trigger": {"key": "triggers/t.json"}}'}),
        event(2, "TaskStateEntered", 0.01, 1, stateEnteredEventDetails={"name": "Train"}),
        event(3, "LambdaFunctionScheduled", 0.02, 2, lambdaFunctionScheduledEventDetails={
            "resource": "arn:aws:lambda:us-east-1:123456789012:function:stack-TrainFunction"}),
        event(4, "LambdaFunctionFailed", 1.5, 3, lambdaFunctionFailedEventDetails={
            "error": "TrainingFailed", "cause": '{"errorMessage": "diverged", "stackTrace": ["..."]}'}),
        event(5, "TaskStateExited", 1.6, 4, stateExitedEventDetails={"name": "Train"}),
        event(6, "ExecutionFailed", 1.7, 5, executionFailedEventDetails={"error": "TrainingFailed"}),
    ]
    history = Pages("events", [events[:2], events[2:4], events[4:]])
    sfn = type("Sfn", (), {"get_execution_history": history})()
    got = console.execution_history(target_with(sfn), "run-1")
    assert got == events and len(history.calls) == 3
    assert history.calls[0]["executionArn"] == "arn:aws:states:us-east-1:123456789012:execution:m:run-1"
    rows = console.history_rows(got)
    assert [(r["step"], r["elapsed_ms"], r["detail"]) for r in rows] == [
        ("", 0, "trigger triggers/t.json"), ("Train", 10, ""), ("Train", 20, "stack-TrainFunction"),
        ("Train", 1500, "TrainingFailed: diverged"), ("Train", 1600, ""), ("", 1700, "TrainingFailed")]
    table = console.format_history(rows).splitlines()
    assert table[0].split() == ["ID", "TYPE", "STEP", "ELAPSED", "DETAIL"]
    assert len({line.index("ms") for line in table[1:]}) == 1  # ELAPSED right-aligned


def test_runs_stop_paging_once_the_limit_is_reached():
    def execution(i):
        start = T0 + dt.timedelta(minutes=i)
        return {"name": f"run-{i}", "status": "SUCCEEDED", "startDate": start,
                "stopDate": start + dt.timedelta(seconds=3), "executionArn": f"arn:...:run-{i}"}

    listing = Pages("executions", [[execution(9), execution(8)], [execution(7), execution(6)], [execution(5)]])
    sfn = type("Sfn", (), {"list_executions": listing})()
    runs = console.list_runs(target_with(sfn), limit=3, with_results=False)
    assert [r["name"] for r in runs] == ["run-9", "run-8", "run-7"] and len(listing.calls) == 2
    assert runs[0]["seconds"] == 3.0


def test_table_aligns_columns_and_formats_durations():
    text = console.table(["A", "NUM"], [["x", "1"], ["longer", "100"]], right={1})
    assert text.splitlines() == ["A       NUM", "x         1", "longer  100"]
    assert [console.format_seconds(s) for s in (0.123, 12.34, 125, 3725)] == ["0.12 s", "12.3 s", "2m 05s", "1h 02m"]


def test_headline_metrics_follow_the_model_type():
    assert console.headline_metrics({"model": {"type": "REGRESSION"}, "metrics": {"RegressionRMSE": 1.5, "r2": 0.8,
                                                                                  "accuracy": 1}}) == {
        "RegressionRMSE": 1.5, "r2": 0.8}
    binary = {"model": {"type": "BINARY"}, "metrics": {"BinaryAUC": None, "accuracy": 0.9, "f1": 0.8}}
    assert console.format_metrics(console.headline_metrics(binary)) == "accuracy 90.00%  F1 80.00%"


def test_a_report_without_html_is_said_so_and_not_opened(tmp_path):
    fetched = {"run_id": "r-1", "dir": str(tmp_path), "files": [str(tmp_path / "report.json")], "html": None,
               "metrics": {"accuracy": 0.9}, "status": "SUCCEEDED", "cost_usd": None}
    assert not console.open_report(fetched, opener=pytest.fail)
    assert "no report.html in this run (report.json only)" in console.format_report(fetched)


def test_samconfig_gives_the_stack_name_and_region(tmp_path):
    path = tmp_path / "samconfig.toml"
    path.write_text('version = 0.1\n[default.global.parameters]\nstack_name = "mine"\n'
                    '[default.deploy.parameters]\nregion = "eu-west-1"\n')
    assert console.samconfig_defaults(path) == {"stack_name": "mine", "region": "eu-west-1"}
    assert console.samconfig_defaults(tmp_path / "missing.toml") == {}
    path.write_text("not toml [")
    assert console.samconfig_defaults(path) == {}


@pytest.mark.parametrize("bad", ["", "a/b", "..", "arn:aws:states:us-east-1:1:execution:m:"])
def test_run_ids_that_could_leave_runs_are_refused(bad):
    with pytest.raises(console.ConsoleError):
        console.run_status(target_with(), bad)


def test_a_local_stack_hides_exported_endpoints_while_it_runs(monkeypatch):
    from stepml.local.serve import without_endpoint_overrides

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:5000")
    with without_endpoint_overrides():
        assert not [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5000"


def test_serve_prints_each_execution_once_when_it_starts_and_once_when_it_ends():
    from stepml.local.serve import watch_executions

    listing = {"executions": [{"name": "r-1", "status": "RUNNING", "startDate": T0}]}
    sfn = type("Sfn", (), {"list_executions": lambda self, **kwargs: listing})()
    seen: dict[str, str] = {}
    assert watch_executions(sfn, "arn", seen, "http://127.0.0.1:5000") == ["execution r-1 started"]
    assert watch_executions(sfn, "arn", seen, "http://127.0.0.1:5000") == []
    listing["executions"][0].update(status="FAILED", stopDate=T0 + dt.timedelta(seconds=2.5))
    assert watch_executions(sfn, "arn", seen, "http://127.0.0.1:5000") == [
        "execution r-1 FAILED in 2.5 s: stepml status r-1 --endpoint-url http://127.0.0.1:5000"]
    assert watch_executions(sfn, "arn", seen, "http://127.0.0.1:5000") == []


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:5000", "localhost", "LOCALHOST:5000", "[::1]", "[::1]:80", "my-bucket.localhost:5000",
    "a.b.localhost", "my-bucket.127.0.0.1:5000"])
def test_serve_answers_hosts_that_name_the_loopback(host):
    from stepml.local.serve import host_allowed

    assert host_allowed(host, ("127.0.0.1", "127.0.0.1"))


@pytest.mark.parametrize("host", [
    "", "evil.example", "evil.example:5000", "127.0.0.1.evil.example", "localhost.evil.example", "evil.localhost.com",
    "localhost:5000x", "localhost:", "::1", "[::1", "[evil.example]", "10.0.0.5:5000", "127.0.0.2",
    ".localhost", "-x.localhost", "127.0.0.1:5000@evil.example"])
def test_serve_refuses_other_hosts_which_is_what_dns_rebinding_sends(host):
    from stepml.local.serve import host_allowed

    assert not host_allowed(host, ("127.0.0.1", "127.0.0.1"))


def test_serve_also_answers_the_address_it_is_bound_to_and_any_ip_when_bound_to_all():
    from stepml.local.serve import host_allowed

    assert host_allowed("10.0.0.5:5000", ("10.0.0.5", "10.0.0.5"))
    assert not host_allowed("10.0.0.6:5000", ("10.0.0.5", "10.0.0.5"))
    assert host_allowed("[fe80::1]:5000", ("fe80::1", "fe80::1"))
    assert host_allowed("192.168.1.20:5000", ("0.0.0.0", "0.0.0.0"))
    assert host_allowed("[2001:db8::1]:5000", ("::", "::"))
    assert not host_allowed("evil.example:5000", ("0.0.0.0", "0.0.0.0"))  # a name still has to be the loopback's


def test_serve_gives_403_to_a_host_it_does_not_answer_and_passes_the_rest_to_moto():
    from stepml.local.serve import HostAllowList

    calls = []

    def app(environ, start_response):
        calls.append(environ["HTTP_HOST"])
        start_response("200 OK", [])
        return [b"moto"]

    guarded = HostAllowList(app, ("127.0.0.1",))
    statuses = []
    assert guarded({"HTTP_HOST": "localhost:5000"}, lambda status, headers: statuses.append(status)) == [b"moto"]
    body = b"".join(guarded({"HTTP_HOST": "evil.example:5000"}, lambda status, headers: statuses.append(status)))
    assert statuses == ["200 OK", "403 Forbidden"] and calls == ["localhost:5000"]
    assert b"DNS rebinding" in body and b"'evil.example:5000'" in body
    assert b"".join(guarded({}, lambda status, headers: statuses.append(status))).startswith(b"403")


def test_serve_quiets_only_the_threads_it_abandons_and_gives_the_excepthook_back(monkeypatch):
    import threading

    from stepml.local.serve import leftover_threads_quieted

    reported = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.thread.name))
    previous = threading.excepthook
    release = threading.Event()
    before = threading.Thread(target=lambda: (release.wait(5), 1 / 0), name="before", daemon=True)
    before.start()
    with leftover_threads_quieted() as quiet:
        assert threading.excepthook is previous  # nothing changes until serve abandons an execution
        quiet()
        abandoned = threading.Thread(target=lambda: 1 / 0, name="abandoned")
        abandoned.start()
        abandoned.join()
        release.set()
        before.join()
        assert reported == ["before"]  # a thread serve did not start is reported as ever
    assert threading.excepthook is previous
    after = threading.Thread(target=lambda: 1 / 0, name="after")
    after.start()
    after.join()
    assert reported == ["before", "after"]
