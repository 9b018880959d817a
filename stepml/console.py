"""The Step Functions console, in a terminal: runs, a run's steps, its event history, its report.

Every function here takes boto3 clients (through a ``Target``), so the same code serves a
stack deployed on AWS, the local stack served by ``stepml local serve`` (``endpoint_url``)
and the tests. The CLI (``stepml runs | status | history | report``) only parses arguments.

A run id is the execution's name (StartRun names the execution after the run), so the run's
S3 prefix is ``runs/<execution name>/`` and its execution ARN follows from the state
machine's.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepml.runs import RUNS_PREFIX, RunPaths

DEFAULT_STACK_NAME = "stepml"          # samconfig.toml's, when there is none to read
LOCAL_STACK_NAME = "stepml-local"      # the stack `stepml local serve` registers
DEFAULT_REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BUCKET_OUTPUT, STATE_MACHINE_OUTPUT = "BucketName", "StateMachineArn"   # template.yaml's Outputs
REPORT_DIR = "report/"


class ConsoleError(RuntimeError):
    """Something the user can fix: a missing stack, no credentials, an unreachable endpoint."""


class NotFound(ConsoleError):
    """No such run, or the run has no report (yet)."""


@dataclass
class Target:
    """Where the console looks: one stack's bucket and state machine, and clients for both."""

    s3: Any
    sfn: Any
    bucket: str
    state_machine_arn: str
    stack_name: str | None = None
    endpoint_url: str | None = None
    outputs: dict = field(default_factory=dict)

    def execution_arn(self, run: str) -> str:
        """A run id names its execution; an execution ARN is accepted as it is."""
        if run.startswith("arn:"):
            return run
        prefix, marker, name = self.state_machine_arn.rpartition(":stateMachine:")
        if not marker:
            raise ConsoleError(f"not a state machine ARN: {self.state_machine_arn}")
        return f"{prefix}:execution:{name}:{run}"


# -- finding the stack ---------------------------------------------------------------------
def samconfig_defaults(path: Path | None = None) -> dict[str, str]:
    """stack_name and region from samconfig.toml (the `sam deploy` defaults), when present."""
    path = path or Path("samconfig.toml")
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    env = config.get("default", {})
    found: dict[str, str] = {}
    for section in ("global", "deploy"):  # deploy's settings win, as with `sam deploy`
        params = env.get(section, {}).get("parameters", {})
        for key in ("stack_name", "region"):
            if isinstance(params.get(key), str) and params[key]:
                found[key] = params[key]
    return found


def stack_outputs(cfn, stack_name: str) -> dict[str, str]:
    """The stack's outputs as {OutputKey: OutputValue}."""
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            raise ConsoleError(f"no CloudFormation stack {stack_name!r} in {cfn.meta.region_name} "
                               "(--stack-name, --region, --profile; --endpoint-url for a served local stack)") from err
        raise
    if not stacks:
        raise ConsoleError(f"no CloudFormation stack {stack_name!r} in {cfn.meta.region_name}")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def target_from_outputs(s3, sfn, outputs: dict[str, str], stack_name: str | None = None,
                        endpoint_url: str | None = None) -> Target:
    missing = [key for key in (BUCKET_OUTPUT, STATE_MACHINE_OUTPUT) if not outputs.get(key)]
    if missing:
        raise ConsoleError(f"stack {stack_name!r} has no output {', '.join(missing)}: is it a stepml stack?")
    return Target(s3=s3, sfn=sfn, bucket=outputs[BUCKET_OUTPUT], state_machine_arn=outputs[STATE_MACHINE_OUTPUT],
                  stack_name=stack_name, endpoint_url=endpoint_url, outputs=dict(outputs))


