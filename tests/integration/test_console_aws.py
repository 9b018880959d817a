"""The console commands in AWS mode, against moto: a CloudFormation stack (in a region other
than the default) whose outputs name the bucket and state machine as template.yaml's do, found
through describe_stacks, then the same S3 and Step Functions calls as on AWS."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from stepml import console
from stepml.cli import main

DEFINITION = json.dumps({"StartAt": "Score", "States": {
    "Score": {"Type": "Pass", "Next": "RunSucceeded"}, "RunSucceeded": {"Type": "Succeed"}}})


def aws_template(state_machine_arn: str) -> dict:
    """The bucket as a stack resource; the state machine's ARN as a plain output value (moto's
    CloudFormation creates state machines in a backend its ASL interpreter does not run)."""
    return {
        "Resources": {"DataBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {  # as template.yaml names them
            "BucketName": {"Value": {"Ref": "DataBucket"}},
            "StateMachineArn": {"Value": state_machine_arn},
            "StateMachineName": {"Value": state_machine_arn.rpartition(":")[2]},
        },
    }


REGION = "eu-west-1"


@pytest.fixture
def aws(tmp_path, monkeypatch):
    """A deployed stack on moto, in a region that is not the default, with one finished run."""
    monkeypatch.chdir(tmp_path)  # no samconfig.toml here unless a test writes one
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="stepml-prod-pipeline", definition=DEFINITION,
                                           roleArn="arn:aws:iam::123456789012:role/stepml-prod-role")
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(StackName="stepml-prod", TemplateBody=json.dumps(aws_template(machine["stateMachineArn"])))
        outputs = {o["OutputKey"]: o["OutputValue"]
                   for o in cfn.describe_stacks(StackName="stepml-prod")["Stacks"][0]["Outputs"]}
        s3 = boto3.client("s3", region_name=REGION)
        bucket, arn = outputs["BucketName"], outputs["StateMachineArn"]
        run_id = "mnist-fast-0123456789abcdef"
        execution = sfn.start_execution(stateMachineArn=arn, name=run_id, input=json.dumps({"run_id": run_id}))
        deadline = time.monotonic() + 10
        while sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        at = "2026-01-01T00:00:0{}.000+00:00"
        status = {"run_id": run_id, "state": "SUCCEEDED", "step": "Score", "started_at": at.format(0),
                  "updated_at": at.format(3), "code_version": "0.1.0", "steps": [
                      {"step": "StartRun", "state": "RUNNING", "at": at.format(0), "done": True},
                      {"step": "Score", "state": "RUNNING", "at": at.format(1)},
                      {"step": "Score", "state": "RUNNING", "at": at.format(2), "done": True,
                       "seconds": 1.25, "memory_mb": 1024},
                      {"step": "Score", "state": "SUCCEEDED", "at": at.format(3)}]}
        report = {"run_id": run_id, "status": "SUCCEEDED", "model": {"type": "MULTICLASS"},
                  "metrics": {"accuracy": 0.9247, "macro_f1": 0.9236}, "cost": {"total_usd": 0.0005}}
        s3.put_object(Bucket=bucket, Key=f"runs/{run_id}/status.json", Body=json.dumps(status))
        s3.put_object(Bucket=bucket, Key=f"runs/{run_id}/report/report.json", Body=json.dumps(report))
        yield {"bucket": bucket, "arn": arn, "run_id": run_id, "s3": s3}


def test_aws_mode_finds_the_stack_by_its_outputs_and_runs_every_command(aws, tmp_path, capsys):
    run_id = aws["run_id"]
    where = ["--stack-name", "stepml-prod", "--region", REGION]

    assert main(["runs", *where]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith(run_id))
    assert "SUCCEEDED" in line and "accuracy 92.47%" in line and "$0.0005" in line

    assert main(["status", run_id, *where]) == 0
    printed = capsys.readouterr().out
    assert "SUCCEEDED" in printed and "1.25 s" in printed and "1024 MB" in printed

    assert main(["history", run_id, *where, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert events[0]["type"] == "ExecutionStarted" and events[-1]["type"] == "ExecutionSucceeded"
    assert {"PassStateEntered", "SucceedStateEntered"} <= {e["type"] for e in events}

    assert main(["report", run_id, *where, "--out", str(tmp_path / "out"), "--open"]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "out" / run_id / "report/report.json").is_file()
    assert "no report.html" in captured.out and "nothing to open" in captured.err


def test_aws_mode_takes_the_stack_name_from_samconfig(aws, tmp_path, capsys):
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "stepml-prod"\n'
        f'[default.deploy.parameters]\nregion = "{REGION}"\n')
    target = console.connect()
    assert (target.stack_name, target.bucket, target.state_machine_arn) == ("stepml-prod", aws["bucket"], aws["arn"])


def test_aws_mode_report_html_and_charts_come_along(aws, tmp_path):
    run_id, s3 = aws["run_id"], aws["s3"]
    for name in ("report.html", "charts/confusion_matrix.png"):
        s3.put_object(Bucket=aws["bucket"], Key=f"runs/{run_id}/report/{name}", Body=b"x")
    fetched = console.fetch_report(console.connect("stepml-prod", REGION), run_id, tmp_path)
    assert fetched["html"] == str(tmp_path / run_id / "report/report.html")
    assert (tmp_path / run_id / "report/charts/confusion_matrix.png").is_file()


def test_aws_mode_without_the_stack_is_a_clear_error(aws, capsys):
    assert main(["runs", "--stack-name", "nope", "--region", REGION]) == 2
    assert "no CloudFormation stack 'nope' in eu-west-1" in capsys.readouterr().err
    # the default stack, "stepml" (no samconfig.toml here), is not there either
    assert main(["runs", "--region", REGION]) == 2
    assert "'stepml'" in capsys.readouterr().err


def test_bucket_and_state_machine_given_skip_cloudformation(aws, capsys):
    assert main(["runs", "--region", REGION, "--stack-name", "nope",
                 "--bucket", aws["bucket"], "--state-machine-arn", aws["arn"]]) == 0
    assert aws["run_id"] in capsys.readouterr().out


def test_report_keys_that_would_leave_out_are_skipped_with_a_warning(aws, tmp_path, capsys):
    """Whoever can write under runs/ names the keys: an empty segment (an absolute path once
    joined), '..' or a backslash must not put a file outside --out; the report still arrives."""
    run_id, s3, bucket = aws["run_id"], aws["s3"], aws["bucket"]
    prefix = f"runs/{run_id}/report/"
    outside = tmp_path / "outside"
    out = tmp_path / "out"
    hostile = [
        prefix + "/" + str(outside / "escaped.txt").lstrip("/"),  # report//<absolute path>
        prefix + "../../../outside/dotdot.txt",
        prefix + "..\\..\\..\\outside\\backslash.txt",
        prefix + "charts/./dot.txt",
    ]
    for key in hostile:
        s3.put_object(Bucket=bucket, Key=key, Body=b"pwned")
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert set(hostile) <= listed  # stored as written: the console is what must refuse them
    s3.put_object(Bucket=bucket, Key=prefix + "report.html", Body=b"<html></html>")
    s3.put_object(Bucket=bucket, Key=prefix + "charts/confusion_matrix.png", Body=b"\x89PNG")

    code = main(["report", run_id, "--stack-name", "stepml-prod", "--region", REGION, "--out", str(out)])
    captured = capsys.readouterr()

    assert not outside.exists(), list(outside.rglob("*"))
    assert code == 0, captured.err
    assert not list(tmp_path.rglob("*.txt")), list(tmp_path.rglob("*"))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [f"{run_id}/report/charts/confusion_matrix.png", f"{run_id}/report/report.html",
                       f"{run_id}/report/report.json"]
    assert captured.err.count("warning: report file skipped") == len(hostile), captured.err
    assert f"skipped {len(hostile)} file(s)" in captured.out

    fetched = console.fetch_report(console.connect("stepml-prod", REGION), run_id, out, warn=lambda _: None)
    assert sorted(fetched["skipped"]) == sorted(hostile) and fetched["html"]


def test_report_files_are_never_written_through_a_symlink_out_of_the_folder(aws, tmp_path):
    run_id, s3 = aws["run_id"], aws["s3"]
    s3.put_object(Bucket=aws["bucket"], Key=f"runs/{run_id}/report/charts/c.png", Body=b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    report_dir = tmp_path / "out" / run_id / "report"
    report_dir.mkdir(parents=True)
    (report_dir / "charts").symlink_to(outside, target_is_directory=True)  # left by someone, or an earlier fetch
    warnings = []
    fetched = console.fetch_report(console.connect("stepml-prod", REGION), run_id, tmp_path / "out",
                                   warn=warnings.append)
    assert not list(outside.iterdir())
    assert fetched["skipped"] == [f"runs/{run_id}/report/charts/c.png"] and len(warnings) == 1
    assert (report_dir / "report.json").is_file()
