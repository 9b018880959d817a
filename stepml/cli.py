"""The stepml command line.

    stepml local run TRIGGER.json [--put LOCAL_PATH:S3_KEY ...] [--out DIR]
    stepml demo [--preset fast|balanced|accurate] [--mnist-dir DIR] [--out DIR]
    stepml demo --amazonml-2016 [--mnist-dir DIR] [--out DIR]
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
        if args.command == "demo":
            return _demo(args)
        return _local_run(args)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"stepml: error: {err}", file=sys.stderr)
        return 2


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

    demo = commands.add_parser("demo", help="the MNIST pipeline end to end on the local stack")
    demo.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET["mnist"],
                      help="fast = linear, balanced = mlp, accurate = cnn (default: %(default)s)")
    demo.add_argument("--amazonml-2016", action="store_true",
                      help="MNIST as the 2016 Amazon ML scripts had it: headerless CSV + their data schema, "
                           "recipe and sgd.* parameters (linear model)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--mnist-dir", type=Path, default=os.environ.get(mnist.ENV_DIR) or None,
                      help=f"folder with the four MNIST IDX files (default: ${mnist.ENV_DIR}; "
                           "without it the pipeline downloads them and checks their SHA-256)")
    _common_options(demo)
    return parser


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to copy the run's S3 prefix (default: ./{DEFAULT_OUT})")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the Lambda functions' logs")


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
    return _run(json.dumps(trigger, indent=2).encode(), f"mnist-{args.preset}.json", puts,
                args.out, args.verbose)


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
        outcome = _execute(json.dumps(trigger, indent=2).encode(), "mnist-amazonml-2016.json", puts,
                           args.out, args.verbose)
    if outcome.succeeded and outcome.out_dir:
        from stepml.amlformat import accuracy_like_2016

        for result in sorted(outcome.out_dir.glob("predictions/batch-prediction/result/*.gz")):
            accuracy = accuracy_like_2016(result.read_bytes())
            print(f"{result.name} read as the 2016 checking script did: accuracy {100 * accuracy:.2f}% "
                  f"(Amazon ML, 2016: {100 * mnist2016.AMAZON_ML_2016['accuracy']:.1f}%)")
    return 0 if outcome.succeeded else 1


def _run(trigger_body: bytes, trigger_name: str, puts, out: Path, verbose: bool) -> int:
    return 0 if _execute(trigger_body, trigger_name, puts, out, verbose).succeeded else 1


def _execute(trigger_body: bytes, trigger_name: str, puts, out: Path, verbose: bool):
    from stepml.local.runner import run_trigger, upload_files
    from stepml.local.stack import LocalStack

    with LocalStack(on_log=_log_printer(verbose)) as stack:
        print(f"local stack up: bucket {stack.bucket}, state machine {stack.resolved.state_machine.name}")
        upload_files(stack, puts, print)
        outcome = run_trigger(stack, trigger_body, trigger_name, out, print)
    _summarise(outcome)
    return outcome


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
                  + ("" if cost["complete"] else " (some lines have no price)")
                  + f" — {', '.join(line['item'] for line in cost['lines'])} ({cost['prices']})")
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