def connect(stack_name: str | None = None, region: str | None = None, profile: str | None = None,
            endpoint_url: str | None = None, bucket: str | None = None,
            state_machine_arn: str | None = None) -> Target:
    """Clients for the stack, and its bucket and state machine from the stack's outputs.

    AWS: the usual credential chain (``profile`` if given); the stack name and region default
    to samconfig.toml's ``stack_name`` and ``region`` (where `sam deploy` put the stack), else
    "stepml" and the profile's or environment's region, else us-east-1. With ``endpoint_url``
    (a served local stack) the calls go there instead, with dummy credentials unless the
    environment or a profile provides some; the stack name defaults to "stepml-local" and the
    region to us-east-1. ``bucket`` and
    ``state_machine_arn`` together skip CloudFormation altogether.
    """
    import boto3
    from botocore.exceptions import EndpointConnectionError

    sam = samconfig_defaults()
    stack_name = stack_name or (LOCAL_STACK_NAME if endpoint_url else sam.get("stack_name", DEFAULT_STACK_NAME))
    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except Exception as err:  # botocore.exceptions.ProfileNotFound and kin
        raise ConsoleError(str(err)) from err
    if endpoint_url:  # the served local stack lives in us-east-1, whatever the shell says
        region = region or DEFAULT_REGION
    else:  # samconfig.toml's region is where `sam deploy` put the stack
        region = region or sam.get("region") or session.region_name or DEFAULT_REGION
    kwargs: dict[str, Any] = {"region_name": region}
    if endpoint_url:
        from botocore.config import Config

        kwargs["endpoint_url"] = endpoint_url
        # a local server is there or not: fail in a second rather than after a minute of backoff
        kwargs["config"] = Config(connect_timeout=2, retries={"mode": "standard", "max_attempts": 2})
        if not profile and not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs.update(DUMMY_CREDENTIALS)  # a local endpoint takes any; never probe for real ones
    s3, sfn = session.client("s3", **kwargs), session.client("stepfunctions", **kwargs)
    if bucket and state_machine_arn:
        return Target(s3=s3, sfn=sfn, bucket=bucket, state_machine_arn=state_machine_arn,
                      stack_name=None, endpoint_url=endpoint_url)
    try:
        outputs = stack_outputs(session.client("cloudformation", **kwargs), stack_name)
    except EndpointConnectionError as err:
        raise ConsoleError(f"{err}: is `stepml local serve` running there?" if endpoint_url else str(err)) from err
    if bucket:
        outputs[BUCKET_OUTPUT] = bucket
    if state_machine_arn:
        outputs[STATE_MACHINE_OUTPUT] = state_machine_arn
    return target_from_outputs(s3, sfn, outputs, stack_name, endpoint_url)


