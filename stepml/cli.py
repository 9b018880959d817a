"""The stepml command line.

    stepml local run TRIGGER.json [--put LOCAL_PATH:S3_KEY ...] [--out DIR]
    stepml local serve [--host 127.0.0.1] [--port N] [--mnist-dir DIR]
    stepml demo [--preset fast|balanced|accurate] [--mnist-dir DIR] [--out DIR]
    stepml demo --amazonml-2016 [--mnist-dir DIR] [--out DIR]
    stepml runs | status RUN | history RUN | report RUN [--open]   (the console: AWS or --endpoint-url)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from stepml import mnist
from stepml.trigger import DEFAULT_PRESET, PRESETS

DEFAULT_OUT = Path("stepml-runs")
DEMO_PREFIX = "data/mnist/"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in CONSOLE_COMMANDS:
            return _console(args)
        if args.command == "demo":
            return _demo(args)
        if args.local_command == "serve":
            return _local_serve(args)
        return _local_run(args)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"stepml: error: {err}", file=sys.stderr)
        return 1 if _is_not_found(err) else 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepml", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run pipelines on the local stack (moto, no AWS)")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    run = local_commands.add_parser("run", help="upload a trigger and follow its execution")
    run.add_argument("trigger", type=Path, help="trigger JSON file")
    run.add_argument("--put", action="append", default=[], metavar="LOCAL_PATH:S3_KEY",
                     help="upload a file into the bucket first (repeatable)")
    _common_options(run)
    serve = local_commands.add_parser(
        "serve", help="serve the local stack over HTTP for the AWS CLI and boto3 (--endpoint-url)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=5000, help="port (default: %(default)s; 0 = any free port)")
    serve.add_argument("--mnist-dir", type=Path, default=os.environ.get(mnist.ENV_DIR) or None,
                       help=f"upload the four MNIST IDX files from this folder to data/mnist/ in the bucket "
                            f"(default: ${mnist.ENV_DIR}; without it the printed trigger downloads them)")
    serve.add_argument("--verbose", "-v", action="store_true",
                       help="print the Lambda functions' logs and every HTTP request")

    demo = commands.add_parser("demo", help="the MNIST pipeline end to end on the local stack")
    demo.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET["mnist"],
                      help="fast = linear, balanced = mlp, accurate = cnn (default: %(default)s)")
    demo.add_argument("--amazonml-2016", action="store_true",
                      help="MNIST as the 2016 Amazon ML scripts had it: headerless CSV + their data schema, "
                           "recipe and sgd.* parameters (linear model)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--twice", action="store_true",
                      help="run the same inputs again on the same stack: the second run reuses the "
                           "datasource the first one built, and both times are printed")
    demo.add_argument("--mnist-dir", type=Path, default=os.environ.get(mnist.ENV_DIR) or None,
                      help=f"folder with the four MNIST IDX files (default: ${mnist.ENV_DIR}; "
                           "without it the pipeline downloads them and checks their SHA-256)")
    _common_options(demo)

    runs = commands.add_parser("runs", help="recent executions: status, start, duration, headline metric")
    runs.add_argument("--limit", type=int, default=20, help="how many, newest first (default: %(default)s)")
    _target_options(runs)
    status = commands.add_parser("status", help="each step of a run with its status and duration")
    status.add_argument("run", help="run id (the execution's name) or execution ARN")
    _target_options(status)
    history = commands.add_parser("history", help="the execution's events, as in the console's event table")
    history.add_argument("run", help="run id (the execution's name) or execution ARN")
    _target_options(history)
    report = commands.add_parser("report", help="fetch runs/<run-id>/report/ (report.json, report.html, charts)")
    report.add_argument("run", help="run id (the execution's name) or execution ARN")
    report.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"copy to DIR/<run-id>/report/ (default: ./{DEFAULT_OUT})")
    report.add_argument("--open", action="store_true", help="open report.html in the web browser")
    _target_options(report)
    return parser


CONSOLE_COMMANDS = ("runs", "status", "history", "report")


def _target_options(parser: argparse.ArgumentParser) -> None:
    """Which stack: a deployed one (stack outputs via CloudFormation) or a served local one."""
    group = parser.add_argument_group("stack")
    group.add_argument("--stack-name", help="CloudFormation stack (default: samconfig.toml's stack_name, "
                                            "else 'stepml'; with --endpoint-url 'stepml-local')")
    group.add_argument("--region", help="AWS region (default: samconfig.toml's, else the profile's or "
                                        "$AWS_DEFAULT_REGION, else us-east-1; with --endpoint-url us-east-1)")
    group.add_argument("--profile", help="AWS named profile")
    group.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL") or None,
                       help="a served local stack, e.g. http://127.0.0.1:5000 (default: $AWS_ENDPOINT_URL)")
    group.add_argument("--bucket", help="the stack's bucket (skips the stack's outputs with --state-machine-arn)")
    group.add_argument("--state-machine-arn", help="the stack's state machine")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to copy the run's S3 prefix (default: ./{DEFAULT_OUT})")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the Lambda functions' logs")


def _console(args) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from stepml import console

    try:
        target = console.connect(args.stack_name, args.region, args.profile, args.endpoint_url,
                                 args.bucket, args.state_machine_arn)
        if args.command == "runs":
            runs = console.list_runs(target, limit=args.limit)
            print(console.to_json(runs) if args.json else console.format_runs(runs))
        elif args.command == "status":
            status = console.run_status(target, args.run)
            print(console.to_json(status) if args.json else console.format_status(status))
        elif args.command == "history":
            rows = console.history_rows(console.execution_history(target, args.run))
            print(console.to_json(rows) if args.json else console.format_history(rows))
        else:
            fetched = console.fetch_report(target, args.run, args.out)
            print(console.to_json(fetched) if args.json else console.format_report(fetched))
            if args.open and not console.open_report(fetched):
                print("nothing to open: no report.html" if not fetched["html"] else "could not open a browser",
                      file=sys.stderr)
    except (BotoCoreError, ClientError) as err:  # no credentials, no endpoint, access denied...
        raise RuntimeError(str(err)) from err
    return 0


def _is_not_found(err: Exception) -> bool:
    from stepml.console import NotFound

    return isinstance(err, NotFound)


def _local_serve(args) -> int:
    from stepml.local.serve import serve

    return serve(args.host, args.port, args.mnist_dir, args.verbose)


def _local_run(args) -> int:
    if args.trigger.suffix != ".json":
        raise ValueError(f"{args.trigger}: trigger files end in .json (only those start a run)")
    trigger_body = args.trigger.read_bytes()
    puts = []
    for spec in args.put:
        local_path, sep, key = spec.rpartition(":")
        if not sep or not local_path or not key:
            raise ValueError(f"--put {spec!r}: expected LOCAL_PATH:S3_KEY")
        if not Path(local_path).is_file():
            raise ValueError(f"--put {spec!r}: {local_path} is not a file")
        puts.append((Path(local_path), key))
    return _run(trigger_body, args.trigger.name, puts, args.out, args.verbose)


def _demo(args) -> int:
    if args.amazonml_2016:
        return _demo_2016(args)
    dataset: dict = {"kind": "mnist", "source": "download"}
    puts = []
    if args.mnist_dir:
        files = mnist.load_local_dir(args.mnist_dir)  # checks the SHA-256 before anything runs
        print(f"MNIST from {args.mnist_dir} (SHA-256 verified)")
        for name in files:
            path = next(p for p in (args.mnist_dir / f"{name}.gz", args.mnist_dir / name) if p.is_file())
            puts.append((path, DEMO_PREFIX + path.name))
        dataset = {"kind": "mnist", "source": "s3", "s3_prefix": DEMO_PREFIX}
    trigger = demo_trigger(args.preset, args.seed, dataset)
    outcomes = _execute(json.dumps(trigger, indent=2).encode(), f"mnist-{args.preset}.json", puts,
                        args.out, args.verbose, runs=2 if args.twice else 1)
    first = outcomes[0]      # the run that built everything: the fair comparison
    if first.report:
        print(against_2016(first.report, first.seconds))
    return 0 if all(o.succeeded for o in outcomes) else 1


def against_2016(report: dict, seconds: float) -> str:
    """This run beside Amazon ML's on MNIST in 2016."""
    from stepml.tabular.mnist2016 import AMAZON_ML_2016 as then

    return (f"Amazon ML, 2016: {100 * then['accuracy']:.1f}%, about ${then['cost_usd']:.2f}, about "
            f"{then['hours']} hours; this run: {100 * report['metrics']['accuracy']:.2f}%, "
            f"${report['cost']['total_usd']:.4f} estimated, {seconds:.0f} s on this machine")


def demo_trigger(preset: str, seed: int, dataset: dict) -> dict:
    return {
        "version": "1",
        "name": f"mnist-{preset}",
        "dataset": dataset,
        "model": {"type": "MULTICLASS", "engine": "builtin", "preset": preset, "seed": seed},
    }


def _demo_2016(args) -> int:
    import tempfile

    from stepml.tabular import mnist2016

    splits = mnist.load_splits(mnist.fetch(args.mnist_dir, progress=print))
    with tempfile.TemporaryDirectory(prefix="stepml-2016-") as tmp:
        folder = Path(tmp)
        print("writing MNIST as the 2016 CSV files (784 pixel columns, then the label; no header)")
        for split, name in (("train", "mnist-train.csv"), ("test", "mnist-test.csv")):
            mnist2016.write_csv(folder / name, splits[split].images, splits[split].labels)
        (folder / "mnist.csv.schema").write_text(json.dumps(mnist2016.SCHEMA_2016, indent=2))
        prefix = "data/mnist-2016/"
        puts = [(folder / name, prefix + name) for name in ("mnist-train.csv", "mnist-test.csv", "mnist.csv.schema")]
        trigger = mnist2016.trigger_2016(prefix + "mnist-train.csv", prefix + "mnist-test.csv",
                                         prefix + "mnist.csv.schema", seed=args.seed)
        (outcome,) = _execute(json.dumps(trigger, indent=2).encode(), "mnist-amazonml-2016.json", puts,
                              args.out, args.verbose)
    if outcome.succeeded and outcome.out_dir:
        from stepml.amlformat import accuracy_like_2016

        for result in sorted(outcome.out_dir.glob("predictions/batch-prediction/result/*.gz")):
            accuracy = accuracy_like_2016(result.read_bytes())
            print(f"{result.name} read as the 2016 checking script did: accuracy {100 * accuracy:.2f}% "
                  f"(Amazon ML, 2016: {100 * mnist2016.AMAZON_ML_2016['accuracy']:.1f}%)")
    return 0 if outcome.succeeded else 1