# -- reading S3 ----------------------------------------------------------------------------
def get_json(target: Target, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return json.loads(target.s3.get_object(Bucket=target.bucket, Key=key)["Body"].read())
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    except ValueError:
        return None  # half-written or not JSON: shown as absent, never a crash


def list_keys(target: Target, prefix: str) -> list[str]:
    keys = []
    for page in target.s3.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


# -- stepml runs ---------------------------------------------------------------------------
def list_runs(target: Target, limit: int = 20, with_results: bool = True) -> list[dict]:
    """The newest executions first: name, status, start, stop, seconds, and from S3 the
    headline metrics (report.json), the estimated cost, and the failure (failure.json)."""
    if limit < 1:
        raise ValueError(f"--limit must be at least 1, not {limit}")
    executions: list[dict] = []
    kwargs: dict[str, Any] = {"stateMachineArn": target.state_machine_arn, "maxResults": min(max(limit, 1), 1000)}
    while len(executions) < limit:
        page = target.sfn.list_executions(**kwargs)
        executions += page["executions"]
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    executions.sort(key=lambda e: e["startDate"], reverse=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    runs = []
    for execution in executions[:limit]:
        start, stop = execution["startDate"], execution.get("stopDate")
        run = {
            "name": execution["name"],
            "status": execution["status"],
            "start": start.isoformat(),
            "stop": stop.isoformat() if stop else None,
            "seconds": round(((stop or now) - start).total_seconds(), 3),
            "execution_arn": execution["executionArn"],
        }
        if with_results:
            report = get_json(target, RunPaths(execution["name"]).report)
            run["metrics"] = headline_metrics(report) if report else None
            run["report_status"] = report.get("status") if report else None
            run["cost_usd"] = _cost(report)
            if execution["status"] != "SUCCEEDED" and execution["status"] != "RUNNING":
                failure = get_json(target, RunPaths(execution["name"]).failure)
                run["failure"] = ({k: failure.get(k) for k in ("failed_step", "error", "cause")}
                                  if failure else None)
        runs.append(run)
    return runs


def headline_metrics(report: dict) -> dict:
    """The numbers a run is judged by, in its model type's terms (absent ones left out)."""
    metrics = report.get("metrics") or {}
    model_type = (report.get("model") or {}).get("type")
    names = {"REGRESSION": ("RegressionRMSE", "r2"), "BINARY": ("BinaryAUC", "accuracy", "f1")}.get(
        model_type, ("accuracy", "macro_f1"))
    return {name: metrics[name] for name in names if isinstance(metrics.get(name), (int, float))}


def _cost(report: dict | None) -> float | None:
    cost = (report or {}).get("cost")
    value = cost.get("total_usd") if isinstance(cost, dict) else None
    return value if isinstance(value, (int, float)) else None


def format_metrics(metrics: dict | None) -> str:
    if not metrics:
        return ""
    labels = {"accuracy": ("accuracy", True), "macro_f1": ("macro-F1", True), "f1": ("F1", True),
              "BinaryAUC": ("AUC", False), "RegressionRMSE": ("RMSE", False), "r2": ("R²", False)}
    parts = []
    for name, value in metrics.items():
        label, percent = labels.get(name, (name, False))
        parts.append(f"{label} {100 * value:.2f}%" if percent else f"{label} {value:.4g}")
    return "  ".join(parts)


def format_runs(runs: list[dict]) -> str:
    if not runs:
        return "no executions yet"
    rows = []
    for run in runs:
        result = format_metrics(run.get("metrics"))
        if run.get("report_status") == "FAILED_QUALITY_GATE":
            result += "  (quality gate failed)"
        failure = run.get("failure")
        if failure and not result:
            result = f"{failure.get('error')} in {failure.get('failed_step')}"
        cost = run.get("cost_usd")
        rows.append([run["name"], run["status"], local_time(run["start"]), format_seconds(run["seconds"]),
                     "" if cost is None else f"${cost:.4f}", result])
    return table(["RUN", "STATUS", "STARTED", "DURATION", "EST. COST", "RESULT"], rows, right={3, 4})


# -- stepml status RUN ---------------------------------------------------------------------
def run_status(target: Target, run: str) -> dict:
    """status.json of the run, with its steps folded into one row per step, and failure.json."""
    run_id = _run_id(run)
    status = get_json(target, RunPaths(run_id).status)
    if status is None:
        raise NotFound(f"no run {run_id!r}: s3://{target.bucket}/{RunPaths(run_id).status} does not exist")
    failure = get_json(target, RunPaths(run_id).failure) if status.get("state") == "FAILED" else None
    return {"run_id": run_id, "state": status.get("state"), "step": status.get("step"),
            "started_at": status.get("started_at"), "updated_at": status.get("updated_at"),
            "code_version": status.get("code_version"),
            "steps": step_rows(status, failure), "failure": failure}


def step_rows(status: dict, failure: dict | None = None) -> list[dict]:
    """One row per step, in the order the steps first started.

    Each step writes a record when it starts and one with ``done``, ``seconds`` and
    ``memory_mb`` when it ends; a poll step that ran many times, or a retried step, is one row
    with its number of ``calls`` and their summed seconds."""
    rows: dict[str, dict] = {}
    for record in status.get("steps", []):
        name = record.get("step")
        if not name or record.get("state") in ("SUCCEEDED", "FAILED"):
            continue  # the run's closing records, not a step's
        row = rows.setdefault(name, {"step": name, "status": "RUNNING", "started_at": record.get("at"),
                                     "seconds": None, "memory_mb": None, "calls": 0})
        if record.get("done"):
            row["status"] = "DONE"
            if isinstance(record.get("seconds"), (int, float)):
                row["seconds"] = round((row["seconds"] or 0) + record["seconds"], 3)
            row["memory_mb"] = record.get("memory_mb", row["memory_mb"])
            row["calls"] = max(row["calls"], 1)
        else:
            row["status"] = "RUNNING"
            row["calls"] += 1
    state = status.get("state")
    failed = (failure or {}).get("failed_step") or (status.get("step") if state == "FAILED" else None)
    for row in rows.values():
        if state == "FAILED" and row["step"] == failed:
            row["status"] = "FAILED"
        elif state != "RUNNING" and row["status"] == "RUNNING":
            row["status"] = "FAILED" if state == "FAILED" else "ENDED"
    return list(rows.values())


def format_status(status: dict) -> str:
    started = status.get("started_at")
    lines = [f"run {status['run_id']}: {status['state']} (last step {status['step']}), "
             f"started {local_time(started) if started else '?'}, code {status.get('code_version')}"]
    origin = _parse_time(started)
    rows = []
    for row in status["steps"]:
        at = _parse_time(row["started_at"])
        offset = f"+{(at - origin).total_seconds():.2f} s" if at and origin else ""
        rows.append([row["step"], row["status"], offset,
                     "" if row["seconds"] is None else format_seconds(row["seconds"]),
                     "" if not row["memory_mb"] else f"{row['memory_mb']} MB",
                     str(row["calls"]) if row["calls"] > 1 else ""])
    lines.append(table(["STEP", "STATUS", "STARTED", "DURATION", "MEMORY", "CALLS"], rows, right={2, 3, 4, 5}))
    failure = status.get("failure")
    if failure:
        lines.append(f"failed in {failure.get('failed_step')}: {failure.get('error')}: {failure.get('cause')}")
    return "\n".join(lines)


# -- stepml history RUN --------------------------------------------------------------------
def execution_history(target: Target, run: str) -> list[dict]:
    """Every event of the execution, oldest first, paginated as the API requires."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"executionArn": target.execution_arn(run), "maxResults": 1000}
    events: list[dict] = []
    while True:
        try:
            page = target.sfn.get_execution_history(**kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                raise NotFound(f"no execution {run!r} of {target.state_machine_arn}") from err
            raise
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def history_rows(events: list[dict]) -> list[dict]:
    """The console's event table: id, type, step, time since the execution started, detail."""
    step_of: dict[int, str] = {}
    origin = events[0]["timestamp"] if events else None
    rows = []
    for event in events:
        details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        if event["type"].endswith(("StateEntered", "StateExited")):
            step = details.get("name", "")
        elif event["type"].startswith("Execution"):
            step = ""
        else:
            step = step_of.get(event.get("previousEventId", 0), "")
        step_of[event["id"]] = step
        rows.append({"id": event["id"], "type": event["type"], "step": step,
                     "elapsed_ms": int(round((event["timestamp"] - origin).total_seconds() * 1000)),
                     "timestamp": event["timestamp"].isoformat(), "detail": event_detail(event["type"], details)})
    return rows


def event_detail(kind: str, details: dict) -> str:
    if "error" in details or "cause" in details:
        return _short(f"{details.get('error', '')}: {cause_message(details.get('cause') or '')}".strip(": "))
    if kind == "LambdaFunctionScheduled":
        return details.get("resource", "").rpartition(":function:")[2]
    if kind == "ExecutionStarted":
        try:
            trigger = json.loads(details.get("input") or "{}").get("trigger", {})
        except ValueError:
            return ""
        return f"trigger {trigger.get('key')}" if isinstance(trigger, dict) and trigger.get("key") else ""
    return ""


def format_history(rows: list[dict]) -> str:
    return table(["ID", "TYPE", "STEP", "ELAPSED", "DETAIL"],
                 [[str(r["id"]), r["type"], r["step"], f"{r['elapsed_ms']} ms", r["detail"]] for r in rows],
                 right={0, 3})


# -- stepml report RUN ---------------------------------------------------------------------
def fetch_report(target: Target, run: str, out: Path, warn: Callable[[str], None] | None = None) -> dict:
    """Copy runs/<id>/report/ (report.json; report.html and the charts when the run made them)
    to <out>/<id>/report/, replacing what an earlier fetch left there.

    Whoever can write under runs/ chooses the keys, so a key is copied only when it passes
    ``storage.check_key`` (no '.', '..', empty segments, backslashes or control characters)
    and its file lands inside <out>/<id>/report/; any other is skipped, named to ``warn``
    (stderr by default) and listed under "skipped"."""
    from stepml.storage import check_key

    warn = warn or _warn
    run_id = _run_id(run)
    prefix = RunPaths(run_id).key(REPORT_DIR)
    keys = list_keys(target, prefix)
    if not keys:
        status = get_json(target, RunPaths(run_id).status)
        if status is None:
            raise NotFound(f"no run {run_id!r} in s3://{target.bucket}/{RUNS_PREFIX}")
        why = f"the run is {status.get('state')}"
        failure = get_json(target, RunPaths(run_id).failure)
        if failure:
            why += f": {failure.get('error')} in {failure.get('failed_step')}"
        raise NotFound(f"run {run_id} has no report ({why})")
    destination = Path(out) / run_id / "report"
    root = destination.resolve()
    files, skipped = [], []
    for key in sorted(keys):
        relative = key[len(prefix):] if key.startswith(prefix) else ""
        if not relative or relative.endswith("/"):
            continue  # the prefix itself, or a "folder" marker
        try:
            check_key(key)
            path = destination / relative
            local = path.resolve()
            if not local.is_relative_to(root) or local == root:
                raise ValueError(f"S3 key {key!r} would be written outside {destination}")
        except ValueError as err:
            warn(f"warning: report file skipped (s3://{target.bucket}): {err}")
            skipped.append(key)
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        target.s3.download_file(target.bucket, key, str(local))
        files.append(path)
    report_json = destination / "report.json"
    report = json.loads(report_json.read_text()) if report_json.is_file() else None
    html = destination / "report.html"
    return {"run_id": run_id, "dir": str(destination), "files": [str(p) for p in files], "skipped": skipped,
            "html": str(html) if html.is_file() else None,
            "metrics": headline_metrics(report) if report else None,
            "status": report.get("status") if report else None, "cost_usd": _cost(report)}


def format_report(fetched: dict) -> str:
    lines = [f"report of {fetched['run_id']} ({fetched['status'] or 'no report.json'}): "
             f"{len(fetched['files'])} file(s) in {fetched['dir']}/"]
    lines += [f"  {Path(p).relative_to(fetched['dir']).as_posix()}" for p in fetched["files"]]
    if fetched.get("skipped"):
        lines.append(f"skipped {len(fetched['skipped'])} file(s) whose S3 keys could leave {fetched['dir']}/")
    if fetched["metrics"]:
        cost = fetched.get("cost_usd")
        lines.append(format_metrics(fetched["metrics"]) + ("" if cost is None else f"   est. cost ${cost:.4f}"))
    lines.append(f"open {fetched['html']}" if fetched["html"] else "no report.html in this run (report.json only)")
    return "\n".join(lines)


def open_report(fetched: dict, opener=None) -> bool:
    """Open report.html in the default browser; False when the run has none."""
    if not fetched["html"]:
        return False
    import webbrowser

    return bool((opener or webbrowser.open)(Path(fetched["html"]).resolve().as_uri()))


# -- formatting ----------------------------------------------------------------------------
def table(headers: list[str], rows: Iterable[list[str]], right: set[int] = frozenset()) -> str:
    """Aligned columns, two spaces apart; columns in ``right`` are right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def local_time(iso: str) -> str:
    parsed = _parse_time(iso)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else str(iso)


def _parse_time(value) -> _dt.datetime | None:
    if isinstance(value, _dt.datetime):
        return value
    try:
        return _dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def cause_message(cause: str) -> str:
    """Lambda errors arrive as a JSON string with errorMessage; keep the message, drop the stack."""
    try:
        message = json.loads(cause).get("errorMessage", cause)
    except (ValueError, AttributeError):
        return cause
    return message if isinstance(message, str) else cause


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_id(run: str) -> str:
    """A run id, or the execution ARN whose name is one."""
    run_id = run.rpartition(":")[2] if run.startswith("arn:") else run
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ConsoleError(f"not a run id: {run!r}")
    return run_id


def to_json(value) -> str:
    return json.dumps(value, indent=2, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else str(o))