def _run(trigger_body: bytes, trigger_name: str, puts, out: Path, verbose: bool) -> int:
    return 0 if _execute(trigger_body, trigger_name, puts, out, verbose)[-1].succeeded else 1


def _execute(trigger_body: bytes, trigger_name: str, puts, out: Path, verbose: bool, runs: int = 1):
    """Run the trigger on a fresh local stack; ``runs=2`` uploads it again under another name
    (a new run with the same inputs) to show step reuse, and compares the two."""
    from stepml.local.runner import run_trigger, upload_files
    from stepml.local.serve import without_endpoint_overrides
    from stepml.local.stack import LocalStack

    outcomes = []
    with without_endpoint_overrides(), LocalStack(on_log=_log_printer(verbose)) as stack:
        print(f"local stack up: bucket {stack.bucket}, state machine {stack.resolved.state_machine.name}")
        upload_files(stack, puts, print)
        for attempt in range(runs):
            name = trigger_name if attempt == 0 else trigger_name.replace(".json", f"-again{attempt}.json")
            if attempt:
                print(f"\nthe same inputs again, as {name}:")
            outcome = run_trigger(stack, trigger_body, name, out, print)
            _summarise(outcome)
            outcomes.append(outcome)
            if not outcome.succeeded:
                break
    if len(outcomes) == 2:
        _compare(*outcomes)
    return outcomes


def _compare(first, second) -> None:
    """How much the second run saved by reusing the first one's datasource."""
    def seconds(outcome, step: str) -> float:
        return (outcome.report or {}).get("seconds_per_step", {}).get(step, float("nan"))

    reused = (second.report or {}).get("dataset", {}).get("reused_from")
    print(f"\nsecond run: {second.seconds:.1f} s against {first.seconds:.1f} s for the first "
          f"({'reused the datasource of ' + reused if reused else 'built its own datasource'}); "
          + ", ".join(f"{step} {seconds(first, step):.2f} s -> {seconds(second, step):.2f} s"
                      for step in ("PrepareData", "CreateDataSource")))


def _log_printer(verbose: bool):
    """Verbose: every Lambda log line. Otherwise only training progress, so long steps show life."""

    def show(function: str, line: str) -> None:
        if verbose:
            print(f"     [{function}] {line}", file=sys.__stdout__, flush=True)
            return
        try:
            message = json.loads(line).get("message", "")
        except (ValueError, AttributeError):
            return
        if isinstance(message, str) and message.startswith("epoch "):
            print(f"       {message}", file=sys.__stdout__, flush=True)

    return show


def _summarise(outcome) -> None:
    summary = (outcome.report or {}).get("training", {}).get("summary")
    if summary:
        print(f"training: {summary['epochs_completed']}/{summary['epochs_planned']} epochs in "
              f"{summary['seconds']:.1f} s, stopped: {summary['stop_reason']}, "
              f"model from epoch {summary['best_epoch']}")
    if outcome.report:
        print(f"{headline(outcome.report)}   on {outcome.report['dataset']['test_rows']:,} evaluation rows")
        if outcome.report.get("cost"):
            cost = outcome.report["cost"]
            print(f"estimated cost on AWS: ${cost['total_usd']:.4f}"
                  + ("" if cost["complete"] else " (some lines have no price)") + f", {cost['prices']}:")
            for line in cost["lines"]:
                usd = "no price" if line["usd"] is None else f"${line['usd']:.6f}"
                print(f"    {line['item']:<40} {line['quantity']:>14,.3f} {line['unit']:<12} {usd:>12}")
    if outcome.failure:
        print(f"failed in {outcome.failure['failed_step']}: {outcome.failure['error']}: {outcome.failure['cause']}")
    print(f"{outcome.status} in {outcome.seconds:.1f} s" + (f"; results in {outcome.out_dir}/" if outcome.out_dir else ""))


def headline(report: dict) -> str:
    """The evaluation in one line, in the model type's own terms."""
    metrics, model_type = report["metrics"], report["model"]["type"]
    if model_type == "REGRESSION":
        return (f"RegressionRMSE {metrics['RegressionRMSE']:.4g}   R² {metrics['r2']:.4f}   "
                f"(baseline RMSE {metrics['baseline']['RegressionRMSE']:.4g})")
    if model_type == "BINARY":
        auc = metrics["BinaryAUC"]
        return (f"BinaryAUC {'n/a' if auc is None else f'{auc:.4f}'}   accuracy {100 * metrics['accuracy']:.2f}%   "
                f"F1 {100 * metrics['f1']:.2f}%")
    return (f"accuracy {100 * metrics['accuracy']:.2f}%   macro-F1 (MulticlassAvgFScore) "
            f"{100 * metrics['macro_f1']:.2f}%")


if __name__ == "__main__":
    sys.exit(main())
